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

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Totals over all connections.
#[derive(Debug, Default)]
pub struct Meter {
    /// Bytes read from clients.
    pub received: AtomicU64,
    /// Bytes written to clients.
    pub sent: AtomicU64,
    /// Connections accepted.
    pub connections: AtomicU64,
}

/// A listener whose connections report to a [`Meter`], with Nagle's delay turned off (events are
/// small and latency matters more than packet count).
pub struct MeteredListener {
    inner: TcpListener,
    meter: Arc<Meter>,
}

impl MeteredListener {
    /// Wraps `inner`.
    pub fn new(inner: TcpListener, meter: Arc<Meter>) -> Self {
        MeteredListener { inner, meter }
    }
}

impl Listener for MeteredListener {
    type Io = Metered;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Metered, std::net::SocketAddr) {
        let (stream, addr) = Listener::accept(&mut self.inner).await;
        let _ = stream.set_nodelay(true);
        self.meter.connections.fetch_add(1, Ordering::Relaxed);
        (Metered { stream, meter: self.meter.clone() }, addr)
    }

    fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.inner.local_addr()
    }
}

/// One counted connection.
pub struct Metered {
    stream: TcpStream,
    meter: Arc<Meter>,
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
        if let Poll::Ready(Ok(written)) = &poll {
            self.meter.sent.fetch_add(*written as u64, Ordering::Relaxed);
        }
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(written)) = &poll {
            self.meter.sent.fetch_add(*written as u64, Ordering::Relaxed);
        }
        poll
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
