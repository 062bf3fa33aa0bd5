//! Fan-out without a task switch, for the streams that own a socket (WebSocket, SSE).
//!
//! The plain way is a task per connection, woken per event. Here a publish calls each
//! subscriber's [`Shared::deliver`] in the publisher's task, which reads the event for it
//! ([`Reader::read_now`]) and frames it into the connection's `out`; once a batch of
//! subscribers has read, [`Shared::write_framed`] writes each one's bytes to its socket, when the
//! socket takes them (two tight loops, each staying in the CPU's caches, instead of one loop
//! that alternates reader and kernel). Only what cannot be done so (a socket that is full, a
//! batch bound, a read from the store, the end, a busy room) wakes the connection's own task,
//! through [`Shared::wanted`]. Everything that writes to the socket does it holding
//! [`Shared::conn`], and writes what waits in `out` before anything newer, so frames never
//! interleave or reorder; the task holds it for each whole turn (a command it executes
//! included, so a client's ack goes before the event its own publish delivers), a publisher
//! only tries it.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use quartet_core::{Deliver, Reader, Sink};
use tokio::sync::Notify;

use crate::meter::SharedWriter;
use crate::metrics::TransportStats;
use crate::transport::Transport;

/// A transport's write buffer: what its sink frames, as it goes on the wire.
pub(crate) trait Wire: Sink + Send + 'static {
    /// The bytes framed so far.
    fn bytes(&mut self) -> &mut Vec<u8>;

    /// An empty one framing the same way, over `buf` (a reused scratch buffer).
    fn like(&self, buf: Vec<u8>) -> Self;

    /// Completes the framing of what one read pushed (SSE: the chunk it makes).
    fn finish(&mut self) {}
}

/// Largest buffer kept for reuse (a batch's may be larger, once).
const BUFFER_KEPT: usize = 64 * 1024;
/// Buffers kept for reuse per thread: a fan-out holds one per connection of a batch (see
/// `FAN_OUT_BATCH` in the core's log) from its read to its write.
const BUFFERS_KEPT: usize = 256;

thread_local! {
    /// Buffers for what [`Shared::deliver`] frames: a connection holds one only from its
    /// delivery to its write (the task's own bytes aside), so an idle one holds none, and a
    /// fan-out allocates nothing once warm.
    static BUFFERS: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A buffer from [`BUFFERS`], empty.
pub(crate) fn take_buffer() -> Vec<u8> {
    BUFFERS.with_borrow_mut(Vec::pop).unwrap_or_default()
}

/// Gives a buffer back to [`BUFFERS`] (or lets it go).
pub(crate) fn give_back(mut buffer: Vec<u8>) {
    if buffer.capacity() == 0 || buffer.capacity() > BUFFER_KEPT {
        return;
    }
    buffer.clear();
    BUFFERS.with_borrow_mut(|buffers| {
        if buffers.len() < BUFFERS_KEPT {
            buffers.push(buffer);
        }
    });
}

/// The writing side of a connection delivered to in publishers' tasks: its bytes waiting and
/// its socket, behind the connection's lock.
pub(crate) trait Outbound {
    /// Bytes not yet written, and the socket they go to.
    fn waiting(&mut self) -> (&mut Vec<u8>, &SharedWriter);

    /// Set by the task's last turn: nothing more goes out.
    fn closed(&self) -> bool;
}

/// Phase one's checks, the same for every connection delivered to in a publisher's task:
/// returns the connection, locked, when the publisher may read and frame for it now; else
/// wakes its task where the task has work (`wake`), and returns `None`.
pub(crate) fn may_deliver<'a, C: Outbound>(
    conn: &'a tokio::sync::Mutex<C>,
    wake: &Notify,
    write_now: bool,
) -> Option<tokio::sync::MutexGuard<'a, C>> {
    if !write_now {
        wake.notify_one(); // a busy room: the task takes several events per write
        return None;
    }
    let Ok(mut conn) = conn.try_lock() else {
        wake.notify_one(); // the task is in a turn: it reads again after it
        return None;
    };
    if conn.closed() {
        return None;
    }
    if !conn.waiting().0.is_empty() {
        wake.notify_one(); // bytes wait for the socket: the task writes them first
        return None;
    }
    Some(conn)
}

/// Phase two, the same for every connection: sends what phase one framed, as much as the
/// socket takes now, and gives the buffer back once all of it went. The rest (a full socket,
/// or failing), or all of it when the task holds the lock, goes with the task's next write,
/// which waits as long as a peer may take to read.
pub(crate) fn write_framed<C: Outbound>(conn: &tokio::sync::Mutex<C>, wake: &Notify) {
    let Ok(mut conn) = conn.try_lock() else {
        wake.notify_one();
        return;
    };
    if conn.closed() {
        return;
    }
    let (out, writer) = conn.waiting();
    if out.is_empty() {
        return;
    }
    let written = writer.try_write(out).unwrap_or(0);
    if written < out.len() {
        out.drain(..written);
        wake.notify_one();
        return;
    }
    give_back(std::mem::take(out));
}

/// What a connection's task shares with the publishers that write to its socket.
pub(crate) struct Shared<W> {
    pub(crate) conn: tokio::sync::Mutex<Conn<W>>,
    /// Wakes the task: work a publisher left.
    pub(crate) wanted: Notify,
    stats: Arc<TransportStats>,
    transport: Transport,
}

/// The writing side of a connection.
pub(crate) struct Conn<W> {
    pub(crate) reader: Reader,
    /// Bytes not yet written: empty between turns unless a publisher left some.
    pub(crate) out: W,
    writer: SharedWriter,
    /// Set by the task's last turn: nothing more goes out (a close frame, the last chunk may
    /// have).
    pub(crate) closed: bool,
}

impl<W: Wire> Shared<W> {
    /// Starts delivering `reader`'s events from publishers' tasks, framed by `out`, written with
    /// `writer`; publishers stop when the returned [`quartet_core::Delivering`] is dropped. The
    /// task reads once first: what came before is its to deliver (see [`Reader::deliver_to`]).
    pub(crate) fn start(
        reader: Reader,
        out: W,
        writer: SharedWriter,
        stats: Arc<TransportStats>,
        transport: Transport,
    ) -> (Arc<Shared<W>>, quartet_core::Delivering) {
        let mut delivering = None;
        let shared = Arc::new_cyclic(|me: &std::sync::Weak<Shared<W>>| {
            delivering = Some(reader.deliver_to(me.clone()));
            Shared {
                conn: tokio::sync::Mutex::new(Conn { reader, out, writer, closed: false }),
                wanted: Notify::new(),
                stats,
                transport,
            }
        });
        shared.wanted.notify_one();
        (shared, delivering.expect("set by new_cyclic"))
    }
}

impl<W: Wire> Shared<W> {
    /// The task's read, for work a publisher left: what there is, framed, counted; and as a
    /// batch bound may have left more, another turn until a read finds nothing. Errors are
    /// the reader's (the client removed, too slow, the store failing), for the task to say.
    pub(crate) async fn read(&self, conn: &mut Conn<W>) -> Result<usize, quartet_protocol::Error> {
        let Conn { reader, out, .. } = conn;
        let pushed = reader.read_into(out).await?;
        out.finish();
        self.count(pushed);
        if pushed > 0 {
            self.wanted.notify_one();
        }
        Ok(pushed)
    }

    fn count(&self, delivered: usize) {
        self.stats.of(self.transport).delivered.fetch_add(delivered as u64, Ordering::Relaxed);
    }
}

impl<W: Wire> Outbound for Conn<W> {
    fn waiting(&mut self) -> (&mut Vec<u8>, &SharedWriter) {
        (self.out.bytes(), &self.writer)
    }

    fn closed(&self) -> bool {
        self.closed
    }
}

impl<W: Wire> Deliver for Shared<W> {
    fn deliver(&self, write_now: bool) -> bool {
        let Some(mut conn) = may_deliver(&self.conn, &self.wanted, write_now) else { return false };
        let Conn { reader, out, .. } = &mut *conn;
        let mut framed = out.like(take_buffer());
        let read = reader.read_now(&mut framed);
        framed.finish();
        if !read.complete {
            self.wanted.notify_one();
        }
        if read.pushed == 0 {
            give_back(std::mem::take(framed.bytes()));
            return false;
        }
        self.count(read.pushed);
        // Kept in `out` until written: whoever writes next (this task's `write_framed` or the
        // connection's task, if it takes the lock first) writes it before anything newer.
        std::mem::swap(out.bytes(), framed.bytes());
        true
    }

    fn write_framed(&self) {
        write_framed(&self.conn, &self.wanted);
    }
}
