//! Engine.IO over a WebSocket: one Engine.IO packet per frame (text, or binary for an
//! attachment), on quartet's own WebSocket codec.
//!
//! Opened without a `sid`, the socket is a new session whose first frame is the handshake.
//! Opened with the `sid` of a polling session, it is an upgrade: the client probes (`2probe`,
//! answered `3probe`; the held GET gets `6` and no new one is held), then sends `5`, and from
//! then on the WebSocket carries the session.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;

use super::EngineError;
use super::engine::Packet;
use super::polling::{failed, too_many};
use super::session::{Carrier, Closed, Outgoing, Session, Sessions, receive};
use crate::AppState;
use crate::http1::Upgraded;
use crate::meter::SharedWriter;
use crate::metrics::OpenGuard;
use crate::transport::direct;
use crate::transport::stopped;
use crate::transport::ws::codec::{self, Decoder, Incoming, OP_PONG, close_code};
use crate::transport::ws::{accept_key, read_more, switch_protocols, write_out};
use quartet_core::{Deliver, Delivering};

/// `GET /socket.io/?EIO=4&transport=websocket[&sid=S]`: upgrades, then runs the carrier.
pub(super) async fn upgrade(app: AppState, sid: Option<String>, mut request: Request) -> Response {
    let Ok(accept) = accept_key(request.headers()) else { return EngineError::BadRequest.into_response() };
    let (session, handshake) = match sid {
        None => match app.sessions.open(Carrier::WebSocket) {
            Some((session, handshake)) => (session, Some(handshake)),
            None => return too_many(),
        },
        Some(sid) => match app.sessions.get(&sid) {
            None => return EngineError::UnknownSid.into_response(),
            // Only a polling session may be upgraded, once.
            Some(session) if session.state().carrier != Carrier::Polling => {
                return EngineError::BadRequest.into_response();
            }
            Some(session) => (session, None),
        },
    };
    switch_protocols(&mut request, accept, move |io| run(io, app, session, handshake))
}

/// The socket's input: frames decoded from what was read.
struct Input {
    buf: BytesMut,
    decoder: Decoder,
}

impl Input {
    /// Reads what the client sent; `false` once it is gone. The buffer is made room in only
    /// when the socket has bytes: an idle connection holds none (see the end of `run`'s turn).
    /// Cancel-safe: the bytes are taken in the poll that returns.
    async fn read(&mut self, io: &mut Upgraded) -> bool {
        read_more(io, &mut self.buf, self.decoder.needed()).await
    }
}

/// Runs the carrier until the session or the socket ends. A new session's socket starts with
/// its `handshake`; an upgrade starts with the probe.
async fn run(mut io: Upgraded, app: AppState, session: Arc<Session>, handshake: Option<String>) {
    let counters = &app.sessions.counters;
    let _open = OpenGuard::new(counters);
    let mut input = Input { buf: BytesMut::new(), decoder: Decoder::new(app.sessions.config.max_payload) };
    let mut out = Outgoing::websocket();
    match handshake {
        Some(handshake) => out.text(&[handshake.as_bytes()]),
        None => {
            // Boxed, like the handling of frames below: states the loop passes through only
            // now and then take no room in every idle connection's task.
            if !Box::pin(probe(&mut io, &mut input, &session, &app)).await {
                // Not upgraded: the session goes on polling.
                let mut state = session.state();
                if state.carrier == Carrier::Upgrading {
                    state.carrier = Carrier::Polling;
                }
                return;
            }
            // Frames that came right behind the `5` are already read.
            if !Box::pin(frames(&mut input, &mut out, &session, &app)).await {
                session.close(Closed::Violation);
            }
        }
    }
    let carrier = Arc::new(Publishing {
        session: session.clone(),
        conn: tokio::sync::Mutex::new(Conn { out, writer: io.shared_writer(), closed: false }),
        sessions: app.sessions.clone(),
    });
    let handle: Weak<dyn Deliver> = Arc::downgrade(&carrier) as Weak<dyn Deliver>;
    // The socket's reader delivered to by publishers, and which of the session's sockets it is.
    let mut delivering: Option<(u64, Delivering)> = None;
    let mut shutdown = app.shutdown.clone();
    let stop = stopped(&mut shutdown);
    tokio::pin!(stop);
    let closed = loop {
        // A turn: the packets waiting, then what the reader has (a publisher may have left it
        // to this task), written.
        let mut conn = carrier.conn.lock().await;
        let mut lent = {
            let mut state = session.state();
            if let Some(closed) = state.closed {
                break closed;
            }
            conn.out.drain(&mut state.outbox);
            session.lend(&mut state)
        };
        let generation = lent.generation();
        let mut failure = None;
        if let Some(reader) = lent.reader() {
            // A new socket (CONNECT): publishers deliver to its reader from now on; what came
            // before is read just below.
            if delivering.as_ref().is_none_or(|(of, _)| *of != generation) {
                delivering = Some((generation, reader.deliver_to(handle.clone())));
            }
            if let Err(error) = Box::pin(reader.read_into(&mut conn.out)).await {
                failure = Some(error.code);
            }
        }
        drop(lent); // given back (unless the session or its socket changed meanwhile)
        if let Some(code) = failure {
            failed(&session, code);
        }
        counters.delivered.fetch_add(std::mem::take(&mut conn.out.events) as u64, Ordering::Relaxed);
        if !conn.out.buf.is_empty() && write_out(&mut io, &mut conn.out.buf).await.is_err() {
            break Closed::TransportLost;
        }
        drop(conn);
        let mut ended = None;
        tokio::select! {
            () = session.wake.notified() => {}
            alive = input.read(&mut io) => {
                if !alive {
                    ended = Some(Closed::TransportLost);
                } else {
                    // Replies go out with the turn that follows, before any event this
                    // frame's publish delivers: publishers find the lock held, or the replies
                    // waiting in `out` or the outbox, and leave the event to that turn.
                    let mut conn = carrier.conn.lock().await;
                    if !Box::pin(frames(&mut input, &mut conn.out, &session, &app)).await {
                        ended = Some(Closed::Violation);
                    }
                }
            }
            () = &mut stop => session.close(Closed::Shutdown),
        }
        if let Some(why) = ended {
            session.close(why); // a close the client sent stands as the reason
        }
        if input.buf.is_empty() {
            input.buf = BytesMut::new(); // no message in progress: let the buffer go
        }
    };
    // Publishers stop here; then say goodbye where the protocol has words for it, and drop
    // the socket.
    drop(delivering);
    let mut conn = carrier.conn.lock().await;
    conn.closed = true;
    match closed {
        Closed::Shutdown => codec::put_close(&mut conn.out.buf, close_code::AWAY, "server shutting down"),
        Closed::TransportLost => {}
        _ => codec::put_close(&mut conn.out.buf, close_code::NORMAL, ""),
    }
    let _ = write_out(&mut io, &mut conn.out.buf).await;
    session.close(closed);
}

/// What the carrier's task shares with the publishers that deliver to its socket (the way
/// `transport::direct` does for the native WebSocket): a publish reads the socket's events
/// (the reader stays in the session, not lent while the task waits) and frames them itself;
/// only what it cannot do at once (packets waiting in the outbox, which go first; a full
/// socket; a read from the store; a batch bound) wakes the task, through the session's `wake`.
struct Publishing {
    session: Arc<Session>,
    conn: tokio::sync::Mutex<Conn>,
    sessions: Arc<Sessions>,
}

/// The carrier's writing side; whoever writes holds it, and writes what waits in `out` first.
struct Conn {
    out: Outgoing,
    writer: SharedWriter,
    /// Set by the task's last turn: nothing more goes out.
    closed: bool,
}

impl direct::Outbound for Conn {
    fn waiting(&mut self) -> (&mut Vec<u8>, &SharedWriter) {
        (&mut self.out.buf, &self.writer)
    }

    fn closed(&self) -> bool {
        self.closed
    }
}

impl Deliver for Publishing {
    fn deliver(&self, write_now: bool) -> bool {
        let Some(mut conn) = direct::may_deliver(&self.conn, &self.session.wake, write_now) else {
            return false;
        };
        let mut framed = Outgoing::websocket_over(direct::take_buffer());
        let Some(read) = self.session.read_now(&mut framed) else {
            self.session.wake.notify_one();
            direct::give_back(framed.buf);
            return false;
        };
        if !read.complete {
            self.session.wake.notify_one();
        }
        if framed.buf.is_empty() {
            direct::give_back(framed.buf);
            return false;
        }
        self.sessions
            .counters
            .delivered
            .fetch_add(std::mem::take(&mut framed.events) as u64, Ordering::Relaxed);
        std::mem::swap(&mut conn.out.buf, &mut framed.buf);
        true
    }

    fn write_framed(&self) {
        direct::write_framed(&self.conn, &self.session.wake);
    }
}

/// Decodes and handles every whole frame read; `false` when the socket must end (a close, a
/// protocol error, a malformed packet).
async fn frames(input: &mut Input, out: &mut Outgoing, session: &Session, app: &AppState) -> bool {
    loop {
        let packet = match input.decoder.next(&mut input.buf) {
            Ok(None) => return true,
            Ok(Some(Incoming::Text(text))) => {
                Packet::decode(std::str::from_utf8(&text).expect("the codec checked UTF-8"))
            }
            Ok(Some(Incoming::Binary(bytes))) => Ok(Packet::Binary(bytes.to_vec())),
            Ok(Some(Incoming::Ping(payload))) => {
                codec::put_frame(&mut out.buf, OP_PONG, &payload);
                continue;
            }
            Ok(Some(Incoming::Pong)) => continue,
            Ok(Some(Incoming::Close(code))) => {
                codec::put_close(&mut out.buf, close_code::answer(code), "");
                session.close(Closed::ByClient);
                return false;
            }
            Err(violation) => {
                codec::put_close(&mut out.buf, violation.code, violation.reason);
                return false;
            }
        };
        let handled = match packet {
            Ok(packet) => receive(app, session, packet).await,
            Err(malformed) => Err(malformed),
        };
        if handled == Ok(false) {
            return false; // the client closed the session
        }
        if let Err(malformed) = handled {
            tracing::debug!(reason = malformed.0, "socket.io: malformed packet, session closed");
            return false;
        }
    }
}

/// The upgrade's probe: `2probe` → `3probe`, then `5`. Returns whether the WebSocket now
/// carries the session. Anything else, or nothing within a ping interval, and the socket is
/// dropped while the session goes on polling.
async fn probe(io: &mut Upgraded, input: &mut Input, session: &Session, app: &AppState) -> bool {
    let patience = app.sessions.config.ping_interval.max(Duration::from_secs(1));
    let mut probed = false;
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let text = loop {
            match input.decoder.next(&mut input.buf) {
                Ok(Some(Incoming::Text(text))) => break text,
                Ok(Some(Incoming::Ping(_) | Incoming::Pong)) => continue,
                Ok(None) => match tokio::time::timeout_at(deadline, input.read(io)).await {
                    Ok(true) => continue,
                    _ => return false,
                },
                _ => return false,
            }
        };
        match (&text[..], probed) {
            (b"2probe", false) => {
                let mut out = Vec::new();
                codec::put_frame(&mut out, codec::OP_TEXT, b"3probe");
                if write_out(io, &mut out).await.is_err() {
                    return false;
                }
                probed = true;
                let mut state = session.state();
                if state.carrier != Carrier::Polling || state.closed.is_some() {
                    return false;
                }
                state.carrier = Carrier::Upgrading;
                drop(state);
                session.wake.notify_one(); // the held GET answers 6
            }
            (b"5", true) => {
                session.state().carrier = Carrier::WebSocket;
                session.wake.notify_one();
                return true;
            }
            _ => return false,
        }
    }
}
