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

pub mod long_poll;
pub mod short_poll;
pub mod sse;
pub mod ws;

use bytes::{BufMut, Bytes, BytesMut};
use quartet_core::{Batch, ClientId, Hub, Reader};
use serde::Deserialize;

use crate::error::ApiError;

/// The four techniques, named as everywhere in quartet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Short polling.
    ShortPoll = 0,
    /// Long polling.
    LongPoll = 1,
    /// Server-Sent Events.
    Sse = 2,
    /// WebSocket.
    Ws = 3,
}

impl Transport {
    /// All four, in teaching order.
    pub const ALL: [Transport; 4] =
        [Transport::ShortPoll, Transport::LongPoll, Transport::Sse, Transport::Ws];

    /// The name used in URLs, JSON, metrics and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            Transport::ShortPoll => "short-poll",
            Transport::LongPoll => "long-poll",
            Transport::Sse => "sse",
            Transport::Ws => "ws",
        }
    }
}

/// The `?cursor=` every read route accepts.
#[derive(Debug, Deserialize)]
pub struct CursorQuery {
    /// Where to resume; absent means "from now".
    pub cursor: Option<String>,
}

/// Opens a reader for the client in the path, from `cursor`. Fails (as JSON) before anything is
/// streamed: unknown client, malformed cursor.
pub fn open_reader(hub: &Hub, client: &str, cursor: Option<&str>) -> Result<Reader, ApiError> {
    let client = ClientId::from_wire(client)?;
    let cursor = cursor.filter(|c| !c.is_empty());
    Ok(hub.reader(&client, cursor)?)
}

/// Encodes a batch as the polling body `{"events":[...],"cursor":"..."}`, copying each event's
/// bytes once and parsing nothing.
pub fn encode_poll_body(batch: &Batch) -> Bytes {
    let size: usize = batch.deliveries.iter().map(|d| d.frame.len() + 1).sum();
    let mut out = BytesMut::with_capacity(size + batch.cursor.len() + 32);
    out.put_slice(b"{\"events\":[");
    for (i, delivery) in batch.deliveries.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        out.put_slice(&delivery.frame);
    }
    out.put_slice(b"],\"cursor\":\"");
    out.put_slice(batch.cursor.as_bytes());
    out.put_slice(b"\"}");
    out.freeze()
}

/// Completes when the server starts shutting down.
pub async fn stopped(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    // An error means the sender is gone, which also means the server is stopping.
    let _ = shutdown.wait_for(|stop| *stop).await;
}
