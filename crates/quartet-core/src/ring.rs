//! The in-memory tail of one log: a bounded ring of recent entries, read by cursor.
//!
//! Every reader of a room reads the same `Arc<Entry>`s from here; nothing is copied per reader
//! ("fan out on read"). The ring is bounded by count and by bytes; a reader whose position is
//! older than the oldest kept entry is told so (the gap [`Ring::read_after_into`] returns) rather
//! than silently skipped ahead.
//!
//! Entries may arrive out of order when several publishes to one room are in flight at once
//! (the engine hands out seqs; the publishers then race to insert). The ring only exposes the
//! contiguous prefix, so a reader never sees seq 7 before seq 6.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use quartet_protocol::Seq;

use crate::entry::Entry;

/// Recent entries of one log.
#[derive(Debug)]
pub struct Ring {
    entries: VecDeque<Arc<Entry>>,
    /// Last seq that is visible: every seq up to it is in `entries` or was evicted.
    head: Seq,
    /// Entries above `head + 1` that wait for the missing seqs below them.
    pending: BTreeMap<Seq, Arc<Entry>>,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
}

impl Ring {
    /// An empty ring whose log already holds events up to `head` (0 for a new log).
    pub fn new(head: Seq, max_entries: usize, max_bytes: usize) -> Ring {
        Ring { entries: VecDeque::new(), head, pending: BTreeMap::new(), bytes: 0, max_entries, max_bytes }
    }

    /// The last visible seq.
    pub fn head(&self) -> Seq {
        self.head
    }

    /// Inserts an entry. Returns whether new entries became visible (readers should be woken).
    pub fn insert(&mut self, entry: Arc<Entry>) -> bool {
        if entry.seq <= self.head {
            return false; // already have it
        }
        if entry.seq != self.head.next() {
            self.pending.insert(entry.seq, entry);
            return false;
        }
        self.push(entry);
        while let Some(next) = self.pending.remove(&self.head.next()) {
            self.push(next);
        }
        true
    }

    fn push(&mut self, entry: Arc<Entry>) {
        self.head = entry.seq;
        self.bytes += entry.size();
        self.entries.push_back(entry);
        while self.entries.len() > self.max_entries || (self.bytes > self.max_bytes && self.entries.len() > 1)
        {
            let old = self.entries.pop_front().expect("ring is not empty");
            self.bytes -= old.size();
        }
    }

    /// Appends up to `limit` entries with seq > `after`, in seq order, to `out` (a buffer the
    /// caller reuses); returns the seqs lost, if the position was older than the ring.
    pub fn read_after_into(&self, after: Seq, limit: usize, out: &mut Vec<Arc<Entry>>) -> Option<(Seq, Seq)> {
        let oldest = self.entries.front().map_or(self.head.next(), |e| e.seq);
        let mut gap = None;
        let mut from = after;
        if after.next() < oldest {
            gap = Some((after.next(), Seq(oldest.0 - 1)));
            from = Seq(oldest.0 - 1);
        }
        if from < self.head {
            let skip = (from.0 + 1 - oldest.0) as usize;
            let end = skip.saturating_add(limit).min(self.entries.len());
            out.extend(self.entries.range(skip..end).cloned());
        }
        gap
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Draft;
    use quartet_protocol::{ClientId, EventName, LogId, RoomName, Scope, UserName};
    use serde_json::value::RawValue;

    fn entry(seq: u64) -> Arc<Entry> {
        let draft = Draft::now(
            LogId::Room(RoomName::parse("r").unwrap()),
            EventName::parse("chat").unwrap(),
            UserName::parse("u").unwrap(),
            ClientId::from_random([0; 16]),
            Scope::Room,
            RawValue::NULL.to_owned(),
        );
        Entry::new(Seq(seq), draft)
    }

    /// One read's outcome, for assertions.
    #[derive(Default)]
    struct Read {
        entries: Vec<Arc<Entry>>,
        gap: Option<(Seq, Seq)>,
    }

    impl Ring {
        fn read_after(&self, after: Seq, limit: usize) -> Read {
            let mut read = Read::default();
            read.gap = self.read_after_into(after, limit, &mut read.entries);
            read
        }
    }

    fn seqs(read: &Read) -> Vec<u64> {
        read.entries.iter().map(|e| e.seq.0).collect()
    }

    #[test]
    fn reads_after_a_position_with_a_limit() {
        let mut ring = Ring::new(Seq(0), 10, usize::MAX);
        for seq in 1..=5 {
            assert!(ring.insert(entry(seq)));
        }
        assert_eq!(seqs(&ring.read_after(Seq(0), 100)), [1, 2, 3, 4, 5]);
        assert_eq!(seqs(&ring.read_after(Seq(3), 100)), [4, 5]);
        assert_eq!(seqs(&ring.read_after(Seq(1), 2)), [2, 3]);
        assert!(ring.read_after(Seq(5), 100).entries.is_empty());
        assert!(ring.read_after(Seq(9), 100).gap.is_none());
    }

    #[test]
    fn out_of_order_inserts_stay_hidden_until_contiguous() {
        let mut ring = Ring::new(Seq(0), 10, usize::MAX);
        assert!(!ring.insert(entry(2)));
        assert_eq!(ring.head(), Seq(0));
        assert!(ring.read_after(Seq(0), 10).entries.is_empty());
        assert!(ring.insert(entry(1)));
        assert_eq!(seqs(&ring.read_after(Seq(0), 10)), [1, 2]);
        assert!(!ring.insert(entry(2)), "a duplicate is ignored");
    }

    #[test]
    fn a_position_older_than_the_ring_reports_the_gap() {
        let mut ring = Ring::new(Seq(0), 3, usize::MAX);
        for seq in 1..=6 {
            ring.insert(entry(seq));
        }
        let read = ring.read_after(Seq(1), 10);
        assert_eq!(read.gap, Some((Seq(2), Seq(3))));
        assert_eq!(seqs(&read), [4, 5, 6]);
        assert!(ring.read_after(Seq(3), 10).gap.is_none());
    }

    #[test]
    fn a_log_restored_with_history_starts_at_its_head() {
        let ring = Ring::new(Seq(10), 3, usize::MAX);
        assert!(ring.read_after(Seq(10), 10).gap.is_none());
        assert_eq!(ring.read_after(Seq(4), 10).gap, Some((Seq(5), Seq(10))));
    }
}
