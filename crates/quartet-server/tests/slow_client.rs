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
