//! A reader: one client's position in all the logs it reads, and the two ways to read them.
//!
//! - [`Reader::read_since`]: whatever is there now, at once (short poll).
//! - [`Reader::wait_since`]: the first non-empty batch, or an empty one at the deadline (long
//!   poll; SSE and WebSocket call it in a loop).
//!
//! A reader is cheap and transport-agnostic; a short poll makes one per request, a WebSocket one
//! per connection. While a reader exists its client counts as alive.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

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

/// See the module doc.
pub struct Reader {
    shared: Arc<Shared>,
    session: Arc<Session>,
    positions: BTreeMap<LogId, Seq>,
    /// Logs named by a cursor from an earlier store epoch: each gets one `gap` (reason `reset`).
    reset: Vec<LogId>,
}

impl Reader {
    pub(crate) fn new(shared: Arc<Shared>, session: Arc<Session>, cursor: Option<Cursor>) -> Reader {
        {
            let mut state = session.state();
            state.streams += 1;
            state.last_seen = Instant::now();
        }
        let mut reader = Reader { shared, session, positions: BTreeMap::new(), reset: Vec::new() };
        match cursor {
            // No cursor: start from "now" in every log the client reads.
            None => {
                for (log, _) in reader.logs() {
                    let head = log.head();
                    reader.positions.insert(log.id.clone(), head);
                }
            }
            Some(cursor) if cursor.epoch == reader.shared.engine.epoch() => {
                reader.positions = cursor.positions
            }
            Some(cursor) => reader.reset = cursor.positions.into_keys().collect(),
        }
        reader
    }

    /// Every log the client reads now, with the earliest position it may read it from.
    fn logs(&self) -> Vec<(Arc<Log>, Seq)> {
        let state = self.session.state();
        let mut logs = Vec::with_capacity(state.rooms.len() + 1);
        logs.push((self.session.inbox.clone(), state.inbox_from));
        logs.extend(state.rooms.values().cloned());
        logs
    }

    fn cursor(&self) -> String {
        Cursor { epoch: self.shared.engine.epoch(), positions: self.positions.clone() }.encode()
    }

    /// Reads what is there now. Fails with `unknown_client` once the session has ended.
    pub fn read_since(&mut self) -> Result<Batch, Error> {
        if self.session.state().gone {
            return Err(Error::unknown_client());
        }
        let logs = self.logs();
        // Forget logs the client no longer reads (left rooms); start joined ones at their floor.
        let mut positions = BTreeMap::new();
        for (log, floor) in &logs {
            let at = self.positions.get(&log.id).copied().unwrap_or(*floor).max(*floor);
            positions.insert(log.id.clone(), at);
        }
        self.positions = positions;

        let mut deliveries = Vec::new();
        for id in std::mem::take(&mut self.reset) {
            if self.positions.contains_key(&id) {
                deliveries.push(Delivery {
                    frame: gap_frame(&id, "reset", None, &self.cursor()),
                    cursor: self.cursor(),
                });
            }
        }
        for (log, _) in &logs {
            let budget = MAX_EVENTS_PER_BATCH.saturating_sub(deliveries.len());
            if budget == 0 {
                break;
            }
            let after = self.positions[&log.id];
            let read = log.ring.lock().expect("ring lock").read_after(after, budget);
            if let Some((from, to)) = read.gap {
                self.positions.insert(log.id.clone(), to);
                let cursor = self.cursor();
                deliveries.push(Delivery {
                    frame: gap_frame(&log.id, "evicted", Some((from, to)), &cursor),
                    cursor,
                });
            }
            for entry in read.entries {
                self.positions.insert(log.id.clone(), entry.seq);
                if entry.visible_to(&self.session.id) {
                    let cursor = self.cursor();
                    deliveries.push(Delivery { frame: entry.frame(&cursor), cursor });
                }
            }
        }
        self.shared.stats.delivered.fetch_add(deliveries.len() as u64, Ordering::Relaxed);
        Ok(Batch { deliveries, cursor: self.cursor() })
    }

    /// Waits up to `max_wait` for something to deliver; returns it at once when it comes, or an
    /// empty batch at the deadline.
    pub async fn wait_since(&mut self, max_wait: Duration) -> Result<Batch, Error> {
        let deadline = Instant::now() + max_wait;
        loop {
            // Register for the wake-up *before* reading, so an event appended between the read
            // and the await still wakes us.
            let session = self.session.clone();
            let notified = session.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let batch = self.read_since()?;
            if !batch.deliveries.is_empty() {
                return Ok(batch);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(batch);
            }
        }
    }

    /// The cursor of everything delivered so far.
    pub fn current_cursor(&self) -> String {
        self.cursor()
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let mut state = self.session.state();
        state.streams -= 1;
        state.last_seen = Instant::now();
    }
}
