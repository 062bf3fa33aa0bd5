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
}

/// Every field an event or a gap may have, flat: serde reads this in one pass, where an
/// internally tagged enum would first buffer the whole object to find its `type`. Readers parse
/// one of these per event, so it is the client's hot path (and the load generator's).
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
    reason: Option<String>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_and_gaps_in_any_field_order() {
        let event: Frame = serde_json::from_str(
            r#"{"cursor":"C","type":"event","room":"lobby","seq":4,"event":"chat","from":"al","data":{"t":1},"ts":9}"#,
        )
        .unwrap();
        assert_eq!(event.as_event().map(|e| (e.seq, e.data["t"].as_u64())), Some((4, Some(1))));
        let gap: Frame = serde_json::from_str(
            r#"{"type":"gap","room":"lobby","reason":"evicted","missed_from":1,"missed_to":3,"cursor":"C"}"#,
        )
        .unwrap();
        assert!(matches!(gap, Frame::Gap(Gap { missed_to: Some(3), .. })));
        assert!(serde_json::from_str::<Frame>(r#"{"type":"ack","room":"lobby","cursor":"C"}"#).is_err());
        assert!(serde_json::from_str::<Frame>(r#"{"type":"event","room":"lobby","cursor":"C"}"#).is_err());
    }
}
