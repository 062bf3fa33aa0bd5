//! # quartet-core: the message core, with no network in it
//!
//! Instant messaging is "A sends to the server, the server hands it to B". This crate is the
//! server's middle: it knows rooms, clients, presence and cursors, and nothing of HTTP. The four
//! transports in `quartet-server` (short poll, long poll, SSE, WebSocket) are thin wrappers
//! around the same two calls.
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
//! ## Module map
//!
//! - [`ids`]: names and ids as newtypes. [`cursor`]: the resume cursor.
//! - [`command`]: commands and replies as on the wire. [`error`]: error codes.
//! - [`entry`]: an event, encoded once. [`ring`]: the bounded tail of a log.
//! - [`engine`]: the storage seam (memory now; SQLite and Redis next).
//! - [`hub`]: rules and state. [`reader`]: reading by cursor. [`limits`]: every bound.

#![warn(missing_docs)]

pub mod command;
pub mod cursor;
pub mod engine;
pub mod entry;
pub mod error;
pub mod hub;
pub mod ids;
pub mod limits;
mod log;
pub mod reader;
pub mod ring;
mod session;

pub use command::{Reply, Scope};
pub use cursor::{Cursor, Epoch};
pub use engine::{Engine, MemoryEngine};
pub use error::{Error, ErrorCode};
pub use hub::{Config, Hub, Registration, RoomInfo};
pub use ids::{ClientId, LogId, RoomName, Seq, UserName};
pub use reader::{Batch, Delivery, Frame, Reader, Sink};
