//! `quartet soak`: many clients over the four transports for a long time, to see whether the
//! server's memory, descriptors and latency level off.
//!
//! It starts its own `quartet serve` (like the bench: pinned to CPU 0, the load on CPU 1), spreads
//! `--clients` over `--rooms` rooms and the transports round robin, and publishes `--rate`
//! messages per second round robin over the rooms. Every `--sample-seconds` it prints one row:
//! the server's resident memory and open descriptors (from /proc), its CPU, the deliveries and
//! their latency (from the publish's scheduled time to the client) in that window, and the
//! clients' errors and resumes so far. At the end the table goes to `--out` as Markdown, with the
//! first and last windows side by side.
//!
//! A client whose connection fails resumes from its cursor, like any client; a resume is counted,
//! a client that cannot resume is an error. Nothing here is timed by the test suite: the figures
//! are for `docs/operations.md`.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::StreamExt as _;
use hdrhistogram::Histogram;
use quartet_client::{Client, Command, Frame, Options, Reply, Scope, TransportKind};
use serde_json::json;

use crate::bench::server::{self, ServerUnderTest, scrape};

/// Connections opened at once while the clients arrive.
const CONNECT_CONCURRENCY: usize = 128;

/// Rooms one publisher may join (the server's limit per client).
const ROOMS_PER_PUBLISHER: usize = quartet_protocol::limits::MAX_ROOMS_PER_CLIENT;

/// Flags of `quartet soak`.
#[derive(clap::Args, Debug)]
pub(crate) struct SoakArgs {
    /// Clients, spread over the transports round robin.
    #[arg(long, default_value_t = 10_000)]
    clients: usize,
    /// How long the load runs after every client is connected, in minutes.
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// Rooms; each client is in one (clients / rooms per room).
    #[arg(long, default_value_t = 100)]
    rooms: usize,
    /// Messages per second over all rooms (each goes to every client of its room).
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Seconds per row of the table.
    #[arg(long, default_value_t = 30.0)]
    sample_seconds: f64,
    /// Transports to use, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "short-poll,long-poll,sse,ws")]
    transports: Vec<TransportKind>,
    /// Short-poll interval, in ms.
    #[arg(long, default_value_t = 1000)]
    poll_interval_ms: u64,
    /// The server's store: `memory` or `sqlite:PATH`.
    #[arg(long, default_value = "memory")]
    store: String,
    /// Also write the table here, as Markdown.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Soak the server of another quartet executable.
    #[arg(long, value_name = "PATH")]
    server_exe: Option<PathBuf>,
}

/// What the clients report into. Each message carries `t`, the µs after `start` it was due to
/// be sent, so its latency is measured from the schedule (open loop), not from a polite send.
struct Tally {
    start: Instant,
    /// Latency of the current window per transport, in [`TransportKind::ALL`] order (taken and
    /// reset at each row).
    latency: [Mutex<Histogram<u64>>; 4],
    delivered: AtomicU64,
    resumes: AtomicU64,
    errors: AtomicU64,
}

impl Tally {
    fn record(&self, kind: TransportKind, frames: &[Frame]) {
        let now = Instant::now();
        let slot = TransportKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        let mut latency = self.latency[slot].lock().expect("histogram lock");
        for event in frames.iter().filter_map(Frame::as_event).filter(|e| e.event == "soak") {
            let Some(t) = event.data.get("t").and_then(|t| t.as_u64()) else { continue };
            let scheduled = self.start + Duration::from_micros(t);
            latency.saturating_record(now.saturating_duration_since(scheduled).as_micros().max(1) as u64);
            self.delivered.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What a row measures over its window: the server's CPU and the deliveries since it opened.
struct Window {
    opened: Instant,
    cpu_us: Option<u64>,
    delivered: u64,
}

impl Window {
    fn open(pid: u32, tally: &Tally) -> Window {
        Window {
            opened: Instant::now(),
            cpu_us: server::process_cpu_us(pid),
            delivered: tally.delivered.load(Ordering::Relaxed),
        }
    }

    async fn close(self, pid: u32, url: &str, tally: &Tally, start: Instant) -> anyhow::Result<Sample> {
        let seconds = self.opened.elapsed().as_secs_f64();
        let cpu = server::process_cpu_us(pid).zip(self.cpu_us).map_or(0.0, |(b, a)| (b - a) as f64);
        let mut p99_ms = [None; 4];
        for (slot, latency) in tally.latency.iter().enumerate() {
            let window = std::mem::replace(&mut *latency.lock().expect("histogram lock"), histogram());
            p99_ms[slot] = (!window.is_empty()).then(|| window.value_at_quantile(0.99) as f64 / 1000.0);
        }
        let metrics = scrape(url).await?;
        Ok(Sample {
            at_s: start.elapsed().as_secs_f64(),
            clients: metrics.get("quartet_clients").copied().unwrap_or(0.0),
            rss_mib: server::process_rss_bytes(pid).unwrap_or(0) as f64 / (1024.0 * 1024.0),
            fds: open_fds(pid),
            cpu_percent: cpu / 1e4 / seconds,
            deliveries_per_s: (tally.delivered.load(Ordering::Relaxed) - self.delivered) as f64 / seconds,
            p99_ms,
            resumes: tally.resumes.load(Ordering::Relaxed),
            errors: tally.errors.load(Ordering::Relaxed),
        })
    }
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| dir.count())
}

/// One row of the table.
struct Sample {
    at_s: f64,
    clients: f64,
    rss_mib: f64,
    fds: usize,
    cpu_percent: f64,
    deliveries_per_s: f64,
    /// Per transport, in [`TransportKind::ALL`] order; `None` for one not in the soak.
    p99_ms: [Option<f64>; 4],
    resumes: u64,
    errors: u64,
}

impl Sample {
    fn row(&self) -> String {
        let p99: Vec<String> =
            self.p99_ms.iter().map(|p| p.map_or_else(|| "–".to_owned(), |ms| format!("{ms:.1}"))).collect();
        format!(
            "| {:>5.0} | {:>7.0} | {:>7.1} | {:>6} | {:>5.1} | {:>8.0} | {:>8} | {:>8} | {:>7} | {:>7} | {:>7} | {:>6} |",
            self.at_s,
            self.clients,
            self.rss_mib,
            self.fds,
            self.cpu_percent,
            self.deliveries_per_s,
            p99[0],
            p99[1],
            p99[2],
            p99[3],
            self.resumes,
            self.errors
        )
    }

    /// The worst p99 of the transports that stream or hold requests (not short polling, whose
    /// latency is its interval).
    fn push_p99(&self) -> f64 {
        self.p99_ms[1..].iter().flatten().copied().fold(0.0, f64::max)
    }
}

const HEADER: &str = "| at (s) | clients | RSS MiB |    fds | CPU % | deliv./s | p99 ms short poll | p99 ms long poll | p99 ms SSE | p99 ms WS | resumes | errors |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|";

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// Runs the soak; call from a fresh process (it pins itself).
pub(crate) fn run(args: SoakArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.clients > 0 && args.rooms > 0, "--clients and --rooms must be at least 1");
    anyhow::ensure!(
        args.rate > 0.0 && args.sample_seconds > 0.0,
        "--rate and --sample-seconds must be positive"
    );
    anyhow::ensure!(!args.transports.is_empty(), "--transports names none");
    server::cpu_count(); // read before pinning
    if let Some(exe) = &args.server_exe {
        anyhow::ensure!(exe.is_file(), "--server-exe {}: no such file", exe.display());
        let _ = server::SERVER_EXE.set(exe.clone());
    }
    server::pin_self_off_cpu0();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(soak(args))
}

async fn soak(args: SoakArgs) -> anyhow::Result<()> {
    let server = ServerUnderTest::start_with(&["--store".into(), args.store.clone()])?;
    let url = server.url.clone();
    let pid = server.pid();
    let http = reqwest::Client::builder().pool_max_idle_per_host(usize::MAX).build()?;
    let options = Options {
        poll_interval: Duration::from_millis(args.poll_interval_ms),
        long_poll_wait: Duration::from_secs(25),
    };
    let rooms: Vec<String> = (0..args.rooms).map(|r| format!("soak-{r}")).collect();
    eprintln!(
        "soak: {} clients over {} in {} rooms, {} messages/s, {} min, server {url} (pid {pid})",
        args.clients,
        args.transports.iter().map(|t| t.name()).collect::<Vec<_>>().join(", "),
        args.rooms,
        args.rate,
        args.minutes
    );

    // The clients arrive.
    let tally = Arc::new(Tally {
        start: Instant::now(),
        latency: std::array::from_fn(|_| Mutex::new(histogram())),
        delivered: AtomicU64::new(0),
        resumes: AtomicU64::new(0),
        errors: AtomicU64::new(0),
    });
    let connected = AtomicU64::new(0);
    let clients: Vec<anyhow::Result<Client>> = futures_util::stream::iter(0..args.clients)
        .map(|i| {
            let (http, url, options, connected) = (http.clone(), &url, options.clone(), &connected);
            let kind = args.transports[i % args.transports.len()];
            let room = rooms[i % rooms.len()].clone();
            async move {
                let mut client = Client::connect_via(http, url, &format!("soak{i}"), kind, options).await?;
                let reply = client.command(Command::join(&room)?).await?;
                anyhow::ensure!(matches!(reply, Reply::Joined { .. }), "join refused: {reply:?}");
                let done = connected.fetch_add(1, Ordering::Relaxed) + 1;
                if done % 1000 == 0 {
                    eprintln!("soak: {done}/{} clients connected", args.clients);
                }
                Ok(client)
            }
        })
        .buffer_unordered(CONNECT_CONCURRENCY)
        .collect()
        .await;
    let mut readers = Vec::with_capacity(clients.len());
    for client in clients {
        let mut client = client.context("a client could not connect")?;
        let tally = tally.clone();
        readers.push(tokio::spawn(async move {
            loop {
                match client.receive().await {
                    Ok(frames) => tally.record(client.kind(), &frames),
                    Err(error) if error.code().is_some() => {
                        // The server ended this client: counted, not retried.
                        eprintln!("soak: a client stopped: {error}");
                        tally.errors.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    Err(_) => {
                        // The connection failed: resume from the cursor, as any client would.
                        tally.resumes.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        let kind = client.kind();
                        if client.switch(kind).await.is_err() {
                            tally.errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        }));
    }

    // The publishers: WebSockets, each in up to 64 rooms; `to: others` keeps their sockets quiet.
    let mut publishers = Vec::new();
    for (p, chunk) in rooms.chunks(ROOMS_PER_PUBLISHER).enumerate() {
        let mut publisher = Client::connect_via(
            http.clone(),
            &url,
            &format!("publisher{p}"),
            TransportKind::Ws,
            Options::default(),
        )
        .await?;
        for room in chunk {
            publisher.command(Command::join(room)?).await?;
        }
        publishers.push(publisher);
    }
    let run_for = Duration::from_secs_f64(args.minutes * 60.0);
    let sample_every = Duration::from_secs_f64(args.sample_seconds);
    let pad = "x".repeat(76);
    let start = Instant::now();
    let offset = start.duration_since(tally.start);
    let mut samples: Vec<Sample> = Vec::new();
    let mut i: u64 = 0;
    let mut next_sample = start + sample_every;
    let mut window = Window::open(pid, &tally);
    eprintln!("{HEADER}");
    while start.elapsed() < run_for {
        let due = (start.elapsed().as_secs_f64() * args.rate) as u64;
        let mut batches: Vec<Vec<Command>> = (0..publishers.len()).map(|_| Vec::new()).collect();
        while i < due {
            let r = (i % rooms.len() as u64) as usize;
            let t = (offset + Duration::from_secs_f64(i as f64 / args.rate)).as_micros() as u64;
            let command =
                Command::publish(&rooms[r], "soak", &json!({ "t": t, "pad": pad }))?.to(Scope::Others);
            batches[r / ROOMS_PER_PUBLISHER].push(command);
            i += 1;
        }
        for (publisher, commands) in publishers.iter_mut().zip(batches) {
            for chunk in commands.chunks(quartet_protocol::limits::MAX_COMMANDS_PER_REQUEST) {
                for reply in publisher.commands(chunk).await? {
                    anyhow::ensure!(matches!(reply, Reply::Ack { .. }), "a publish was refused: {reply:?}");
                }
            }
        }
        if Instant::now() >= next_sample {
            let sample = window.close(pid, &url, &tally, start).await?;
            eprintln!("{}", sample.row());
            samples.push(sample);
            window = Window::open(pid, &tally);
            next_sample += sample_every;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(readers);
    let report = report(&args, &samples);
    println!("{report}");
    if let Some(out) = &args.out {
        std::fs::write(out, &report).with_context(|| format!("cannot write {}", out.display()))?;
        eprintln!("soak: table written to {}", out.display());
    }
    let _ = std::io::stdout().flush();
    Ok(())
}

/// The table, with the first and last windows compared.
fn report(args: &SoakArgs, samples: &[Sample]) -> String {
    let mut out = format!(
        "quartet soak: {} clients ({}) in {} rooms, {} messages/s, {} min, store {}\n\n{HEADER}\n",
        args.clients,
        args.transports.iter().map(|t| t.name()).collect::<Vec<_>>().join(", "),
        args.rooms,
        args.rate,
        args.minutes,
        args.store
    );
    for sample in samples {
        out.push_str(&sample.row());
        out.push('\n');
    }
    if let (Some(first), Some(last)) = (samples.first(), samples.last()) {
        out.push_str(&format!(
            "\nfirst → last window: RSS {:.1} → {:.1} MiB, fds {} → {}, worst p99 of long poll, SSE and WebSocket {:.1} → {:.1} ms, {} resumes, {} errors\n",
            first.rss_mib,
            last.rss_mib,
            first.fds,
            last.fds,
            first.push_p99(),
            last.push_p99(),
            last.resumes,
            last.errors
        ));
    }
    out
}
