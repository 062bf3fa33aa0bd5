//! A client session: who the client is, which logs it reads, and whether it is still alive.
//!
//! Sessions are created by `POST /v1/clients` ([`Hub::register`](crate::Hub::register)) and end
//! by `DELETE`, or when the client shows no life for the timeout
//! ([`Hub::expire_idle`](crate::Hub::expire_idle)). A session does not know its transport: the
//! same session may be read by a short poll now and a WebSocket a second later.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use quartet_protocol::{ClientId, Reply, RoomName, Seq, UserName};
use tokio::time::Instant;

use crate::grant::Grant;
use crate::limits::REMEMBERED_MESSAGE_IDS;
use crate::log::{Log, Wake};
use crate::position::Kept;

/// One registered client.
pub(crate) struct Session {
    pub(crate) id: ClientId,
    pub(crate) user: UserName,
    /// What it may do (from its token, or everything on an open server).
    pub(crate) grant: Grant,
    /// The user's inbox, read by every client of that user.
    pub(crate) inbox: Arc<Log>,
    /// Woken whenever something this session reads may have changed: a new entry in one of its
    /// logs, a join or leave, or the session's end. Readers re-read; nothing is queued here.
    /// The logs it reads hold a clone of this handle, not the session.
    wake: Wake,
    pub(crate) state: Mutex<SessionState>,
    /// Held across a publish: one client's publishes are appended in the order it sent them, and
    /// a resent message id finds the first attempt's ack.
    pub(crate) publishing: tokio::sync::Mutex<AckMemory>,
}

/// The mutable part of a session.
pub(crate) struct SessionState {
    /// Joined rooms, each with the position the client reads it from: just before its own
    /// presence `join`, so a cursor cannot reach back to events from before it joined.
    pub(crate) rooms: BTreeMap<RoomName, (Arc<Log>, Seq)>,
    /// Position the inbox is read from at the earliest.
    pub(crate) inbox_from: Seq,
    /// Last sign of life: a poll, a command, the end of a stream.
    pub(crate) last_seen: Instant,
    /// Streams and parked requests open right now; while any is, the client is alive.
    pub(crate) streams: u32,
    pub(crate) bucket: TokenBucket,
    /// Set when the session ended; readers still holding it stop.
    pub(crate) gone: bool,
    /// Bumped by every join and leave, so readers rebuild their list of logs only then.
    pub(crate) membership: u64,
    /// The `last_seen` the engine was last told of (durable engines keep it across restarts).
    pub(crate) persisted_seen: Instant,
    /// The session's wake handle, where `membership` and `gone` are published for readers to
    /// check without this lock (see [`Waking::membership`](crate::log::Waking::membership)).
    wake: Wake,
    /// What the client's last poll read with, for its next poll to go on with (see
    /// [`Kept`]).
    pub(crate) kept: Option<Kept>,
}

impl SessionState {
    pub(crate) fn join(&mut self, room: RoomName, log: Arc<Log>, floor: Seq) {
        self.rooms.insert(room, (log, floor));
        self.changed();
    }

    pub(crate) fn leave(&mut self, room: &RoomName) -> Option<(Arc<Log>, Seq)> {
        let left = self.rooms.remove(room);
        self.changed();
        left
    }

    /// Ends the session: its readers stop at their next read. Returns the rooms it was in.
    pub(crate) fn end(&mut self) -> BTreeMap<RoomName, (Arc<Log>, Seq)> {
        self.gone = true;
        // A kept reader's state holds its rooms' logs: let them go with the session's rooms.
        self.kept = None;
        self.changed();
        std::mem::take(&mut self.rooms)
    }

    /// Bumps `membership` and publishes it (and `gone`) to the wake handle.
    fn changed(&mut self) {
        self.membership += 1;
        self.wake.publish_membership(self.membership, self.gone);
    }
}

impl Session {
    /// A session `id` of `user`; `rate` and `burst` bound its commands.
    pub(crate) fn new(
        id: ClientId,
        user: UserName,
        grant: Grant,
        inbox: Arc<Log>,
        inbox_from: Seq,
        rate: f64,
        burst: f64,
    ) -> Session {
        let now = Instant::now();
        let wake = Wake::default();
        Session {
            id,
            user,
            grant,
            inbox,
            wake: wake.clone(),
            state: Mutex::new(SessionState {
                rooms: BTreeMap::new(),
                inbox_from,
                last_seen: now,
                streams: 0,
                bucket: TokenBucket::full(now, rate, burst),
                gone: false,
                membership: 0,
                persisted_seen: now,
                wake,
                kept: None,
            }),
            publishing: tokio::sync::Mutex::new(AckMemory::default()),
        }
    }

    pub(crate) fn state(&self) -> std::sync::MutexGuard<'_, SessionState> {
        self.state.lock().expect("session lock")
    }

    /// Wakes every reader of this session (see the field doc of `wake`).
    pub(crate) fn wake(&self) {
        self.wake.wake(true);
    }

    /// The handle a log keeps to wake this session's readers.
    pub(crate) fn wake_handle(&self) -> Wake {
        self.wake.clone()
    }

    pub(crate) fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.wake.notified()
    }

    /// Counts a reader as waiting for [`Session::notified`] while the guard lives: wakes reach
    /// only sessions with one.
    pub(crate) fn waiting(&self) -> crate::log::Waiting<'_> {
        self.wake.waiting()
    }
}

/// A token bucket: `rate` commands per second steady, `burst` at once (by default
/// [`COMMANDS_PER_SECOND`](crate::limits::COMMANDS_PER_SECOND) and
/// [`COMMAND_BURST`](crate::limits::COMMAND_BURST)).
pub(crate) struct TokenBucket {
    tokens: f64,
    last: Instant,
    rate: f64,
    burst: f64,
}

impl TokenBucket {
    fn full(now: Instant, rate: f64, burst: f64) -> TokenBucket {
        TokenBucket { tokens: burst, last: now, rate, burst }
    }

    /// Takes one token if there is one; else how long until there is.
    pub(crate) fn take(&mut self, now: Instant) -> Result<(), std::time::Duration> {
        let refill = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(std::time::Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }

    /// Commands per second it lets through, sustained.
    pub(crate) fn rate(&self) -> f64 {
        self.rate
    }
}

/// The acks of the last [`REMEMBERED_MESSAGE_IDS`] publishes that carried an id.
#[derive(Default)]
pub(crate) struct AckMemory {
    acks: HashMap<String, Reply>,
    order: VecDeque<String>,
}

impl AckMemory {
    pub(crate) fn get(&self, id: &str) -> Option<&Reply> {
        self.acks.get(id)
    }

    pub(crate) fn remember(&mut self, id: String, ack: Reply) {
        if self.order.len() == REMEMBERED_MESSAGE_IDS
            && let Some(oldest) = self.order.pop_front()
        {
            self.acks.remove(&oldest);
        }
        self.order.push_back(id.clone());
        self.acks.insert(id, ack);
    }
}
