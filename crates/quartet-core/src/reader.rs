//! A reader: one client's position in all the logs it reads, and the one way to read them.
//!
//! - [`Reader::read_into`]: hand whatever is there now to a [`Sink`] (a short poll).
//! - [`Reader::next_into`]: wait until there is something, then hand it over (a long poll;
//!   Socket.IO calls it in a loop).
//! - [`Reader::read_now`], with [`Reader::deliver_to`]: hand over what can be without waiting,
//!   in the task that made it readable (a publisher's): a WebSocket or SSE stream writes an
//!   event to its socket there, and wakes its own task only for what could not be done at
//!   once.
//!
//! A reader is cheap and transport-agnostic; a short poll makes one per request, a WebSocket one
//! per connection. While a reader exists its client counts as alive.
//!
//! This is the hottest code of the server: every delivery passes through it. So the list of
//! logs is rebuilt only when the client joins or leaves a room, the cursor of each delivery is
//! written by one reused [`CursorWriter`], and each event goes to the sink as borrowed pieces
//! (the shared, pre-encoded JSON and this reader's cursor), which the transport frames straight
//! into its write buffer: one copy of the event's bytes per reader, no allocation per delivery.
//!
//! ## Short cursors for many rooms
//!
//! Every event carries the cursor after it. A reader of more than [`BASE_MIN_LOGS`] logs stores
//! its positions once as a cursor base ([`Engine::save_base`], off the delivery path) and from
//! then on writes cursors that name the base and amend only the logs that moved since: an
//! event's cursor grows with the rooms that moved, not with the rooms joined. When more than
//! [`MAX_AMENDED_LOGS`] moved, it stores a new base, at most once per [`REBASE_EVERY`], and at
//! least once per [`BASE_REFRESH`]. A reader opened on a cursor with a base keeps that base.
//! An engine that keeps no bases gets whole cursors, as before.
//!
//! Reads come from the logs' in-memory rings. A position older than a ring is asked of the
//! [`Engine`] ([`Engine::read`]); an engine that keeps nothing beyond the rings makes it a `gap`.
//!
//! ## Slow clients
//!
//! A reader holds no queue: what it has not read stays in the shared rings. What one read hands
//! over is bounded ([`MAX_EVENTS_PER_BATCH`] events, [`MAX_BATCH_BYTES`] bytes), so a client that
//! reads slowly costs the server one batch, whatever is published meanwhile. A reader more than
//! [`SHED_LAG`] events behind a log skips that log's `droppable` events (counted in
//! [`Stats::shed`]) to catch up on what must be delivered; a stream that stays behind for
//! [`Reader::close_when_behind_for`] is ended with `slow`, and its client resumes by cursor.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use quartet_protocol::event::gap_head;
use quartet_protocol::{BaseId, Cursor, CursorWriter, Error, ErrorCode, GapReason, LogId, Seq};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::config::Stats;
use crate::engine::{CursorBase, Engine, History};
use crate::entry::{Entry, client_key};
use crate::frame::{Deliver, EncodedFrame, Sink, Source};
use crate::limits::{
    BASE_MIN_LOGS, BASE_REFRESH, MAX_AMENDED_LOGS, MAX_BATCH_BYTES, MAX_EVENTS_PER_BATCH, REBASE_EVERY,
    SHED_LAG,
};
use crate::log::Wake;
use crate::position::{Base, Kept, LogRead, Place, Saving};
use crate::session::Session;

/// What one read needs for a moment only: the entries of one log, and the cursor encoder.
/// Kept per thread, not per reader: a fan-out's reads then all use the same few cache lines
/// instead of each fetching its reader's own.
#[derive(Default)]
struct Scratch {
    entries: Vec<Arc<Entry>>,
    cursor: CursorWriter,
}

thread_local! {
    static SCRATCH: std::cell::Cell<Scratch> = std::cell::Cell::new(Scratch::default());
}

/// Runs `f` with this thread's [`Scratch`] (taken, not borrowed: a nested read, were there
/// one, would get an empty one).
fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    let mut scratch = SCRATCH.take();
    let result = f(&mut scratch);
    scratch.entries.clear();
    SCRATCH.set(scratch);
    result
}

/// See the module doc.
pub struct Reader {
    engine: Arc<dyn Engine>,
    stats: Arc<Stats>,
    session: Arc<Session>,
    /// The session's wake handle: a read checks the session's membership there (see
    /// [`crate::log::Waking::membership`]), not under the session's lock.
    wake: Wake,
    /// [`client_key`] of the session's client id.
    key: u64,
    /// Where it is in its logs: what a poll's reader leaves for the next ([`Reader::keep`]).
    place: Place,
    /// What the cursor it was opened with still has to say, until read (see [`Opening`]).
    opening: Option<Box<Opening>>,
    /// What a stream's reader watches (see [`Watch`]).
    watch: Option<Box<Watch>>,
    /// Whether the watch has noted a log behind (its `behind_since` is set): kept here too, so
    /// that the common read of a stream, not behind, does not follow the pointer to the watch
    /// (a cache miss per delivery in a large fan-out).
    behind_noted: bool,
    /// Whether it still counts among its session's streams (until dropped, or kept).
    counted: bool,
}

/// What a reader opened on a cursor keeps until its first reads have used it. Boxed, as
/// [`Watch`] is, and for the same reason: most readers have none, and a parked long poll's
/// future keeps its reader whole.
#[derive(Default)]
struct Opening {
    /// Positions from the cursor, until the reader's list of logs is first built.
    at: Option<BTreeMap<LogId, Seq>>,
    /// Logs named by a cursor from an earlier store epoch: each gets one `gap` (reason `reset`).
    reset: Vec<LogId>,
}

/// What only a stream's reader, or one ending for its client's silence, carries.
#[derive(Default)]
struct Watch {
    /// How long it may stay behind before reads fail with `slow`.
    slow_after: Option<std::time::Duration>,
    /// Since when every read has left a log more than [`SHED_LAG`] events behind (noted only
    /// with `slow_after`: nothing else asks).
    behind_since: Option<Instant>,
    /// The client's last sign of life as the transport saw it, when the reader ends because the
    /// client went silent (see [`Reader::end_silent`]); else its end is one.
    silent_since: Option<Instant>,
}

impl Reader {
    pub(crate) fn new(
        engine: Arc<dyn Engine>,
        stats: Arc<Stats>,
        session: Arc<Session>,
        cursor: Option<Cursor>,
        base: Option<Base>,
    ) -> Reader {
        {
            let mut state = session.state();
            state.streams += 1;
            state.last_seen = Instant::now();
        }
        let epoch = engine.epoch();
        let mut reader = Reader::at(engine, stats, session, Place::new(epoch, base));
        match cursor {
            // No cursor: start from "now" in every log the client reads.
            None => {
                reader.sync();
                for read in &mut reader.place.reads {
                    read.at = read.log.head().max(read.floor);
                }
            }
            Some(cursor) if cursor.epoch == epoch => {
                reader.opening = Some(Box::new(Opening { at: Some(cursor.positions), reset: Vec::new() }));
                // Keeps the base the cursor named: its cursors stay on it, nothing is stored.
                reader.place.last_save = reader.place.base.as_ref().map(|_| Instant::now());
            }
            Some(cursor) => {
                let reset = cursor.positions.into_keys().collect();
                reader.opening = Some(Box::new(Opening { at: None, reset }));
            }
        }
        reader
    }

    /// A reader that goes on from what the client's last poll kept, when `cursor` is the one
    /// that poll answered with (see [`Kept`]); `None` otherwise, the kept state staying. Counted
    /// among the session's streams as [`Reader::new`] counts, under the same lock as the check
    /// against `max_streams`; `None` too when the session has ended or is at that limit (the
    /// caller's own path then says so).
    pub(crate) fn from_kept(
        engine: &Arc<dyn Engine>,
        stats: &Arc<Stats>,
        session: &Arc<Session>,
        cursor: &str,
        max_streams: usize,
    ) -> Option<Reader> {
        let kept = {
            let mut state = session.state();
            if state.gone || state.streams as usize >= max_streams {
                return None;
            }
            let kept =
                state.kept.take_if(|kept| kept.cursor == cursor && kept.place.epoch == engine.epoch())?;
            state.streams += 1;
            state.last_seen = Instant::now();
            kept
        };
        stats.polls_kept.fetch_add(1, Ordering::Relaxed);
        Some(Reader::at(engine.clone(), stats.clone(), session.clone(), kept.place))
    }

    /// A reader of `session` at `place`, counted among its streams (the caller has counted it).
    fn at(engine: Arc<dyn Engine>, stats: Arc<Stats>, session: Arc<Session>, place: Place) -> Reader {
        Reader {
            engine,
            stats,
            wake: session.wake_handle(),
            key: client_key(&session.id),
            session,
            place,
            opening: None,
            watch: None,
            behind_noted: false,
            counted: true,
        }
    }

    /// Ends a poll's reader whose answer carries `cursor` (its [`Reader::current_cursor`]),
    /// leaving its state in the session: the client's next poll with exactly that cursor goes
    /// on from it ([`Hub::kept_reader`](crate::Hub::kept_reader)) instead of decoding the cursor,
    /// checking its positions and building its list of logs again, and reads exactly what a
    /// reader opened on that cursor would. A reader still opening (a cursor not yet read with)
    /// or about to tell of a reset, or a stream's, is simply dropped.
    pub fn keep(mut self, cursor: String) {
        let opening = self.opening.as_ref().is_some_and(|o| o.at.is_some() || !o.reset.is_empty());
        if opening || self.slow_after().is_some() {
            return;
        }
        let epoch = self.place.epoch;
        let place = std::mem::replace(&mut self.place, Place::new(epoch, None));
        let kept = Kept { cursor, place };
        let mut state = self.session.state();
        state.kept = Some(kept);
        self.counted = false;
        state.streams -= 1;
        state.last_seen = Instant::now();
    }

    /// Writes whole cursors only, storing no base (for a cursor wanted once, at registration).
    pub(crate) fn without_bases(mut self) -> Reader {
        self.place.no_bases = true;
        self
    }

    /// Makes reads fail with `slow` once every read for `after` has left a log more than
    /// [`SHED_LAG`] events behind: for a stream (SSE, WebSocket), whose client then resumes by
    /// cursor. A poll reads at its client's pace and is never closed so.
    pub fn close_when_behind_for(&mut self, after: std::time::Duration) {
        self.watch.get_or_insert_default().slow_after = Some(after);
    }

    /// Marks the reader of a client that went silent (its transport heard nothing for the client
    /// timeout), to be dropped next: its last sign of life stays `last_heard`, so the client
    /// expires at the reaper's next turn instead of a timeout later, as the end of a stream
    /// normally counts as life.
    pub fn end_silent(&mut self, last_heard: Instant) {
        self.watch.get_or_insert_default().silent_since = Some(last_heard);
    }

    /// From now until the returned [`Delivering`] is dropped, whatever wakes this reader's
    /// session (an event in one of its logs, a join or leave, its end) calls `deliver` in the
    /// waking task, as well as waking [`Reader::next_into`]. A transport that lets publishers
    /// write for it ([`Deliver`]) then waits for its own wake instead of `next_into`; what
    /// happened before the call, it reads itself.
    pub fn deliver_to(&self, deliver: Weak<dyn Deliver>) -> Delivering {
        let wake = self.session.wake_handle();
        wake.add_direct(deliver.clone());
        Delivering { wake, deliver }
    }

    /// What [`Reader::read_into`] does, as far as it can without waiting: hands over what is
    /// in memory now. `complete` is false when more is left for [`Reader::read_into`]: a batch
    /// bound was reached, a log must be read from the engine, or the read would fail (the
    /// session ended, the stream stayed behind too long), which `read_into` then reports.
    pub fn read_now(&mut self, sink: &mut impl Sink) -> ReadNow {
        let unfinished = ReadNow { pushed: 0, complete: false };
        if self.slow_for_too_long() || self.behind_a_ring() {
            return unfinished;
        }
        let Ok(read) = self.read_memory(sink) else { return unfinished };
        self.note_behind(read.behind);
        ReadNow { pushed: read.pushed, complete: !read.more && !self.behind_a_ring() }
    }

    /// Whether a stream has been behind a log for longer than it may be (see
    /// [`Reader::close_when_behind_for`]).
    fn slow_for_too_long(&self) -> bool {
        let too_long = |w: &Watch| matches!((w.slow_after, w.behind_since), (Some(after), Some(since)) if since.elapsed() > after);
        self.behind_noted && self.watch.as_deref().is_some_and(too_long)
    }

    /// How long a stream may stay behind (see [`Reader::close_when_behind_for`]).
    fn slow_after(&self) -> Option<std::time::Duration> {
        self.watch.as_ref().and_then(|w| w.slow_after)
    }

    /// Notes whether a read left a log more than [`SHED_LAG`] events behind.
    fn note_behind(&mut self, behind: bool) {
        if behind == self.behind_noted {
            return;
        }
        let Some(watch) = self.watch.as_mut().filter(|w| w.slow_after.is_some()) else { return };
        watch.behind_since = behind.then(Instant::now);
        self.behind_noted = behind;
    }

    /// Brings the list of logs up to date with the session's rooms, keeping positions: a log
    /// still read keeps its position, a newly joined one starts at its floor (or the opening
    /// cursor's position, if later), a left one is dropped.
    fn sync(&mut self) {
        let state = self.session.state();
        if self.place.membership == Some(state.membership) {
            return;
        }
        let mut previous: BTreeMap<LogId, LogRead> =
            self.place.reads.drain(..).map(|r| (r.log.id.clone(), r)).collect();
        let opened_at = self.opening.as_mut().and_then(|o| o.at.take());
        let mut logs = Vec::with_capacity(state.rooms.len() + 1);
        logs.push((self.session.inbox.clone(), state.inbox_from));
        logs.extend(state.rooms.values().cloned());
        self.place.reads = logs
            .into_iter()
            .map(|(log, floor)| match previous.remove(&log.id) {
                Some(read) => LogRead { floor, at: read.at.max(floor), ..read },
                None => {
                    let at =
                        opened_at.as_ref().and_then(|o| o.get(&log.id)).copied().unwrap_or(floor).max(floor);
                    LogRead {
                        log,
                        floor,
                        at,
                        backlog: VecDeque::new(),
                        behind: false,
                        engine_empty: false,
                        base_at: None,
                    }
                }
            })
            .collect();
        self.place.reads.sort_by(|a, b| a.log.id.cmp(&b.log.id));
        self.place.membership = Some(state.membership);
        drop(state);
        self.mark_base();
    }

    /// Notes each log's position in the base, and the base's logs no longer read.
    fn mark_base(&mut self) {
        let Some(base) = &self.place.base else { return };
        for read in &mut self.place.reads {
            read.base_at = base.positions.get(&read.log.id).copied();
        }
        self.place.dropped = base
            .positions
            .keys()
            .filter(|log| self.place.reads.binary_search_by(|r| r.log.id.cmp(log)).is_err())
            .cloned()
            .collect();
    }

    /// Encodes the cursor of the current positions with `cursor`; [`CursorWriter::last`]
    /// holds it.
    fn encode_cursor(&mut self, cursor: &mut CursorWriter) {
        if self.place.saving.is_some() {
            self.take_saved_base();
        }
        let wanted = match &self.place.base {
            None => {
                cursor.write(self.place.epoch, self.place.reads.iter().map(|r| (&r.log.id, r.at)));
                self.place.reads.len() > BASE_MIN_LOGS
            }
            Some(base) => {
                let amended = self.place.reads.iter().filter(|r| r.base_at != Some(r.at));
                let dropped = self.place.dropped.iter().map(|log| (log, None));
                cursor.write_based(
                    self.place.epoch,
                    Some(base.id),
                    amended.clone().map(|r| (&r.log.id, Some(r.at))).chain(dropped),
                );
                amended.count() + self.place.dropped.len() > MAX_AMENDED_LOGS
                    || base.since.elapsed() >= BASE_REFRESH
            }
        };
        self.place.base_wanted |= wanted;
    }

    /// Asks the engine to store the current positions as a base (in a task of its own: the
    /// delivery that asked goes on with the cursor it wrote), unless one is being stored, one
    /// was asked for less than [`REBASE_EVERY`] ago, or the engine keeps none.
    fn save_base(&mut self) {
        if self.place.no_bases
            || self.place.saving.is_some()
            || self.place.last_save.is_some_and(|t| t.elapsed() < REBASE_EVERY)
        {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        self.place.last_save = Some(Instant::now());
        let positions: Arc<BTreeMap<LogId, Seq>> =
            Arc::new(self.place.reads.iter().map(|r| (r.log.id.clone(), r.at)).collect());
        let record = CursorBase { user: self.session.user.clone(), positions: (*positions).clone() };
        let engine = self.engine.clone();
        let (tell, answer) = oneshot::channel();
        runtime.spawn(async move {
            let _ = tell.send(engine.save_base(&record).await);
        });
        self.place.saving = Some(Saving { positions, answer });
    }

    /// Takes on the base being stored, once the engine has it.
    fn take_saved_base(&mut self) {
        let Some(saving) = &mut self.place.saving else { return };
        let stored = match saving.answer.try_recv() {
            Err(oneshot::error::TryRecvError::Empty) => return,
            Ok(stored) => stored,
            Err(oneshot::error::TryRecvError::Closed) => Ok(None),
        };
        self.adopt(stored);
    }

    /// Whether [`Reader::settle_base`] has anything to do: a base named or being stored, or
    /// more logs than a whole cursor is kept short for. Most polls' readers have none, and
    /// need not make its future.
    pub fn has_base_to_settle(&mut self) -> bool {
        self.sync();
        self.place.base.is_some() || self.place.saving.is_some() || self.place.reads.len() > BASE_MIN_LOGS
    }

    /// For a reader about to end with [`Reader::current_cursor`] (a poll's answer): stores the
    /// base its cursor is worth, if any, and waits (a second at most) until the engine has it,
    /// so that the cursor handed out names it; the next poll's reader then keeps it instead of
    /// storing another. Cancel-safe.
    pub async fn settle_base(&mut self) {
        if !self.has_base_to_settle() {
            return;
        }
        with_scratch(|scratch| self.encode_cursor(&mut scratch.cursor));
        if std::mem::take(&mut self.place.base_wanted) {
            self.save_base();
        }
        let Some(saving) = &mut self.place.saving else { return };
        if let Ok(stored) = tokio::time::timeout(std::time::Duration::from_secs(1), &mut saving.answer).await
        {
            self.adopt(stored.unwrap_or(Ok(None)));
        }
    }

    /// Takes on what the engine answered for the base being stored.
    fn adopt(&mut self, stored: Result<Option<BaseId>, Error>) {
        let Some(saving) = self.place.saving.take() else { return };
        match stored {
            Ok(Some(id)) => {
                self.place.base = Some(Base { id, positions: saving.positions, since: Instant::now() });
                self.mark_base();
            }
            Ok(None) => self.place.no_bases = true,
            // Not stored (the store failing): whole cursors meanwhile, another try later.
            Err(_) => {}
        }
    }

    /// Hands what is there now to `sink`, moving the positions past it (and past events this
    /// client may not see); returns how many frames it pushed. Fails with `unknown_client` once
    /// the session has ended. Encodes no batch cursor: a read that finds nothing costs none;
    /// ask [`Reader::current_cursor`] when one is needed.
    ///
    /// Completes at once unless a position is older than its log's ring: then the engine is
    /// asked first. Cancel-safe: every wait comes before the first push.
    pub async fn read_into(&mut self, sink: &mut impl Sink) -> Result<usize, Error> {
        if self.slow_for_too_long()
            && let Some(after) = self.slow_after()
        {
            self.stats.slow.fetch_add(1, Ordering::Relaxed);
            return Err(Error::new(
                ErrorCode::Slow,
                format!(
                    "this stream has been behind its events for over {} s: resume from the cursor of the last event received",
                    after.as_secs_f64()
                ),
            ));
        }
        self.fetch_behind().await?;
        let mut read = self.read_memory(sink)?;
        if read.pushed == 0 && self.behind_a_ring() {
            self.fetch_behind().await?;
            read = self.read_memory(sink)?;
        }
        self.note_behind(read.behind);
        Ok(read.pushed)
    }

    /// Waits, without a deadline, until there is something to deliver and hands it to `sink`;
    /// returns how many frames it pushed (at least one). Cancel-safe: frames are only taken from
    /// the logs (and pushed) in the poll that returns them.
    pub async fn next_into(&mut self, sink: &mut impl Sink) -> Result<usize, Error> {
        let session = self.session.clone();
        let _waiting = session.waiting();
        loop {
            // Register for the wake-up *before* reading, so an event appended between the read
            // and the await still wakes us.
            let notified = session.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let pushed = self.read_into(sink).await?;
            if pushed > 0 {
                return Ok(pushed);
            }
            notified.await;
        }
    }

    /// The cursor of everything delivered so far.
    pub fn current_cursor(&mut self) -> String {
        self.sync();
        with_scratch(|scratch| {
            self.encode_cursor(&mut scratch.cursor);
            scratch.cursor.last().to_owned()
        })
    }

    /// [`Reader::fetch_history`] when a log is behind its ring, boxed: a read that needs no
    /// history (nearly every one) makes no room for the engine's wait, in its own future nor in
    /// the futures that wait on it (a parked long poll keeps [`Reader::next_into`]'s).
    async fn fetch_behind(&mut self) -> Result<(), Error> {
        if self.behind_a_ring() {
            Box::pin(self.fetch_history()).await?;
        }
        Ok(())
    }

    /// Whether a log's position is older than its ring holds: the engine is asked next.
    fn behind_a_ring(&self) -> bool {
        self.place.reads.iter().any(|r| r.behind)
    }

    /// Asks the engine for the events of every log whose ring no longer holds its position.
    async fn fetch_history(&mut self) -> Result<(), Error> {
        for i in 0..self.place.reads.len() {
            if !self.place.reads[i].behind {
                continue;
            }
            let (log, at) = (self.place.reads[i].log.id.clone(), self.place.reads[i].at);
            match self.engine.read(&log, at, MAX_EVENTS_PER_BATCH).await? {
                History::None => self.place.no_history = true,
                History::Events(events) => {
                    self.place.reads[i].engine_empty = events.is_empty();
                    self.place.reads[i].backlog = events.into();
                }
            }
            self.place.reads[i].behind = false;
        }
        Ok(())
    }

    /// The in-memory part of [`Reader::read_into`]: the engine's backlog, then the rings.
    fn read_memory(&mut self, sink: &mut impl Sink) -> Result<Read, Error> {
        // Both questions from the wake handle a delivery has just used; `sync` takes the
        // session's lock only when the client joined or left a room since the last read.
        let membership = self.wake.membership().ok_or_else(Error::unknown_client)?;
        if self.place.membership != Some(membership) {
            self.sync();
        }
        Ok(with_scratch(|scratch| self.read_logs(sink, scratch)))
    }

    /// [`Reader::read_memory`] once the reader is up to date with the session.
    fn read_logs(&mut self, sink: &mut impl Sink, scratch: &mut Scratch) -> Read {
        let Scratch { entries, cursor } = scratch;
        let mut pushed = 0;
        let mut bytes = 0;
        let mut shed = 0;
        // Set when a log is still more than SHED_LAG behind after this read.
        let mut behind = false;
        // Set when a batch bound may have left events unread.
        let mut more = false;
        let reset = self.opening.as_mut().map(|o| std::mem::take(&mut o.reset)).unwrap_or_default();
        for id in reset {
            if self.place.reads.iter().any(|r| r.log.id == id) {
                pushed += self.push_gap(sink, cursor, &id, GapReason::Reset, None);
            }
        }
        for i in 0..self.place.reads.len() {
            let budget = MAX_EVENTS_PER_BATCH.saturating_sub(pushed);
            if budget == 0 || bytes >= MAX_BATCH_BYTES {
                more = true;
                break;
            }
            let from_engine = !self.place.reads[i].backlog.is_empty();
            let (gap, head) = if from_engine {
                let read = &mut self.place.reads[i];
                let first = read.backlog.front().map_or(read.at, |e| e.seq);
                let take = budget.min(read.backlog.len());
                entries.extend(read.backlog.drain(..take).filter(|e| e.seq > read.at));
                more = true; // the rest of the backlog, or the ring after it
                // The store no longer has what came right after the position: dropped by retention.
                let gap = (first > read.at.next()).then(|| (read.at.next(), Seq(first.0 - 1)));
                (gap, read.log.head())
            } else {
                let read = &self.place.reads[i];
                let ring = read.log.ring.lock().expect("ring lock");
                let gap = ring.read_after_into(read.at, budget, entries);
                more |= entries.len() == budget;
                (gap, ring.head())
            };
            let engine_empty = std::mem::take(&mut self.place.reads[i].engine_empty);
            if let Some((from, to)) = gap {
                if !from_engine && !self.place.no_history && !engine_empty {
                    // Older than the ring: ask the engine before saying anything of this log.
                    self.place.reads[i].behind = true;
                    entries.clear();
                    continue;
                }
                // Gone from memory with no engine behind it: evicted; gone from the engine too:
                // dropped by retention.
                let reason = if self.place.no_history { GapReason::Evicted } else { GapReason::Retention };
                self.place.reads[i].at = to;
                let id = self.place.reads[i].log.id.clone();
                pushed += self.push_gap(sink, cursor, &id, reason, Some((from, to)));
            }
            // Far behind this log: its droppable events are skipped, to catch up on the rest.
            let shedding = head.0.saturating_sub(self.place.reads[i].at.0) > SHED_LAG;
            let mut taken = 0;
            for entry in entries.iter() {
                if pushed > 0 && bytes >= MAX_BATCH_BYTES {
                    more = true;
                    break;
                }
                taken += 1;
                self.place.reads[i].at = entry.seq;
                if shedding && entry.draft.droppable {
                    shed += 1;
                } else if entry.visible_to_keyed(self.key, &self.session.id) {
                    self.encode_cursor(cursor);
                    let frame = EncodedFrame {
                        head: entry.json_head(),
                        cursor: cursor.last(),
                        source: Source::Event(entry),
                    };
                    bytes += frame.json_len();
                    sink.push(frame);
                    pushed += 1;
                }
            }
            // What the byte bound left: back to the backlog it came from (a ring keeps its own).
            let read = &mut self.place.reads[i];
            if from_engine {
                entries.drain(taken..).rev().for_each(|e| read.backlog.push_front(e));
            }
            entries.clear();
            behind |= head.0.saturating_sub(read.at.0) > SHED_LAG;
        }
        if std::mem::take(&mut self.place.base_wanted) {
            self.save_base();
        }
        self.stats.delivered.fetch_add(pushed as u64, Ordering::Relaxed);
        if shed > 0 {
            self.stats.shed.fetch_add(shed, Ordering::Relaxed);
        }
        Read { pushed, behind, more }
    }

    fn push_gap(
        &mut self,
        sink: &mut impl Sink,
        cursor: &mut CursorWriter,
        log: &LogId,
        reason: GapReason,
        missed: Option<(Seq, Seq)>,
    ) -> usize {
        self.encode_cursor(cursor);
        sink.push(EncodedFrame {
            head: &gap_head(log, reason, missed),
            cursor: cursor.last(),
            source: Source::Gap { log, reason, missed },
        });
        1
    }
}

/// What one read of memory did.
struct Read {
    /// Frames pushed.
    pushed: usize,
    /// Whether a log is still more than [`SHED_LAG`] events behind its newest after the read.
    behind: bool,
    /// Whether a batch bound may have left events unread.
    more: bool,
}

/// What [`Reader::read_now`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadNow {
    /// Frames pushed.
    pub pushed: usize,
    /// Whether everything there was is handed over; if not, [`Reader::read_into`] does the rest.
    pub complete: bool,
}

/// A reader's transport being delivered to (see [`Reader::deliver_to`]); dropping it stops it.
pub struct Delivering {
    wake: Wake,
    deliver: Weak<dyn Deliver>,
}

impl Drop for Delivering {
    fn drop(&mut self) {
        self.wake.remove_direct(&self.deliver);
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if !self.counted {
            return;
        }
        let mut state = self.session.state();
        state.streams -= 1;
        // The end of a stream is a sign of life, unless it ended for the lack of one.
        let silent_since = self.watch.as_ref().and_then(|w| w.silent_since);
        state.last_seen = silent_since.map_or_else(Instant::now, |since| since.max(state.last_seen));
    }
}
