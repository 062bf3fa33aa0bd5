//! One event in a log, encoded to JSON once when it is appended.
//!
//! The expensive part of delivering an event is encoding it; that happens once here, in
//! [`Entry::new`]. What differs per reader is only the `cursor` at the end of the object, so an
//! entry keeps its JSON up to that point ([`Entry::json_head`]) and a reader appends its own
//! cursor and `"}` ([`Entry::frame`]).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::value::RawValue;

use crate::command::Scope;
use crate::ids::{ClientId, EventName, LogId, Seq, UserName};
use crate::reader::Frame;

/// An event on its way into a log: everything but its `seq`, which the engine assigns.
#[derive(Debug)]
pub struct Draft {
    /// The log it goes to.
    pub log: LogId,
    /// Application event name (`chat`, `gift`, `presence`).
    pub event: EventName,
    /// The user who caused it.
    pub from: UserName,
    /// The client that caused it, for the `others` and `self` scopes.
    pub from_client: ClientId,
    /// Who may read it.
    pub scope: Scope,
    /// Application payload, exact JSON.
    pub data: Box<RawValue>,
    /// Wall-clock time of acceptance, in Unix milliseconds.
    pub ts: u64,
}

impl Draft {
    /// A draft stamped with the current wall-clock time.
    pub fn now(
        log: LogId,
        event: EventName,
        from: UserName,
        from_client: ClientId,
        scope: Scope,
        data: Box<RawValue>,
    ) -> Draft {
        let ts = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        Draft { log, event, from, from_client, scope, data, ts }
    }
}

/// A stored event: a [`Draft`] with its `seq`, plus its pre-encoded JSON.
#[derive(Debug)]
pub struct Entry {
    /// Position in its log.
    pub seq: Seq,
    /// Everything else about it.
    pub draft: Draft,
    json_head: Bytes,
}

impl Entry {
    /// Builds the entry and encodes it.
    pub fn new(seq: Seq, draft: Draft) -> Arc<Entry> {
        let json_head = encode_head(seq, &draft);
        Arc::new(Entry { seq, draft, json_head })
    }

    /// The event JSON up to (and including) `"cursor":"`.
    pub fn json_head(&self) -> &Bytes {
        &self.json_head
    }

    /// Bytes this entry holds, for the ring's byte budget.
    pub fn size(&self) -> usize {
        self.json_head.len() + self.draft.data.get().len() + 64
    }

    /// Whether the client `reader` may see this event.
    pub fn visible_to(&self, reader: &ClientId) -> bool {
        match self.draft.scope {
            Scope::Room => true,
            Scope::Others => self.draft.from_client != *reader,
            Scope::SelfOnly => self.draft.from_client == *reader,
        }
    }

    /// The complete event JSON for a reader whose position after this event is `cursor`.
    pub fn frame(&self, cursor: &str) -> Bytes {
        let frame = Frame { head: &self.json_head, cursor };
        let mut out = Vec::with_capacity(frame.json_len());
        frame.write_json(&mut out);
        Bytes::from(out)
    }
}

fn json_string(out: &mut Vec<u8>, text: &str) {
    // Serialising a &str into a Vec cannot fail.
    serde_json::to_writer(&mut *out, text).expect("string serialises");
}

fn encode_head(seq: Seq, d: &Draft) -> Bytes {
    let mut out = Vec::with_capacity(96 + d.data.get().len());
    out.extend_from_slice(b"{\"type\":\"event\",\"room\":");
    json_string(&mut out, &d.log.to_string());
    out.extend_from_slice(format!(",\"seq\":{seq},\"event\":").as_bytes());
    json_string(&mut out, d.event.as_str());
    out.extend_from_slice(b",\"from\":");
    json_string(&mut out, d.from.as_str());
    out.extend_from_slice(b",\"data\":");
    out.extend_from_slice(d.data.get().as_bytes());
    out.extend_from_slice(format!(",\"ts\":{},\"cursor\":\"", d.ts).as_bytes());
    Bytes::from(out)
}

/// The `gap` frame up to (and including) `"cursor":"`: events of `log` were missed and cannot
/// be delivered. Like an event, the frame ends with the reader's cursor and `"}`.
///
/// `reason` is `evicted` (older than what the server keeps; `missed_from..=missed_to` are gone)
/// or `reset` (the cursor is from an earlier lifetime of the store; everything before now is
/// unknown).
pub fn gap_head(log: &LogId, reason: &str, missed: Option<(Seq, Seq)>) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(b"{\"type\":\"gap\",\"room\":");
    json_string(&mut out, &log.to_string());
    out.extend_from_slice(b",\"reason\":");
    json_string(&mut out, reason);
    if let Some((from, to)) = missed {
        out.extend_from_slice(format!(",\"missed_from\":{from},\"missed_to\":{to}").as_bytes());
    }
    out.extend_from_slice(b",\"cursor\":\"");
    out
}

/// What closes every event and gap frame after the cursor.
pub const FRAME_TAIL: &[u8] = b"\"}";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::RoomName;

    #[test]
    fn frame_is_valid_json_with_every_contract_field() {
        let draft = Draft {
            log: LogId::Room(RoomName::parse("lobby").unwrap()),
            event: EventName::parse("chat").unwrap(),
            from: UserName::parse("alice").unwrap(),
            from_client: ClientId::random(),
            scope: Scope::Room,
            data: RawValue::from_string(r#"{"text":"hi \"you\""}"#.into()).unwrap(),
            ts: 1_764_150_000_123,
        };
        let entry = Entry::new(Seq(43), draft);
        let value: serde_json::Value = serde_json::from_slice(&entry.frame("CUR")).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"type":"event","room":"lobby","seq":43,"event":"chat","from":"alice",
                "data":{"text":"hi \"you\""},"ts":1_764_150_000_123u64,"cursor":"CUR"})
        );
    }

    #[test]
    fn gap_frames_are_valid_json() {
        let log = LogId::Room(RoomName::parse("lobby").unwrap());
        let mut evicted = gap_head(&log, "evicted", Some((Seq(3), Seq(9))));
        evicted.extend_from_slice(b"CUR");
        evicted.extend_from_slice(FRAME_TAIL);
        let value: serde_json::Value = serde_json::from_slice(&evicted).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"type":"gap","room":"lobby","reason":"evicted","missed_from":3,"missed_to":9,
                "cursor":"CUR"})
        );
        let mut reset = gap_head(&log, "reset", None);
        reset.extend_from_slice(b"C");
        reset.extend_from_slice(FRAME_TAIL);
        let value: serde_json::Value = serde_json::from_slice(&reset).unwrap();
        assert_eq!(value, serde_json::json!({"type":"gap","room":"lobby","reason":"reset","cursor":"C"}));
    }
}
