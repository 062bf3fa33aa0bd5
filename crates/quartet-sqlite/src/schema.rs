//! The tables, created on first open.
//!
//! Events are stored in two steps, so that a commit writes as few pages as possible:
//!
//! 1. A publish appends one row to `events`, keyed by `id`, the order of arrival over all logs.
//!    Every publish of a commit lands on the same last page or two, however many rooms they
//!    are for: that is what keeps a group commit of a hundred publishes to a hundred rooms
//!    cheap (keyed by room, the same commit would change a page per room).
//! 2. Every few hundred milliseconds, the writer *indexes* what arrived since the last time, in
//!    one transaction: `event_index` (`(log, seq)` → `id`), the heads in `logs`, and
//!    `meta.indexed`, the last `id` indexed. Many events per room by then, so a few
//!    pages per room.
//!
//! A history read takes the indexed events through `event_index`, then the few not indexed yet
//! (`id > meta.indexed`), in one read transaction. On open, everything is indexed before
//! anything else runs, so a crash between the two steps loses nothing.

use rusqlite::{Connection, OptionalExtension};

/// The schema this build writes. A file with a newer one is refused (written by a newer quartet).
pub(crate) const SCHEMA_VERSION: i64 = 4;

pub(crate) const CREATE: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- One row per event, in order of arrival. `log` is a room (`lobby`) or an inbox (`@alice`);
-- `scope` 0 room, 1 others, 2 self; `data` the exact JSON the client sent; `msg_id` the
-- publish's message id, if it had one. `id` is handed out by the writer, never reused.
CREATE TABLE IF NOT EXISTS events (
    id          INTEGER PRIMARY KEY,
    log         TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    event       TEXT    NOT NULL,
    from_user   TEXT    NOT NULL,
    from_client TEXT    NOT NULL,
    scope       INTEGER NOT NULL,
    data        TEXT    NOT NULL,
    ts          INTEGER NOT NULL,
    msg_id      TEXT
);

-- Where each indexed event of a log is: the events of a log after a seq are one range scan.
CREATE TABLE IF NOT EXISTS event_index (
    log TEXT    NOT NULL,
    seq INTEGER NOT NULL,
    id  INTEGER NOT NULL,
    PRIMARY KEY (log, seq)
) WITHOUT ROWID;

-- The last seq indexed per log. Kept apart from the events so that retention, which deletes
-- events, can never make a seq be handed out twice.
CREATE TABLE IF NOT EXISTS logs (
    log  TEXT    PRIMARY KEY,
    head INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS sessions (
    client     TEXT    PRIMARY KEY,
    user       TEXT    NOT NULL,
    inbox_from INTEGER NOT NULL,
    -- What the client may do (its token's role and rooms, JSON); NULL: everything (open server).
    access     TEXT,
    last_seen  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS memberships (
    client TEXT    NOT NULL,
    room   TEXT    NOT NULL,
    floor  INTEGER NOT NULL,
    PRIMARY KEY (client, room)
) WITHOUT ROWID;

-- Cursor bases: positions stored once for cursors to name instead of carrying (see
-- quartet_protocol::cursor). `positions` is a whole cursor's wire form; `user` the only user
-- whose clients may resume from it. Dropped by retention by age, a day after the events they
-- point past. (Added without a schema version, like `restrictions`.)
CREATE TABLE IF NOT EXISTS cursor_bases (
    id         INTEGER PRIMARY KEY,
    user       TEXT    NOT NULL,
    created_ms INTEGER NOT NULL,
    positions  TEXT    NOT NULL
);

-- Mutes and the bans kicks leave, in force until `until_ms` (Unix ms); `kind` is `mute` or
-- `ban`. Ended ones are deleted when the next is written. (Added without a schema version: a
-- file of version 4 gains the table on open, and an older build ignores it.)
CREATE TABLE IF NOT EXISTS restrictions (
    room     TEXT    NOT NULL,
    user     TEXT    NOT NULL,
    kind     TEXT    NOT NULL,
    until_ms INTEGER NOT NULL,
    PRIMARY KEY (room, user, kind)
) WITHOUT ROWID;

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
        // Version 3 had no grants: every session it kept was an open server's.
        Some(version) if version == "3" => {
            conn.execute_batch(
                "BEGIN; ALTER TABLE sessions ADD COLUMN access TEXT; \
                 UPDATE meta SET value = '4' WHERE key = 'schema'; COMMIT;",
            )
            .map_err(|e| format!("cannot upgrade the file from schema version 3: {e}"))?;
        }
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
