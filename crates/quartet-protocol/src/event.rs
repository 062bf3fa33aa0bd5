//! What a reader receives: events and gaps. Both the encoders the server uses (once per event,
//! shared by every reader) and the types a client parses them into live here, so the two cannot
//! drift apart (the tests below encode, then parse).
//!
//! Every frame ends with the reader's own cursor, so the server encodes each event up to
//! `"cursor":"` once ([`event_head`], [`gap_head`]) and each reader appends its cursor and
//! [`FRAME_TAIL`].

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::ids::{EventName, LogId, Seq, UserName};

/// What closes every event and gap frame after the cursor.
pub const FRAME_TAIL: &[u8] = b"\"}";

/// One event in a room or inbox, as a client reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// `lobby`, or `@user` for a direct message.
    pub room: String,
    /// Position in that log; rises by one per event.
    pub seq: u64,
    /// Application event name (`chat`, `gift`, `presence`).
    pub event: String,
    /// The user who sent it (empty for the server's own presence counts).
    pub from: String,
    /// The payload.
    pub data: Value,
    /// Server time of acceptance, Unix ms.
    pub ts: u64,
    /// The cursor after this event.
    pub cursor: String,
}

/// Why events were missed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GapReason {
    /// Older than what the server keeps in memory; `missed_from..=missed_to` are gone.
    Evicted,
    /// Dropped from the store by its retention rules; `missed_from..=missed_to` are gone.
    Retention,
    /// The cursor is from an earlier lifetime of the store: everything before now is unknown.
    Reset,
    /// A reason this version does not know (a newer server).
    #[serde(other)]
    Unknown,
}

impl GapReason {
    /// The reason as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            GapReason::Evicted => "evicted",
            GapReason::Retention => "retention",
            GapReason::Reset => "reset",
            GapReason::Unknown => "unknown",
        }
    }
}

/// Events that were missed and cannot be delivered: never a silent hole.
#[derive(Clone, Debug, PartialEq)]
pub struct Gap {
    /// The log with the hole.
    pub room: String,
    /// Why.
    pub reason: GapReason,
    /// First missed seq, when known.
    pub missed_from: Option<u64>,
    /// Last missed seq, when known.
    pub missed_to: Option<u64>,
    /// The cursor after the gap.
    pub cursor: String,
}

/// What a reader receives: an event or a gap.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(try_from = "WireFrame")]
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

    /// The gap, if this is one.
    pub fn as_gap(&self) -> Option<&Gap> {
        match self {
            Frame::Gap(g) => Some(g),
            Frame::Event(_) => None,
        }
    }
}

/// Every field an event or a gap may have, flat: serde reads this in one pass, where an
/// internally tagged enum would first buffer the whole object to find its `type`. Readers parse
/// one of these per event, so it is a client's hot path (and the load generator's).
#[derive(Deserialize)]
struct WireFrame {
    #[serde(rename = "type")]
    kind: String,
    room: String,
    cursor: String,
    seq: Option<u64>,
    event: Option<String>,
    from: Option<String>,
    #[serde(default)]
    data: Value,
    ts: Option<u64>,
    reason: Option<GapReason>,
    missed_from: Option<u64>,
    missed_to: Option<u64>,
}

impl TryFrom<WireFrame> for Frame {
    type Error = String;

    fn try_from(w: WireFrame) -> Result<Frame, String> {
        let WireFrame { kind, room, cursor, seq, event, from, data, ts, reason, missed_from, missed_to } = w;
        let missing = |field: &str| format!("{kind} frame without `{field}`");
        match kind.as_str() {
            "event" => Ok(Frame::Event(Event {
                seq: seq.ok_or_else(|| missing("seq"))?,
                event: event.ok_or_else(|| missing("event"))?,
                from: from.ok_or_else(|| missing("from"))?,
                ts: ts.ok_or_else(|| missing("ts"))?,
                room,
                data,
                cursor,
            })),
            "gap" => Ok(Frame::Gap(Gap {
                reason: reason.ok_or_else(|| missing("reason"))?,
                room,
                missed_from,
                missed_to,
                cursor,
            })),
            other => Err(format!("not an event or gap: type {other:?}")),
        }
    }
}

fn json_string(out: &mut Vec<u8>, text: &str) {
    // Serialising a &str into a Vec cannot fail.
    serde_json::to_writer(&mut *out, text).expect("string serialises");
}

/// An event's JSON up to and including `"cursor":"`: the part every reader shares.
pub fn event_head(
    log: &LogId,
    seq: Seq,
    event: &EventName,
    from: &UserName,
    data: &RawValue,
    ts: u64,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(96 + data.get().len());
    out.extend_from_slice(b"{\"type\":\"event\",\"room\":");
    json_string(&mut out, &log.to_string());
    out.extend_from_slice(format!(",\"seq\":{seq},\"event\":").as_bytes());
    json_string(&mut out, event.as_str());
    out.extend_from_slice(b",\"from\":");
    json_string(&mut out, from.as_str());
    out.extend_from_slice(b",\"data\":");
    out.extend_from_slice(data.get().as_bytes());
    out.extend_from_slice(format!(",\"ts\":{ts},\"cursor\":\"").as_bytes());
    out
}

/// A gap's JSON up to and including `"cursor":"`: events of `log` were missed, `missed` says
/// which when known.
pub fn gap_head(log: &LogId, reason: GapReason, missed: Option<(Seq, Seq)>) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(b"{\"type\":\"gap\",\"room\":");
    json_string(&mut out, &log.to_string());
    out.extend_from_slice(b",\"reason\":");
    json_string(&mut out, reason.as_str());
    if let Some((from, to)) = missed {
        out.extend_from_slice(format!(",\"missed_from\":{from},\"missed_to\":{to}").as_bytes());
    }
    out.extend_from_slice(b",\"cursor\":\"");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::RoomName;
    use serde_json::json;

    fn finish(mut head: Vec<u8>, cursor: &str) -> Vec<u8> {
        head.extend_from_slice(cursor.as_bytes());
        head.extend_from_slice(FRAME_TAIL);
        head
    }

    #[test]
    fn encoded_events_parse_back_with_every_contract_field() {
        let log = LogId::Room(RoomName::parse("lobby").unwrap());
        let data = RawValue::from_string(r#"{"text":"hi \"you\""}"#.into()).unwrap();
        let from = UserName::parse("alice").unwrap();
        let head =
            event_head(&log, Seq(43), &EventName::parse("chat").unwrap(), &from, &data, 1_764_150_000_123);
        let json = finish(head, "CUR");
        let value: Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            value,
            json!({"type":"event","room":"lobby","seq":43,"event":"chat","from":"alice",
                "data":{"text":"hi \"you\""},"ts":1_764_150_000_123u64,"cursor":"CUR"})
        );
        let frame: Frame = serde_json::from_slice(&json).unwrap();
        let event = frame.as_event().unwrap();
        assert_eq!((event.room.as_str(), event.seq, event.from.as_str()), ("lobby", 43, "alice"));
        assert_eq!((event.data["text"].as_str(), event.cursor.as_str()), (Some("hi \"you\""), "CUR"));
    }

    #[test]
    fn encoded_gaps_parse_back() {
        let log = LogId::Room(RoomName::parse("lobby").unwrap());
        let evicted = finish(gap_head(&log, GapReason::Evicted, Some((Seq(3), Seq(9)))), "CUR");
        let value: Value = serde_json::from_slice(&evicted).unwrap();
        assert_eq!(
            value,
            json!({"type":"gap","room":"lobby","reason":"evicted","missed_from":3,"missed_to":9,"cursor":"CUR"})
        );
        let frame: Frame = serde_json::from_slice(&evicted).unwrap();
        assert_eq!(
            frame.as_gap(),
            Some(&Gap {
                room: "lobby".into(),
                reason: GapReason::Evicted,
                missed_from: Some(3),
                missed_to: Some(9),
                cursor: "CUR".into()
            })
        );
        let reset = finish(gap_head(&log, GapReason::Reset, None), "C");
        let frame: Frame = serde_json::from_slice(&reset).unwrap();
        assert!(matches!(frame, Frame::Gap(Gap { reason: GapReason::Reset, missed_from: None, .. })));
    }

    #[test]
    fn parses_frames_in_any_field_order_and_refuses_others() {
        let event: Frame = serde_json::from_str(
            r#"{"cursor":"C","type":"event","room":"lobby","seq":4,"event":"chat","from":"al","data":{"t":1},"ts":9}"#,
        )
        .unwrap();
        assert_eq!(event.as_event().map(|e| (e.seq, e.data["t"].as_u64())), Some((4, Some(1))));
        let newer: Frame =
            serde_json::from_str(r#"{"type":"gap","room":"r","reason":"vanished","cursor":"C"}"#).unwrap();
        assert_eq!(newer.as_gap().map(|g| g.reason), Some(GapReason::Unknown));
        assert!(serde_json::from_str::<Frame>(r#"{"type":"ack","room":"lobby","cursor":"C"}"#).is_err());
        assert!(serde_json::from_str::<Frame>(r#"{"type":"event","room":"lobby","cursor":"C"}"#).is_err());
    }
}
