//! One Engine.IO session: what outlives the HTTP requests and the WebSocket that carry it.
//!
//! A session is found by its `sid` in [`Sessions`]. It holds:
//! - the packets waiting for a carrier (the pending polling GET, or the WebSocket): the
//!   handshake's replies, acks, pings, a close;
//! - the quartet [`Reader`] of the connected Socket.IO socket: a polling GET takes it while it
//!   waits for events and puts it back; the WebSocket carrier takes it only for reads of its
//!   own, and publishers read it here ([`Session::read_now`]) for the carrier's socket. Either
//!   way events go from the log straight into the carrier's buffer, never through the session;
//! - the heartbeat: a small task pings every `pingInterval` and closes the session when no pong
//!   comes within `pingTimeout`, whoever carries it (a polling client that vanished has no
//!   request open to notice it by).
//!
//! Only one GET may wait at a time and only one POST may run at a time: a second one is refused
//! and closes the session, as the protocol says.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use quartet_core::Reader;
use tokio::sync::Notify;

use super::engine::{Malformed, Packet};
use super::socket::Socket;
use crate::AppState;
use crate::metrics::Counters;
use crate::transport::ws::codec::{self, OP_BINARY, OP_TEXT};

/// The heartbeat and size limits announced in the handshake.
#[derive(Clone, Copy, Debug)]
pub struct EngineConfig {
    /// The server pings this often.
    pub ping_interval: Duration,
    /// A pong must come this soon after a ping.
    pub ping_timeout: Duration,
    /// Largest polling body or WebSocket message accepted, in bytes.
    pub max_payload: usize,
}

impl EngineConfig {
    /// Engine.IO's timing from quartet's heartbeat: a ping every heartbeat, four fifths of one
    /// to answer it (25 000 and 20 000 ms by default, Engine.IO's own defaults). A session
    /// lost that way frees its client for recovery, which lasts the client timeout.
    pub fn from_heartbeat(heartbeat: Duration) -> EngineConfig {
        EngineConfig { ping_interval: heartbeat, ping_timeout: heartbeat * 4 / 5, max_payload: MAX_PAYLOAD }
    }
}

/// `maxPayload`: Engine.IO's default, 1 MB.
pub const MAX_PAYLOAD: usize = 1_000_000;

/// Sessions open at once at most; beyond, handshakes get 503 (each polling session lives a
/// heartbeat or two after its client vanished).
pub const MAX_SESSIONS: usize = 100_000;

/// Which carrier the session uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Carrier {
    /// HTTP long-polling: GET to receive, POST to send.
    Polling,
    /// A WebSocket answered the probe: a pending GET gets `6` (noop) and no new one waits.
    Upgrading,
    /// The WebSocket carries everything; HTTP requests for the session are refused.
    WebSocket,
}

/// Why a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Closed {
    /// The client sent `1` (close).
    ByClient,
    /// No pong within `pingTimeout`, or no Socket.IO CONNECT in time.
    Timeout,
    /// The client broke the protocol (a second GET, a malformed packet, a body too large).
    Violation,
    /// The WebSocket carrying it went away.
    TransportLost,
    /// The server is stopping.
    Shutdown,
}

/// What the session's carriers share; held briefly, never across an await.
pub(crate) struct State {
    /// The current carrier.
    pub(crate) carrier: Carrier,
    /// Text packets waiting to be carried, in order, each with its type character (`2`,
    /// `40{…}`, `431[…]`): the server's own packets are never binary.
    pub(crate) outbox: Vec<String>,
    /// The connected socket's events, while no carrier holds them.
    reader: Option<Reader>,
    /// Counts the socket's connects and disconnects: a carrier puts back the reader it took
    /// only if the socket is still the one it took it from.
    generation: u64,
    /// Set once the session ended; the next carrier turn says so and ends.
    pub(crate) closed: Option<Closed>,
    /// A polling GET is waiting.
    pub(crate) polling: bool,
    /// A polling POST is being handled.
    pub(crate) posting: bool,
    /// Whether the last ping's pong came.
    pong_since_ping: bool,
}

/// See the module doc.
pub(crate) struct Session {
    /// The Engine.IO session id.
    pub(crate) sid: String,
    state: Mutex<State>,
    /// Wakes the carrier: the outbox gained packets, the carrier changed, or the session closed.
    pub(crate) wake: Notify,
    /// The Socket.IO layer, one packet at a time (POST bodies and WebSocket frames).
    pub(crate) socket: tokio::sync::Mutex<Socket>,
}

impl Session {
    /// The shared state.
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("socket.io session lock")
    }

    /// Queues a text packet for the carrier and wakes it.
    pub(crate) fn send(&self, packet: String) {
        self.state().outbox.push(packet);
        self.wake.notify_one();
    }

    /// Ends the session (the first reason stands) and wakes the carrier to say so.
    pub(crate) fn close(&self, why: Closed) {
        let reader = {
            let mut state = self.state();
            state.closed.get_or_insert(why);
            state.reader.take()
        };
        // The client stays registered for the recovery window; only this carrier of it ends.
        drop(reader);
        self.wake.notify_one();
    }

    /// A new socket's reader (CONNECT), or none (DISCONNECT).
    pub(crate) fn set_reader(&self, reader: Option<Reader>) {
        let old = {
            let mut state = self.state();
            state.generation += 1;
            std::mem::replace(&mut state.reader, reader)
        };
        drop(old);
        self.wake.notify_one();
    }

    /// Lends the reader to a carrier for one wait (none while no socket is connected).
    pub(crate) fn lend<'a>(&'a self, state: &mut State) -> Lent<'a> {
        Lent { session: self, reader: state.reader.take(), generation: state.generation }
    }

    /// Gives a reader back after a wait, unless the session closed or the socket changed
    /// meanwhile (then it is dropped).
    fn put_reader(&self, reader: Option<Reader>, generation: u64) {
        let Some(reader) = reader else { return };
        let mut state = self.state();
        if state.closed.is_none() && state.generation == generation && state.reader.is_none() {
            state.reader = Some(reader);
        }
    }

    /// Reads what the socket's reader has now into `out`, for a delivery made in a publisher's
    /// task; `None` when that cannot be done now: the session ended, packets wait in the outbox
    /// (they go first, and the carrier sends them), or the reader is lent to the carrier's own
    /// read.
    pub(crate) fn read_now(&self, out: &mut Outgoing) -> Option<quartet_core::ReadNow> {
        let mut state = self.state();
        if state.closed.is_some() || !state.outbox.is_empty() {
            return None;
        }
        Some(state.reader.as_mut()?.read_now(out))
    }

    /// Why the session ended, if it did.
    pub(crate) fn closed(&self) -> Option<Closed> {
        self.state().closed
    }

    /// A pong arrived.
    pub(crate) fn pong(&self) {
        self.state().pong_since_ping = true;
    }
}

/// The reader, lent to a carrier for one wait and given back when dropped, however the wait
/// ended: a polling GET whose client hangs up is dropped mid-wait by the HTTP server, and the
/// reader must not go with it.
pub(crate) struct Lent<'a> {
    session: &'a Session,
    reader: Option<Reader>,
    generation: u64,
}

impl Lent<'_> {
    /// Which of the session's sockets the reader is of (see `State::generation`).
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// The reader, if a socket is connected.
    pub(crate) fn reader(&mut self) -> Option<&mut Reader> {
        self.reader.as_mut()
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        self.session.put_reader(self.reader.take(), self.generation);
    }
}

/// Every open session of this node, by sid.
pub(crate) struct Sessions {
    /// The timing and limits every session announces.
    pub(crate) config: EngineConfig,
    map: Mutex<HashMap<String, Arc<Session>>>,
    /// Counters for `/metrics` (`transport="socketio"`).
    pub(crate) counters: Counters,
}

impl Sessions {
    /// An empty table.
    pub(crate) fn new(config: EngineConfig) -> Sessions {
        Sessions { config, map: Mutex::default(), counters: Counters::default() }
    }

    /// The session `sid`, if it is open (a closed one lingers until its heartbeat's next turn,
    /// unknown already).
    pub(crate) fn get(&self, sid: &str) -> Option<Arc<Session>> {
        let session = self.map.lock().expect("sessions lock").get(sid).cloned()?;
        session.closed().is_none().then_some(session)
    }

    /// Sessions open now.
    pub(crate) fn len(&self) -> usize {
        self.map.lock().expect("sessions lock").len()
    }

    /// Opens a session on `carrier`, starts its heartbeat, and returns it with its handshake
    /// packet (`0{…}`); `None` when [`MAX_SESSIONS`] are open.
    pub(crate) fn open(self: &Arc<Self>, carrier: Carrier) -> Option<(Arc<Session>, String)> {
        let sid = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 15]>());
        let session = Arc::new(Session {
            sid: sid.clone(),
            state: Mutex::new(State {
                carrier,
                outbox: Vec::new(),
                reader: None,
                generation: 0,
                closed: None,
                polling: false,
                posting: false,
                pong_since_ping: false,
            }),
            wake: Notify::new(),
            socket: tokio::sync::Mutex::new(Socket::default()),
        });
        {
            let mut map = self.map.lock().expect("sessions lock");
            if map.len() >= MAX_SESSIONS {
                return None;
            }
            map.insert(sid.clone(), session.clone());
        }
        let upgrades = if carrier == Carrier::Polling { r#"["websocket"]"# } else { "[]" };
        let handshake = format!(
            r#"0{{"sid":"{sid}","upgrades":{upgrades},"pingInterval":{},"pingTimeout":{},"maxPayload":{}}}"#,
            self.config.ping_interval.as_millis(),
            self.config.ping_timeout.as_millis(),
            self.config.max_payload,
        );
        tokio::spawn(heartbeat(self.clone(), session.clone()));
        Some((session, handshake))
    }

    /// Forgets a closed session.
    fn remove(&self, session: &Session) {
        self.map.lock().expect("sessions lock").remove(&session.sid);
    }
}

/// Pings every `pingInterval`; closes the session when a pong is late, or when no Socket.IO
/// CONNECT came within the first interval and timeout. Ends with the session, removing it.
async fn heartbeat(sessions: Arc<Sessions>, session: Arc<Session>) {
    let config = sessions.config;
    let closed = async {
        loop {
            tokio::time::sleep(config.ping_interval).await;
            {
                let mut state = session.state();
                if state.closed.is_some() {
                    return;
                }
                state.pong_since_ping = false;
                state.outbox.push("2".into());
            }
            session.wake.notify_one();
            tokio::time::sleep(config.ping_timeout).await;
            let late = {
                let state = session.state();
                if state.closed.is_some() {
                    return;
                }
                !state.pong_since_ping
            };
            // The socket layer's lock is only taken when no packet is being handled.
            let unconnected = session.socket.try_lock().is_ok_and(|s| !s.connected());
            if late || unconnected {
                session.close(Closed::Timeout);
                return;
            }
        }
    };
    closed.await;
    // However it ended, its sid is unknown from now on (lookups skip a closed session already).
    sessions.remove(&session);
}

/// Handles one packet from the client, whichever carrier brought it. `Ok(false)`: the client
/// closed the session; an error: it broke the protocol (the carrier ends the session).
pub(crate) async fn receive(app: &AppState, session: &Session, packet: Packet) -> Result<bool, Malformed> {
    match packet {
        Packet::Message(text) => session.socket.lock().await.message(app, session, &text).await?,
        Packet::Binary(bytes) => session.socket.lock().await.binary(app, session, bytes.into()).await?,
        Packet::Pong(_) => session.pong(),
        Packet::Close => {
            session.close(Closed::ByClient);
            return Ok(false);
        }
        // A probe's ping outside the upgrade, a late `5`, a noop: nothing to do.
        Packet::Noop | Packet::Ping(_) | Packet::Upgrade => {}
        Packet::Open(_) => return Err(Malformed("an open packet is the server's to send")),
    }
    Ok(true)
}

/// Engine.IO packets as one carrier writes them: a polling body (packets separated by `\x1e`,
/// binary as `b` + base64) or WebSocket frames (one per packet, binary as binary frames). As a
/// [`quartet_core::Sink`], it writes each event as Socket.IO (see the `socket` module).
#[derive(Debug)]
pub struct Outgoing {
    websocket: bool,
    /// The bytes to write.
    pub(crate) buf: Vec<u8>,
    /// Packets written so far.
    pub(crate) packets: usize,
    /// Events and gaps among them.
    pub(crate) events: usize,
}

impl Outgoing {
    /// Packets for a polling response body.
    pub fn polling() -> Outgoing {
        Outgoing { websocket: false, buf: Vec::new(), packets: 0, events: 0 }
    }

    /// Packets as WebSocket frames.
    pub fn websocket() -> Outgoing {
        Outgoing::websocket_over(Vec::new())
    }

    /// Packets as WebSocket frames, written into `buf` (empty; a reused buffer).
    pub(crate) fn websocket_over(buf: Vec<u8>) -> Outgoing {
        Outgoing { websocket: true, buf, packets: 0, events: 0 }
    }

    /// The bytes so far, as they go on the wire.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Empties it, keeping its memory.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.packets = 0;
        self.events = 0;
    }

    /// Appends a text packet made of `parts`, written one after the other.
    pub(crate) fn text(&mut self, parts: &[&[u8]]) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if self.websocket {
            self.buf.reserve(codec::MAX_HEADER + len);
            codec::put_header(&mut self.buf, OP_TEXT, len);
        } else {
            self.buf.reserve(len + 1);
            if self.packets > 0 {
                self.buf.push(0x1e);
            }
        }
        parts.iter().for_each(|p| self.buf.extend_from_slice(p));
        self.packets += 1;
    }

    /// Appends a binary packet.
    pub(crate) fn binary(&mut self, bytes: &[u8]) {
        if self.websocket {
            codec::put_frame(&mut self.buf, OP_BINARY, bytes);
        } else {
            if self.packets > 0 {
                self.buf.push(0x1e);
            }
            self.buf.push(b'b');
            self.buf.extend_from_slice(STANDARD.encode(bytes).as_bytes());
        }
        self.packets += 1;
    }

    /// Appends the packets queued in `outbox`, emptying it.
    pub(crate) fn drain(&mut self, outbox: &mut Vec<String>) {
        outbox.drain(..).for_each(|packet| self.text(&[packet.as_bytes()]));
    }
}
