//! Core fan-out, no network: one publish to a room of 1, 100 or 10 000 readers, then every
//! reader takes the event into its own buffer (`Reader::read_into` with a sink that copies the
//! JSON), as each connection's task does after its wake-up. The time covers the append, the
//! wake-ups, every reader's read, its cursor's encoding and the copy of the event's bytes; it
//! excludes sockets and a wire format's framing (see `encoding` and `delivery`). Throughput is
//! reported per delivered event.

use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use quartet_core::testing::read_now;
use quartet_core::{Config, EncodedFrame, Hub, MemoryEngine, Reader, Sink};
use quartet_protocol::ClientId;
use serde_json::json;

/// A connection's write buffer, reduced to the copy every transport makes.
#[derive(Default)]
struct Buffer(Vec<u8>);

impl Sink for Buffer {
    fn push(&mut self, frame: EncodedFrame<'_>) {
        frame.write_json(&mut self.0);
    }
}

fn room(rt: &tokio::runtime::Runtime, readers: usize) -> (Hub, ClientId, Vec<Reader>) {
    rt.block_on(async {
        let config = Config { command_rate: 1e12, command_burst: 1e12, ..Config::default() };
        let hub = Hub::new(Arc::new(MemoryEngine::new()), config);
        let join = json!({"type":"join","room":"stage"}).to_string();
        let mut all = Vec::with_capacity(readers);
        for i in 0..readers {
            let reg = hub.register(&format!("viewer{i}")).await.unwrap();
            let id = ClientId::from_wire(&reg.client).unwrap();
            hub.execute(&id, join.as_bytes()).await.unwrap();
            let reader = hub.reader(&id, Some(&reg.cursor)).await.unwrap();
            all.push(reader);
        }
        let reg = hub.register("streamer").await.unwrap();
        let streamer = ClientId::from_wire(&reg.client).unwrap();
        hub.execute(&streamer, join.as_bytes()).await.unwrap();
        // Skip everything before the measured publishes (later joins, gaps over evicted ones).
        for reader in &mut all {
            while !read_now(reader).await.unwrap().is_empty() {}
        }
        (hub, streamer, all)
    })
}

fn fanout(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let publish =
        json!({"type":"publish","room":"stage","event":"chat","data":{"text":"x".repeat(80)}}).to_string();
    let mut group = c.benchmark_group("fanout");
    for readers in [1usize, 100, 10_000] {
        let (hub, streamer, mut all) = room(&rt, readers);
        let mut buffers: Vec<Buffer> = all.iter().map(|_| Buffer::default()).collect();
        group.throughput(Throughput::Elements(readers as u64));
        group.sample_size(if readers >= 10_000 { 20 } else { 100 });
        group.bench_function(BenchmarkId::new("publish_then_every_reader_reads", readers), |b| {
            b.iter(|| {
                rt.block_on(async {
                    hub.execute(&streamer, publish.as_bytes()).await.unwrap();
                    let mut delivered = 0;
                    for (reader, buffer) in all.iter_mut().zip(&mut buffers) {
                        buffer.0.clear();
                        delivered += reader.read_into(buffer).await.unwrap();
                    }
                    assert_eq!(delivered, readers);
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
