//! `quartet bench`: the four transports side by side on the same core, measured the same way.
//!
//! For each transport and room size it starts a fresh server (pinned to CPU 0), fills a room
//! with subscribers from this process (pinned to every other CPU, one runtime thread per CPU
//! unless `--loadgen-threads` says otherwise), publishes at a fixed
//! rate for a fixed time, and measures delivery latency from the scheduled send time, server
//! CPU per delivery (/proc), bytes on the wire and HTTP requests per delivery (the server's own
//! socket-level counters), and the load generator's own CPU. Then it measures idle subscribers:
//! server memory per subscriber and the cost of staying connected. See docs/benchmarks.md.

mod floor;
mod load;
mod report;
pub(crate) mod server;
mod socketio;
mod store;

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use quartet_client::{Options, TransportKind};

use report::{Machine, Report, Settings};
use socketio::Technique;

/// Highest publish rate of a delivery run, in messages per second: every message must stay in
/// the room's ring (4096 events) until even a short poller a second behind has read it.
const MAX_PUBLISH_RATE: f64 = 200.0;

/// Highest publish rate of a saturation run, in messages per second (3 s: 3000 messages fit).
const MAX_SATURATION_RATE: f64 = 1000.0;

/// Publishing time of a saturation run: short enough that every message stays in the room's
/// ring (4096 events) even for a subscriber far behind, so nothing is evicted.
const SATURATION_SECONDS: f64 = 3.0;

/// Flags of `quartet bench`.
#[derive(clap::Args, Debug)]
pub(crate) struct BenchArgs {
    /// A short run (under 2 minutes): room sizes 1 and 100, 2 s each, 1000 idle subscribers.
    #[arg(long)]
    quick: bool,
    /// Transports to measure, comma-separated: the four, and `socketio` (Socket.IO clients on
    /// Engine.IO's WebSocket).
    #[arg(long, value_delimiter = ',', default_value = "short-poll,long-poll,sse,ws,socketio")]
    transports: Vec<Technique>,
    /// Where to write report.json, report.md and the SVG charts.
    #[arg(long, default_value = "bench-report")]
    out: PathBuf,
    /// Room sizes to measure [default: 1,100,1000,10000; quick: 1,100].
    #[arg(long, value_delimiter = ',')]
    sizes: Option<Vec<usize>>,
    /// Seconds of publishing per run [default: 5; quick: 2].
    #[arg(long)]
    seconds: Option<f64>,
    /// Idle subscribers for the memory measurement [default: 10000; quick: 1000]; 0 skips it.
    #[arg(long)]
    idle: Option<usize>,
    /// Deliveries per second each run aims for; the publish rate is this divided by the room
    /// size, between 2 and 200 messages per second.
    #[arg(long, default_value_t = 20_000.0)]
    deliveries_per_second: f64,
    /// Short-poll interval of the subscribers, in ms.
    #[arg(long, default_value_t = 1000)]
    poll_interval_ms: u64,
    /// Deliveries per second offered in the saturation runs (WebSocket and SSE, 3 s each, at
    /// most 1000 messages/s); 0 skips them.
    #[arg(long, default_value_t = 1_000_000.0)]
    saturation: f64,
    /// Room size of the saturation runs.
    #[arg(long, default_value_t = 1000)]
    saturation_subscribers: usize,
    /// Stores to compare (acked publishes/s with 1 and 100 publishers, publish→delivery):
    /// `memory`, `sqlite`, `redis` (with `redis`: cross-node latency and Redis traffic per node
    /// too); empty skips them (do that with a `--server-exe` older than them).
    #[arg(long, value_delimiter = ',', default_value = "memory,sqlite,redis")]
    stores: Vec<String>,
    /// The Redis the `redis` store runs use; every run has a key prefix of its own, deleted
    /// after it. A store run on `redis` is skipped (with a line saying so) when none answers.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// Also measure one subscriber per transport (short polling aside) with every CPU kept from
    /// idling by a lowest-priority busy loop: latency without the wake-up of halted CPUs.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    awake: bool,
    /// Subscribers of the Redis traffic run (one room over three nodes), against one.
    #[arg(long, default_value_t = 999)]
    fanout_subscribers: usize,
    /// Publisher counts of the store runs.
    #[arg(long, value_delimiter = ',', default_value = "1,100")]
    store_publishers: Vec<usize>,
    /// Threads of the load generator's runtime (default: one per CPU it has, i.e. every CPU but
    /// the server's). One thread runs a current-thread runtime; more, a multi-thread one.
    #[arg(long)]
    loadgen_threads: Option<usize>,
    /// Measure the server of another quartet executable (same load generator), e.g. an older
    /// build, for before/after comparisons.
    #[arg(long, value_name = "PATH")]
    server_exe: Option<PathBuf>,
}

/// The kernel floor (µs per write, one message each) over `sockets`, measured right `when`
/// (`before` or `after`) the row `row`; `unit` is its share of the run's progress.
async fn floor_beside(
    progress: &Progress,
    when: &str,
    row: &str,
    sockets: usize,
    unit: f64,
) -> anyhow::Result<f64> {
    progress.begin(format!("kernel floor right {when} {row}: {sockets} sockets"));
    let floor = floor::measure(sockets).await?.us_per_message_one_per_write;
    progress.finish_unit(unit);
    Ok(floor)
}

/// Progress on stderr: which transport, which step, and an estimate of the time left.
pub(crate) struct Progress {
    label: std::cell::RefCell<String>,
    started: Instant,
    done_units: std::cell::Cell<f64>,
    total_units: f64,
    last: std::cell::Cell<Option<Instant>>,
}

impl Progress {
    fn new(total_units: f64) -> Progress {
        Progress {
            label: Default::default(),
            started: Instant::now(),
            done_units: Default::default(),
            total_units,
            last: Default::default(),
        }
    }

    fn begin(&self, label: String) {
        if !std::io::stderr().is_terminal() {
            eprintln!("… {label}");
        }
        *self.label.borrow_mut() = label;
        self.last.set(None);
        self.step("starting");
    }

    fn finish_unit(&self, units: f64) {
        self.done_units.set(self.done_units.get() + units);
    }

    /// Prints at most every 250 ms so the terminal keeps up; only to a terminal (a log file
    /// gets the one-line results instead).
    pub(crate) fn step(&self, what: &str) {
        if !std::io::stderr().is_terminal() {
            return;
        }
        let now = Instant::now();
        if self.last.get().is_some_and(|t| now.duration_since(t) < Duration::from_millis(250)) {
            return;
        }
        self.last.set(Some(now));
        let done = self.done_units.get();
        let eta = if done > 0.0 {
            let per_unit = self.started.elapsed().as_secs_f64() / done;
            format!("ETA {:.0} s", per_unit * (self.total_units - done).max(0.0))
        } else {
            "ETA …".into()
        };
        eprint!(
            "\r\x1b[2K[{:>3.0}%] {} — {what} ({eta})",
            100.0 * done / self.total_units,
            self.label.borrow()
        );
        let _ = std::io::stderr().flush();
    }

    fn line(&self, text: &str) {
        eprintln!("\r\x1b[2K{text}");
    }
}

fn read_first_line(path: &str, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
}

/// Runs the bench; call from a fresh process (it pins itself).
pub(crate) fn run(args: BenchArgs) -> anyhow::Result<()> {
    server::cpu_count(); // read before pinning
    if let Some(exe) = &args.server_exe {
        anyhow::ensure!(exe.is_file(), "--server-exe {}: no such file", exe.display());
        let _ = server::SERVER_EXE.set(exe.clone());
    }
    // Pin before the runtime exists, so every thread it makes inherits the generator's CPUs.
    let loadgen_pinned = server::pin_self_off_cpu0();
    let threads = args.loadgen_threads.unwrap_or_else(server::loadgen_cpus).max(1);
    let _ = server::LOADGEN_THREADS.set(threads);
    let runtime = if threads == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()?
    };
    runtime.block_on(run_async(args, loadgen_pinned))
}

async fn run_async(args: BenchArgs, loadgen_pinned: bool) -> anyhow::Result<()> {
    let sizes = args
        .sizes
        .clone()
        .unwrap_or_else(|| if args.quick { vec![1, 100] } else { vec![1, 100, 1000, 10_000] });
    let seconds = args.seconds.unwrap_or(if args.quick { 2.0 } else { 5.0 });
    let idle_n = args.idle.unwrap_or(if args.quick { 1000 } else { 10_000 });
    let poll_interval = Duration::from_millis(args.poll_interval_ms);
    let options = Options { poll_interval, long_poll_wait: Duration::from_secs(25) };
    // One HTTP client (and connection pool) per measurement, dropped after it: pooled
    // connections to a finished run's server would otherwise pile up as open descriptors.
    let http = || reqwest::Client::builder().pool_max_idle_per_host(usize::MAX).build();
    // Units for the ETA: a run ~ seconds + subscribers/2000 s; an idle phase ~ 5 s + n/2000 s.
    let unit = |n: usize| seconds + n as f64 / 2000.0 + 1.0;
    // A room of `n` subscribers gets this many events a second (its rows and the floors paced
    // like them).
    let rate_for = |n: usize| (args.deliveries_per_second / n as f64).clamp(2.0, MAX_PUBLISH_RATE);
    let saturated = |kind: Technique| {
        args.saturation > 0.0 && matches!(kind, Technique::Native(TransportKind::Ws | TransportKind::Sse))
    };
    // A kernel floor before and after each row that writes one event per write to many
    // sockets.
    let one_event_per_write = |kind: Technique| {
        matches!(kind, Technique::Native(TransportKind::Ws | TransportKind::Sse) | Technique::SocketIo)
    };
    let floor_unit = |sockets: usize| 2.0 + sockets as f64 / 2000.0;
    // A long-poll floor beside each long-poll row of a large room.
    let long_poll_floor_sizes: Vec<usize> =
        if args.transports.contains(&Technique::Native(TransportKind::LongPoll)) {
            sizes.iter().copied().filter(|&n| n >= floor::SOCKETS).collect()
        } else {
            Vec::new()
        };
    let floors_beside: f64 = args.transports.iter().filter(|&&k| one_event_per_write(k)).count() as f64
        * sizes
            .iter()
            .filter(|&&n| n >= floor::SOCKETS)
            .map(|&n| 2.0 * floor_unit(n.min(floor::max_sockets())))
            .sum::<f64>();
    let saturation_unit = SATURATION_SECONDS + args.saturation_subscribers as f64 / 2000.0 + 3.0;
    let total: f64 = floors_beside
        + args.transports.len() as f64
        * (sizes.iter().map(|&n| unit(n)).sum::<f64>()
            + if idle_n > 0 { 5.0 + idle_n as f64 / 2000.0 } else { 0.0 })
        + args.transports.iter().filter(|&&k| saturated(k)).count() as f64 * saturation_unit
        + if args.awake { (args.transports.len() + 1) as f64 * unit(1) } else { 0.0 }
        // The latency floor (a relay run as long as a one-subscriber run) and the poll floor.
        + unit(1)
        + if idle_n > 0 { 6.0 + idle_n as f64 / 2000.0 } else { 0.0 }
        + long_poll_floor_sizes.iter().map(|&n| unit(n) + 2.0).sum::<f64>();
    let stores: Vec<String> = args.stores.iter().filter(|s| !s.is_empty()).cloned().collect();
    let store_unit = |publishers: usize| seconds + publishers as f64 / 500.0 + 1.0;
    let total = total
        + stores.len() as f64
            * (args.store_publishers.iter().map(|&p| store_unit(p)).sum::<f64>() + store_unit(1));
    let progress = Progress::new(total);
    let started = Instant::now();
    let mut runs = Vec::new();
    let mut idles = Vec::new();
    let mut saturation = Vec::new();
    for &kind in &args.transports {
        for &n in &sizes {
            let rate = rate_for(n);
            let beside = one_event_per_write(kind) && n >= floor::SOCKETS;
            let sockets = n.min(floor::max_sockets());
            let row = format!("{kind} × {n}");
            let floor_before = if beside {
                let floor = floor_beside(&progress, "before", &row, sockets, floor_unit(sockets)).await?;
                progress
                    .line(&format!("kernel floor right before, {sockets} sockets: {floor:.2} µs per write"));
                Some(floor)
            } else {
                None
            };
            progress.begin(row.clone());
            let shape = load::Shape {
                store: store::MEMORY.iter().map(|s| s.to_string()).collect(),
                transport: kind,
                subscribers: n,
                rate,
                seconds,
                options: options.clone(),
            };
            let mut run = load::run(&shape, &http()?, &progress).await?;
            progress.finish_unit(unit(n));
            progress.line(&run.summary());
            if beside {
                let floor = floor_beside(&progress, "after", &row, sockets, floor_unit(sockets)).await?;
                run.floor_right_before_us = floor_before;
                run.floor_right_after_us = Some(floor);
                if let (Some(beside), Some(ratio)) = (run.floor_beside(), run.against_floor()) {
                    progress.line(&format!(
                        "kernel floor right after, {sockets} sockets: {floor:.2} µs per write; {row} at {ratio:.2}× the mean of both ({beside:.2})"
                    ));
                }
            }
            runs.push(run);
        }
        if saturated(kind) {
            let n = args.saturation_subscribers;
            let rate = (args.saturation / n as f64).clamp(2.0, MAX_SATURATION_RATE);
            progress.begin(format!("{kind} × {n} saturation ({:.0} deliveries/s offered)", rate * n as f64));
            let shape = load::Shape {
                store: store::MEMORY.iter().map(|s| s.to_string()).collect(),
                transport: kind,
                subscribers: n,
                rate,
                seconds: SATURATION_SECONDS,
                options: options.clone(),
            };
            let run = load::run(&shape, &http()?, &progress).await?;
            progress.finish_unit(saturation_unit);
            progress.line(&format!("{} (saturation)", run.summary()));
            saturation.push(run);
        }
        if idle_n > 0 {
            progress.begin(format!("{kind} × {idle_n} idle"));
            let idle = load::idle(kind, idle_n, &options, &http()?, &progress).await?;
            progress.finish_unit(5.0 + idle_n as f64 / 2000.0);
            progress.line(&format!(
                "{kind:>10} × {idle_n:<6} idle: {} per subscriber, {:.0} requests/s",
                idle.bytes_per_subscriber.map_or("–".into(), |b| format!("{:.1} KiB", b / 1024.0)),
                idle.requests_in_window / idle.window_s
            ));
            idles.push(idle);
        }
    }
    let mut awake = Vec::new();
    let mut relay_floor_awake = None;
    let awake_kinds: Vec<Technique> = args
        .transports
        .iter()
        .copied()
        .filter(|&k| args.awake && k != Technique::Native(TransportKind::ShortPoll))
        .collect();
    if !awake_kinds.is_empty() {
        match server::Spinners::start() {
            None => progress.line("awake runs skipped: taskset or nice is missing"),
            Some(spinners) => {
                for &kind in &awake_kinds {
                    progress.begin(format!("{kind} × 1, CPUs kept awake"));
                    let shape = load::Shape {
                        store: store::MEMORY.iter().map(|s| s.to_string()).collect(),
                        transport: kind,
                        subscribers: 1,
                        rate: MAX_PUBLISH_RATE,
                        seconds,
                        options: options.clone(),
                    };
                    let run = load::run(&shape, &http()?, &progress).await?;
                    progress.finish_unit(unit(1));
                    progress.line(&format!("{} (CPUs kept awake)", run.summary()));
                    awake.push(run);
                }
                progress.begin("latency floor, CPUs kept awake: a bare relay on CPU 0".into());
                let floor = floor::relay(MAX_PUBLISH_RATE, seconds).await?;
                progress.line(&format!("latency floor, CPUs kept awake: p50 {} µs", floor.latency_us.p50));
                progress.finish_unit(unit(1));
                relay_floor_awake = Some(floor);
                drop(spinners);
            }
        }
    }
    let mut store_report = report::Stores::default();
    let scratch = std::env::temp_dir();
    for name in &stores {
        if name == "redis" && !store::redis_answers(&args.redis_url).await {
            progress.line(&format!("redis: skipped, nothing answers at {}", args.redis_url));
            continue;
        }
        for &publishers in &args.store_publishers {
            progress.begin(format!("{name}: {publishers} publishers, acked publishes/s"));
            let spec = store::Spec::new(name, &scratch, &args.redis_url, &format!("acked{publishers}"))?;
            let run = store::acked(name, &spec.args, publishers, seconds, &http()?, &progress).await;
            spec.remove().await;
            let run = run?;
            progress.finish_unit(store_unit(publishers));
            let groups =
                run.writes_per_commit.map(|g| format!(", {g:.1} writes per commit")).unwrap_or_default();
            progress.line(&format!(
                "{name:>10} × {publishers:<4} publishers: {:.0} acked publishes/s, send→ack p50 {} µs p99 {} µs{groups}",
                run.acked_per_s, run.ack_latency_us.p50, run.ack_latency_us.p99
            ));
            store_report.acked.push(run);
        }
        progress.begin(format!("{name}: publish→delivery"));
        let spec = store::Spec::new(name, &scratch, &args.redis_url, "delivery")?;
        let run = store::delivery(name, &spec.args, seconds, &http()?, &progress).await;
        spec.remove().await;
        let run = run?;
        progress.finish_unit(store_unit(1));
        progress.line(&format!(
            "{name:>10} publish→delivery: p50 {} µs p99 {} µs ({}/{} delivered)",
            run.latency_us.p50, run.latency_us.p99, run.delivered, run.expected_deliveries
        ));
        store_report.delivery.push(run);
        if name == "redis" {
            progress.begin("redis: cross-node publish→delivery".into());
            let spec = store::Spec::new(name, &scratch, &args.redis_url, "cross")?;
            let cross = store::cross_node(&spec.args, seconds, &http()?, &progress).await;
            spec.remove().await;
            let cross = cross?;
            progress.line(&format!(
                "     redis cross-node publish→delivery: p50 {} µs p99 {} µs",
                cross.latency_us.p50, cross.latency_us.p99
            ));
            store_report.cross_node = Some(cross);
            for subscribers in [1usize, args.fanout_subscribers] {
                progress
                    .begin(format!("redis: Redis traffic per node, {subscribers} subscribers on 3 nodes"));
                let spec =
                    store::Spec::new(name, &scratch, &args.redis_url, &format!("fanout{subscribers}"))?;
                let traffic = store::traffic(&spec.args, subscribers, &http()?, &progress).await;
                spec.remove().await;
                let traffic = traffic?;
                progress.line(&format!(
                    "     redis, {subscribers} subscribers on 3 nodes: per message, the busiest node got {:.2} messages from Redis; delivering nodes made {:.2} calls to it",
                    traffic.max_announcements_per_message_per_node, traffic.calls_per_message_per_node
                ));
                store_report.traffic.push(traffic);
            }
        }
    }
    if stores.iter().any(|s| s == "sqlite") {
        progress.begin("sync floor: write + fdatasync, no store".into());
        let sync = floor::measure_sync(&scratch).await?;
        progress.line(&format!(
            "sync floor: {} µs of CPU, {:.0} µs of wall time per write + fdatasync",
            sync.cpu_us_per_sync.map_or("–".into(), |us| format!("{us:.1}")),
            sync.wall_us_p50
        ));
        store_report.sync_floor = Some(sync);
    }
    let mut floors = Vec::new();
    // The main floor, then one per larger room of the run, at its size.
    let larger = sizes.iter().map(|&n| n.min(floor::max_sockets())).filter(|&n| n > floor::SOCKETS);
    let floor_sizes = std::iter::once(floor::SOCKETS).chain(larger);
    for sockets in floor_sizes {
        progress.begin(format!("kernel floor: bare write() calls to {sockets} loopback sockets"));
        let floor = floor::measure(sockets).await?;
        progress.line(&format!(
            "kernel floor, {sockets} sockets: {:.2} µs per message at one per write(), {:.2} µs at ten per write()",
            floor.us_per_message_one_per_write, floor.us_per_message_ten_per_write
        ));
        floors.push(floor);
    }
    let floor = floors.remove(0);
    // The same writes in bursts, as the rooms of 1 000 and more get them: one message to every
    // socket at once, at the row's publish rate.
    let mut paced_floors = Vec::new();
    for &n in sizes.iter().filter(|&&n| n >= floor::SOCKETS) {
        let rate = rate_for(n);
        let sockets = n.min(floor::max_sockets());
        progress
            .begin(format!("paced kernel floor: {sockets} sockets, a write to each {rate} times a second"));
        let paced = floor::measure_paced(n, sockets, rate, seconds).await?;
        progress.line(&format!(
            "paced kernel floor, {sockets} sockets at {rate} bursts/s: {} µs per message",
            paced.us_per_message.map_or("–".into(), |us| format!("{us:.2}"))
        ));
        paced_floors.push(paced);
    }
    let mut parked_floors = Vec::new();
    for &n in &long_poll_floor_sizes {
        let rate = rate_for(n);
        progress.begin(format!("long-poll floor: {n} parked requests answered {rate} times a second"));
        let parked = floor::parked(n, rate, seconds).await?;
        progress.finish_unit(unit(n) + 2.0);
        progress.line(&format!(
            "long-poll floor, {} connections at {rate} ticks/s: {} µs of CPU per answer ({} answers)",
            parked.connections,
            parked.cpu_us_per_answer.map_or("–".into(), |us| format!("{us:.1}")),
            parked.answers
        ));
        parked_floors.push(parked);
    }
    progress.begin("latency floor: a bare relay on CPU 0, one message at a time".into());
    let relay_floor = floor::relay(MAX_PUBLISH_RATE, seconds).await?;
    progress.finish_unit(unit(1));
    progress.line(&format!(
        "latency floor: p50 {} µs, p99 {} µs from send to arrival through a bare relay",
        relay_floor.latency_us.p50, relay_floor.latency_us.p99
    ));
    let responder_floor =
        if idle_n > 0 && args.transports.contains(&Technique::Native(TransportKind::ShortPoll)) {
            progress.begin(format!("poll floor: {idle_n} pollers against a bare responder on CPU 0"));
            let responder = floor::responder(idle_n, poll_interval).await?;
            progress.finish_unit(6.0 + idle_n as f64 / 2000.0);
            progress.line(&format!(
                "poll floor: {} µs of CPU per request ({} requests)",
                responder.cpu_us_per_request.map_or("–".into(), |us| format!("{us:.1}")),
                responder.requests
            ));
            Some(responder)
        } else {
            None
        };
    let report = Report {
        quartet_version: env!("CARGO_PKG_VERSION"),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        started_unix: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        machine: Machine {
            cpus: server::cpu_count(),
            cpu_model: read_first_line("/proc/cpuinfo", "model name").unwrap_or_else(|| "unknown".into()),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map_or("unknown".into(), |k| k.trim().to_owned()),
            server_pinned_to_cpu0: server::server_pinned(),
            loadgen_pinned_off_cpu0: loadgen_pinned,
            loadgen_cpus: server::loadgen_cpus(),
            loadgen_threads: server::LOADGEN_THREADS.get().copied().unwrap_or(1),
            build: if cfg!(debug_assertions) { "debug" } else { "release" },
        },
        settings: Settings {
            quick: args.quick,
            sizes,
            seconds_per_run: seconds,
            target_deliveries_per_s: args.deliveries_per_second,
            payload_bytes: load::PAD + 24,
            short_poll_interval_ms: args.poll_interval_ms,
            long_poll_wait_ms: 25_000,
            idle_subscribers: idle_n,
            saturation_deliveries_per_s: args.saturation,
            saturation_subscribers: args.saturation_subscribers,
            saturation_seconds: SATURATION_SECONDS,
        },
        runs,
        saturation,
        awake,
        floor: Some(floor),
        larger_floors: floors,
        paced_floors,
        relay_floor: Some(relay_floor),
        relay_floor_awake,
        responder_floor,
        parked_floors,
        idle: idles,
        stores: store_report,
        wall_seconds: started.elapsed().as_secs_f64(),
    };
    report.write(&args.out)?;
    progress.line(&format!("report written to {} (report.json, report.md, *.svg)", args.out.display()));
    let stopped = load::SUBSCRIBER_ERRORS.load(std::sync::atomic::Ordering::Relaxed);
    if stopped > 0 {
        progress.line(&format!("{stopped} subscribers stopped on an error during the bench (see above)"));
    }
    let stores_complete = report.stores.delivery.iter().all(|d| d.delivered == d.expected_deliveries);
    if report.runs.iter().chain(&report.saturation).any(|r| !r.complete) || !stores_complete {
        anyhow::bail!("some runs did not deliver every message; see report.md");
    }
    Ok(())
}
