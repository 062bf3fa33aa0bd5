//! Fan-out without a task switch, for the streams that own a socket (WebSocket, SSE).
//!
//! The plain way is a task per connection, woken per event. Here a publish calls each
//! subscriber's [`Shared::deliver`] in the publisher's task, which reads the event for it
//! ([`Reader::read_now`]) and writes it to its socket at once, when the socket takes it. Only
//! what cannot be done so (a socket that is full, a batch bound, a read from the store, the end,
//! a busy room) wakes the connection's own task, through [`Shared::wanted`]. Everything that
//! writes to the socket does it holding [`Shared::conn`], so frames never interleave; the task
//! holds it for each whole turn (a command it executes included, so a client's ack goes before
//! the event its own publish delivers), a publisher only tries it.

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

/// Largest scratch buffer kept between deliveries (a batch's may be larger, once).
const SCRATCH_KEPT: usize = 64 * 1024;

thread_local! {
    /// Where [`Shared::deliver`] frames what it writes: a delivery written at once allocates
    /// nothing, and the connection keeps no buffer.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
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

impl<W: Wire> Deliver for Shared<W> {
    fn deliver(&self, write_now: bool) {
        if !write_now {
            self.wanted.notify_one(); // a busy room: the task takes several events per write
            return;
        }
        let Ok(mut conn) = self.conn.try_lock() else {
            self.wanted.notify_one(); // the task is in a turn: it reads again after it
            return;
        };
        if conn.closed {
            return;
        }
        if !conn.out.bytes().is_empty() {
            self.wanted.notify_one(); // bytes wait for the socket: the task writes them first
            return;
        }
        let Conn { reader, out, writer, .. } = &mut *conn;
        let complete = SCRATCH.with_borrow_mut(|scratch| {
            let mut framed = out.like(std::mem::take(scratch));
            let read = reader.read_now(&mut framed);
            framed.finish();
            if read.pushed > 0 {
                self.count(read.pushed);
                let bytes = framed.bytes();
                // Full (or failing): the rest waits for the task, which waits as long as a peer
                // may take to read.
                let written = writer.try_write(bytes).unwrap_or(0);
                if written < bytes.len() {
                    out.bytes().extend_from_slice(&bytes[written..]);
                }
            }
            let mut buf = std::mem::take(framed.bytes());
            buf.clear();
            if buf.capacity() <= SCRATCH_KEPT {
                *scratch = buf; // else a large batch is over: let it go
            }
            read.complete
        });
        if !complete || !conn.out.bytes().is_empty() {
            self.wanted.notify_one();
        }
    }
}
