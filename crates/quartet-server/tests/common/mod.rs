//! Shared test harness: a real server on an ephemeral port, and helpers that read like the
//! scenario they drive.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use quartet_client::{Client, Command, Event, Frame, Options, Reply, Scope, TransportKind};
use quartet_core::{Config, Hub, MemoryEngine};
pub use quartet_server::Options as ServeOptions;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// How long a test waits for something that should arrive. Generous: CI machines are noisy,
/// and this bounds only failures, never a passing run.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A server running in this process on 127.0.0.1:<ephemeral>: one node, or (inside
/// [`on_a_cluster`]) three nodes on one Redis behind a proxy that sends every new connection to
/// a node picked at random.
pub struct Server {
    pub url: String,
    /// The HTTP client the helpers use: without connection reuse on a cluster, so that every
    /// request goes to a node picked at random.
    pub http: reqwest::Client,
    stop: Vec<oneshot::Sender<()>>,
    /// The cluster's Redis key prefix, deleted when the server is dropped.
    prefix: Option<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        for stop in self.stop.drain(..) {
            let _ = stop.send(());
        }
        if let Some(prefix) = &self.prefix {
            let _ = quartet_redis::delete_prefix_blocking(&quartet_redis::test_redis_url(), prefix);
        }
    }
}

tokio::task_local! {
    /// Set by [`on_a_cluster`]: `start` makes a cluster.
    static CLUSTER: bool;
}

/// Runs `scenario` with every `start` in it making a three-node cluster; prints one "skipped"
/// line instead when there is no Redis (a failure with `QUARTET_REQUIRE_REDIS=1`).
pub async fn on_a_cluster(scenario: impl std::future::Future<Output = ()>) {
    if quartet_redis::test_redis().is_none() {
        return;
    }
    CLUSTER.scope(true, scenario).await;
}

pub async fn start(config: Config) -> Server {
    start_with(config, ServeOptions::default()).await
}

/// [`start`], with the server's `options` (tokens).
pub async fn start_with(config: Config, options: ServeOptions) -> Server {
    if CLUSTER.try_with(|c| *c).unwrap_or(false) {
        return start_cluster(config, options).await;
    }
    start_on_with(Arc::new(MemoryEngine::new()), config, options).await
}

static CLUSTERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Three nodes on one Redis prefix, behind a proxy that picks a node at random per connection.
async fn start_cluster(config: Config, options: ServeOptions) -> Server {
    let n = CLUSTERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let prefix = format!("quartet-test-scenario-{}-{n}-{}", std::process::id(), rand::random::<u32>());
    let mut nodes = Vec::new();
    let mut stops = Vec::new();
    for _ in 0..3 {
        let engine =
            quartet_redis::RedisEngine::connect(&quartet_redis::test_redis_url(), &prefix).await.unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        nodes.push(listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        stops.push(stop);
        tokio::spawn(quartet_server::serve_with(
            listener,
            Hub::new(Arc::new(engine), config.clone()),
            options.clone(),
            async move {
                let _ = stopped.await;
            },
        ));
    }
    let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", proxy.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = proxy.accept().await {
            let node = nodes[rand::random_range(0..nodes.len())];
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(node).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    Server { url, http, stop: stops, prefix: Some(prefix) }
}

/// A server over `engine`.
pub async fn start_on(engine: Arc<dyn quartet_core::Engine>, config: Config) -> Server {
    start_on_with(engine, config, ServeOptions::default()).await
}

/// A server over `engine`, with `options`.
pub async fn start_on_with(
    engine: Arc<dyn quartet_core::Engine>,
    config: Config,
    options: ServeOptions,
) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hub = Hub::new(engine, config);
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(quartet_server::serve_with(listener, hub, options, async move {
        let _ = stopped.await;
    }));
    Server { url, http: reqwest::Client::new(), stop: vec![stop], prefix: None }
}

pub async fn start_default() -> Server {
    start(Config::default()).await
}

/// POSTs `body` as JSON to `url` and returns the JSON answer, whatever its status.
pub async fn post_json(http: &reqwest::Client, url: &str, body: &Value) -> Value {
    http.post(url).json(body).send().await.unwrap().json().await.unwrap()
}

/// Registers `name` over plain HTTP, without the client library: returns the client id and its
/// first cursor.
pub async fn register_raw(http: &reqwest::Client, url: &str, name: &str) -> (String, String) {
    let reg = post_json(http, &format!("{url}/v1/clients"), &json!({ "name": name })).await;
    (reg["client"].as_str().unwrap().to_owned(), reg["cursor"].as_str().unwrap().to_owned())
}

/// Fast polling, so tests do not wait on the poll interval.
pub fn options() -> Options {
    Options { poll_interval: Duration::from_millis(20), long_poll_wait: Duration::from_secs(2) }
}

pub async fn connect(server: &Server, name: &str, kind: TransportKind) -> Client {
    Client::connect_via(server.http.clone(), &server.url, name, kind, options()).await.unwrap()
}

/// Joins `room`; returns the reply's seq and online count.
pub async fn join(client: &mut Client, room: &str) -> (u64, usize) {
    match client.command(Command::join(room).unwrap()).await.unwrap() {
        Reply::Joined { seq, online, .. } => (seq, online),
        other => panic!("join refused: {other:?}"),
    }
}

/// A `chat` publish of `text` to `room` for `to`.
pub fn chat(room: &str, text: &str, to: Scope) -> Command {
    Command::publish(room, "chat", &json!({ "text": text })).unwrap().to(to)
}

/// Publishes `text` as a `chat` event; returns the reply.
pub async fn say(client: &mut Client, room: &str, text: &str, to: Scope) -> Reply {
    client.command(chat(room, text, to)).await.unwrap()
}

/// The seq of an ack; panics on any other reply.
pub fn acked(reply: &Reply) -> u64 {
    match reply {
        Reply::Ack { seq, .. } => *seq,
        other => panic!("not acked: {other:?}"),
    }
}

/// Receives until `n` frames matching `keep` have come; panics after [`PATIENCE`].
pub async fn collect(client: &mut Client, n: usize, keep: impl Fn(&Frame) -> bool) -> Vec<Frame> {
    let mut kept = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while kept.len() < n {
        let frames = tokio::time::timeout_at(deadline, client.receive())
            .await
            .unwrap_or_else(|_| {
                panic!("{}: only {} of {n} frames arrived: {kept:?}", client.kind(), kept.len())
            })
            .unwrap();
        kept.extend(frames.into_iter().filter(|f| keep(f)));
    }
    kept
}

pub fn is_chat(frame: &Frame) -> bool {
    frame.as_event().is_some_and(|e| e.event == "chat")
}

pub fn text(event: &Event) -> &str {
    event.data["text"].as_str().unwrap_or("")
}

/// The texts of `n` chat events, in arrival order.
pub async fn chat_texts(client: &mut Client, n: usize) -> Vec<String> {
    collect(client, n, is_chat).await.iter().map(|f| text(f.as_event().unwrap()).to_owned()).collect()
}

/// Asserts nothing more matching `keep` arrives within `window` (no duplicates, no leaks).
pub async fn assert_quiet(client: &mut Client, window: Duration, keep: impl Fn(&Frame) -> bool) {
    let extra = client.receive_n(1, window).await.unwrap();
    let extra: Vec<_> = extra.into_iter().filter(|f| keep(f)).collect();
    assert!(extra.is_empty(), "{}: unexpected frames {extra:?}", client.kind());
}
