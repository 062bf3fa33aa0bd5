//! The writer: one thread owns the connection that writes, and commits in groups.
//!
//! Every write (an append, a session change) is a message to this thread. It takes the first
//! one waiting, then everything else already queued (up to [`MAX_GROUP`]), runs them all in one
//! transaction and commits once; only then does each caller get its answer, so an ack means
//! "committed". Under load, one commit (the expensive part: the WAL write) serves many writes:
//! that is group commit, and it is what keeps durability nearly free.
//!
//! Seqs are handed out here, in the transaction that stores the event, from a cache of each
//! log's head; event ids (the order of arrival) too. If a commit fails, every write of the group
//! gets `unavailable`, the heads and ids it took are given back, and the store reports itself
//! failing until a commit goes through; while failing, the thread probes the file every
//! [`PROBE_EVERY`] so that it recovers by itself even with no traffic.
//!
//! Between groups, the thread also indexes what was appended ([`upkeep::index`], every
//! [`INDEX_EVERY`] or [`INDEX_STEP`] events) and applies retention (every
//! [`RETENTION_EVERY`]).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quartet_core::engine::{Health, SessionRecord};
use quartet_core::entry::{Draft, stored_scope};
use quartet_protocol::{Error, ErrorCode};
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use crate::upkeep::{self, Retention};

/// Most writes committed in one transaction. Bounds how long a group holds the others back.
pub(crate) const MAX_GROUP: usize = 1024;

/// While failing, how often the writer tries the file again with no traffic.
pub(crate) const PROBE_EVERY: Duration = Duration::from_secs(1);

/// How often retention runs.
pub(crate) const RETENTION_EVERY: Duration = Duration::from_secs(60);

/// How long appended events wait, at most, to be indexed. Longer: fewer pages written per
/// event (more events per room per step), more events for a history read to find unindexed.
pub(crate) const INDEX_EVERY: Duration = Duration::from_millis(1000);

/// Most events indexed in one step; also how many unindexed events make the writer index at
/// once, whatever the time. Bounds how long a step holds writes back, and how many events a
/// history read may have to look through unindexed.
pub(crate) const INDEX_STEP: i64 = 4096;

/// How often, at most, the writer lets the WAL start over ([`upkeep::restart_wal`]): the
/// WAL stays near what this much time of writes takes.
pub(crate) const RESTART_WAL_EVERY: Duration = Duration::from_secs(1);

/// An event as stored: the draft's text fields in one buffer (one allocation per publish, not
/// one per field), with where each ends.
#[derive(Debug)]
pub(crate) struct Row {
    text: String,
    /// Ends of the log, event, user, client and data fields; the message id, if any, is the
    /// rest of `text`.
    ends: [usize; 5],
    has_id: bool,
    scope: i64,
    ts: i64,
}

impl Row {
    pub(crate) fn new(draft: &Draft) -> Row {
        let id = draft.id.as_deref();
        let mut text = String::with_capacity(96 + draft.data.get().len() + id.map_or(0, str::len));
        let mut ends = [0; 5];
        let _ = write!(text, "{}", draft.log);
        ends[0] = text.len();
        for (i, field) in
            [draft.event.as_str(), draft.from.as_str(), draft.from_client.as_str(), draft.data.get()]
                .into_iter()
                .enumerate()
        {
            text.push_str(field);
            ends[i + 1] = text.len();
        }
        text.push_str(id.unwrap_or_default());
        Row { text, ends, has_id: id.is_some(), scope: stored_scope(draft), ts: draft.ts as i64 }
    }

    fn field(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.text[start..self.ends[i]]
    }

    pub(crate) fn log(&self) -> &str {
        self.field(0)
    }

    fn msg_id(&self) -> Option<&str> {
        self.has_id.then(|| &self.text[self.ends[4]..])
    }
}

/// One write, with where its answer goes.
pub(crate) enum Op {
    Append(Row, oneshot::Sender<Result<u64, Error>>),
    Head(String, oneshot::Sender<Result<u64, Error>>),
    SaveSession(SessionRecord, oneshot::Sender<Result<(), Error>>),
    DeleteSession(String, oneshot::Sender<Result<(), Error>>),
    Touch(Vec<(String, u64)>, oneshot::Sender<Result<(), Error>>),
    /// Stores a cursor base (user, positions as a cursor, Unix ms now); answers its id.
    SaveBase((String, String, u64), oneshot::Sender<Result<u64, Error>>),
    /// Keeps a restriction (room, user, kind, until ms; until 0 lifts it) and drops ended ones.
    Restrict(Restricted, oneshot::Sender<Result<(), Error>>),
    /// Shutdown, after the last write: index everything, copy the WAL into the file.
    Close(oneshot::Sender<Result<(), Error>>),
}

/// A restriction to keep (see [`Op::Restrict`]).
#[derive(Debug)]
pub(crate) struct Restricted {
    pub(crate) room: String,
    pub(crate) user: String,
    pub(crate) kind: &'static str,
    pub(crate) until_ms: u64,
    /// Now, Unix ms: restrictions ended by then are deleted.
    pub(crate) now_ms: u64,
}

/// What the writer publishes about itself.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) health: Mutex<Health>,
    pub(crate) commits: AtomicU64,
    pub(crate) committed_writes: AtomicU64,
    pub(crate) index_steps: AtomicU64,
    pub(crate) indexed_events: AtomicU64,
    pub(crate) syncs: AtomicU64,
    /// Checkpoint passes of the checkpoint thread (see `upkeep::checkpoint_while`).
    pub(crate) checkpoints: AtomicU64,
    /// Times the writer let the WAL start over (see `upkeep::restart_wal`).
    pub(crate) wal_restarts: AtomicU64,
    /// Set for good when a sync of the WAL failed (see `sync.rs`): why.
    pub(crate) sync_failed: Mutex<Option<String>>,
}

impl Default for State {
    fn default() -> State {
        State {
            health: Mutex::new(Health::Ok),
            commits: AtomicU64::new(0),
            committed_writes: AtomicU64::new(0),
            index_steps: AtomicU64::new(0),
            indexed_events: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            checkpoints: AtomicU64::new(0),
            wal_restarts: AtomicU64::new(0),
            sync_failed: Mutex::new(None),
        }
    }
}

impl State {
    /// A sync of the WAL failed: every write is refused from now on (see `sync.rs`).
    pub(crate) fn fail_for_good(&self, why: String) {
        *self.health.lock().expect("health lock") =
            Health::Failing(format!("sqlite: {why}; restart quartet"));
        *self.sync_failed.lock().expect("sync lock") = Some(why);
    }

    pub(crate) fn failing(&self) -> bool {
        !matches!(*self.health.lock().expect("health lock"), Health::Ok)
    }

    pub(crate) fn report(&self, outcome: Result<(), rusqlite::Error>) {
        let mut health = self.health.lock().expect("health lock");
        if self.sync_failed.lock().expect("sync lock").is_some() {
            return; // failing for good (`fail_for_good` said why)
        }
        match outcome {
            Ok(()) => {
                if !matches!(*health, Health::Ok) {
                    tracing::info!("the store takes writes again");
                }
                *health = Health::Ok;
            }
            Err(error) => {
                if matches!(*health, Health::Ok) {
                    tracing::error!(%error, "the store cannot take writes: refusing publishes until it can");
                }
                *health = Health::Failing(format!("sqlite: {error}"));
            }
        }
    }
}

pub(crate) fn unavailable(why: impl std::fmt::Display) -> Error {
    Error::new(ErrorCode::Unavailable, format!("the store cannot take writes: {why}"))
}

/// The answer a write gets once its group is committed.
enum Done {
    Seq(u64),
    Unit,
}

/// A write's answer on its way to the caller.
pub(crate) struct Answer(Op, Result<Done, Error>);

impl Answer {
    /// The same write, answered `unavailable` (its group could not be made durable).
    pub(crate) fn failed(self, why: &str) -> Answer {
        Answer(self.0, Err(unavailable(why)))
    }

    /// Hands the answer to the caller (a caller that gave up no longer listens: nothing to do).
    pub(crate) fn send(self) {
        let Answer(op, done) = self;
        match op {
            Op::Append(_, reply) | Op::Head(_, reply) | Op::SaveBase(_, reply) => {
                let _ = reply.send(done.map(|d| if let Done::Seq(seq) = d { seq } else { 0 }));
            }
            Op::SaveSession(_, reply)
            | Op::DeleteSession(_, reply)
            | Op::Touch(_, reply)
            | Op::Restrict(_, reply)
            | Op::Close(reply) => {
                let _ = reply.send(done.map(|_| ()));
            }
        }
    }
}

/// Where the writer hands the answers of a group: one message per group to a task of the
/// runtime, which wakes the callers from there. Waking each caller from this thread would
/// wake the runtime once per caller; on a busy core that is a switch back and forth for every
/// answer.
pub(crate) type Answers = tokio::sync::mpsc::UnboundedSender<Vec<Answer>>;

/// The task that wakes the callers; ends when the writer is gone.
pub(crate) async fn hand_out(mut groups: tokio::sync::mpsc::UnboundedReceiver<Vec<Answer>>) {
    while let Some(group) = groups.recv().await {
        group.into_iter().for_each(Answer::send);
    }
}

/// The thread that owns the writing connection.
pub(crate) struct Writer {
    conn: Connection,
    answers: Answers,
    /// With `--sqlite-sync full`: where committed groups go to be synced before they are
    /// answered (see `sync.rs`); `None`: answered at once.
    durable: Option<std::sync::mpsc::Sender<Vec<Answer>>>,
    state: Arc<State>,
    retention: Retention,
    /// The head of every log appended to since start (and of the others asked for). Every log
    /// with unindexed events is here: the file was fully indexed when it was opened.
    heads: HashMap<String, u64>,
    /// The id the next event gets.
    next_id: i64,
    /// The last id indexed.
    indexed: i64,
    last_index: Instant,
    last_wal_restart: Instant,
    /// `State::checkpoints` when the WAL was last restarted.
    checkpoints_seen: u64,
}

impl Writer {
    /// `conn` must be fully indexed ([`upkeep::catch_up`]), with `last_id` its last event id.
    pub(crate) fn new(
        conn: Connection,
        answers: Answers,
        durable: Option<std::sync::mpsc::Sender<Vec<Answer>>>,
        state: Arc<State>,
        retention: Retention,
        last_id: i64,
    ) -> Writer {
        Writer {
            conn,
            answers,
            durable,
            state,
            retention,
            heads: HashMap::new(),
            next_id: last_id + 1,
            indexed: last_id,
            last_index: Instant::now(),
            last_wal_restart: Instant::now(),
            checkpoints_seen: 0,
        }
    }

    /// The thread's loop; returns when every sender is gone (after indexing what is left).
    pub(crate) fn run(mut self, ops: Receiver<Op>) {
        // Retention runs at start too: a store reopened with a tighter rule applies it at once.
        let mut last_retention = Instant::now().checked_sub(RETENTION_EVERY).unwrap_or_else(Instant::now);
        loop {
            if last_retention.elapsed() >= RETENTION_EVERY {
                last_retention = Instant::now();
                self.index_all();
                if let Err(error) = upkeep::retain(&self.conn, self.retention) {
                    tracing::warn!(%error, "retention failed; will try again");
                }
            }
            self.restart_wal_when_due();
            let unindexed = self.next_id - 1 - self.indexed;
            if unindexed >= INDEX_STEP || (unindexed > 0 && self.last_index.elapsed() >= INDEX_EVERY) {
                self.index();
            }
            let failing = self.state.failing();
            let wait = if failing {
                PROBE_EVERY
            } else if self.next_id - 1 > self.indexed {
                INDEX_EVERY.saturating_sub(self.last_index.elapsed())
            } else {
                RETENTION_EVERY.saturating_sub(last_retention.elapsed())
            };
            match ops.recv_timeout(wait) {
                Ok(first) => self.commit(gather(&ops, first)),
                Err(RecvTimeoutError::Timeout) if failing => self.state.report(probe(&self.conn)),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.index_all();
                    return;
                }
            }
        }
    }

    /// Lets the WAL start over ([`upkeep::restart_wal`]) once [`RESTART_WAL_EVERY`] has passed
    /// and the checkpoint thread has made a pass since the last time: little is left to copy.
    fn restart_wal_when_due(&mut self) {
        let checkpoints = self.state.checkpoints.load(Ordering::Relaxed);
        if checkpoints == self.checkpoints_seen || self.last_wal_restart.elapsed() < RESTART_WAL_EVERY {
            return;
        }
        self.checkpoints_seen = checkpoints;
        self.last_wal_restart = Instant::now();
        match upkeep::restart_wal(&self.conn) {
            Ok(true) => {
                self.state.wal_restarts.fetch_add(1, Ordering::Relaxed);
            }
            Ok(false) => tracing::debug!("WAL restart held back by a reader; will try again"),
            Err(error) => tracing::debug!(%error, "WAL restart skipped; will try again"),
        }
    }

    /// Indexes every event appended so far, a step at a time.
    fn index_all(&mut self) {
        while self.indexed < self.next_id - 1 && self.index() {}
    }

    /// Indexes the oldest unindexed events, at most [`INDEX_STEP`]; false if that failed. A
    /// failure is logged and tried again later: reads stay right meanwhile (they look through
    /// what is not indexed), only slower.
    fn index(&mut self) -> bool {
        self.last_index = Instant::now();
        let to = (self.next_id - 1).min(self.indexed + INDEX_STEP);
        match upkeep::index(&self.conn, to) {
            Ok((indexed, events)) => {
                if events > 0 {
                    self.state.index_steps.fetch_add(1, Ordering::Relaxed);
                    self.state.indexed_events.fetch_add(events, Ordering::Relaxed);
                }
                self.indexed = indexed;
                true
            }
            Err(error) => {
                tracing::warn!(%error, "indexing failed; will try again");
                false
            }
        }
    }

    /// Commits the writes of `group`, then carries out the closes in it.
    fn commit(&mut self, group: Vec<Op>) {
        let (closes, writes): (Vec<Op>, Vec<Op>) =
            group.into_iter().partition(|op| matches!(op, Op::Close(_)));
        if !writes.is_empty() {
            self.commit_writes(writes);
        }
        for close in closes {
            if let Op::Close(reply) = close {
                let _ = reply.send(self.close());
            }
        }
    }

    /// Indexes everything, then copies the WAL into the file and empties it (TRUNCATE: waits
    /// for readers to finish, which at shutdown are done): the file alone then holds it all.
    fn close(&mut self) -> Result<(), Error> {
        self.index_all();
        let busy: i64 = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))
            .map_err(|e| unavailable(format!("cannot checkpoint at close: {e}")))?;
        if busy != 0 {
            return Err(unavailable("the WAL could not be copied whole at close: a reader held it"));
        }
        Ok(())
    }

    fn commit_writes(&mut self, group: Vec<Op>) {
        if let Some(why) = self.state.sync_failed.lock().expect("sync lock").clone() {
            // After a failed sync nothing written since can be trusted to reach the disk.
            self.deliver(group.into_iter().map(|op| Answer(op, Err(unavailable(&why)))).collect());
            return;
        }
        // What to give back if the group is not committed: the heads it moved, the ids it took.
        let mut undo: HashMap<String, u64> = HashMap::new();
        let first_id = self.next_id;
        let outcome = self.try_commit(&group, &mut undo);
        let writes = group.len() as u64;
        match outcome {
            Ok(done) => {
                self.state.commits.fetch_add(1, Ordering::Relaxed);
                self.state.committed_writes.fetch_add(writes, Ordering::Relaxed);
                self.state.report(Ok(()));
                let answers = group.into_iter().zip(done).map(|(op, done)| Answer(op, Ok(done))).collect();
                match &self.durable {
                    // Synced on the sync thread while this one goes on with the next group.
                    Some(durable) => {
                        if let Err(unsent) = durable.send(answers) {
                            self.deliver(
                                unsent.0.into_iter().map(|a| a.failed("the sync thread stopped")).collect(),
                            );
                        }
                    }
                    None => self.deliver(answers),
                }
            }
            Err(error) => {
                self.heads.extend(undo);
                self.next_id = first_id;
                let message = error.to_string();
                self.state.report(Err(error));
                self.deliver(group.into_iter().map(|op| Answer(op, Err(unavailable(&message)))).collect());
            }
        }
    }

    fn deliver(&self, answers: Vec<Answer>) {
        if let Err(unsent) = self.answers.send(answers) {
            // The task is gone (its runtime stopped): answer from here.
            unsent.0.into_iter().for_each(Answer::send);
        }
    }

    fn try_commit(
        &mut self,
        group: &[Op],
        undo: &mut HashMap<String, u64>,
    ) -> Result<Vec<Done>, rusqlite::Error> {
        let tx = self.conn.transaction()?;
        let mut done = Vec::with_capacity(group.len());
        for op in group {
            done.push(apply(&tx, &mut self.heads, &mut self.next_id, undo, op)?);
        }
        tx.commit()?;
        Ok(done)
    }
}

/// `first` and what else is queued, after letting whatever else is ready on this core run
/// first (on a busy core, the runtime threads about to send more writes): the group gets
/// bigger, and one commit serves more writes. Free on an idle core.
fn gather(ops: &Receiver<Op>, first: Op) -> Vec<Op> {
    std::thread::yield_now();
    let mut group = vec![first];
    while group.len() < MAX_GROUP {
        match ops.try_recv() {
            Ok(op) => group.push(op),
            Err(_) => break,
        }
    }
    group
}

/// A write that changes nothing, to see whether the file takes writes again.
fn probe(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.execute_batch("BEGIN IMMEDIATE; UPDATE meta SET value = value WHERE key = 'schema'; COMMIT;")
        .inspect_err(|_| {
            let _ = conn.execute_batch("ROLLBACK");
        })
}

/// The head of `log`: from the cache, else from the `logs` table (right for a log missing
/// from the cache: none of its events is unindexed).
fn head(tx: &Connection, heads: &mut HashMap<String, u64>, log: &str) -> Result<u64, rusqlite::Error> {
    if let Some(head) = heads.get(log) {
        return Ok(*head);
    }
    let head: Option<i64> = tx
        .prepare_cached("SELECT head FROM logs WHERE log = ?1")?
        .query_row([log], |row| row.get(0))
        .optional()?;
    let head = head.unwrap_or(0) as u64;
    heads.insert(log.to_owned(), head);
    Ok(head)
}

fn apply(
    tx: &Connection,
    heads: &mut HashMap<String, u64>,
    next_id: &mut i64,
    undo: &mut HashMap<String, u64>,
    op: &Op,
) -> Result<Done, rusqlite::Error> {
    match op {
        Op::Append(row, _) => {
            let log = row.log();
            let before = head(tx, heads, log)?;
            let seq = before + 1;
            tx.prepare_cached(
                "INSERT INTO events (id, log, seq, event, from_user, from_client, scope, data, ts, msg_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                *next_id,
                log,
                seq as i64,
                row.field(1),
                row.field(2),
                row.field(3),
                row.scope,
                row.field(4),
                row.ts,
                row.msg_id()
            ])?;
            *next_id += 1;
            if !undo.contains_key(log) {
                undo.insert(log.to_owned(), before);
            }
            if let Some(head) = heads.get_mut(log) {
                *head = seq;
            }
            Ok(Done::Seq(seq))
        }
        Op::Head(log, _) => Ok(Done::Seq(head(tx, heads, log)?)),
        Op::SaveBase((user, positions, now_ms), _) => {
            tx.prepare_cached("INSERT INTO cursor_bases (user, created_ms, positions) VALUES (?1, ?2, ?3)")?
                .execute(params![user, *now_ms as i64, positions])?;
            Ok(Done::Seq(tx.last_insert_rowid() as u64))
        }
        Op::Close(_) => Ok(Done::Unit), // taken out of the group before (see `Writer::commit`)
        Op::SaveSession(s, _) => {
            let client = s.client.as_str();
            tx.prepare_cached(
                "INSERT OR REPLACE INTO sessions (client, user, inbox_from, last_seen, access)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                client,
                s.user.as_str(),
                s.inbox_from.0 as i64,
                s.last_seen_ms as i64,
                s.grant.to_json()
            ])?;
            tx.prepare_cached("DELETE FROM memberships WHERE client = ?1")?.execute([client])?;
            let mut insert =
                tx.prepare_cached("INSERT INTO memberships (client, room, floor) VALUES (?1, ?2, ?3)")?;
            for (room, floor) in &s.rooms {
                insert.execute(params![client, room.as_str(), floor.0 as i64])?;
            }
            Ok(Done::Unit)
        }
        Op::DeleteSession(client, _) => {
            for table in ["sessions", "memberships"] {
                tx.prepare_cached(&format!("DELETE FROM {table} WHERE client = ?1"))?.execute([client])?;
            }
            Ok(Done::Unit)
        }
        Op::Touch(seen, _) => {
            let mut update = tx.prepare_cached("UPDATE sessions SET last_seen = ?2 WHERE client = ?1")?;
            for (client, at) in seen {
                update.execute(params![client, *at as i64])?;
            }
            Ok(Done::Unit)
        }
        Op::Restrict(r, _) => {
            tx.prepare_cached("DELETE FROM restrictions WHERE until_ms <= ?1")?.execute([r.now_ms as i64])?;
            if r.until_ms > 0 {
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO restrictions (room, user, kind, until_ms) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![r.room, r.user, r.kind, r.until_ms as i64])?;
            } else {
                tx.prepare_cached("DELETE FROM restrictions WHERE room = ?1 AND user = ?2 AND kind = ?3")?
                    .execute(params![r.room, r.user, r.kind])?;
            }
            Ok(Done::Unit)
        }
    }
}
