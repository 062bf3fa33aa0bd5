//! The stores side by side: what durability costs. For each `--store`, a fresh server and
//!
//! - acked publishes per second: `publishers` WebSocket clients, each in a room of its own (no
//!   fan-out), each sending its next publish as soon as the previous one is acked (a closed
//!   loop), for a fixed time. One publisher shows a commit's latency; a hundred show what group
//!   commit makes of it. The time from send to ack is recorded too.
//! - publish→delivery latency: the delivery run of [`load::run`] (one WebSocket subscriber,
//!   200 messages/s), on that store.

use std::cell::RefCell;
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
}

/// Publish→delivery on one store.
#[derive(Debug, Serialize)]
pub(crate) struct DeliveryRun {
    pub(crate) store: String,
    pub(crate) latency_us: Latency,
    pub(crate) delivered: u64,
    pub(crate) expected_deliveries: u64,
}

/// What `--store` to give a server for `name` (`memory` or `sqlite`), with a fresh file in
/// `dir` for SQLite.
pub(crate) fn store_arg(name: &str, dir: &std::path::Path, run: &str) -> anyhow::Result<String> {
    match name {
        "memory" => Ok("memory".into()),
        "sqlite" => {
            let store = format!(
                "sqlite:{}",
                dir.join(format!("quartet-bench-{run}-{}.db", std::process::id())).display()
            );
            remove(&store);
            Ok(store)
        }
        other => anyhow::bail!("--stores: unknown store {other:?} (memory, sqlite)"),
    }
}

/// Deletes the files of a `sqlite:PATH` store (nothing for memory).
pub(crate) fn remove(store: &str) {
    if let Some(file) = store.strip_prefix("sqlite:") {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{file}{suffix}"));
        }
    }
}

/// `publishers` closed-loop publishers for `seconds` against a fresh server on `store`.
pub(crate) async fn acked(
    name: &str,
    store: &str,
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
    let percent = |a: Option<u64>, b: Option<u64>| a.zip(b).map(|(a, b)| (b - a) as f64 / 1e4 / elapsed);
    let latency = percentiles(&histogram.borrow());
    Ok(AckRun {
        store: name.to_owned(),
        publishers,
        acked,
        acked_per_s: acked as f64 / elapsed,
        ack_latency_us: latency,
        server_cpu_percent: percent(server_cpu0, server_cpu1),
        loadgen_cpu_percent: percent(self_cpu0, self_cpu1),
    })
}

/// Publish→delivery on `store`: one WebSocket subscriber, 200 messages/s.
pub(crate) async fn delivery(
    name: &str,
    store: &str,
    seconds: f64,
    http: &reqwest::Client,
    progress: &Progress,
) -> anyhow::Result<DeliveryRun> {
    let shape = load::Shape {
        store: store.to_owned(),
        transport: TransportKind::Ws,
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
