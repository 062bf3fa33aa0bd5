//! Client errors: transport failures and the server's JSON errors, kept apart.

use std::fmt;

use quartet_protocol::{ErrorCode, Reply};
use serde::de::DeserializeOwned;

/// Why a client call failed.
#[derive(Debug)]
pub enum ClientError {
    /// The HTTP request failed (connection refused, reset, ...).
    Http(reqwest::Error),
    /// The WebSocket failed.
    WebSocket(Box<tokio_tungstenite::tungstenite::Error>),
    /// The server answered with an error frame: `{"type":"error","code":..,"message":..}`.
    Server {
        /// HTTP status (0 when it came as a WebSocket or SSE frame).
        status: u16,
        /// The error code, e.g. `unknown_client`.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
    },
    /// The server sent something this client does not understand, or closed the stream.
    Protocol(String),
    /// An event this client cannot read (data its JSON parser cannot hold, from an older
    /// server's store) was skipped: the cursor has moved past it, and the next `receive` goes
    /// on after it. Report it; nothing needs to be done.
    Unreadable {
        /// The cursor after the skipped event(s).
        cursor: String,
        /// Why it could not be read.
        why: String,
    },
}

impl ClientError {
    /// The server's error code, if this is a server error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The error of a server's error frame (`status` 0 when it came on a stream), or a protocol
    /// error if `body` is not one.
    pub(crate) fn from_body(status: u16, body: &[u8]) -> ClientError {
        match serde_json::from_slice::<Reply>(body) {
            Ok(Reply::Error { code, message, .. }) => ClientError::Server { status, code, message },
            _ => ClientError::Protocol(format!(
                "status {status} without an error frame: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            )),
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Http(e) => write!(f, "http: {e}"),
            ClientError::WebSocket(e) => write!(f, "websocket: {e}"),
            ClientError::Server { status, code, message } => {
                write!(f, "server said {code} ({status}): {message}")
            }
            ClientError::Protocol(why) => write!(f, "protocol: {why}"),
            ClientError::Unreadable { why, .. } => {
                write!(f, "skipped an event this client cannot read: {why}")
            }
        }
    }
}

impl std::error::Error for ClientError {}

impl From<reqwest::Error> for ClientError {
    fn from(e: reqwest::Error) -> Self {
        ClientError::Http(e)
    }
}

impl From<tokio_tungstenite::tungstenite::Error> for ClientError {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        ClientError::WebSocket(Box::new(e))
    }
}

/// The cursor at the end of a frame or poll body the server wrote (`…,"cursor":"C"}`), found
/// without parsing the rest: how a client moves past a frame it cannot parse.
pub(crate) fn trailing_cursor(text: &str) -> Option<&str> {
    const KEY: &str = "\"cursor\":\"";
    let body = text.trim_end().strip_suffix("\"}")?;
    let cursor = &body[body.rfind(KEY)? + KEY.len()..];
    let base64url = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    (!cursor.is_empty() && cursor.bytes().all(base64url)).then_some(cursor)
}

/// Decodes a success body as `T`, or the error body as [`ClientError::Server`].
pub(crate) async fn json_or_error<T: DeserializeOwned>(
    response: reqwest::Response,
) -> Result<T, ClientError> {
    let status = response.status();
    let body = response.bytes().await?;
    if !status.is_success() {
        return Err(ClientError::from_body(status.as_u16(), &body));
    }
    serde_json::from_slice(&body).map_err(|e| ClientError::Protocol(format!("unexpected body: {e}")))
}

/// Succeeds on a 2xx, else decodes the error body.
pub(crate) async fn ok_or_error(response: reqwest::Response) -> Result<(), ClientError> {
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.bytes().await?;
    Err(ClientError::from_body(status.as_u16(), &body))
}
