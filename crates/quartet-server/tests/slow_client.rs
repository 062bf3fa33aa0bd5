//! Clients that stop reading while events keep coming: the server must not wait on them forever
//! nor buffer for them without bound. Their writes block once the socket buffers are full;
//! after the client timeout the server gives up on the connection, the session expires like any
//! silent client's, and everyone else is served throughout.
//!
//! - WebSocket: the client keeps sending pings (so the heartbeat alone would not end it).
//! - SSE: an open stream counts as alive, so without the write guard the stalled stream would
//!   hold its session forever.

mod common;

use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use quartet_client::{Command, Reply, Scope, TransportKind};
use quartet_core::Config;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

/// Heartbeat 200 ms: the client timeout (and the write patience) is 400 ms.
fn config() -> Config {
    Config {
        heartbeat: Duration::from_millis(200),
        command_rate: 1e9,
        command_burst: 1e9,
        ..Config::default()
    }
}

/// Floods room `flood` (where the stalled client already is) until only the publisher is left
/// in it; panics if the stalled client is still there after the flood and [`PATIENCE`].
/// Returns the server's count of stalled connections given up on.
async fn flood_until_the_stalled_client_is_gone(server: &Server, http: &reqwest::Client) -> u64 {
    let mut publisher = connect(server, "fast", TransportKind::ShortPoll).await;
    join(&mut publisher, "flood").await;
    let online = || async {
        let room: Value =
            http.get(format!("{}/v1/rooms/flood", server.url)).send().await.unwrap().json().await.unwrap();
        room["online"].as_u64().unwrap()
    };
    assert_eq!(online().await, 2);

    // Up to ~48 MB of events, far more than the loopback socket buffers hold.
    let pad = "x".repeat(8 * 1024);
    let mut gone = false;
    for _ in 0..850 {
        let batch: Vec<Command> = (0..7)
            .map(|_| Command::publish("flood", "chat", &json!({ "pad": pad })).unwrap().to(Scope::Others))
            .collect();
        let replies = publisher.commands(&batch).await.unwrap();
        replies.iter().for_each(|reply| _ = acked(reply));
        if online().await == 1 {
            gone = true;
            break;
        }
    }
    // If the flood ended first, the expiry may still be on its way. The publisher keeps showing
    // life meanwhile, so the one who leaves can only be the stalled client.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !gone && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(publisher.command(Command::Ping).await.unwrap(), Reply::Pong);
        gone = online().await == 1;
    }
    assert!(gone, "the stalled client is still online: the server is waiting on it");
    assert_eq!(publisher.command(Command::Ping).await.unwrap(), Reply::Pong);
    let health = http.get(format!("{}/healthz", server.url)).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let metrics = http.get(format!("{}/metrics", server.url)).send().await.unwrap().text().await.unwrap();
    let stalled = metrics.lines().find_map(|l| l.strip_prefix("quartet_tcp_stalled_total "));
    stalled.unwrap_or_else(|| panic!("no stalled counter in {metrics}")).parse().unwrap()
}

#[tokio::test]
async fn a_websocket_that_stops_reading_is_dropped_and_expires() {
    let server = start(config()).await;
    let http = reqwest::Client::new();
    let (client, cursor) = register_raw(&http, &server.url, "slow").await;
    let url = format!("{}/v1/clients/{client}/ws?cursor={cursor}", server.url.replacen("http", "ws", 1));
    let (mut slow, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    slow.send(Message::Text(json!({"type":"join","room":"flood"}).to_string().into())).await.unwrap();
    // It keeps proving life with application pings, and never reads a byte.
    let alive = tokio::spawn(async move {
        let ping = json!({"type":"ping"}).to_string();
        while slow.send(Message::Text(ping.clone().into())).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    // It shows life, so only the connection's write guard can have let it go.
    assert!(flood_until_the_stalled_client_is_gone(&server, &http).await >= 1);
    alive.abort();
}

#[tokio::test]
async fn an_sse_stream_that_stops_reading_is_dropped_and_expires() {
    let server = start(config()).await;
    let http = reqwest::Client::new();
    let (client, cursor) = register_raw(&http, &server.url, "slow").await;
    let url = format!("{}/v1/clients/{client}/commands", server.url);
    let reply = post_json(&http, &url, &json!({"type":"join","room":"flood"})).await;
    assert_eq!(reply["replies"][0]["type"], "joined", "{reply}");
    // A raw stream request, never read from.
    let address = server.url.trim_start_matches("http://");
    let mut slow = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "GET /v1/clients/{client}/sse?cursor={cursor} HTTP/1.1\r\nHost: {address}\r\nAccept: text/event-stream\r\n\r\n"
    );
    slow.write_all(request.as_bytes()).await.unwrap();
    // Only the connection's write guard can end an SSE stream that is open but not read.
    assert!(flood_until_the_stalled_client_is_gone(&server, &http).await >= 1);
    drop(slow);
}

/// A WebSocket that reads, but slower than its room publishes, stays behind; after
/// `slow_after` the server closes it with `slow` (close 1008) instead of feeding it forever.
/// Resumed from the cursor of the last event it got, it gets every chat exactly once, in order;
/// likes it fell behind on were skipped (counted), and a client that keeps up lost nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_that_stays_behind_is_closed_slow_and_resumes_without_loss() {
    use futures_util::StreamExt;
    const CHATS: u64 = 600;
    let server = start(Config {
        slow_after: Duration::from_millis(500),
        ring_capacity: 100_000,
        ring_bytes: 512 * 1024 * 1024,
        command_rate: 1e9,
        command_burst: 1e9,
        ..Config::default()
    })
    .await;
    let http = reqwest::Client::new();
    let (client, cursor) = register_raw(&http, &server.url, "slow").await;
    let commands = format!("{}/v1/clients/{client}/commands", server.url);
    assert_eq!(
        post_json(&http, &commands, &json!({"type":"join","room":"flood"})).await["replies"][0]["type"],
        "joined"
    );
    let ws_url = |cursor: &str| {
        format!("{}/v1/clients/{client}/ws?cursor={cursor}", server.url.replacen("http", "ws", 1))
    };
    // A small receive buffer, so the server's writes wait on this client's reading.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(32 * 1024).unwrap();
    let stream = socket.connect(server.url.trim_start_matches("http://").parse().unwrap()).await.unwrap();
    let (mut slow, _) = tokio_tungstenite::client_async(ws_url(&cursor), stream).await.unwrap();
    let mut keeping_up = connect(&server, "fast", TransportKind::Ws).await;
    join(&mut keeping_up, "flood").await;
    // It reads all along: (chats, likes) it got.
    let fast = tokio::spawn(async move {
        let (mut chats, mut likes) = (0, 0);
        while chats + likes < 2 * CHATS {
            let frames =
                tokio::time::timeout(PATIENCE, keeping_up.receive()).await.expect("the fast reader starved");
            for frame in frames.unwrap() {
                match frame.as_event().map(|e| e.event.as_str()) {
                    Some("chat") => chats += 1,
                    Some("like") => likes += 1,
                    _ => {}
                }
            }
        }
        (chats, likes)
    });

    // Chats and likes of 8 KiB, as fast as the server takes them.
    let mut publisher = connect(&server, "pub", TransportKind::ShortPoll).await;
    join(&mut publisher, "flood").await;
    let pad = "x".repeat(8 * 1024);
    let publishing = tokio::spawn(async move {
        for n in (0..CHATS).step_by(3) {
            let batch: Vec<Command> = (n..n + 3)
                .flat_map(|n| {
                    [
                        Command::publish("flood", "chat", &json!({ "n": n, "pad": pad })).unwrap(),
                        Command::publish("flood", "like", &json!({ "n": n, "pad": pad }))
                            .unwrap()
                            .droppable(),
                    ]
                })
                .collect();
            publisher.commands(&batch).await.unwrap().iter().for_each(|reply| _ = acked(reply));
        }
    });

    // The slow reader: one frame every 10 ms (about 800 KB/s) until the server gives up on it.
    let mut chats = Vec::new();
    let mut last_cursor = cursor.clone();
    let mut closed_slow = false;
    let deadline = tokio::time::Instant::now() + PATIENCE * 3;
    while let Some(message) =
        tokio::time::timeout_at(deadline, slow.next()).await.expect("the server never closed the slow socket")
    {
        match message.unwrap() {
            Message::Text(text) => {
                let frame: Value = serde_json::from_str(&text).unwrap();
                if frame["type"] == "error" {
                    assert_eq!(frame["code"], "slow", "{frame}");
                    closed_slow = true;
                } else if frame["type"] == "event" {
                    if frame["event"] == "chat" {
                        chats.push(frame["data"]["n"].as_u64().unwrap());
                    }
                    last_cursor = frame["cursor"].as_str().unwrap().to_owned();
                }
            }
            Message::Close(close) => {
                assert_eq!(close.map(|c| u16::from(c.code)), Some(1008));
                break;
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(closed_slow, "the socket ended without saying `slow`");
    publishing.await.unwrap();

    // Resumed from the cursor: the rest of the chats, none twice.
    let (mut resumed, _) = tokio_tungstenite::connect_async(ws_url(&last_cursor)).await.unwrap();
    while chats.len() < CHATS as usize {
        let message = tokio::time::timeout(PATIENCE, resumed.next()).await.expect("the rest never came");
        if let Message::Text(text) = message.unwrap().unwrap() {
            let frame: Value = serde_json::from_str(&text).unwrap();
            if frame["event"] == "chat" {
                chats.push(frame["data"]["n"].as_u64().unwrap());
            }
        }
    }
    assert_eq!(chats, (0..CHATS).collect::<Vec<_>>(), "every chat once, in order");

    // The client that kept up got every chat and every like.
    assert_eq!(fast.await.unwrap(), (CHATS, CHATS), "a reader that keeps up loses no droppable event");
    let metrics = http.get(format!("{}/metrics", server.url)).send().await.unwrap().text().await.unwrap();
    let counter = |name: &str| -> u64 {
        metrics.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse().ok()).unwrap()
    };
    assert!(counter("quartet_streams_slow_total ") >= 1, "{metrics}");
    assert!(counter("quartet_events_shed_total ") >= 1, "the slow socket skipped likes while behind");
}

/// A WebSocket peer that goes silent (it reads, but answers no ping and sends nothing) is told
/// why, with close 1008, once the client timeout has passed since the last frame it sent, and
/// not a heartbeat later.
#[tokio::test]
async fn a_silent_websocket_is_closed_on_time_with_a_reason() {
    use tokio::io::AsyncReadExt;
    let config = Config { heartbeat: Duration::from_secs(1), ..Config::default() };
    let timeout = config.client_timeout();
    let server = start(config).await;
    let http = reqwest::Client::new();
    let (client, cursor) = register_raw(&http, &server.url, "quiet").await;
    let commands = format!("{}/v1/clients/{client}/commands", server.url);
    let joined = post_json(&http, &commands, &json!({"type":"join","room":"hush"})).await;
    assert_eq!(joined["replies"][0]["type"], "joined", "{joined}");
    let address = server.url.trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
    let request = format!(
        "GET /v1/clients/{client}/ws?cursor={cursor} HTTP/1.1\r\nHost: {address}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let started = tokio::time::Instant::now();
    // Read everything until the server closes: the 101, pings, and the close frame at the end.
    let mut received = Vec::new();
    tokio::time::timeout(timeout * 3, socket.read_to_end(&mut received))
        .await
        .expect("never closed")
        .unwrap();
    let elapsed = started.elapsed();
    let head_end = received.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let mut frames = &received[head_end..];
    let mut close = None;
    while frames.len() >= 2 {
        // Server frames: unmasked; a 7-bit length, or 126 and a 16-bit one (the event of its
        // own join is longer than 125 bytes).
        let opcode = frames[0] & 0x0f;
        let (header, len) = match frames[1] & 0x7f {
            126 => (4, u16::from_be_bytes([frames[2], frames[3]]) as usize),
            len => (2, len as usize),
        };
        if opcode == 0x8 {
            let payload = &frames[header..header + len];
            close = Some((
                u16::from_be_bytes([payload[0], payload[1]]),
                String::from_utf8_lossy(&payload[2..]).into_owned(),
            ));
        }
        frames = &frames[(header + len).min(frames.len())..];
    }
    let (code, reason) = close.expect("no close frame: the server dropped the socket without saying why");
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("no sign of life"), "{reason}");
    assert!(elapsed >= timeout, "closed after {elapsed:?}, before the timeout {timeout:?}");
    assert!(elapsed < timeout + Duration::from_millis(500), "closed after {elapsed:?}: a heartbeat late");
    // Silent for the whole timeout, the client is gone: its room hears it leave at the reaper's
    // next turn (every quarter heartbeat), not a timeout later.
    let closed = tokio::time::Instant::now();
    loop {
        let room: Value =
            http.get(format!("{}/v1/rooms/hush", server.url)).send().await.unwrap().json().await.unwrap();
        if room["online"] == 0 {
            break;
        }
        assert!(
            closed.elapsed() < Duration::from_secs(1),
            "still in its room {:?} after the close",
            closed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
