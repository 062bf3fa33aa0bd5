//! The engine seam: where appended events are made to last, where seqs come from, and where
//! reads older than memory go.
//!
//! The [`Hub`](crate::Hub) keeps every log's recent tail in memory ([`Ring`](crate::ring::Ring))
//! and serves the hot reads from it. The engine does what must outlive the process or be agreed
//! beyond it:
//!
//! - [`Engine::append`] hands out the next `seq` of a log and stores the event, *before* the
//!   publisher is acknowledged ("nothing acknowledged is lost").
//! - [`Engine::head`] tells the last seq of a log this process has not seen yet (at start, or
//!   when a room is first touched on this node), so seqs continue instead of restarting.
//! - [`Engine::read`] serves events older than the ring (a resume from far back, history on
//!   join). An engine that keeps nothing beyond the rings answers [`History::None`], and the
//!   reader reports a `gap` instead.
//! - [`Engine::epoch`] identifies the lifetime of the stored logs, for cursors.
//!
//! Implementations:
//! - [`MemoryEngine`]: counters in a map; nothing survives a restart (a new epoch each start).
//! - SQLite (the embedded durable default, planned): one row per event, `seq` assigned in the
//!   inserting transaction; epoch kept in the database file.
//! - Redis (clusters, planned): one atomic step per append, the event in a per-log stream, every
//!   node tailing the logs it has readers for. The reason the seam is async even though the
//!   memory engine never waits.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use quartet_protocol::{BaseId, ClientId, Epoch, Error, LogId, RoomName, Seq, UserName};

use crate::entry::{Draft, Entry};
use crate::grant::Grant;
use crate::moderation::Restriction;

/// A boxed, sendable future: what the engine's async methods return, so the engine can be a
/// trait object chosen at start-up (`--store memory`, `--store sqlite:PATH`, `--redis URL`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What an engine can say about events older than a ring holds.
#[derive(Debug)]
pub enum History {
    /// This engine keeps nothing beyond the rings: whatever is older is gone.
    None,
    /// The events after the asked position, in seq order, at most the asked number. If the
    /// first is not the one right after the position, the ones between were dropped (retention).
    Events(Vec<Arc<Entry>>),
}

/// A client session as an engine keeps it, so that a client id outlives a restart (SQLite) or
/// works on every node (Redis). Everything else about a session is rebuilt from this.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    /// The id: the session's secret.
    pub client: ClientId,
    /// Its user.
    pub user: UserName,
    /// What it may do.
    pub grant: Grant,
    /// The earliest position its inbox is read from.
    pub inbox_from: Seq,
    /// Joined rooms, each with the earliest position it is read from (its floor).
    pub rooms: Vec<(RoomName, Seq)>,
    /// Last sign of life, wall clock, Unix ms.
    pub last_seen_ms: u64,
    /// Acks of its latest publishes that carried a message id: (id, log, seq), oldest first.
    pub acks: Vec<(String, LogId, Seq)>,
}

/// Positions stored for cursors to name instead of carrying (a cursor's base: see
/// `quartet_protocol::cursor`), with the user whose they are: only that user's clients may
/// resume from them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CursorBase {
    /// Whose positions they are.
    pub user: UserName,
    /// Last delivered seq per log.
    pub positions: BTreeMap<LogId, Seq>,
}

/// What an engine shared by several nodes tells this one (see [`Engine::announcements`]).
#[derive(Debug)]
pub enum Announcement {
    /// An event appended by any node to a log this node watches ([`Engine::watch`]).
    Appended(Arc<Entry>),
    /// A session changed (joined, left, ended) on another node: drop or reload the copy.
    SessionChanged(ClientId),
    /// The announcements were interrupted (the link to the store broke and came back): some
    /// may be lost, so read every held log up to the store's head.
    Resync,
}

/// Whether the engine can take writes now, and if not, why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Writes go through.
    Ok,
    /// Writes fail; publishes are refused `unavailable` until it recovers.
    Failing(String),
}

/// Storage and sequencing of log entries. See the module doc.
pub trait Engine: Send + Sync + 'static {
    /// A short name for logs and `/metrics` (`memory`, `sqlite`, `redis`).
    fn name(&self) -> &'static str;

    /// Whether an acknowledged event survives a restart of the server.
    fn durable(&self) -> bool;

    /// The lifetime of the stored logs.
    fn epoch(&self) -> Epoch;

    /// Stores `draft` as the next event of its log and returns its seq. When this returns `Ok`,
    /// the event is as safe as the engine can make it.
    fn append<'a>(&'a self, draft: &'a Draft) -> BoxFuture<'a, Result<Seq, Error>>;

    /// The last seq stored in `log` (0 for a log never written).
    fn head<'a>(&'a self, log: &'a LogId) -> BoxFuture<'a, Result<Seq, Error>>;

    /// Up to `limit` stored events of `log` with seq > `after`, for reads older than the ring.
    fn read<'a>(&'a self, log: &'a LogId, after: Seq, limit: usize) -> BoxFuture<'a, Result<History, Error>>;

    /// Keeps a user's mute or ban in `room` (lifts it with `until_ms` 0), so that it holds on
    /// every node, after a restart, and after the room left memory (see
    /// [`moderation`](crate::moderation)). Called before the `moderation` event is appended.
    fn restrict<'a>(
        &'a self,
        room: &'a RoomName,
        restriction: &'a Restriction,
    ) -> BoxFuture<'a, Result<(), Error>>;

    /// The restrictions of `room` in force at `now_ms` (Unix ms), read when a node loads the room.
    fn restrictions<'a>(
        &'a self,
        room: &'a RoomName,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<Vec<Restriction>, Error>>;

    /// Claims a one-time task named `what` (`kick:lobby:17:CLIENT`): `true` for exactly one
    /// node of a cluster, which then does it. Engines of one node always answer `true`.
    fn claim<'a>(&'a self, _what: &'a str) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(async { Ok(true) })
    }

    /// Whether several nodes share this engine (then a node's copy of a session can be behind
    /// a change made on another node for a moment, until its announcement arrives).
    fn clustered(&self) -> bool {
        false
    }

    /// The engine's own counters for `/metrics`: (name, help, value), names in Prometheus form.
    fn metrics(&self) -> Vec<(&'static str, &'static str, u64)> {
        Vec::new()
    }

    /// Whether writes go through now (for `/healthz`). An engine that cannot fail is always `Ok`.
    fn health(&self) -> Health {
        Health::Ok
    }

    /// Keeps (or replaces) a session. Called on register, join and leave, before the reply.
    fn save_session<'a>(&'a self, _session: &'a SessionRecord) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async { Ok(()) })
    }

    /// Forgets a session (`DELETE` or expiry).
    fn delete_session<'a>(&'a self, _client: &'a ClientId) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async { Ok(()) })
    }

    /// Records the latest sign of life of sessions (Unix ms), a batch at a time.
    fn touch_sessions<'a>(&'a self, _seen: &'a [(ClientId, u64)]) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async { Ok(()) })
    }

    /// Every kept session, at start.
    fn load_sessions(&self) -> BoxFuture<'_, Result<Vec<SessionRecord>, Error>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// One kept session, for a request naming a client this node does not hold (in a cluster,
    /// a client registered on another node). Engines of one node answer `None`.
    fn load_session<'a>(
        &'a self,
        _client: &'a ClientId,
    ) -> BoxFuture<'a, Result<Option<SessionRecord>, Error>> {
        Box::pin(async { Ok(None) })
    }

    /// The stream of what other nodes did, for an engine shared by several nodes; `None` for
    /// the others. Taken once, by the hub.
    fn announcements(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Announcement>> {
        None
    }

    /// This node holds `log` now: announce its appends (from any node) to it. Completes once
    /// the announcements flow, so a head read after it misses nothing.
    fn watch<'a>(&'a self, _log: &'a LogId) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async { Ok(()) })
    }

    /// This node dropped `log` from memory.
    fn unwatch(&self, _log: &LogId) {}

    /// The latest sign of life of `client` anywhere in the cluster (Unix ms), when the engine
    /// knows more than this node does.
    fn last_seen<'a>(&'a self, _client: &'a ClientId) -> BoxFuture<'a, Result<Option<u64>, Error>> {
        Box::pin(async { Ok(None) })
    }

    /// Sessions whose last sign of life anywhere is older than `before_ms` (Unix ms), for a
    /// cluster whose nodes may have died with them: any node expires them.
    fn stale(&self, _before_ms: u64) -> BoxFuture<'_, Result<Vec<ClientId>, Error>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// Claims the expiry of a silent `client`: `true` for exactly one node of a cluster, which
    /// then removes it (and publishes its leaves).
    fn claim_expiry<'a>(&'a self, _client: &'a ClientId) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(async { Ok(true) })
    }

    /// Stores `base` for cursors to name; its id. `None`: this engine keeps no bases, and
    /// readers write whole cursors. A base must be kept at least as long as the events its
    /// positions point past, so that a cursor naming it resumes as long as a whole one would.
    fn save_base<'a>(&'a self, _base: &'a CursorBase) -> BoxFuture<'a, Result<Option<BaseId>, Error>> {
        Box::pin(async { Ok(None) })
    }

    /// A stored base; `None` when this engine has no such base (never made, or dropped with the
    /// events it pointed past).
    fn load_base<'a>(&'a self, _id: BaseId) -> BoxFuture<'a, Result<Option<CursorBase>, Error>> {
        Box::pin(async { Ok(None) })
    }

    /// Makes what is stored final before the process exits, after the last write: a durable
    /// engine finishes its upkeep (SQLite: indexes the last events and copies its WAL into the
    /// file, which then holds everything by itself). Called once, at shutdown.
    fn close(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async { Ok(()) })
    }

    /// Counts `client` in (`present`) or out of `room` across the cluster and returns the
    /// room's online count, when the engine keeps membership beyond this node.
    fn presence<'a>(
        &'a self,
        _room: &'a RoomName,
        _client: &'a ClientId,
        _present: bool,
    ) -> BoxFuture<'a, Result<Option<usize>, Error>> {
        Box::pin(async { Ok(None) })
    }

    /// The room's online count across the cluster, when the engine keeps it.
    fn online<'a>(&'a self, _room: &'a RoomName) -> BoxFuture<'a, Result<Option<usize>, Error>> {
        Box::pin(async { Ok(None) })
    }
}

/// Wall-clock time, Unix ms: what engines store for times that must mean the same on every node
/// and after a restart (last signs of life, the end of a mute).
pub fn wall_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Keeps only a counter per log (and the rooms' restrictions); the events themselves live in
/// the hub's rings.
#[derive(Debug)]
pub struct MemoryEngine {
    epoch: Epoch,
    heads: Mutex<HashMap<LogId, Seq>>,
    restrictions: Mutex<HashMap<RoomName, Vec<Restriction>>>,
    bases: Mutex<Bases>,
}

/// Cursor bases in memory: the newest [`MEMORY_BASES`], by id.
#[derive(Debug, Default)]
struct Bases {
    by_id: HashMap<BaseId, CursorBase>,
    order: VecDeque<BaseId>,
    next: u64,
}

/// Cursor bases a memory engine keeps, the oldest dropped first. A reader makes one when it
/// opens on a cursor of many logs and at most one per half minute after (see the reader), so
/// this is hours of reconnections of thousands of multi-room clients; the rings, which hold
/// what a resume could still deliver, are forgotten sooner.
pub const MEMORY_BASES: usize = 65_536;

impl MemoryEngine {
    /// A fresh, empty engine with a random epoch.
    pub fn new() -> MemoryEngine {
        MemoryEngine {
            epoch: Epoch(rand::random()),
            heads: Mutex::default(),
            restrictions: Mutex::default(),
            bases: Mutex::default(),
        }
    }
}

impl Default for MemoryEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl Engine for MemoryEngine {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn durable(&self) -> bool {
        false
    }

    fn epoch(&self) -> Epoch {
        self.epoch
    }

    fn append<'a>(&'a self, draft: &'a Draft) -> BoxFuture<'a, Result<Seq, Error>> {
        let mut heads = self.heads.lock().expect("engine lock");
        let head = heads.entry(draft.log.clone()).or_default();
        *head = head.next();
        let seq = *head;
        Box::pin(async move { Ok(seq) })
    }

    fn head<'a>(&'a self, log: &'a LogId) -> BoxFuture<'a, Result<Seq, Error>> {
        let seq = self.heads.lock().expect("engine lock").get(log).copied().unwrap_or_default();
        Box::pin(async move { Ok(seq) })
    }

    fn read<'a>(
        &'a self,
        _log: &'a LogId,
        _after: Seq,
        _limit: usize,
    ) -> BoxFuture<'a, Result<History, Error>> {
        Box::pin(async { Ok(History::None) })
    }

    fn restrict<'a>(
        &'a self,
        room: &'a RoomName,
        restriction: &'a Restriction,
    ) -> BoxFuture<'a, Result<(), Error>> {
        let mut rooms = self.restrictions.lock().expect("engine lock");
        let kept = rooms.entry(room.clone()).or_default();
        kept.retain(|r| (&r.user, r.kind) != (&restriction.user, restriction.kind));
        if restriction.until_ms > 0 {
            kept.push(restriction.clone());
        }
        Box::pin(async { Ok(()) })
    }

    fn restrictions<'a>(
        &'a self,
        room: &'a RoomName,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<Vec<Restriction>, Error>> {
        let mut rooms = self.restrictions.lock().expect("engine lock");
        let in_force = rooms.get_mut(room).map_or_else(Vec::new, |kept| {
            kept.retain(|r| r.until_ms > now_ms);
            kept.clone()
        });
        Box::pin(async move { Ok(in_force) })
    }

    fn save_base<'a>(&'a self, base: &'a CursorBase) -> BoxFuture<'a, Result<Option<BaseId>, Error>> {
        let mut bases = self.bases.lock().expect("engine lock");
        bases.next += 1;
        let id = BaseId(bases.next);
        bases.by_id.insert(id, base.clone());
        bases.order.push_back(id);
        while bases.order.len() > MEMORY_BASES {
            if let Some(oldest) = bases.order.pop_front() {
                bases.by_id.remove(&oldest);
            }
        }
        Box::pin(async move { Ok(Some(id)) })
    }

    fn load_base<'a>(&'a self, id: BaseId) -> BoxFuture<'a, Result<Option<CursorBase>, Error>> {
        let base = self.bases.lock().expect("engine lock").by_id.get(&id).cloned();
        Box::pin(async move { Ok(base) })
    }
}
