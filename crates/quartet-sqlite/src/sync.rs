//! The sync thread: makes committed groups durable before they are answered, off the writer's
//! path (`--sqlite-sync full`).
//!
//! The writer commits without syncing (`synchronous = NORMAL`: in WAL mode, no sync at commit)
//! and hands the group's answers here. This thread syncs the WAL file (`fdatasync`) and only
//! then answers: an ack still means "on disk". Meanwhile the writer commits the next group, so
//! the wait for the disk no longer holds it, and one sync covers every group committed before
//! it started (a sync flushes everything written to the file so far).
//!
//! If a sync fails, the groups it covered are answered `unavailable` (never acked), and the store
//! refuses every write from then on and reports itself failing until quartet is restarted (on
//! the file, which is then read as it really is on disk). Retrying is not safe: after a failed
//! `fsync` the kernel may have dropped the pages it could not write, and a second `fsync` can
//! succeed without them (PostgreSQL stops for the same reason). Their seqs are taken, too: the
//! rooms could not go on past them.

use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;

use crate::writer::{Answer, Answers, State};

/// Runs until the writer is gone (after answering what it handed over).
pub(crate) fn run(wal: File, groups: Receiver<Vec<Answer>>, answers: Answers, state: Arc<State>) {
    while let Ok(first) = groups.recv() {
        let mut batch = first;
        while let Ok(more) = groups.try_recv() {
            batch.extend(more);
        }
        let batch = match wal.sync_data() {
            Ok(()) => {
                state.syncs.fetch_add(1, Ordering::Relaxed);
                batch
            }
            Err(error) => {
                let why = format!("cannot sync the WAL: {error}");
                tracing::error!(%error, "cannot sync the WAL: refusing every write until quartet is restarted");
                state.fail_for_good(why.clone());
                batch.into_iter().map(|answer| answer.failed(&why)).collect()
            }
        };
        if let Err(unsent) = answers.send(batch) {
            unsent.0.into_iter().for_each(Answer::send);
        }
    }
}
