//! Server-Sent Events: one HTTP response that never ends; each event is a few text lines.
//!
//! ```text
//! client                                    server
//!   │ GET …/sse?cursor=C0                     │
//!   │ Accept: text/event-stream               │
//!   │────────────────────────────────────────►│
//!   │◄────────────────────────────────────────│ 200 text/event-stream
//!   │◄──── id: C1\ndata: {"type":"event",…}\n\n │ a publish → e1
//!   │◄──── : keep-alive\n\n                    │ nothing for a while
//!   │◄──── id: C2\ndata: {…}\n\n               │ e2
//!   │  (connection drops; the browser's EventSource reconnects by itself)
//!   │ GET …/sse   Last-Event-ID: C2          │ resumes after e2
//! ```
//!
//! Trade-offs: one-way, so commands go through `POST …/commands`; plain HTTP, so every proxy
//! passes it (quartet speaks HTTP/1.1; a TLS proxy in front that speaks HTTP/2 to browsers lifts
//! their six-connections-per-host limit); the browser reconnects and resumes by itself via
//! `Last-Event-ID`.
//! Costs about 8 bytes of framing per event plus the `id:` line. Comment keep-alives every half
//! heartbeat keep proxies from closing an idle stream and detect dead connections.

use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use quartet_core::{EncodedFrame, Reader, Sink};
use quartet_protocol::{Error, ErrorCode, Reply};
use tokio::sync::oneshot;

use crate::AppState;
use crate::error::ApiError;
use crate::http1::{HandOver, Streamed, chunk_size_line};
use crate::metrics::OpenGuard;
use crate::transport::direct::{Shared, Wire};
use crate::transport::ws::write_out;
use crate::transport::{CursorQuery, Transport, open_reader, stopped};

/// How long the browser waits before reconnecting a dropped stream, sent as `retry:`.
pub const SSE_RETRY_MS: u64 = 1000;

/// `GET /v1/clients/{client}/sse?cursor=C` (or header `Last-Event-ID: C`, which wins: an
/// `EventSource` reconnects to the original URL and sends its last id in the header).
pub(crate) async fn sse(
    State(state): State<AppState>,
    Path(client): Path<String>,
    headers: HeaderMap,
    query: Result<Query<CursorQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query?;
    let last_event_id = match headers.get("last-event-id").map(|v| v.to_str()) {
        None => None,
        Some(Ok(id)) => Some(id).filter(|id| !id.is_empty()),
        // Not silently dropped (the stream would start from now, losing what was missed).
        Some(Err(_)) => {
            return Err(Error::new(
                ErrorCode::BadCursor,
                "Last-Event-ID is not a cursor (not visible ASCII)",
            )
            .into());
        }
    };
    let cursor = last_event_id.or(query.cursor.as_deref());
    let reader = open_reader(&state.hub, &client, cursor).await?;
    // The connection writes the head, then hands the socket over: the stream's events are
    // written to it by publishers (see `direct`), the rest by the stream's task.
    let (hand_over, socket) = HandOver::new();
    tokio::spawn(stream(socket, state, reader));
    let headers = [
        (header::CONTENT_TYPE, "text/event-stream"),
        (header::CACHE_CONTROL, "no-cache"),
        // Tells nginx not to buffer the stream.
        (header::HeaderName::from_static("x-accel-buffering"), "no"),
    ];
    let mut response = (headers, Body::empty()).into_response();
    response.extensions_mut().insert(hand_over);
    Ok(response)
}

/// The stream, once the connection hands over its socket (never, for a `HEAD`, or a connection
/// gone first: the reader is then dropped). Each turn of its task waits for one of:
/// - work the publishers left (see `direct`): read what there is, write it at once,
/// - the keep-alive timer: a comment line, which keeps proxies from closing an idle stream,
/// - the client going away (or sending anything, after which it is no longer watched),
/// - server shutdown.
async fn stream(socket: oneshot::Receiver<Streamed>, state: AppState, mut reader: Reader) {
    let Ok(Streamed { mut io, chunked }) = socket.await else { return };
    let counters = state.stats.of(Transport::Sse);
    counters.requests.fetch_add(1, Ordering::Relaxed);
    let _open = OpenGuard::new(counters);
    reader.close_when_behind_for(state.hub.config().slow_after);
    let keep_alive = state.hub.config().heartbeat / 2;
    let mut shutdown = state.shutdown.clone();
    // One shutdown wait and one keep-alive timer for the stream's life, not one per wait.
    let stop = stopped(&mut shutdown);
    tokio::pin!(stop);
    let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + keep_alive, keep_alive);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first block goes before any event: publishers leave the writing to the task while
    // bytes wait.
    let mut out = SseOut { buf: Vec::new(), chunked, open: None };
    out.block(format!("retry: {SSE_RETRY_MS}\n\n").as_bytes());
    let (shared, delivering) =
        Shared::start(reader, out, io.shared_writer(), state.stats.clone(), Transport::Sse);
    let mut watching = true;
    loop {
        let turn = tokio::select! {
            () = shared.wanted.notified() => Turn::Deliver,
            _ = beat.tick() => Turn::KeepAlive,
            heard = io.peek_one(), if watching => match heard {
                Ok(1..) => {
                    watching = false;
                    continue;
                }
                Ok(0) | Err(_) => break, // gone: nothing to say
            },
            () = &mut stop => Turn::Stop,
        };
        let mut conn = shared.conn.lock().await;
        let last = match turn {
            Turn::Deliver => match Box::pin(shared.read(&mut conn)).await {
                Ok(_) => false,
                Err(error) => {
                    // The client was removed (DELETE or timeout), or the stream stayed behind
                    // (`slow`: an EventSource reconnects by itself, from its Last-Event-ID):
                    // say so, then end the stream.
                    let mut block = b"data: ".to_vec();
                    block.extend_from_slice(&Reply::error_json(error));
                    block.extend_from_slice(b"\n\n");
                    conn.out.block(&block);
                    true
                }
            },
            Turn::KeepAlive => {
                conn.out.block(b": keep-alive\n\n");
                false
            }
            Turn::Stop => true,
        };
        if last && chunked {
            conn.out.buf.extend_from_slice(b"0\r\n\r\n"); // the end of the chunked body
        }
        let failed = write_out(&mut io, &mut conn.out.buf).await.is_err();
        if last || failed {
            conn.closed = true;
            break;
        }
    }
    // Publishers stop writing here, before the socket goes.
    drop(delivering);
}

/// What woke a stream's task.
enum Turn {
    Deliver,
    KeepAlive,
    Stop,
}

/// A stream's write buffer. As a [`Sink`], it writes each event as an SSE block (`id:` the
/// cursor after it, `data:` its JSON); the blocks of one read make one chunk of the HTTP/1.1
/// chunked body (sent as they are to an HTTP/1.0 client), so a whole batch goes out in one
/// write, and is parsed by the client as one chunk.
#[derive(Debug, Default)]
pub struct SseOut {
    buf: Vec<u8>,
    chunked: bool,
    /// Where the data of the chunk being written starts, behind room for its size line.
    open: Option<usize>,
}

/// Room left for a chunk's size line (hex digits and CRLF) before its data.
const SIZE_LINE_ROOM: usize = 10;

impl Sink for SseOut {
    fn push(&mut self, frame: EncodedFrame<'_>) {
        self.buf.reserve(frame.json_len() + frame.cursor.len() + 16 + SIZE_LINE_ROOM);
        if self.chunked && self.open.is_none() {
            self.buf.extend_from_slice(&[0; SIZE_LINE_ROOM]);
            self.open = Some(self.buf.len());
        }
        self.buf.extend_from_slice(b"id: ");
        self.buf.extend_from_slice(frame.cursor.as_bytes());
        self.buf.extend_from_slice(b"\ndata: ");
        frame.write_json(&mut self.buf);
        self.buf.extend_from_slice(b"\n\n");
    }
}

impl Wire for SseOut {
    fn bytes(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    fn like(&self, buf: Vec<u8>) -> SseOut {
        SseOut { buf, chunked: self.chunked, open: None }
    }

    /// Ends the chunk the events pushed since the last call make: its size line goes in the
    /// room left for it, the room it does not need is taken out.
    fn finish(&mut self) {
        let Some(start) = self.open.take() else { return };
        let mut line = [0u8; 20];
        let line = chunk_size_line(self.buf.len() - start, &mut line);
        self.buf[start - line.len()..start].copy_from_slice(line);
        self.buf.drain(start - SIZE_LINE_ROOM..start - line.len());
        self.buf.extend_from_slice(b"\r\n");
    }
}

impl SseOut {
    /// What was pushed so far, leaving the buffer empty.
    pub fn take(&mut self) -> Bytes {
        self.finish();
        Bytes::from(std::mem::take(&mut self.buf))
    }

    /// Adds a block that is not an event (a comment, a `retry:`, an error), as a chunk of its
    /// own.
    fn block(&mut self, block: &[u8]) {
        self.finish();
        if self.chunked {
            let mut line = [0u8; 20];
            self.buf.extend_from_slice(chunk_size_line(block.len(), &mut line));
        }
        self.buf.extend_from_slice(block);
        if self.chunked {
            self.buf.extend_from_slice(b"\r\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quartet_core::Source;
    use quartet_protocol::event::GapReason;
    use quartet_protocol::{LogId, RoomName};

    /// Splits a chunked body into its chunks' data, checking each size line.
    fn chunks(mut body: &[u8]) -> Vec<String> {
        let mut found = Vec::new();
        while !body.is_empty() {
            let line_end = body.windows(2).position(|w| w == b"\r\n").expect("a size line");
            let size = usize::from_str_radix(std::str::from_utf8(&body[..line_end]).unwrap(), 16).unwrap();
            let data = &body[line_end + 2..line_end + 2 + size];
            assert_eq!(&body[line_end + 2 + size..line_end + 4 + size], b"\r\n", "each chunk ends with CRLF");
            found.push(String::from_utf8(data.to_vec()).unwrap());
            body = &body[line_end + 4 + size..];
        }
        found
    }

    #[test]
    fn the_events_of_one_read_make_one_chunk_and_other_blocks_their_own() {
        let log = LogId::Room(RoomName::parse("r").unwrap());
        let source = Source::Gap { log: &log, reason: GapReason::Reset, missed: None };
        let frame = |cursor| EncodedFrame { head: br#"{"type":"x","cursor":""#, cursor, source };
        let mut out = SseOut { buf: Vec::new(), chunked: true, open: None };
        out.block(b"retry: 1000\n\n");
        out.push(frame("C1"));
        out.push(frame("C2"));
        out.finish();
        out.block(b": keep-alive\n\n");
        let one = "id: C1\ndata: {\"type\":\"x\",\"cursor\":\"C1\"}\n\n";
        let two = one.replace("C1", "C2");
        assert_eq!(
            chunks(out.bytes()),
            ["retry: 1000\n\n".to_owned(), format!("{one}{two}"), ": keep-alive\n\n".into()]
        );
        // To an HTTP/1.0 client, the same blocks unframed.
        let mut plain = SseOut::default();
        plain.push(frame("C1"));
        plain.finish();
        assert_eq!(plain.take(), one.as_bytes());
    }
}
