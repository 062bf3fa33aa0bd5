//! Redis made unreachable mid-run, by a TCP proxy the test cuts: writes fail loudly (a publish
//! is refused `unavailable`, `/healthz` answers 503), nothing acked is lost, and the service
//! resumes by itself when Redis is reachable again. Needs Redis (see `cluster.rs`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quartet_client::{Client, Command, ErrorCode, Frame, Options, Reply, TransportKind};
use quartet_core::{Config, Hub};
use quartet_redis::RedisEngine;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

const PATIENCE: Duration = Duration::from_secs(15);

fn redis_address() -> String {
    quartet_redis::test_redis_url().trim_start_matches("redis://").trim_end_matches('/').to_owned()
}

/// A TCP proxy to Redis that can be cut (every connection closed, new ones refused) and mended.
struct Proxy {
    address: String,
    cut: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Proxy {
    async fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let (cut, links) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::new())));
        let (cut_flag, link_list) = (cut.clone(), links.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { return };
                if cut_flag.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is refused
                }
                let link = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(redis_address()).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                link_list.lock().unwrap().push(link.abort_handle());
            }
        });
        Proxy { address, cut, links }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn mend(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// Receives until `n` chat texts came; panics after [`PATIENCE`].
async fn chats(client: &mut Client, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while got.len() < n {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(!left.is_zero(), "only {got:?} arrived");
        got.extend(texts(&client.receive_n(1, left).await.unwrap()));
    }
    got
}

async fn health(http: &reqwest::Client, node: &str) -> u16 {
    http.get(format!("{node}/healthz")).send().await.unwrap().status().as_u16()
}

fn chat(text: &str) -> Command {
    Command::publish("lobby", "chat", &json!({ "text": text })).unwrap()
}

fn texts(frames: &[Frame]) -> Vec<String> {
    frames
        .iter()
        .filter_map(Frame::as_event)
        .filter(|e| e.event == "chat")
        .map(|e| e.data["text"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_refuses_writes_and_heals_by_itself() {
    if quartet_redis::test_redis().is_none() {
        return;
    }
    let proxy = Proxy::start().await;
    let prefix = format!("quartet-test-outage-{}", std::process::id());
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let engine = RedisEngine::connect(&format!("redis://{}", proxy.address), &prefix).await.unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        nodes.push(format!("http://{}", listener.local_addr().unwrap()));
        let hub = Hub::new(Arc::new(engine), Config::default());
        tokio::spawn(quartet_server::serve(listener, hub, std::future::pending()));
    }
    let http = reqwest::Client::new();
    let options =
        Options { poll_interval: Duration::from_millis(20), long_poll_wait: Duration::from_secs(2) };
    let mut alice =
        Client::connect_with(&nodes[0], "alice", TransportKind::Sse, options.clone()).await.unwrap();
    alice.command(Command::join("lobby").unwrap()).await.unwrap();
    let mut bob = Client::connect_with(&nodes[1], "bob", TransportKind::LongPoll, options).await.unwrap();
    bob.command(Command::join("lobby").unwrap()).await.unwrap();
    assert!(matches!(bob.command(chat("before")).await.unwrap(), Reply::Ack { .. }));
    assert_eq!(chats(&mut alice, 1).await, ["before"]);

    proxy.cut();
    let refused = bob.command(chat("during")).await.unwrap();
    assert!(matches!(refused, Reply::Error { code: ErrorCode::Unavailable, .. }), "{refused:?}");
    assert_eq!(health(&http, &nodes[1]).await, 503);

    proxy.mend();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    for node in &nodes {
        while health(&http, node).await != 200 {
            assert!(tokio::time::Instant::now() < deadline, "{node} did not recover by itself");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(matches!(bob.command(chat("after")).await.unwrap(), Reply::Ack { .. }));
    assert_eq!(
        chats(&mut alice, 1).await,
        ["after"],
        "the refused publish was never delivered; the next one was"
    );

    quartet_redis::delete_prefix(&format!("redis://{}", redis_address()), &prefix).await.unwrap();
}
