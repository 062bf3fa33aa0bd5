//! Server-Sent Events: one HTTP response that never ends; each event is a few text lines.
//!
//! ```text
//! client                                    server
//!   │ GET …/sse?cursor=C0                     │
//!   │ Accept: text/event-stream               │
//!   │────────────────────────────────────────►│
//!   │◄────────────────────────────────────────│ 200 text/event-stream
//!   │◄──── id: C1\ndata: {"type":"event",…}\n\n │ next_into → e1
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
use bytes::{BufMut, Bytes, BytesMut};
use quartet_core::{EncodedFrame, Sink};
use quartet_protocol::{Error, ErrorCode, Reply};

use crate::AppState;
use crate::error::ApiError;
use crate::metrics::OpenGuard;
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
    let mut reader = open_reader(&state.hub, &client, cursor).await?;
    reader.close_when_behind_for(state.hub.config().slow_after);
    let keep_alive = state.hub.config().heartbeat / 2;
    let mut shutdown = state.shutdown.clone();
    let stats = state.stats.clone();

    let stream = async_stream::stream! {
        let counters = stats.of(Transport::Sse);
        counters.requests.fetch_add(1, Ordering::Relaxed);
        let _open = OpenGuard::new(counters);
        yield Ok::<Bytes, std::convert::Infallible>(Bytes::from(format!("retry: {SSE_RETRY_MS}\n\n")));
        // One keep-alive timer for the stream's life, not one per wait.
        let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + keep_alive, keep_alive);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut out = SseOut::default();
        // One shutdown wait for the stream's life, not one per delivery.
        let stop = stopped(&mut shutdown);
        tokio::pin!(stop);
        loop {
            let pushed = tokio::select! {
                pushed = reader.next_into(&mut out) => Some(pushed),
                _ = beat.tick() => None,
                () = &mut stop => break,
            };
            match pushed {
                None => yield Ok(Bytes::from_static(b": keep-alive\n\n")),
                Some(Ok(pushed)) => {
                    counters.delivered.fetch_add(pushed as u64, Ordering::Relaxed);
                    yield Ok(out.take());
                }
                Some(Err(error)) => {
                    // The client was removed (DELETE or timeout), or the stream stayed behind
                    // (`slow`: an EventSource reconnects by itself, from its Last-Event-ID):
                    // say so, then end the stream.
                    let mut block = b"data: ".to_vec();
                    block.extend_from_slice(&Reply::error_json(error));
                    block.extend_from_slice(b"\n\n");
                    yield Ok(Bytes::from(block));
                    break;
                }
            }
        }
    };
    let headers = [
        (header::CONTENT_TYPE, "text/event-stream"),
        (header::CACHE_CONTROL, "no-cache"),
        // Tells nginx not to buffer the stream.
        (header::HeaderName::from_static("x-accel-buffering"), "no"),
    ];
    Ok((headers, Body::from_stream(stream)).into_response())
}

/// The stream's pending chunk. As a [`Sink`], it writes each event as an SSE block (`id:` the
/// cursor after it, `data:` its JSON), so a whole batch goes out as one chunk, in one write.
#[derive(Debug, Default)]
pub struct SseOut(BytesMut);

impl Sink for SseOut {
    fn push(&mut self, frame: EncodedFrame<'_>) {
        self.0.reserve(frame.json_len() + frame.cursor.len() + 16);
        self.0.put_slice(b"id: ");
        self.0.put_slice(frame.cursor.as_bytes());
        self.0.put_slice(b"\ndata: ");
        frame.write_json(&mut self.0);
        self.0.put_slice(b"\n\n");
    }
}

impl SseOut {
    /// The chunk so far, leaving the buffer empty.
    pub fn take(&mut self) -> Bytes {
        self.0.split().freeze()
    }
}
