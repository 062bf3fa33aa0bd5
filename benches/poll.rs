//! What quartet itself does for one poll, without HTTP: open a reader from the request's cursor
//! (find the session, decode the cursor, list the logs), read what is there into a poll body,
//! encode the next cursor and close the body. `empty` is the short poll's common case (nothing
//! new), `one_event` a poll that finds one ~100-byte event. HTTP parsing, routing and the
//! socket are not in it: see `docs/benchmarks.md` for the whole request's cost.

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use quartet_core::testing::read_now;
use quartet_core::{Config, Hub, MemoryEngine};
use quartet_protocol::ClientId;
use quartet_server::transport::PollBody;
use serde_json::json;

fn poll(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let config = Config { command_rate: 1e12, command_burst: 1e12, ..Config::default() };
    let hub = Hub::new(Arc::new(MemoryEngine::new()), config);
    let (viewer, cursor, streamer) = rt.block_on(async {
        let join = json!({"type":"join","room":"stage"}).to_string();
        let reg = hub.register("viewer").await.unwrap();
        let viewer = ClientId::from_wire(&reg.client).unwrap();
        hub.execute(&viewer, join.as_bytes()).await.unwrap();
        let streamer = ClientId::from_wire(&hub.register("streamer").await.unwrap().client).unwrap();
        hub.execute(&streamer, join.as_bytes()).await.unwrap();
        // The viewer's cursor after everything so far (its join, the streamer's join).
        let mut reader = hub.reader(&viewer, Some(&reg.cursor)).await.unwrap();
        read_now(&mut reader).await.unwrap();
        let cursor = reader.current_cursor();
        (viewer, cursor, streamer)
    });
    let poll_once = |cursor: &str| {
        let mut reader =
            hub.reader(&viewer, Some(cursor)).now_or_never().expect("a held session opens at once").unwrap();
        let mut body = PollBody::default();
        // With the memory engine this never waits: one poll of the future completes it.
        reader.read_into(&mut body).now_or_never().expect("a memory read never waits").unwrap();
        let next = reader.current_cursor();
        (body.events(), body.finish(&next), next)
    };
    let mut group = c.benchmark_group("poll");
    group.bench_function("empty", |b| {
        b.iter(|| {
            let (events, body, _) = poll_once(&cursor);
            assert_eq!(events, 0);
            body
        })
    });
    let publish =
        json!({"type":"publish","room":"stage","event":"chat","data":{"text":"x".repeat(80)}}).to_string();
    rt.block_on(hub.execute(&streamer, publish.as_bytes())).unwrap();
    group.bench_function("one_event", |b| {
        b.iter(|| {
            let (events, body, _) = poll_once(&cursor);
            assert_eq!(events, 1);
            body
        })
    });
    group.finish();
}

criterion_group!(benches, poll);
criterion_main!(benches);
