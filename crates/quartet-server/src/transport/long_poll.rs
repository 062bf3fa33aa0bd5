//! Long polling: the client asks; the server holds the request open until there is something
//! to say (or `wait_ms` passes), answers, and the client asks again at once.
//!
//! ```text
//! client                                        server
//!   │ GET …/long-poll?cursor=C0&wait_ms=25000    │
//!   │────────────────────────────────────────────►│ next_into(C0) … parked …
//!   │                                             │ ◄── someone publishes e1
//!   │◄────────────────────────────────────────────│ 200 {"events":[e1],"cursor":"C1"}
//!   │ GET …/long-poll?cursor=C1&wait_ms=25000    │
//!   │────────────────────────────────────────────►│ parked … 25 s, nothing
//!   │◄────────────────────────────────────────────│ 200 {"events":[],"cursor":"C1"}
//! ```
//!
//! Trade-offs: an isolated event arrives about as fast as on a socket, with plain HTTP that
//! passes every proxy. But each batch costs a request, and an event that lands just after a
//! response waits for the next request to arrive (up to three network transits in a burst).
//! The wait is capped at [`LONG_POLL_MAX_WAIT`], below common proxies' 60 s idle timeout.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use quartet_protocol::{ClientId, Error, ErrorCode};
use serde::Deserialize;

use crate::AppState;
use crate::error::ApiError;
use crate::metrics::OpenGuard;
use crate::transport::{PollAnswer, PollBody, Transport, answer_poll, poll_reader, settle, stopped};

/// Longest a request is held. Proxies commonly cut idle requests at 60 s; 30 s stays clear.
pub const LONG_POLL_MAX_WAIT: Duration = Duration::from_secs(30);

/// Wait used when the client names none.
pub const LONG_POLL_DEFAULT_WAIT: Duration = Duration::from_secs(25);

/// The query of a long poll: `?cursor=C&wait_ms=N`, both optional.
#[derive(Debug, Deserialize)]
pub struct LongPollQuery {
    /// Where to resume; absent means "from now".
    pub cursor: Option<String>,
    /// How long to hold the request, in ms (capped at [`LONG_POLL_MAX_WAIT`]).
    pub wait_ms: Option<u64>,
}

impl LongPollQuery {
    /// How long the request is held: `wait_ms`, else [`LONG_POLL_DEFAULT_WAIT`], at most
    /// [`LONG_POLL_MAX_WAIT`].
    pub fn wait(&self) -> Duration {
        self.wait_ms.map_or(LONG_POLL_DEFAULT_WAIT, Duration::from_millis).min(LONG_POLL_MAX_WAIT)
    }
}

/// `GET /v1/clients/{client}/long-poll?cursor=C&wait_ms=N`.
pub(crate) async fn long_poll(
    State(state): State<AppState>,
    Path(client): Path<String>,
    query: Result<Query<LongPollQuery>, QueryRejection>,
) -> Result<PollAnswer, ApiError> {
    let Query(query) = query?;
    answer(state, &ClientId::from_wire(&client)?, query).await
}

/// A long poll's answer, however the request came (the router, or a connection's direct route:
/// see [`super::direct`]).
pub(crate) async fn answer(
    state: AppState,
    client: &ClientId,
    query: LongPollQuery,
) -> Result<PollAnswer, ApiError> {
    let wait = query.wait();
    let counters = state.stats.of(Transport::LongPoll);
    if let Some(max) = state.max_long_polls
        && counters.open.load(Ordering::Relaxed) >= max as u64
    {
        return Err(Error::new(
            ErrorCode::LimitReached,
            format!(
                "the server holds its maximum of {max} parked long polls: try again in a second, or use SSE or a WebSocket"
            ),
        )
        .retry_after(Duration::from_secs(1))
        .into());
    }
    let mut reader = poll_reader(&state.hub, client, query.cursor.as_deref()).await?;
    counters.requests.fetch_add(1, Ordering::Relaxed);
    let _open = OpenGuard::new(counters);
    let mut shutdown = state.shutdown.clone();
    let mut body = PollBody::default();
    tokio::select! {
        pushed = reader.next_into(&mut body) => { pushed?; }
        // Nothing came in time: answer empty, with the (possibly advanced) cursor.
        () = tokio::time::sleep(wait) => {}
        // On shutdown, answer now with what there is, so the client comes back elsewhere.
        // (Boxed: a parked poll's future need not make room for a read that happens once.)
        () = stopped(&mut shutdown) => { Box::pin(reader.read_into(&mut body)).await?; }
    }
    settle(&mut reader).await;
    Ok(answer_poll(body, reader, counters))
}
