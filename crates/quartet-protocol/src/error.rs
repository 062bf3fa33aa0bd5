//! The one error of the wire: a machine-readable [`ErrorCode`] and a human message.
//!
//! Every refusal leaves the server as the same frame, `{"type":"error","code":..,"message":..}`
//! (plus the command's `id` when it had one): an HTTP error body, a command's error reply, the
//! last SSE block or WebSocket message of a removed client. It is [`crate::Reply::Error`], built
//! by [`crate::Reply::error`]; the server picks the HTTP status from the code.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a request or command was refused. On the wire in `snake_case`: `bad_request`, ...
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
    /// The client sends commands faster than the server's rate limit.
    RateLimited,
    /// The command is well formed but not allowed (e.g. publishing a reserved event name).
    Forbidden,
    /// The client id names no live client: never registered, deleted, or timed out.
    UnknownClient,
    /// A direct message to a user with no live client.
    UnknownUser,
    /// No such route or file (an HTTP path the server does not serve).
    NotFound,
    /// A bound of the server was reached (clients, rooms, rooms per client).
    LimitReached,
    /// Registering needs a token (`--auth-secret`): it is missing, malformed or badly signed.
    Unauthorized,
    /// The token's `exp` has passed: get a new one.
    TokenExpired,
    /// The storage engine failed; nothing was acknowledged.
    Unavailable,
    /// A stream (SSE, WebSocket) stayed behind its client's events for too long: the server
    /// closes it; the client resumes from its cursor, missing nothing the store keeps.
    Slow,
    /// The server hit a bug while answering; it keeps serving.
    Internal,
    /// A code this version does not know (a newer server): read the message.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// Every code, in declaration order (for docs and tests).
    pub const ALL: [ErrorCode; 16] = [
        ErrorCode::BadRequest,
        ErrorCode::BadCursor,
        ErrorCode::NotJoined,
        ErrorCode::TooLarge,
        ErrorCode::RateLimited,
        ErrorCode::Forbidden,
        ErrorCode::UnknownClient,
        ErrorCode::UnknownUser,
        ErrorCode::NotFound,
        ErrorCode::LimitReached,
        ErrorCode::Unauthorized,
        ErrorCode::TokenExpired,
        ErrorCode::Unavailable,
        ErrorCode::Slow,
        ErrorCode::Internal,
        ErrorCode::Unknown,
    ];

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
            ErrorCode::NotFound => "not_found",
            ErrorCode::LimitReached => "limit_reached",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Slow => "slow",
            ErrorCode::Internal => "internal",
            ErrorCode::Unknown => "unknown",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused request: what went wrong ([`ErrorCode`]) and a sentence for humans.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// Machine-readable cause.
    pub code: ErrorCode,
    /// Human-readable explanation; safe to show to the user.
    pub message: String,
    /// For an error that passes by itself (`rate_limited`): how long to wait before trying again.
    pub retry_after_ms: Option<u64>,
}

impl Error {
    /// An error with the given code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), retry_after_ms: None }
    }

    /// The same error, saying when trying again will work.
    pub fn retry_after(mut self, wait: std::time::Duration) -> Self {
        // Rounded up: trying again exactly then must work.
        self.retry_after_ms = Some(wait.as_micros().div_ceil(1000).max(1) as u64);
        self
    }

    /// A `bad_request` error.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialise_as_their_wire_names_and_back() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
        }
        let newer: ErrorCode = serde_json::from_str("\"quota_exceeded\"").unwrap();
        assert_eq!(newer, ErrorCode::Unknown);
    }
}
