//! The writer: one thread owns the connection that writes, and commits in groups.
//!
//! Every write (an append, a session change) is a message to this thread. It takes the first
//! one waiting, then everything else already queued (up to [`MAX_GROUP`]), runs them all in one
//! transaction and commits once; only then does each caller get its answer, so an ack means
//! "committed". Under load, one commit (the expensive part: the WAL write) serves many writes:
//! that is group commit, and it is what keeps durability nearly free.
//!
//! Seqs are handed out here, in the transaction that stores the event, from a cache of each
//! log's head (`logs` table). If a commit fails, every write of the group gets `unavailable`, the
//! cache is dropped (the next group reads the heads again), and the store reports itself failing
//! until a commit goes through; while failing, the thread probes the file every
//! [`PROBE_EVERY`] so that it recovers by itself even with no traffic.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use quartet_core::engine::{Health, SessionRecord};
use quartet_protocol::{Error, ErrorCode};
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

/// Most writes committed in one transaction. Bounds how long a group holds the others back.
pub(crate) const MAX_GROUP: usize = 1024;

/// While failing, how often the writer tries the file again with no traffic.
pub(crate) const PROBE_EVERY: Duration = Duration::from_secs(1);

/// How often retention runs.
pub(crate) const RETENTION_EVERY: Duration = Duration::from_secs(60);

/// Oldest events examined per log per retention run, so one run stays short.
const RETENTION_STEP: i64 = 10_000;

/// An event as stored: the draft's fields as text.
#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) log: String,
    pub(crate) event: String,
    pub(crate) from_user: String,
    pub(crate) from_client: String,
    pub(crate) scope: i64,
    pub(crate) data: String,
    pub(crate) ts: i64,
    pub(crate) msg_id: Option<String>,
}

/// One write, with where its answer goes.
pub(crate) enum Op {
    Append(Row, oneshot::Sender<Result<u64, Error>>),
    Head(String, oneshot::Sender<Result<u64, Error>>),
    SaveSession(SessionRecord, oneshot::Sender<Result<(), Error>>),
    DeleteSession(String, oneshot::Sender<Result<(), Error>>),
    Touch(Vec<(String, u64)>, oneshot::Sender<Result<(), Error>>),
}

/// What the writer publishes about itself.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) health: Mutex<Health>,
    pub(crate) commits: std::sync::atomic::AtomicU64,
    pub(crate) committed_writes: std::sync::atomic::AtomicU64,
}

/// How long events are kept.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Retention {
    pub(crate) events: Option<u64>,
    pub(crate) age: Option<Duration>,
}

pub(crate) fn unavailable(why: impl std::fmt::Display) -> Error {
    Error::new(ErrorCode::Unavailable, format!("the store cannot take writes: {why}"))
}

/// The answer a write gets once its group is committed.
enum Done {
    Seq(u64),
    Unit,
}

/// The writer thread's loop; returns when every sender is gone.
pub(crate) fn run(mut conn: Connection, ops: Receiver<Op>, state: Arc<State>, retention: Retention) {
    let mut heads: HashMap<String, u64> = HashMap::new();
    // Retention runs at start too: a store reopened with a tighter rule applies it at once.
    let mut last_retention = Instant::now().checked_sub(RETENTION_EVERY).unwrap_or_else(Instant::now);
    loop {
        if last_retention.elapsed() >= RETENTION_EVERY {
            last_retention = Instant::now();
            if let Err(error) = retain(&conn, retention) {
                tracing::warn!(%error, "retention failed; will try again");
            }
        }
        let failing = !matches!(*state.health.lock().expect("health lock"), Health::Ok);
        let wait = if failing { PROBE_EVERY } else { RETENTION_EVERY };
        let mut group = Vec::new();
        match ops.recv_timeout(wait) {
            Ok(op) => group.push(op),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        while group.len() < MAX_GROUP {
            match ops.try_recv() {
                Ok(op) => group.push(op),
                Err(_) => break,
            }
        }
        if group.is_empty() {
            if failing {
                report(&state, probe(&conn));
            }
        } else {
            commit(&mut conn, &mut heads, group, &state);
        }
    }
}

fn report(state: &State, outcome: Result<(), rusqlite::Error>) {
    let mut health = state.health.lock().expect("health lock");
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

/// A write that changes nothing, to see whether the file takes writes again.
fn probe(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.execute_batch("BEGIN IMMEDIATE; UPDATE meta SET value = value WHERE key = 'schema'; COMMIT;")
        .inspect_err(|_| {
            let _ = conn.execute_batch("ROLLBACK");
        })
}

fn commit(conn: &mut Connection, heads: &mut HashMap<String, u64>, group: Vec<Op>, state: &State) {
    let outcome = (|| {
        let tx = conn.transaction()?;
        let mut done = Vec::with_capacity(group.len());
        let mut touched: HashMap<String, u64> = HashMap::new();
        for op in &group {
            done.push(apply(&tx, heads, &mut touched, op)?);
        }
        {
            let mut upsert = tx.prepare_cached(
                "INSERT INTO logs (log, head) VALUES (?1, ?2) ON CONFLICT (log) DO UPDATE SET head = excluded.head",
            )?;
            for (log, head) in &touched {
                upsert.execute(params![log, *head as i64])?;
            }
        }
        tx.commit()?;
        Ok::<_, rusqlite::Error>(done)
    })();
    let writes = group.len() as u64;
    match outcome {
        Ok(done) => {
            state.commits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            state.committed_writes.fetch_add(writes, std::sync::atomic::Ordering::Relaxed);
            report(state, Ok(()));
            for (op, done) in group.into_iter().zip(done) {
                answer(op, Ok(done));
            }
        }
        Err(error) => {
            heads.clear(); // what the failed group assigned was never stored
            let message = error.to_string();
            report(state, Err(error));
            for op in group {
                answer(op, Err(unavailable(&message)));
            }
        }
    }
}

fn answer(op: Op, done: Result<Done, Error>) {
    // A caller that gave up (its request was cancelled) no longer listens: nothing to do.
    match op {
        Op::Append(_, reply) | Op::Head(_, reply) => {
            let _ = reply.send(done.map(|d| if let Done::Seq(seq) = d { seq } else { 0 }));
        }
        Op::SaveSession(_, reply) | Op::DeleteSession(_, reply) | Op::Touch(_, reply) => {
            let _ = reply.send(done.map(|_| ()));
        }
    }
}

/// The head of `log`: from the cache, else from the `logs` table.
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
    touched: &mut HashMap<String, u64>,
    op: &Op,
) -> Result<Done, rusqlite::Error> {
    match op {
        Op::Append(row, _) => {
            let seq = head(tx, heads, &row.log)? + 1;
            tx.prepare_cached(
                "INSERT INTO events (log, seq, event, from_user, from_client, scope, data, ts)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                row.log,
                seq as i64,
                row.event,
                row.from_user,
                row.from_client,
                row.scope,
                row.data,
                row.ts
            ])?;
            if let Some(id) = &row.msg_id {
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO acks (client, msg_id, log, seq) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![row.from_client, id, row.log, seq as i64])?;
            }
            heads.insert(row.log.clone(), seq);
            touched.insert(row.log.clone(), seq);
            Ok(Done::Seq(seq))
        }
        Op::Head(log, _) => Ok(Done::Seq(head(tx, heads, log)?)),
        Op::SaveSession(s, _) => {
            let client = s.client.as_str();
            tx.prepare_cached(
                "INSERT OR REPLACE INTO sessions (client, user, inbox_from, last_seen) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![client, s.user.as_str(), s.inbox_from.0 as i64, s.last_seen_ms as i64])?;
            tx.prepare_cached("DELETE FROM memberships WHERE client = ?1")?.execute([client])?;
            let mut insert =
                tx.prepare_cached("INSERT INTO memberships (client, room, floor) VALUES (?1, ?2, ?3)")?;
            for (room, floor) in &s.rooms {
                insert.execute(params![client, room.as_str(), floor.0 as i64])?;
            }
            Ok(Done::Unit)
        }
        Op::DeleteSession(client, _) => {
            // Its acks go with the next retention run (they have no index to find them by).
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
    }
}

/// Drops what retention says is too old; a log's head (and so its seqs) is never touched.
fn retain(conn: &Connection, retention: Retention) -> Result<(), rusqlite::Error> {
    let logs: Vec<(String, i64)> = conn
        .prepare("SELECT log, head FROM logs")?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let cutoff = retention.age.map(|age| {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        now.saturating_sub(age).as_millis() as i64
    });
    let mut dropped = 0;
    for (log, head) in logs {
        if let Some(keep) = retention.events {
            let below = head - keep as i64;
            if below > 0 {
                dropped += conn
                    .prepare_cached("DELETE FROM events WHERE log = ?1 AND seq <= ?2")?
                    .execute(params![log, below])?;
            }
        }
        if let Some(cutoff) = cutoff {
            // Events of a log are stored in seq order, which is time order: drop the oldest
            // ones that are past the cutoff, a bounded step at a time.
            dropped += conn
                .prepare_cached(
                    "DELETE FROM events WHERE log = ?1 AND seq IN
                       (SELECT seq FROM events WHERE log = ?1 AND ts < ?2 ORDER BY seq LIMIT ?3)",
                )?
                .execute(params![log, cutoff, RETENTION_STEP])?;
        }
    }
    if dropped > 0 {
        tracing::info!(dropped, "retention dropped old events");
    }
    // Acks of clients that are gone, and acks whose event is gone (a resend of it could only be
    // stored anew anyway), are of no more use.
    conn.execute(
        "DELETE FROM acks WHERE client NOT IN (SELECT client FROM sessions)
            OR NOT EXISTS (SELECT 1 FROM events e WHERE e.log = acks.log AND e.seq = acks.seq)",
        [],
    )?;
    Ok(())
}

/// How often the WAL is copied back into the database file.
pub(crate) const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Copies the WAL back into the file every [`CHECKPOINT_EVERY`] (PASSIVE: never waits for the
/// writer, never makes it wait), until the engine is gone.
pub(crate) fn checkpoint_while(conn: &Connection, engine: &std::sync::Weak<State>) {
    let _ = conn.busy_timeout(Duration::from_millis(100));
    while engine.strong_count() > 0 {
        std::thread::sleep(CHECKPOINT_EVERY);
        if let Err(error) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::debug!(%error, "checkpoint skipped");
        }
    }
}
