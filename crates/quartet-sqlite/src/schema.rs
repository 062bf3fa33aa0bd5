//! The tables, created on first open. Every table is keyed for the one way it is read:
//! `events` by `(log, seq)`, so "the events of a log after seq S" is one range scan of the
//! primary key (`WITHOUT ROWID`: the rows live in the key's b-tree, no second lookup).

use rusqlite::{Connection, OptionalExtension};

/// The schema this build writes. A file with a newer one is refused (written by a newer quartet).
pub(crate) const SCHEMA_VERSION: i64 = 2;

pub(crate) const CREATE: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- One row per event. `log` is a room (`lobby`) or an inbox (`@alice`); `scope` 0 room,
-- 1 others, 2 self; `data` the exact JSON the client sent.
CREATE TABLE IF NOT EXISTS events (
    log         TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    event       TEXT    NOT NULL,
    from_user   TEXT    NOT NULL,
    from_client TEXT    NOT NULL,
    scope       INTEGER NOT NULL,
    data        TEXT    NOT NULL,
    ts          INTEGER NOT NULL,
    PRIMARY KEY (log, seq)
) WITHOUT ROWID;

-- The last seq handed out per log. Kept apart from `events` so that retention, which deletes
-- events, can never make a seq be handed out twice.
CREATE TABLE IF NOT EXISTS logs (
    log  TEXT    PRIMARY KEY,
    head INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS sessions (
    client     TEXT    PRIMARY KEY,
    user       TEXT    NOT NULL,
    inbox_from INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS memberships (
    client TEXT    NOT NULL,
    room   TEXT    NOT NULL,
    floor  INTEGER NOT NULL,
    PRIMARY KEY (client, room)
) WITHOUT ROWID;

-- Acks of publishes that carried a message id, so a resend after a restart is acked again
-- instead of stored twice. A plain rowid table with no index on purpose: every group of
-- publishes appends its acks to the last page (a table keyed by client would dirty one page per
-- publishing client per commit); it is read whole only at start, and pruned by retention.
CREATE TABLE IF NOT EXISTS acks (
    client TEXT    NOT NULL,
    msg_id TEXT    NOT NULL,
    log    TEXT    NOT NULL,
    seq    INTEGER NOT NULL
);
";

/// Creates the tables if needed and returns the store's epoch (made once, kept for good).
pub(crate) fn prepare(conn: &Connection) -> Result<u64, String> {
    conn.execute_batch(CREATE).map_err(|e| format!("cannot create the tables: {e}"))?;
    let meta = |key: &str| -> Result<Option<String>, String> {
        conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| row.get(0))
            .optional()
            .map_err(|e| format!("cannot read meta: {e}"))
    };
    match meta("schema")? {
        None => {
            conn.execute("INSERT INTO meta (key, value) VALUES ('schema', ?1)", [SCHEMA_VERSION.to_string()])
                .map_err(|e| format!("cannot write meta: {e}"))?;
        }
        Some(version) if version.parse::<i64>().is_ok_and(|v| v == SCHEMA_VERSION) => {}
        Some(version) if version.parse::<i64>().is_ok_and(|v| v < SCHEMA_VERSION) => {
            return Err(format!(
                "the file has schema version {version}, from a development build of quartet; this one writes {SCHEMA_VERSION}: start on a new file"
            ));
        }
        Some(version) => {
            return Err(format!(
                "the file has schema version {version}, newer than this quartet's {SCHEMA_VERSION}: use a newer quartet"
            ));
        }
    }
    match meta("epoch")? {
        Some(hex) => u64::from_str_radix(&hex, 16).map_err(|_| format!("meta epoch {hex:?} is not hex")),
        None => {
            let epoch: u64 = rand::random();
            conn.execute("INSERT INTO meta (key, value) VALUES ('epoch', ?1)", [format!("{epoch:x}")])
                .map_err(|e| format!("cannot write meta: {e}"))?;
            Ok(epoch)
        }
    }
}
