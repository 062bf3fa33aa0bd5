//! A reader: one client's position in all the logs it reads, and the two ways to read them.
//!
//! - [`Reader::read_since`]: whatever is there now, at once (short poll).
//! - [`Reader::wait_since`]: the first non-empty batch, or an empty one at the deadline (long
//!   poll; SSE and WebSocket call it in a loop).
//!
//! A reader is cheap and transport-agnostic; a short poll makes one per request, a WebSocket one
//! per connection. While a reader exists its client counts as alive.
//!
//! This is the hottest code of the server: every delivery passes through it. So the list of
//! logs is rebuilt only when the client joins or leaves a room, the cursor of each delivery is
//! written into reused buffers, and the transports' own paths ([`Reader::read_into`],
//! [`Reader::next_into`]) hand each event to a [`Sink`] as borrowed pieces (the shared,
//! pre-encoded JSON and this reader's cursor), which the transport frames straight into its
//! write buffer: one copy of the event's bytes per reader, no allocation per delivery.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::{BufMut, Bytes};
use tokio::time::Instant;

use crate::cursor::Cursor;
use crate::entry::{Entry, FRAME_TAIL, gap_head};
use crate::error::Error;
use crate::hub::Shared;
use crate::ids::{LogId, Seq};
use crate::limits::MAX_EVENTS_PER_BATCH;
use crate::log::Log;
use crate::session::Session;

/// One event or gap as a reader hands it over: its JSON is `head`, then `cursor`, then
/// [`FRAME_TAIL`]. `cursor` is also the position after it (SSE writes it as the `id:` line).
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    /// The JSON up to and including `"cursor":"`, shared by every reader of an event.
    pub head: &'a [u8],
    /// This reader's cursor after the frame.
    pub cursor: &'a str,
}

impl Frame<'_> {
    /// Length of the frame's JSON.
    pub fn json_len(&self) -> usize {
        self.head.len() + self.cursor.len() + FRAME_TAIL.len()
    }

    /// Appends the frame's JSON to `out` (reserve [`Frame::json_len`] first to write it without
    /// growing the buffer).
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
    fn push(&mut self, frame: Frame<'_>);
}

/// Collects owned deliveries; for tests and callers that want a [`Batch`].
impl Sink for Vec<Delivery> {
    fn push(&mut self, frame: Frame<'_>) {
        let mut json = Vec::with_capacity(frame.json_len());
        frame.write_json(&mut json);
        self.push(Delivery { frame: Bytes::from(json), cursor: frame.cursor.to_owned() });
    }
}

/// One event or gap, ready for a transport to write.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The complete JSON object (`{"type":"event",...}` or `{"type":"gap",...}`).
    pub frame: Bytes,
    /// The cursor after it (also inside `frame`); SSE writes it as the `id:` line.
    pub cursor: String,
}

/// What one read returns: the deliveries and the cursor after the last of them.
///
/// `cursor` can move even when `deliveries` is empty: events the client may not see (another
/// client's `self` events, its own `others` events) are stepped over.
#[derive(Clone, Debug)]
pub struct Batch {
    /// Events and gaps, each log's in seq order.
    pub deliveries: Vec<Delivery>,
    /// Where the next read starts.
    pub cursor: String,
}

/// One log as this reader reads it.
struct LogRead {
    log: Arc<Log>,
    /// The earliest position the client may read from (its join, for a room).
    floor: Seq,
    /// Last seq delivered (or stepped over).
    at: Seq,
}

/// See the module doc.
pub struct Reader {
    shared: Arc<Shared>,
    session: Arc<Session>,
    /// The logs read, sorted by id (the cursor lists them in that order).
    reads: Vec<LogRead>,
    /// The session's membership version `reads` was built for.
    membership: Option<u64>,
    /// Positions from the cursor the reader was opened with, until `reads` is first built.
    opened_at: Option<BTreeMap<LogId, Seq>>,
    /// Logs named by a cursor from an earlier store epoch: each gets one `gap` (reason `reset`).
    reset: Vec<LogId>,
    /// The store epoch in hex, the cursor's first field.
    epoch_hex: String,
    /// Scratch for the cursor's text before base64.
    raw: String,
    /// The cursor of the current positions, as last encoded by [`Reader::encode_cursor`].
    encoded: String,
    /// Scratch for the entries of one log read, reused across reads.
    entries: Vec<Arc<Entry>>,
}

impl Reader {
    pub(crate) fn new(shared: Arc<Shared>, session: Arc<Session>, cursor: Option<Cursor>) -> Reader {
        {
            let mut state = session.state();
            state.streams += 1;
            state.last_seen = Instant::now();
        }
        let epoch_hex = format!("{:x}", shared.engine.epoch().0);
        let mut reader = Reader {
            shared,
            session,
            reads: Vec::new(),
            membership: None,
            opened_at: None,
            reset: Vec::new(),
            epoch_hex,
            raw: String::new(),
            encoded: String::new(),
            entries: Vec::new(),
        };
        match cursor {
            // No cursor: start from "now" in every log the client reads.
            None => {
                reader.sync();
                for read in &mut reader.reads {
                    read.at = read.log.head().max(read.floor);
                }
            }
            Some(cursor) if cursor.epoch == reader.shared.engine.epoch() => {
                reader.opened_at = Some(cursor.positions);
            }
            Some(cursor) => reader.reset = cursor.positions.into_keys().collect(),
        }
        reader
    }

    /// Brings the list of logs up to date with the session's rooms, keeping positions: a log
    /// still read keeps its position, a newly joined one starts at its floor (or the opening
    /// cursor's position, if later), a left one is dropped.
    fn sync(&mut self) {
        let state = self.session.state();
        if self.membership == Some(state.membership) {
            return;
        }
        let previous: BTreeMap<LogId, Seq> = self.reads.drain(..).map(|r| (r.log.id.clone(), r.at)).collect();
        let known = self.opened_at.take().unwrap_or(previous);
        let mut reads = Vec::with_capacity(state.rooms.len() + 1);
        reads.push((self.session.inbox.clone(), state.inbox_from));
        reads.extend(state.rooms.values().cloned());
        self.reads = reads
            .into_iter()
            .map(|(log, floor)| {
                let at = known.get(&log.id).copied().unwrap_or(floor).max(floor);
                LogRead { log, floor, at }
            })
            .collect();
        self.reads.sort_by(|a, b| a.log.id.cmp(&b.log.id));
        self.membership = Some(state.membership);
    }

    /// Encodes the cursor of the current positions into `self.encoded`, reusing its buffers.
    fn encode_cursor(&mut self) {
        self.raw.clear();
        self.raw.push_str(&self.epoch_hex);
        for read in &self.reads {
            self.raw.push('|');
            match &read.log.id {
                LogId::Room(room) => self.raw.push_str(room.as_str()),
                LogId::Inbox(user) => {
                    self.raw.push('@');
                    self.raw.push_str(user.as_str());
                }
            }
            self.raw.push(':');
            push_u64(&mut self.raw, read.at.0);
        }
        self.encoded.clear();
        URL_SAFE_NO_PAD.encode_string(&self.raw, &mut self.encoded);
    }

    /// The cursor of the current positions.
    fn cursor(&mut self) -> String {
        self.encode_cursor();
        self.encoded.clone()
    }

    /// Reads what is there now. Fails with `unknown_client` once the session has ended.
    pub fn read_since(&mut self) -> Result<Batch, Error> {
        let mut deliveries = Vec::new();
        self.read_into(&mut deliveries)?;
        Ok(Batch { deliveries, cursor: self.cursor() })
    }

    /// Hands what is there now to `sink`, moving the positions past it (and past events this
    /// client may not see); returns how many frames it pushed. Fails with `unknown_client` once
    /// the session has ended. Encodes no batch cursor: a read that finds nothing costs none;
    /// ask [`Reader::current_cursor`] when one is needed.
    pub fn read_into(&mut self, sink: &mut impl Sink) -> Result<usize, Error> {
        // One look at the session state for both questions; `sync` locks again only when the
        // client joined or left a room since the last read.
        let membership = {
            let state = self.session.state();
            if state.gone {
                return Err(Error::unknown_client());
            }
            state.membership
        };
        if self.membership != Some(membership) {
            self.sync();
        }
        let mut pushed = 0;
        for id in std::mem::take(&mut self.reset) {
            if self.reads.iter().any(|r| r.log.id == id) {
                self.encode_cursor();
                sink.push(Frame { head: &gap_head(&id, "reset", None), cursor: &self.encoded });
                pushed += 1;
            }
        }
        let mut entries = std::mem::take(&mut self.entries);
        for i in 0..self.reads.len() {
            let budget = MAX_EVENTS_PER_BATCH.saturating_sub(pushed);
            if budget == 0 {
                break;
            }
            let gap = {
                let read = &self.reads[i];
                read.log.ring.lock().expect("ring lock").read_after_into(read.at, budget, &mut entries)
            };
            if let Some((from, to)) = gap {
                self.reads[i].at = to;
                self.encode_cursor();
                let head = gap_head(&self.reads[i].log.id, "evicted", Some((from, to)));
                sink.push(Frame { head: &head, cursor: &self.encoded });
                pushed += 1;
            }
            for entry in entries.drain(..) {
                self.reads[i].at = entry.seq;
                if entry.visible_to(&self.session.id) {
                    self.encode_cursor();
                    sink.push(Frame { head: entry.json_head(), cursor: &self.encoded });
                    pushed += 1;
                }
            }
        }
        self.entries = entries;
        self.shared.stats.delivered.fetch_add(pushed as u64, Ordering::Relaxed);
        Ok(pushed)
    }

    /// Waits up to `max_wait` for something to deliver; returns it at once when it comes, or an
    /// empty batch at the deadline. For one-off waits (a long poll): each call arms a timer.
    pub async fn wait_since(&mut self, max_wait: Duration) -> Result<Batch, Error> {
        match tokio::time::timeout(max_wait, self.next_batch()).await {
            Ok(batch) => batch,
            Err(_) => self.read_since(), // nothing came: the (possibly advanced) cursor
        }
    }

    /// Waits, without a deadline, for the next non-empty batch. For streams (SSE, WebSocket),
    /// which keep their own heartbeat timer instead of arming one per wait. Cancel-safe.
    pub async fn next_batch(&mut self) -> Result<Batch, Error> {
        let mut deliveries = Vec::new();
        self.next_into(&mut deliveries).await?;
        Ok(Batch { deliveries, cursor: self.cursor() })
    }

    /// Waits, without a deadline, until there is something to deliver and hands it to `sink`;
    /// returns how many frames it pushed (at least one). Cancel-safe: frames are only taken from
    /// the logs (and pushed) in the poll that returns them.
    pub async fn next_into(&mut self, sink: &mut impl Sink) -> Result<usize, Error> {
        let session = self.session.clone();
        loop {
            // Register for the wake-up *before* reading, so an event appended between the read
            // and the await still wakes us.
            let notified = session.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let pushed = self.read_into(sink)?;
            if pushed > 0 {
                return Ok(pushed);
            }
            notified.await;
        }
    }

    /// The cursor of everything delivered so far.
    pub fn current_cursor(&mut self) -> String {
        self.sync();
        self.cursor()
    }
}

/// Appends `n` in decimal, without the formatting machinery (this runs once per delivery).
fn push_u64(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&digits[i..]).expect("ASCII digits"));
}

impl Drop for Reader {
    fn drop(&mut self) {
        let mut state = self.session.state();
        state.streams -= 1;
        state.last_seen = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::push_u64;

    #[test]
    fn push_u64_writes_decimal() {
        for n in [0, 7, 10, 43, 1_000_000, u64::MAX] {
            let mut s = String::new();
            push_u64(&mut s, n);
            assert_eq!(s, n.to_string());
        }
    }
}
