//! WebSocket: one socket; commands go up as text frames, replies and events come down.
//!
//! Replies and events share the socket, so [`Ws::send`] reads until it has every reply and
//! keeps the events it met on the way for the next [`Ws::receive`].

use std::collections::VecDeque;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{Command, Endpoint, Reply, Transport, TransportKind};
use crate::Frame;
use crate::error::ClientError;

/// Read buffer per socket, in bytes.
const READ_BUFFER: usize = 8 * 1024;

/// See the module doc.
pub struct Ws {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    cursor: String,
    /// Events met while waiting for replies, and events skipped as unreadable, in order.
    pending: VecDeque<Result<Frame, ClientError>>,
}

/// What one text frame from the server was.
enum Incoming {
    Frame(Frame),
    Reply(Reply),
    /// An event this client cannot parse: [`ClientError::Unreadable`], with the cursor after it.
    Unreadable(ClientError),
}

impl Ws {
    pub(crate) async fn open(endpoint: Endpoint, cursor: String) -> Result<Ws, ClientError> {
        let url = endpoint.url("ws").replacen("http", "ws", 1);
        let url = format!("{url}?cursor={cursor}");
        // A small read buffer: events are a few hundred bytes, and the 128 KiB default is
        // zero-filled on every read, which dominates a load generator holding many sockets.
        let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
        let (socket, _) = match tokio_tungstenite::connect_async_with_config(url, Some(config), true).await {
            Ok(ok) => ok,
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                let status = response.status().as_u16();
                let body = response.body().as_deref().unwrap_or_default();
                return Err(ClientError::from_body(status, body));
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Ws { socket, cursor, pending: VecDeque::new() })
    }

    /// The next event, gap or reply. Cancel-safe: a message is taken off the socket only in the
    /// poll that returns it.
    async fn next_incoming(&mut self) -> Result<Incoming, ClientError> {
        loop {
            let message =
                self.socket.next().await.ok_or_else(|| ClientError::Protocol("socket closed".into()))??;
            let text = match message {
                Message::Text(text) => text,
                Message::Close(close) => {
                    return Err(ClientError::Protocol(format!("socket closed: {close:?}")));
                }
                _ => continue, // pings are answered by tungstenite
            };
            // Events are most of the traffic: try them first, in one pass.
            let not_a_frame = match serde_json::from_str::<Frame>(&text) {
                Ok(frame) => return Ok(Incoming::Frame(frame)),
                Err(error) => error,
            };
            if let Ok(reply) = serde_json::from_str::<Reply>(&text) {
                return Ok(Incoming::Reply(reply));
            }
            // An event this client cannot parse (an event frame ends with its cursor): skipped.
            let why = not_a_frame.to_string();
            return match crate::error::trailing_cursor(&text) {
                Some(cursor) => {
                    Ok(Incoming::Unreadable(ClientError::Unreadable { cursor: cursor.to_owned(), why }))
                }
                None => Err(ClientError::Protocol(format!("neither an event nor a reply ({why}): {text}"))),
            };
        }
    }
}

impl Transport for Ws {
    fn kind(&self) -> TransportKind {
        TransportKind::Ws
    }

    fn cursor(&self) -> &str {
        &self.cursor
    }

    async fn send(&mut self, commands: &[Command]) -> Result<Vec<Reply>, ClientError> {
        let wanted = commands.len();
        let body = match commands {
            [one] => serde_json::to_string(one),
            many => serde_json::to_string(many),
        }
        .map_err(|e| ClientError::Protocol(format!("command does not serialise: {e}")))?;
        self.socket.send(Message::Text(body.into())).await?;
        let mut replies = Vec::with_capacity(wanted);
        while replies.len() < wanted {
            match self.next_incoming().await? {
                Incoming::Frame(frame) => self.pending.push_back(Ok(frame)),
                Incoming::Unreadable(skipped) => self.pending.push_back(Err(skipped)),
                // An error for the whole message (malformed, too large) answers all of it.
                Incoming::Reply(Reply::Error { id: None, code, message, .. }) if wanted > 1 => {
                    return Err(ClientError::Server { status: 0, code, message });
                }
                Incoming::Reply(reply) => replies.push(reply),
            }
        }
        Ok(replies)
    }

    async fn receive(&mut self) -> Result<Vec<Frame>, ClientError> {
        while self.pending.is_empty() {
            match self.next_incoming().await? {
                Incoming::Frame(frame) => self.pending.push_back(Ok(frame)),
                Incoming::Unreadable(skipped) => self.pending.push_back(Err(skipped)),
                // The server's last word before closing (the client was removed).
                Incoming::Reply(Reply::Error { code, message, .. }) => {
                    return Err(ClientError::Server { status: 0, code, message });
                }
                // A reply nobody waits for (its `send` was cancelled): not an event.
                Incoming::Reply(_) => {}
            }
        }
        // The events up to the first unreadable one; that one is reported on its own, its
        // cursor taken, so the next call goes on after it.
        if matches!(self.pending.front(), Some(Err(_)))
            && let Some(Err(skipped)) = self.pending.pop_front()
        {
            if let ClientError::Unreadable { cursor, .. } = &skipped {
                self.cursor.clone_from(cursor);
            }
            return Err(skipped);
        }
        let readable = self.pending.iter().take_while(|p| p.is_ok()).count();
        let frames: Vec<Frame> = self.pending.drain(..readable).filter_map(Result::ok).collect();
        if let Some(last) = frames.last() {
            self.cursor = last.cursor().to_owned();
        }
        Ok(frames)
    }
}
