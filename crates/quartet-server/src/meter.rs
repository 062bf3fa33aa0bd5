//! Counts every byte the server reads and writes on its TCP sockets, headers and WebSocket
//! framing included, for `/metrics` and for `quartet bench`'s "bytes on the wire per delivered
//! message".
//!
//! It wraps the listener, so it sees exactly what the kernel was handed: HTTP request lines and
//! headers, chunked-encoding prefixes, WebSocket frame headers and masks, keep-alives. (TCP/IP
//! headers themselves are below it and not counted.)

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;

use crate::connections::Slot;

/// Totals over all connections.
#[derive(Debug, Default)]
pub(crate) struct Meter {
    /// Bytes read from clients.
    pub(crate) received: AtomicU64,
    /// Bytes written to clients.
    pub(crate) sent: AtomicU64,
    /// Connections accepted.
    pub(crate) connections: AtomicU64,
    /// Connections given up on because the peer stopped taking bytes (see [`Metered`]).
    pub(crate) stalled: AtomicU64,
    /// Connections closed at once because a connection cap was reached.
    pub(crate) refused: AtomicU64,
}

/// A listener whose connections report to a [`Meter`], with Nagle's delay turned off (events are
/// small and latency matters more than packet count).
pub(crate) struct MeteredListener {
    inner: TcpListener,
    meter: Arc<Meter>,
    write_patience: Duration,
}

impl MeteredListener {
    /// Wraps `inner`. A connection whose peer takes none of our bytes for `write_patience` is
    /// given up on (its writes fail), whatever is writing to it.
    pub(crate) fn new(inner: TcpListener, meter: Arc<Meter>, write_patience: Duration) -> Self {
        MeteredListener { inner, meter, write_patience }
    }
}

impl Listener for MeteredListener {
    type Io = Metered;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Metered, std::net::SocketAddr) {
        let (stream, addr) = Listener::accept(&mut self.inner).await;
        tune(&stream, self.write_patience);
        self.meter.connections.fetch_add(1, Ordering::Relaxed);
        let metered = Metered {
            stream: Some(Arc::new(stream)),
            meter: self.meter.clone(),
            write_patience: self.write_patience,
            stalled: None,
            slot: None,
            peer_done: false,
            stall_counted: false,
        };
        (metered, addr)
    }

    fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.inner.local_addr()
    }
}

/// Sets up an accepted connection: no Nagle delay (events go out as they are written), and, on
/// Linux, `TCP_USER_TIMEOUT` at the client timeout: data the peer has not acknowledged for that
/// long makes the kernel end the connection. Without it a peer that vanished without a trace (a
/// phone in a tunnel) keeps an SSE stream, and so its client, alive until the kernel gives up
/// retransmitting the keep-alives, about 15 minutes; a WebSocket's pings catch it sooner anyway.
pub(crate) fn tune(stream: &TcpStream, patience: Duration) {
    let _ = stream.set_nodelay(true);
    #[cfg(target_os = "linux")]
    {
        let _ = socket2::SockRef::from(stream).set_tcp_user_timeout(Some(patience));
    }
    #[cfg(not(target_os = "linux"))]
    let _ = patience;
}

/// One counted connection, and the guard against a peer that stops reading.
///
/// A client that keeps its connection open but stops reading would hold its stream, its session
/// and up to megabytes of kernel buffers for as long as it likes: the server's writes to it just
/// wait. So a write that has waited `write_patience` (the client timeout) fails with `TimedOut`,
/// which ends the connection for whichever transport was writing (an SSE stream, a long-poll
/// answer, a WebSocket). The client resumes from its cursor like after any disconnection.
pub(crate) struct Metered {
    /// `None` only once dropped (handed to [`linger`]). Shared with a [`SharedWriter`], if one
    /// was made; reads and writes go through `&TcpStream`.
    stream: Option<Arc<TcpStream>>,
    meter: Arc<Meter>,
    write_patience: Duration,
    /// Armed while a write waits for the peer; cleared by any progress.
    stalled: Option<Pin<Box<Sleep>>>,
    /// Its place under the connection caps, given back when the connection is dropped.
    slot: Option<Slot>,
    /// The peer closed its side (a read saw the end): nothing to linger for.
    peer_done: bool,
    /// Counted in `stalled` already.
    stall_counted: bool,
}

/// How long a connection the server ends is kept reading (and discarding) what the peer still
/// sends, at most, and how much of it (see [`linger`]).
pub(crate) const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 16 * 1024 * 1024;

/// Ends a connection the way careful servers do: a FIN after everything written (the peer reads
/// all of it, the last answer included: a WebSocket close frame, a 413), then reading and
/// discarding what the peer still sends until it closes too, for at most [`LINGER`]. Closing
/// at once while the peer's bytes still arrive makes the kernel answer them with a reset, which
/// can destroy the answer before the peer has read it (RFC 6455 §7.1.1; nginx's lingering
/// close does the same for HTTP).
async fn linger(stream: Arc<TcpStream>, slot: Option<Slot>) {
    // The FIN: shuts the writing half only.
    let _ = socket2::SockRef::from(&*stream).shutdown(std::net::Shutdown::Write);
    let mut discard = vec![0u8; 16 * 1024];
    let mut budget = LINGER_BYTES;
    let _ = tokio::time::timeout(LINGER, async {
        loop {
            if stream.readable().await.is_err() {
                break;
            }
            match stream.try_read(&mut discard) {
                Ok(0) => break,
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    if budget == 0 {
                        break;
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => break,
            }
        }
    })
    .await;
    drop(slot);
}

impl Drop for Metered {
    fn drop(&mut self) {
        let Some(stream) = self.stream.take() else { return };
        if self.peer_done {
            return;
        }
        // A runtime is there whenever a connection is dropped by the server; if not, close.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(linger(stream, self.slot.take()));
        }
    }
}

impl Metered {
    /// Closes at once, without lingering: a connection refused at accept must give its
    /// descriptor back now (see [`linger`]).
    pub(crate) fn close_now(mut self) {
        self.peer_done = true;
    }

    /// Waits until the socket has bytes to read (or its end, or an error, which the next read
    /// then reports): lets a connection wait for its next request without a buffer.
    pub(crate) async fn readable(&self) -> io::Result<()> {
        self.stream().readable().await
    }

    /// Waits until the peer sent something or closed: `Ok(0)` once it closed, else `Ok(1)`
    /// (the byte stays unread). Lets a connection notice a client gone while its answer is
    /// still being made, without a buffer.
    pub(crate) async fn peek_one(&self) -> io::Result<usize> {
        let mut one = [0u8; 1];
        self.stream().peek(&mut one).await
    }

    /// A handle that writes to this connection from elsewhere without waiting (see
    /// [`SharedWriter`]).
    pub(crate) fn shared_writer(&self) -> SharedWriter {
        SharedWriter { stream: self.stream.clone().expect("a live connection"), meter: self.meter.clone() }
    }

    fn stream(&self) -> &TcpStream {
        self.stream.as_ref().expect("a live connection")
    }

    /// Keeps `slot` for as long as the connection lives (an upgraded WebSocket too).
    pub(crate) fn hold(&mut self, slot: Slot) {
        self.slot = Some(slot);
    }

    /// Counts what was written, and turns a wait longer than `write_patience` into an error.
    fn account(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        match poll {
            Poll::Ready(Ok(written)) => {
                self.meter.sent.fetch_add(written as u64, Ordering::Relaxed);
                self.stalled = None;
                Poll::Ready(Ok(written))
            }
            Poll::Pending => {
                let patience = self.write_patience;
                let timer = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(patience)));
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.count_stall();
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the peer stopped reading")))
            }
            Poll::Ready(Err(error)) => {
                self.kernel_verdict(&error);
                Poll::Ready(Err(error))
            }
        }
    }

    /// The kernel's `TCP_USER_TIMEOUT` (see [`tune`]) runs at the same patience and may end
    /// the connection before the write timer fires: its `ETIMEDOUT`, on a read or a write, is
    /// the same verdict, counted the same.
    fn kernel_verdict(&mut self, error: &io::Error) {
        if error.kind() == io::ErrorKind::TimedOut {
            self.count_stall();
        }
    }

    /// Counts the connection as stalled, once.
    fn count_stall(&mut self) {
        if !self.stall_counted {
            self.stall_counted = true;
            self.meter.stalled.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl AsyncRead for Metered {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = loop {
            let stream = self.stream();
            if let Err(error) = ready!(stream.poll_read_ready(cx)) {
                break Poll::Ready(Err(error));
            }
            // A read that leaves room in the buffer has drained the socket, and with Linux's
            // edge-triggered epoll any later bytes bring a new readiness event: saying so
            // (the `WouldBlock` below makes tokio forget the readiness it holds, unless an
            // event came since) spares the next wait a syscall that would find nothing, one
            // per request on a keep-alive connection. Tokio's own `TcpStream` reads do the same.
            let room = buf.remaining();
            let mut got = None;
            let read = stream.try_io(Interest::READABLE, || {
                let n = stream.try_read_buf(buf)?;
                got = Some(n);
                if 0 < n && n < room { Err(io::ErrorKind::WouldBlock.into()) } else { Ok(n) }
            });
            match read {
                _ if got.is_some() => break Poll::Ready(Ok(())),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                Err(error) => break Poll::Ready(Err(error)),
                Ok(_) => break Poll::Ready(Ok(())),
            }
        };
        let read = buf.filled().len() - before;
        self.meter.received.fetch_add(read as u64, Ordering::Relaxed);
        match &poll {
            Poll::Ready(Ok(())) if read == 0 && buf.remaining() > 0 => self.peer_done = true,
            Poll::Ready(Err(error)) => self.kernel_verdict(error),
            _ => {}
        }
        poll
    }
}

impl AsyncWrite for Metered {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let poll = poll_io(self.stream(), cx, |stream| stream.try_write(data));
        self.account(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = poll_io(self.stream(), cx, |stream| stream.try_write_vectored(bufs));
        self.account(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(())) // TCP keeps nothing back to flush (Nagle is off)
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(socket2::SockRef::from(self.stream()).shutdown(std::net::Shutdown::Write))
    }
}

/// A write to `stream` as a poll: tried when the socket is writable, else waits for it.
fn poll_io(
    stream: &TcpStream,
    cx: &mut Context<'_>,
    mut write: impl FnMut(&TcpStream) -> io::Result<usize>,
) -> Poll<io::Result<usize>> {
    loop {
        ready!(stream.poll_write_ready(cx))?;
        match write(stream) {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
            result => return Poll::Ready(result),
        }
    }
}

/// Writes to a connection from outside the task that serves it, never waiting: a publisher
/// hands an event straight to a subscriber's socket (see `transport/direct.rs`). Whoever uses
/// one must keep the connection's writes in order with its task's (the WebSocket and SSE
/// routes do so under one lock). The bytes count in the meter like any others.
pub(crate) struct SharedWriter {
    stream: Arc<TcpStream>,
    meter: Arc<Meter>,
}

impl SharedWriter {
    /// Writes what the socket takes now; `WouldBlock` when it takes nothing. A plain `send`:
    /// the runtime's idea of the socket's readiness is neither asked nor changed (a full
    /// socket is found by the task's next write, which then waits for it).
    pub(crate) fn try_write(&self, data: &[u8]) -> io::Result<usize> {
        let written = socket2::SockRef::from(&*self.stream).send(data)?;
        self.meter.sent.fetch_add(written as u64, Ordering::Relaxed);
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An accepted connection gets no Nagle delay and, on Linux, the kernel's user timeout at
    /// the client timeout (read back from the socket).
    #[tokio::test]
    async fn an_accepted_connection_is_tuned() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let client = tokio::spawn(TcpStream::connect(address));
        let (accepted, _) = listener.accept().await.unwrap();
        let _client = client.await.unwrap().unwrap();
        let patience = Duration::from_millis(12_345);
        tune(&accepted, patience);
        assert!(accepted.nodelay().unwrap());
        #[cfg(target_os = "linux")]
        assert_eq!(socket2::SockRef::from(&accepted).tcp_user_timeout().unwrap(), Some(patience));
    }
}
