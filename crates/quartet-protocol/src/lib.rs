//! # quartet-protocol: the wire contract, as types
//!
//! Everything that crosses the wire between a quartet server and its clients is defined here,
//! once: the commands a client sends ([`Command`]), the replies it gets ([`Reply`]), the events
//! and gaps it reads ([`Event`], [`Gap`], [`Frame`]), the error codes ([`ErrorCode`]), the
//! registration answer ([`Registration`]), the names of the four transports ([`Transport`]) and
//! the resume cursor ([`Cursor`]). The core encodes with it, the server answers with it, the
//! client parses with it: a field added here reaches every side.
//!
//! There is no I/O here: no async runtime, no HTTP. `docs/protocol.md` describes the same
//! contract for people, with real exchanges.
//!
//! ## Module map
//!
//! - [`ids`]: names and ids as validated newtypes; [`limits`]: the bounds the wire imposes.
//! - [`error`]: [`ErrorCode`] and [`Error`], the one error frame.
//! - [`command`]: commands in, replies out. [`event`]: events and gaps, and their encoders.
//! - [`cursor`]: the resume cursor and its one encoder. [`api`]: the bodies of the HTTP routes.
//! - [`transport`]: the four techniques' names.

#![warn(missing_docs)]

pub mod api;
pub mod command;
pub mod cursor;
pub mod error;
pub mod event;
pub mod ids;
pub mod limits;
pub mod transport;

pub use api::{Registration, RoomInfo};
pub use command::{Command, Reply, Scope, WireCommand, parse_commands};
pub use cursor::{BaseId, Cursor, CursorWriter, Epoch};
pub use error::{Error, ErrorCode};
pub use event::{Event, Frame, Gap, GapReason};
pub use ids::{ClientId, EventName, LogId, RoomName, Seq, UserName};
pub use transport::Transport;
