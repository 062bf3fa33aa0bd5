//! Three quartet nodes on one Redis act as one server, with no sticky sessions: any request of
//! any client goes to any node. Each test uses a key prefix of its own. Needs Redis at
//! `QUARTET_TEST_REDIS` (default `redis://127.0.0.1:6379`); without one it prints a "skipped"
//! line, unless `QUARTET_REQUIRE_REDIS=1` (as `.ci/run` sets), where it fails.

use std::sync::Arc;
use std::time::Duration;

use quartet_client::{Client, Command, Frame, Options, Reply, TransportKind};
use quartet_core::{Config, Hub};
use quartet_protocol::Registration;
use quartet_protocol::api::{NewClient, Replies};
use quartet_redis::RedisEngine;
use serde_json::{Value, json};

const PATIENCE: Duration = Duration::from_secs(10);

/// Deletes a test's keys when it ends, pass or fail.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = quartet_redis::delete_prefix_blocking(&quartet_redis::test_redis_url(), &self.0);
    }
}

/// Three nodes on one prefix; `None` (after saying so) when there is no Redis to test with.
async fn cluster(name: &str) -> Option<(Vec<String>, Cleanup)> {
    cluster_with(name, Config::default()).await
}

/// [`cluster`] with every node on `config`.
async fn cluster_with(name: &str, config: Config) -> Option<(Vec<String>, Cleanup)> {
    let prefix = format!("quartet-test-{name}-{}-{}", std::process::id(), rand_suffix());
    let redis = quartet_redis::test_redis()?;
    let mut urls = Vec::new();
    for _ in 0..3 {
        let engine = RedisEngine::connect(&redis, &prefix).await.unwrap();
        let hub = Hub::new(Arc::new(engine), config.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        urls.push(format!("http://{}", listener.local_addr().unwrap()));
        tokio::spawn(quartet_server::serve(listener, hub, std::future::pending()));
    }
    Some((urls, Cleanup(prefix)))
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos()
}

fn options() -> Options {
    Options { poll_interval: Duration::from_millis(20), long_poll_wait: Duration::from_secs(2) }
}

async fn register(http: &reqwest::Client, node: &str, name: &str) -> Registration {
    let body = NewClient { name: Some(name.into()), cursor: None };
    let response = http.post(format!("{node}/v1/clients")).json(&body).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 201);
    response.json().await.unwrap()
}

async fn command(http: &reqwest::Client, node: &str, client: &str, command: Command) -> Reply {
    let url = format!("{node}/v1/clients/{client}/commands");
    let response = http.post(url).json(&command).send().await.unwrap();
    let mut body: Replies = response.json().await.unwrap();
    body.replies.remove(0)
}

fn chat(room: &str, text: &str) -> Command {
    Command::publish(room, "chat", &json!({ "text": text })).unwrap()
}

fn texts(frames: &[Frame]) -> Vec<String> {
    frames
        .iter()
        .filter_map(Frame::as_event)
        .filter(|e| e.event == "chat")
        .map(|e| e.data["text"].as_str().unwrap().to_owned())
        .collect()
}

/// One long poll on `node`; returns the events and the next cursor.
async fn long_poll(http: &reqwest::Client, node: &str, client: &str, cursor: &str) -> (Vec<Frame>, String) {
    let url = format!("{node}/v1/clients/{client}/long-poll?cursor={cursor}&wait_ms=2000");
    let body: Value = http.get(url).send().await.unwrap().json().await.unwrap();
    let events = serde_json::from_value(body["events"].clone()).unwrap_or_else(|e| panic!("{e}: {body}"));
    (events, body["cursor"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_node_serves_any_request() {
    let Some((nodes, _cleanup)) = cluster("any").await else { return };
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let http = reqwest::Client::new();

    // Alice registers on A and joins there; bob registers on C.
    let alice = register(&http, a, "alice").await;
    assert!(matches!(
        command(&http, a, &alice.client, Command::join("lobby").unwrap()).await,
        Reply::Joined { .. }
    ));
    let bob = register(&http, c, "bob").await;
    let joined = command(&http, b, &bob.client, Command::join("lobby").unwrap()).await;
    assert!(matches!(joined, Reply::Joined { online: 2, .. }), "online counts are cluster-wide: {joined:?}");

    // Bob publishes through every node in turn; alice long-polls on B and C alternately.
    let mut cursor = alice.cursor.clone();
    let mut got = Vec::new();
    for i in 0..6 {
        let node = &nodes[i % 3];
        assert!(matches!(
            command(&http, node, &bob.client, chat("lobby", &format!("m{i}"))).await,
            Reply::Ack { .. }
        ));
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !got.contains(&format!("m{i}")) {
            assert!(tokio::time::Instant::now() < deadline, "m{i} never arrived; got {got:?}");
            let poller = if got.len() % 2 == 0 { b } else { c };
            let (events, next) = long_poll(&http, poller, &alice.client, &cursor).await;
            got.extend(texts(&events));
            cursor = next;
        }
    }
    assert_eq!(got, (0..6).map(|i| format!("m{i}")).collect::<Vec<_>>(), "in order, nothing twice");

    // SSE on C while commands go to A (alice publishes to herself through A).
    let mut sse =
        Client::resume(http.clone(), c.clone(), alice.clone(), TransportKind::Sse, &cursor, options())
            .await
            .unwrap();
    assert!(matches!(
        command(&http, a, &alice.client, chat("lobby", "via A, read on C")).await,
        Reply::Ack { .. }
    ));
    let frames = sse.receive_n(1, PATIENCE).await.unwrap();
    assert_eq!(texts(&frames), ["via A, read on C"]);
    let cursor = sse.cursor().to_owned();
    drop(sse);

    // A WebSocket on B, resumed on C with the same cursor: nothing lost, nothing repeated.
    let mut ws =
        Client::resume(http.clone(), b.clone(), alice.clone(), TransportKind::Ws, &cursor, options())
            .await
            .unwrap();
    command(&http, c, &bob.client, chat("lobby", "w1")).await;
    assert_eq!(texts(&ws.receive_n(1, PATIENCE).await.unwrap()), ["w1"]);
    let cursor = ws.cursor().to_owned();
    drop(ws);
    command(&http, a, &bob.client, chat("lobby", "w2")).await;
    let mut ws =
        Client::resume(http.clone(), c.clone(), alice.clone(), TransportKind::Ws, &cursor, options())
            .await
            .unwrap();
    let frames = ws.receive_n(1, PATIENCE).await.unwrap();
    assert_eq!(texts(&frames), ["w2"]);
    assert!(ws.receive_n(1, Duration::from_millis(300)).await.unwrap().is_empty(), "nothing twice");

    // Leaving through B is seen by every node: the room's count drops everywhere.
    command(&http, b, &bob.client, Command::leave("lobby").unwrap()).await;
    for node in &nodes {
        let room: Value =
            http.get(format!("{node}/v1/rooms/lobby")).send().await.unwrap().json().await.unwrap();
        assert_eq!(room["online"], 1, "{node}: {room}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_spread_over_three_nodes_has_one_order() {
    let Some((nodes, _cleanup)) = cluster("order").await else { return };
    let http = reqwest::Client::new();
    let mut clients = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let mut client =
            Client::connect_with(node, &format!("n{i}"), TransportKind::Ws, options()).await.unwrap();
        client.command(Command::join("mixed").unwrap()).await.unwrap();
        clients.push(client);
    }
    // Every node's client publishes 10 messages, interleaved across nodes.
    for round in 0..10 {
        for (i, client) in clients.iter_mut().enumerate() {
            let reply = client.command(chat("mixed", &format!("n{i}-{round}"))).await.unwrap();
            assert!(matches!(reply, Reply::Ack { .. }), "{reply:?}");
        }
    }
    let mut orders = Vec::new();
    for client in &mut clients {
        let mut seen: Vec<(u64, String)> = Vec::new();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while seen.len() < 30 {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            assert!(!left.is_zero(), "only {} of 30 arrived on {}", seen.len(), client.id());
            for frame in client.receive_n(1, left).await.unwrap() {
                if let Some(e) = frame.as_event().filter(|e| e.event == "chat") {
                    seen.push((e.seq, e.data["text"].as_str().unwrap().to_owned()));
                }
            }
        }
        let seqs: Vec<u64> = seen.iter().map(|(s, _)| *s).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seq order: {seqs:?}");
        orders.push(seen);
    }
    assert_eq!(orders[0], orders[1]);
    assert_eq!(orders[1], orders[2]);
    let _ = http;
}

/// In a crowded room (here: more than one client), joins are folded into periodic counts, and the
/// count is the cluster's, not the node's that happens to announce it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowded_rooms_count_is_the_clusters() {
    let config =
        Config { presence_crowd: 1, presence_interval: Duration::from_millis(100), ..Config::default() };
    let Some((nodes, _cleanup)) = cluster_with("crowd", config).await else { return };
    let mut watcher = Client::connect_with(&nodes[0], "watcher", TransportKind::Ws, options()).await.unwrap();
    watcher.command(Command::join("stage").unwrap()).await.unwrap();
    let mut others = Vec::new();
    for (i, node) in nodes.iter().enumerate().chain(nodes.iter().enumerate()) {
        let mut client =
            Client::connect_with(node, &format!("v{i}"), TransportKind::LongPoll, options()).await.unwrap();
        client.command(Command::join("stage").unwrap()).await.unwrap();
        others.push(client);
    }
    // 1 watcher + 6 viewers over three nodes: some count must say 7.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut counts = Vec::new();
    while !counts.contains(&7) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(!left.is_zero(), "counts seen: {counts:?}");
        for frame in watcher.receive_n(1, left).await.unwrap() {
            if let Some(e) = frame.as_event().filter(|e| e.event == "presence" && e.data["action"] == "count")
            {
                counts.push(e.data["online"].as_u64().unwrap());
            }
        }
    }
}

#[tokio::test]
async fn retention_trims_each_log_to_the_events_kept() {
    use quartet_core::Engine;
    use quartet_core::engine::History;
    use quartet_core::entry::Draft;
    use quartet_protocol::{ClientId, EventName, LogId, RoomName, Scope, Seq, UserName};

    let prefix = format!("quartet-test-retention-{}-{}", std::process::id(), rand_suffix());
    let _cleanup = Cleanup(prefix.clone());
    let Some(redis) = quartet_redis::test_redis() else { return };
    let engine = RedisEngine::connect(&redis, &prefix).await.unwrap().retain_events(Some(5));
    let (lobby, other) =
        (LogId::Room(RoomName::parse("lobby").unwrap()), LogId::Room(RoomName::parse("other").unwrap()));
    let draft = |log: &LogId, i: u64| {
        let data = serde_json::value::RawValue::from_string(json!({ "i": i }).to_string()).unwrap();
        let user = UserName::parse("alice").unwrap();
        Draft::now(
            log.clone(),
            EventName::parse("chat").unwrap(),
            user,
            ClientId::from_random([1; 16]),
            Scope::Room,
            data,
        )
    };
    for i in 0..20 {
        assert_eq!(engine.append(&draft(&lobby, i)).await.unwrap(), Seq(i + 1));
    }
    engine.append(&draft(&other, 0)).await.unwrap();
    let seqs = |history: History| match history {
        History::Events(events) => events.iter().map(|e| e.seq.0).collect::<Vec<_>>(),
        History::None => panic!("redis keeps history"),
    };
    assert_eq!(seqs(engine.read(&lobby, Seq(0), 100).await.unwrap()), [16, 17, 18, 19, 20]);
    assert_eq!(seqs(engine.read(&other, Seq(0), 100).await.unwrap()), [1], "each log is trimmed on its own");
    assert_eq!(engine.head(&lobby).await.unwrap(), Seq(20), "seqs are never trimmed");
}

/// A cursor naming a base stored through one node resumes on another (the base is in Redis),
/// for its own user only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_on_a_base_made_on_one_node_resumes_on_another() {
    use quartet_core::testing::read_now;
    use quartet_protocol::{ClientId, Cursor, ErrorCode};

    let prefix = format!("quartet-test-bases-{}-{}", std::process::id(), rand_suffix());
    let _cleanup = Cleanup(prefix.clone());
    let Some(redis) = quartet_redis::test_redis() else { return };
    let node = |_: u8| async {
        Hub::new(Arc::new(RedisEngine::connect(&redis, &prefix).await.unwrap()), Config::default())
    };
    let (a, b) = (node(0).await, node(1).await);
    let reg = a.register("crowd").await.unwrap();
    let crowd = ClientId::from_wire(&reg.client).unwrap();
    for i in 0..8 {
        a.execute(&crowd, json!({"type":"join","room":format!("r{i}")}).to_string().as_bytes())
            .await
            .unwrap();
    }
    let mut reader = a.reader(&crowd, Some(&reg.cursor)).await.unwrap();
    read_now(&mut reader).await.unwrap(); // 8 rooms: a base is stored in Redis
    let publish = |text: &str| json!({"type":"publish","room":"r5","event":"chat","data":text}).to_string();
    let mut based = None;
    for i in 0..100 {
        a.execute(&crowd, publish(&format!("before{i}")).as_bytes()).await.unwrap();
        let frame = read_now(&mut reader).await.unwrap().pop().unwrap();
        if Cursor::decode(&frame.cursor).unwrap().base.is_some() {
            based = Some(frame.cursor);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cursor = based.expect("the reader's cursors name a base once Redis has it");
    drop(reader);
    a.execute(&crowd, publish("after").as_bytes()).await.unwrap();
    let mut elsewhere = b.reader(&crowd, Some(&cursor)).await.unwrap();
    let mut chats = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while chats.is_empty() && tokio::time::Instant::now() < deadline {
        for frame in read_now(&mut elsewhere).await.unwrap() {
            let event: Value = serde_json::from_slice(&frame.json).unwrap();
            if event["event"] == "chat" {
                chats.push(event["data"].as_str().unwrap().to_owned());
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(chats, ["after"], "exactly what came after the cursor, on the other node");
    let thief = b.register_from("thief", Some(&cursor)).await.unwrap_err();
    assert_eq!(thief.code, ErrorCode::BadCursor);
}
