//! Socket.IO clients: an unmodified `socket.io-client` 4.x connects at `/socket.io/` and uses
//! the same rooms, events, acks and resume as the four native transports.
//!
//! Socket.IO is two protocols stacked, one module each:
//!
//! | layer | module | what it does |
//! |---|---|---|
//! | Engine.IO v4 | [`engine`] (packets), `session`, `polling`, `websocket` | a session (`sid`) carried by HTTP long-polling, then upgraded to a WebSocket; its own heartbeat |
//! | Socket.IO v5 | [`packet`] (packets), `socket` | namespaces, events, acks, binary attachments; mapped onto the core |
//!
//! ```text
//! client                                              server
//!   │ GET /socket.io/?EIO=4&transport=polling            │ a session: sid
//!   │◄─ 0{"sid":"S","upgrades":["websocket"],…} ─────────│
//!   │ POST …&sid=S   40{"name":"alice"}                   │ register a client
//!   │ GET  …&sid=S ──────────────────────────────────────►│ (held)
//!   │◄─ 40{"sid":"…","pid":"<client id>"} ───────────────│
//!   │ GET /socket.io/?EIO=4&transport=websocket&sid=S     │ upgrade
//!   │══ 2probe ══════════════════════════════════════════►│
//!   │◄═ 3probe ═══════════════════════════════════════════│ (a held GET gets 6: noop)
//!   │══ 5 ═══════════════════════════════════════════════►│ the WebSocket carries it all now
//!   │══ 420["join",{"room":"lobby"}] ════════════════════►│ hub.execute(join)
//!   │◄═ 430[{"type":"joined",…}] ═════════════════════════│
//!   │◄═ 42["chat",{…},{"room":"lobby","seq":7,…},"<cursor>"] │ reader → events
//!   │◄═ 2 ════════════════════════════════════════════════│ ping every pingInterval; client: 3
//! ```
//!
//! Engine.IO sessions live in one node's memory: behind a round-robin balancer a polling client
//! needs sticky sessions (or `transports: ["websocket"]`). What survives a node is the quartet
//! client: a reconnect to any node recovers it from `pid` and `offset`.

pub mod engine;
pub mod packet;
mod polling;
pub(crate) mod session;
pub(crate) mod socket;
mod websocket;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
pub use session::{EngineConfig, MAX_PAYLOAD, MAX_SESSIONS, Outgoing};
pub use socket::encode_event;

use crate::AppState;

/// The query string of every Engine.IO request.
#[derive(Debug, Deserialize)]
pub(crate) struct EngineQuery {
    /// The protocol version: `4`.
    #[serde(rename = "EIO")]
    eio: Option<String>,
    /// `polling` or `websocket`.
    transport: Option<String>,
    /// The session, once there is one.
    sid: Option<String>,
}

/// Engine.IO's errors, as its servers answer them (HTTP 400 with `{"code","message"}`).
#[derive(Clone, Copy, Debug)]
pub(crate) enum EngineError {
    /// `0`.
    UnknownTransport,
    /// `1`.
    UnknownSid,
    /// `2`.
    BadHandshakeMethod,
    /// `3`.
    BadRequest,
    /// `5`.
    UnsupportedVersion,
}

impl IntoResponse for EngineError {
    fn into_response(self) -> Response {
        let (code, message) = match self {
            EngineError::UnknownTransport => (0, "Transport unknown"),
            EngineError::UnknownSid => (1, "Session ID unknown"),
            EngineError::BadHandshakeMethod => (2, "Bad handshake method"),
            EngineError::BadRequest => (3, "Bad request"),
            EngineError::UnsupportedVersion => (5, "Unsupported protocol version"),
        };
        let body = serde_json::json!({ "code": code, "message": message }).to_string();
        (StatusCode::BAD_REQUEST, [(header::CONTENT_TYPE, "application/json")], body).into_response()
    }
}

/// `/socket.io/`: every Engine.IO request, told apart by its query and method.
pub(crate) async fn socketio(
    State(app): State<AppState>,
    query: Result<Query<EngineQuery>, QueryRejection>,
    method: Method,
    request: Request,
) -> Response {
    let Ok(Query(query)) = query else { return EngineError::BadRequest.into_response() };
    if query.eio.as_deref() != Some("4") {
        return EngineError::UnsupportedVersion.into_response();
    }
    app.sessions.counters.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    match (query.transport.as_deref(), query.sid) {
        (Some("polling"), None) if method == Method::GET => polling::handshake(&app),
        (Some("polling"), None) => EngineError::BadHandshakeMethod.into_response(),
        (Some("polling"), Some(sid)) => {
            let Some(session) = app.sessions.get(&sid) else {
                return EngineError::UnknownSid.into_response();
            };
            match method {
                Method::GET => polling::get(app, session).await,
                Method::POST => polling::post(app, session, request).await,
                _ => EngineError::BadRequest.into_response(),
            }
        }
        (Some("websocket"), sid) if method == Method::GET => websocket::upgrade(app, sid, request).await,
        (Some("websocket"), _) => EngineError::BadRequest.into_response(),
        _ => EngineError::UnknownTransport.into_response(),
    }
}
