//! One event in a log, encoded to JSON once when it is appended.
//!
//! The expensive part of delivering an event is encoding it; that happens once here, in
//! [`Entry::new`] (with the protocol's one encoder, [`quartet_protocol::event::event_head`]).
//! What differs per reader is only the `cursor` at the end of the object, so an entry keeps its
//! JSON up to that point ([`Entry::json_head`]) and each reader appends its own cursor.

use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use quartet_protocol::event::{FRAME_TAIL, event_head};
use quartet_protocol::{ClientId, EventName, LogId, Scope, Seq, UserName};
use serde_json::value::RawValue;

/// An event on its way into a log: everything but its `seq`, which the engine assigns.
#[derive(Clone, Debug)]
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
    /// The client's message id, if the publish had one: a durable engine keeps the ack under it,
    /// so a resend after a restart is still recognised.
    pub id: Option<String>,
    /// A reader far behind may skip it (likes, counts); the rest is must-deliver.
    pub droppable: bool,
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
        Draft { log, event, from, from_client, scope, data, ts, id: None, droppable: false }
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
    /// [`client_key`] of `draft.from_client`.
    from_key: u64,
    /// The event as Socket.IO clients receive it, made on its first delivery to one.
    socketio: OnceLock<Box<OtherForm>>,
}

/// A number for a client id, equal for equal ids: a reader keeps its own beside its other hot
/// fields, so checking an `others` or `self` event's sender compares two numbers, and reads
/// the ids themselves (cold, in another allocation each) only when the numbers are equal.
pub(crate) fn client_key(id: &ClientId) -> u64 {
    use std::hash::{Hash as _, Hasher as _};
    let mut hasher = std::hash::DefaultHasher::new();
    id.hash(&mut hasher);
    hasher.finish()
}

/// An event encoded for a protocol other than quartet's own (Socket.IO), by the transport that
/// speaks it: like the native head, made once and shared by every reader of that transport.
#[derive(Debug)]
pub struct OtherForm {
    /// The text up to where the reader's cursor goes.
    pub head: Vec<u8>,
    /// What follows the cursor.
    pub tail: Vec<u8>,
    /// Binary pieces that follow the text (Socket.IO attachments).
    pub attachments: Vec<Bytes>,
}

impl Entry {
    /// Builds the entry and encodes it.
    pub fn new(seq: Seq, draft: Draft) -> Arc<Entry> {
        let d = &draft;
        let json_head = Bytes::from(event_head(&d.log, seq, &d.event, &d.from, &d.data, d.ts));
        let from_key = client_key(&draft.from_client);
        Arc::new(Entry { seq, draft, json_head, from_key, socketio: OnceLock::new() })
    }

    /// The event as the Socket.IO transport writes it: `encode` runs on the first call only
    /// (events no Socket.IO client reads never pay for it).
    pub fn socketio_form(&self, encode: impl FnOnce(&Entry) -> OtherForm) -> &OtherForm {
        self.socketio.get_or_init(|| Box::new(encode(self)))
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
        self.visible_to_keyed(client_key(reader), reader)
    }

    /// [`Entry::visible_to`] for a reader whose [`client_key`] is `key`: `reader` is read only
    /// when the keys are equal.
    pub(crate) fn visible_to_keyed(&self, key: u64, reader: &ClientId) -> bool {
        let sender = || key == self.from_key && self.draft.from_client == *reader;
        match self.draft.scope {
            Scope::Room => true,
            Scope::Others => !sender(),
            Scope::SelfOnly => sender(),
        }
    }

    /// The complete event JSON for a reader whose position after this event is `cursor` (what
    /// [`crate::frame::EncodedFrame::write_json`] writes, owned).
    pub fn frame(&self, cursor: &str) -> Bytes {
        let mut out = Vec::with_capacity(self.json_head.len() + cursor.len() + FRAME_TAIL.len());
        out.extend_from_slice(&self.json_head);
        out.extend_from_slice(cursor.as_bytes());
        out.extend_from_slice(FRAME_TAIL);
        Bytes::from(out)
    }
}

/// The bit of [`stored_scope`] that marks a droppable event.
pub const DROPPABLE_BIT: i64 = 4;

/// How a store writes an event's scope and class as one number: 0 room, 1 others, 2 self,
/// plus [`DROPPABLE_BIT`] for a droppable event. (Stores written before delivery classes hold
/// 0 to 2: must-deliver, as every event was then.)
pub fn stored_scope(draft: &Draft) -> i64 {
    let scope = match draft.scope {
        Scope::Room => 0,
        Scope::Others => 1,
        Scope::SelfOnly => 2,
    };
    if draft.droppable { scope | DROPPABLE_BIT } else { scope }
}

/// An event as a store keeps it: names as text, the scope and class as [`stored_scope`].
#[derive(Debug)]
pub struct StoredEvent<'a> {
    /// Its seq.
    pub seq: u64,
    /// Its event name.
    pub event: &'a str,
    /// The user who sent it (empty for the server's own events).
    pub from: &'a str,
    /// The client that sent it (empty for the server's own events).
    pub from_client: &'a str,
    /// Its scope and class, as [`stored_scope`] writes them.
    pub scope: i64,
    /// Its payload.
    pub data: Box<RawValue>,
    /// Its time, Unix ms.
    pub ts: u64,
}

impl Entry {
    /// The entry of `log` a store kept; `None` if the fields are not ones quartet writes.
    pub fn from_stored(log: &LogId, stored: StoredEvent<'_>) -> Option<Arc<Entry>> {
        let from =
            if stored.from.is_empty() { UserName::nobody() } else { UserName::parse(stored.from).ok()? };
        let from_client = if stored.from_client.is_empty() {
            ClientId::nobody()
        } else {
            ClientId::from_wire(stored.from_client).ok()?
        };
        let scope = match stored.scope & !DROPPABLE_BIT {
            1 => Scope::Others,
            2 => Scope::SelfOnly,
            _ => Scope::Room,
        };
        let draft = Draft {
            log: log.clone(),
            event: EventName::parse(stored.event).ok()?,
            from,
            from_client,
            scope,
            data: stored.data,
            ts: stored.ts,
            id: None,
            droppable: stored.scope & DROPPABLE_BIT != 0,
        };
        Some(Entry::new(Seq(stored.seq), draft))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quartet_protocol::{Frame, RoomName};

    #[test]
    fn stored_fields_come_back_as_the_same_entry() {
        let log = LogId::Room(RoomName::parse("r").unwrap());
        for scope in [Scope::Room, Scope::Others, Scope::SelfOnly] {
            for droppable in [false, true] {
                let mut draft = Draft::now(
                    log.clone(),
                    EventName::parse("chat").unwrap(),
                    UserName::parse("alice").unwrap(),
                    ClientId::from_random([1; 16]),
                    scope,
                    RawValue::from_string("1".into()).unwrap(),
                );
                draft.droppable = droppable;
                let stored = StoredEvent {
                    seq: 7,
                    event: "chat",
                    from: "alice",
                    from_client: "c1",
                    scope: stored_scope(&draft),
                    data: RawValue::from_string("1".into()).unwrap(),
                    ts: 9,
                };
                let entry = Entry::from_stored(&log, stored).unwrap();
                assert_eq!(
                    (entry.seq, entry.draft.scope, entry.draft.droppable, entry.draft.from.as_str()),
                    (Seq(7), scope, droppable, "alice")
                );
            }
        }
        let server = StoredEvent {
            seq: 1,
            event: "presence",
            from: "",
            from_client: "",
            scope: 0,
            data: RawValue::NULL.to_owned(),
            ts: 0,
        };
        let entry = Entry::from_stored(&LogId::Room(RoomName::parse("r").unwrap()), server).unwrap();
        assert_eq!(entry.draft.from, UserName::nobody());
        let bad = StoredEvent {
            seq: 1,
            event: "no spaces",
            from: "",
            from_client: "",
            scope: 0,
            data: RawValue::NULL.to_owned(),
            ts: 0,
        };
        assert!(Entry::from_stored(&LogId::Room(RoomName::parse("r").unwrap()), bad).is_none());
    }

    #[test]
    fn an_entry_frames_as_the_protocol_event() {
        let draft = Draft {
            log: LogId::Room(RoomName::parse("lobby").unwrap()),
            event: EventName::parse("chat").unwrap(),
            from: UserName::parse("alice").unwrap(),
            from_client: ClientId::from_random([7; 16]),
            scope: Scope::Room,
            data: RawValue::from_string(r#"{"text":"hi"}"#.into()).unwrap(),
            ts: 1_764_150_000_123,
            id: None,
            droppable: false,
        };
        let entry = Entry::new(Seq(43), draft);
        let frame: Frame = serde_json::from_slice(&entry.frame("CUR")).unwrap();
        let event = frame.as_event().unwrap();
        assert_eq!((event.room.as_str(), event.seq, event.cursor.as_str()), ("lobby", 43, "CUR"));
        assert_eq!(
            (event.from.as_str(), event.ts, event.data["text"].as_str()),
            ("alice", 1_764_150_000_123, Some("hi"))
        );
    }
}
