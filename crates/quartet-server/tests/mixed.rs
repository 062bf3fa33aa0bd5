//! Four clients, one per transport, in one room: they all end with the same ordered events, and
//! a cursor taken on one transport resumes on another.

mod common;

use std::time::Duration;

use common::*;
use quartet_client::{Client, Event, Scope, TransportKind};

/// Everything after the last join, as (seq, from, event, text).
fn summary(events: &[Event]) -> Vec<(u64, String, String, String)> {
    events.iter().map(|e| (e.seq, e.from.clone(), e.event.clone(), text(e).to_owned())).collect()
}

/// Each of four clients, one per transport, publishes; all four see one identical order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_transports_share_one_order() {
    let server = start_default().await;
    let mut clients = Vec::new();
    for kind in TransportKind::ALL {
        let mut client = connect(&server, kind.name(), kind).await;
        join(&mut client, "mixed").await;
        clients.push(client);
    }
    // Seqs 1..=4 are the four joins; interleave publishes from all four clients.
    for round in 0..5 {
        for client in clients.iter_mut() {
            let me = client.kind().name();
            let ack = say(client, "mixed", &format!("{me}-{round}"), Scope::Room).await;
            acked(&ack);
        }
    }
    let mut seen = Vec::new();
    for client in clients.iter_mut() {
        let frames = collect(client, 20, is_chat).await;
        seen.push(summary(&frames.iter().map(|f| f.as_event().unwrap().clone()).collect::<Vec<_>>()));
    }
    assert_eq!(seen[0].len(), 20);
    assert_eq!(seen[0].first().unwrap().0, 5, "chat starts after the four joins");
    for (client, list) in clients.iter().zip(&seen) {
        assert_eq!(list, &seen[0], "{} differs from short-poll", client.kind());
    }
}

/// A cursor from each transport resumes on the next one: short-poll → long-poll → sse → ws →
/// short-poll, with nothing lost and nothing repeated at any hand-over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_resumes_on_any_transport() {
    let server = start_default().await;
    let mut speaker = connect(&server, "speaker", TransportKind::Ws).await;
    let mut reader = connect(&server, "reader", TransportKind::ShortPoll).await;
    join(&mut speaker, "relay").await;
    join(&mut reader, "relay").await;
    let mut received = Vec::new();
    let mut sent = Vec::new();
    let hops = [TransportKind::LongPoll, TransportKind::Sse, TransportKind::Ws, TransportKind::ShortPoll];
    for (hop, next) in hops.into_iter().enumerate() {
        // Two events while connected on the current transport...
        for i in 0..2 {
            let line = format!("hop{hop}-live{i}");
            say(&mut speaker, "relay", &line, Scope::Room).await;
            sent.push(line);
        }
        received.extend(chat_texts(&mut reader, 2).await);
        // ...then disconnect, miss two, and resume on the next transport from the cursor.
        let (http, base, registration, cursor) = reader.disconnect();
        for i in 0..2 {
            let line = format!("hop{hop}-missed{i}");
            say(&mut speaker, "relay", &line, Scope::Room).await;
            sent.push(line);
        }
        reader = Client::resume(http, base, registration, next, &cursor, options()).await.unwrap();
        received.extend(chat_texts(&mut reader, 2).await);
    }
    assert_eq!(received, sent);
    assert_quiet(&mut reader, Duration::from_millis(300), is_chat).await;
}
