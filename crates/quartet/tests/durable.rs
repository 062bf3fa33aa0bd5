//! The durable default store, end to end through the binary: a server killed with SIGKILL right
//! after acking loses nothing, its clients carry on (same id, or registered again from their
//! cursor) with exactly what they missed, and seqs continue. And `quartet` with no flag keeps
//! its data in `quartet.db` in the working directory, while `--store memory` says it keeps
//! nothing.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::Server;

use quartet_client::{Client, Command as Cmd, Frame, Options, Reply, Scope, TransportKind};
use serde_json::{Value, json};

const PATIENCE: Duration = Duration::from_secs(10);

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("quartet-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn options() -> Options {
    Options { poll_interval: Duration::from_millis(20), long_poll_wait: Duration::from_secs(2) }
}

async fn get(url: &str) -> (u16, Value) {
    let response = reqwest::get(url).await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// Frames until `done` says enough, or panics after [`PATIENCE`].
async fn receive_until(client: &mut Client, done: impl Fn(&[Frame]) -> bool) -> Vec<Frame> {
    let mut frames = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !done(&frames) {
        match tokio::time::timeout_at(deadline, client.receive()).await {
            Ok(batch) => frames.extend(batch.unwrap()),
            Err(_) => panic!("{}: waited in vain; got {frames:#?}", client.kind()),
        }
    }
    frames
}

fn chats(frames: &[Frame]) -> Vec<String> {
    let chat = |f: &Frame| {
        f.as_event().filter(|e| e.event == "chat").map(|e| e.data["text"].as_str().unwrap().to_owned())
    };
    frames.iter().filter_map(chat).collect()
}

fn seqs(frames: &[Frame]) -> Vec<u64> {
    frames.iter().filter_map(Frame::as_event).map(|e| e.seq).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_loses_nothing_it_acked() {
    let dir = scratch("restart");
    let (server, banner) = Server::start_in(&dir, &["--store", "sqlite:chat.db"]);
    assert!(banner.iter().any(|l| l.contains("(durable")), "{banner:?}");
    let http = reqwest::Client::new();

    // Alice reads up to her own join, then stops reading: her cursor is from before it all.
    let mut alice =
        Client::connect_with(&server.url, "alice", TransportKind::LongPoll, options()).await.unwrap();
    alice.command(Cmd::join("lobby").unwrap()).await.unwrap();
    receive_until(&mut alice, |f| !f.is_empty()).await;
    let (_, _, alice_reg, before) = alice.disconnect();

    let mut bob = Client::connect_with(&server.url, "bob", TransportKind::Ws, options()).await.unwrap();
    bob.command(Cmd::join("lobby").unwrap()).await.unwrap();
    let mut acked = Vec::new();
    for i in 0..20 {
        let publish =
            Cmd::publish("lobby", "chat", &json!({"text": format!("m{i}")})).unwrap().id(format!("m{i}"));
        match bob.command(publish).await.unwrap() {
            Reply::Ack { seq, .. } => acked.push(seq),
            other => panic!("not acked: {other:?}"),
        }
    }
    let last = *acked.last().unwrap();
    let (_, _, bob_reg, bob_cursor) = bob.disconnect();
    server.kill();

    let (server, banner) = Server::start_in(&dir, &["--store", "sqlite:chat.db"]);
    assert!(banner.iter().any(|l| l.contains("2 client sessions restored")), "{banner:?}");
    let (_, room) = get(&format!("{}/v1/rooms/lobby", server.url)).await;
    assert_eq!(room["seq"], last, "the room's seq survived: {room}");
    assert_eq!(room["online"], 2, "both clients are still members: {room}");

    // Alice, same id, same cursor, another transport: bob's join and every acked message, once.
    let mut alice =
        Client::resume(http.clone(), server.url.clone(), alice_reg, TransportKind::Sse, &before, options())
            .await
            .unwrap();
    let missed = receive_until(&mut alice, |f| chats(f).len() >= 20).await;
    let expected: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    assert_eq!(chats(&missed), expected);
    let got = seqs(&missed);
    assert_eq!(got, (got[0]..=last).collect::<Vec<_>>(), "in seq order, nothing twice, nothing skipped");
    assert!(alice.receive_n(1, Duration::from_millis(300)).await.unwrap().is_empty(), "nothing more");

    // Carol registers anew with alice's old cursor: the same events, then her own join.
    let mut carol = Client::connect_from(
        http.clone(),
        &server.url,
        "carol",
        Some(&before),
        TransportKind::ShortPoll,
        options(),
    )
    .await
    .unwrap();
    let again = receive_until(&mut carol, |f| chats(f).len() >= 20).await;
    assert_eq!(chats(&again), expected);

    // Bob carries on: seqs continue after carol's join, and a resend from before the kill is
    // recognised (acked with its first seq, not stored twice).
    let mut bob =
        Client::resume(http, server.url.clone(), bob_reg, TransportKind::Ws, &bob_cursor, options())
            .await
            .unwrap();
    let resend = Cmd::publish("lobby", "chat", &json!({"text": "m19"})).unwrap().id("m19");
    assert_eq!(
        bob.command(resend).await.unwrap(),
        Reply::Ack { id: Some("m19".into()), room: "lobby".into(), seq: last }
    );
    let next =
        bob.command(Cmd::publish("lobby", "chat", &json!({"text": "after"})).unwrap().to(Scope::Room)).await;
    assert!(
        matches!(next.unwrap(), Reply::Ack { seq, .. } if seq == last + 2),
        "seqs continue (carol joined at {})",
        last + 1
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_flag_means_a_durable_file_here_and_memory_says_it_keeps_nothing() {
    let dir = scratch("default");
    let (server, banner) = Server::start_in(&dir, &[]);
    assert!(dir.join("quartet.db").is_file(), "no quartet.db in the working directory; banner {banner:?}");
    let (status, health) = get(&format!("{}/healthz", server.url)).await;
    assert_eq!(
        (status, &health["store"], &health["durable"]),
        (200, &json!("sqlite"), &json!(true)),
        "{health}"
    );
    drop(server);

    let memory = scratch("memory");
    let (server, banner) = Server::start_in(&memory, &["--store", "memory"]);
    assert!(banner.iter().any(|l| l.contains("NOTHING IS KEPT")), "{banner:?}");
    let (status, health) = get(&format!("{}/healthz", server.url)).await;
    assert_eq!(
        (status, &health["store"], &health["durable"]),
        (200, &json!("memory"), &json!(false)),
        "{health}"
    );
    assert!(health["keeps"].as_str().unwrap().contains("nothing"), "{health}");
    assert_eq!(std::fs::read_dir(&memory).unwrap().count(), 0, "--store memory wrote a file");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&memory);
}
