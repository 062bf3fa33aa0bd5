//! What the store does besides taking writes: indexing appended events, retention, and
//! checkpoints (copying the WAL back into the file).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use quartet_core::limits::BASE_REFRESH;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

/// How long events are kept.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Retention {
    pub(crate) events: Option<u64>,
    pub(crate) age: Option<Duration>,
}

/// Oldest events examined per retention run by age, so one run stays short.
const RETENTION_STEP: i64 = 10_000;

/// The last id indexed (`meta.indexed`), read in the caller's transaction.
pub(crate) fn indexed(conn: &Connection) -> Result<i64, rusqlite::Error> {
    let value: Option<i64> = conn
        .query_row("SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'indexed'", [], |row| row.get(0))
        .optional()?;
    Ok(value.unwrap_or(0))
}

/// Indexes whatever a previous run appended and did not index (it stopped between the two
/// steps); returns the last event id, which the writer continues after.
pub(crate) fn catch_up(conn: &Connection) -> Result<i64, rusqlite::Error> {
    let last: Option<i64> = conn.query_row("SELECT max(id) FROM events", [], |row| row.get(0))?;
    let (indexed, events) = index(conn, last.unwrap_or(0))?;
    if events > 0 {
        tracing::info!(events, "indexed the events the last run had not");
    }
    // Ids are never handed out twice, even if retention dropped the newest events.
    Ok(indexed)
}

/// Indexes the events after `meta.indexed` up to id `to`, in one transaction: their
/// `(log, seq)`, the heads of their logs, and `meta.indexed`.
/// Returns the last id now indexed and how many events this call indexed.
pub(crate) fn index(conn: &Connection, to: i64) -> Result<(i64, u64), rusqlite::Error> {
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    let from = indexed(&tx)?;
    if to <= from {
        return Ok((from, 0));
    }
    // In (log, seq) order: each room's new entries go into its part of the index together.
    let events = tx
        .prepare_cached(
            "INSERT INTO event_index (log, seq, id)
             SELECT log, seq, id FROM events WHERE id > ?1 AND id <= ?2 ORDER BY log, seq",
        )?
        .execute([from, to])?;
    tx.prepare_cached(
        "INSERT INTO logs (log, head)
         SELECT log, max(seq) FROM events WHERE id > ?1 AND id <= ?2 GROUP BY log
         ON CONFLICT (log) DO UPDATE SET head = max(head, excluded.head)",
    )?
    .execute([from, to])?;
    tx.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES ('indexed', ?1)")?
        .execute([to.to_string()])?;
    tx.commit()?;
    Ok((to, events as u64))
}

/// Drops what retention says is too old; a log's head (and so its seqs) is never touched.
/// Everything must be indexed (the writer indexes first).
pub(crate) fn retain(conn: &Connection, retention: Retention) -> Result<(), rusqlite::Error> {
    let mut dropped = 0;
    if let Some(keep) = retention.events {
        let logs: Vec<(String, i64)> = conn
            .prepare("SELECT log, head FROM logs")?
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<Result<_, _>>()?;
        for (log, head) in logs {
            let below = head - keep as i64;
            if below > 0 {
                conn.prepare_cached(
                    "DELETE FROM events WHERE id IN (SELECT id FROM event_index WHERE log = ?1 AND seq <= ?2)",
                )?
                .execute(params![log, below])?;
                dropped += conn
                    .prepare_cached("DELETE FROM event_index WHERE log = ?1 AND seq <= ?2")?
                    .execute(params![log, below])?;
            }
        }
    }
    if let Some(age) = retention.age {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let cutoff = now.saturating_sub(age).as_millis() as i64;
        dropped += drop_older_than(conn, cutoff)?;
        // A base is dropped once every event it points past is, and a day more: a reader
        // renews its base daily, so every cursor a client got within the retention still
        // names a kept base.
        let bases_cutoff = now.saturating_sub(age + BASE_REFRESH).as_millis() as i64;
        let bases =
            conn.prepare_cached("DELETE FROM cursor_bases WHERE created_ms < ?1")?.execute([bases_cutoff])?;
        if bases > 0 {
            tracing::info!(bases, "retention dropped old cursor bases");
        }
    }
    if dropped > 0 {
        tracing::info!(dropped, "retention dropped old events");
    }
    Ok(())
}

/// Drops the oldest events stamped before `cutoff` (ms), a bounded step at a time. Events are
/// stored in order of arrival, which is time order: the walk stops at the first one to keep.
fn drop_older_than(conn: &Connection, cutoff: i64) -> Result<usize, rusqlite::Error> {
    let mut old: Vec<(i64, String, i64)> = Vec::new();
    {
        let mut select = conn.prepare_cached("SELECT id, log, seq, ts FROM events ORDER BY id LIMIT ?1")?;
        let mut rows = select.query([RETENTION_STEP])?;
        while let Some(row) = rows.next()? {
            if row.get::<_, i64>(3)? >= cutoff {
                break;
            }
            old.push((row.get(0)?, row.get(1)?, row.get(2)?));
        }
    }
    let Some(&(last, _, _)) = old.last() else { return Ok(0) };
    let tx = conn.unchecked_transaction()?;
    {
        let mut unindex = tx.prepare_cached("DELETE FROM event_index WHERE log = ?1 AND seq = ?2")?;
        for (_, log, seq) in &old {
            unindex.execute(params![log, seq])?;
        }
    }
    let dropped = tx.prepare_cached("DELETE FROM events WHERE id <= ?1")?.execute([last])?;
    tx.commit()?;
    Ok(dropped)
}

/// How often the WAL is copied back into the database file.
pub(crate) const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Copies the WAL back into the file every [`CHECKPOINT_EVERY`] (PASSIVE: never waits for the
/// writer, never makes it wait), until the engine is gone. Counts the passes in
/// `State::checkpoints`, which tells the writer when to restart the WAL ([`restart_wal`]).
pub(crate) fn checkpoint_while(conn: &Connection, engine: &std::sync::Weak<crate::writer::State>) {
    let _ = conn.busy_timeout(Duration::from_millis(100));
    loop {
        std::thread::sleep(CHECKPOINT_EVERY);
        let Some(state) = engine.upgrade() else { return };
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            Ok(()) => {
                state.checkpoints.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Err(error) => tracing::debug!(%error, "checkpoint skipped"),
        }
    }
}

/// Lets the WAL start over from its beginning. SQLite writes from the start of the WAL again
/// only once a checkpoint has copied every frame of it into the file; a checkpoint on another
/// thread never gets there under steady writes (commits land while it copies), and the WAL
/// then grows for as long as the writes go on: gigabytes an hour at a few thousand publishes a
/// second, every sync extending the file. So the writer itself checkpoints, between two
/// groups, just after a background pass: only what was committed since that pass is left to
/// copy, and with no commit in between, its next transaction restarts the WAL.
/// True if every frame is now copied (the next transaction starts the WAL over); false if a
/// reader still held some.
pub(crate) fn restart_wal(conn: &Connection) -> Result<bool, rusqlite::Error> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        let (frames, copied): (i64, i64) = (row.get(1)?, row.get(2)?);
        Ok(frames == copied)
    })
}
