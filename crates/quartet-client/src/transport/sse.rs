//! Server-Sent Events: one `GET …/sse` read as a stream of `id:`/`data:` blocks.
//!
//! Like a browser's `EventSource`, it reconnects with `Last-Event-ID` when the stream ends.

use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use quartet_protocol::Reply;

use super::{Command, Endpoint, Transport, TransportKind};
use crate::Frame;
use crate::error::ClientError;

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// See the module doc.
pub struct Sse {
    endpoint: Endpoint,
    cursor: String,
    stream: Option<ByteStream>,
    buffer: BytesMut,
    /// An event skipped as unreadable, reported by the next `receive`.
    unreadable: Option<ClientError>,
}

impl Sse {
    pub(crate) async fn open(endpoint: Endpoint, cursor: String) -> Result<Sse, ClientError> {
        let mut sse = Sse { endpoint, cursor, stream: None, buffer: BytesMut::new(), unreadable: None };
        sse.connect().await?;
        Ok(sse)
    }

    async fn connect(&mut self) -> Result<(), ClientError> {
        let response = self
            .endpoint
            .http
            .get(self.endpoint.url("sse"))
            .header("accept", "text/event-stream")
            .header("last-event-id", &self.cursor)
            .send()
            .await?;
        if !response.status().is_success() {
            let status = response.status().as_u16();
            return Err(ClientError::from_body(status, &response.bytes().await?));
        }
        self.buffer.clear();
        self.stream = Some(Box::pin(response.bytes_stream()));
        Ok(())
    }

    /// Takes complete blocks (ending in a blank line) out of the buffer.
    fn parse_blocks(&mut self) -> Result<Vec<Frame>, ClientError> {
        let mut frames = Vec::new();
        while let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
            let block = self.buffer.split_to(end + 2);
            let block = std::str::from_utf8(&block)
                .map_err(|_| ClientError::Protocol("SSE block is not UTF-8".into()))?;
            let Some((id, data)) = parse_block(block) else {
                continue; // a comment (keep-alive) or a `retry:` hint
            };
            let frame = match serde_json::from_str::<Frame>(&data) {
                Ok(frame) => frame,
                // A removed client's stream ends with an error frame.
                Err(_) if serde_json::from_str::<Reply>(&data).is_ok() => {
                    return Err(ClientError::from_body(0, data.as_bytes()));
                }
                // An event this client cannot read: move past it by its id (the cursor after
                // it), give what came before, and report it next.
                Err(error) => match id {
                    Some(id) => {
                        self.cursor.clear();
                        self.cursor.push_str(id);
                        let why = error.to_string();
                        self.unreadable = Some(ClientError::Unreadable { cursor: id.to_owned(), why });
                        return Ok(frames);
                    }
                    None => return Err(ClientError::Protocol(format!("bad SSE frame: {error}"))),
                },
            };
            if let Some(id) = id {
                self.cursor.clear();
                self.cursor.push_str(id);
            }
            frames.push(frame);
        }
        Ok(frames)
    }
}

/// The `id` and `data` of one block (WHATWG HTML §9.2.6): one optional space after the colon is
/// dropped, several `data:` lines are joined with newlines, and a block without data is not an
/// event. The usual single data line is borrowed, not copied.
fn parse_block(block: &str) -> Option<(Option<&str>, std::borrow::Cow<'_, str>)> {
    let (mut id, mut data) = (None, None::<std::borrow::Cow<'_, str>>);
    for line in block.lines() {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => id = Some(value),
            "data" => {
                data = Some(match data {
                    None => value.into(),
                    Some(before) => format!("{before}\n{value}").into(),
                })
            }
            _ => {}
        }
    }
    data.map(|data| (id, data))
}

impl Transport for Sse {
    fn kind(&self) -> TransportKind {
        TransportKind::Sse
    }

    fn cursor(&self) -> &str {
        &self.cursor
    }

    async fn send(&mut self, commands: &[Command]) -> Result<Vec<super::Reply>, ClientError> {
        self.endpoint.post_commands(commands).await
    }

    async fn receive(&mut self) -> Result<Vec<Frame>, ClientError> {
        loop {
            if let Some(skipped) = self.unreadable.take() {
                return Err(skipped);
            }
            let frames = self.parse_blocks()?;
            if !frames.is_empty() {
                return Ok(frames);
            }
            let Some(stream) = self.stream.as_mut() else {
                self.connect().await?;
                continue;
            };
            match stream.next().await {
                Some(Ok(chunk)) => self.buffer.extend_from_slice(&chunk),
                // The stream ended or broke: reconnect from the last id, as EventSource does.
                Some(Err(_)) | None => {
                    self.stream = None;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_block;

    #[test]
    fn blocks_follow_the_event_stream_rules() {
        assert_eq!(parse_block("id: C1\ndata: {\"a\":1}\n\n"), Some((Some("C1"), "{\"a\":1}".into())));
        assert_eq!(parse_block("data:x\ndata:  y\n\n"), Some((None, "x\n y".into())));
        assert_eq!(parse_block(": keep-alive\n\n"), None);
        assert_eq!(parse_block("retry: 1000\n\n"), None);
        assert_eq!(parse_block("id: C2\r\ndata: z\r\n\r\n"), Some((Some("C2"), "z".into())));
    }
}
