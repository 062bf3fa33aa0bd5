//! The four transports, one file each, and the little they share.
//!
//! | transport    | file              | how the client receives                          |
//! |--------------|-------------------|--------------------------------------------------|
//! | `short-poll` | [`short_poll`]    | asks; the answer comes at once, empty or not     |
//! | `long-poll`  | [`long_poll`]     | asks; the server holds the request until an event |
//! | `sse`        | [`sse`]           | one response that never ends, events as lines    |
//! | `ws`         | [`ws`]            | one full-duplex socket; commands go the other way |
//!
//! All four read through a [`quartet_core::Reader`] from the same cursor, so a client can leave
//! one transport and resume on another with nothing lost and nothing repeated.

mod direct;
pub mod long_poll;
pub mod short_poll;
pub mod socketio;
pub mod sse;
pub mod ws;

use std::sync::atomic::Ordering;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use quartet_core::{EncodedFrame, Hub, Reader, Sink};
use quartet_protocol::ClientId;
pub use quartet_protocol::Transport;
use serde::Deserialize;

use crate::AppState;
use crate::error::ApiError;
use crate::http1::{Answer, Framed, RouteCall};
use crate::metrics::Counters;

/// The `?cursor=` every read route accepts.
#[derive(Debug, Deserialize)]
pub struct CursorQuery {
    /// Where to resume; absent means "from now".
    pub cursor: Option<String>,
}

/// Opens a reader for the client in the path, from `cursor`. Fails (as JSON) before anything is
/// streamed: unknown client, malformed cursor.
pub(crate) async fn open_reader(hub: &Hub, client: &str, cursor: Option<&str>) -> Result<Reader, ApiError> {
    let client = ClientId::from_wire(client)?;
    let cursor = cursor.filter(|c| !c.is_empty());
    Ok(hub.reader(&client, cursor).await?)
}

/// A poll's reader: the one its client's last poll kept, at once, when the poll comes with the
/// cursor that poll answered ([`Hub::kept_reader`]); else one opened as [`open_reader`] opens
/// it, boxed (opening may load the session from the store, a future far larger than what a
/// parked long poll holds afterwards: inline, every parked long poll would keep room for it).
pub(crate) async fn poll_reader(
    hub: &Hub,
    client: &ClientId,
    cursor: Option<&str>,
) -> Result<Reader, ApiError> {
    let cursor = cursor.filter(|c| !c.is_empty());
    if let Some(reader) = cursor.and_then(|cursor| hub.kept_reader(client, cursor)) {
        return Ok(reader);
    }
    Ok(Box::pin(hub.reader(client, cursor)).await?)
}

/// A polling response body being built: `{"events":[...],"cursor":"..."}`. As a [`Sink`], it
/// appends each event's JSON to the array, copying its bytes once and parsing nothing, into
/// the buffer the answer is written from (with room for its head: `http1::Framed`). Holds no
/// memory until it is written to (a parked long poll holds one).
#[derive(Debug, Default)]
pub struct PollBody {
    out: Framed,
    events: usize,
}

/// A poll body's first allocation, in bytes: room for an empty answer's cursor or an event
/// and its cursor, so that most answers take one.
const POLL_BODY_START: usize = 512;

/// Where a poll body's JSON starts.
const POLL_BODY_HEAD: &[u8] = b"{\"events\":[";

impl PollBody {
    /// Events pushed so far.
    pub fn events(&self) -> usize {
        self.events
    }

    /// The body to append `more` bytes to, the JSON started if nothing is written yet.
    fn reserve(&mut self, more: usize) -> &mut Vec<u8> {
        if self.out.body().is_empty() {
            let out = self.out.body_mut(POLL_BODY_START.max(POLL_BODY_HEAD.len() + more));
            out.extend_from_slice(POLL_BODY_HEAD);
            out
        } else {
            self.out.body_mut(more)
        }
    }

    /// Closes the array and adds the cursor after the last event.
    pub fn finish(mut self, cursor: &str) -> PollAnswer {
        let out = self.reserve(cursor.len() + 16);
        out.extend_from_slice(b"],\"cursor\":\"");
        out.extend_from_slice(cursor.as_bytes());
        out.extend_from_slice(b"\"}");
        PollAnswer(self.out)
    }
}

impl Sink for PollBody {
    fn push(&mut self, frame: EncodedFrame<'_>) {
        let first = self.events == 0;
        let out = self.reserve(frame.json_len() + 1);
        if !first {
            out.push(b',');
        }
        frame.write_json(out);
        self.events += 1;
    }
}

/// A poll's answer: `200`, its JSON body. A direct route hands it to the connection to frame
/// (`http1::Answer::Json`); the router makes a response of it.
#[derive(Debug)]
pub struct PollAnswer(Framed);

impl PollAnswer {
    /// The JSON body.
    pub fn body(&self) -> &[u8] {
        self.0.body()
    }
}

impl IntoResponse for PollAnswer {
    fn into_response(self) -> Response {
        ([(header::CONTENT_TYPE, "application/json")], self.0.into_bytes()).into_response()
    }
}

/// Answers a poll, short or long: counts it (empty or not, events delivered) and closes the body
/// with the cursor after everything the reader took, the reader kept for the client's next
/// poll with that cursor ([`Reader::keep`]). On a cursor base (a client of many rooms), settle
/// it first ([`settle`]).
pub(crate) fn answer_poll(body: PollBody, mut reader: Reader, counters: &Counters) -> PollAnswer {
    if body.events() == 0 {
        counters.empty.fetch_add(1, Ordering::Relaxed);
    }
    counters.delivered.fetch_add(body.events() as u64, Ordering::Relaxed);
    let cursor = reader.current_cursor();
    let answer = body.finish(&cursor);
    reader.keep(cursor);
    answer
}

/// Before [`answer_poll`]: [`Reader::settle_base`], boxed and only when there is a base to
/// settle (a wait with a timer that a poll's future would otherwise always make room for).
pub(crate) async fn settle(reader: &mut Reader) {
    if reader.has_base_to_settle() {
        Box::pin(reader.settle_base()).await;
    }
}

/// The direct route of a poll (see [`crate::http1::Routes::direct`]): `target` is the request
/// target of a `GET`. Taken only in the plainest form (a client id and query values of
/// unreserved characters, known keys, each once, a `wait_ms` of digits), where the router's
/// extractors would read exactly the same; anything else is `None` and goes through the router, its
/// decoding and its error messages. The answer is the one the router gives: the same handler,
/// a panic answered as the router's panic layer does, errors framed as its error layer does.
pub(crate) fn direct(state: &AppState, target: &str) -> Option<RouteCall> {
    let (client, poll) = plain_poll(target)?;
    // An id no client can have goes through the router, which says so.
    let client = ClientId::from_wire(client).ok()?;
    let state = state.clone();
    Some(match poll {
        Poll::Long(query) => answered(async move { long_poll::answer(state, &client, query).await }),
        Poll::Short(query) => answered(async move { short_poll::answer(state, &client, query).await }),
    })
}

/// A poll a direct route answers.
#[derive(Debug)]
enum Poll {
    Long(long_poll::LongPollQuery),
    Short(CursorQuery),
}

/// The client and the poll a request target names, when it is in the plainest form (see
/// [`direct`]).
fn plain_poll(target: &str) -> Option<(&str, Poll)> {
    let (path, query) = target.split_once('?').map_or((target, None), |(p, q)| (p, Some(q)));
    let (client, route) = path.strip_prefix("/v1/clients/")?.split_once('/')?;
    if client.is_empty() || !client.bytes().all(unreserved) {
        return None;
    }
    let poll = match route {
        "long-poll" => {
            let [cursor, wait_ms] = plain_pairs(query, ["cursor", "wait_ms"])?;
            let wait_ms = match wait_ms {
                Some(digits) if digits.bytes().all(|c| c.is_ascii_digit()) => Some(digits.parse().ok()?),
                Some(_) => return None,
                None => None,
            };
            Poll::Long(long_poll::LongPollQuery { cursor: cursor.map(str::to_owned), wait_ms })
        }
        "poll" => {
            let [cursor] = plain_pairs(query, ["cursor"])?;
            Poll::Short(CursorQuery { cursor: cursor.map(str::to_owned) })
        }
        _ => return None,
    };
    Some((client, poll))
}

/// A URI's unreserved characters (RFC 3986): read the same decoded or not, by any parser.
fn unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'~')
}

/// The values of `keys` in `query`, when it is a plain one: `key=value` pairs of those keys
/// only, each at most once, values of unreserved characters and `=` (a cursor is base64url):
/// nothing to decode, no fragment, nothing the router's URI parsing could refuse. `None` for
/// any other query.
fn plain_pairs<'q, const N: usize>(query: Option<&'q str>, keys: [&str; N]) -> Option<[Option<&'q str>; N]> {
    let mut values = [None; N];
    let Some(query) = query else { return Some(values) };
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=')?;
        if !value.bytes().all(|c| unreserved(c) || c == b'=') {
            return None;
        }
        let at = keys.iter().position(|k| *k == key)?;
        if values[at].replace(value).is_some() {
            return None;
        }
    }
    Some(values)
}

/// A direct route's answer as the router would give it: a panic answered as its panic layer
/// does, an error response framed as its error layer does (a success is JSON already: that
/// layer lets it pass as it is).
fn answered(
    handler: impl std::future::Future<Output = Result<PollAnswer, ApiError>> + Send + 'static,
) -> RouteCall {
    use futures_util::FutureExt as _;
    // Chained, not one `async` block awaiting the handler: such a block would keep room both
    // for the handler it captured and for the handler it awaits, twice the handler's size in
    // every parked long poll.
    Box::pin(std::panic::AssertUnwindSafe(handler).catch_unwind().then(|answer| async move {
        let response = match answer {
            Ok(Ok(PollAnswer(json))) => return Answer::Json(json),
            Ok(Err(error)) => error.into_response(),
            Err(panic) => crate::error::panic_response(panic),
        };
        Answer::Response(crate::error::json_error_frames(response).await)
    }))
}

pub(crate) use crate::connections::stopped;

#[cfg(test)]
mod tests {
    use super::*;

    /// What a target's direct route reads: `(client, long?, cursor, wait_ms)`.
    fn read(target: &str) -> Option<(&str, bool, Option<String>, Option<u64>)> {
        plain_poll(target).map(|(client, poll)| match poll {
            Poll::Long(q) => (client, true, q.cursor, q.wait_ms),
            Poll::Short(q) => (client, false, q.cursor, None),
        })
    }

    #[test]
    fn polls_in_their_plainest_form_take_the_direct_route() {
        let c = |s: &str| Some(s.to_owned());
        assert_eq!(read("/v1/clients/c1/poll"), Some(("c1", false, None, None)));
        assert_eq!(read("/v1/clients/c1/poll?cursor=AbC-_9"), Some(("c1", false, c("AbC-_9"), None)));
        assert_eq!(read("/v1/clients/c1/poll?cursor="), Some(("c1", false, c(""), None)));
        assert_eq!(read("/v1/clients/c-1_x/long-poll"), Some(("c-1_x", true, None, None)));
        assert_eq!(
            read("/v1/clients/c1/long-poll?wait_ms=250&cursor=x=y"),
            Some(("c1", true, c("x=y"), Some(250)))
        );
    }

    /// Anything the router's extractors would decode, reject or read otherwise goes through
    /// the router.
    #[test]
    fn any_other_target_goes_through_the_router() {
        for target in [
            "/v1/clients/c1/poll?cursor=a%20b",
            "/v1/clients/c1/poll?cursor=a+b",
            "/v1/clients/c1/poll?cursor=a#b",
            "/v1/clients/c1/poll?cursor=a<b",
            "/v1/clients/c%31/poll",
            "/v1/clients/c1/poll?cursor=a&cursor=b",
            "/v1/clients/c1/poll?other=1",
            "/v1/clients/c1/poll?cursor",
            "/v1/clients/c1/poll?",
            "/v1/clients/c1/poll?cursor=a&",
            "/v1/clients/c1/poll?wait_ms=5",
            "/v1/clients/c1/long-poll?wait_ms=-5",
            "/v1/clients/c1/long-poll?wait_ms=",
            "/v1/clients/c1/long-poll?wait_ms=99999999999999999999999",
            "/v1/clients/c1/poll/",
            "/v1/clients//poll",
            "/v1/clients/c1/sse",
            "/v1/clients/c1",
            "/v1/rooms/c1/poll",
            "http://x/v1/clients/c1/poll",
        ] {
            assert!(read(target).is_none(), "{target} took the direct route");
        }
    }
}
