//! Engine.IO's HTTP long-polling: a GET receives (held until there is something), a POST sends;
//! both carry packets separated by `\x1e`.
//!
//! The held GET is quartet's long poll with Engine.IO's framing, with one difference that
//! matters: there is no cursor in the request, so a response lost on the way is lost until the
//! client reconnects and recovers by `offset`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use quartet_protocol::ErrorCode;

use super::EngineError;
use super::engine;
use super::session::{Carrier, Closed, Outgoing, Session, State, receive};
use crate::AppState;
use crate::metrics::OpenGuard;
use crate::transport::stopped;

/// `GET /socket.io/?EIO=4&transport=polling`: a new session; the body is its handshake.
pub(super) fn handshake(app: &AppState) -> Response {
    match app.sessions.open(Carrier::Polling) {
        Some((_, handshake)) => text(handshake.into_bytes()),
        None => too_many(),
    }
}

pub(super) fn too_many() -> Response {
    let body = serde_json::json!({ "code": 3, "message": "Too many sessions: try again later" }).to_string();
    (StatusCode::SERVICE_UNAVAILABLE, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn text(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=UTF-8")], body).into_response()
}

/// A polling request's hold on its session: the GET flag or the POST flag, cleared when the
/// request ends, however it ends.
struct Busy<'a>(&'a Session, fn(&mut State) -> &mut bool);

impl<'a> Busy<'a> {
    /// Takes `flag` for this request. Refused (400) once the WebSocket carries the session; a
    /// second request of the same kind while one runs also closes the session.
    fn claim(session: &'a Session, flag: fn(&mut State) -> &mut bool) -> Result<Busy<'a>, EngineError> {
        let mut state = session.state();
        if state.carrier == Carrier::WebSocket {
            return Err(EngineError::BadRequest);
        }
        if *flag(&mut state) {
            drop(state);
            session.close(Closed::Violation);
            return Err(EngineError::BadRequest);
        }
        *flag(&mut state) = true;
        Ok(Busy(session, flag))
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        *(self.1)(&mut self.0.state()) = false;
    }
}

/// `GET …&sid=S`: what is waiting, or, when nothing is, held until something is (an event, an
/// ack, the next ping). A second GET while one is held closes the session.
pub(super) async fn get(app: AppState, session: Arc<Session>) -> Response {
    let _busy = match Busy::claim(&session, |s| &mut s.polling) {
        Ok(busy) => busy,
        Err(refused) => return refused.into_response(),
    };
    let counters = &app.sessions.counters;
    let _open = OpenGuard::new(counters);
    let mut out = Outgoing::polling();
    let mut shutdown = app.shutdown.clone();
    loop {
        let mut lent = {
            let mut state = session.state();
            if let Some(closed) = state.closed {
                // The client's own close needs no answer but the end of this request.
                out.text(&[if closed == Closed::ByClient { b"6" } else { b"1" }]);
                break;
            }
            if state.carrier != Carrier::Polling {
                // Upgrading: end this request; the WebSocket takes over (and the reader this
                // request gave back: wake it).
                out.text(&[b"6"]);
                session.wake.notify_one();
                break;
            }
            out.drain(&mut state.outbox);
            session.lend(&mut state)
        };
        let read = if out.packets > 0 {
            // Something to say already: add what events there are now, without waiting.
            match lent.reader() {
                Some(reader) => Some(reader.read_into(&mut out).await),
                None => None,
            }
        } else {
            tokio::select! {
                read = async {
                    match lent.reader() {
                        Some(reader) => reader.next_into(&mut out).await,
                        None => std::future::pending().await,
                    }
                } => Some(read),
                () = session.wake.notified() => None,
                () = stopped(&mut shutdown) => {
                    session.close(Closed::Shutdown);
                    None
                }
            }
        };
        drop(lent); // given back (unless the session or its socket changed meanwhile)
        if let Some(Err(error)) = read {
            failed(&session, error.code);
        }
        if out.packets > 0 {
            break;
        }
    }
    counters.delivered.fetch_add(out.events as u64, Ordering::Relaxed);
    text(out.buf)
}

/// A reader failed: the client is gone (its socket is told so), or the store or the client's
/// pace failed it (the session ends; the client reconnects and recovers from its offset).
pub(super) fn failed(session: &Session, code: ErrorCode) {
    if code == ErrorCode::UnknownClient {
        session.set_reader(None);
        session.send("41".into());
    } else {
        session.close(Closed::TransportLost);
    }
}

/// `POST …&sid=S`: packets from the client. A malformed body or one over `maxPayload` closes
/// the session (400, 413); a second POST while one is handled too.
pub(super) async fn post(app: AppState, session: Arc<Session>, request: Request) -> Response {
    let _busy = match Busy::claim(&session, |s| &mut s.posting) {
        Ok(busy) => busy,
        Err(refused) => return refused.into_response(),
    };
    let max = app.sessions.config.max_payload;
    let Ok(body) = axum::body::to_bytes(request.into_body(), max).await else {
        session.close(Closed::Violation);
        let body = serde_json::json!({ "code": 3, "message": format!("Payload too large: maxPayload is {max} bytes") });
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
    };
    let packets = std::str::from_utf8(&body).map_err(|_| engine::Malformed("a body that is not UTF-8"));
    let packets = packets.and_then(engine::decode_payload);
    let handled = async {
        for packet in packets? {
            if !receive(&app, &session, packet).await? {
                break; // closed by the client
            }
        }
        Ok(())
    };
    let handled: Result<(), engine::Malformed> = handled.await;
    if let Err(malformed) = handled {
        tracing::debug!(reason = malformed.0, "socket.io: malformed packet, session closed");
        session.close(Closed::Violation);
        return EngineError::BadRequest.into_response();
    }
    ([(header::CONTENT_TYPE, "text/html")], "ok").into_response()
}
