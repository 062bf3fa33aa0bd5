//! The bounds the wire itself imposes, each with the reason it exists.
//!
//! These are part of the contract: a client that stays inside them is never refused for size.
//! The server's other bounds (clients, rooms, rates, memory) are in `quartet_core::limits`.

/// Largest command (one JSON object, or one array of them) accepted from a client, in bytes.
/// Chat lines and gift events are a few hundred bytes; 64 KiB leaves room for rich payloads while
/// keeping one client from making the server buffer megabytes (Centrifugo uses the same figure).
pub const MAX_COMMAND_BYTES: usize = 64 * 1024;

/// Deepest nesting of arrays and objects in a publish's `data`. Clients parse events with
/// recursion limits (serde_json's is 128, browsers' far more); data deeper than that would be
/// stored and then break every reader of the room. 64 levels is more than any real payload.
pub const MAX_DATA_DEPTH: usize = 64;

/// Most commands in one array posted to `/commands`. Bounds the work one request can queue.
pub const MAX_COMMANDS_PER_REQUEST: usize = 64;

/// Longest room, user or event name, in bytes (names are ASCII `[A-Za-z0-9_-]`).
pub const MAX_NAME_LEN: usize = 64;

/// Longest client message id (`"id"` of a publish), in bytes.
pub const MAX_MESSAGE_ID_LEN: usize = 128;

/// Most rooms one client may be joined to at once. Every joined room is read on every wake-up
/// of that client, so this bounds the cost of one read (and the length of a cursor).
pub const MAX_ROOMS_PER_CLIENT: usize = 64;

/// Longest client id accepted in a URL, in bytes. Ids the server issues are 22.
pub const MAX_CLIENT_ID_LEN: usize = 64;

/// Longest cursor accepted from a client, in bytes: enough for every room a client may join.
pub const MAX_CURSOR_LEN: usize = 8 * 1024;

/// Most past events a `join` may ask for (`"history": N`); a larger `N` is capped to it. A
/// join's history is delivered like any backlog, in batches, so this bounds one join's cost.
pub const MAX_JOIN_HISTORY: u64 = 200;

/// How long a `mute` lasts when it names no `seconds`: long enough to calm a flood, short
/// enough that a forgotten mute ends by itself.
pub const DEFAULT_MUTE_SECONDS: u64 = 600;

/// How long a kicked user may not rejoin the room when the `kick` names no `seconds`.
pub const DEFAULT_KICK_SECONDS: u64 = 600;

/// Longest mute or kick one command may set (a week); a longer `seconds` is refused. Lasting
/// bans belong in the tokens (`rooms`), which the operator issues.
pub const MAX_RESTRICTION_SECONDS: u64 = 7 * 24 * 3600;
