//! A reader: one client's position in all the logs it reads, and the two ways to read them.
//!
//! - [`Reader::read_since`]: whatever is there now, at once (short poll).
//! - [`Reader::wait_since`]: the first non-empty batch, or an empty one at the deadline (long
//!   poll; SSE and WebSocket call it in a loop).
//!
//! A reader is cheap and transport-agnostic; a short poll makes one per request, a WebSocket one
//! per connection. While a reader exists its client counts as alive.
//!
//! This is the hottest code of the server: every delivery passes through [`Reader::read_since`].
//! So the list of logs is rebuilt only when the client joins or leaves a room, and the cursor of
//! each delivery is written into reused buffers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use tokio::time::Instant;

use crate::cursor::Cursor;
use crate::entry::gap_frame;
use crate::error::Error;
use crate::hub::Shared;
use crate::ids::{LogId, Seq};
use crate::limits::MAX_EVENTS_PER_BATCH;
use crate::log::Log;
use crate::session::Session;

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
    /// Scratch for the cursor's text before base64.
    raw: String,
}

impl Reader {
    pub(crate) fn new(shared: Arc<Shared>, session: Arc<Session>, cursor: Option<Cursor>) -> Reader {
        {
            let mut state = session.state();
            state.streams += 1;
            state.last_seen = Instant::now();
        }
        let mut reader = Reader {
            shared,
            session,
            reads: Vec::new(),
            membership: None,
            opened_at: None,
            reset: Vec::new(),
            raw: String::with_capacity(64),
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

    /// The cursor of the current positions.
    fn cursor(&mut self) -> String {
        use std::fmt::Write as _;
        self.raw.clear();
        let _ = write!(self.raw, "{:x}", self.shared.engine.epoch().0);
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
        let mut out = String::with_capacity(self.raw.len() * 4 / 3 + 4);
        URL_SAFE_NO_PAD.encode_string(&self.raw, &mut out);
        out
    }

    /// Reads what is there now. Fails with `unknown_client` once the session has ended.
    pub fn read_since(&mut self) -> Result<Batch, Error> {
        let deliveries = self.collect()?;
        Ok(Batch { deliveries, cursor: self.cursor() })
    }

    /// The deliveries available now, moving the positions past them (and past events this
    /// client may not see). No batch cursor: a wait that finds nothing should cost no encoding.
    fn collect(&mut self) -> Result<Vec<Delivery>, Error> {
        if self.session.state().gone {
            return Err(Error::unknown_client());
        }
        self.sync();
        let mut deliveries = Vec::new();
        for id in std::mem::take(&mut self.reset) {
            if self.reads.iter().any(|r| r.log.id == id) {
                let cursor = self.cursor();
                deliveries.push(Delivery { frame: gap_frame(&id, "reset", None, &cursor), cursor });
            }
        }
        for i in 0..self.reads.len() {
            let budget = MAX_EVENTS_PER_BATCH.saturating_sub(deliveries.len());
            if budget == 0 {
                break;
            }
            let log = self.reads[i].log.clone();
            let read = log.ring.lock().expect("ring lock").read_after(self.reads[i].at, budget);
            if let Some((from, to)) = read.gap {
                self.reads[i].at = to;
                let cursor = self.cursor();
                let frame = gap_frame(&log.id, "evicted", Some((from, to)), &cursor);
                deliveries.push(Delivery { frame, cursor });
            }
            for entry in read.entries {
                self.reads[i].at = entry.seq;
                if entry.visible_to(&self.session.id) {
                    let cursor = self.cursor();
                    deliveries.push(Delivery { frame: entry.frame(&cursor), cursor });
                }
            }
        }
        self.shared.stats.delivered.fetch_add(deliveries.len() as u64, Ordering::Relaxed);
        Ok(deliveries)
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
    /// which keep their own heartbeat timer instead of arming one per wait. Cancel-safe: a
    /// batch is only taken from the logs in the same poll that returns it.
    pub async fn next_batch(&mut self) -> Result<Batch, Error> {
        let session = self.session.clone();
        loop {
            // Register for the wake-up *before* reading, so an event appended between the read
            // and the await still wakes us.
            let notified = session.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let deliveries = self.collect()?;
            if !deliveries.is_empty() {
                return Ok(Batch { deliveries, cursor: self.cursor() });
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
