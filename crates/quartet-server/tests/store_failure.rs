//! A store that stops taking writes: `/healthz` answers 503 with the reason, publishes are
//! refused `unavailable` (never acked, so never lost), what is already in memory is still
//! delivered, and everything recovers by itself when the store does.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use quartet_client::{ErrorCode, Reply, Scope, TransportKind};
use quartet_core::engine::{BoxFuture, Health, History};
use quartet_core::entry::Draft;
use quartet_core::moderation::Restriction;
use quartet_core::{Config, Engine, MemoryEngine};
use quartet_protocol::{Epoch, Error, LogId, RoomName, Seq};
use serde_json::Value;

/// The memory engine, with a switch that makes every write fail as a full disk would, and one
/// that makes every history read fail.
struct Failing {
    inner: MemoryEngine,
    down: AtomicBool,
    reads_fail: AtomicBool,
}

impl Failing {
    fn refuse(&self) -> Result<(), Error> {
        if self.down.load(Ordering::SeqCst) {
            return Err(Error::new(ErrorCode::Unavailable, "the store cannot take writes: disk full"));
        }
        Ok(())
    }
}

impl Engine for Failing {
    fn name(&self) -> &'static str {
        "failing"
    }
    fn durable(&self) -> bool {
        true
    }
    fn epoch(&self) -> Epoch {
        self.inner.epoch()
    }
    fn health(&self) -> Health {
        if self.down.load(Ordering::SeqCst) { Health::Failing("disk full".into()) } else { Health::Ok }
    }
    fn append<'a>(&'a self, draft: &'a Draft) -> BoxFuture<'a, Result<Seq, Error>> {
        Box::pin(async move {
            self.refuse()?;
            self.inner.append(draft).await
        })
    }
    fn head<'a>(&'a self, log: &'a LogId) -> BoxFuture<'a, Result<Seq, Error>> {
        self.inner.head(log)
    }
    fn read<'a>(&'a self, log: &'a LogId, after: Seq, limit: usize) -> BoxFuture<'a, Result<History, Error>> {
        if self.reads_fail.load(Ordering::SeqCst) {
            return Box::pin(async { Err(Error::new(ErrorCode::Unavailable, "the store cannot be read")) });
        }
        self.inner.read(log, after, limit)
    }
    fn restrict<'a>(&'a self, room: &'a RoomName, r: &'a Restriction) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            self.refuse()?;
            self.inner.restrict(room, r).await
        })
    }
    fn restrictions<'a>(
        &'a self,
        room: &'a RoomName,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<Vec<Restriction>, Error>> {
        self.inner.restrictions(room, now_ms)
    }
}

fn failing() -> Arc<Failing> {
    Arc::new(Failing {
        inner: MemoryEngine::new(),
        down: AtomicBool::new(false),
        reads_fail: AtomicBool::new(false),
    })
}

async fn health(server: &Server) -> (u16, Value) {
    let response = reqwest::get(format!("{}/healthz", server.url)).await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_store_refuses_writes_loudly_and_recovers_by_itself() {
    let engine = failing();
    let server = start_on(engine.clone(), Config::default()).await;
    let mut alice = connect(&server, "alice", TransportKind::Ws).await;
    let mut bob = connect(&server, "bob", TransportKind::Sse).await;
    join(&mut alice, "lobby").await;
    join(&mut bob, "lobby").await;
    acked(&say(&mut alice, "lobby", "before", Scope::Room).await);
    assert_eq!(health(&server).await.0, 200);

    engine.down.store(true, Ordering::SeqCst);
    let (status, body) = health(&server).await;
    assert_eq!(
        (status, body["status"].as_str(), body["reason"].as_str()),
        (503, Some("unavailable"), Some("disk full"))
    );
    let refused = say(&mut alice, "lobby", "during", Scope::Room).await;
    assert!(matches!(refused, Reply::Error { code: ErrorCode::Unavailable, .. }), "{refused:?}");
    // What was stored before is still delivered.
    assert_eq!(chat_texts(&mut bob, 1).await, ["before"]);

    engine.down.store(false, Ordering::SeqCst);
    assert_eq!(health(&server).await.0, 200);
    acked(&say(&mut alice, "lobby", "after", Scope::Room).await);
    assert_eq!(chat_texts(&mut bob, 1).await, ["after"], "the refused publish was never delivered");
}

/// A WebSocket whose history read fails is told why and closed with 1011 (not 1008, which says
/// the client was removed): its client id still works, so it can reconnect from its cursor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_read_closes_a_websocket_with_a_server_error() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;

    let engine = failing();
    let config = Config { ring_capacity: 2, ..Config::default() };
    let server = start_on(engine.clone(), config).await;
    let http = reqwest::Client::new();
    let (client, cursor) = register_raw(&http, &server.url, "reader").await;
    let mut talker = connect(&server, "talker", TransportKind::ShortPoll).await;
    join(&mut talker, "lobby").await;
    let url = format!("{}/v1/clients/{client}/commands", server.url);
    post_json(&http, &url, &serde_json::json!({"type":"join","room":"lobby"})).await;
    // The reader's position falls behind the ring (2 events): reading it means asking the store.
    for i in 0..5 {
        acked(&say(&mut talker, "lobby", &format!("m{i}"), Scope::Room).await);
    }
    engine.reads_fail.store(true, Ordering::SeqCst);
    let ws = format!("{}/v1/clients/{client}/ws?cursor={cursor}", server.url.replacen("http", "ws", 1));
    let (mut socket, _) = tokio_tungstenite::connect_async(ws).await.unwrap();
    let mut error = None;
    let close = loop {
        match tokio::time::timeout(PATIENCE, socket.next()).await.expect("the server said nothing") {
            Some(Ok(Message::Text(text))) => error = Some(serde_json::from_str::<Value>(&text).unwrap()),
            Some(Ok(Message::Close(frame))) => break frame.expect("a close frame with a code"),
            Some(Ok(_)) => {}
            other => panic!("no close frame: {other:?}"),
        }
    };
    assert_eq!(u16::from(close.code), 1011, "{close:?}");
    assert_eq!(error.expect("an error frame first")["code"], "unavailable");
    engine.reads_fail.store(false, Ordering::SeqCst);
    let poll =
        http.get(format!("{}/v1/clients/{client}/poll?cursor={cursor}", server.url)).send().await.unwrap();
    assert_eq!(poll.status().as_u16(), 200, "the client id still works");
}
