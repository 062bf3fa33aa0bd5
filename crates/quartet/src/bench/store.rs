//! The stores side by side: what durability costs. For each `--store`, a fresh server and
//!
//! - acked publishes per second: `publishers` WebSocket clients, each in a room of its own (no
//!   fan-out), each sending its next publish as soon as the previous one is acked (a closed
//!   loop), for a fixed time. One publisher shows a commit's latency; a hundred show what group
//!   commit makes of it. The time from send to ack is recorded too.
//! - publish→delivery latency: the delivery run of [`load::run`] (one WebSocket subscriber,
//!   200 messages/s), on that store.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use quartet_client::{Client, Command, Options, Reply, TransportKind};
use serde::Serialize;
use serde_json::json;

use super::Progress;
use super::load::{self, percentiles, self_cpu_us};
use super::report::Latency;
use super::server::ServerUnderTest;

/// Acked publishes of one store with a number of concurrent publishers.
#[derive(Debug, Serialize)]
pub(crate) struct AckRun {
    pub(crate) store: String,
    pub(crate) publishers: usize,
    pub(crate) acked: u64,
    pub(crate) acked_per_s: f64,
    /// From a publish's send to its ack.
    pub(crate) ack_latency_us: Latency,
    pub(crate) server_cpu_percent: Option<f64>,
    pub(crate) loadgen_cpu_percent: Option<f64>,
    /// SQLite: writes per commit over the run (the group commit's mean group).
    pub(crate) writes_per_commit: Option<f64>,
    /// The server's CPU time per acked publish, by thread name (the runtime's workers, the
    /// SQLite writer, sync and checkpoint threads), in microseconds.
    pub(crate) server_cpu_us_per_publish_by_thread: BTreeMap<String, f64>,
}

/// Publish→delivery on one store.
#[derive(Debug, Serialize)]
pub(crate) struct DeliveryRun {
    pub(crate) store: String,
    pub(crate) latency_us: Latency,
    pub(crate) delivered: u64,
    pub(crate) expected_deliveries: u64,
}

/// The flags of a server keeping nothing.
pub(crate) const MEMORY: [&str; 2] = ["--store", "memory"];

/// One store to run a server on: its flags, and what to clean up after.
pub(crate) struct Spec {
    pub(crate) args: Vec<String>,
    sqlite: Option<String>,
    redis: Option<(String, String)>,
}

impl Spec {
    /// `memory`, `sqlite` (a fresh file in `dir`) or `redis` (a fresh key prefix at `redis_url`).
    pub(crate) fn new(name: &str, dir: &std::path::Path, redis_url: &str, run: &str) -> anyhow::Result<Spec> {
        let id = format!("quartet-bench-{run}-{}", std::process::id());
        match name {
            "memory" => {
                Ok(Spec { args: MEMORY.iter().map(|s| s.to_string()).collect(), sqlite: None, redis: None })
            }
            "sqlite" => {
                let file = dir.join(format!("{id}.db")).display().to_string();
                let spec = Spec {
                    args: vec!["--store".into(), format!("sqlite:{file}")],
                    sqlite: Some(file),
                    redis: None,
                };
                spec.remove_file();
                Ok(spec)
            }
            "redis" => Ok(Spec {
                args: vec!["--redis".into(), redis_url.into(), "--redis-prefix".into(), id.clone()],
                sqlite: None,
                redis: Some((redis_url.into(), id)),
            }),
            other => anyhow::bail!("--stores: unknown store {other:?} (memory, sqlite, redis)"),
        }
    }

    fn remove_file(&self) {
        if let Some(file) = &self.sqlite {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{file}{suffix}"));
            }
        }
    }

    /// Deletes what the run left: the SQLite files, the Redis keys.
    pub(crate) async fn remove(&self) {
        self.remove_file();
        if let Some((url, prefix)) = &self.redis
            && let Err(error) = quartet_redis::delete_prefix(url, prefix).await
        {
            eprintln!("could not delete the bench's redis keys {prefix}:*: {error}");
        }
    }
}

/// Whether a Redis answers at `url`.
pub(crate) async fn redis_answers(url: &str) -> bool {
    quartet_redis::delete_prefix(url, "quartet-bench-probe").await.is_ok()
}

/// `publishers` closed-loop publishers for `seconds` against a fresh server on `store`.
pub(crate) async fn acked(
    name: &str,
    store: &[String],
    publishers: usize,
    seconds: f64,
    http: &reqwest::Client,
    progress: &Progress,
) -> anyhow::Result<AckRun> {
    let server = ServerUnderTest::start_with(store)?;
    let mut clients = Vec::with_capacity(publishers);
    for i in 0..publishers {
        let mut client = Client::connect_via(
            http.clone(),
            &server.url,
            &format!("pub{i}"),
            TransportKind::Ws,
            Options::default(),
        )
        .await?;
        let room = format!("own{i}");
        anyhow::ensure!(matches!(client.command(Command::join(&room)?).await?, Reply::Joined { .. }));
        clients.push((client, room));
        progress.step(&format!("connecting {}/{publishers}", i + 1));
    }
    let histogram = Rc::new(RefCell::new(Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?));
    let (server_cpu0, self_cpu0) = (server.cpu_us(), self_cpu_us());
    let threads0 = server.thread_cpu_us();
    let commits0 = commit_counters(&server.url).await?;
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(seconds);
    let loops = clients.into_iter().map(|(mut client, room)| {
        let histogram = histogram.clone();
        async move {
            let mut acked = 0u64;
            while Instant::now() < until {
                let command =
                    Command::publish(&room, "bench", &json!({ "i": acked }))?.id(format!("m{acked}"));
                let sent = Instant::now();
                let reply = client.command(command).await?;
                anyhow::ensure!(matches!(reply, Reply::Ack { .. }), "publish refused: {reply:?}");
                histogram.borrow_mut().saturating_record(sent.elapsed().as_micros().max(1) as u64);
                acked += 1;
            }
            Ok::<u64, anyhow::Error>(acked)
        }
    });
    let ticker = async {
        while Instant::now() < until {
            progress.step(&format!("{publishers} publishers on {name}: {} acked", histogram.borrow().len()));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let (results, ()) = tokio::join!(futures_util::future::join_all(loops), ticker);
    let elapsed = started.elapsed().as_secs_f64();
    let acked = results.into_iter().collect::<anyhow::Result<Vec<u64>>>()?.into_iter().sum::<u64>();
    let (server_cpu1, self_cpu1) = (server.cpu_us(), self_cpu_us());
    let by_thread = server
        .thread_cpu_us()
        .into_iter()
        .map(|(name, us)| {
            let spent = us.saturating_sub(threads0.get(&name).copied().unwrap_or(0));
            (name, spent as f64 / acked.max(1) as f64)
        })
        .filter(|(_, us)| *us > 0.0)
        .collect();
    let percent = |a: Option<u64>, b: Option<u64>| a.zip(b).map(|(a, b)| (b - a) as f64 / 1e4 / elapsed);
    let latency = percentiles(&histogram.borrow());
    let commits1 = commit_counters(&server.url).await?;
    let writes_per_commit =
        commits0.zip(commits1).and_then(|((c0, w0), (c1, w1))| (c1 > c0).then(|| (w1 - w0) / (c1 - c0)));
    Ok(AckRun {
        store: name.to_owned(),
        publishers,
        acked,
        acked_per_s: acked as f64 / elapsed,
        ack_latency_us: latency,
        server_cpu_percent: percent(server_cpu0, server_cpu1),
        loadgen_cpu_percent: percent(self_cpu0, self_cpu1).map(|p| p / super::server::loadgen_capacity()),
        writes_per_commit,
        server_cpu_us_per_publish_by_thread: by_thread,
    })
}

/// A SQLite server's commits and the writes they carried, from its `/metrics`; `None` for
/// other stores.
async fn commit_counters(url: &str) -> anyhow::Result<Option<(f64, f64)>> {
    let metrics = super::server::scrape(url).await?;
    Ok(metrics
        .get("quartet_sqlite_commits_total")
        .copied()
        .zip(metrics.get("quartet_sqlite_writes_total").copied()))
}

/// Publish→delivery on `store`: one WebSocket subscriber, 200 messages/s.
pub(crate) async fn delivery(
    name: &str,
    store: &[String],
    seconds: f64,
    http: &reqwest::Client,
    progress: &Progress,
) -> anyhow::Result<DeliveryRun> {
    let shape = load::Shape {
        store: store.to_vec(),
        transport: super::socketio::Technique::Native(TransportKind::Ws),
        subscribers: 1,
        rate: 200.0,
        seconds,
        options: Options::default(),
    };
    let run = load::run(&shape, http, progress).await?;
    Ok(DeliveryRun {
        store: name.to_owned(),
        latency_us: run.latency_us,
        delivered: run.delivered,
        expected_deliveries: run.expected_deliveries,
    })
}

/// Publish on one node, delivery on another.
#[derive(Debug, Serialize)]
pub(crate) struct CrossNodeRun {
    pub(crate) messages: u64,
    pub(crate) latency_us: Latency,
}

/// Two nodes on one Redis prefix: a publisher on the first, a subscriber on the second, one
/// message at a time (the next is sent when the last arrived), for `seconds` (at most 2000).
pub(crate) async fn cross_node(
    store: &[String],
    seconds: f64,
    http: &reqwest::Client,
    progress: &Progress,
) -> anyhow::Result<CrossNodeRun> {
    let (a, b) = (ServerUnderTest::start_with(store)?, ServerUnderTest::start_with(store)?);
    let options = Options::default();
    let mut publisher =
        Client::connect_via(http.clone(), &a.url, "publisher", TransportKind::Ws, options.clone()).await?;
    let mut subscriber =
        Client::connect_via(http.clone(), &b.url, "subscriber", TransportKind::Ws, options).await?;
    subscriber.command(Command::join("cross")?).await?;
    publisher.command(Command::join("cross")?).await?;
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let mut messages = 0u64;
    while Instant::now() < until && messages < 2000 {
        let sent = Instant::now();
        let command =
            Command::publish("cross", "bench", &json!({ "i": messages }))?.to(quartet_client::Scope::Others);
        anyhow::ensure!(matches!(publisher.command(command).await?, Reply::Ack { .. }), "publish refused");
        loop {
            let frames = tokio::time::timeout(Duration::from_secs(5), subscriber.receive()).await??;
            let arrived = frames
                .iter()
                .filter_map(|f| f.as_event())
                .any(|e| e.event == "bench" && e.data["i"] == messages);
            if arrived {
                break;
            }
        }
        histogram.saturating_record(sent.elapsed().as_micros().max(1) as u64);
        messages += 1;
        if messages.is_multiple_of(100) {
            progress.step(&format!("cross-node: {messages} delivered"));
        }
    }
    Ok(CrossNodeRun { messages, latency_us: percentiles(&histogram) })
}

/// What a room's fan-out costs each node in Redis traffic.
#[derive(Debug, Serialize)]
pub(crate) struct TrafficRun {
    pub(crate) nodes: usize,
    pub(crate) subscribers: usize,
    pub(crate) messages: u64,
    /// Messages the busiest node received from Redis per published message.
    pub(crate) max_announcements_per_message_per_node: f64,
    /// Round trips each node made to Redis per published message (mean over the nodes that
    /// only deliver, not the publisher's).
    pub(crate) calls_per_message_per_node: f64,
}

/// Three nodes; `subscribers` WebSocket subscribers spread over them in one room; 200 messages
/// published on the first node at 200/s. Each node's Redis counters (its `/metrics`) are read
/// before and after the publishing.
pub(crate) async fn traffic(
    store: &[String],
    subscribers: usize,
    http: &reqwest::Client,
    progress: &Progress,
) -> anyhow::Result<TrafficRun> {
    const MESSAGES: u64 = 200;
    let nodes = [
        ServerUnderTest::start_with(store)?,
        ServerUnderTest::start_with(store)?,
        ServerUnderTest::start_with(store)?,
    ];
    let mut readers = Vec::new();
    for i in 0..subscribers {
        let node = &nodes[i % nodes.len()];
        let mut client = Client::connect_via(
            http.clone(),
            &node.url,
            &format!("s{i}"),
            TransportKind::Ws,
            Options::default(),
        )
        .await?;
        client.command(Command::join("fanout")?).await?;
        readers.push(tokio::spawn(async move {
            let mut got = 0u64;
            while got < MESSAGES {
                match client.receive().await {
                    Ok(frames) => {
                        got +=
                            frames.iter().filter_map(|f| f.as_event()).filter(|e| e.event == "bench").count()
                                as u64
                    }
                    Err(_) => break,
                }
            }
            got
        }));
        progress.step(&format!("connecting {}/{subscribers}", i + 1));
    }
    let mut publisher =
        Client::connect_via(http.clone(), &nodes[0].url, "publisher", TransportKind::Ws, Options::default())
            .await?;
    publisher.command(Command::join("fanout")?).await?;
    let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
    let (heard0, calls0) = redis_counters(&urls).await?;
    let start = Instant::now();
    for i in 0..MESSAGES {
        let due = start + Duration::from_millis(i * 5);
        tokio::time::sleep_until(due.into()).await;
        let command =
            Command::publish("fanout", "bench", &json!({ "i": i }))?.to(quartet_client::Scope::Others);
        anyhow::ensure!(matches!(publisher.command(command).await?, Reply::Ack { .. }), "publish refused");
    }
    let mut delivered = 0;
    for reader in readers {
        delivered +=
            tokio::time::timeout(Duration::from_secs(10), reader).await.map_or(0, |r| r.unwrap_or(0));
    }
    anyhow::ensure!(
        delivered == MESSAGES * subscribers as u64,
        "only {delivered} of {} delivered",
        MESSAGES * subscribers as u64
    );
    let (heard1, calls1) = redis_counters(&urls).await?;
    let per = |before: &[f64], after: &[f64], skip: usize| {
        let deltas: Vec<f64> = before.iter().zip(after).skip(skip).map(|(b, a)| a - b).collect();
        deltas.iter().sum::<f64>() / deltas.len() as f64 / MESSAGES as f64
    };
    Ok(TrafficRun {
        nodes: nodes.len(),
        subscribers,
        messages: MESSAGES,
        max_announcements_per_message_per_node: heard0
            .iter()
            .zip(&heard1)
            .map(|(b, a)| (a - b) / MESSAGES as f64)
            .fold(0.0, f64::max),
        calls_per_message_per_node: per(&calls0, &calls1, 1),
    })
}

/// Each node's messages received from Redis and calls made to it, from its `/metrics`.
async fn redis_counters(urls: &[String]) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let (mut heard, mut calls) = (Vec::new(), Vec::new());
    for url in urls {
        let metrics = super::server::scrape(url).await?;
        heard.push(metrics.get("quartet_redis_announcements_total").copied().unwrap_or(0.0));
        calls.push(metrics.get("quartet_redis_calls_total").copied().unwrap_or(0.0));
    }
    Ok((heard, calls))
}
