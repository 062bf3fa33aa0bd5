//! A WebSocket client that stops reading while events keep coming, yet keeps sending (so the
//! heartbeat alone would not end it): the server must not wait on it forever nor buffer for it
//! without bound. Its writes block once the socket buffers are full; after the client timeout
//! the server gives up on the connection, the session expires like any silent client's, and
//! everyone else is served throughout.

mod common;

use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use quartet_client::TransportKind;
use quartet_core::Config;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn a_websocket_that_stops_reading_is_dropped_and_expires() {
    let config = Config {
        heartbeat: Duration::from_millis(200), // client timeout 400 ms
        command_rate: 1e9,
        command_burst: 1e9,
        ..Config::default()
    };
    let server = start(config).await;
    let http = reqwest::Client::new();

    // The slow client: registers, opens a WebSocket, joins, and never reads again.
    let reg: Value = http
        .post(format!("{}/v1/clients", server.url))
        .json(&json!({"name":"slow"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = format!(
        "{}/v1/clients/{}/ws?cursor={}",
        server.url.replacen("http", "ws", 1),
        reg["client"].as_str().unwrap(),
        reg["cursor"].as_str().unwrap()
    );
    let (mut slow, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    slow.send(Message::Text(json!({"type":"join","room":"flood"}).to_string().into())).await.unwrap();
    // It keeps proving life with application pings, and never reads a byte.
    let alive = tokio::spawn(async move {
        let ping = json!({"type":"ping"}).to_string();
        while slow.send(Message::Text(ping.clone().into())).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });

    let mut publisher = connect(&server, "fast", TransportKind::ShortPoll).await;
    join(&mut publisher, "flood").await;
    let online = || async {
        let room: Value =
            http.get(format!("{}/v1/rooms/flood", server.url)).send().await.unwrap().json().await.unwrap();
        room["online"].as_u64().unwrap()
    };
    assert_eq!(online().await, 2);

    // Up to ~48 MB of events, far more than the loopback socket buffers hold, until the server
    // has given up on the slow reader.
    let pad = "x".repeat(8 * 1024);
    let mut dropped = false;
    for _ in 0..850 {
        let batch = (0..7)
            .map(|_| json!({"type":"publish","room":"flood","event":"chat","to":"others","data":{"pad":pad}}))
            .collect();
        let replies = publisher.commands(batch).await.unwrap();
        assert!(replies.iter().all(|r| r["type"] == "ack"), "{replies:?}");
        if online().await == 1 {
            dropped = true;
            break;
        }
    }
    // If the flood ended first, the expiry may still be on its way. The publisher keeps showing
    // life meanwhile, so the one who leaves can only be the slow client.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !dropped && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(publisher.command(json!({"type":"ping"})).await.unwrap()["type"], "pong");
        dropped = online().await == 1;
    }
    assert!(dropped, "the slow client is still online: the server is waiting on it");
    assert_eq!(publisher.command(json!({"type":"ping"})).await.unwrap()["type"], "pong");
    let health = http.get(format!("{}/healthz", server.url)).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    alive.abort();
}
