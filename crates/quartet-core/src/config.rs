//! The tunables of a hub and its live counters: plain data at the bottom of the core, read by
//! every layer above.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

#[cfg(doc)]
use crate::limits::SHED_LAG;
use crate::limits::{
    COMMAND_BURST, COMMANDS_PER_SECOND, DEFAULT_HEARTBEAT, HEARTBEATS_BEFORE_TIMEOUT,
    PRESENCE_COUNT_INTERVAL, PRESENCE_CROWD, RING_BYTES, RING_CAPACITY, SLOW_STREAM_AFTER,
};

/// Tunables of a hub. [`Config::default`] is what `quartet serve` uses.
#[derive(Clone, Debug)]
pub struct Config {
    /// How often clients must show life; see [`DEFAULT_HEARTBEAT`].
    pub heartbeat: Duration,
    /// Events kept in memory per log.
    pub ring_capacity: usize,
    /// Bytes kept in memory per log.
    pub ring_bytes: usize,
    /// Steady commands per second allowed per client; see [`COMMANDS_PER_SECOND`].
    pub command_rate: f64,
    /// Commands allowed at once above the steady rate; see [`COMMAND_BURST`].
    pub command_burst: f64,
    /// Room size above which joins and leaves are announced as periodic counts; see
    /// [`PRESENCE_CROWD`].
    pub presence_crowd: usize,
    /// How often a crowded room's count is announced; see [`PRESENCE_COUNT_INTERVAL`].
    pub presence_interval: Duration,
    /// How long a stream may stay behind before it is closed `slow`; see [`SLOW_STREAM_AFTER`].
    pub slow_after: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            heartbeat: DEFAULT_HEARTBEAT,
            ring_capacity: RING_CAPACITY,
            ring_bytes: RING_BYTES,
            command_rate: COMMANDS_PER_SECOND,
            command_burst: COMMAND_BURST,
            presence_crowd: PRESENCE_CROWD,
            presence_interval: PRESENCE_COUNT_INTERVAL,
            slow_after: SLOW_STREAM_AFTER,
        }
    }
}

impl Config {
    /// Silence after which a client is removed: [`HEARTBEATS_BEFORE_TIMEOUT`] heartbeats.
    pub fn client_timeout(&self) -> Duration {
        self.heartbeat * HEARTBEATS_BEFORE_TIMEOUT
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Events appended (publishes, directs, presence).
    pub published: AtomicU64,
    /// Events and gaps handed to readers.
    pub delivered: AtomicU64,
    /// Clients registered since start.
    pub registered: AtomicU64,
    /// Clients removed for silence.
    pub expired: AtomicU64,
    /// Droppable events skipped by readers that were behind (see [`SHED_LAG`]).
    pub shed: AtomicU64,
    /// Streams closed because they stayed behind (see [`SLOW_STREAM_AFTER`]).
    pub slow: AtomicU64,
    /// Polls whose reader went on from the client's last poll's, asked with the cursor it
    /// answered (see [`Reader::keep`](crate::Reader::keep)).
    pub polls_kept: AtomicU64,
}
