//! A log as the hub holds it: the ring of recent entries plus the wake handles of the clients
//! that read it.
//!
//! The reader set is what makes fan-out cheap: a publish appends one entry and then wakes each
//! reader once; the readers come and take the shared entry themselves. A log holds only the
//! readers' wake handles, never their sessions: sessions point to logs, not the other way, so
//! no reference cycle can keep a removed client alive.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use quartet_protocol::{ClientId, LogId, Seq};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::entry::Entry;
use crate::moderation::Restrictions;
use crate::ring::Ring;

/// What a log keeps of each reader: the handle that wakes it.
pub(crate) type Wake = Arc<Notify>;

/// One room's or inbox's log on this node.
pub(crate) struct Log {
    pub(crate) id: LogId,
    pub(crate) ring: Mutex<Ring>,
    /// Clients reading this log (a room's members, or an inbox owner's clients): how to wake each.
    readers: Mutex<HashMap<ClientId, Wake>>,
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
            idle_since: Mutex::new(Some(Instant::now())),
            count_pending: AtomicBool::new(false),
            restrictions: Mutex::default(),
        }
    }

    /// Makes the entry visible and wakes every reader if it (or entries waiting for it) became
    /// readable.
    pub(crate) fn insert(&self, entry: Arc<Entry>) {
        let visible = self.ring.lock().expect("ring lock").insert(entry);
        if visible {
            for wake in self.readers.lock().expect("readers lock").values() {
                wake.notify_waiters();
            }
        }
    }

    pub(crate) fn head(&self) -> Seq {
        self.ring.lock().expect("ring lock").head()
    }

    /// Adds a reader; returns the reader count after.
    pub(crate) fn add_reader(&self, client: ClientId, wake: Wake) -> usize {
        let mut readers = self.readers.lock().expect("readers lock");
        readers.insert(client, wake);
        *self.idle_since.lock().expect("idle lock") = None;
        readers.len()
    }

    /// Removes a reader; returns the reader count after.
    pub(crate) fn remove_reader(&self, client: &ClientId) -> usize {
        let mut readers = self.readers.lock().expect("readers lock");
        readers.remove(client);
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
