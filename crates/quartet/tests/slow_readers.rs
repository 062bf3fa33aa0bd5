//! What a client that stops reading costs the server: one batch, not what it missed. While a
//! room is flooded with 48 MB of events (a reading client gets every one), 24 of its clients
//! are away; they come back on 12 WebSockets and 12 SSE streams with their old cursors, far
//! behind, and read nothing. The server's resident memory, measured from outside on the real
//! binary, grows by one bounded batch per stalled reader at most.

mod common;

use std::time::Duration;

use common::Server;

use quartet_client::{Client, Command as Cmd, Options, Reply, TransportKind};
use serde_json::json;

const STALLED: usize = 24;
const EVENTS: usize = 3_000;
const EVENT_BYTES: usize = 16 * 1024;

/// The most the server's memory may grow while the stalled readers come back far behind: per
/// reader, one batch (256 KiB) in a buffer that may have doubled. (Measured here: +3 MiB. Without
/// the batch's byte bound each took what the ring held, ~1 MiB after the kernel's share: +27 MiB.)
const GROWTH_LIMIT: u64 = STALLED as u64 * 512 * 1024;

/// Resident memory of `pid`, bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap();
    kib.trim().trim_end_matches("kB").trim().parse::<u64>().unwrap() * 1024
}

/// A connection that sends `request` and then never reads, with a small receive buffer so the
/// server's writes wait on it soon.
async fn stalled(address: &str, request: String) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    let mut stream = socket.connect(address.parse().unwrap()).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_reader_costs_the_server_one_batch() {
    if !std::path::Path::new("/proc/self/status").exists() {
        eprintln!("skipped: no /proc to read the server's memory from");
        return;
    }
    let server = Server::start(&["serve", "--store", "memory", "--rate-limit", "100000"]);
    let url = server.url.clone();
    let address = server.address.clone();
    let http = reqwest::Client::new();
    let post = |url: String, body: serde_json::Value| {
        let http = http.clone();
        async move { http.post(url).json(&body).send().await.unwrap().json::<serde_json::Value>().await.unwrap() }
    };
    // The clients that will stall: in the room, with their cursors of before the flood.
    let mut stalled_clients = Vec::new();
    for i in 0..STALLED {
        let reg = post(format!("{url}/v1/clients"), json!({ "name": format!("stalled-{i}") })).await;
        let (client, cursor) = (reg["client"].as_str().unwrap(), reg["cursor"].as_str().unwrap());
        let joined =
            post(format!("{url}/v1/clients/{client}/commands"), json!({"type":"join","room":"flood"})).await;
        assert_eq!(joined["replies"][0]["type"], "joined");
        stalled_clients.push((client.to_owned(), cursor.to_owned()));
    }

    // The flood, read all along by one client: it gets every event.
    let options =
        Options { poll_interval: Duration::from_millis(20), long_poll_wait: Duration::from_secs(2) };
    let mut reading =
        Client::connect_with(&url, "reading", TransportKind::Ws, options.clone()).await.unwrap();
    assert!(matches!(reading.command(Cmd::join("flood").unwrap()).await.unwrap(), Reply::Joined { .. }));
    let reader = tokio::spawn(async move {
        let mut chats = 0;
        while chats < EVENTS {
            let frames = tokio::time::timeout(Duration::from_secs(30), reading.receive())
                .await
                .expect("the reader starved");
            chats +=
                frames.unwrap().iter().filter(|f| f.as_event().is_some_and(|e| e.event == "chat")).count();
        }
        chats
    });
    let mut publisher =
        Client::connect_with(&url, "publisher", TransportKind::ShortPoll, options).await.unwrap();
    assert!(matches!(publisher.command(Cmd::join("flood").unwrap()).await.unwrap(), Reply::Joined { .. }));
    let pad = "x".repeat(EVENT_BYTES);
    for n in (0..EVENTS).step_by(3) {
        let batch: Vec<Cmd> = (n..n + 3)
            .map(|n| Cmd::publish("flood", "chat", &json!({ "n": n, "pad": pad })).unwrap())
            .collect();
        for reply in publisher.commands(&batch).await.unwrap() {
            assert!(matches!(reply, Reply::Ack { .. }), "{reply:?}");
        }
    }
    assert_eq!(reader.await.unwrap(), EVENTS, "the reading client got every event");

    // The stalled clients come back far behind and stop reading: each finds a ring of 4 MiB of
    // events waiting. The peak of the server's memory is sampled every 10 ms from outside.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = server.pid();
    let before = rss(pid);
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before));
    let sampling = tokio::spawn({
        let peak = peak.clone();
        async move {
            loop {
                peak.fetch_max(rss(pid), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    });
    let mut keep = Vec::new();
    for (i, (client, cursor)) in stalled_clients.iter().enumerate() {
        let request = if i % 2 == 0 {
            format!(
                "GET /v1/clients/{client}/ws?cursor={cursor} HTTP/1.1\r\nHost: {address}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            )
        } else {
            format!("GET /v1/clients/{client}/sse?cursor={cursor} HTTP/1.1\r\nHost: {address}\r\n\r\n")
        };
        keep.push(stalled(&address, request).await);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    sampling.abort();
    let after = rss(pid);
    let grew = peak.load(std::sync::atomic::Ordering::Relaxed).max(after).saturating_sub(before);
    eprintln!(
        "server RSS: {} MiB before, {} MiB with {STALLED} stalled readers far behind (+{} MiB; limit +{} MiB)",
        before >> 20,
        after >> 20,
        grew >> 20,
        GROWTH_LIMIT >> 20
    );
    assert!(grew <= GROWTH_LIMIT, "the server grew by {} MiB for {STALLED} stalled readers", grew >> 20);
    drop(keep);
}
