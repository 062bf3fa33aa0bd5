//! The routes every transport shares: registering a client, sending commands, leaving, and the
//! read-only room and health routes.
//!
//! Commands for short poll, long poll and SSE all come through [`commands`]; a WebSocket carries
//! the same commands over its own socket (see [`crate::transport::ws`]).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use quartet_core::engine::Health;
use quartet_protocol::api::{NewClient, Replies};
use quartet_protocol::limits::MAX_COMMAND_BYTES;
use quartet_protocol::{ClientId, Error, ErrorCode};
use serde_json::json;

use crate::AppState;
use crate::auth;
use crate::error::ApiError;

/// Reads a body of at most [`MAX_COMMAND_BYTES`], or explains why not.
fn bounded(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    let body = body?;
    if body.len() > MAX_COMMAND_BYTES {
        return Err(Error::new(
            ErrorCode::TooLarge,
            format!("the body may be at most {MAX_COMMAND_BYTES} bytes, got {}", body.len()),
        )
        .into());
    }
    Ok(body)
}

/// `POST /v1/clients {"name":"alice"}` → 201 with the client id, cursor and heartbeat.
/// With `--auth-secret`, the `Authorization: Bearer <token>` header names the user (`sub`) and
/// what it may do; a `name` in the body must then be the token's.
pub(crate) async fn register(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = bounded(body)?;
    let request: NewClient =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))?;
    let (name, grant) = auth::identity(state.auth.as_deref(), request.name, || bearer(&headers))?;
    let registration = state.hub.register_as(&name, request.cursor.as_deref(), grant).await?;
    Ok((StatusCode::CREATED, Json(registration)).into_response())
}

/// The token of an `Authorization: Bearer` header.
fn bearer(headers: &HeaderMap) -> Result<&str, Error> {
    let unauthorized = |message: &str| Error::new(ErrorCode::Unauthorized, message);
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("this server needs a token: send Authorization: Bearer <token>"))?;
    let value = value.to_str().map_err(|_| unauthorized("the Authorization header is not text"))?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => Ok(token.trim()),
        _ => Err(unauthorized("the Authorization header must be: Bearer <token>")),
    }
}

/// `POST /v1/clients/{client}/commands` with one command or an array → `{"replies":[...]}`.
pub(crate) async fn commands(
    State(state): State<AppState>,
    Path(client): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    // The core bounds the size (`too_large`) as part of parsing; no second check here.
    let body = body?;
    let client = ClientId::from_wire(&client)?;
    let replies = state.hub.execute(&client, &body).await?;
    Ok(Json(Replies { replies }).into_response())
}

/// `DELETE /v1/clients/{client}`: leave every room now.
pub(crate) async fn remove(
    State(state): State<AppState>,
    Path(client): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.hub.remove(&ClientId::from_wire(&client)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/rooms/{room}` → `{"room":..,"online":N,"seq":S}`.
pub(crate) async fn room(
    State(state): State<AppState>,
    Path(room): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(state.hub.room_info(&room).await?).into_response())
}

/// `GET /healthz`: 200 while the store takes writes, 503 (with the reason) while it does not.
/// Reads of what is in memory keep working either way; publishes are refused `unavailable`.
pub(crate) async fn healthz(State(state): State<AppState>) -> Response {
    let engine = state.hub.engine();
    let (store, durable) = (engine.name(), engine.durable());
    let keeps =
        if durable { "events, rooms and clients survive a restart" } else { "nothing: all is lost at stop" };
    // `open`: anyone may register under any name (a demo); `token`: a signed token is needed.
    let auth = if state.auth.is_some() { "token" } else { "open" };
    let mut body =
        json!({ "status": "ok", "store": store, "durable": durable, "keeps": keeps, "auth": auth });
    match engine.health() {
        Health::Ok => Json(body).into_response(),
        Health::Failing(reason) => {
            body["status"] = "unavailable".into();
            body["reason"] = reason.into();
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}
