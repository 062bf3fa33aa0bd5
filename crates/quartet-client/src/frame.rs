//! Frames the server sends to a reader: events and gaps.

use serde::Deserialize;
use serde_json::Value;

/// One event in a room or inbox.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Event {
    /// `lobby`, or `@user` for a direct message.
    pub room: String,
    /// Position in that log; rises by one per event.
    pub seq: u64,
    /// Application event name (`chat`, `gift`, `presence`).
    pub event: String,
    /// The user who sent it.
    pub from: String,
    /// The payload.
    #[serde(default)]
    pub data: Value,
    /// Server time of acceptance, Unix ms.
    pub ts: u64,
    /// The cursor after this event.
    pub cursor: String,
}

/// Events that were missed and cannot be delivered.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Gap {
    /// The log with the hole.
    pub room: String,
    /// `evicted` (older than the server keeps) or `reset` (the store started anew).
    pub reason: String,
    /// First missed seq, for `evicted`.
    pub missed_from: Option<u64>,
    /// Last missed seq, for `evicted`.
    pub missed_to: Option<u64>,
    /// The cursor after the gap.
    pub cursor: String,
}

/// What a reader receives.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Frame {
    /// An event.
    Event(Event),
    /// A gap.
    Gap(Gap),
}

impl Frame {
    /// The cursor after this frame.
    pub fn cursor(&self) -> &str {
        match self {
            Frame::Event(e) => &e.cursor,
            Frame::Gap(g) => &g.cursor,
        }
    }

    /// The event, if this is one.
    pub fn as_event(&self) -> Option<&Event> {
        match self {
            Frame::Event(e) => Some(e),
            Frame::Gap(_) => None,
        }
    }
}
