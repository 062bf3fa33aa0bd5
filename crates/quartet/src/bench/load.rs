//! The load generator: many subscribers in one room, an open-loop publisher, and the
//! measurements around them. One current-thread runtime drives every connection.
//!
//! Latency is measured from each message's *scheduled* send time (open loop): if the publisher
//! or the server falls behind, the delay shows up in the numbers instead of being hidden by a
//! publisher that waits politely.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hdrhistogram::Histogram;
use quartet_client::{Client, Command, Frame, Options, Reply, Scope, TransportKind};
use serde_json::json;
use tokio::task::JoinHandle;

use super::Progress;
use super::report::{Idle, Latency, Run};
use super::server::{ServerUnderTest, process_cpu_us, scrape};
use super::socketio::{self, Technique};

/// Connections opened at once while building a room.
const CONNECT_CONCURRENCY: usize = 128;

/// Bytes of the `pad` in each message, so the payload (`data`) is about 100 bytes.
pub(crate) const PAD: usize = 76;

/// Subscribers that stopped on an error, over the whole bench (reported, never hidden).
pub(crate) static SUBSCRIBER_ERRORS: AtomicU64 = AtomicU64::new(0);

/// How one run is shaped.
pub(crate) struct Shape {
    /// The server's store flags (`--store memory`, …).
    pub(crate) store: Vec<String>,
    pub(crate) transport: Technique,
    pub(crate) subscribers: usize,
    pub(crate) rate: f64,
    pub(crate) seconds: f64,
    pub(crate) options: Options,
}

/// What every subscriber reports into.
struct Tally {
    start: Instant,
    rate: f64,
    delivered: AtomicU64,
    warm: AtomicU64,
    latency: Mutex<Histogram<u64>>,
    /// Per message: the latest delivery so far (µs after its scheduled time).
    last_delivery: Vec<AtomicU64>,
}

impl Tally {
    fn record(&self, frame: &Frame) {
        if let Some(event) = frame.as_event() {
            self.record_event(&event.event, &event.data);
        }
    }

    fn record_event(&self, name: &str, data: &serde_json::Value) {
        if name != "bench" {
            return;
        }
        if data.get("warm").is_some() {
            self.warm.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let Some(i) = data.get("i").and_then(|i| i.as_u64()) else { return };
        let scheduled = self.start + Duration::from_secs_f64(i as f64 / self.rate);
        let micros = Instant::now().saturating_duration_since(scheduled).as_micros() as u64;
        self.latency.lock().expect("histogram lock").saturating_record(micros.max(1));
        if let Some(slot) = self.last_delivery.get(i as usize) {
            slot.fetch_max(micros, Ordering::Relaxed);
        }
        self.delivered.fetch_add(1, Ordering::Relaxed);
    }
}

/// Subscribers reading in the background; dropped, they disconnect.
struct Room {
    readers: Vec<JoinHandle<()>>,
}

impl Drop for Room {
    fn drop(&mut self) {
        for reader in &self.readers {
            reader.abort();
        }
    }
}

/// One subscriber of a run: a native client, or a Socket.IO one.
enum Subscriber {
    Native(Client),
    SocketIo(socketio::Subscriber),
}

impl Subscriber {
    /// Connects subscriber `i` and joins it to `room` (waiting for the reply).
    async fn join(
        (http, url): (&reqwest::Client, &str),
        i: usize,
        room: &str,
        technique: Technique,
        options: &Options,
    ) -> anyhow::Result<Subscriber> {
        let name = format!("sub{i}");
        Ok(match technique {
            Technique::Native(kind) => {
                let mut client = Client::connect_via(http.clone(), url, &name, kind, options.clone()).await?;
                let reply = client.command(Command::join(room)?).await?;
                anyhow::ensure!(matches!(reply, Reply::Joined { .. }), "join refused: {reply:?}");
                Subscriber::Native(client)
            }
            Technique::SocketIo => {
                Subscriber::SocketIo(socketio::Subscriber::connect(url, &name, room).await?)
            }
        })
    }

    /// Waits for what comes next and records it into the current tally, if any.
    async fn read_into(&mut self, tally: &Mutex<Option<Arc<Tally>>>) -> anyhow::Result<()> {
        let current = || tally.lock().expect("tally lock").clone();
        match self {
            Subscriber::Native(client) => {
                let frames = client.receive().await?;
                if let Some(current) = current() {
                    frames.iter().for_each(|f| current.record(f));
                }
            }
            Subscriber::SocketIo(subscriber) => {
                let (name, data) = subscriber.next_event().await?;
                if let Some(current) = current() {
                    current.record_event(&name, &data);
                }
            }
        }
        Ok(())
    }
}

/// Connects `count` subscribers of `technique` to `room`, each joined and reading into `tally`.
async fn fill_room(
    (http, url): (&reqwest::Client, &str),
    room: &str,
    technique: Technique,
    count: usize,
    options: &Options,
    tally: Arc<Mutex<Option<Arc<Tally>>>>,
    progress: &Progress,
) -> anyhow::Result<Room> {
    let connected = AtomicU64::new(0);
    let subscribers = futures_util::stream::iter(0..count)
        .map(|i| {
            let connected = &connected;
            async move {
                let subscriber = Subscriber::join((http, url), i, room, technique, options).await?;
                let done = connected.fetch_add(1, Ordering::Relaxed) + 1;
                progress.step(&format!("connecting {done}/{count}"));
                Ok::<_, anyhow::Error>(subscriber)
            }
        })
        .buffer_unordered(CONNECT_CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    let mut readers = Vec::with_capacity(count);
    for subscriber in subscribers {
        let mut subscriber = subscriber?;
        let tally = tally.clone();
        readers.push(tokio::spawn(async move {
            let error = loop {
                if let Err(error) = subscriber.read_into(&tally).await {
                    break error;
                }
            };
            SUBSCRIBER_ERRORS.fetch_add(1, Ordering::Relaxed);
            eprintln!("a subscriber stopped: {error}");
        }));
    }
    Ok(Room { readers })
}

pub(crate) fn percentiles(h: &Histogram<u64>) -> Latency {
    if h.is_empty() {
        return Latency::default();
    }
    Latency {
        p50: h.value_at_quantile(0.5),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        max: h.max(),
    }
}

pub(crate) fn self_cpu_us() -> Option<u64> {
    process_cpu_us(std::process::id())
}

fn metric(m: &std::collections::HashMap<String, f64>, name: &str) -> f64 {
    m.get(name).copied().unwrap_or(0.0)
}

fn transport_metric(m: &std::collections::HashMap<String, f64>, name: &str, technique: Technique) -> f64 {
    metric(m, &format!("{name}{{transport=\"{}\"}}", technique.name()))
}

/// Waits until `when` precisely. Tokio's timer has millisecond granularity, which would add up
/// to a millisecond of the generator's own lateness to every latency; so it sleeps until just
/// before and then yields (letting the subscribers' tasks run) until the moment comes.
pub(crate) async fn send_at(when: Instant) {
    let early = when.checked_sub(Duration::from_millis(2)).unwrap_or(when);
    tokio::time::sleep_until(early.into()).await;
    while Instant::now() < when {
        tokio::task::yield_now().await;
    }
}

/// One run: a fresh server, `subscribers` in a room, `rate` messages/s for `seconds`.
pub(crate) async fn run(shape: &Shape, http: &reqwest::Client, progress: &Progress) -> anyhow::Result<Run> {
    let server = ServerUnderTest::start_with(&shape.store)?;
    let url = server.url.clone();
    let room = "bench";
    let messages = ((shape.rate * shape.seconds).round() as u64).max(1);
    let slot: Arc<Mutex<Option<Arc<Tally>>>> = Arc::default();
    let subscribers = fill_room(
        (http, &url),
        room,
        shape.transport,
        shape.subscribers,
        &shape.options,
        slot.clone(),
        progress,
    )
    .await?;

    // The publisher: one WebSocket client; `to: others` keeps its own events off its socket.
    let mut publisher =
        Client::connect_via(http.clone(), &url, "publisher", TransportKind::Ws, Options::default()).await?;
    publisher.command(Command::join(room)?).await?;

    // Warm-up: one message every subscriber must see, so all are live before measuring.
    let warm = Arc::new(Tally {
        start: Instant::now(),
        rate: 1.0,
        delivered: AtomicU64::new(0),
        warm: AtomicU64::new(0),
        latency: Mutex::new(Histogram::new_with_bounds(1, 600_000_000, 3)?),
        last_delivery: Vec::new(),
    });
    *slot.lock().expect("tally lock") = Some(warm.clone());
    publisher.command(Command::publish(room, "bench", &json!({"warm": true}))?.to(Scope::Others)).await?;
    let deadline = Instant::now() + Duration::from_secs(30) + shape.options.poll_interval;
    while warm.warm.load(Ordering::Relaxed) < shape.subscribers as u64 && Instant::now() < deadline {
        progress.step(&format!("warming up {}/{}", warm.warm.load(Ordering::Relaxed), shape.subscribers));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let before = scrape(&url).await?;
    let (server_cpu0, self_cpu0) = (server.cpu_split_us(), self_cpu_us());
    let tally = Arc::new(Tally {
        start: Instant::now() + Duration::from_millis(50),
        rate: shape.rate,
        delivered: AtomicU64::new(0),
        warm: AtomicU64::new(0),
        latency: Mutex::new(Histogram::new_with_bounds(1, 600_000_000, 3)?),
        last_delivery: (0..messages).map(|_| AtomicU64::new(0)).collect(),
    });
    *slot.lock().expect("tally lock") = Some(tally.clone());
    let pad = "x".repeat(PAD);
    let scheduled = |i: u64| tally.start + Duration::from_secs_f64(i as f64 / shape.rate);
    let mut i = 0;
    while i < messages {
        send_at(scheduled(i)).await;
        // Everything due by now goes in one command array: a publisher that fell behind (the
        // server is busy fanning out) catches up instead of lowering the offered rate.
        let now = Instant::now();
        let due = (i..messages).take_while(|&j| j == i || scheduled(j) <= now).take(64).collect::<Vec<_>>();
        let publishes = due
            .iter()
            .map(|j| Ok(Command::publish(room, "bench", &json!({"i": j, "pad": pad}))?.to(Scope::Others)))
            .collect::<Result<Vec<_>, quartet_protocol::Error>>()?;
        let replies = publisher.commands(&publishes).await?;
        for reply in &replies {
            anyhow::ensure!(matches!(reply, Reply::Ack { .. }), "publish refused: {reply:?}");
        }
        i += due.len() as u64;
        progress.step(&format!("publishing {i}/{messages}"));
    }
    let expected = messages * shape.subscribers as u64;
    let drain_deadline = Instant::now() + Duration::from_secs(10) + shape.options.poll_interval * 2;
    while tally.delivered.load(Ordering::Relaxed) < expected && Instant::now() < drain_deadline {
        progress.step(&format!("draining {}/{expected}", tally.delivered.load(Ordering::Relaxed)));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = tally.start.elapsed().as_secs_f64();
    let (server_cpu1, self_cpu1) = (server.cpu_split_us(), self_cpu_us());
    let after = scrape(&url).await?;
    drop(subscribers);

    let delivered = tally.delivered.load(Ordering::Relaxed);
    let per = |x: f64| if delivered > 0 { x / delivered as f64 } else { 0.0 };
    let delta = |name: &str| metric(&after, name) - metric(&before, name);
    let tdelta = |name: &str| {
        transport_metric(&after, name, shape.transport) - transport_metric(&before, name, shape.transport)
    };
    // Commands (the publisher's frames) are not requests of the subscribers' transport.
    let requests = tdelta("quartet_transport_requests_total");
    let empty = tdelta("quartet_transport_empty_total");
    let server_split = server_cpu0.zip(server_cpu1);
    let server_cpu = server_split.map(|(a, b)| (b.total() - a.total()) as f64);
    let server_user = server_split.map(|(a, b)| b.user.saturating_sub(a.user) as f64);
    let self_cpu = self_cpu0.zip(self_cpu1).map(|(a, b)| (b - a) as f64);
    let fanout = {
        let mut h = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
        for slot in &tally.last_delivery {
            h.saturating_record(slot.load(Ordering::Relaxed).max(1));
        }
        percentiles(&h)
    };
    let latency = percentiles(&tally.latency.lock().expect("histogram lock"));
    let polling =
        matches!(shape.transport, Technique::Native(TransportKind::ShortPoll | TransportKind::LongPoll));
    Ok(Run {
        transport: shape.transport.name().to_owned(),
        subscribers: shape.subscribers,
        publish_rate_per_s: shape.rate,
        messages,
        server_appended: delta("quartet_events_published_total").max(0.0) as u64,
        expected_deliveries: expected,
        delivered,
        complete: delivered == expected,
        latency_us: latency,
        fanout_complete_us: fanout,
        deliveries_per_s: delivered as f64 / elapsed,
        server_cpu_us_per_delivery: server_cpu.map(per),
        server_user_us_per_delivery: server_user.map(per),
        server_cpu_percent: server_cpu.map(|us| us / 1e4 / elapsed),
        loadgen_cpu_percent: self_cpu.map(|us| us / 1e4 / elapsed / super::server::loadgen_capacity()),
        bytes_to_clients_per_delivery: per(delta("quartet_tcp_sent_bytes_total")),
        bytes_from_clients_per_delivery: per(delta("quartet_tcp_received_bytes_total")),
        http_requests_per_delivery: per(if polling { requests } else { requests.max(0.0) }),
        empty_poll_ratio: polling.then(|| if requests > 0.0 { empty / requests } else { 0.0 }),
        // Measured by the caller, with no server of the row running.
        floor_right_after_us: None,
        floor_right_before_us: None,
    })
}

/// `subscribers` connected and idle: server memory per subscriber, and what staying connected
/// costs (requests and CPU over a quiet window; CPU per empty poll for short polling).
pub(crate) async fn idle(
    kind: Technique,
    subscribers: usize,
    options: &Options,
    http: &reqwest::Client,
    progress: &Progress,
) -> anyhow::Result<Idle> {
    let server = ServerUnderTest::start()?;
    let url = server.url.clone();
    // Touch the server once so lazily built state exists before the baseline.
    let warmup = fill_room((http, &url), "idle", kind, 1, options, Arc::default(), progress).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_before = server.rss_bytes();
    let filling = Instant::now();
    let room = fill_room((http, &url), "idle", kind, subscribers, options, Arc::default(), progress).await?;
    let fill_s = filling.elapsed().as_secs_f64();
    progress.step("settling");
    let settling = Instant::now();
    tokio::time::sleep(Duration::from_secs(1) + options.poll_interval).await;
    if kind == Technique::Native(TransportKind::LongPoll) {
        // A crowded room announces its new online count once the joins are over (at most once
        // a second, see the core's presence interval): every parked long poll is answered and
        // asks again, 10 000 requests a generator may take seconds to make. Idle means after
        // that: the window starts once no long poll has started for a second (at most 30 s).
        let mut last = transport_metric(&scrape(&url).await?, "quartet_transport_requests_total", kind);
        while settling.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = transport_metric(&scrape(&url).await?, "quartet_transport_requests_total", kind);
            if now == last {
                break;
            }
            last = now;
        }
    }
    let settle_s = settling.elapsed().as_secs_f64();
    let rss_after = server.rss_bytes();
    let window = Duration::from_secs(3).max(options.poll_interval * 3);
    let before = scrape(&url).await?;
    let cpu0 = server.cpu_us();
    progress.step(&format!("idle for {:.0} s", window.as_secs_f64()));
    tokio::time::sleep(window).await;
    let cpu1 = server.cpu_us();
    let after = scrape(&url).await?;
    drop(room);
    drop(warmup);
    let requests = transport_metric(&after, "quartet_transport_requests_total", kind)
        - transport_metric(&before, "quartet_transport_requests_total", kind);
    let empty = transport_metric(&after, "quartet_transport_empty_total", kind)
        - transport_metric(&before, "quartet_transport_empty_total", kind);
    let cpu = cpu0.zip(cpu1).map(|(a, b)| (b - a) as f64);
    let window_s = window.as_secs_f64();
    Ok(Idle {
        transport: kind.name().to_owned(),
        subscribers,
        rss_before_bytes: rss_before,
        rss_after_bytes: rss_after,
        bytes_per_subscriber: rss_before
            .zip(rss_after)
            .map(|(a, b)| (b as f64 - a as f64) / subscribers as f64),
        window_s,
        requests_in_window: requests,
        server_cpu_percent: cpu.map(|us| us / 1e4 / window_s),
        cpu_us_per_empty_poll: if kind == Technique::Native(TransportKind::ShortPoll) && empty > 0.0 {
            cpu.map(|us| us / empty)
        } else {
            None
        },
        fill_s,
        settle_s,
    })
}
