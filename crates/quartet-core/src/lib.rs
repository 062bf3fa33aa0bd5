//! # quartet-core: the message core, with no network in it
//!
//! Instant messaging is "A sends to the server, the server hands it to B". This crate is the
//! server's middle: it knows rooms, clients, presence and cursors, and nothing of HTTP. The four
//! transports in `quartet-server` (short poll, long poll, SSE, WebSocket) are thin wrappers
//! around the same two calls. The wire types it speaks (commands, replies, events, cursors,
//! error codes) are `quartet-protocol`'s.
//!
//! ## The data path, in one breath
//!
//! A command arrives on a transport → [`Hub::execute`] validates it and appends it to the room's
//! log (the [`Engine`] sequences and stores it, the in-memory ring makes it readable) → the
//! readers of that log wake → each transport's [`Reader`] takes the shared, already-encoded
//! entries after its cursor ([`Reader::read_into`] / [`Reader::next_into`]) and hands them,
//! with its own cursor, to the transport's [`Sink`], which frames them into its write buffer;
//! the transport writes the batch at once.
//!
//! Fan-out happens on read: a publish is one append, whatever the size of the room.
//!
//! ## Layers
//!
//! Each module uses only the modules of the layers below it (`tests/layers.rs` checks it):
//!
//! 1. model: [`limits`] (every bound), [`config`] (tunables, counters), [`grant`] (what a
//!    client may do), [`moderation`] (mutes, kicks and their notices), [`entry`] (an event,
//!    encoded once), [`frame`] (how a reader hands over an event or a gap).
//! 2. store: [`ring`] (the bounded tail of a log), `log` (a ring and its readers' wake
//!    handles), [`engine`] (the storage seam: memory, with SQLite and Redis beside the core).
//! 3. clients: `session` (who a client is, what it reads), [`reader`] (reading by cursor).
//! 4. rules: [`hub`] (the one entry point: membership, limits, idempotency, presence, expiry).

#![warn(missing_docs)]

pub mod config;
pub mod engine;
pub mod entry;
pub mod frame;
pub mod grant;
pub mod hub;
pub mod limits;
mod log;
pub mod moderation;
mod position;
pub mod reader;
pub mod ring;
mod session;
#[cfg(feature = "test-support")]
pub mod testing;

pub use config::{Config, Stats};
pub use engine::{Engine, History, MemoryEngine};
pub use frame::{Deliver, EncodedFrame, Sink, Source};
pub use grant::{Grant, Role};
pub use hub::Hub;
pub use reader::{Delivering, ReadNow, Reader};
