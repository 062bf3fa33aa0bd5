//! HTTP/1.1, spoken here: one task per connection reads each request's head, hands the request
//! to the routes (the axum [`Router`]) and writes the answer, then waits for the next request.
//!
//! Why not hyper's server, which the routes were first served by: an HTTP library keeps its
//! buffers for the life of a connection (hyper: 8 KiB to read and 8 KiB of header space to
//! write, whatever the traffic), and on a server that holds tens of thousands of idle SSE
//! streams and polling connections those buffers *are* the memory per subscriber. Here a
//! connection owns one read buffer that starts at [`READ_BUFFER`] bytes and only grows while
//! a large head or body arrives, and holds it only while bytes are there; an answer is written
//! from a buffer made for it. Both kinds of buffer are lent by the thread (see [`Spare`]): a
//! poll's connection takes the one the connection served before it gave back, still in cache,
//! instead of asking the allocator for a new one and freeing it a moment later.
//! The WebSocket route already spoke its protocol itself; this is the same choice one layer
//! down, and it hands an upgraded connection over as the bare socket.
//!
//! What it speaks (RFC 9112), and what it refuses, always with a JSON error frame:
//!
//! - Heads of at most [`MAX_HEAD_BYTES`] and [`MAX_HEADERS`] lines (`431` beyond), arriving
//!   within the header timeout (else the connection is closed: slow loris, idle keep-alive).
//! - Bodies by `Content-Length` or `Transfer-Encoding: chunked`, at most [`MAX_BODY_BYTES`]
//!   (`413`), read whole before the route runs; `Expect: 100-continue` is answered. Both
//!   framings at once, several differing lengths, or another transfer coding: `400`, closed
//!   (the classic request-smuggling shapes).
//! - Keep-alive by default on 1.1, on request on 1.0; pipelined requests answered in order.
//! - Answers of known length with `content-length` in one write; streams (SSE) chunked, each
//!   piece written as soon as the route yields it (close-delimited for a 1.0 client); `HEAD`,
//!   `1xx`, `204` and `304` without a body.
//! - `101 Switching Protocols`: the socket, with whatever the client already sent after its
//!   head, goes to the route's [`OnUpgrade`].
//! - A response carrying a [`HandOver`] (an SSE stream): the head is written as for any stream,
//!   then the socket goes to the route, which writes the body itself; the connection ends with
//!   it.
//! - Shutdown: an idle connection closes at once; a request being answered finishes, with
//!   `connection: close`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, HttpBody as _};
use axum::http::header::{self, HeaderName, HeaderValue};
use axum::http::{Method, Request, Response, StatusCode, Uri, Version};
use bytes::{Buf as _, Bytes, BytesMut};
use http_body_util::BodyExt as _;
use quartet_protocol::{Error, ErrorCode, Reply};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tower_service::Service;

use crate::meter::{Metered, SharedWriter};

/// Most bytes of a request's head (request line and headers) the server buffers while the head
/// is incomplete; a larger head is answered `431 Request Header Fields Too Large` and the
/// connection closed (a head that arrives whole in the read that crosses the bound may pass,
/// up to twice this). 32 KiB holds a token (4 KiB at most), a cursor (8 KiB at most) and a
/// browser's cookies with room to spare.
pub const MAX_HEAD_BYTES: usize = 32 * 1024;

/// Most header lines of a request; more is answered `431`.
pub const MAX_HEADERS: usize = 100;

/// Largest request body read (`413` beyond): above every route's own limit (commands 64 KiB,
/// Socket.IO's `maxPayload` 1 MB, which answers its own 413 in its own words).
pub(crate) const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// What a connection's read buffer starts at, and goes back to once a large request is done:
/// a request head of a browser with a few cookies, or many polls' worth of one client's.
pub(crate) const READ_BUFFER: usize = 1024;

/// The socket of a connection switched to another protocol (`101`), with the bytes the client
/// sent after its request head, which are read first.
pub(crate) struct Upgraded {
    io: Metered,
    read_first: Bytes,
}

/// Where a route that answers `101` gets the socket once the answer is written: taken from
/// the request's extensions (present on every request that asks to upgrade).
#[derive(Clone)]
pub(crate) struct OnUpgrade(Arc<Mutex<Option<oneshot::Receiver<Upgraded>>>>);

impl OnUpgrade {
    /// The socket, once the `101` is written; `None` if the answer was not a `101` or the
    /// connection ended first.
    pub(crate) async fn upgraded(self) -> Option<Upgraded> {
        let receiver = self.0.lock().expect("upgrade lock").take()?;
        receiver.await.ok()
    }
}

/// Put in a response's extensions by a route that writes its body itself (see the module
/// doc): the socket comes through it once the head is written.
#[derive(Clone)]
pub(crate) struct HandOver(Arc<Mutex<Option<oneshot::Sender<Streamed>>>>);

impl HandOver {
    /// A hand-over to put in a response, and where the socket comes (`None` if the connection
    /// did not hand it over: it ended first, or the request was a `HEAD`).
    pub(crate) fn new() -> (HandOver, oneshot::Receiver<Streamed>) {
        let (sender, receiver) = oneshot::channel();
        (HandOver(Arc::new(Mutex::new(Some(sender)))), receiver)
    }

    fn take(self) -> Option<oneshot::Sender<Streamed>> {
        self.0.lock().expect("hand-over lock").take()
    }
}

/// The socket of a response whose head is written and whose body the route writes.
pub(crate) struct Streamed {
    pub(crate) io: Upgraded,
    /// Whether the body is chunked (HTTP/1.1); else it is sent as is and ends with the
    /// connection (HTTP/1.0).
    pub(crate) chunked: bool,
}

impl Upgraded {
    /// Waits until the peer sent something or closed: `Ok(0)` once it closed, else `Ok(1)`
    /// (nothing is taken). For a connection that only writes, to notice a client gone.
    pub(crate) async fn peek_one(&self) -> std::io::Result<usize> {
        if self.read_first.is_empty() { self.io.peek_one().await } else { Ok(1) }
    }

    /// Waits until there is something to read (at once if bytes came with the request), without
    /// a buffer.
    pub(crate) async fn readable(&self) -> std::io::Result<()> {
        if self.read_first.is_empty() { self.io.readable().await } else { Ok(()) }
    }

    /// A handle that writes to this socket from other tasks without waiting.
    pub(crate) fn shared_writer(&self) -> SharedWriter {
        self.io.shared_writer()
    }
}

impl AsyncRead for Upgraded {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if !self.read_first.is_empty() {
            let n = self.read_first.len().min(buf.remaining());
            buf.put_slice(&self.read_first[..n]);
            self.read_first.advance(n);
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A request refused before it reached a route: answered, then the connection is closed.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    code: ErrorCode,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Refusal {
        Refusal { status, code, message: message.into() }
    }

    fn bad(message: impl Into<String>) -> Refusal {
        Refusal::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message)
    }
}

/// How a request's body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
}

/// A parsed head: the request without its body, how the body comes, and what the client said
/// about the connection.
struct Head {
    request: Request<Body>,
    framing: Framing,
    keep_alive: bool,
    expects_continue: bool,
    upgrade: bool,
}

/// Serves one connection until the client closes it, it goes silent, or the server stops.
pub(crate) async fn serve(
    mut io: Metered,
    mut app: Routes,
    header_timeout: Duration,
    stop: watch::Receiver<bool>,
) {
    let mut buf = BytesMut::new();
    let mut watching = stop.clone();
    let mut waits = Waits {
        header_timeout,
        timer: std::pin::pin!(tokio::time::sleep(header_timeout)),
        stopping: std::pin::pin!(async move {
            let _ = watching.changed().await;
        }),
        stop,
    };
    loop {
        // Each step in a function of its own, so that what one step holds (a request's head
        // while its body is read, a response while it is written) takes no room in the task
        // while another step waits: a parked long poll or an idle SSE stream keeps only what
        // its own step needs.
        let Some(mut pending) = receive(&mut io, &mut buf, &mut app, &mut waits).await else {
            return;
        };
        let Some(answer) = answer(&mut pending.call, &mut io, &mut buf).await else { return };
        let keep_alive = pending.keep_alive && !*waits.stop.borrow();
        let mut response = match answer {
            Answer::Response(response) => response,
            Answer::Json(framed) => {
                let framed = frame_json(framed, keep_alive, pending.version);
                let answer = if pending.head_only { framed.head() } else { framed.whole() };
                let written = io.write_all(answer).await;
                Spare::give_answer(framed.buf);
                if written.is_err() || !keep_alive {
                    return;
                }
                continue;
            }
        };
        if let Some(sender) = response.extensions_mut().remove::<HandOver>().and_then(HandOver::take)
            && !pending.head_only
        {
            // The head as `write_response` writes a stream's, then the socket to the route.
            let chunked = pending.version == Version::HTTP_11;
            let framing = chunked.then_some(Framing::Chunked);
            let head = head_bytes(response.status(), response.headers(), framing, keep_alive && chunked);
            drop(response);
            if let Some(io) = Box::pin(release(io, &head, &buf)).await {
                let _ = sender.send(Streamed { io, chunked });
            }
            return;
        }
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            let Some(sender) = pending.on_upgrade else { return };
            let head = head_bytes(response.status(), response.headers(), None, true);
            if let Some(io) = Box::pin(release(io, &head, &buf)).await {
                let _ = sender.send(io);
            }
            return;
        }
        // Boxed, as the hand-overs above: a poll's connection never takes these steps, and
        // inline they kept room for themselves in every connection's future (1 640 -> 1 376
        // bytes with the routed rest of `receive` boxed too).
        match Box::pin(write_response(&mut io, response, pending.head_only, keep_alive, pending.version))
            .await
        {
            Ok(true) => {}
            Ok(false) | Err(_) => return,
        }
        if !keep_alive {
            return;
        }
    }
}

/// Writes `head`, then lets the socket go to a route (a `101`, a [`HandOver`]), with what the
/// client sent after its request head, copied: the buffer itself is not kept.
async fn release(mut io: Metered, head: &[u8], buf: &BytesMut) -> Option<Upgraded> {
    io.write_all(head).await.ok()?;
    Some(Upgraded { io, read_first: Bytes::copy_from_slice(buf) })
}

/// The answer to one request, on its way: the router's, or a direct route's.
pub(crate) type RouteCall = std::pin::Pin<Box<dyn std::future::Future<Output = Answer> + Send>>;

/// A route's answer.
pub(crate) enum Answer {
    Response(Response<Body>),
    /// `200 OK`, `content-type: application/json`, this body: a direct route's answer (a poll's
    /// events), framed by the connection in the buffer the body was written in, with no header
    /// map, boxed body or second buffer to make and drop. Framed as the router's answer with
    /// that status, header and body would be, byte for byte but the date.
    Json(Framed),
}

/// A body with room before it for its head, as a kernel's socket buffers keep headroom for the
/// headers of the layers below: the connection writes the head there, and the whole answer
/// goes out in one write from the one buffer. Append-only: the room stays as it is made.
#[derive(Debug, Default)]
pub(crate) struct Framed {
    /// Empty until written to; then [`Framed::HEADROOM`] bytes of room, and the body.
    buf: Vec<u8>,
}

impl Framed {
    /// Room kept for the head: a `200` JSON answer's is ~120 bytes (status line, content type,
    /// length, `connection`, date).
    const HEADROOM: usize = 160;

    /// The body written so far.
    pub(crate) fn body(&self) -> &[u8] {
        self.buf.get(Self::HEADROOM..).unwrap_or_default()
    }

    /// The body to append to, with room for `more` bytes (the first call makes the buffer:
    /// a body not yet written to holds no memory).
    pub(crate) fn body_mut(&mut self, more: usize) -> &mut Vec<u8> {
        if self.buf.is_empty() {
            self.buf = Spare::take_answer(Self::HEADROOM + more);
            self.buf.resize(Self::HEADROOM, 0);
        } else {
            self.buf.reserve(more);
        }
        &mut self.buf
    }

    /// The body alone (for a response built the router's way).
    pub(crate) fn into_bytes(self) -> Bytes {
        let from = Self::HEADROOM.min(self.buf.len());
        Bytes::from(self.buf).slice(from..)
    }
}

/// An answer framed in its buffer (see [`frame_json`]).
struct FramedAnswer {
    buf: Vec<u8>,
    /// Where the head starts in `buf`, and where it ends (the body follows to the end).
    head: std::ops::Range<usize>,
}

impl FramedAnswer {
    fn head(&self) -> &[u8] {
        &self.buf[self.head.clone()]
    }

    fn whole(&self) -> &[u8] {
        &self.buf[self.head.start..]
    }
}

/// Writes a [`Answer::Json`]'s head into its headroom, as [`write_response`] frames the
/// router's answer with that status, content type and body.
fn frame_json(framed: Framed, keep_alive: bool, version: Version) -> FramedAnswer {
    use std::cell::RefCell;
    thread_local! {
        /// The head being written: one buffer per thread, kept.
        static HEAD: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    let body_len = framed.body().len();
    // A 1.0 client closes unless told the connection stays.
    let keep_alive_10 = keep_alive && version == Version::HTTP_10;
    let headers = [("content-type", &b"application/json"[..]), ("connection", b"keep-alive")];
    let headers = &headers[..if keep_alive_10 { 2 } else { 1 }];
    HEAD.with_borrow_mut(|head| {
        head.clear();
        write_head(
            head,
            StatusCode::OK,
            headers.iter().copied(),
            Some(Framing::Length(body_len)),
            keep_alive,
        );
        let mut buf = framed.buf;
        match Framed::HEADROOM.checked_sub(head.len()) {
            Some(start) if !buf.is_empty() => {
                buf[start..Framed::HEADROOM].copy_from_slice(head);
                FramedAnswer { buf, head: start..Framed::HEADROOM }
            }
            // No body, or a head longer than the room: a buffer of its own.
            _ => {
                let body = buf.get(Framed::HEADROOM..).unwrap_or_default();
                let mut whole = Vec::with_capacity(head.len() + body.len());
                whole.extend_from_slice(head);
                whole.extend_from_slice(body);
                FramedAnswer { head: 0..head.len(), buf: whole }
            }
        }
    })
}

/// A direct route (see [`Routes::direct`]).
pub(crate) type Direct = Arc<dyn Fn(&str) -> Option<RouteCall> + Send + Sync>;

/// A connection's routes: the router, and the requests answered without it.
#[derive(Clone)]
pub(crate) struct Routes {
    pub(crate) router: Router,
    /// Given a `GET`'s request target (path and query, as sent), the answer, for the few routes
    /// that take nothing else from a request (the polls) and only in the plainest form of their
    /// target; `None` sends the request through the router as any other. The router would
    /// answer such a request the same way, at the price of a header map, a parsed URI, its
    /// routing, extractors and layers: on a poll, most of the server's own work.
    pub(crate) direct: Direct,
}

/// A request handed to the routes: its answer on its way, and what the connection must know
/// to write it.
struct Pending {
    /// Boxed: a parked long poll holds it, an idle connection does not.
    call: RouteCall,
    keep_alive: bool,
    on_upgrade: Option<oneshot::Sender<Upgraded>>,
    head_only: bool,
    version: Version,
}

/// Reads the next request, head and body, and hands it to the routes. `None`: the connection
/// is over (closed, silent, stopping, or a refused request, answered). The head is read in
/// place (its state is smaller than the connection's other steps'); the rest of a routed
/// request, and a refusal, are boxed on their own (see [`serve`]): a poll, which a direct
/// route takes, makes no box here.
async fn receive(
    io: &mut Metered,
    buf: &mut BytesMut,
    app: &mut Routes,
    waits: &mut Waits<'_>,
) -> Option<Pending> {
    let routed = match read_head(io, buf, waits, &app.direct).await {
        Ok(Some(Parsed::Direct(pending))) => {
            forget_buffer_if_empty(buf);
            return Some(pending);
        }
        Ok(None) => return None,
        Ok(Some(Parsed::Full(head))) => Ok(head),
        Err(refusal) => Err(refusal),
    };
    // The rest in one box, made from the parsed head itself: this future then keeps no room
    // for a parsed head beside the head's read.
    Box::pin(route_or_refuse(io, buf, app, routed)).await
}

/// A routed request's rest ([`route`]), or a refusal written ([`refuse`]).
async fn route_or_refuse(
    io: &mut Metered,
    buf: &mut BytesMut,
    app: &mut Routes,
    routed: Result<Head, Refusal>,
) -> Option<Pending> {
    match routed {
        Ok(head) => route(io, buf, app, head).await,
        Err(refusal) => {
            refuse(io, refusal).await;
            None
        }
    }
}

/// The rest of a request for the router: its body read, then handed over.
async fn route(io: &mut Metered, buf: &mut BytesMut, app: &mut Routes, head: Head) -> Option<Pending> {
    let Head { mut request, framing, keep_alive, expects_continue, upgrade } = head;
    if expects_continue
        && framing != Framing::Length(0)
        && io.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.is_err()
    {
        return None;
    }
    let body = match read_body(io, buf, framing).await {
        Ok(Some(body)) => body,
        Ok(None) => return None,
        Err(refusal) => {
            Box::pin(refuse(io, refusal)).await;
            return None;
        }
    };
    *request.body_mut() = Body::from(body);
    forget_buffer_if_empty(buf);
    let on_upgrade = upgrade.then(|| {
        let (sender, receiver) = oneshot::channel();
        request.extensions_mut().insert(OnUpgrade(Arc::new(Mutex::new(Some(receiver)))));
        sender
    });
    let head_only = request.method() == Method::HEAD;
    let version = request.version();
    // A router is always ready; asked anyway, as the service contract wants.
    let router = &mut app.router;
    if std::future::poll_fn(|cx| Service::<Request<Body>>::poll_ready(router, cx)).await.is_err() {
        return None;
    }
    let answer = router.call(request);
    let call = Box::pin(async move {
        match answer.await {
            Ok(response) => Answer::Response(response),
            Err(never) => match never {},
        }
    });
    Some(Pending { call, keep_alive, on_upgrade, head_only, version })
}

/// Nothing pipelined behind the request just read: while it is answered (a long poll parked,
/// an SSE stream for hours) the connection keeps no read buffer (it goes back to the thread's
/// [`Spare`], for the next connection that reads).
fn forget_buffer_if_empty(buf: &mut BytesMut) {
    if buf.is_empty() {
        Spare::give_read(std::mem::take(buf));
    }
}

thread_local! {
    /// See [`Spare`].
    static SPARE_READ: std::cell::Cell<Option<BytesMut>> = const { std::cell::Cell::new(None) };
    /// See [`Spare`].
    static SPARE_ANSWER: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// One buffer of each kind a thread keeps between the connections it serves, one at a time: a
/// connection reads a head into a buffer and lets it go once the head is parsed, writes an
/// answer from another and lets it go once written, and the next connection on the thread,
/// a moment later, takes the same one back, still in cache. With 10 000 long polls answered in
/// a burst, the allocator's own per-thread cache (seven blocks of a size) overflows, and each
/// such buffer took its slower paths. Buffers that grew past [`Spare::MAX`] are not kept.
struct Spare;

impl Spare {
    /// The largest buffer kept.
    const MAX: usize = 16 * 1024;

    /// An empty read buffer: the thread's spare, or none yet (capacity 0).
    fn take_read() -> BytesMut {
        SPARE_READ.take().unwrap_or_default()
    }

    /// Keeps `buf` as the thread's spare read buffer when it is empty, the connection's alone
    /// (nothing split off from it is still held), and not grown past [`Spare::MAX`].
    fn give_read(mut buf: BytesMut) {
        if buf.is_empty() && buf.try_reclaim(READ_BUFFER) && buf.capacity() <= Self::MAX {
            SPARE_READ.set(Some(buf));
        }
    }

    /// An empty answer buffer with room for `bytes`.
    fn take_answer(bytes: usize) -> Vec<u8> {
        let mut buf = SPARE_ANSWER.take();
        buf.clear();
        buf.reserve_exact(bytes);
        buf
    }

    /// Keeps `buf` as the thread's spare answer buffer, unless it grew past [`Spare::MAX`].
    fn give_answer(buf: Vec<u8>) {
        if buf.capacity() <= Self::MAX {
            SPARE_ANSWER.set(buf);
        }
    }
}

/// Waits for the routes' answer. Meanwhile a client that goes away ends the request at once
/// (`None`), and what it sends (the next pipelined request) is kept in `buf` for after.
async fn answer(call: &mut RouteCall, io: &mut Metered, buf: &mut BytesMut) -> Option<Answer> {
    loop {
        tokio::select! {
            biased;
            response = call.as_mut() => return Some(response),
            heard = io.peek_one(), if buf.len() < MAX_HEAD_BYTES => match heard {
                Ok(1..) => {
                    buf.reserve(READ_BUFFER);
                    if !matches!(io.read_buf(buf).await, Ok(1..)) {
                        return None;
                    }
                }
                // Gone: the request is dropped with this connection.
                Ok(0) | Err(_) => return None,
            },
        }
    }
}

/// Reads until a whole head is in `buf` and parses it (taking it out of `buf`). `Ok(None)`:
/// the connection is over (closed, silent past the header timeout, or the server stopping).
async fn read_head(
    io: &mut Metered,
    buf: &mut BytesMut,
    waits: &mut Waits<'_>,
    direct: &Direct,
) -> Result<Option<Parsed>, Refusal> {
    let deadline = Instant::now() + waits.header_timeout;
    loop {
        if !buf.is_empty() {
            if let Some((head, used)) = parse_head(buf, direct)? {
                buf.advance(used);
                return Ok(Some(head));
            }
            if buf.len() >= MAX_HEAD_BYTES {
                return Err(too_large_head());
            }
        }
        if *waits.stop.borrow() {
            return Ok(None);
        }
        // Between requests the connection holds no buffer: one is made when bytes are there.
        if buf.capacity() == 0 && !matches!(waits.within(deadline, io.readable()).await, Some(Ok(()))) {
            return Ok(None);
        }
        if buf.capacity() == 0 {
            *buf = Spare::take_read();
        }
        if buf.capacity() - buf.len() < READ_BUFFER / 2 {
            buf.reserve(buf.capacity().clamp(READ_BUFFER, MAX_HEAD_BYTES));
        }
        match waits.within(deadline, io.read_buf(buf)).await {
            Some(Ok(1..)) => {}
            // Closed, failed, silent past the deadline, or the server stopping.
            Some(Ok(0)) | Some(Err(_)) | None => return Ok(None),
        }
    }
}

/// What a connection waiting for a request's head waits for besides the socket: the head's
/// deadline and the server stopping. Made once per connection and kept across its requests, so
/// that a request neither puts a timer in the runtime's timer wheel and takes it out again nor
/// joins and leaves the shutdown signal's list of waiters: each of those takes a lock and
/// touches the neighbours' entries in the list (cache misses, with thousands of connections),
/// and a long poll's connection waits for a head once per event.
struct Waits<'a> {
    header_timeout: Duration,
    /// Fires at or before the current head's deadline, never after it: deadlines only move
    /// later, so a timer set for an earlier head is early enough. When it fires early, it is set
    /// to the deadline then (once per header timeout at most, not once per request); firing
    /// while a route answers, it only wakes the connection's task for nothing.
    timer: std::pin::Pin<&'a mut tokio::time::Sleep>,
    /// The shutdown signal's change, waited for across requests (the connection ends once it
    /// is seen).
    stopping: std::pin::Pin<&'a mut (dyn std::future::Future<Output = ()> + Send)>,
    /// The same signal, to read.
    stop: watch::Receiver<bool>,
}

impl Waits<'_> {
    /// `step`'s output, or `None` if `deadline` passes or the server stops first. Biased to
    /// the step: when the socket is ready, neither the timer nor the signal is asked.
    async fn within<T>(
        &mut self,
        deadline: Instant,
        step: impl std::future::Future<Output = T>,
    ) -> Option<T> {
        let mut step = std::pin::pin!(step);
        loop {
            tokio::select! {
                biased;
                done = &mut step => return Some(done),
                () = self.timer.as_mut() => {
                    if Instant::now() >= deadline {
                        return None;
                    }
                    self.timer.as_mut().reset(deadline);
                }
                () = self.stopping.as_mut() => return None,
            }
        }
    }
}

fn too_large_head() -> Refusal {
    Refusal::new(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        ErrorCode::TooLarge,
        format!("the request head may be at most {MAX_HEAD_BYTES} bytes and {MAX_HEADERS} header lines"),
    )
}

/// A parsed head: a request for the router, or one a direct route took. (Passed up once per
/// request and never kept: the sizes of its variants do not matter.)
#[allow(clippy::large_enum_variant)]
enum Parsed {
    Full(Head),
    Direct(Pending),
}

/// Parses the head at the start of `bytes`, if it is all there: the head and its length.
fn parse_head(bytes: &[u8], direct: &Direct) -> Result<Option<(Parsed, usize)>, Refusal> {
    let mut lines = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut lines);
    let used = match parsed.parse(bytes) {
        Ok(httparse::Status::Complete(used)) => used,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(too_large_head()),
        Err(error) => return Err(Refusal::bad(format!("malformed request head: {error}"))),
    };
    if let Some(pending) = take_direct(&parsed, direct) {
        return Ok(Some((Parsed::Direct(pending), used)));
    }
    let method = Method::from_bytes(parsed.method.unwrap_or_default().as_bytes())
        .map_err(|_| Refusal::bad("malformed method"))?;
    let uri: Uri =
        parsed.path.unwrap_or_default().parse().map_err(|_| Refusal::bad("malformed request target"))?;
    let version = if parsed.version == Some(0) { Version::HTTP_10 } else { Version::HTTP_11 };
    let mut request = Request::new(Body::empty());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    let headers = request.headers_mut();
    headers.reserve(parsed.headers.len());
    for line in parsed.headers.iter() {
        let name = HeaderName::from_bytes(line.name.as_bytes())
            .map_err(|_| Refusal::bad("malformed header name"))?;
        let value =
            HeaderValue::from_bytes(line.value).map_err(|_| Refusal::bad("malformed header value"))?;
        headers.append(name, value);
    }
    let keep_alive = if version == Version::HTTP_11 {
        !has_token(headers, header::CONNECTION, "close")
    } else {
        has_token(headers, header::CONNECTION, "keep-alive")
    };
    let expects_continue =
        headers.get(header::EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let upgrade = headers.contains_key(header::UPGRADE);
    let framing = framing(headers)?;
    let head = Head { request, framing, keep_alive, expects_continue, upgrade };
    Ok(Some((Parsed::Full(head), used)))
}

/// A `GET` that a direct route takes, answered without the router: one with nothing but its
/// target to read (no body, no upgrade, no expectation) and every header line one the full
/// parse would accept as is. Anything else is `None`, for the full parse and the router.
fn take_direct(parsed: &httparse::Request<'_, '_>, direct: &Direct) -> Option<Pending> {
    if parsed.method != Some("GET") {
        return None;
    }
    let mut connection = Vec::new();
    for line in parsed.headers.iter() {
        let name = line.name;
        let framed_or_upgraded =
            [header::CONTENT_LENGTH, header::TRANSFER_ENCODING, header::UPGRADE, header::EXPECT]
                .iter()
                .any(|other| name.eq_ignore_ascii_case(other.as_str()));
        if framed_or_upgraded {
            return None;
        }
        // What `HeaderValue` takes: no control characters but tab.
        if !line.value.iter().all(|&b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80) {
            return None;
        }
        if name.eq_ignore_ascii_case(header::CONNECTION.as_str()) {
            connection.push(line.value);
        }
    }
    let version = if parsed.version == Some(0) { Version::HTTP_10 } else { Version::HTTP_11 };
    let keep_alive = if version == Version::HTTP_11 {
        !lists_token(connection.iter().copied(), "close")
    } else {
        lists_token(connection.iter().copied(), "keep-alive")
    };
    let call = direct(parsed.path?)?;
    Some(Pending { call, keep_alive, on_upgrade: None, head_only: false, version })
}

/// Whether a header of `name` lists `token` (comma-separated, any case): `Connection: close`,
/// `Upgrade: websocket`.
pub(crate) fn has_token(headers: &axum::http::HeaderMap, name: HeaderName, token: &str) -> bool {
    lists_token(headers.get_all(name).iter().map(HeaderValue::as_bytes), token)
}

/// Whether one of `values` lists `token` (comma-separated, any case); a value that is not all
/// visible ASCII lists nothing.
fn lists_token<'a>(values: impl Iterator<Item = &'a [u8]>, token: &str) -> bool {
    values
        .filter_map(|v| {
            std::str::from_utf8(v)
                .ok()
                .filter(|v| v.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)))
        })
        .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// How the body comes, by RFC 9112 §6.3, refusing what a proxy in front could read otherwise.
fn framing(headers: &axum::http::HeaderMap) -> Result<Framing, Refusal> {
    let codings: Vec<&HeaderValue> = headers.get_all(header::TRANSFER_ENCODING).iter().collect();
    let lengths: Vec<&HeaderValue> = headers.get_all(header::CONTENT_LENGTH).iter().collect();
    if !codings.is_empty() {
        if !lengths.is_empty() {
            return Err(Refusal::bad("a request may not have both Transfer-Encoding and Content-Length"));
        }
        let chunked_only = codings.len() == 1 && codings[0].as_bytes().eq_ignore_ascii_case(b"chunked");
        if !chunked_only {
            return Err(Refusal::new(
                StatusCode::NOT_IMPLEMENTED,
                ErrorCode::BadRequest,
                "the only transfer coding taken is chunked",
            ));
        }
        return Ok(Framing::Chunked);
    }
    let mut length = None;
    for value in lengths {
        for part in value.to_str().unwrap_or("x").split(',') {
            let n: usize = part.trim().parse().map_err(|_| Refusal::bad("malformed Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(Refusal::bad("differing Content-Length values"));
            }
            length = Some(n);
        }
    }
    let length = length.unwrap_or(0);
    if length > MAX_BODY_BYTES {
        return Err(too_large_body());
    }
    Ok(Framing::Length(length))
}

fn too_large_body() -> Refusal {
    Refusal::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::TooLarge,
        format!("a request body may be at most {MAX_BODY_BYTES} bytes"),
    )
}

/// Reads the body (taking it out of `buf`). `Ok(None)`: the connection ended first.
async fn read_body(io: &mut Metered, buf: &mut BytesMut, framing: Framing) -> Result<Option<Bytes>, Refusal> {
    match framing {
        Framing::Length(0) => Ok(Some(Bytes::new())),
        Framing::Length(length) => {
            if !fill(io, buf, length).await {
                return Ok(None);
            }
            Ok(Some(buf.split_to(length).freeze()))
        }
        Framing::Chunked => read_chunked(io, buf).await,
    }
}

/// Reads until `buf` holds at least `wanted` bytes; `false` if the connection ended first.
async fn fill(io: &mut Metered, buf: &mut BytesMut, wanted: usize) -> bool {
    while buf.len() < wanted {
        buf.reserve((wanted - buf.len()).min(64 * 1024));
        if !matches!(io.read_buf(buf).await, Ok(1..)) {
            return false;
        }
    }
    true
}

/// Reads a chunked body (RFC 9112 §7.1), trailers skipped.
async fn read_chunked(io: &mut Metered, buf: &mut BytesMut) -> Result<Option<Bytes>, Refusal> {
    let mut body = BytesMut::new();
    loop {
        // The size line.
        let (size, used) = loop {
            match httparse::parse_chunk_size(buf) {
                Ok(httparse::Status::Complete((used, size))) => break (size, used),
                Ok(httparse::Status::Partial) if buf.len() < 1024 => {
                    if !fill(io, buf, buf.len() + 1).await {
                        return Ok(None);
                    }
                }
                _ => return Err(Refusal::bad("malformed chunk size")),
            }
        };
        buf.advance(used);
        let size = usize::try_from(size).map_err(|_| too_large_body())?;
        if body.len() + size > MAX_BODY_BYTES {
            return Err(too_large_body());
        }
        if size == 0 {
            // Trailer lines up to an empty one.
            loop {
                let Some(end) = find_crlf(buf) else {
                    if buf.len() > MAX_HEAD_BYTES || !fill(io, buf, buf.len() + 1).await {
                        return Ok(None);
                    }
                    continue;
                };
                buf.advance(end + 2);
                if end == 0 {
                    return Ok(Some(body.freeze()));
                }
            }
        }
        if !fill(io, buf, size + 2).await {
            return Ok(None);
        }
        body.extend_from_slice(&buf[..size]);
        if &buf[size..size + 2] != b"\r\n" {
            return Err(Refusal::bad("a chunk must end with CRLF"));
        }
        buf.advance(size + 2);
    }
}

fn find_crlf(bytes: &[u8]) -> Option<usize> {
    bytes.windows(2).position(|w| w == b"\r\n")
}

/// Answers a refused request with its JSON error frame, and closes.
async fn refuse(io: &mut Metered, refusal: Refusal) {
    let body = Reply::error_json(Error::new(refusal.code, refusal.message));
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = refusal.status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let _ = write_response(io, response, false, false, Version::HTTP_11).await;
}

/// Writes an answer. `Ok(true)`: the connection can carry the next request.
async fn write_response(
    io: &mut Metered,
    response: Response<Body>,
    head_only: bool,
    keep_alive: bool,
    version: Version,
) -> std::io::Result<bool> {
    let status = response.status();
    let bodiless = head_only
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let exact = response.body().size_hint().exact().and_then(|n| usize::try_from(n).ok());
    // A stream to a 1.0 client ends with the connection.
    let keep_alive = keep_alive && (bodiless || exact.is_some() || version == Version::HTTP_11);
    let framing = match (bodiless, exact) {
        (true, _) if head_only => exact.map(Framing::Length),
        (true, _) => None,
        (false, Some(n)) => Some(Framing::Length(n)),
        (false, None) if version == Version::HTTP_11 => Some(Framing::Chunked),
        (false, None) => None,
    };
    // The head, made in a block of its own: the response's parts are not kept while the body
    // is written (they would be room in every connection's task).
    let (mut out, mut body) = {
        let (mut parts, body) = response.into_parts();
        if keep_alive && version == Version::HTTP_10 {
            // A 1.0 client closes unless told the connection stays.
            parts.headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        }
        (head_bytes(parts.status, &parts.headers, framing, keep_alive), body)
    };
    if bodiless {
        io.write_all(&out).await?;
        return Ok(keep_alive);
    }
    match framing {
        Some(Framing::Length(_)) => {
            // Known length: the whole answer in one write.
            while let Some(frame) = body.frame().await {
                match frame.map(|f| f.into_data()) {
                    Ok(Ok(data)) => out.extend_from_slice(&data),
                    Ok(Err(_trailers)) => {}
                    Err(_) => return Ok(false),
                }
            }
            io.write_all(&out).await?;
        }
        _ => {
            // A stream: each piece as it comes.
            let chunked = framing == Some(Framing::Chunked);
            io.write_all(&out).await?;
            drop(out);
            // A client that goes away ends the stream at once (an SSE stream may be idle for
            // long); once it sent something instead, it is no longer watched.
            let mut watching = true;
            loop {
                let frame = tokio::select! {
                    frame = body.frame() => frame,
                    heard = io.peek_one(), if watching => {
                        match heard {
                            Ok(1..) => watching = false,
                            Ok(0) | Err(_) => return Ok(false),
                        }
                        continue;
                    }
                };
                let Some(frame) = frame else { break };
                let Ok(frame) = frame else { return Ok(false) };
                let Ok(data) = frame.into_data() else { continue };
                if data.is_empty() {
                    continue;
                }
                if chunked {
                    // Framed in a buffer of its own, gone once written (an SSE stream idles with
                    // none), and written at once. (A vectored write of the size line, the data
                    // and the CRLF, with no copy, cost more: 12.7-13.5 against 11.9-12.9 µs of
                    // server CPU per SSE delivery, three alternated pairs.)
                    let mut line = [0u8; 20];
                    let line = chunk_size_line(data.len(), &mut line);
                    let mut framed = Vec::with_capacity(line.len() + data.len() + 2);
                    framed.extend_from_slice(line);
                    framed.extend_from_slice(&data);
                    framed.extend_from_slice(b"\r\n");
                    io.write_all(&framed).await?;
                } else {
                    io.write_all(&data).await?;
                }
            }
            if chunked {
                io.write_all(b"0\r\n\r\n").await?;
            }
        }
    }
    Ok(keep_alive)
}

/// `len` in hex and CRLF, in `out`: a chunk's size line.
pub(crate) fn chunk_size_line(len: usize, out: &mut [u8; 20]) -> &[u8] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut at = out.len() - 2;
    out[at..].copy_from_slice(b"\r\n");
    let mut n = len;
    loop {
        at -= 1;
        out[at] = DIGITS[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    &out[at..]
}

/// The status line and headers: the route's, then the framing, the date and, when closing,
/// `connection: close`.
fn head_bytes(
    status: StatusCode,
    headers: &axum::http::HeaderMap,
    framing: Option<Framing>,
    keep_alive: bool,
) -> Vec<u8> {
    // Room for a body of known length too: it is written in the same buffer.
    let body = match framing {
        Some(Framing::Length(n)) => n,
        _ => 0,
    };
    let mut out = Vec::with_capacity(256 + body);
    let headers = headers.iter().map(|(name, value)| (name.as_str(), value.as_bytes()));
    write_head(&mut out, status, headers, framing, keep_alive);
    out
}

/// Writes a response head to `out`: the status line, `headers` (lowercase names; any framing
/// or, when the connection closes, `connection` header among them is left out), the framing
/// and connection headers the answer needs, and the date.
fn write_head<'h>(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: impl Iterator<Item = (&'h str, &'h [u8])>,
    framing: Option<Framing>,
    keep_alive: bool,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            continue;
        }
        if !keep_alive && name == header::CONNECTION {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        Some(Framing::Length(n)) => {
            use std::io::Write as _;
            let _ = write!(out, "content-length: {n}\r\n");
        }
        Some(Framing::Chunked) => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        None => {}
    }
    if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"date: ");
    write_date(out);
    out.extend_from_slice(b"\r\n\r\n");
}

/// Today's `Date` header value, made once a second per thread, into `out`.
fn write_date(out: &mut Vec<u8>) {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};
    thread_local! {
        static CACHE: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
    }
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.0 != second || cache.1.is_empty() {
            *cache = (second, httpdate::fmt_http_date(now));
        }
        out.extend_from_slice(cache.1.as_bytes());
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How `head` parses with a direct route that takes every target: `Some(keep_alive)` if
    /// the direct route took it, `None` if it is for the router.
    fn taken(head: &str) -> Option<bool> {
        let direct: Direct = Arc::new(|_: &str| {
            Some(Box::pin(async { Answer::Response(Response::new(Body::empty())) }) as RouteCall)
        });
        match parse_head(head.as_bytes(), &direct) {
            Ok(Some((Parsed::Direct(pending), used))) => {
                assert_eq!(used, head.len());
                Some(pending.keep_alive)
            }
            Ok(Some((Parsed::Full(_), _))) => None,
            Ok(None) => panic!("incomplete: {head}"),
            Err(refusal) => panic!("refused: {refusal:?}"),
        }
    }

    #[test]
    fn only_a_plain_get_takes_a_direct_route() {
        assert_eq!(taken("GET /p HTTP/1.1\r\nHost: x\r\n\r\n"), Some(true));
        assert_eq!(taken("GET /p HTTP/1.1\r\nConnection: Keep-Alive, CLOSE\r\n\r\n"), Some(false));
        assert_eq!(taken("GET /p HTTP/1.0\r\n\r\n"), Some(false));
        assert_eq!(taken("GET /p HTTP/1.0\r\nconnection: keep-alive\r\n\r\n"), Some(true));
        for head in [
            "HEAD /p HTTP/1.1\r\n\r\n",
            "POST /p HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "GET /p HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "GET /p HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n",
            "GET /p HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            "GET /p HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
        ] {
            assert_eq!(taken(head), None, "{head}");
        }
    }

    /// A read buffer let go once empty is the next one taken on the thread (the same memory,
    /// reset to its start); one whose bytes are still held elsewhere, or one grown past the
    /// bound, is not kept. An answer buffer given back is taken again, emptied.
    #[test]
    fn a_thread_lends_its_spare_buffers_to_the_next_connection() {
        // Whatever an earlier test on this thread left.
        let _ = (Spare::take_read(), Spare::take_answer(0));

        let mut buf = BytesMut::with_capacity(READ_BUFFER);
        buf.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        buf.advance(buf.len());
        let at = buf.as_ptr();
        forget_buffer_if_empty(&mut buf);
        assert_eq!(buf.capacity(), 0, "the connection keeps no buffer");
        let next = Spare::take_read();
        assert!(next.is_empty() && next.capacity() >= READ_BUFFER);
        assert_eq!(
            next.as_ptr(),
            at.wrapping_sub(b"GET / HTTP/1.1\r\n\r\n".len()),
            "the same memory, from its start"
        );
        assert_eq!(Spare::take_read().capacity(), 0, "lent once");

        let mut shared = BytesMut::with_capacity(READ_BUFFER);
        shared.extend_from_slice(b"body");
        let held = shared.split_to(4).freeze();
        Spare::give_read(shared);
        assert_eq!(Spare::take_read().capacity(), 0, "a buffer whose bytes are held elsewhere is not kept");
        drop(held);

        let mut grown = BytesMut::with_capacity(Spare::MAX * 2);
        grown.extend_from_slice(b"x");
        grown.clear();
        Spare::give_read(grown);
        assert_eq!(Spare::take_read().capacity(), 0, "a grown buffer is not kept");

        let mut answer = Spare::take_answer(100);
        answer.extend_from_slice(b"{}");
        let at = answer.as_ptr();
        Spare::give_answer(answer);
        let again = Spare::take_answer(10);
        assert!(again.is_empty());
        assert_eq!(again.as_ptr(), at);
        Spare::give_answer(Vec::with_capacity(Spare::MAX + 1));
        assert_eq!(Spare::take_answer(0).capacity(), 0, "a grown answer buffer is not kept");
    }

    /// A JSON answer's head, written in the room before its body, is the head the router's
    /// answer with that status, content type and length gets (dates aside); with no body,
    /// or with no room for the head, it gets a buffer of its own.
    #[test]
    fn a_json_answer_is_framed_in_its_headroom_as_a_response_would_be() {
        let undated = |head: &[u8]| {
            let head = String::from_utf8(head.to_vec()).unwrap();
            head.lines().filter(|line| !line.starts_with("date: ")).collect::<Vec<_>>().join("\n")
        };
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (keep_alive, version) in
            [(true, Version::HTTP_11), (false, Version::HTTP_11), (true, Version::HTTP_10)]
        {
            let mut framed = Framed::default();
            framed.body_mut(2).extend_from_slice(b"{}");
            let answer = frame_json(framed, keep_alive, version);
            assert_eq!(answer.head.end, Framed::HEADROOM, "written in place");
            assert_eq!(&answer.whole()[answer.head.len()..], b"{}");
            let mut expected = headers.clone();
            if keep_alive && version == Version::HTTP_10 {
                expected.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
            }
            let expected = head_bytes(StatusCode::OK, &expected, Some(Framing::Length(2)), keep_alive);
            assert_eq!(undated(answer.head()), undated(&expected), "{keep_alive} {version:?}");
        }
        let answer = frame_json(Framed::default(), true, Version::HTTP_11);
        assert_eq!(answer.head(), answer.whole());
        assert!(undated(answer.head()).contains("content-length: 0"));
    }

    #[test]
    fn chunk_size_lines_are_hex_and_crlf() {
        for n in [0, 1, 15, 16, 255, 4096, 1_000_000, usize::MAX] {
            let mut out = [0u8; 20];
            assert_eq!(chunk_size_line(n, &mut out), format!("{n:x}\r\n").as_bytes());
        }
    }
}
