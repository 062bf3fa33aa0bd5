//! Delivery classes and slow readers: a reader far behind skips `droppable` events but never a
//! must-deliver one; one read holds at most a batch of bytes; a stream that stays behind is
//! ended `slow`, and one that catches up is not.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use quartet_core::limits::{MAX_BATCH_BYTES, SHED_LAG};
use quartet_core::testing::read_now;
use quartet_core::{Config, Hub, MemoryEngine, Reader};
use quartet_protocol::{ClientId, ErrorCode};
use serde_json::{Value, json};

fn hub() -> Hub {
    Hub::new(
        Arc::new(MemoryEngine::new()),
        Config { command_rate: 1e9, command_burst: 1e9, ..Config::default() },
    )
}

async fn member(hub: &Hub, name: &str) -> (ClientId, Reader) {
    let reg = hub.register(name).await.unwrap();
    let id = ClientId::from_wire(&reg.client).unwrap();
    let replies =
        hub.execute(&id, json!({"type":"join","room":"live"}).to_string().as_bytes()).await.unwrap();
    assert_eq!(serde_json::to_value(&replies[0]).unwrap()["type"], "joined");
    let reader = hub.reader(&id, Some(&reg.cursor)).await.unwrap();
    (id, reader)
}

async fn publish(hub: &Hub, from: &ClientId, event: &str, data: Value, droppable: bool) {
    let command = json!({"type":"publish","room":"live","event":event,"data":data,"droppable":droppable});
    let replies = hub.execute(from, command.to_string().as_bytes()).await.unwrap();
    assert_eq!(serde_json::to_value(&replies[0]).unwrap()["type"], "ack", "{replies:?}");
}

/// Reads until nothing is left; returns every frame's JSON.
async fn read_all(reader: &mut Reader) -> Vec<Value> {
    let mut all = Vec::new();
    loop {
        let frames = read_now(reader).await.unwrap();
        if frames.is_empty() {
            return all;
        }
        all.extend(frames.iter().map(|f| serde_json::from_slice::<Value>(&f.json).unwrap()));
    }
}

fn of(frames: &[Value], event: &str) -> Vec<u64> {
    frames.iter().filter(|f| f["event"] == event).map(|f| f["data"]["n"].as_u64().unwrap()).collect()
}

#[tokio::test]
async fn a_reader_far_behind_skips_droppable_events_and_no_other() {
    let hub = hub();
    let (host, _) = member(&hub, "host").await;
    let (_, mut keeping_up) = member(&hub, "fast").await;
    let (_, mut behind) = member(&hub, "slow").await;
    read_all(&mut behind).await; // the presence so far
    let mut fast = Vec::new();
    for n in 0..600u64 {
        publish(&hub, &host, "like", json!({ "n": n }), true).await;
        publish(&hub, &host, "chat", json!({ "n": n }), false).await;
        fast.extend(read_all(&mut keeping_up).await);
    }
    // The reader that kept up got everything, likes included.
    assert_eq!(of(&fast, "like"), (0..600).collect::<Vec<_>>());
    assert_eq!(of(&fast, "chat"), (0..600).collect::<Vec<_>>());
    // The one 1200 events behind: every chat, once, in order; likes only once it was close.
    let slow = read_all(&mut behind).await;
    assert_eq!(of(&slow, "chat"), (0..600).collect::<Vec<_>>());
    let likes = of(&slow, "like");
    assert!(likes.len() < 600 && !likes.is_empty(), "{} likes", likes.len());
    assert!(
        likes.len() as u64 <= SHED_LAG / 2 + 1,
        "likes only within the last {SHED_LAG} events: {}",
        likes.len()
    );
    assert!(likes.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(hub.stats().shed.load(Ordering::Relaxed), 600 - likes.len() as u64);
}

#[tokio::test]
async fn one_read_holds_at_most_a_batch_of_bytes() {
    let hub = hub();
    let (host, _) = member(&hub, "host").await;
    let (_, mut reader) = member(&hub, "reader").await;
    read_all(&mut reader).await;
    let pad = "x".repeat(8 * 1024);
    for n in 0..100u64 {
        publish(&hub, &host, "chat", json!({ "n": n, "pad": pad }), false).await;
    }
    let first = read_now(&mut reader).await.unwrap();
    let bytes: usize = first.iter().map(|f| f.json.len()).sum();
    assert!(bytes <= MAX_BATCH_BYTES + 9 * 1024, "one read took {bytes} bytes");
    assert!(first.len() < 100, "the byte bound cut the batch");
    // Nothing is lost: the rest comes with the next reads, in order.
    let mut all: Vec<Value> = first.iter().map(|f| serde_json::from_slice(&f.json).unwrap()).collect();
    all.extend(read_all(&mut reader).await);
    assert_eq!(of(&all, "chat"), (0..100).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_stays_behind_is_ended_slow() {
    let hub = hub();
    let (host, _) = member(&hub, "host").await;
    let (_, mut stream) = member(&hub, "stream").await;
    let (_, mut catching_up) = member(&hub, "catching-up").await;
    stream.close_when_behind_for(Duration::from_secs(1));
    catching_up.close_when_behind_for(Duration::from_secs(1));
    for n in 0..1000u64 {
        publish(&hub, &host, "chat", json!({ "n": n }), false).await;
    }
    // One batch each: both are still far behind.
    assert!(!read_now(&mut stream).await.unwrap().is_empty());
    assert!(!read_now(&mut catching_up).await.unwrap().is_empty());
    // One catches up at once and stays caught up; the other reads nothing for two seconds.
    let caught_up = read_all(&mut catching_up).await;
    assert_eq!(of(&caught_up, "chat").last(), Some(&999));
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(read_now(&mut catching_up).await.unwrap().is_empty());
    let error = read_now(&mut stream).await.unwrap_err();
    assert_eq!(error.code, ErrorCode::Slow, "{error:?}");
    assert_eq!(hub.stats().slow.load(Ordering::Relaxed), 1);
}
