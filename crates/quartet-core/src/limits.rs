//! Every bound of the core, in one place, each with the reason it exists.
//!
//! Nothing a client sends or causes may grow without bound: these constants are the bounds. The
//! bounds of the wire itself (command size, names, ids, cursors) belong to the contract and live
//! in [`quartet_protocol::limits`]; they are re-exported here so one `use` finds every bound.

use std::time::Duration;

pub use quartet_protocol::limits::*;

/// Most live clients one server holds. Past it, registration answers `limit_reached`.
pub const MAX_CLIENTS: usize = 200_000;

/// Most clients one user may have on a node at once (tabs, devices, reconnects not yet timed
/// out). Past it, registering another answers `limit_reached`: one token (or, on an open server,
/// one name) cannot fill the server with clients.
pub const MAX_CLIENTS_PER_USER: usize = 64;

/// Most readers one client may have open at once: SSE streams, WebSockets, parked long polls
/// and polls being answered, all transports together. A tab uses one, a transport switch two
/// for a moment; past it, opening one more answers `limit_reached`, so one client id cannot
/// hold thousands of streams.
pub const MAX_READERS_PER_CLIENT: usize = 8;

/// Most logs (rooms and inboxes) one server keeps. A log's counter is tiny, but a client could
/// otherwise create rooms forever by joining random names.
pub const MAX_LOGS: usize = 200_000;

/// Events kept in memory per log: the window inside which any cursor resumes without a gap.
pub const RING_CAPACITY: usize = 4096;

/// Bytes of encoded events kept in memory per log, whichever of this and [`RING_CAPACITY`] is hit
/// first. With 64 KiB events, 4096 of them would be 256 MiB for one room.
pub const RING_BYTES: usize = 4 * 1024 * 1024;

/// Most events one read returns. A client far behind gets its backlog in several batches instead
/// of one huge response; the cursor of the batch says where the next one starts.
pub const MAX_EVENTS_PER_BATCH: usize = 256;

/// Most bytes of events one read returns (at least one event, whatever its size). With the
/// batch's event count, this is what one reader holds for its client while the bytes are on
/// their way: a client that reads slowly costs the server at most this (plus the kernel's
/// socket buffers), whatever the rooms publish meanwhile. 256 events of 64 KiB would be 16 MiB.
pub const MAX_BATCH_BYTES: usize = 256 * 1024;

/// How far behind a log's newest event (in events) a reader must be for its reads to skip
/// `droppable` events (likes, viewer counts): more than one batch. A reader that keeps up never
/// loses one; a reader that falls behind catches up on what must be delivered first.
pub const SHED_LAG: u64 = MAX_EVENTS_PER_BATCH as u64;

/// Events of one log that come closer together than this are not written to subscribers'
/// sockets by the publisher one by one (see [`crate::Deliver`]): their tasks are woken and
/// take several per write. Over 500 events a second in one room, one `write()` per event per
/// subscriber would cost more than the wake-ups it saves.
pub const BATCHING_GAP: std::time::Duration = std::time::Duration::from_millis(2);

/// How long a stream (SSE, WebSocket) may stay behind (every read leaving events waiting)
/// before the server closes it with `slow`; the client resumes from its cursor. A backlog is
/// caught up in milliseconds by a client that reads; ten seconds behind is a client that cannot
/// keep up with what it must be sent (Centrifugo disconnects such clients the same way).
pub const SLOW_STREAM_AFTER: Duration = Duration::from_secs(10);

/// Client message ids remembered per client for idempotent publishes. A resend within the last
/// this-many publishes is acknowledged again and not delivered twice.
pub const REMEMBERED_MESSAGE_IDS: usize = 1024;

/// Steady rate of commands one client may send (per second), and the burst above it. Beyond
/// that the command is answered `rate_limited` and nothing is published.
pub const COMMANDS_PER_SECOND: f64 = 50.0;
/// See [`COMMANDS_PER_SECOND`].
pub const COMMAND_BURST: f64 = 100.0;

/// Default interval at which a client must show life (poll, hold a stream or send a command),
/// announced to clients as `heartbeat_ms`. 25 s is what Socket.IO, Centrifugo and SockJS use: it
/// stays below the 60 s idle timeout of common proxies.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(25);

/// A client silent for this many heartbeats is removed and its presence `leave` is published.
/// Two gives one missed beat of slack for a slow network.
pub const HEARTBEATS_BEFORE_TIMEOUT: u32 = 2;

/// Clients in a room above which joins and leaves stop being announced one by one. Each
/// announcement goes to every member, so in a room of N, N joins cost N² deliveries: 10 000
/// viewers arriving would be 50 million events of "someone joined". Above this size the room
/// instead gets one presence event with `"action":"count"` and the online count, at most every
/// [`PRESENCE_COUNT_INTERVAL`]. (Centrifugo makes join/leave opt-in per channel for the same reason.)
pub const PRESENCE_CROWD: usize = 100;

/// How often a crowded room's online count is announced (only when it changed).
pub const PRESENCE_COUNT_INTERVAL: Duration = Duration::from_secs(1);

/// A reader whose cursor would name more logs than this stores a cursor base and writes
/// cursors on it (see `quartet_protocol::cursor`): beyond a few logs, naming a base is shorter.
pub const BASE_MIN_LOGS: usize = 4;

/// A reader on a base whose cursor amends more logs than this stores a new base (at most once
/// per [`REBASE_EVERY`]): the cursor stays short while many rooms move.
pub const MAX_AMENDED_LOGS: usize = 4;

/// Least time between two bases stored by one reader: bounds the writes a reader can cause,
/// however many of its rooms move (between two, its cursor grows with the rooms that moved).
pub const REBASE_EVERY: Duration = Duration::from_secs(30);

/// A reader's base is renewed at least this often, so that the cursors a client holds name
/// recent bases: a store drops bases only this long after the events they point past.
pub const BASE_REFRESH: Duration = Duration::from_secs(24 * 3600);
