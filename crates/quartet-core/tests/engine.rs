//! The engine seam's read path: a position older than a log's ring is served by the engine when
//! it keeps history, and reported as a gap when it does not (or when its retention dropped it).
//! The engine here is a test double that keeps every event it is given, optionally dropping the
//! oldest ones as a retention rule would.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use quartet_core::engine::BoxFuture;
use quartet_core::entry::{Draft, Entry};
use quartet_core::moderation::Restriction;
use quartet_core::testing::read_now;
use quartet_core::{Config, Engine, History, Hub, MemoryEngine, Reader};
use quartet_protocol::{ClientId, Epoch, Error, Frame, GapReason, LogId, RoomName, Seq};
use serde_json::json;

/// Keeps every event; `dropped_below` pretends retention removed the seqs under it.
struct Keeper {
    seqs: MemoryEngine,
    events: Mutex<HashMap<LogId, Vec<Arc<Entry>>>>,
    dropped_below: u64,
}

impl Keeper {
    fn new(dropped_below: u64) -> Keeper {
        Keeper { seqs: MemoryEngine::new(), events: Mutex::default(), dropped_below }
    }
}

impl Engine for Keeper {
    fn name(&self) -> &'static str {
        "keeper"
    }
    fn durable(&self) -> bool {
        false
    }
    fn epoch(&self) -> Epoch {
        self.seqs.epoch()
    }
    fn append<'a>(&'a self, draft: &'a Draft) -> BoxFuture<'a, Result<Seq, Error>> {
        Box::pin(async move {
            let seq = self.seqs.append(draft).await?;
            let entry = Entry::new(seq, draft.clone());
            self.events.lock().unwrap().entry(draft.log.clone()).or_default().push(entry);
            Ok(seq)
        })
    }
    fn head<'a>(&'a self, log: &'a LogId) -> BoxFuture<'a, Result<Seq, Error>> {
        self.seqs.head(log)
    }
    fn read<'a>(&'a self, log: &'a LogId, after: Seq, limit: usize) -> BoxFuture<'a, Result<History, Error>> {
        let events = self.events.lock().unwrap();
        let kept = events.get(log).map(Vec::as_slice).unwrap_or_default();
        let found = kept
            .iter()
            .filter(|e| e.seq > after && e.seq.0 >= self.dropped_below)
            .take(limit)
            .cloned()
            .collect();
        Box::pin(async move { Ok(History::Events(found)) })
    }
    fn restrict<'a>(&'a self, room: &'a RoomName, r: &'a Restriction) -> BoxFuture<'a, Result<(), Error>> {
        self.seqs.restrict(room, r)
    }
    fn restrictions<'a>(
        &'a self,
        room: &'a RoomName,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<Vec<Restriction>, Error>> {
        self.seqs.restrictions(room, now_ms)
    }
}

/// Publishes 20 chat events to room `r` with a ring of 4; returns a reader of `alice` opened at
/// her join (older than the ring by then).
async fn far_behind(engine: Arc<dyn Engine>) -> Reader {
    let hub = Hub::new(engine, Config { ring_capacity: 4, ..Config::default() });
    let reg = hub.register("alice").await.unwrap();
    let alice = ClientId::from_wire(&reg.client).unwrap();
    hub.execute(&alice, json!({"type":"join","room":"r"}).to_string().as_bytes()).await.unwrap();
    let mut reader = hub.reader(&alice, Some(&reg.cursor)).await.unwrap();
    let joined = read_now(&mut reader).await.unwrap();
    let cursor = joined.last().unwrap().cursor.clone();
    for i in 0..20 {
        let publish = json!({"type":"publish","room":"r","event":"chat","data":i});
        hub.execute(&alice, publish.to_string().as_bytes()).await.unwrap();
    }
    hub.reader(&alice, Some(&cursor)).await.unwrap()
}

async fn frames(reader: &mut Reader) -> Vec<Frame> {
    let mut all = Vec::new();
    loop {
        let batch = read_now(reader).await.unwrap();
        if batch.is_empty() {
            return all;
        }
        all.extend(batch.iter().map(|d| serde_json::from_slice::<Frame>(&d.json).unwrap()));
    }
}

fn chat_data(frames: &[Frame]) -> Vec<u64> {
    frames.iter().filter_map(Frame::as_event).filter_map(|e| e.data.as_u64()).collect()
}

#[tokio::test]
async fn an_engine_with_history_serves_what_the_ring_dropped() {
    let all = frames(&mut far_behind(Arc::new(Keeper::new(0))).await).await;
    assert!(all.iter().all(|f| f.as_gap().is_none()), "{all:?}");
    assert_eq!(chat_data(&all), (0..20).collect::<Vec<_>>());
    let seqs: Vec<u64> = all.iter().filter_map(Frame::as_event).map(|e| e.seq).collect();
    assert_eq!(seqs, (2..=21).collect::<Vec<_>>(), "seq order, nothing twice");
}

#[tokio::test]
async fn what_retention_dropped_is_a_retention_gap() {
    // The join is seq 1, chat i is seq i + 2; the engine lost seqs 2..=9 (chats 0..=7).
    let all = frames(&mut far_behind(Arc::new(Keeper::new(10))).await).await;
    let gap = all[0].as_gap().unwrap_or_else(|| panic!("no gap first: {all:?}"));
    assert_eq!((gap.reason, gap.missed_from, gap.missed_to), (GapReason::Retention, Some(2), Some(9)));
    assert_eq!(chat_data(&all), (8..20).collect::<Vec<_>>());
}

#[tokio::test]
async fn an_engine_without_history_makes_it_an_evicted_gap() {
    let all = frames(&mut far_behind(Arc::new(MemoryEngine::new())).await).await;
    let gap = all[0].as_gap().unwrap_or_else(|| panic!("no gap first: {all:?}"));
    assert_eq!((gap.reason, gap.missed_from, gap.missed_to), (GapReason::Evicted, Some(2), Some(17)));
    assert_eq!(chat_data(&all), (16..20).collect::<Vec<_>>());
}
