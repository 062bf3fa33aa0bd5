//! WebSocket: one HTTP request upgraded to a full-duplex socket; events flow down, commands
//! flow up, each a JSON text frame.
//!
//! ```text
//! client                                         server
//!   │ GET …/ws?cursor=C0                           │
//!   │ Upgrade: websocket, Sec-WebSocket-Key: …     │
//!   │─────────────────────────────────────────────►│
//!   │◄─────────────────────────────────────────────│ 101 Switching Protocols
//!   │◄══ {"type":"event",…,"cursor":"C1"} ═════════│ wait_since → e1
//!   │══ {"type":"publish","room":"lobby",…} ══════►│ execute
//!   │◄══ {"type":"ack","seq":…} ═══════════════════│
//!   │◄══ ping ═════════════════════════════════════│ every heartbeat; the client pongs
//! ```
//!
//! Trade-offs: the cheapest per message (2-byte frame header down, 6 up) and the only one of
//! the four where commands share the connection. But the socket is stateful (proxies must allow
//! the upgrade and long-lived connections) and liveness needs explicit pings.
//!
//! Bad input does not close the socket: a malformed or oversized command gets an error frame.
//! Only a frame over [`WS_MAX_MESSAGE_BYTES`] (far above the command limit) closes it, since
//! the server would have to buffer it whole to answer.

use std::sync::atomic::Ordering;

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use quartet_core::{ClientId, Error, ErrorCode, Reader, Reply};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::AppState;
use crate::error::ApiError;
use crate::metrics::OpenGuard;
use crate::transport::{CursorQuery, Transport, open_reader, stopped};

/// Read buffer per socket. The default (128 KiB) would cost ~100 KB per idle connection;
/// commands are small, so a few KiB is plenty.
pub const WS_READ_BUFFER: usize = 1024;

/// Bytes written before a flush is forced. Small, since we flush after every batch anyway.
pub const WS_WRITE_BUFFER: usize = 8 * 1024;

/// Largest message accepted at the protocol level; larger closes the socket (1009). Between
/// [`quartet_core::limits::MAX_COMMAND_BYTES`] and this, the command is refused `too_large` and
/// the socket stays open.
pub const WS_MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// Most bytes of unsent frames kept for a slow client before the socket is dropped (it can
/// resume from its cursor, so dropping loses nothing).
pub const WS_MAX_WRITE_BUFFER: usize = 1024 * 1024;

/// `GET /v1/clients/{client}/ws?cursor=C`.
pub async fn ws(
    State(state): State<AppState>,
    Path(client): Path<String>,
    query: Result<Query<CursorQuery>, QueryRejection>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let Query(query) = query?;
    let reader = open_reader(&state.hub, &client, query.cursor.as_deref())?;
    let client = ClientId::from_wire(&client)?;
    Ok(upgrade
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(WS_WRITE_BUFFER)
        .max_write_buffer_size(WS_MAX_WRITE_BUFFER)
        .max_message_size(WS_MAX_MESSAGE_BYTES)
        .max_frame_size(WS_MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| run(socket, state, client, reader)))
}

/// Client frames buffered between the receiving task and the connection loop. Small: it only
/// smooths bursts; when full, the receiving task stops reading and TCP pushes back.
const INCOMING_FRAMES: usize = 16;

/// The connection loop. Each turn waits for one of:
/// - a batch of events for this client (write them, then flush once),
/// - a frame from the client (a command to execute, a pong, a close),
/// - a heartbeat tick (send a ping; give up on a peer silent for the client timeout),
/// - server shutdown (close with 1001 "going away"; the client resumes elsewhere).
///
/// The socket's receiving half runs in its own small task and hands frames over a channel.
/// Polling the socket itself in this loop would cost a read attempt (and tungstenite's buffer
/// preparation) on every delivery, since each turn starts a new receive.
async fn run(socket: WebSocket, state: AppState, client: ClientId, mut reader: Reader) {
    let counters = state.stats.of(Transport::Ws);
    counters.requests.fetch_add(1, Ordering::Relaxed);
    let _open = OpenGuard::new(counters);
    let heartbeat = state.hub.config().heartbeat;
    let timeout = state.hub.config().client_timeout();
    let mut shutdown = state.shutdown.clone();
    let mut last_heard = Instant::now();
    let (mut sink, mut stream) = socket.split();
    let (incoming_tx, mut incoming) = mpsc::channel::<Message>(INCOMING_FRAMES);
    let receiving = tokio::spawn(async move {
        while let Some(Ok(message)) = stream.next().await {
            if incoming_tx.send(message).await.is_err() {
                break;
            }
        }
    });
    // One heartbeat timer for the connection's life (not one per wait): at each tick, give up
    // on a peer silent for the timeout, else ping it.
    let mut beat = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            batch = reader.next_batch() => match batch {
                Ok(batch) => {
                    counters.delivered.fetch_add(batch.deliveries.len() as u64, Ordering::Relaxed);
                    let frames = batch.deliveries.into_iter().map(|d| text_frame(d.frame));
                    if write_batch(&mut sink, frames).await.is_err() {
                        break;
                    }
                }
                Err(error) => {
                    let _ = sink.send(error_frame(error)).await;
                    let _ = sink.send(close(close_code::POLICY, "client removed")).await;
                    break;
                }
            },
            _ = beat.tick() => {
                if last_heard.elapsed() > timeout {
                    tracing::debug!(%client, "websocket peer silent; closing");
                    break;
                }
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    break;
                }
            }
            message = incoming.recv() => {
                last_heard = Instant::now();
                let text = match message {
                    Some(Message::Text(text)) => text,
                    Some(Message::Binary(_)) => {
                        let error = Error::new(ErrorCode::BadRequest, "send commands as JSON text frames");
                        if sink.send(error_frame(error)).await.is_err() { break; }
                        continue;
                    }
                    // Pongs only prove life; pings are answered by the protocol layer.
                    Some(Message::Ping(_) | Message::Pong(_)) => continue,
                    Some(Message::Close(_)) | None => break,
                };
                let frames = match state.hub.execute(&client, text.as_bytes()).await {
                    Ok((replies, _)) => replies.into_iter().map(reply_frame).collect::<Vec<_>>(),
                    Err(error) => vec![error_frame(error)],
                };
                if write_batch(&mut sink, frames.into_iter()).await.is_err() {
                    break;
                }
            }
            () = stopped(&mut shutdown) => {
                let _ = sink.send(close(close_code::AWAY, "server shutting down")).await;
                break;
            }
        }
    }
    receiving.abort();
}

/// Queues every frame and flushes once: one write for the whole batch.
async fn write_batch(sink: &mut WsSink, frames: impl Iterator<Item = Message>) -> Result<(), axum::Error> {
    for frame in frames {
        sink.feed(frame).await?;
    }
    sink.flush().await
}

/// The sending half of a split socket.
type WsSink = futures_util::stream::SplitSink<WebSocket, Message>;

/// An event frame as a text message, sharing the encoded bytes.
pub fn text_frame(json: bytes::Bytes) -> Message {
    Message::Text(Utf8Bytes::try_from(json).expect("frames are JSON, so UTF-8"))
}

fn reply_frame(reply: Reply) -> Message {
    Message::Text(serde_json::to_string(&reply).expect("replies serialise").into())
}

fn error_frame(error: Error) -> Message {
    reply_frame(Reply::error(None, error))
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame { code, reason: Utf8Bytes::from_static(reason) }))
}
