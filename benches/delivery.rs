//! End-to-end delivery over loopback, one subscriber per transport: a publisher (WebSocket)
//! publishes one event and waits for its ack, and the time runs until the subscriber's client
//! has parsed the event. So it includes one command round trip plus the delivery path; it is a
//! latency floor per transport on this machine, not a load test (`quartet bench` is that).
//! Short poll asks every 10 ms here, so its figure is dominated by half that interval.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use quartet_client::{Client, Options, TransportKind};
use quartet_core::{Config, Hub, MemoryEngine};
use serde_json::json;

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
    group.sample_size(50);
    for kind in TransportKind::ALL {
        let (mut publisher, mut subscriber) = rt.block_on(async {
            let mut publisher = Client::connect(&url, "publisher", TransportKind::Ws).await.unwrap();
            let mut subscriber =
                Client::connect_with(&url, "subscriber", kind, options.clone()).await.unwrap();
            let room = json!({"type":"join","room":kind.name()});
            publisher.command(room.clone()).await.unwrap();
            subscriber.command(room).await.unwrap();
            subscriber.receive().await.unwrap(); // the join presence events
            (publisher, subscriber)
        });
        let publish = json!({"type":"publish","room":kind.name(),"event":"chat","to":"others","data":{"text":"x".repeat(88)}});
        group.bench_function(BenchmarkId::new("publish_to_parsed", kind.name()), |b| {
            b.iter_custom(|iterations| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iterations {
                        let started = Instant::now();
                        publisher.command(publish.clone()).await.unwrap();
                        loop {
                            let frames = subscriber.receive().await.unwrap();
                            if frames.iter().any(|f| f.as_event().is_some_and(|e| e.event == "chat")) {
                                break;
                            }
                        }
                        total += started.elapsed();
                    }
                    total
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, delivery);
criterion_main!(benches);
