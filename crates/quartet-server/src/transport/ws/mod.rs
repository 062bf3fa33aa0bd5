//! WebSocket: one HTTP request upgraded to a full-duplex socket; events flow down, commands
//! flow up, each a JSON text frame.
//!
//! ```text
//! client                                         server
//!   │ GET …/ws?cursor=C0                           │
//!   │ Upgrade: websocket, Sec-WebSocket-Key: …     │
//!   │─────────────────────────────────────────────►│
//!   │◄─────────────────────────────────────────────│ 101 Switching Protocols
//!   │◄══ {"type":"event",…,"cursor":"C1"} ═════════│ a publish → e1
//!   │══ {"type":"publish","room":"lobby",…} ══════►│ execute
//!   │◄══ {"type":"ack","seq":…} ═══════════════════│
//!   │◄══ ping ═════════════════════════════════════│ every heartbeat; the client pongs
//! ```
//!
//! Trade-offs: the cheapest per message (a frame header of 2 bytes down for messages up to 125
//! bytes, 4 up to 64 KiB, 10 beyond; 4 more up, for the client's mask) and the only one of the
//! four where commands share the connection. But the socket is stateful (proxies must allow
//! the upgrade and long-lived connections) and liveness needs explicit pings.
//!
//! Bad input does not close the socket: a malformed or oversized command gets an error frame.
//! Only a message over [`WS_MAX_MESSAGE_BYTES`] (far above the command limit) closes it, since
//! the server would have to buffer it whole to answer, and so does a broken frame (protocol
//! error, text that is not UTF-8), as RFC 6455 requires.
//!
//! quartet speaks the protocol itself ([`codec`]) instead of through a WebSocket library: the
//! server side is small (unmasked frames down, masked frames up, no extensions), and owning it
//! lets a batch of events go from the log into one buffer, framed, and out in one write, with
//! no per-message objects, locks or extra copies. This is the fan-out hot path.

use std::future::Future;
use std::sync::atomic::Ordering;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::BytesMut;
use futures_util::FutureExt as _;
use quartet_core::{EncodedFrame, Reader, Sink};
use quartet_protocol::{ClientId, Error, ErrorCode, Reply};
use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::AppState;
use crate::error::ApiError;
use crate::http1::{OnUpgrade, Upgraded, has_token};
use crate::metrics::OpenGuard;
use crate::transport::direct::{Shared, Wire};
use crate::transport::{CursorQuery, Transport, open_reader, stopped};

pub mod codec;

use codec::{Decoder, Incoming, OP_PING, OP_PONG, OP_TEXT, close_code};

/// Room made for a read when the connection holds no buffer (more when a frame needs more).
/// Commands are small; an idle connection holds none (it waits for the socket to be readable).
pub const WS_READ_BUFFER: usize = 1024;

/// Most bytes made room for in one read while a large frame arrives. The buffer grows with the
/// bytes that actually come, never with the length a frame header merely claims: otherwise
/// every connection could make the server reserve a megabyte by sending a few bytes.
pub const WS_READ_STEP_MAX: usize = 64 * 1024;

/// Largest message accepted at the protocol level; larger closes the socket (1009). Between
/// [`quartet_protocol::limits::MAX_COMMAND_BYTES`] and this, the command is refused `too_large` and
/// the socket stays open.
pub const WS_MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// The GUID of RFC 6455 §1.3, hashed with the client's key into `Sec-WebSocket-Accept`.
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `GET /v1/clients/{client}/ws?cursor=C`: checks the upgrade request and the client, answers
/// `101 Switching Protocols`, and runs the connection on the upgraded socket.
pub(crate) async fn ws(
    State(state): State<AppState>,
    Path(client): Path<String>,
    query: Result<Query<CursorQuery>, QueryRejection>,
    mut request: Request,
) -> Result<Response, ApiError> {
    let accept = accept_key(request.headers())?;
    let Query(query) = query?;
    let reader = open_reader(&state.hub, &client, query.cursor.as_deref()).await?;
    let client = ClientId::from_wire(&client)?;
    Ok(switch_protocols(&mut request, accept, move |io| run(io, state, client, reader)))
}

/// Answers `101 Switching Protocols` with `accept` (from [`accept_key`]) and, once the
/// connection hands the socket over, runs `serve` on it in a task of its own.
pub(crate) fn switch_protocols<F, Fut>(request: &mut Request, accept: HeaderValue, serve: F) -> Response
where
    F: FnOnce(Upgraded) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let Some(on_upgrade) = request.extensions_mut().remove::<OnUpgrade>() else {
        // Every request asking to upgrade gets one (see `http1`): this one did not ask.
        return ApiError::bad_request("this route speaks WebSocket: send Upgrade: websocket").into_response();
    };
    tokio::spawn(async move {
        match on_upgrade.upgraded().await {
            Some(upgraded) => serve(upgraded).await,
            None => tracing::debug!("websocket upgrade failed: the connection ended before the 101"),
        }
    });
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    response
}

/// Checks that `headers` ask for a WebSocket (RFC 6455 §4.2.1) and computes the accept key.
pub(crate) fn accept_key(headers: &HeaderMap) -> Result<HeaderValue, ApiError> {
    let refuse = ApiError::bad_request;
    if !has_token(headers, header::UPGRADE, "websocket") || !has_token(headers, header::CONNECTION, "upgrade")
    {
        return Err(refuse("this route speaks WebSocket: send Connection: Upgrade and Upgrade: websocket"));
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).is_none_or(|v| v != "13") {
        return Err(refuse("unsupported WebSocket version: send Sec-WebSocket-Version: 13"));
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|k| STANDARD.decode(k.as_bytes()).is_ok_and(|k| k.len() == 16))
        .ok_or_else(|| refuse("missing or malformed Sec-WebSocket-Key"))?;
    let digest = Sha1::new().chain_update(key.as_bytes()).chain_update(ACCEPT_GUID).finalize();
    Ok(HeaderValue::from_str(&STANDARD.encode(digest)).expect("base64 is a valid header value"))
}

/// The connection's write buffer: whole frames waiting for one write. As a [`Sink`], it frames
/// each event a reader hands it as a text message, copying the event's bytes once.
#[derive(Debug, Default)]
pub struct WsOut(Vec<u8>);

impl Sink for WsOut {
    fn push(&mut self, frame: EncodedFrame<'_>) {
        let len = frame.json_len();
        self.0.reserve(codec::MAX_HEADER + len);
        codec::put_header(&mut self.0, OP_TEXT, len);
        frame.write_json(&mut self.0);
    }
}

impl Wire for WsOut {
    fn bytes(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }

    fn like(&self, buf: Vec<u8>) -> WsOut {
        WsOut(buf)
    }
}

impl WsOut {
    /// The frames so far, as they go on the wire.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// Empties the buffer, keeping its memory.
    pub fn clear(&mut self) {
        self.0.clear();
    }

    fn reply(&mut self, reply: &Reply) {
        let json = serde_json::to_vec(reply).expect("replies serialise");
        codec::put_frame(&mut self.0, OP_TEXT, &json);
    }

    fn error(&mut self, error: Error) {
        self.reply(&Reply::error(None, error));
    }
}

/// Why a connection ended, for the log.
#[derive(Debug)]
pub(crate) enum End {
    /// The peer closed, went away, or broke the protocol.
    Peer,
    /// The peer was silent past the timeout, or did not take our bytes within it.
    Silent,
    /// The server: the client was removed, or shutdown.
    Server,
}

/// The connection loop. Events mostly go out from the publishers' tasks (see `direct`); each
/// turn of the connection's own task waits for one of:
/// - work a publisher left: read what there is, frame it all into the buffer, write once,
/// - bytes from the client: decode frames (commands, pings, pongs, close) and answer,
/// - the connection's timer: a ping when one is due, or the end if the peer has been silent
///   for the client timeout (close with 1008),
/// - server shutdown: close with 1001 "going away" (the client resumes elsewhere).
async fn run(mut io: Upgraded, state: AppState, client: ClientId, mut reader: Reader) {
    let counters = state.stats.of(Transport::Ws);
    counters.requests.fetch_add(1, Ordering::Relaxed);
    let _open = OpenGuard::new(counters);
    let heartbeat = state.hub.config().heartbeat;
    let timeout = state.hub.config().client_timeout();
    let mut shutdown = state.shutdown.clone();
    // One shutdown wait for the connection's life: a new one per turn would take the watch's
    // lock and register a waiter on every turn.
    let stop = stopped(&mut shutdown);
    tokio::pin!(stop);
    reader.close_when_behind_for(state.hub.config().slow_after);
    let (shared, delivering) =
        Shared::start(reader, WsOut::default(), io.shared_writer(), state.stats.clone(), Transport::Ws);
    // One timer for the connection's life, armed for whichever comes first: the next ping, or
    // the end of the peer's allowed silence (pushed back by every read: a pong, a command, any
    // frame). Reads only move the deadline; the timer re-arms itself when it fires early. One
    // timer polled per wake, not two, and none reset per read.
    let mut last_heard = Instant::now();
    let mut next_ping = last_heard + heartbeat;
    let timer = tokio::time::sleep_until(next_ping);
    tokio::pin!(timer);
    // Empty while no message is in progress: an idle connection holds no read buffer.
    let mut input = BytesMut::new();
    let mut decoder = Decoder::new(WS_MAX_MESSAGE_BYTES);
    let end = loop {
        let turn = tokio::select! {
            () = shared.wanted.notified() => Turn::Deliver,
            alive = read_more(&mut io, &mut input, decoder.needed()) => {
                if !alive {
                    break End::Peer;
                }
                Turn::Input
            }
            () = &mut timer => Turn::Timer,
            () = &mut stop => Turn::Stop,
        };
        let mut conn = shared.conn.lock().await;
        let end = match turn {
            Turn::Deliver => match shared.read(&mut conn).await {
                Ok(_) => None,
                Err(error) => {
                    // Say why, then close: the client was removed (DELETE or timeout), or the
                    // store failed a read (the client reconnects from its cursor).
                    let (code, reason) = match error.code {
                        ErrorCode::UnknownClient => (close_code::POLICY, "client removed"),
                        ErrorCode::Slow => (close_code::POLICY, "too slow: resume from the cursor"),
                        _ => (close_code::SERVER_ERROR, "server error"),
                    };
                    conn.out.error(error);
                    codec::put_close(&mut conn.out.0, code, reason);
                    Some(End::Server)
                }
            },
            Turn::Input => {
                last_heard = Instant::now();
                // Boxed: a command's execution (the largest state of the loop) takes room only
                // while one runs, not in every idle connection's task.
                Box::pin(decode(&mut decoder, &mut input, &mut conn.out, &state, &client)).await
            }
            Turn::Timer => {
                let now = Instant::now();
                if now >= last_heard + timeout {
                    // Said, in case the peer still reads; the write is bounded like any other.
                    codec::put_close(
                        &mut conn.out.0,
                        close_code::POLICY,
                        "no sign of life within the timeout",
                    );
                    Some(End::Silent)
                } else {
                    if now >= next_ping {
                        codec::put_frame(&mut conn.out.0, OP_PING, b"");
                        next_ping = now + heartbeat;
                    }
                    timer.as_mut().reset(next_ping.min(last_heard + timeout));
                    None
                }
            }
            Turn::Stop => {
                codec::put_close(&mut conn.out.0, close_code::AWAY, "server shutting down");
                Some(End::Server)
            }
        };
        let end = match write_out(&mut io, &mut conn.out.0).await {
            Err(ended) => Some(ended),
            Ok(()) => end,
        };
        if let Some(end) = end {
            conn.closed = true;
            break end;
        }
        drop(conn);
        if input.is_empty() {
            input = BytesMut::new(); // no message in progress: let the buffer go
        }
    };
    // Publishers stop writing here before the socket goes.
    drop(delivering);
    tracing::debug!(client = %client.redacted(), ?end, "websocket closed");
    if matches!(end, End::Silent) {
        // Silent for the whole timeout: it is gone, and its rooms hear so at the reaper's next
        // turn (its other readers, if any, still keep it alive).
        shared.conn.lock().await.reader.end_silent(last_heard);
    }
}

/// What woke a connection's task.
enum Turn {
    Deliver,
    Input,
    Timer,
    Stop,
}

/// Reads what the client sent into `input`, making room (for a frame still lacking `needed`
/// bytes) only once the socket is readable: an idle connection holds no buffer. `false` once
/// the client is gone. Cancel-safe: the bytes are taken in the poll that returns.
pub(crate) async fn read_more(io: &mut Upgraded, input: &mut BytesMut, needed: usize) -> bool {
    loop {
        if io.readable().await.is_err() {
            return false;
        }
        input.reserve(read_room(needed, input.len()));
        // Readable, so this completes at once, unless the readiness was stale.
        if let Some(read) = io.read_buf(input).now_or_never() {
            return matches!(read, Ok(1..));
        }
    }
}

/// Room to make before the next read: what the frame in progress still lacks, but at least the
/// usual buffer when none is held (an idle connection lets it go) and a quarter of it otherwise,
/// and at most [`WS_READ_STEP_MAX`].
pub(crate) fn read_room(needed: usize, buffered: usize) -> usize {
    let least = if buffered == 0 { WS_READ_BUFFER } else { WS_READ_BUFFER / 4 };
    needed.saturating_sub(buffered).clamp(least, WS_READ_STEP_MAX)
}

/// Handles every whole message in `input`; returns how the connection ends, if it does.
async fn decode(
    decoder: &mut Decoder,
    input: &mut BytesMut,
    out: &mut WsOut,
    state: &AppState,
    client: &ClientId,
) -> Option<End> {
    loop {
        match decoder.next(input) {
            Ok(None) => return None,
            Ok(Some(Incoming::Text(command))) => match state.hub.execute(client, &command).await {
                Ok(replies) => replies.iter().for_each(|r| out.reply(r)),
                Err(error) => out.error(error),
            },
            Ok(Some(Incoming::Binary(_))) => {
                out.error(Error::new(ErrorCode::BadRequest, "send commands as JSON text frames"));
            }
            Ok(Some(Incoming::Ping(payload))) => codec::put_frame(&mut out.0, OP_PONG, &payload),
            // A pong only proves life, which any frame does.
            Ok(Some(Incoming::Pong)) => {}
            Ok(Some(Incoming::Close(code))) => {
                // Echo the code, as the closing handshake asks (1002 for one no endpoint may
                // send); then the socket is dropped.
                codec::put_close(&mut out.0, close_code::answer(code), "");
                return Some(End::Peer);
            }
            Err(violation) => {
                tracing::debug!(client = %client.redacted(), reason = violation.reason, "websocket protocol error");
                codec::put_close(&mut out.0, violation.code, violation.reason);
                return Some(End::Peer);
            }
        }
    }
}

/// Writes the buffer out, all of it, and empties it. A peer that takes none of the bytes for the
/// client timeout makes the write fail with `TimedOut`: the connection's socket guards every
/// transport that way (see `meter.rs`), so no timer is armed here.
pub(crate) async fn write_out<S: AsyncWrite + Unpin>(io: &mut S, out: &mut Vec<u8>) -> Result<(), End> {
    if out.is_empty() {
        return Ok(());
    }
    let written = match io.write_all(out).await {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::TimedOut => Err(End::Silent),
        Err(_) => Err(End::Peer),
    };
    // Let the buffer go rather than keep it: an idle connection holds no write buffer, and a
    // burst's large one does not stay (docs/benchmarks.md has the measurement: no CPU cost).
    *out = Vec::new();
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claimed_length_does_not_reserve_memory() {
        // A header claiming 1 MiB with 10 bytes of it here: room for the next step only.
        assert_eq!(read_room(WS_MAX_MESSAGE_BYTES + 14, 24), WS_READ_STEP_MAX);
        assert_eq!(read_room(2, 0), WS_READ_BUFFER);
        assert_eq!(read_room(2, 1), WS_READ_BUFFER / 4);
        assert_eq!(read_room(5000, 1000), 4000);
    }

    #[test]
    fn accept_key_matches_rfc_6455_example() {
        let mut headers = HeaderMap::new();
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        headers.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        headers.insert(header::SEC_WEBSOCKET_KEY, HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="));
        assert_eq!(accept_key(&headers).unwrap(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        headers.remove(header::SEC_WEBSOCKET_KEY);
        assert!(accept_key(&headers).is_err());
    }
}
