//! Short polling: the client asks every T ms; the server answers at once, events or not.
//!
//! ```text
//! client                                   server
//!   │ GET /v1/clients/{id}/poll?cursor=C0    │
//!   │───────────────────────────────────────►│ read_into(C0): nothing
//!   │◄───────────────────────────────────────│ 200 {"events":[],"cursor":"C0"}
//!   │          … T ms later …                │
//!   │ GET …/poll?cursor=C0                   │
//!   │───────────────────────────────────────►│ read_into(C0): 2 events
//!   │◄───────────────────────────────────────│ 200 {"events":[e1,e2],"cursor":"C2"}
//! ```
//!
//! Trade-offs: the simplest thing that works through any proxy, and the server keeps nothing
//! open. But an event waits T/2 on average before anyone asks for it, and every ask costs a full
//! request and response (hundreds of bytes of headers) even when it brings nothing back.

use std::sync::atomic::Ordering;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use quartet_protocol::ClientId;

use crate::AppState;
use crate::error::ApiError;
use crate::transport::{CursorQuery, PollAnswer, PollBody, Transport, answer_poll, poll_reader, settle};

/// `GET /v1/clients/{client}/poll?cursor=C`.
pub(crate) async fn poll(
    State(state): State<AppState>,
    Path(client): Path<String>,
    query: Result<Query<CursorQuery>, QueryRejection>,
) -> Result<PollAnswer, ApiError> {
    let Query(query) = query?;
    answer(state, &ClientId::from_wire(&client)?, query).await
}

/// A short poll's answer, however the request came (the router, or a connection's direct route:
/// see [`super::direct`]).
pub(crate) async fn answer(
    state: AppState,
    client: &ClientId,
    query: CursorQuery,
) -> Result<PollAnswer, ApiError> {
    let mut reader = poll_reader(&state.hub, client, query.cursor.as_deref()).await?;
    let mut body = PollBody::default();
    reader.read_into(&mut body).await?;
    let counters = state.stats.of(Transport::ShortPoll);
    counters.requests.fetch_add(1, Ordering::Relaxed);
    settle(&mut reader).await;
    Ok(answer_poll(body, reader, counters))
}
