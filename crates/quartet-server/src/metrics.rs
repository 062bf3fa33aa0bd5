//! `/metrics` in the Prometheus text format: the core's counters plus per-transport ones.
//!
//! The per-transport counters are what the benchmarks read to compute requests per delivered
//! message and the empty-poll ratio.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::AppState;
use crate::transport::Transport;

/// Counters of one transport.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Requests (polls) or connections (streams) served.
    pub(crate) requests: AtomicU64,
    /// Requests answered with no event (polls only).
    pub(crate) empty: AtomicU64,
    /// Events and gaps written.
    pub(crate) delivered: AtomicU64,
    /// Streams open right now (SSE, WebSocket, parked long polls).
    pub(crate) open: AtomicU64,
}

/// Counters for all four transports.
#[derive(Debug, Default)]
pub(crate) struct TransportStats {
    counters: [Counters; 4],
}

impl TransportStats {
    /// The counters of `transport`.
    pub(crate) fn of(&self, transport: Transport) -> &Counters {
        &self.counters[transport.index()]
    }
}

/// Keeps `open` right while a stream lives.
pub(crate) struct OpenGuard<'a>(&'a Counters);

impl<'a> OpenGuard<'a> {
    /// Counts one more open stream until dropped.
    pub(crate) fn new(counters: &'a Counters) -> Self {
        counters.open.fetch_add(1, Ordering::Relaxed);
        OpenGuard(counters)
    }
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `GET /metrics`.
pub(crate) async fn render(State(state): State<AppState>) -> impl IntoResponse {
    let core = state.hub.stats();
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, rows: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in rows {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let one = |v: u64| [(String::new(), v as f64)];
    metric(
        "quartet_clients",
        "gauge",
        "Clients registered and alive.",
        &one(state.hub.client_count() as u64),
    );
    metric(
        "quartet_events_published_total",
        "counter",
        "Events appended to logs.",
        &one(core.published.load(Ordering::Relaxed)),
    );
    metric(
        "quartet_deliveries_total",
        "counter",
        "Events and gaps handed to readers.",
        &one(core.delivered.load(Ordering::Relaxed)),
    );
    metric(
        "quartet_clients_registered_total",
        "counter",
        "Clients registered.",
        &one(core.registered.load(Ordering::Relaxed)),
    );
    metric(
        "quartet_clients_expired_total",
        "counter",
        "Clients removed for silence.",
        &one(core.expired.load(Ordering::Relaxed)),
    );
    metric(
        "quartet_events_shed_total",
        "counter",
        "Droppable events skipped by readers more than a batch behind.",
        &one(core.shed.load(Ordering::Relaxed)),
    );
    metric(
        "quartet_streams_slow_total",
        "counter",
        "SSE streams and WebSockets closed `slow`: behind their events for too long.",
        &one(core.slow.load(Ordering::Relaxed)),
    );
    metric(
        "quartet_polls_kept_total",
        "counter",
        "Polls whose reader went on from the client's previous poll (asked with the cursor it answered).",
        &one(core.polls_kept.load(Ordering::Relaxed)),
    );
    // The four, then Socket.IO's sessions (requests: every Engine.IO request and WebSocket).
    let per = |pick: fn(&Counters) -> &AtomicU64| -> Vec<(String, f64)> {
        Transport::ALL
            .iter()
            .map(|t| (t.name(), state.stats.of(*t)))
            .chain([("socketio", &state.sessions.counters)])
            .map(|(name, counters)| {
                (format!("{{transport=\"{name}\"}}"), pick(counters).load(Ordering::Relaxed) as f64)
            })
            .collect()
    };
    metric(
        "quartet_transport_requests_total",
        "counter",
        "Requests or connections per transport.",
        &per(|c| &c.requests),
    );
    metric("quartet_transport_empty_total", "counter", "Poll responses with no event.", &per(|c| &c.empty));
    metric(
        "quartet_transport_delivered_total",
        "counter",
        "Events written per transport.",
        &per(|c| &c.delivered),
    );
    metric("quartet_transport_open", "gauge", "Open streams per transport.", &per(|c| &c.open));
    metric(
        "quartet_socketio_sessions",
        "gauge",
        "Engine.IO sessions open (a polling one lives between its requests).",
        &one(state.sessions.len() as u64),
    );
    let meter = &state.meter;
    metric(
        "quartet_tcp_received_bytes_total",
        "counter",
        "Bytes read from client sockets.",
        &one(meter.received.load(Ordering::Relaxed)),
    );
    metric(
        "quartet_tcp_sent_bytes_total",
        "counter",
        "Bytes written to client sockets.",
        &one(meter.sent.load(Ordering::Relaxed)),
    );
    metric(
        "quartet_tcp_connections_total",
        "counter",
        "TCP connections accepted.",
        &one(meter.connections.load(Ordering::Relaxed)),
    );
    metric(
        "quartet_tcp_stalled_total",
        "counter",
        "Connections given up on because the client stopped reading for the client timeout.",
        &one(meter.stalled.load(Ordering::Relaxed)),
    );
    metric(
        "quartet_tcp_refused_total",
        "counter",
        "Connections closed at once because a connection cap (--max-connections, --max-connections-per-ip) was reached.",
        &one(meter.refused.load(Ordering::Relaxed)),
    );
    // The store's own counters (commit groups, Redis round trips and announcements).
    for (name, help, value) in state.hub.engine().metrics() {
        metric(name, "counter", help, &one(value));
    }
    if let Some(process) = process_stats() {
        let cpu = [(String::new(), process.cpu_seconds)];
        metric(
            "process_cpu_seconds_total",
            "counter",
            "CPU time of the server process (user + system).",
            &cpu,
        );
        metric(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory of the server process.",
            &one(process.rss_bytes),
        );
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

/// CPU time and resident memory of this process, from `/proc` (Linux only).
pub(crate) struct ProcessStats {
    /// User plus system CPU time.
    pub(crate) cpu_seconds: f64,
    /// Resident set size.
    pub(crate) rss_bytes: u64,
}

/// Reads [`ProcessStats`] for this process; `None` where `/proc` is not available.
pub(crate) fn process_stats() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces, so split after its closing paren).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let rss_kib: u64 =
        status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    // Linux reports CPU time in clock ticks of 1/100 s on every mainstream configuration.
    Some(ProcessStats { cpu_seconds: ticks as f64 / 100.0, rss_bytes: rss_kib * 1024 })
}
