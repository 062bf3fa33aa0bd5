//! # quartet-sqlite: the embedded durable store
//!
//! One SQLite file holds every room log and inbox (with the message ids of the publishes, so
//! that a resend after a restart is acked again, not stored twice), the seq of each log, and
//! the client sessions (user, rooms and their floors, last sign of life). It is
//! quartet's default store (`--store sqlite:quartet.db`): nothing to install, and an ack means
//! the event is committed, so a crash (even `kill -9`) right after it loses nothing.
//!
//! - Writes go to one thread that owns the writing connection and commits in groups
//!   (`writer.rs`): many publishes, one commit. A publish appends a row in order of arrival;
//!   the events are indexed by log a step at a time (`schema.rs` says why, `upkeep.rs` how).
//!   The file is in WAL mode, so readers never wait for the writer.
//! - Reads older than the hub's in-memory rings ([`Engine::read`]) go to a small pool of
//!   read-only connections, on tokio's blocking threads: the runtime is never blocked on disk.
//! - The epoch is made once, when the file is created, and kept: cursors survive restarts.
//!
//! Durability: with [`Sync::Full`] (the default) the WAL is synced to disk (`fdatasync`) after
//! every commit and before its acks, on a thread of its own (`sync.rs`), so the writer commits
//! the next group meanwhile and one sync covers every commit before it: an ack survives a power
//! loss. With [`Sync::Normal`] syncing is left to the OS and to checkpoints: an ack survives a
//! crash of quartet, not of the machine.

mod schema;
mod sync;
mod upkeep;
mod writer;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quartet_core::Grant;
use quartet_core::engine::{BoxFuture, CursorBase, Health, History, SessionRecord, wall_ms};
use quartet_core::entry::{Draft, Entry, StoredEvent};
use quartet_core::moderation::{Restriction, RestrictionKind};
use quartet_core::{Engine, limits::REMEMBERED_MESSAGE_IDS};
use quartet_protocol::ids::Redacted;
use quartet_protocol::{BaseId, ClientId, Cursor, Epoch, Error, LogId, RoomName, Seq, UserName};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde_json::value::RawValue;
use tokio::sync::oneshot;

use crate::upkeep::Retention;
use crate::writer::{Op, Restricted, Row, State, Writer, unavailable};

/// Read-only connections kept open for reads older than the rings.
const READ_CONNECTIONS: usize = 2;

/// Bytes per page of a new file. A commit writes every page it changed to the WAL whole, and
/// publishes to many rooms change one page per room: smaller pages write less for the same rows.
const PAGE_SIZE: usize = 1024;

/// What a WAL file is cut back to when it starts over (after a burst grew it), in bytes.
const WAL_SIZE_LIMIT: u64 = 64 << 20;

/// How long a connection waits for a lock before failing (only checkpoints contend in WAL).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// When the WAL is synced to disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sync {
    /// Before every ack: an ack survives a power loss. One sync covers every commit before it.
    #[default]
    Full,
    /// Left to the OS: an ack survives a crash of quartet, not a crash of the machine.
    Normal,
}

/// How the store is opened.
#[derive(Clone, Debug)]
pub struct Options {
    /// Keep at most this many events per log (older ones are dropped; readers get a `retention`
    /// gap). `None`: no count limit.
    pub retain_events: Option<u64>,
    /// Drop events older than this. `None`: no age limit.
    pub retain_for: Option<Duration>,
    /// When the WAL is synced.
    pub sync: Sync,
}

/// Defaults: a million events per log, 30 days, synced at every commit.
impl Default for Options {
    fn default() -> Self {
        Options {
            retain_events: Some(DEFAULT_RETAIN_EVENTS),
            retain_for: Some(DEFAULT_RETAIN_FOR),
            sync: Sync::Full,
        }
    }
}

/// Events kept per log by default: a busy room's month, within a few hundred MB.
pub const DEFAULT_RETAIN_EVENTS: u64 = 1_000_000;

/// Age past which events are dropped by default.
pub const DEFAULT_RETAIN_FOR: Duration = Duration::from_secs(30 * 24 * 3600);

/// See the crate doc.
pub struct SqliteEngine {
    path: PathBuf,
    epoch: Epoch,
    writes: Sender<Op>,
    /// The receiving end of the writer's answers, until the first write starts the task that
    /// hands them out (on the runtime of that write: `open` may run outside any).
    hand_out: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<Vec<writer::Answer>>>>,
    /// Done once that task runs (a check of one atomic on every later write, no lock).
    handing_out: std::sync::Once,
    state: Arc<State>,
    reads: Arc<Mutex<Vec<Connection>>>,
}

impl SqliteEngine {
    /// Opens (creating if needed) the store at `path` and starts its threads: `sqlite-writer`,
    /// `sqlite-sync` (with `--sqlite-sync full`) and `sqlite-checkpt` (names of at most 15
    /// bytes, what Linux keeps: `top -H`, `ps -L` and `quartet bench` tell them apart by it).
    pub fn open(path: &Path, options: Options) -> Result<SqliteEngine, String> {
        let conn = Connection::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| e.to_string())?;
        // The writer never syncs itself (`NORMAL`: in WAL mode, no sync at commit): with
        // `Sync::Full` the sync thread syncs the WAL after each commit, before the acks (see
        // `sync.rs`). Checkpoints (copying the WAL back into the file, syncing both) run on a
        // thread of their own, so commits rarely wait for one; once a second the writer copies
        // what is left after a pass itself, so that the WAL starts over (`upkeep::restart_wal`).
        conn.execute_batch(&format!(
            "PRAGMA page_size = {PAGE_SIZE}; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
             PRAGMA wal_autocheckpoint = 0; PRAGMA temp_store = MEMORY; \
             PRAGMA journal_size_limit = {WAL_SIZE_LIMIT};"
        ))
        .map_err(|e| format!("cannot set up {}: {e}", path.display()))?;
        let epoch = Epoch(schema::prepare(&conn)?);
        let mut reads = Vec::with_capacity(READ_CONNECTIONS);
        for _ in 0..READ_CONNECTIONS {
            reads.push(open_reader(path)?);
        }
        let last_id = upkeep::catch_up(&conn).map_err(|e| format!("cannot index {}: {e}", path.display()))?;
        let state = Arc::new(State::default());
        let (tx, rx) = std::sync::mpsc::channel();
        let retention = Retention { events: options.retain_events, age: options.retain_for };
        let (answers, hand_out) = tokio::sync::mpsc::unbounded_channel();
        let durable = match options.sync {
            Sync::Normal => None,
            Sync::Full => {
                let mut wal = path.as_os_str().to_owned();
                wal.push("-wal");
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&wal)
                    .map_err(|e| format!("cannot open {} to sync it: {e}", Path::new(&wal).display()))?;
                let (groups, synced) = std::sync::mpsc::channel();
                let (answers, state) = (answers.clone(), state.clone());
                std::thread::Builder::new()
                    .name("sqlite-sync".into())
                    .spawn(move || sync::run(file, synced, answers, state))
                    .map_err(|e| format!("cannot start the sync thread: {e}"))?;
                Some(groups)
            }
        };
        let writer = Writer::new(conn, answers, durable, state.clone(), retention, last_id);
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| format!("cannot start the writer thread: {e}"))?;
        let checkpoints =
            Connection::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let alive = std::sync::Arc::downgrade(&state);
        std::thread::Builder::new()
            .name("sqlite-checkpt".into())
            .spawn(move || upkeep::checkpoint_while(&checkpoints, &alive))
            .map_err(|e| format!("cannot start the checkpoint thread: {e}"))?;
        Ok(SqliteEngine {
            path: path.to_owned(),
            epoch,
            writes: tx,
            hand_out: Mutex::new(Some(hand_out)),
            handing_out: std::sync::Once::new(),
            state,
            reads: Arc::new(Mutex::new(reads)),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Commits so far and the writes they carried (their ratio is the mean group size).
    pub fn commit_stats(&self) -> (u64, u64) {
        (self.state.commits.load(Ordering::Relaxed), self.state.committed_writes.load(Ordering::Relaxed))
    }

    /// Sends a write to the writer thread and waits for its commit.
    async fn write<T>(&self, op: impl FnOnce(oneshot::Sender<Result<T, Error>>) -> Op) -> Result<T, Error> {
        self.handing_out.call_once(|| {
            if let Some(answers) = self.hand_out.lock().expect("hand-out lock").take() {
                tokio::spawn(writer::hand_out(answers));
            }
        });
        let (reply, answer) = oneshot::channel();
        self.writes.send(op(reply)).map_err(|_| unavailable("the writer thread stopped"))?;
        answer.await.map_err(|_| unavailable("the writer thread stopped"))?
    }

    /// Runs `read` on a read-only connection, on a blocking thread.
    async fn read_with<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, Error> {
        let (pool, path) = (self.reads.clone(), self.path.clone());
        tokio::task::spawn_blocking(move || {
            let conn = pool.lock().expect("read pool lock").pop();
            let conn = match conn {
                Some(conn) => conn,
                None => open_reader(&path).map_err(unavailable)?,
            };
            let result = read(&conn).map_err(|e| unavailable(format!("read failed: {e}")));
            let mut pool = pool.lock().expect("read pool lock");
            if pool.len() < READ_CONNECTIONS {
                pool.push(conn);
            }
            result
        })
        .await
        .map_err(|e| unavailable(format!("read task failed: {e}")))?
    }
}

fn open_reader(path: &Path) -> Result<Connection, String> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| format!("cannot open {} for reading: {e}", path.display()))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| e.to_string())?;
    Ok(conn)
}

/// The columns of one stored event, as read.
type StoredRow = (i64, String, String, String, i64, String, i64);

/// An entry rebuilt from its row; `None` if the row is not one quartet wrote.
fn entry_of(log: &LogId, (seq, event, from, client, scope, data, ts): StoredRow) -> Option<Arc<Entry>> {
    let stored = StoredEvent {
        seq: seq.max(0) as u64,
        event: &event,
        from: &from,
        from_client: &client,
        scope,
        data: RawValue::from_string(data).ok()?,
        ts: ts.max(0) as u64,
    };
    Entry::from_stored(log, stored)
}

impl Engine for SqliteEngine {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn durable(&self) -> bool {
        true
    }

    fn epoch(&self) -> Epoch {
        self.epoch
    }

    fn health(&self) -> Health {
        self.state.health.lock().expect("health lock").clone()
    }

    fn metrics(&self) -> Vec<(&'static str, &'static str, u64)> {
        let (commits, writes) = self.commit_stats();
        let steps = self.state.index_steps.load(Ordering::Relaxed);
        let indexed = self.state.indexed_events.load(Ordering::Relaxed);
        vec![
            ("quartet_sqlite_commits_total", "Transactions committed (each a group of writes).", commits),
            (
                "quartet_sqlite_writes_total",
                "Writes committed; divided by commits: the mean group size.",
                writes,
            ),
            (
                "quartet_sqlite_syncs_total",
                "Syncs of the WAL to disk (--sqlite-sync full); one covers every commit before it.",
                self.state.syncs.load(Ordering::Relaxed),
            ),
            (
                "quartet_sqlite_wal_restarts_total",
                "Times the WAL was fully copied into the file by the writer and started over.",
                self.state.wal_restarts.load(Ordering::Relaxed),
            ),
            (
                "quartet_sqlite_index_steps_total",
                "Index steps (events appended since the last step, indexed in one transaction).",
                steps,
            ),
            (
                "quartet_sqlite_indexed_events_total",
                "Events indexed; divided by index steps: the mean step size.",
                indexed,
            ),
        ]
    }

    fn append<'a>(&'a self, draft: &'a Draft) -> BoxFuture<'a, Result<Seq, Error>> {
        let row = Row::new(draft);
        Box::pin(async move { self.write(|reply| Op::Append(row, reply)).await.map(Seq) })
    }

    fn head<'a>(&'a self, log: &'a LogId) -> BoxFuture<'a, Result<Seq, Error>> {
        let log = log.to_string();
        Box::pin(async move { self.write(|reply| Op::Head(log, reply)).await.map(Seq) })
    }

    fn read<'a>(&'a self, log: &'a LogId, after: Seq, limit: usize) -> BoxFuture<'a, Result<History, Error>> {
        let log = log.clone();
        Box::pin(async move {
            let entries = self.read_with(move |conn| read_log(conn, &log, after, limit)).await?;
            Ok(History::Events(entries))
        })
    }

    fn save_session<'a>(&'a self, session: &'a SessionRecord) -> BoxFuture<'a, Result<(), Error>> {
        let session = session.clone();
        Box::pin(async move { self.write(|reply| Op::SaveSession(session, reply)).await })
    }

    fn delete_session<'a>(&'a self, client: &'a ClientId) -> BoxFuture<'a, Result<(), Error>> {
        let client = client.to_string();
        Box::pin(async move { self.write(|reply| Op::DeleteSession(client, reply)).await })
    }

    fn touch_sessions<'a>(&'a self, seen: &'a [(ClientId, u64)]) -> BoxFuture<'a, Result<(), Error>> {
        let seen = seen.iter().map(|(c, at)| (c.to_string(), *at)).collect();
        Box::pin(async move { self.write(|reply| Op::Touch(seen, reply)).await })
    }

    fn load_sessions(&self) -> BoxFuture<'_, Result<Vec<SessionRecord>, Error>> {
        Box::pin(self.read_with(load_sessions))
    }

    fn restrict<'a>(&'a self, room: &'a RoomName, r: &'a Restriction) -> BoxFuture<'a, Result<(), Error>> {
        let restricted = Restricted {
            room: room.to_string(),
            user: r.user.to_string(),
            kind: r.kind.as_str(),
            until_ms: r.until_ms,
            now_ms: wall_ms(),
        };
        Box::pin(async move { self.write(|reply| Op::Restrict(restricted, reply)).await })
    }

    fn restrictions<'a>(
        &'a self,
        room: &'a RoomName,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<Vec<Restriction>, Error>> {
        let room = room.to_string();
        Box::pin(self.read_with(move |conn| restrictions(conn, &room, now_ms)))
    }

    fn save_base<'a>(&'a self, base: &'a CursorBase) -> BoxFuture<'a, Result<Option<BaseId>, Error>> {
        let positions = Cursor::new(self.epoch, base.positions.clone()).encode();
        let saved = (base.user.to_string(), positions, wall_ms());
        Box::pin(async move { Ok(Some(BaseId(self.write(|reply| Op::SaveBase(saved, reply)).await?))) })
    }

    fn load_base<'a>(&'a self, id: BaseId) -> BoxFuture<'a, Result<Option<CursorBase>, Error>> {
        Box::pin(self.read_with(move |conn| load_base(conn, id)))
    }

    fn close(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(self.write(Op::Close))
    }
}

/// A stored cursor base; `None` if there is none by that id, or one this build cannot read.
fn load_base(conn: &Connection, id: BaseId) -> Result<Option<CursorBase>, rusqlite::Error> {
    let row: Option<(String, String)> = conn
        .prepare_cached("SELECT user, positions FROM cursor_bases WHERE id = ?1")?
        .query_row([id.0 as i64], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    Ok(row.and_then(|(user, positions)| {
        Some(CursorBase {
            user: UserName::parse(&user).ok()?,
            positions: Cursor::decode(&positions).ok()?.positions,
        })
    }))
}

/// The restrictions of `room` in force at `now_ms`.
fn restrictions(conn: &Connection, room: &str, now_ms: u64) -> Result<Vec<Restriction>, rusqlite::Error> {
    let mut query = conn
        .prepare_cached("SELECT user, kind, until_ms FROM restrictions WHERE room = ?1 AND until_ms > ?2")?;
    let rows = query.query_map(params![room, now_ms as i64], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, i64>(2)?))
    })?;
    let mut kept = Vec::new();
    for row in rows {
        let (user, kind, until) = row?;
        // A row this build cannot read (a name or kind from elsewhere) is skipped, not fatal.
        if let (Ok(user), Some(kind)) = (UserName::parse(&user), RestrictionKind::parse(&kind)) {
            kept.push(Restriction { user, kind, until_ms: until as u64 });
        }
    }
    Ok(kept)
}

/// Up to `limit` events of `log` after `after`: the indexed ones, then those not indexed yet,
/// in one read transaction (so that an index step in between cannot hide or repeat any).
fn read_log(
    conn: &Connection,
    log: &LogId,
    after: Seq,
    limit: usize,
) -> Result<Vec<Arc<Entry>>, rusqlite::Error> {
    let tx = conn.unchecked_transaction()?;
    let indexed = upkeep::indexed(&tx)?;
    let name = log.to_string();
    let mut rows: Vec<StoredRow> = Vec::new();
    let columns = |row: &rusqlite::Row<'_>| -> Result<StoredRow, rusqlite::Error> {
        Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?, row.get(6)?))
    };
    let mut select = tx.prepare_cached(
        "SELECT e.seq, e.event, e.from_user, e.from_client, e.scope, e.data, e.ts
         FROM event_index i JOIN events e ON e.id = i.id
         WHERE i.log = ?1 AND i.seq > ?2 ORDER BY i.seq LIMIT ?3",
    )?;
    for row in select.query_map(params![name, after.0 as i64, limit as i64], columns)? {
        rows.push(row?);
    }
    if rows.len() < limit {
        // A log's seqs grow with the ids: its unindexed events come after its indexed ones.
        let after = rows.last().map_or(after.0 as i64, |row| row.0);
        let mut tail = tx.prepare_cached(
            "SELECT seq, event, from_user, from_client, scope, data, ts FROM events
             WHERE id > ?1 AND log = ?2 AND seq > ?3 ORDER BY id LIMIT ?4",
        )?;
        for row in tail.query_map(params![indexed, name, after, (limit - rows.len()) as i64], columns)? {
            rows.push(row?);
        }
    }
    drop(select);
    tx.finish()?;
    let mut entries = Vec::with_capacity(rows.len());
    for row in rows {
        let seq = row.0;
        match entry_of(log, row) {
            Some(entry) => entries.push(entry),
            None => tracing::warn!(log = %log, seq, "skipping a stored event quartet cannot read"),
        }
    }
    Ok(entries)
}

/// Every kept session with its rooms and its latest acks.
fn load_sessions(conn: &Connection) -> Result<Vec<SessionRecord>, rusqlite::Error> {
    let tx = conn.unchecked_transaction()?;
    let mut kept = Vec::new();
    let mut select = tx.prepare("SELECT client, user, inbox_from, last_seen, access FROM sessions")?;
    let rows = select.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, i64>(2)?,
            row.get::<_, i64>(3)?,
            row.get::<_, Option<String>>(4)?,
        ))
    })?;
    for row in rows {
        kept.push(row?);
    }
    let mut acks = recent_acks(&tx, kept.iter().map(|(client, ..)| client.as_str()))?;
    let mut rooms = tx.prepare("SELECT room, floor FROM memberships WHERE client = ?1")?;
    let mut sessions = Vec::with_capacity(kept.len());
    for (client, user, inbox_from, last_seen, access) in kept {
        // A grant that cannot be read drops the session: never widen a client's rights.
        let (Ok(id), Ok(user), Ok(grant)) =
            (ClientId::from_wire(&client), UserName::parse(&user), Grant::from_stored(access.as_deref()))
        else {
            tracing::warn!(client = %Redacted(&client), "skipping a stored session quartet cannot read");
            continue;
        };
        let rooms = rooms
            .query_map([&client], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
            .filter_map(Result::ok)
            .filter_map(|(room, floor)| Some((RoomName::parse(&room).ok()?, Seq(floor.max(0) as u64))))
            .collect();
        sessions.push(SessionRecord {
            client: id,
            user,
            grant,
            inbox_from: Seq(inbox_from.max(0) as u64),
            rooms,
            last_seen_ms: last_seen.max(0) as u64,
            acks: acks.remove(&client).map(Vec::from).unwrap_or_default(),
        });
    }
    Ok(sessions)
}

/// Events looked through at start for the acks of message ids: a resend is recognised after a
/// restart if its first send is among the last this many events stored (resends come seconds
/// after the first send, not a million events later). Acks are not stored apart: that would
/// write a row more per publish.
const ACKS_LOOKED_THROUGH: i64 = 1_000_000;

/// A client's latest acks, oldest first: message id, log, seq.
type Acks = VecDeque<(String, LogId, Seq)>;

/// The latest acks (at most what the hub remembers) of each of `clients`.
fn recent_acks<'a>(
    conn: &Connection,
    clients: impl Iterator<Item = &'a str>,
) -> Result<HashMap<String, Acks>, rusqlite::Error> {
    let mut acks: HashMap<String, Acks> =
        clients.map(|client| (client.to_owned(), VecDeque::new())).collect();
    if acks.is_empty() {
        return Ok(acks);
    }
    let last: Option<i64> = conn.query_row("SELECT max(id) FROM events", [], |row| row.get(0))?;
    let from = last.unwrap_or(0) - ACKS_LOOKED_THROUGH;
    let mut select = conn.prepare(
        "SELECT from_client, msg_id, log, seq FROM events WHERE id > ?1 AND msg_id IS NOT NULL ORDER BY id",
    )?;
    let mut rows = select.query([from])?;
    while let Some(row) = rows.next()? {
        let client: String = row.get(0)?;
        let Some(mine) = acks.get_mut(&client) else { continue };
        let Ok(log) = LogId::parse(&row.get::<_, String>(2)?) else { continue };
        mine.push_back((row.get(1)?, log, Seq(row.get::<_, i64>(3)?.max(0) as u64)));
        if mine.len() > REMEMBERED_MESSAGE_IDS {
            mine.pop_front();
        }
    }
    Ok(acks)
}
