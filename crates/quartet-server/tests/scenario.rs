//! One scenario suite, run unchanged over each of the four transports against a real listening
//! server, through `quartet-client`. Each scenario is an `async fn(TransportKind)`; the macro at
//! the bottom makes one test per scenario per transport (`short_poll::scopes`, `ws::scopes`, ...).

mod common;

use std::time::Duration;

use common::*;
use quartet_client::{Client, Command, Frame, Reply, Scope, TransportKind};
use quartet_core::Config;
use serde_json::json;

/// A client receives its own and others' publishes, in seq order.
async fn receives_in_seq_order(kind: TransportKind) {
    let server = start_default().await;
    let mut alice = connect(&server, "alice", kind).await;
    let mut bob = connect(&server, "bob", kind).await;
    join(&mut alice, "lobby").await;
    join(&mut bob, "lobby").await;
    for i in 0..5 {
        say(&mut alice, "lobby", &format!("a{i}"), Scope::Room).await;
        say(&mut bob, "lobby", &format!("b{i}"), Scope::Room).await;
    }
    let expected: Vec<String> = (0..5).flat_map(|i| [format!("a{i}"), format!("b{i}")]).collect();
    for client in [&mut alice, &mut bob] {
        let frames = collect(client, 10, is_chat).await;
        let texts: Vec<&str> = frames.iter().map(|f| text(f.as_event().unwrap())).collect();
        assert_eq!(texts, expected, "{kind}");
        let seqs: Vec<u64> = frames.iter().map(|f| f.as_event().unwrap().seq).collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{kind}: seqs {seqs:?}");
    }
}

/// `others` skips the sender; `self` reaches only the sender.
async fn scopes(kind: TransportKind) {
    let server = start_default().await;
    let mut alice = connect(&server, "alice", kind).await;
    let mut bob = connect(&server, "bob", kind).await;
    join(&mut alice, "lobby").await;
    join(&mut bob, "lobby").await;
    say(&mut alice, "lobby", "to-others", Scope::Others).await;
    say(&mut alice, "lobby", "to-self", Scope::SelfOnly).await;
    say(&mut alice, "lobby", "to-room", Scope::Room).await;
    assert_eq!(chat_texts(&mut alice, 2).await, ["to-self", "to-room"], "{kind}");
    assert_eq!(chat_texts(&mut bob, 2).await, ["to-others", "to-room"], "{kind}");
    assert_quiet(&mut alice, Duration::from_millis(300), is_chat).await;
    assert_quiet(&mut bob, Duration::from_millis(300), is_chat).await;
}

/// Direct messages arrive in `@user`, from the sender, acknowledged with the inbox seq.
async fn direct_messages(kind: TransportKind) {
    let server = start_default().await;
    let mut alice = connect(&server, "alice", kind).await;
    let mut bob = connect(&server, "bob", kind).await;
    let direct = Command::direct("bob", "chat", &json!({"text":"psst"})).unwrap().id("d1");
    let ack = alice.command(direct).await.unwrap();
    let Reply::Ack { id, room, seq } = ack else { panic!("not acked: {ack:?}") };
    assert_eq!((id.as_deref(), room.as_str()), (Some("d1"), "@bob"));
    let frames = collect(&mut bob, 1, is_chat).await;
    let event = frames[0].as_event().unwrap();
    assert_eq!((event.room.as_str(), event.from.as_str(), text(event)), ("@bob", "alice", "psst"), "{kind}");
    assert_eq!(event.seq, seq);
    assert_quiet(&mut alice, Duration::from_millis(200), is_chat).await;
}

/// Every publish is acked with its seq; resending the same id is acked again, delivered once.
async fn acks_and_idempotent_resend(kind: TransportKind) {
    let server = start_default().await;
    let mut alice = connect(&server, "alice", kind).await;
    join(&mut alice, "lobby").await;
    let first = alice.command(chat("lobby", "once", Scope::Room).id("m1")).await.unwrap();
    let again = alice.command(chat("lobby", "once", Scope::Room).id("m1")).await.unwrap();
    acked(&first);
    assert_eq!(first, again, "{kind}");
    let frames = collect(&mut alice, 1, is_chat).await;
    assert_eq!(frames[0].as_event().unwrap().seq, acked(&first));
    assert_quiet(&mut alice, Duration::from_millis(300), is_chat).await;
}

/// Join and leave are presence events carrying the online count.
async fn presence_join_and_leave(kind: TransportKind) {
    let server = start_default().await;
    let mut alice = connect(&server, "alice", kind).await;
    let mut bob = connect(&server, "bob", kind).await;
    join(&mut alice, "lobby").await;
    let (_, online) = join(&mut bob, "lobby").await;
    assert_eq!(online, 2);
    let left = bob.command(Command::leave("lobby").unwrap()).await.unwrap();
    assert_eq!(left, Reply::Left { room: "lobby".into() });
    let frames = collect(&mut alice, 3, |f| f.as_event().is_some_and(|e| e.event == "presence")).await;
    let seen: Vec<(String, String, u64)> = frames
        .iter()
        .map(|f| {
            let e = f.as_event().unwrap();
            (
                e.from.clone(),
                e.data["action"].as_str().unwrap().to_owned(),
                e.data["online"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected = [("alice", "join", 1), ("bob", "join", 2), ("bob", "leave", 1)];
    assert_eq!(seen, expected.map(|(a, b, c)| (a.to_owned(), b.to_owned(), c)), "{kind}");
}

/// A connected client stays alive over several timeouts; once it disconnects without a
/// goodbye, it is removed within the timeout and the room hears its `leave`.
async fn heartbeat_expiry(kind: TransportKind) {
    let config = Config { heartbeat: Duration::from_millis(300), ..Config::default() };
    let server = start(config.clone()).await;
    let mut options = options();
    options.long_poll_wait = Duration::from_millis(200);
    // The watcher holds an SSE stream: alive without reading, unlike a WebSocket, which must
    // answer pings, or a poller, which must keep asking.
    let mut watcher =
        Client::connect_with(&server.url, "watcher", TransportKind::Sse, options.clone()).await.unwrap();
    let mut idle = Client::connect_with(&server.url, "idle", kind, options).await.unwrap();
    join(&mut watcher, "lobby").await;
    join(&mut idle, "lobby").await;
    // Keep receiving on `idle` for three timeouts: its transport alone must keep it alive.
    let frames = idle.receive_n(usize::MAX, config.client_timeout() * 3).await.unwrap();
    assert!(
        frames.iter().all(|f| f.as_event().is_none_or(|e| e.data["action"] != "leave")),
        "{kind}: {frames:?}"
    );
    assert_eq!(idle.command(Command::Ping).await.unwrap(), Reply::Pong, "{kind}: still registered");
    // Now go silent: drop the connection without DELETE.
    drop(idle.disconnect());
    let leave = collect(&mut watcher, 1, |f| f.as_event().is_some_and(|e| e.data["action"] == "leave")).await;
    assert_eq!(leave[0].as_event().unwrap().from, "idle", "{kind}");
}

/// After a disconnect, resuming from the cursor gives exactly the events missed meanwhile.
async fn resume_after_disconnect(kind: TransportKind) {
    let server = start_default().await;
    let mut alice = connect(&server, "alice", kind).await;
    let mut bob = connect(&server, "bob", TransportKind::Ws).await;
    join(&mut alice, "lobby").await;
    join(&mut bob, "lobby").await;
    say(&mut bob, "lobby", "before", Scope::Room).await;
    assert_eq!(chat_texts(&mut alice, 1).await, ["before"]);
    let (http, base, registration, cursor) = alice.disconnect();
    for i in 0..3 {
        say(&mut bob, "lobby", &format!("missed{i}"), Scope::Room).await;
    }
    let mut alice = Client::resume(http, base, registration, kind, &cursor, options()).await.unwrap();
    say(&mut bob, "lobby", "after", Scope::Room).await;
    assert_eq!(chat_texts(&mut alice, 4).await, ["missed0", "missed1", "missed2", "after"], "{kind}");
    assert_quiet(&mut alice, Duration::from_millis(300), is_chat).await;
}

/// A cursor older than what the server keeps gets an explicit gap, then what is kept.
async fn gap_for_a_too_old_cursor(kind: TransportKind) {
    let server = start(Config { ring_capacity: 8, ..Config::default() }).await;
    let mut alice = connect(&server, "alice", kind).await;
    let mut bob = connect(&server, "bob", TransportKind::Ws).await;
    join(&mut alice, "lobby").await;
    join(&mut bob, "lobby").await;
    say(&mut bob, "lobby", "seen", Scope::Room).await;
    assert_eq!(chat_texts(&mut alice, 1).await, ["seen"]);
    let (http, base, registration, cursor) = alice.disconnect();
    for i in 0..20 {
        say(&mut bob, "lobby", &format!("m{i}"), Scope::Room).await;
    }
    let mut alice = Client::resume(http, base, registration, kind, &cursor, options()).await.unwrap();
    let frames = collect(&mut alice, 9, |_| true).await;
    let Frame::Gap(gap) = &frames[0] else { panic!("{kind}: expected a gap first, got {frames:?}") };
    assert_eq!((gap.room.as_str(), gap.reason.as_str()), ("lobby", "evicted"));
    // Seqs: 1 alice join, 2 bob join, 3 "seen", 4..=23 m0..m19; the ring keeps 16..=23.
    assert_eq!((gap.missed_from, gap.missed_to), (Some(4), Some(15)), "{kind}");
    let texts: Vec<&str> = frames[1..].iter().map(|f| text(f.as_event().unwrap())).collect();
    assert_eq!(texts, ["m12", "m13", "m14", "m15", "m16", "m17", "m18", "m19"], "{kind}");
}

macro_rules! over_every_transport {
    ($($scenario:ident),* $(,)?) => {
        over_every_transport!(@one short_poll, ShortPoll, $($scenario),*);
        over_every_transport!(@one long_poll, LongPoll, $($scenario),*);
        over_every_transport!(@one sse, Sse, $($scenario),*);
        over_every_transport!(@one ws, Ws, $($scenario),*);
    };
    (@cluster $module:ident, $kind:ident, $($scenario:ident),*) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    crate::common::on_a_cluster(super::super::$scenario(quartet_client::TransportKind::$kind)).await;
                }
            )*
        }
    };
    (@one $module:ident, $kind:ident, $($scenario:ident),*) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(quartet_client::TransportKind::$kind).await;
                }
            )*
        }
    };
}

over_every_transport!(
    receives_in_seq_order,
    scopes,
    direct_messages,
    acks_and_idempotent_resend,
    presence_join_and_leave,
    heartbeat_expiry,
    resume_after_disconnect,
    gap_for_a_too_old_cursor,
);

/// The same scenarios on three nodes behind a load balancer that sends every connection to a
/// node picked at random: no sticky sessions. (Not `gap_for_a_too_old_cursor`: the cluster's
/// store keeps history, so an old cursor gets its events, not a gap; `quartet-redis` tests it.)
macro_rules! on_a_cluster_over_every_transport {
    ($($scenario:ident),* $(,)?) => {
        mod cluster {
            over_every_transport!(@cluster short_poll, ShortPoll, $($scenario),*);
            over_every_transport!(@cluster long_poll, LongPoll, $($scenario),*);
            over_every_transport!(@cluster sse, Sse, $($scenario),*);
            over_every_transport!(@cluster ws, Ws, $($scenario),*);
        }
    };
}

on_a_cluster_over_every_transport!(
    receives_in_seq_order,
    scopes,
    direct_messages,
    acks_and_idempotent_resend,
    presence_join_and_leave,
    heartbeat_expiry,
    resume_after_disconnect,
);
