//! End-to-end delivery over loopback, one subscriber per transport: the time from a publisher
//! (WebSocket) sending a publish command to the subscriber's client having parsed the event. The
//! subscriber reads continuously in its own task, so it is in its natural waiting state when the
//! publish happens: a parked long poll, an open stream, or — for short poll, asking every 10 ms
//! here — somewhere in its polling rhythm, which dominates its figure (about half the interval).
//! A latency floor per transport on this machine, not a load test (`quartet bench` is that).

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use quartet_client::{Client, Command, Options, Scope, TransportKind};
use quartet_core::{Config, Hub, MemoryEngine};
use serde_json::json;
use tokio::sync::mpsc;

fn delivery(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let url = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let config = Config { command_rate: 1e12, command_burst: 1e12, ..Config::default() };
        let hub = Hub::new(Arc::new(MemoryEngine::new()), config);
        tokio::spawn(quartet_server::serve(listener, hub, std::future::pending()));
        url
    });
    let options =
        Options { poll_interval: Duration::from_millis(10), long_poll_wait: Duration::from_secs(25) };
    let mut group = c.benchmark_group("delivery");
    group.sample_size(30);
    for kind in TransportKind::ALL {
        let (mut publisher, mut arrivals, reader) = rt.block_on(async {
            let mut publisher = Client::connect(&url, "publisher", TransportKind::Ws).await.unwrap();
            let mut subscriber =
                Client::connect_with(&url, "subscriber", kind, options.clone()).await.unwrap();
            publisher.command(Command::join(kind.name()).unwrap()).await.unwrap();
            subscriber.command(Command::join(kind.name()).unwrap()).await.unwrap();
            // The subscriber reads all the time, as a real client does, and reports when each
            // chat event has been parsed.
            let (tx, rx) = mpsc::unbounded_channel::<Instant>();
            let reader = tokio::spawn(async move {
                while let Ok(frames) = subscriber.receive().await {
                    for frame in frames {
                        if frame.as_event().is_some_and(|e| e.event == "chat") {
                            let _ = tx.send(Instant::now());
                        }
                    }
                }
            });
            (publisher, rx, reader)
        });
        let text = json!({ "text": "x".repeat(88) });
        let publish = || Command::publish(kind.name(), "chat", &text).unwrap().to(Scope::Others);
        group.bench_function(BenchmarkId::new("publish_to_parsed", kind.name()), |b| {
            b.iter_custom(|iterations| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for i in 0..iterations {
                        if kind == TransportKind::ShortPoll {
                            // Publish at a spread of moments in the poll rhythm, not always just
                            // after a poll (which would measure the worst case every time).
                            tokio::time::sleep(Duration::from_micros(i * 7919 % 10_000)).await;
                        }
                        let sent = Instant::now();
                        publisher.command(publish()).await.unwrap();
                        let parsed = arrivals.recv().await.unwrap();
                        total += parsed.duration_since(sent);
                    }
                    total
                })
            })
        });
        reader.abort();
    }
    group.finish();
}

criterion_group!(benches, delivery);
criterion_main!(benches);
