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
use quartet_core::{Config, Engine, MemoryEngine};
use quartet_protocol::{Epoch, Error, LogId, Seq};
use serde_json::Value;

/// The memory engine, with a switch that makes every write fail as a full disk would.
struct Failing {
    inner: MemoryEngine,
    down: AtomicBool,
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
        self.inner.read(log, after, limit)
    }
}

async fn health(server: &Server) -> (u16, Value) {
    let response = reqwest::get(format!("{}/healthz", server.url)).await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_store_refuses_writes_loudly_and_recovers_by_itself() {
    let engine = Arc::new(Failing { inner: MemoryEngine::new(), down: AtomicBool::new(false) });
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
