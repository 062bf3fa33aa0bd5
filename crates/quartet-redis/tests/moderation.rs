//! Moderation across a cluster: a mute or kick made on one node holds on every node, including
//! one that loads the room afterwards, and a kicked client held by several nodes leaves once.
//! Hubs on one Redis prefix, driven directly (no HTTP: the transports are not the point here).
//! Needs Redis as `cluster.rs` does.

use std::sync::Arc;
use std::time::Duration;

use quartet_core::testing::wait;
use quartet_core::{Config, Grant, Hub, Reader, Role};
use quartet_protocol::ClientId;
use quartet_redis::RedisEngine;
use serde_json::{Value, json};

const PATIENCE: Duration = Duration::from_secs(10);

struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = quartet_redis::delete_prefix_blocking(&quartet_redis::test_redis_url(), &self.0);
    }
}

async fn node(redis: &str, prefix: &str) -> Hub {
    let engine = RedisEngine::connect(redis, prefix).await.unwrap();
    let hub = Hub::new(Arc::new(engine), Config::default());
    tokio::spawn(hub.clone().follow());
    hub
}

async fn client(hub: &Hub, name: &str, role: Role) -> (ClientId, String) {
    let reg = hub.register_as(name, None, Grant::new(role, None).unwrap()).await.unwrap();
    (ClientId::from_wire(&reg.client).unwrap(), reg.cursor)
}

async fn run(hub: &Hub, client: &ClientId, command: Value) -> Value {
    let replies = hub.execute(client, command.to_string().as_bytes()).await.unwrap();
    serde_json::to_value(&replies[0]).unwrap()
}

fn say(text: &str) -> Value {
    json!({"type":"publish","room":"lobby","event":"chat","data":text})
}

/// Runs `command` on `hub` until its reply has `field` = `want`, within [`PATIENCE`] (another
/// node hears of a moderation a moment after the moderator's ack).
async fn eventually(hub: &Hub, client: &ClientId, command: Value, field: &str, want: &str) -> Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let reply = run(hub, client, command.clone()).await;
        if reply[field] == want {
            return reply;
        }
        assert!(tokio::time::Instant::now() < deadline, "{command} never got {field} {want}: {reply}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every event `reader` gets within `quiet` of the last one.
async fn gather(reader: &mut Reader, quiet: Duration) -> Vec<Value> {
    let mut all = Vec::new();
    loop {
        let frames = wait(reader, quiet).await.unwrap();
        if frames.is_empty() {
            return all;
        }
        all.extend(frames.iter().map(|f| serde_json::from_slice::<Value>(&f.json).unwrap()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mute_and_a_kick_hold_on_every_node() {
    let Some(redis) = quartet_redis::test_redis() else { return };
    let prefix = format!("quartet-test-moderation-{}", std::process::id());
    let _cleanup = Cleanup(prefix.clone());
    let (a, b, c) = (node(&redis, &prefix).await, node(&redis, &prefix).await, node(&redis, &prefix).await);

    let (host, _) = client(&a, "alice", Role::Host).await;
    let (carol, carol_cursor) = client(&a, "carol", Role::Member).await;
    let (bob1, _) = client(&b, "bob", Role::Member).await;
    let (bob2, _) = client(&c, "bob", Role::Member).await;
    for (hub, who) in [(&a, &host), (&a, &carol), (&b, &bob1), (&c, &bob2)] {
        assert_eq!(run(hub, who, json!({"type":"join","room":"lobby"})).await["type"], "joined");
    }
    // bob1 is also held by C (a request through C adopted it): two nodes hold one session.
    assert_eq!(run(&c, &bob1, json!({"type":"ping"})).await["type"], "pong");
    let mut carol_reader = a.reader(&carol, Some(&carol_cursor)).await.unwrap();
    gather(&mut carol_reader, Duration::from_millis(300)).await;

    // A mute made on A is enforced on B and C once they hear of it.
    let ack = run(&a, &host, json!({"type":"mute","room":"lobby","user":"bob","seconds":60})).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    eventually(&b, &bob1, say("on B"), "code", "forbidden").await;
    eventually(&c, &bob2, say("on C"), "code", "forbidden").await;
    // A node that loads the room only now reads the mute from Redis: refused at once.
    let d = node(&redis, &prefix).await;
    let (bob3, _) = client(&d, "bob", Role::Member).await;
    assert_eq!(run(&d, &bob3, json!({"type":"join","room":"lobby"})).await["type"], "joined");
    assert_eq!(run(&d, &bob3, say("on D")).await["code"], "forbidden");
    // Unmuted on A: bob speaks again everywhere.
    run(&a, &host, json!({"type":"unmute","room":"lobby","user":"bob"})).await;
    eventually(&b, &bob1, say("back on B"), "type", "ack").await;
    eventually(&d, &bob3, say("back on D"), "type", "ack").await;
    gather(&mut carol_reader, Duration::from_millis(300)).await;

    // A kick made on A: each of bob's three clients leaves once, wherever it is held.
    let ack = run(&a, &host, json!({"type":"kick","room":"lobby","user":"bob","seconds":60})).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let seen = gather(&mut carol_reader, Duration::from_millis(500)).await;
    let leaves = seen.iter().filter(|e| e["event"] == "presence" && e["data"]["reason"] == "kicked").count();
    assert_eq!(leaves, 3, "one leave per client of bob, none twice: {seen:?}");
    for (hub, bob) in [(&b, &bob1), (&c, &bob1), (&c, &bob2), (&d, &bob3)] {
        eventually(hub, bob, say("still here?"), "code", "not_joined").await;
        let rejoin = run(hub, bob, json!({"type":"join","room":"lobby"})).await;
        assert_eq!(rejoin["code"], "forbidden", "{rejoin}");
    }
    assert_eq!(a.room_info("lobby").await.unwrap().online, 2, "alice and carol, counted cluster-wide");
}
