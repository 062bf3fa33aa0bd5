//! How a reader hands an event to a transport: as borrowed, already-encoded pieces
//! ([`EncodedFrame`]) pushed into the transport's [`Sink`].
//!
//! An event's JSON is the entry's shared head (encoded once, when it was appended), then the
//! reader's own cursor, then [`FRAME_TAIL`]. A sink copies those pieces straight into its write
//! buffer: one copy of the event's bytes per reader, no allocation per delivery.

use bytes::BufMut;
pub use quartet_protocol::event::FRAME_TAIL;
use quartet_protocol::event::GapReason;
use quartet_protocol::{LogId, Seq};

use crate::entry::Entry;

/// One event or gap as a reader hands it over: its JSON is `head`, then `cursor`, then
/// [`FRAME_TAIL`]. `cursor` is also the position after it (SSE writes it as the `id:` line).
#[derive(Clone, Copy, Debug)]
pub struct EncodedFrame<'a> {
    /// The JSON up to and including `"cursor":"`, shared by every reader of an event.
    pub head: &'a [u8],
    /// This reader's cursor after the frame.
    pub cursor: &'a str,
    /// What the frame says, for a sink that writes events in another protocol's form (Socket.IO)
    /// instead of the native JSON.
    pub source: Source<'a>,
}

/// What a frame says, unencoded.
#[derive(Clone, Copy, Debug)]
pub enum Source<'a> {
    /// An event of a log.
    Event(&'a Entry),
    /// Events of `log` were missed, `missed` says which when known.
    Gap {
        /// The log with the hole.
        log: &'a LogId,
        /// Why.
        reason: GapReason,
        /// First and last missed seq.
        missed: Option<(Seq, Seq)>,
    },
}

impl EncodedFrame<'_> {
    /// Length of the frame's JSON.
    pub fn json_len(&self) -> usize {
        self.head.len() + self.cursor.len() + FRAME_TAIL.len()
    }

    /// Appends the frame's JSON to `out` (reserve [`EncodedFrame::json_len`] first to write it
    /// without growing the buffer).
    pub fn write_json(&self, out: &mut impl BufMut) {
        out.put_slice(self.head);
        out.put_slice(self.cursor.as_bytes());
        out.put_slice(FRAME_TAIL);
    }
}

/// Where a reader puts what it delivers. Each transport frames events its own way (a WebSocket
/// text frame, an SSE `id:`/`data:` block, an element of a poll's JSON array) straight into its
/// write buffer.
pub trait Sink {
    /// Takes one event or gap, in delivery order.
    fn push(&mut self, frame: EncodedFrame<'_>);
}

/// A reader's transport that takes its deliveries in the task that makes them readable (a
/// publisher's), instead of waking a task of its own for each: see [`Reader::deliver_to`].
///
/// [`Reader::deliver_to`]: crate::Reader::deliver_to
pub trait Deliver: Send + Sync {
    /// Something this reader reads may have changed (a new event, a join or leave, the end of
    /// its session). Called in the task that changed it, so it must not wait: it reads and
    /// frames what it can now ([`Reader::read_now`]) and leaves the rest to its own task. With
    /// `write_now` false (events come faster than one write each pays off, see
    /// [`BATCHING_GAP`](crate::limits::BATCHING_GAP)) it only wakes its task, which then takes
    /// several events per write.
    ///
    /// Returns whether it framed bytes for [`Deliver::write_framed`], which the same task calls
    /// once every reader of the change has read: a fan-out runs the readers back to back, then
    /// the socket writes back to back, each a tight loop that stays in the CPU's caches.
    ///
    /// [`Reader::read_now`]: crate::Reader::read_now
    fn deliver(&self, write_now: bool) -> bool;

    /// Writes what [`Deliver::deliver`] framed, as much as the socket takes now.
    fn write_framed(&self);
}
