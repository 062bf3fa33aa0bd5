//! The bench report: JSON for machines, Markdown for people, SVG charts for the docs.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

/// One whole run of `quartet bench`.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub(crate) quartet_version: &'static str,
    pub(crate) command: String,
    pub(crate) started_unix: u64,
    pub(crate) machine: Machine,
    pub(crate) settings: Settings,
    pub(crate) runs: Vec<Run>,
    /// WebSocket and SSE offered more than one message per write can carry (see
    /// `Settings::saturation_deliveries_per_s`): what batching makes of the server's cost.
    pub(crate) saturation: Vec<Run>,
    /// One subscriber per transport with every CPU kept from idling (see `server::Spinners`):
    /// what the server's own path costs in latency, beside the normal one-subscriber runs.
    pub(crate) awake: Vec<Run>,
    /// What the kernel alone charges per message on this machine, measured in this run.
    pub(crate) floor: Option<super::floor::Floor>,
    /// The same floor with as many sockets as each room of the run larger than its own.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) larger_floors: Vec<super::floor::Floor>,
    /// The floor paced like each large room's fan-out (see `floor::PacedFloor`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) paced_floors: Vec<super::floor::PacedFloor>,
    /// The machine's latency floor: a bare relay where the server runs (see `floor::relay`).
    pub(crate) relay_floor: Option<super::floor::RelayFloor>,
    /// The same with the CPUs kept awake.
    pub(crate) relay_floor_awake: Option<super::floor::RelayFloor>,
    /// The machine's floor for a short poll: a bare responder (see `floor::responder`).
    pub(crate) responder_floor: Option<super::floor::ResponderFloor>,
    /// The machine's floor for a long-poll batch beside each large room's long-poll row (see
    /// `floor::parked`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) parked_floors: Vec<super::floor::ParkedFloor>,
    pub(crate) idle: Vec<Idle>,
    /// What each store's durability costs: acked publishes per second and publish→delivery.
    pub(crate) stores: Stores,
    pub(crate) wall_seconds: f64,
}

/// The stores side by side (see `store.rs`).
#[derive(Debug, Default, Serialize)]
pub(crate) struct Stores {
    pub(crate) acked: Vec<super::store::AckRun>,
    pub(crate) delivery: Vec<super::store::DeliveryRun>,
    /// Redis: publish on one node, delivery on another.
    pub(crate) cross_node: Option<super::store::CrossNodeRun>,
    /// Redis: what one room's fan-out costs each node in Redis traffic.
    pub(crate) traffic: Vec<super::store::TrafficRun>,
    /// With `sqlite`: what one sync costs on this disk, no store involved.
    pub(crate) sync_floor: Option<super::floor::SyncFloor>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Machine {
    pub(crate) cpus: usize,
    pub(crate) cpu_model: String,
    pub(crate) kernel: String,
    pub(crate) server_pinned_to_cpu0: bool,
    /// The load generator ran on every CPU but the server's.
    pub(crate) loadgen_pinned_off_cpu0: bool,
    /// CPUs the load generator had, and its runtime's threads on them.
    pub(crate) loadgen_cpus: usize,
    pub(crate) loadgen_threads: usize,
    pub(crate) build: &'static str,
}

#[derive(Debug, Serialize)]
pub(crate) struct Settings {
    pub(crate) quick: bool,
    pub(crate) sizes: Vec<usize>,
    pub(crate) seconds_per_run: f64,
    pub(crate) target_deliveries_per_s: f64,
    pub(crate) payload_bytes: usize,
    pub(crate) short_poll_interval_ms: u64,
    pub(crate) long_poll_wait_ms: u64,
    pub(crate) idle_subscribers: usize,
    /// Deliveries per second offered in the saturation runs (0: none).
    pub(crate) saturation_deliveries_per_s: f64,
    pub(crate) saturation_subscribers: usize,
    pub(crate) saturation_seconds: f64,
}

/// Percentiles in microseconds.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Latency {
    pub(crate) p50: u64,
    pub(crate) p99: u64,
    pub(crate) p999: u64,
    pub(crate) max: u64,
}

/// One transport at one room size under an open-loop publisher.
#[derive(Debug, Serialize)]
pub(crate) struct Run {
    pub(crate) transport: String,
    pub(crate) subscribers: usize,
    pub(crate) publish_rate_per_s: f64,
    pub(crate) messages: u64,
    /// Events the server appended during the run, by its own `/metrics`: the measured publishes
    /// (plus presence counts, in rooms crowded enough to have them).
    pub(crate) server_appended: u64,
    pub(crate) expected_deliveries: u64,
    pub(crate) delivered: u64,
    pub(crate) complete: bool,
    /// From the scheduled send time to the event parsed by a subscriber.
    pub(crate) latency_us: Latency,
    /// Per message: scheduled send → its last subscriber has it (p50 and max over messages).
    pub(crate) fanout_complete_us: Latency,
    pub(crate) deliveries_per_s: f64,
    pub(crate) server_cpu_us_per_delivery: Option<f64>,
    /// The part of `server_cpu_us_per_delivery` spent in the server's own code (user mode);
    /// the rest is the kernel's (sending, and on loopback much of the receiving).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) server_user_us_per_delivery: Option<f64>,
    pub(crate) server_cpu_percent: Option<f64>,
    pub(crate) loadgen_cpu_percent: Option<f64>,
    /// Bytes on the server's sockets per delivered message, headers and framing included.
    pub(crate) bytes_to_clients_per_delivery: f64,
    pub(crate) bytes_from_clients_per_delivery: f64,
    pub(crate) http_requests_per_delivery: f64,
    pub(crate) empty_poll_ratio: Option<f64>,
    /// The kernel floor (µs per message at one message per `write()`, over as many sockets as
    /// this row has subscribers, or as the bench can hold) measured right after this row; for
    /// the rows that write one event per write to [`super::floor::SOCKETS`] or more sockets.
    /// This machine's floor moves by a third from one minute to the next; a row's ratio to the
    /// floors measured beside it moves less.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) floor_right_after_us: Option<f64>,
    /// The same floor measured right before the row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) floor_right_before_us: Option<f64>,
}

/// Load generator CPU (percent of the CPUs it can use) from which a run's figures may be the
/// generator's limits rather than the server's: the run says so.
pub(crate) const GENERATOR_BOUND_PERCENT: f64 = 90.0;

impl Run {
    /// The kernel floor beside the row: the mean of the floors measured right before and
    /// right after it (or the one measured, if only one was).
    pub(crate) fn floor_beside(&self) -> Option<f64> {
        match (self.floor_right_before_us, self.floor_right_after_us) {
            (Some(before), Some(after)) => Some((before + after) / 2.0),
            (one, other) => one.or(other),
        }
    }

    /// Server CPU per delivery over the kernel floor beside the row.
    pub(crate) fn against_floor(&self) -> Option<f64> {
        Some(self.server_cpu_us_per_delivery? / self.floor_beside()?)
    }

    /// Server CPU per request of a polling row (per batch: a request brings every event
    /// waiting for it); `None` for a row without requests.
    pub(crate) fn server_cpu_us_per_request(&self) -> Option<f64> {
        let requests = self.http_requests_per_delivery;
        (self.empty_poll_ratio.is_some() && requests > 0.0)
            .then_some(self.server_cpu_us_per_delivery? / requests)
    }

    /// Whether the load generator was near saturation during the run.
    pub(crate) fn generator_bound(&self) -> bool {
        self.loadgen_cpu_percent.is_some_and(|p| p >= GENERATOR_BOUND_PERCENT)
    }

    /// One line for the progress log.
    pub(crate) fn summary(&self) -> String {
        let bound = match self.loadgen_cpu_percent {
            Some(p) if self.generator_bound() => {
                format!("  (load generator at {p:.0} % of its CPUs: it may be the limit, not the server)")
            }
            _ => String::new(),
        };
        format!(
            "{:>10} × {:<6} p50 {:>8} µs  p99 {:>8} µs  {:>8.0} deliveries/s  {}/{} delivered  server CPU {} µs/delivery{}{bound}",
            self.transport,
            self.subscribers,
            self.latency_us.p50,
            self.latency_us.p99,
            self.deliveries_per_s,
            self.delivered,
            self.expected_deliveries,
            self.server_cpu_us_per_delivery.map_or("–".into(), |v| format!("{v:.2}")),
            self.server_user_us_per_delivery.map_or(String::new(), |v| format!(" ({v:.2} in its own code)")),
        )
    }
}

/// Many subscribers connected and idle: memory and the cost of staying connected.
#[derive(Debug, Serialize)]
pub(crate) struct Idle {
    pub(crate) transport: String,
    pub(crate) subscribers: usize,
    pub(crate) rss_before_bytes: Option<u64>,
    pub(crate) rss_after_bytes: Option<u64>,
    pub(crate) bytes_per_subscriber: Option<f64>,
    pub(crate) window_s: f64,
    pub(crate) requests_in_window: f64,
    pub(crate) server_cpu_percent: Option<f64>,
    /// Short poll only: server CPU per empty poll.
    pub(crate) cpu_us_per_empty_poll: Option<f64>,
    /// Seconds it took to connect the subscribers.
    pub(crate) fill_s: f64,
    /// Seconds between the last subscriber connected and the window's start (long polls: until
    /// none started for a second, after the room's count announcement answered them all).
    pub(crate) settle_s: f64,
}

/// The rows measured against a kernel floor of their own (see [`Run::floor_beside`]).
fn floor_ratios(md: &mut String, runs: &[Run]) {
    let rows: Vec<(&Run, f64)> = runs.iter().filter_map(|r| Some((r, r.against_floor()?))).collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "\nAgainst the kernel floor measured right before and right after each row (bare `write()` \
         calls, one message each, over as many loopback sockets as the row has subscribers, or as \
         the bench can hold; the mean of the two). The server's CPU is split as /proc tells it \
         (sampled at each 10 ms tick, so rough for short rows):\n"
    );
    let _ = writeln!(
        md,
        "| transport | subs | server CPU µs/delivery | of it in the server's code | in the kernel | floor µs/write, before / after | ratio to their mean |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|");
    for (r, ratio) in rows {
        let kernel =
            r.server_cpu_us_per_delivery.zip(r.server_user_us_per_delivery).map(|(all, user)| all - user);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} / {} | **{ratio:.2}×** |",
            r.transport,
            r.subscribers,
            opt(r.server_cpu_us_per_delivery, 2),
            opt(r.server_user_us_per_delivery, 2),
            opt(kernel, 2),
            opt(r.floor_right_before_us, 2),
            opt(r.floor_right_after_us, 2),
        );
    }
}

/// The table of delivery runs.
fn runs_table(md: &mut String, runs: &[Run]) {
    let _ = writeln!(
        md,
        "| transport | subs | msg/s | delivered | p50 | p99 | p99.9 | max | all subs have it (p50) | deliveries/s | server CPU µs/delivery | server CPU | loadgen CPU | bytes out/delivery | bytes in/delivery | requests/delivery | empty polls |"
    );
    let _ =
        writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in runs {
        let _ = writeln!(
            md,
            "| {} | {} | {:.0} | {}/{} | {} | {} | {} | {} | {} | {:.0} | {} | {}% | {}%{} | {:.1} | {:.1} | {:.3} | {} |",
            r.transport,
            r.subscribers,
            r.publish_rate_per_s,
            r.delivered,
            r.expected_deliveries,
            us(r.latency_us.p50),
            us(r.latency_us.p99),
            us(r.latency_us.p999),
            us(r.latency_us.max),
            us(r.fanout_complete_us.p50),
            r.deliveries_per_s,
            opt(r.server_cpu_us_per_delivery, 2),
            opt(r.server_cpu_percent, 0),
            opt(r.loadgen_cpu_percent, 0),
            if r.generator_bound() { " ⚠" } else { "" },
            r.bytes_to_clients_per_delivery,
            r.bytes_from_clients_per_delivery,
            r.http_requests_per_delivery,
            r.empty_poll_ratio.map_or("–".into(), |v| format!("{:.0}%", v * 100.0)),
        );
    }
    let bound: Vec<String> = runs
        .iter()
        .filter(|r| r.generator_bound())
        .map(|r| format!("{} × {}", r.transport, r.subscribers))
        .collect();
    if !bound.is_empty() {
        let _ = writeln!(
            md,
            "\n⚠ The load generator used {GENERATOR_BOUND_PERCENT:.0} % or more of its CPUs in: {}. There, \
             latency and throughput may be the generator's limits, not the server's (the server's CPU \
             per delivery is still its own).",
            bound.join(", ")
        );
    }
}

fn opt(value: Option<f64>, digits: usize) -> String {
    value.map_or("–".into(), |v| format!("{v:.digits$}"))
}

fn us(value: u64) -> String {
    if value >= 10_000 { format!("{:.1} ms", value as f64 / 1000.0) } else { format!("{value} µs") }
}

impl Report {
    /// The Markdown summary.
    pub(crate) fn markdown(&self) -> String {
        let mut md = String::new();
        let m = &self.machine;
        let _ = writeln!(md, "# quartet bench\n");
        let _ = writeln!(md, "`{}`  ", self.command);
        let _ = writeln!(
            md,
            "{} CPUs ({}), {}; {} build; server pinned to CPU 0: {}, load generator on the other {}: {} \
             ({} runtime thread{}; its CPU column is a percentage of those CPUs). \
             Payload {} B, short-poll interval {} ms, long-poll wait {} ms. Wall time {:.0} s.\n",
            m.cpus,
            m.cpu_model,
            m.kernel,
            m.build,
            m.server_pinned_to_cpu0,
            if m.loadgen_cpus == 1 { "CPU".to_owned() } else { format!("{} CPUs", m.loadgen_cpus) },
            m.loadgen_pinned_off_cpu0,
            m.loadgen_threads,
            if m.loadgen_threads == 1 { "" } else { "s" },
            self.settings.payload_bytes,
            self.settings.short_poll_interval_ms,
            self.settings.long_poll_wait_ms,
            self.wall_seconds
        );
        let _ = writeln!(md, "## Delivery under an open-loop publisher\n");
        runs_table(&mut md, &self.runs);
        floor_ratios(&mut md, &self.runs);
        if !self.awake.is_empty() {
            let _ = writeln!(md, "\n## Idle delivery with the CPUs kept awake\n");
            let _ = writeln!(
                md,
                "One subscriber, as in the first rows above, with a lowest-priority busy loop on every CPU \
                 (separate processes, yielding at once to real work): a virtual CPU that halts between \
                 messages takes tens of microseconds to wake, and these rows take that out. Their server \
                 CPU is not comparable (the spinners keep the cores' clocks and caches warm).\n"
            );
            runs_table(&mut md, &self.awake);
            if let (Some(normal), Some(awake)) = (&self.relay_floor, &self.relay_floor_awake) {
                let _ = writeln!(
                    md,
                    "\nThe machine's own floor for these rows, measured in this run: a {}-byte message sent \
                     by the load generator to a bare relay thread{} (no server: a blocking read, then a \
                     write to a second socket) and read back, {} messages at the same rate: **p50 {} µs \
                     with the CPUs kept awake** (p99 {} µs), {} µs normally. No server's idle delivery \
                     here can be faster than that.",
                    awake.message_bytes,
                    if awake.relay_pinned_to_cpu0 { " on CPU 0" } else { "" },
                    awake.messages,
                    awake.latency_us.p50,
                    awake.latency_us.p99,
                    normal.latency_us.p50,
                );
            }
        }
        if !self.saturation.is_empty() {
            let _ = writeln!(md, "\n## Saturation\n");
            let _ = writeln!(
                md,
                "{} subscribers, {:.0} deliveries/s offered for {:.0} s: more than the server can send one \
                 event per write, so events queue per connection and go out several per write. Server \
                 CPU per delivery here is the cost under load; compare the server CPU column (100% = \
                 one core) and the load generator's.\n",
                self.settings.saturation_subscribers,
                self.settings.saturation_deliveries_per_s,
                self.settings.saturation_seconds
            );
            runs_table(&mut md, &self.saturation);
        }
        if let Some(f) = &self.floor {
            let _ = writeln!(md, "\n## Kernel floor\n");
            let _ = writeln!(
                md,
                "Bare `write()` calls, no server: one thread{} writes {}-byte messages to {} loopback \
                 sockets read on the other CPU. CPU per message: **{:.2} µs at one message per \
                 write()**, {:.2} µs at ten per write(). A server sending one event per write \
                 cannot cost less than the first.",
                if f.writer_pinned_to_cpu0 { " on CPU 0" } else { "" },
                f.message_bytes,
                f.sockets,
                f.us_per_message_one_per_write,
                f.us_per_message_ten_per_write
            );
            for f in &self.paced_floors {
                let _ = writeln!(
                    md,
                    "\nPaced as the {}-subscriber rows' fan-out is (one message to each of {} sockets at \
                     once, {} times a second; the receiving side idles between bursts): **{} µs per \
                     message**.",
                    f.room,
                    f.sockets,
                    f.bursts_per_s,
                    f.us_per_message.map_or("–".into(), |us| format!("{us:.2}"))
                );
            }
            for f in &self.larger_floors {
                let _ = writeln!(
                    md,
                    "\nThe same with {} sockets, for the larger rooms' rows (as many sockets as they \
                     have subscribers, or as this process's descriptors allow with both ends in it): \
                     **{:.2} µs at one message per write()**, {:.2} µs at ten per write().",
                    f.sockets, f.us_per_message_one_per_write, f.us_per_message_ten_per_write
                );
            }
        }
        parked_floors(&mut md, &self.parked_floors, &self.runs);
        if let Some(r) = &self.relay_floor {
            let _ = writeln!(
                md,
                "\nLatency floor: a {}-byte message from the load generator through a bare relay thread{} \
                 and back, one at a time at the one-subscriber rows' rate: p50 {} µs, p99 {} µs. Two \
                 loopback hops and two wake-ups, as a publish and its delivery take, with no server.",
                r.message_bytes,
                if r.relay_pinned_to_cpu0 { " on CPU 0" } else { "" },
                r.latency_us.p50,
                r.latency_us.p99,
            );
        }
        let _ = writeln!(md, "\n## Idle subscribers\n");
        let _ = writeln!(
            md,
            "| transport | subs | server memory per subscriber | requests/s while idle | server CPU while idle | CPU per empty poll |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|");
        for i in &self.idle {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.0} | {}% | {} |",
                i.transport,
                i.subscribers,
                i.bytes_per_subscriber.map_or("–".into(), |b| format!("{:.1} KiB", b / 1024.0)),
                i.requests_in_window / i.window_s,
                opt(i.server_cpu_percent, 1),
                i.cpu_us_per_empty_poll.map_or("–".into(), |v| format!("{v:.1} µs")),
            );
        }
        if let Some(f) = &self.responder_floor {
            let _ = writeln!(
                md,
                "\nPoll floor: {} keep-alive connections, each polling every {:.0} ms (the idle short \
                 polls' request rate), answered by a bare responder{} (one event loop, a fixed answer \
                 of an empty poll's size, no HTTP library): **{} µs of CPU per request** ({} \
                 requests). An empty short poll costs any server here at least that.",
                f.connections,
                f.interval_ms,
                if f.pinned_to_cpu0 { " on CPU 0" } else { "" },
                f.cpu_us_per_request.map_or("–".into(), |us| format!("{us:.1}")),
                f.requests,
            );
        }
        if !self.stores.acked.is_empty() || !self.stores.delivery.is_empty() {
            self.stores_markdown(&mut md);
        }
        let _ = writeln!(md, "\nCharts: latency.svg, bytes.svg, cpu.svg, memory.svg (beside this file).");
        md
    }

    fn stores_markdown(&self, md: &mut String) {
        let _ = writeln!(md, "\n## Stores\n");
        let _ = writeln!(
            md,
            "Publishers in rooms of their own, each sending its next publish when the last is acked, {:.0} s per row. An ack means stored as the store stores: memory keeps nothing, SQLite has committed (group commit: one commit for everything pending).\n",
            self.settings.seconds_per_run
        );
        let _ = writeln!(
            md,
            "| store | publishers | acked publishes/s | vs memory | send→ack p50 | p99 | server CPU | server CPU µs/publish | loadgen CPU | writes/commit |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for r in &self.stores.acked {
            let memory =
                self.stores.acked.iter().find(|m| m.store == "memory" && m.publishers == r.publishers);
            let ratio =
                memory.map_or("–".into(), |m| format!("{:.0}%", 100.0 * r.acked_per_s / m.acked_per_s));
            let _ = writeln!(
                md,
                "| {} | {} | {:.0} | {} | {} | {} | {}% | {} | {}% | {} |",
                r.store,
                r.publishers,
                r.acked_per_s,
                ratio,
                us(r.ack_latency_us.p50),
                us(r.ack_latency_us.p99),
                opt(r.server_cpu_percent, 0),
                opt(r.server_cpu_percent.map(|p| p * 1e4 / r.acked_per_s), 1),
                opt(r.loadgen_cpu_percent, 0),
                opt(r.writes_per_commit, 1),
            );
        }
        for r in self.stores.acked.iter().filter(|r| !r.server_cpu_us_per_publish_by_thread.is_empty()) {
            let threads: Vec<String> = r
                .server_cpu_us_per_publish_by_thread
                .iter()
                .map(|(name, us)| format!("{name} {us:.1}"))
                .collect();
            let _ = writeln!(
                md,
                "\n{} × {} publishers, server CPU µs per publish by thread: {}.",
                r.store,
                r.publishers,
                threads.join(", ")
            );
        }
        if let Some(f) = &self.stores.sync_floor {
            let _ = writeln!(
                md,
                "\nSync floor, no store involved: {} B written in place then `fdatasync`, {} times in the bench's temp directory: {} µs of CPU and {:.0} µs (median) of wall time per sync. A durable store pays at least this per sync; group commit divides it by the writes one sync covers.",
                f.bytes_per_sync,
                f.syncs,
                opt(f.cpu_us_per_sync, 1),
                f.wall_us_p50
            );
        }
        if let Some(c) = &self.stores.cross_node {
            let _ = writeln!(
                md,
                "\nRedis, publish on one node and delivery on another (one message at a time, {} messages): p50 {}, p99 {}.",
                c.messages,
                us(c.latency_us.p50),
                us(c.latency_us.p99)
            );
        }
        if !self.stores.traffic.is_empty() {
            let _ = writeln!(
                md,
                "\nRedis traffic per node, one room spread over {} nodes, read from each node's `/metrics`:\n",
                self.stores.traffic[0].nodes
            );
            let _ = writeln!(
                md,
                "| subscribers | messages | from Redis per message, busiest node | calls to Redis per message per delivering node |"
            );
            let _ = writeln!(md, "|---:|---:|---:|---:|");
            for t in &self.stores.traffic {
                let _ = writeln!(
                    md,
                    "| {} | {} | {:.2} | {:.2} |",
                    t.subscribers,
                    t.messages,
                    t.max_announcements_per_message_per_node,
                    t.calls_per_message_per_node
                );
            }
        }
        if !self.stores.delivery.is_empty() {
            let _ = writeln!(md, "\nPublish→delivery, one WebSocket subscriber, 200 messages/s:\n");
            let _ = writeln!(md, "| store | p50 | p99 | p99.9 | delivered |");
            let _ = writeln!(md, "|---|---:|---:|---:|---:|");
            for d in &self.stores.delivery {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {}/{} |",
                    d.store,
                    us(d.latency_us.p50),
                    us(d.latency_us.p99),
                    us(d.latency_us.p999),
                    d.delivered,
                    d.expected_deliveries
                );
            }
        }
    }

    /// Writes report.json, report.md and the charts into `dir`.
    pub(crate) fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(self)?)?;
        std::fs::write(dir.join("report.md"), self.markdown())?;
        for (name, svg) in self.charts() {
            std::fs::write(dir.join(name), svg)?;
        }
        Ok(())
    }

    fn transports(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for r in &self.runs {
            if !names.contains(&r.transport) {
                names.push(r.transport.clone());
            }
        }
        names
    }

    fn charts(&self) -> Vec<(&'static str, String)> {
        let transports = self.transports();
        let sizes = &self.settings.sizes;
        let run = |t: &str, n: usize| self.runs.iter().find(|r| r.transport == t && r.subscribers == n);
        // Latency: the largest room size every transport ran, p50/p99/p99.9 per transport.
        let n = sizes.iter().rev().copied().find(|&n| transports.iter().all(|t| run(t, n).is_some()));
        let mut charts = Vec::new();
        if let Some(n) = n {
            let values = transports
                .iter()
                .map(|t| {
                    let l = &run(t, n).expect("checked").latency_us;
                    vec![l.p50 as f64 / 1000.0, l.p99 as f64 / 1000.0, l.p999 as f64 / 1000.0]
                })
                .collect();
            charts.push((
                "latency.svg",
                bar_chart(
                    &format!("Delivery latency, {n} subscribers (ms, log scale)"),
                    &transports,
                    &["p50", "p99", "p99.9"],
                    values,
                    true,
                ),
            ));
            let values = transports
                .iter()
                .map(|t| {
                    let r = run(t, n).expect("checked");
                    vec![r.bytes_to_clients_per_delivery, r.bytes_from_clients_per_delivery]
                })
                .collect();
            charts.push((
                "bytes.svg",
                bar_chart(
                    &format!("Bytes on the wire per delivered message, {n} subscribers"),
                    &transports,
                    &["server → clients", "clients → server"],
                    values,
                    false,
                ),
            ));
        }
        let size_names: Vec<String> = sizes.iter().map(|n| format!("{n} subs")).collect();
        let size_refs: Vec<&str> = size_names.iter().map(String::as_str).collect();
        let values = transports
            .iter()
            .map(|t| {
                sizes
                    .iter()
                    .map(|&n| run(t, n).and_then(|r| r.server_cpu_us_per_delivery).unwrap_or(0.0))
                    .collect()
            })
            .collect();
        charts.push((
            "cpu.svg",
            bar_chart(
                "Server CPU per delivered message (µs, log scale)",
                &transports,
                &size_refs,
                values,
                true,
            ),
        ));
        let idle_names: Vec<String> = self.idle.iter().map(|i| i.transport.clone()).collect();
        let values = self.idle.iter().map(|i| vec![i.bytes_per_subscriber.unwrap_or(0.0) / 1024.0]).collect();
        charts.push((
            "memory.svg",
            bar_chart(
                "Server memory per idle subscriber (KiB)",
                &idle_names,
                &["KiB per subscriber"],
                values,
                false,
            ),
        ));
        charts
    }
}

const COLORS: [&str; 5] = ["#7c5cff", "#22b8cf", "#f59f00", "#40c057", "#0b7285"];

/// A grouped bar chart: one group per category, one bar per series. Plain SVG, no dependency.
pub(crate) fn bar_chart(
    title: &str,
    groups: &[String],
    series: &[&str],
    values: Vec<Vec<f64>>,
    log: bool,
) -> String {
    let (width, height, left, top, bottom) = (760.0, 360.0, 70.0, 50.0, 60.0);
    let plot_h = height - top - bottom;
    let max = values.iter().flatten().copied().fold(0.0_f64, f64::max).max(1e-9);
    let min_pos = values.iter().flatten().copied().filter(|v| *v > 0.0).fold(f64::INFINITY, f64::min);
    let (lo, hi) = if log {
        let lo = min_pos.min(max).log10().floor();
        (lo, max.log10().ceil().max(lo + 1.0))
    } else {
        (0.0, max * 1.1)
    };
    let scale = |v: f64| -> f64 {
        let frac = if log { if v <= 0.0 { 0.0 } else { (v.log10() - lo) / (hi - lo) } } else { v / hi };
        frac.clamp(0.0, 1.0) * plot_h
    };
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" font-family="system-ui,sans-serif" font-size="12"><rect width="100%" height="100%" fill="#fff"/><text x="{}" y="24" text-anchor="middle" font-size="15" font-weight="600">{}</text>"##,
        width / 2.0,
        escape(title)
    );
    // Axis ticks.
    let ticks: Vec<f64> = if log {
        (lo as i32..=hi as i32).map(|e| 10f64.powi(e)).collect()
    } else {
        (0..=4).map(|i| hi * i as f64 / 4.0).collect()
    };
    for t in ticks {
        let y = top + plot_h - scale(t);
        let label = format_value(t);
        let _ = write!(
            svg,
            r##"<line x1="{left}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#e3e5ee"/><text x="{}" y="{:.1}" text-anchor="end" fill="#6b7085">{}</text>"##,
            width - 20.0,
            left - 6.0,
            y + 4.0,
            label
        );
    }
    let group_w = (width - left - 20.0) / groups.len().max(1) as f64;
    let bar_w = (group_w * 0.8) / series.len().max(1) as f64;
    for (g, name) in groups.iter().enumerate() {
        let x0 = left + g as f64 * group_w + group_w * 0.1;
        for (s, value) in values[g].iter().enumerate() {
            let h = scale(*value);
            let x = x0 + s as f64 * bar_w;
            let _ = write!(
                svg,
                r##"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="{}"><title>{}: {}</title></rect><text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10">{}</text>"##,
                top + plot_h - h,
                bar_w - 2.0,
                COLORS[s % COLORS.len()],
                escape(series[s]),
                format_value(*value),
                x + bar_w / 2.0 - 1.0,
                top + plot_h - h - 3.0,
                format_value(*value)
            );
        }
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-weight="600">{}</text>"##,
            x0 + group_w * 0.4,
            top + plot_h + 18.0,
            escape(name)
        );
    }
    for (s, name) in series.iter().enumerate() {
        let x = left + s as f64 * 150.0;
        let y = height - 18.0;
        let _ = write!(
            svg,
            r##"<rect x="{x}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{y}">{}</text>"##,
            y - 10.0,
            COLORS[s % COLORS.len()],
            x + 16.0,
            escape(name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn format_value(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Each long-poll floor, with the long-poll row it stands beside against it (server CPU per
/// request, since a request is what the floor answers).
fn parked_floors(md: &mut String, floors: &[super::floor::ParkedFloor], runs: &[Run]) {
    for f in floors {
        let quartet = runs
            .iter()
            .find(|r| r.transport == "long-poll" && r.subscribers == f.room)
            .and_then(Run::server_cpu_us_per_request);
        let against = match (quartet, f.cpu_us_per_answer) {
            (Some(q), Some(floor)) if floor > 0.0 => {
                format!(
                    " quartet's long poll × {}: {q:.1} µs per request, **{:.2}×** the floor.",
                    f.room,
                    q / floor
                )
            }
            _ => String::new(),
        };
        let _ = writeln!(
            md,
            "\nLong-poll floor beside the {}-subscriber rows: {} keep-alive connections whose \
             requests a bare responder{} holds until a tick, {} times a second, then answers all at \
             once with a fixed answer of a long poll's size (one event); each client asks again at \
             once: **{} µs of CPU per answer** ({} answers). Any server's long poll costs here at \
             least that.{against}",
            f.room,
            f.connections,
            if f.pinned_to_cpu0 { " on CPU 0" } else { "" },
            f.ticks_per_s,
            f.cpu_us_per_answer.map_or("–".into(), |us| format!("{us:.1}")),
            f.answers,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(transport: &str, loadgen: Option<f64>) -> Run {
        Run {
            transport: transport.into(),
            subscribers: 1000,
            publish_rate_per_s: 20.0,
            messages: 100,
            server_appended: 100,
            expected_deliveries: 100_000,
            delivered: 100_000,
            complete: true,
            latency_us: Latency::default(),
            fanout_complete_us: Latency::default(),
            deliveries_per_s: 20_000.0,
            server_cpu_us_per_delivery: Some(10.0),
            server_user_us_per_delivery: Some(2.5),
            server_cpu_percent: Some(20.0),
            loadgen_cpu_percent: loadgen,
            bytes_to_clients_per_delivery: 260.0,
            bytes_from_clients_per_delivery: 0.2,
            http_requests_per_delivery: 0.0,
            empty_poll_ratio: None,
            floor_right_after_us: None,
            floor_right_before_us: None,
        }
    }

    #[test]
    fn a_run_whose_generator_saturated_says_so() {
        let (busy, calm) = (run("ws", Some(97.0)), run("sse", Some(60.0)));
        assert!(busy.generator_bound() && !calm.generator_bound());
        assert!(!run("ws", None).generator_bound(), "unknown is not bound");
        assert!(busy.summary().contains("load generator at 97 %"), "{}", busy.summary());
        assert!(!calm.summary().contains("load generator"));
        let mut md = String::new();
        runs_table(&mut md, &[busy, calm]);
        assert!(md.contains("| 97% ⚠ |"), "{md}");
        assert!(md.contains("in: ws × 1000."), "{md}");
        let mut quiet = String::new();
        runs_table(&mut quiet, &[run("sse", Some(60.0))]);
        assert!(!quiet.contains('⚠'), "{quiet}");
    }

    #[test]
    fn a_long_poll_row_is_set_against_its_floor_per_request() {
        let mut polls = run("long-poll", Some(50.0));
        polls.server_cpu_us_per_delivery = Some(20.0);
        polls.http_requests_per_delivery = 0.8;
        polls.empty_poll_ratio = Some(0.0);
        assert_eq!(polls.server_cpu_us_per_request(), Some(25.0));
        assert_eq!(run("ws", None).server_cpu_us_per_request(), None, "a stream has no requests");
        let floor = |room| super::super::floor::ParkedFloor {
            room,
            connections: room,
            ticks_per_s: 20.0,
            answers: 1000,
            cpu_us_per_answer: Some(10.0),
            pinned_to_cpu0: true,
        };
        let mut md = String::new();
        parked_floors(&mut md, &[floor(1000), floor(10_000)], &[run("ws", None), polls]);
        assert!(md.contains("**10.0 µs of CPU per answer**"), "{md}");
        assert!(md.contains("long poll × 1000: 25.0 µs per request, **2.50×** the floor."), "{md}");
        assert_eq!(md.matches("the floor.").count(), 1, "no row of 10 000 to set against it: {md}");
    }

    #[test]
    fn a_row_with_a_floor_beside_it_is_given_its_ratio() {
        let mut measured = run("ws", Some(50.0));
        measured.floor_right_before_us = Some(6.0);
        measured.floor_right_after_us = Some(10.0);
        let mut after_only = run("socketio", Some(50.0));
        after_only.floor_right_after_us = Some(5.0);
        let mut md = String::new();
        floor_ratios(&mut md, &[run("sse", Some(50.0)), measured, after_only]);
        // 10 µs per delivery, 2.5 of them in the server's code: 7.5 in the kernel's; against
        // the mean of the floors before and after (8), or the one measured.
        assert!(md.contains("| ws | 1000 | 10.00 | 2.50 | 7.50 | 6.00 / 10.00 | **1.25×** |"), "{md}");
        assert!(md.contains("| socketio | 1000 | 10.00 | 2.50 | 7.50 | – / 5.00 | **2.00×** |"), "{md}");
        assert!(!md.contains("| sse |"), "a row without a floor has no ratio: {md}");
        let mut none = String::new();
        floor_ratios(&mut none, &[run("sse", None)]);
        assert!(none.is_empty(), "{none}");
    }
}
