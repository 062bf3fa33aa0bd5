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
use std::task::{Context, Poll};
use std::time::Duration;

use axum::serve::Listener;

use crate::connections::Slot;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;

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
        let _ = stream.set_nodelay(true);
        self.meter.connections.fetch_add(1, Ordering::Relaxed);
        let metered = Metered {
            stream,
            meter: self.meter.clone(),
            write_patience: self.write_patience,
            stalled: None,
            slot: None,
        };
        (metered, addr)
    }

    fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.inner.local_addr()
    }
}

/// One counted connection, and the guard against a peer that stops reading.
///
/// A client that keeps its connection open but stops reading would hold its stream, its session
/// and up to megabytes of kernel buffers for as long as it likes: the server's writes to it just
/// wait. So a write that has waited `write_patience` (the client timeout) fails with `TimedOut`,
/// which ends the connection for whichever transport was writing (an SSE stream, a long-poll
/// answer, a WebSocket). The client resumes from its cursor like after any disconnection.
pub(crate) struct Metered {
    stream: TcpStream,
    meter: Arc<Meter>,
    write_patience: Duration,
    /// Armed while a write waits for the peer; cleared by any progress.
    stalled: Option<Pin<Box<Sleep>>>,
    /// Its place under the connection caps, given back when the connection is dropped.
    slot: Option<Slot>,
}

impl Metered {
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
                self.meter.stalled.fetch_add(1, Ordering::Relaxed);
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the peer stopped reading")))
            }
            error => error,
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
        let poll = Pin::new(&mut self.stream).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        self.meter.received.fetch_add(read as u64, Ordering::Relaxed);
        poll
    }
}

impl AsyncWrite for Metered {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write(cx, data);
        self.account(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.account(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
