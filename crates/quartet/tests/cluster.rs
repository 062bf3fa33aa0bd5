//! A node of a cluster killed mid-run (SIGKILL): its clients carry on on another node with their
//! client id and cursor, missing nothing and getting nothing twice, and a client that never
//! comes back expires everywhere after the timeout (its room hears the `leave`). Needs Redis at
//! `QUARTET_TEST_REDIS` (default `redis://127.0.0.1:6379`); without one it prints "skipped",
//! unless `QUARTET_REQUIRE_REDIS=1` (as `.ci/run` sets).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use quartet_client::{Client, Command as Cmd, Frame, Options, Reply, TransportKind};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_quartet");
const PATIENCE: Duration = Duration::from_secs(10);

/// A `quartet serve --redis` process; SIGKILLed when dropped.
struct Node {
    child: Child,
    url: String,
}

impl Node {
    fn start(prefix: &str) -> Option<Node> {
        let child = Command::new(BIN)
            .args([
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--redis",
                &quartet_redis::test_redis_url(),
                "--redis-prefix",
                prefix,
            ])
            .args(["--heartbeat-ms", "1000"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the quartet binary runs");
        // Owned at once, so the process is reaped on every path (Drop).
        let mut node = Node { child, url: String::new() };
        let mut lines = BufReader::new(node.child.stdout.take().unwrap()).lines();
        node.url = lines.next()?.ok()?.strip_prefix("quartet listening on ")?.to_owned();
        std::thread::spawn(move || for _ in lines {});
        Some(node)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn options() -> Options {
    Options { poll_interval: Duration::from_millis(20), long_poll_wait: Duration::from_secs(2) }
}

fn chat(text: &str) -> Cmd {
    Cmd::publish("lobby", "chat", &json!({ "text": text })).unwrap()
}

/// Frames until `done`, or panics after [`PATIENCE`].
async fn until(client: &mut Client, done: impl Fn(&[Frame]) -> bool) -> Vec<Frame> {
    let mut frames = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !done(&frames) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(!left.is_zero(), "waited in vain: {frames:#?}");
        frames.extend(client.receive_n(1, left).await.unwrap());
    }
    frames
}

fn texts(frames: &[Frame]) -> Vec<String> {
    let chat = |e: &&quartet_client::Event| e.event == "chat";
    frames
        .iter()
        .filter_map(Frame::as_event)
        .filter(chat)
        .map(|e| e.data["text"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_clients_carry_on_elsewhere_or_expire_everywhere() {
    let prefix = format!("quartet-test-kill-{}", std::process::id());
    if quartet_redis::test_redis().is_none() {
        return;
    }
    let a = Node::start(&prefix).expect("a node starts");
    let b = Node::start(&prefix).expect("a second node starts");
    let http = reqwest::Client::new();

    let mut alice = Client::connect_with(&a.url, "alice", TransportKind::Ws, options()).await.unwrap();
    alice.command(Cmd::join("lobby").unwrap()).await.unwrap();
    let mut carol = Client::connect_with(&a.url, "carol", TransportKind::Ws, options()).await.unwrap();
    carol.command(Cmd::join("lobby").unwrap()).await.unwrap();
    let mut bob = Client::connect_with(&b.url, "bob", TransportKind::LongPoll, options()).await.unwrap();
    let joined = bob.command(Cmd::join("lobby").unwrap()).await.unwrap();
    assert!(matches!(joined, Reply::Joined { online: 3, .. }), "{joined:?}");

    for i in 0..5 {
        assert!(matches!(bob.command(chat(&format!("m{i}"))).await.unwrap(), Reply::Ack { .. }));
    }
    let first = until(&mut alice, |f| texts(f).len() == 5).await;
    assert_eq!(texts(&first), ["m0", "m1", "m2", "m3", "m4"]);
    let (_, _, alice_reg, cursor) = alice.disconnect();
    drop(carol); // carol's connection dies with the node, and she never comes back
    drop(a); // SIGKILL

    for i in 5..10 {
        assert!(matches!(bob.command(chat(&format!("m{i}"))).await.unwrap(), Reply::Ack { .. }));
    }
    // Alice: same id, same cursor, on B.
    let mut alice =
        Client::resume(http.clone(), b.url.clone(), alice_reg, TransportKind::Sse, &cursor, options())
            .await
            .unwrap();
    let rest = until(&mut alice, |f| texts(f).len() == 5).await;
    assert_eq!(texts(&rest), ["m5", "m6", "m7", "m8", "m9"], "nothing lost, nothing twice");

    // Bob stays alive (a long poll held open); carol expires everywhere after the timeout (2 s):
    // the room hears her leave.
    let bob_alive = tokio::spawn(async move { while bob.receive().await.is_ok() {} });
    let leave = until(&mut alice, |f| {
        f.iter()
            .filter_map(Frame::as_event)
            .any(|e| e.event == "presence" && e.from == "carol" && e.data["action"] == "leave")
    })
    .await;
    let online =
        leave.iter().filter_map(Frame::as_event).find(|e| e.from == "carol").unwrap().data["online"].clone();
    assert_eq!(online, 2, "alice and bob remain");
    let room: Value =
        http.get(format!("{}/v1/rooms/lobby", b.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(room["online"], 2, "{room}");
    bob_alive.abort();

    quartet_redis::delete_prefix(&quartet_redis::test_redis_url(), &prefix).await.unwrap();
}
