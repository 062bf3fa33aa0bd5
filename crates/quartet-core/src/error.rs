//! The one error type of the core: a machine-readable [`ErrorCode`] and a human message.
//!
//! Transports turn it into `{"type":"error","code":..,"message":..}` and pick the HTTP status
//! from the code (in `quartet-server`), so the rules live here and the mapping lives there.

use std::fmt;

use serde::Serialize;

/// Why a request or command was refused. Serialised in `snake_case`: `bad_request`, ...
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Malformed JSON, an unknown command `type`, a missing or invalid field.
    BadRequest,
    /// A cursor that is not one this server could have issued.
    BadCursor,
    /// Publishing to, or leaving, a room the client has not joined.
    NotJoined,
    /// A body or frame over [`crate::limits::MAX_COMMAND_BYTES`], or too many commands at once.
    TooLarge,
    /// The client sends commands faster than [`crate::limits::COMMANDS_PER_SECOND`].
    RateLimited,
    /// The command is well formed but not allowed (e.g. publishing a reserved event name).
    Forbidden,
    /// The client id names no live client: never registered, deleted, or timed out.
    UnknownClient,
    /// A direct message to a user with no live client.
    UnknownUser,
    /// A bound of the server was reached (clients, rooms, rooms per client).
    LimitReached,
    /// The storage engine failed; nothing was acknowledged.
    Unavailable,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::BadCursor => "bad_cursor",
            ErrorCode::NotJoined => "not_joined",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::UnknownClient => "unknown_client",
            ErrorCode::UnknownUser => "unknown_user",
            ErrorCode::LimitReached => "limit_reached",
            ErrorCode::Unavailable => "unavailable",
        }
    }
}

/// A refused request: what went wrong ([`ErrorCode`]) and a sentence for humans.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// Machine-readable cause.
    pub code: ErrorCode,
    /// Human-readable explanation; safe to show to the user.
    pub message: String,
}

impl Error {
    /// An error with the given code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    /// The error for a client id that names no live client.
    pub fn unknown_client() -> Self {
        Self::new(
            ErrorCode::UnknownClient,
            "no such client: it was never registered, was deleted, or timed out (register again with POST /v1/clients)",
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for Error {}
