//! The four transports, one file each, and the little they share.
//!
//! | transport    | file              | how the client receives                          |
//! |--------------|-------------------|--------------------------------------------------|
//! | `short-poll` | [`short_poll`]    | asks; the answer comes at once, empty or not     |
//! | `long-poll`  | [`long_poll`]     | asks; the server holds the request until an event |
//! | `sse`        | [`sse`]           | one response that never ends, events as lines    |
//! | `ws`         | [`ws`]            | one full-duplex socket; commands go the other way |
//!
//! All four read through a [`quartet_core::Reader`] from the same cursor, so a client can leave
//! one transport and resume on another with nothing lost and nothing repeated.

mod direct;
pub mod long_poll;
pub mod short_poll;
pub mod socketio;
pub mod sse;
pub mod ws;

use std::sync::atomic::Ordering;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use quartet_core::{EncodedFrame, Hub, Reader, Sink};
use quartet_protocol::ClientId;
pub use quartet_protocol::Transport;
use serde::Deserialize;

use crate::error::ApiError;
use crate::metrics::Counters;

/// The `?cursor=` every read route accepts.
#[derive(Debug, Deserialize)]
pub struct CursorQuery {
    /// Where to resume; absent means "from now".
    pub cursor: Option<String>,
}

/// Opens a reader for the client in the path, from `cursor`. Fails (as JSON) before anything is
/// streamed: unknown client, malformed cursor.
pub(crate) async fn open_reader(hub: &Hub, client: &str, cursor: Option<&str>) -> Result<Reader, ApiError> {
    let client = ClientId::from_wire(client)?;
    let cursor = cursor.filter(|c| !c.is_empty());
    Ok(hub.reader(&client, cursor).await?)
}

/// A polling response body being built: `{"events":[...],"cursor":"..."}`. As a [`Sink`], it
/// appends each event's JSON to the array, copying its bytes once and parsing nothing.
#[derive(Debug)]
pub struct PollBody {
    out: Vec<u8>,
    events: usize,
}

impl Default for PollBody {
    fn default() -> Self {
        PollBody { out: b"{\"events\":[".to_vec(), events: 0 }
    }
}

impl PollBody {
    /// Events pushed so far.
    pub fn events(&self) -> usize {
        self.events
    }

    /// Closes the array and adds the cursor after the last event.
    pub fn finish(mut self, cursor: &str) -> Bytes {
        self.out.extend_from_slice(b"],\"cursor\":\"");
        self.out.extend_from_slice(cursor.as_bytes());
        self.out.extend_from_slice(b"\"}");
        Bytes::from(self.out)
    }
}

impl Sink for PollBody {
    fn push(&mut self, frame: EncodedFrame<'_>) {
        self.out.reserve(frame.json_len() + 1);
        if self.events > 0 {
            self.out.push(b',');
        }
        frame.write_json(&mut self.out);
        self.events += 1;
    }
}

/// Answers a poll, short or long: counts it (empty or not, events delivered) and closes the body
/// with the cursor after everything the reader took (on a cursor base, for a client of many
/// rooms: [`Reader::settle_base`]).
pub(crate) async fn answer_poll(body: PollBody, reader: &mut Reader, counters: &Counters) -> Response {
    reader.settle_base().await;
    if body.events() == 0 {
        counters.empty.fetch_add(1, Ordering::Relaxed);
    }
    counters.delivered.fetch_add(body.events() as u64, Ordering::Relaxed);
    let body = body.finish(&reader.current_cursor());
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Completes when the server starts shutting down.
pub(crate) async fn stopped(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    // An error means the sender is gone, which also means the server is stopping.
    let _ = shutdown.wait_for(|stop| *stop).await;
}
