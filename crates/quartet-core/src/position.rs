//! Where a reader is in the logs it reads: the state a [`Reader`](crate::Reader) reads with, in
//! types of their own so that it can outlive the reader. A poll's reader leaves it in the
//! client's session when the poll is answered, and the client's next poll goes on from there
//! (see [`Kept`]); the session holds it without knowing readers (this module sits below both).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use quartet_protocol::{BaseId, Epoch, Error, LogId, Seq};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::entry::Entry;
use crate::log::Log;

/// One log as a reader reads it.
pub(crate) struct LogRead {
    pub(crate) log: Arc<Log>,
    /// The earliest position the client may read from (its join, for a room).
    pub(crate) floor: Seq,
    /// Last seq delivered (or stepped over).
    pub(crate) at: Seq,
    /// Events older than the ring, fetched from the engine, waiting to be delivered.
    pub(crate) backlog: VecDeque<Arc<Entry>>,
    /// Set when the ring no longer holds the events after `at`: the engine is asked next.
    pub(crate) behind: bool,
    /// Set when the engine had nothing after `at` either: the ring's gap is reported as is.
    pub(crate) engine_empty: bool,
    /// This log's position in the reader's cursor base, if the base has it.
    pub(crate) base_at: Option<Seq>,
}

/// Positions stored for a reader's cursors to name (see [the reader's doc](crate::reader)).
pub(crate) struct Base {
    pub(crate) id: BaseId,
    pub(crate) positions: Arc<BTreeMap<LogId, Seq>>,
    /// When this reader took it on.
    pub(crate) since: Instant,
}

impl Base {
    /// A base a cursor named, with its (resolved) positions.
    pub(crate) fn new(id: BaseId, positions: BTreeMap<LogId, Seq>) -> Base {
        Base { id, positions: Arc::new(positions), since: Instant::now() }
    }

    /// Its positions.
    pub(crate) fn positions(&self) -> Arc<BTreeMap<LogId, Seq>> {
        self.positions.clone()
    }
}

/// A base being stored: the positions it holds, and where the engine's answer comes.
pub(crate) struct Saving {
    pub(crate) positions: Arc<BTreeMap<LogId, Seq>>,
    pub(crate) answer: oneshot::Receiver<Result<Option<BaseId>, Error>>,
}

/// Where a reader is in its logs: the logs and positions it reads, and the cursor base its
/// cursors name. What a poll's reader leaves for the client's next poll (see [`Kept`]).
pub(crate) struct Place {
    pub(crate) epoch: Epoch,
    /// The logs read, sorted by id (the cursor lists them in that order).
    pub(crate) reads: Vec<LogRead>,
    /// The session's membership version `reads` was built for.
    pub(crate) membership: Option<u64>,
    /// Set once the engine said it keeps nothing beyond the rings: gaps are reported at once.
    pub(crate) no_history: bool,
    /// The base its cursors name, if any.
    pub(crate) base: Option<Base>,
    /// Logs of the base this reader no longer reads: its cursors say so.
    pub(crate) dropped: Vec<LogId>,
    /// A base being stored.
    pub(crate) saving: Option<Saving>,
    /// When it last asked for a base to be stored.
    pub(crate) last_save: Option<Instant>,
    /// Set once the engine said it keeps no bases.
    pub(crate) no_bases: bool,
    /// Set by an encoding that found a base worth storing: done at the end of the read, from
    /// the positions after the whole batch.
    pub(crate) base_wanted: bool,
}

impl Place {
    /// Nowhere yet (no logs listed), on `epoch`, naming `base` if a cursor did.
    pub(crate) fn new(epoch: Epoch, base: Option<Base>) -> Place {
        Place {
            epoch,
            reads: Vec::new(),
            membership: None,
            no_history: false,
            base,
            dropped: Vec::new(),
            saving: None,
            last_save: None,
            no_bases: false,
            base_wanted: false,
        }
    }
}

/// What a poll's reader leaves in its session when the poll is answered
/// ([`Reader::keep`](crate::Reader::keep)), for the client's next poll: a long-polling client
/// asks again at once with the cursor it was just given, and its reader goes on from here
/// instead of decoding that cursor, checking its positions and building its list of logs
/// again. Taken only by a poll that comes with exactly that cursor, on this engine's epoch; any
/// other cursor opens a reader as always. The state holds no handle on the session (which holds
/// it): nothing keeps a session alive.
pub(crate) struct Kept {
    /// The cursor the poll answered with.
    pub(crate) cursor: String,
    pub(crate) place: Place,
}
