//! A log as the hub holds it: the ring of recent entries plus the wake handles of the clients
//! that read it.
//!
//! The reader set is what makes fan-out cheap: a publish appends one entry and then wakes each
//! reader once; the readers come and take the shared entry themselves, or, for a transport that
//! takes deliveries in the publisher's task ([`Deliver`]), are handed it there. A log holds only
//! the readers' wake handles, never their sessions: sessions point to logs, not the other way,
//! so no reference cycle can keep a removed client alive.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use quartet_protocol::{ClientId, LogId, Seq};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::entry::Entry;
use crate::frame::Deliver;
use crate::limits::BATCHING_GAP;
use crate::moderation::Restrictions;
use crate::ring::Ring;

/// What a log keeps of each client reading it: the handle that wakes its readers.
pub(crate) type Wake = Arc<Waking>;

/// How to wake one session's readers: those waiting in [`Reader::next_into`], and those whose
/// transport takes deliveries in the waker's task.
///
/// [`Reader::next_into`]: crate::Reader::next_into
#[derive(Default)]
pub(crate) struct Waking {
    notify: Notify,
    /// Readers in [`Reader::next_into`] now: `notify` is only called when there are some (a
    /// session read by publishers' deliveries alone takes no lock for it).
    ///
    /// [`Reader::next_into`]: crate::Reader::next_into
    waiting: AtomicUsize,
    /// The session's membership version, or [`GONE`] once it ended, as its state last
    /// published it (under the state's lock): a delivery checks it here, in the handle it has
    /// just used, instead of taking the session's lock.
    membership: AtomicU64,
    /// Readers delivered to in the waker's task ([`crate::Reader::deliver_to`]), while their
    /// transport lives.
    direct: Mutex<Direct>,
}

/// [`Waking::membership`] of a session that ended.
const GONE: u64 = u64::MAX;

/// The readers of one session delivered to in the waker's task: nearly always one, kept
/// inline (a fan-out reads it for every subscriber: no second allocation to fetch).
#[derive(Default)]
struct Direct {
    first: Option<Weak<dyn Deliver>>,
    more: Vec<Weak<dyn Deliver>>,
}

impl Direct {
    fn iter(&self) -> impl Iterator<Item = &Weak<dyn Deliver>> {
        self.first.iter().chain(&self.more)
    }

    fn add(&mut self, deliver: Weak<dyn Deliver>) {
        self.more.retain(|d| d.strong_count() > 0);
        match &self.first {
            Some(first) if first.strong_count() > 0 => self.more.push(deliver),
            _ => self.first = Some(deliver),
        }
    }

    fn remove(&mut self, deliver: &Weak<dyn Deliver>) {
        self.more.retain(|d| !Weak::ptr_eq(d, deliver));
        if self.first.as_ref().is_some_and(|first| Weak::ptr_eq(first, deliver)) {
            self.first = self.more.pop();
        }
    }
}

/// Readers a fan-out's phases take at a time: enough for each phase to run as a loop, few
/// enough that what the first phase framed is still in the caches when the second writes it.
const FAN_OUT_BATCH: usize = 64;

thread_local! {
    /// The list [`fan_out`] fills and empties, kept to save its allocation.
    static FRAMED: std::cell::Cell<Vec<Arc<dyn Deliver>>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Wakes each session of `wakes` in two phases: every reader delivered to in this task reads
/// and frames its part first, then every socket is written to. Alternating the two per reader
/// (the plain way) makes each kernel send start with caches full of the reader's data, and each
/// read with caches full of the kernel's.
fn fan_out<'a>(wakes: impl IntoIterator<Item = &'a Waking>, write_now: bool) {
    let mut framed = FRAMED.take(); // taken, not borrowed: a write may not call back here, but nothing breaks if it does
    for wake in wakes {
        wake.read_and_frame(write_now, &mut framed);
        if framed.len() >= FAN_OUT_BATCH {
            framed.drain(..).for_each(|deliver| deliver.write_framed());
        }
    }
    framed.drain(..).for_each(|deliver| deliver.write_framed());
    FRAMED.set(framed);
}

/// A reader counted as waiting (see [`Waking::waiting`]).
pub(crate) struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Waking {
    /// Wakes every reader; `write_now`: see [`Deliver::deliver`].
    pub(crate) fn wake(&self, write_now: bool) {
        fan_out(std::iter::once(self), write_now);
    }

    /// Phase one of [`fan_out`] for this session: wakes the readers in `next_into`, and has
    /// those delivered to here read and frame; those that framed go on `framed`.
    fn read_and_frame(&self, write_now: bool, framed: &mut Vec<Arc<dyn Deliver>>) {
        // A reader counts itself before it reads, and this is called after the change is made
        // (under the lock the reader reads it under): either it sees the change, or it is
        // counted here.
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.notify.notify_waiters();
        }
        // Held while delivering: a transport stops being delivered to (its `Delivering` ends)
        // only between deliveries. A delivery never wakes a session, so it cannot come back.
        let direct = self.direct.lock().expect("direct lock");
        for deliver in direct.iter().filter_map(Weak::upgrade) {
            if deliver.deliver(write_now) {
                framed.push(deliver);
            }
        }
    }

    pub(crate) fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }

    /// Counts a reader as waiting (see `waiting`) until the guard is dropped.
    pub(crate) fn waiting(&self) -> Waiting<'_> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        Waiting(&self.waiting)
    }

    pub(crate) fn add_direct(&self, deliver: Weak<dyn Deliver>) {
        self.direct.lock().expect("direct lock").add(deliver);
    }

    pub(crate) fn remove_direct(&self, deliver: &Weak<dyn Deliver>) {
        self.direct.lock().expect("direct lock").remove(deliver);
    }

    /// Publishes the session's membership version (see the field); called under the session
    /// state's lock, by every change of it.
    pub(crate) fn publish_membership(&self, membership: u64, gone: bool) {
        self.membership.store(if gone { GONE } else { membership }, Ordering::SeqCst);
    }

    /// The session's membership version, `None` once it ended.
    pub(crate) fn membership(&self) -> Option<u64> {
        Some(self.membership.load(Ordering::SeqCst)).filter(|&m| m != GONE)
    }
}

/// One room's or inbox's log on this node.
pub(crate) struct Log {
    pub(crate) id: LogId,
    pub(crate) ring: Mutex<Ring>,
    /// Clients reading this log (a room's members, or an inbox owner's clients): how to wake each.
    readers: Mutex<HashMap<ClientId, Wake>>,
    /// The wake handles of `readers`, as the last insert found them; `None` after a reader came
    /// or went. A publish wakes from this copy, so joins and leaves wait for no fan-out.
    wakes: Mutex<Option<Arc<[Wake]>>>,
    /// When the last event's fan-out ended, in ns since `born` (0: none yet): how close events
    /// come.
    last_event_ns: AtomicU64,
    born: Instant,
    /// When the last reader left (for evicting idle logs); `None` while read.
    idle_since: Mutex<Option<Instant>>,
    /// Set while a presence `count` is scheduled for this (crowded) room.
    pub(crate) count_pending: AtomicBool,
    /// The room's mutes and bans in force (see [`crate::moderation`]); empty for an inbox.
    pub(crate) restrictions: Mutex<Restrictions>,
}

impl Log {
    pub(crate) fn new(id: LogId, head: Seq, ring_capacity: usize, ring_bytes: usize) -> Log {
        Log {
            id,
            ring: Mutex::new(Ring::new(head, ring_capacity, ring_bytes)),
            readers: Mutex::default(),
            wakes: Mutex::default(),
            last_event_ns: AtomicU64::new(0),
            born: Instant::now(),
            idle_since: Mutex::new(Some(Instant::now())),
            count_pending: AtomicBool::new(false),
            restrictions: Mutex::default(),
        }
    }

    /// Makes the entry visible and wakes every reader if it (or entries waiting for it) became
    /// readable.
    pub(crate) fn insert(&self, entry: Arc<Entry>) {
        let visible = self.ring.lock().expect("ring lock").insert(entry);
        if !visible {
            return;
        }
        // An event within BATCHING_GAP of the end of the last one's fan-out: readers' tasks take
        // them several per write. (From the end: a fan-out that writes to every socket itself
        // delays the next event, and must not count as a quiet room because of it.)
        let since_born = || u64::try_from(self.born.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let last = self.last_event_ns.load(Ordering::Relaxed);
        let write_now = last == 0 || since_born().saturating_sub(last) >= BATCHING_GAP.as_nanos() as u64;
        let cached = self.wakes.lock().expect("wakes lock").clone();
        let wakes = cached.unwrap_or_else(|| {
            // Locks in the order add_reader and remove_reader do: readers, then wakes.
            let readers = self.readers.lock().expect("readers lock");
            let mut wakes: Vec<Wake> = readers.values().cloned().collect();
            // In the order of their addresses, not the map's (which is random): a fan-out then
            // walks the wake handles, and the connections allocated around them, the way the
            // caches' prefetchers and the address translation cache walk best (at 10 000
            // subscribers, a third less CPU in quartet's own code per delivery). Sorting costs
            // a fraction of a millisecond for 10 000, once per change of the reader set.
            wakes.sort_unstable_by_key(|wake| Arc::as_ptr(wake) as usize);
            let wakes: Arc<[Wake]> = wakes.into();
            *self.wakes.lock().expect("wakes lock") = Some(wakes.clone());
            wakes
        });
        fan_out(wakes.iter().map(|wake| &**wake), write_now);
        self.last_event_ns.store(since_born(), Ordering::Relaxed);
    }

    pub(crate) fn head(&self) -> Seq {
        self.ring.lock().expect("ring lock").head()
    }

    /// Adds a reader; returns the reader count after.
    pub(crate) fn add_reader(&self, client: ClientId, wake: Wake) -> usize {
        let mut readers = self.readers.lock().expect("readers lock");
        readers.insert(client, wake);
        *self.wakes.lock().expect("wakes lock") = None;
        *self.idle_since.lock().expect("idle lock") = None;
        readers.len()
    }

    /// Removes a reader; returns the reader count after.
    pub(crate) fn remove_reader(&self, client: &ClientId) -> usize {
        let mut readers = self.readers.lock().expect("readers lock");
        if readers.remove(client).is_some() {
            *self.wakes.lock().expect("wakes lock") = None;
        }
        if readers.is_empty() {
            *self.idle_since.lock().expect("idle lock") = Some(Instant::now());
        }
        readers.len()
    }

    pub(crate) fn reader_count(&self) -> usize {
        self.readers.lock().expect("readers lock").len()
    }

    /// Since when nobody reads this log, if nobody does.
    pub(crate) fn idle_since(&self) -> Option<Instant> {
        *self.idle_since.lock().expect("idle lock")
    }
}

#[cfg(test)]
mod tests {
    use quartet_protocol::{ClientId, EventName, RoomName, Scope, UserName};
    use serde_json::value::RawValue;

    use super::*;
    use crate::entry::Draft;

    /// Notes which wake handle it was reached through.
    struct Recorder {
        order: Arc<Mutex<Vec<usize>>>,
        wake: usize,
    }

    impl Deliver for Recorder {
        fn deliver(&self, _write_now: bool) -> bool {
            self.order.lock().unwrap().push(self.wake);
            false
        }

        fn write_framed(&self) {}
    }

    #[tokio::test]
    async fn a_fan_out_visits_the_readers_in_the_order_of_their_wake_handles_in_memory() {
        let room = LogId::Room(RoomName::parse("lobby").unwrap());
        let log = Log::new(room.clone(), Seq(0), 16, 1 << 20);
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut kept = Vec::new();
        for i in 0..64u8 {
            let wake = Wake::default();
            let address = Arc::as_ptr(&wake) as usize;
            let recorder: Arc<dyn Deliver> = Arc::new(Recorder { order: order.clone(), wake: address });
            wake.add_direct(Arc::downgrade(&recorder));
            log.add_reader(ClientId::from_random([i; 16]), wake.clone());
            kept.push((wake, recorder));
        }
        let draft = Draft::now(
            room,
            EventName::parse("chat").unwrap(),
            UserName::parse("alice").unwrap(),
            ClientId::from_random([255; 16]),
            Scope::Room,
            RawValue::from_string("{}".into()).unwrap(),
        );
        log.insert(Entry::new(Seq(1), draft));
        let order = order.lock().unwrap().clone();
        assert_eq!(order.len(), 64, "every reader is delivered to once");
        assert!(order.windows(2).all(|w| w[0] < w[1]), "visited out of address order: {order:x?}");
    }
}
