//! The core's behaviour with no network: rooms, scopes, acks, presence, cursors, gaps, expiry.
//! Time-dependent tests run on tokio's paused clock, so a 25-second timeout costs no real time.

use std::sync::Arc;
use std::time::Duration;

use quartet_core::testing::{read_now, wait};
use quartet_core::{Config, Hub, MemoryEngine, Reader};
use quartet_protocol::ClientId;
use serde_json::{Value, json};

fn hub_with(config: Config) -> Hub {
    Hub::new(Arc::new(MemoryEngine::new()), config)
}

fn hub() -> Hub {
    hub_with(Config::default())
}

async fn client(hub: &Hub, name: &str) -> (ClientId, String) {
    let reg = hub.register(name).await.unwrap();
    (ClientId::from_wire(&reg.client).unwrap(), reg.cursor)
}

async fn run(hub: &Hub, client: &ClientId, command: Value) -> Value {
    let replies = hub.execute(client, command.to_string().as_bytes()).await.unwrap();
    serde_json::to_value(&replies[0]).unwrap()
}

/// Reads everything now and returns the frames as JSON values.
async fn drain(reader: &mut Reader) -> Vec<Value> {
    let frames = read_now(reader).await.unwrap();
    frames.iter().map(|d| serde_json::from_slice(&d.json).unwrap()).collect()
}

fn chat(events: &[Value]) -> Vec<String> {
    events.iter().filter(|e| e["event"] == "chat").map(|e| e["data"].as_str().unwrap().to_owned()).collect()
}

/// A room's events reach every member in seq order; scopes `others` and `self` filter readers.
#[tokio::test]
async fn publish_scopes_filter_readers() {
    let hub = hub();
    let (alice, a_cur) = client(&hub, "alice").await;
    let (bob, b_cur) = client(&hub, "bob").await;
    let mut ra = hub.reader(&alice, Some(&a_cur)).await.unwrap();
    let mut rb = hub.reader(&bob, Some(&b_cur)).await.unwrap();
    run(&hub, &alice, json!({"type":"join","room":"lobby"})).await;
    run(&hub, &bob, json!({"type":"join","room":"lobby"})).await;
    for (to, text) in [("room", "all"), ("others", "not-alice"), ("self", "only-alice")] {
        let ack =
            run(&hub, &alice, json!({"type":"publish","room":"lobby","event":"chat","data":text,"to":to}))
                .await;
        assert_eq!(ack["type"], "ack");
    }
    assert_eq!(chat(&drain(&mut ra).await), ["all", "only-alice"]);
    let b_events = drain(&mut rb).await;
    assert_eq!(chat(&b_events), ["all", "not-alice"]);
    let seqs: Vec<u64> = b_events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seq order: {seqs:?}");
}

/// The same message id twice is acknowledged twice with the same seq and delivered once.
#[tokio::test]
async fn resent_message_id_is_delivered_once() {
    let hub = hub();
    let (alice, cur) = client(&hub, "alice").await;
    let mut reader = hub.reader(&alice, Some(&cur)).await.unwrap();
    run(&hub, &alice, json!({"type":"join","room":"r"})).await;
    let publish = json!({"type":"publish","room":"r","event":"chat","data":"once","id":"m1"});
    let first = run(&hub, &alice, publish.clone()).await;
    let again = run(&hub, &alice, publish).await;
    assert_eq!(first, again);
    assert_eq!(chat(&drain(&mut reader).await), ["once"]);
}

/// Join and leave are presence events with the online count; the joiner sees its own join.
#[tokio::test]
async fn presence_announces_join_and_leave() {
    let hub = hub();
    let (alice, a_cur) = client(&hub, "alice").await;
    let (bob, _) = client(&hub, "bob").await;
    let mut ra = hub.reader(&alice, Some(&a_cur)).await.unwrap();
    let joined = run(&hub, &alice, json!({"type":"join","room":"r"})).await;
    assert_eq!(joined["online"], 1);
    run(&hub, &bob, json!({"type":"join","room":"r"})).await;
    run(&hub, &bob, json!({"type":"leave","room":"r"})).await;
    let presence: Vec<(String, String, u64)> = drain(&mut ra)
        .await
        .iter()
        .map(|e| {
            (
                e["from"].as_str().unwrap().into(),
                e["data"]["action"].as_str().unwrap().into(),
                e["data"]["online"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        presence,
        [
            ("alice".into(), "join".into(), 1),
            ("bob".into(), "join".into(), 2),
            ("bob".into(), "leave".into(), 1)
        ]
    );
    assert_eq!(hub.room_info("r").await.unwrap().online, 1);
}

/// A cursor resumes exactly after the last delivered event: none lost, none repeated.
#[tokio::test]
async fn cursor_resumes_without_loss_or_repeat() {
    let hub = hub();
    let (alice, cur) = client(&hub, "alice").await;
    let mut reader = hub.reader(&alice, Some(&cur)).await.unwrap();
    run(&hub, &alice, json!({"type":"join","room":"r"})).await;
    run(&hub, &alice, json!({"type":"publish","room":"r","event":"chat","data":"1"})).await;
    let first = drain(&mut reader).await;
    let resume = first.last().unwrap()["cursor"].as_str().unwrap().to_owned();
    drop(reader);
    run(&hub, &alice, json!({"type":"publish","room":"r","event":"chat","data":"2"})).await;
    let mut again = hub.reader(&alice, Some(&resume)).await.unwrap();
    assert_eq!(chat(&drain(&mut again).await), ["2"]);
}

/// A cursor older than the ring gets an explicit gap with the missing range, then the rest.
#[tokio::test]
async fn too_old_cursor_gets_a_gap() {
    let hub = hub_with(Config { ring_capacity: 4, ..Config::default() });
    let (alice, cur) = client(&hub, "alice").await;
    run(&hub, &alice, json!({"type":"join","room":"r"})).await;
    let mut reader = hub.reader(&alice, Some(&cur)).await.unwrap();
    let old = drain(&mut reader).await.last().unwrap()["cursor"].as_str().unwrap().to_owned();
    for i in 0..10 {
        run(&hub, &alice, json!({"type":"publish","room":"r","event":"chat","data":i.to_string()})).await;
    }
    let mut late = hub.reader(&alice, Some(&old)).await.unwrap();
    let events = drain(&mut late).await;
    assert_eq!(events[0]["type"], "gap");
    assert_eq!(events[0]["reason"], "evicted");
    assert_eq!((events[0]["missed_from"].as_u64(), events[0]["missed_to"].as_u64()), (Some(2), Some(7)));
    assert_eq!(chat(&events), ["6", "7", "8", "9"]);
}

/// A cursor from another store lifetime gets a `reset` gap instead of wrong events.
#[tokio::test]
async fn cursor_from_another_epoch_gets_a_reset_gap() {
    let old_hub = hub();
    let (old, _) = client(&old_hub, "alice").await;
    run(&old_hub, &old, json!({"type":"join","room":"r"})).await;
    let old_cursor = old_hub.reader(&old, None).await.unwrap().current_cursor();

    let hub = hub();
    let (alice, _) = client(&hub, "alice").await;
    run(&hub, &alice, json!({"type":"join","room":"r"})).await;
    let events = drain(&mut hub.reader(&alice, Some(&old_cursor)).await.unwrap()).await;
    // One reset gap per log the old cursor named (the room and the inbox), then the new events.
    let gaps: Vec<&str> =
        events.iter().filter(|e| e["reason"] == "reset").map(|e| e["room"].as_str().unwrap()).collect();
    assert_eq!(gaps, ["r", "@alice"]);
    assert_eq!(events[2]["event"], "presence");
}

/// A waiting reader wakes at the first event, and times out with an empty batch otherwise.
#[tokio::test(start_paused = true)]
async fn a_waiting_reader_wakes_on_publish_or_times_out() {
    let hub = hub();
    let (alice, cur) = client(&hub, "alice").await;
    run(&hub, &alice, json!({"type":"join","room":"r"})).await;
    let mut reader = hub.reader(&alice, Some(&cur)).await.unwrap();
    drain(&mut reader).await;
    let empty = wait(&mut reader, Duration::from_secs(30)).await.unwrap();
    assert!(empty.is_empty());

    let publisher = hub.clone();
    let client = alice.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        run(&publisher, &client, json!({"type":"publish","room":"r","event":"chat","data":"hi"})).await;
    });
    let started = tokio::time::Instant::now();
    let batch = wait(&mut reader, Duration::from_secs(30)).await.unwrap();
    assert_eq!(batch.len(), 1);
    assert_eq!(started.elapsed(), Duration::from_secs(1));
}

/// A client that shows no life for the timeout is removed, and the room hears its leave.
#[tokio::test(start_paused = true)]
async fn silent_client_expires_and_leave_is_published() {
    let hub = hub();
    let (alice, a_cur) = client(&hub, "alice").await;
    let (bob, _) = client(&hub, "bob").await;
    run(&hub, &alice, json!({"type":"join","room":"r"})).await;
    run(&hub, &bob, json!({"type":"join","room":"r"})).await;
    // Alice holds a stream (alive); Bob goes silent.
    let mut ra = hub.reader(&alice, Some(&a_cur)).await.unwrap();
    tokio::time::advance(hub.config().client_timeout() + Duration::from_millis(1)).await;
    assert_eq!(hub.expire_idle().await, 1);
    let events = drain(&mut ra).await;
    let last = events.last().unwrap();
    assert_eq!((last["from"].as_str(), last["data"]["action"].as_str()), (Some("bob"), Some("leave")));
    let err = hub.execute(&bob, br#"{"type":"ping"}"#).await.unwrap_err();
    assert_eq!(err.code.as_str(), "unknown_client");
}

/// Direct messages go to every client of the user, as room `@user`; unknown users are refused.
#[tokio::test]
async fn direct_messages_reach_the_users_inbox() {
    let hub = hub();
    let (alice, _) = client(&hub, "alice").await;
    let (bob, b_cur) = client(&hub, "bob").await;
    let mut rb = hub.reader(&bob, Some(&b_cur)).await.unwrap();
    let ack =
        run(&hub, &alice, json!({"type":"direct","user":"bob","event":"chat","data":"psst","id":"d1"})).await;
    assert_eq!((ack["type"].as_str(), ack["room"].as_str()), (Some("ack"), Some("@bob")));
    let events = drain(&mut rb).await;
    assert_eq!((events[0]["room"].as_str(), events[0]["from"].as_str()), (Some("@bob"), Some("alice")));
    let err = run(&hub, &alice, json!({"type":"direct","user":"carol","event":"chat","id":"d2"})).await;
    assert_eq!((err["code"].as_str(), err["id"].as_str()), (Some("unknown_user"), Some("d2")));
}

/// Rule violations are per-command error replies; the other commands of the batch still run.
#[tokio::test]
async fn rule_violations_are_error_replies() {
    let hub = hub();
    let (alice, _) = client(&hub, "alice").await;
    let body = json!([
        {"type":"publish","room":"r","event":"chat","id":"x"},
        {"type":"join","room":"r"},
        {"type":"leave","room":"nope"},
    ]);
    let replies = hub.execute(&alice, body.to_string().as_bytes()).await.unwrap();
    let replies: Vec<Value> = replies.iter().map(|r| serde_json::to_value(r).unwrap()).collect();
    assert_eq!(replies[0]["code"], "not_joined");
    assert_eq!(replies[1]["type"], "joined");
    assert_eq!(replies[2]["code"], "not_joined");
}

/// Past the burst, commands are refused `rate_limited` (pings are exempt).
#[tokio::test(start_paused = true)]
async fn command_flood_is_rate_limited() {
    let hub = hub();
    let (alice, _) = client(&hub, "alice").await;
    let mut codes = Vec::new();
    for _ in 0..120 {
        let reply = run(&hub, &alice, json!({"type":"join","room":"r"})).await;
        codes.push(reply["type"].as_str().unwrap().to_owned() + reply["code"].as_str().unwrap_or(""));
    }
    assert!(codes[..100].iter().all(|c| c == "joined"));
    assert!(codes[100..].iter().all(|c| c == "errorrate_limited"), "{codes:?}");
    assert_eq!(run(&hub, &alice, json!({"type":"ping"})).await["type"], "pong");
    // The refusal says when to try again (50 a second: one every 20 ms), and then it works.
    let refused = run(&hub, &alice, json!({"type":"join","room":"r"})).await;
    let wait = refused["retry_after_ms"].as_u64().expect("a retry hint");
    assert!((1..=20).contains(&wait), "{refused}");
    tokio::time::advance(std::time::Duration::from_millis(wait)).await;
    assert_eq!(run(&hub, &alice, json!({"type":"join","room":"r"})).await["type"], "joined");
}

/// Above the crowd size, joins and leaves are folded into one `count` event per interval, so a
/// big room does not pay N² deliveries for N arrivals.
#[tokio::test(start_paused = true)]
async fn crowded_rooms_announce_counts_not_each_join() {
    let hub = hub_with(Config { presence_crowd: 2, ..Config::default() });
    let (first, cursor) = client(&hub, "first").await;
    let mut reader = hub.reader(&first, Some(&cursor)).await.unwrap();
    run(&hub, &first, json!({"type":"join","room":"stage"})).await;
    for name in ["second", "third", "fourth"] {
        let (id, _) = client(&hub, name).await;
        let joined = run(&hub, &id, json!({"type":"join","room":"stage"})).await;
        assert_eq!(joined["type"], "joined");
    }
    let presence = |events: &[Value]| -> Vec<(String, String, u64)> {
        events
            .iter()
            .filter(|e| e["event"] == "presence")
            .map(|e| {
                (
                    e["from"].as_str().unwrap().into(),
                    e["data"]["action"].as_str().unwrap().into(),
                    e["data"]["online"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    // first and second are announced; third and fourth make the room a crowd.
    assert_eq!(
        presence(&drain(&mut reader).await),
        [("first".into(), "join".into(), 1), ("second".into(), "join".into(), 2)]
    );
    tokio::time::sleep(hub.config().presence_interval + Duration::from_millis(10)).await;
    assert_eq!(presence(&drain(&mut reader).await), [(String::new(), "count".into(), 4)]);
    // Nothing changes: no further count.
    tokio::time::sleep(hub.config().presence_interval * 3).await;
    assert!(presence(&drain(&mut reader).await).is_empty());
}

/// `join` with `history` delivers the room's last events before the live ones, in seq order.
#[tokio::test]
async fn join_with_history_delivers_the_last_events_first() {
    let hub = hub();
    let (alice, _) = client(&hub, "alice").await;
    run(&hub, &alice, json!({"type":"join","room":"r"})).await;
    for i in 0..10 {
        run(&hub, &alice, json!({"type":"publish","room":"r","event":"chat","data":i.to_string()})).await;
    }
    let (bob, b_cur) = client(&hub, "bob").await;
    let mut reader = hub.reader(&bob, Some(&b_cur)).await.unwrap();
    let joined = run(&hub, &bob, json!({"type":"join","room":"r","history":4})).await;
    assert_eq!(joined["type"], "joined");
    run(&hub, &alice, json!({"type":"publish","room":"r","event":"chat","data":"live"})).await;
    let events = drain(&mut reader).await;
    assert_eq!(chat(&events), ["6", "7", "8", "9", "live"]);
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "contiguous: {seqs:?}");
    // Without history, a joiner starts at its own join.
    let (carol, c_cur) = client(&hub, "carol").await;
    let mut reader = hub.reader(&carol, Some(&c_cur)).await.unwrap();
    run(&hub, &carol, json!({"type":"join","room":"r"})).await;
    assert!(chat(&drain(&mut reader).await).is_empty());
}

/// A new client registered with an expired client's cursor rejoins its rooms and gets exactly
/// what was missed; a cursor position no server issued is refused `bad_cursor`.
#[tokio::test]
async fn registering_from_a_cursor_carries_on_where_it_stopped() {
    let hub = hub();
    let (alice, cur) = client(&hub, "alice").await;
    let (bob, _) = client(&hub, "bob").await;
    run(&hub, &alice, json!({"type":"join","room":"r"})).await;
    run(&hub, &bob, json!({"type":"join","room":"r"})).await;
    run(&hub, &bob, json!({"type":"publish","room":"r","event":"chat","data":"seen"})).await;
    let mut reader = hub.reader(&alice, Some(&cur)).await.unwrap();
    let seen = drain(&mut reader).await;
    let stopped = seen.last().unwrap()["cursor"].as_str().unwrap().to_owned();
    drop(reader);
    hub.remove(&alice).await.unwrap();
    for text in ["missed-1", "missed-2"] {
        run(&hub, &bob, json!({"type":"publish","room":"r","event":"chat","data":text})).await;
    }
    let again = hub.register_from("alice", Some(&stopped)).await.unwrap();
    let id = ClientId::from_wire(&again.client).unwrap();
    let events = drain(&mut hub.reader(&id, Some(&again.cursor)).await.unwrap()).await;
    assert_eq!(chat(&events), ["missed-1", "missed-2"]);
    let last = events.last().unwrap();
    assert_eq!(
        (last["event"].as_str(), last["from"].as_str()),
        (Some("presence"), Some("alice")),
        "then her rejoin"
    );
    assert_eq!(hub.room_info("r").await.unwrap().online, 2);

    // A position beyond the room's last event: not a cursor this server issued.
    let mut forged = quartet_protocol::Cursor::decode(&stopped).unwrap();
    for seq in forged.positions.values_mut() {
        seq.0 += 1000;
    }
    let refused = hub.register_from("mallory", Some(&forged.encode())).await.unwrap_err();
    assert_eq!(refused.code.as_str(), "bad_cursor", "{refused}");
}

/// A reader's cursor with a position past its log's head is refused `bad_cursor`, at any
/// distance (up to the largest seq, whose `+ 1` must not wrap or panic); a position at the
/// head is fine, and a position in a log the client does not read is not looked at.
#[tokio::test]
async fn a_reader_cursor_beyond_the_head_is_refused() {
    let hub = hub();
    let (alice, cur) = client(&hub, "alice").await;
    run(&hub, &alice, json!({"type":"join","room":"r"})).await;
    run(&hub, &alice, json!({"type":"publish","room":"r","event":"chat","data":"1"})).await;
    let mut reader = hub.reader(&alice, Some(&cur)).await.unwrap();
    let stopped = drain(&mut reader).await.last().unwrap()["cursor"].as_str().unwrap().to_owned();
    drop(reader);
    let room = quartet_protocol::LogId::Room(quartet_protocol::RoomName::parse("r").unwrap());
    let head = quartet_protocol::Cursor::decode(&stopped).unwrap().positions[&room];
    let at = |seq: u64| {
        let mut cursor = quartet_protocol::Cursor::decode(&stopped).unwrap();
        cursor.positions.insert(room.clone(), quartet_protocol::Seq(seq));
        cursor.encode()
    };
    for seq in [head.0 + 1, 999_999, u64::MAX] {
        let refused = hub.reader(&alice, Some(&at(seq))).await.err().expect("a forged position is refused");
        assert_eq!(refused.code.as_str(), "bad_cursor", "{seq}: {refused}");
    }
    let mut fine = hub.reader(&alice, Some(&at(head.0))).await.unwrap();
    run(&hub, &alice, json!({"type":"publish","room":"r","event":"chat","data":"2"})).await;
    assert_eq!(chat(&drain(&mut fine).await), ["2"], "the room still works for everyone");
    let mut elsewhere = quartet_protocol::Cursor::decode(&stopped).unwrap();
    elsewhere.positions.insert(
        quartet_protocol::LogId::Room(quartet_protocol::RoomName::parse("not-joined").unwrap()),
        quartet_protocol::Seq(u64::MAX),
    );
    assert!(hub.reader(&alice, Some(&elsewhere.encode())).await.is_ok());
}

/// A poll's reader, kept when the poll is answered, goes on at the client's next poll with the
/// cursor it answered exactly as a reader opened on that cursor: the events since, a room
/// joined meanwhile, the cursors after. Any other cursor opens a reader as always.
#[tokio::test]
async fn a_kept_reader_goes_on_as_one_opened_on_its_cursor() {
    let hub = hub();
    let kept = || hub.stats().polls_kept.load(std::sync::atomic::Ordering::Relaxed);
    let (alice, first) = client(&hub, "alice").await;
    run(&hub, &alice, json!({"type":"join","room":"r"})).await;
    run(&hub, &alice, json!({"type":"publish","room":"r","event":"chat","data":"1"})).await;
    let mut poll = hub.reader(&alice, Some(&first)).await.unwrap();
    assert_eq!(chat(&drain(&mut poll).await), ["1"]);
    let answered = poll.current_cursor();
    poll.keep(answered.clone());
    run(&hub, &alice, json!({"type":"publish","room":"r","event":"chat","data":"2"})).await;
    run(&hub, &alice, json!({"type":"join","room":"s"})).await;
    run(&hub, &alice, json!({"type":"publish","room":"s","event":"chat","data":"3"})).await;
    // The next poll with that cursor takes the kept state; a reader opened on the same cursor
    // decodes it.
    let mut next = hub.kept_reader(&alice, &answered).expect("the kept state");
    assert_eq!(kept(), 1);
    assert!(hub.kept_reader(&alice, &answered).is_none(), "taken once");
    let mut opened = hub.reader(&alice, Some(&answered)).await.unwrap();
    assert_eq!(kept(), 1);
    let (went_on, fresh) = (drain(&mut next).await, drain(&mut opened).await);
    assert_eq!(chat(&went_on), ["2", "3"]);
    assert_eq!(went_on, fresh);
    assert_eq!(next.current_cursor(), opened.current_cursor());
    drop(opened);
    // Kept again; an older cursor does not take it (and it stays for the right one).
    let answered = next.current_cursor();
    next.keep(answered.clone());
    assert!(hub.kept_reader(&alice, &first).is_none());
    let mut older = hub.reader(&alice, Some(&first)).await.unwrap();
    assert_eq!(chat(&drain(&mut older).await), ["1", "2", "3"]);
    drop(older);
    run(&hub, &alice, json!({"type":"leave","room":"r"})).await;
    run(&hub, &alice, json!({"type":"publish","room":"s","event":"chat","data":"4"})).await;
    let mut next = hub.kept_reader(&alice, &answered).expect("the kept state, still there");
    assert_eq!(kept(), 2);
    let mut opened = hub.reader(&alice, Some(&answered)).await.unwrap();
    let (went_on, fresh) = (drain(&mut next).await, drain(&mut opened).await);
    assert_eq!(chat(&went_on), ["4"]);
    assert_eq!(went_on, fresh);
    assert_eq!(next.current_cursor(), opened.current_cursor());
}

/// A poll's answer names a base only for a client of many rooms: its reader has a base to
/// settle, and once settled the cursor it answers with names it; a reader of one room has none
/// to settle (a poll skips the wait) and answers with a whole cursor.
#[tokio::test]
async fn only_a_poll_of_many_rooms_settles_a_base() {
    let hub = hub();
    let (one, one_cursor) = client(&hub, "solo").await;
    run(&hub, &one, json!({"type":"join","room":"r0"})).await;
    let (many, many_cursor) = client(&hub, "crowd").await;
    for i in 0..50 {
        run(&hub, &many, json!({"type":"join","room":format!("r{i}")})).await;
    }
    let mut solo = hub.reader(&one, Some(&one_cursor)).await.unwrap();
    drain(&mut solo).await;
    assert!(!solo.has_base_to_settle());
    assert!(quartet_protocol::Cursor::decode(&solo.current_cursor()).unwrap().base.is_none());
    // (Asked before a read: the first read already asks for a base to be stored.)
    let mut crowd = hub.reader(&many, Some(&many_cursor)).await.unwrap();
    assert!(crowd.has_base_to_settle());
    drain(&mut crowd).await;
    crowd.settle_base().await;
    assert!(quartet_protocol::Cursor::decode(&crowd.current_cursor()).unwrap().base.is_some());
}

/// One client may hold a bounded number of readers (streams, parked polls); closing one makes
/// room for the next.
#[tokio::test]
async fn a_client_may_hold_only_so_many_readers() {
    use quartet_core::limits::MAX_READERS_PER_CLIENT;
    let hub = hub();
    let (alice, cursor) = client(&hub, "alice").await;
    let mut open = Vec::new();
    for _ in 0..MAX_READERS_PER_CLIENT {
        open.push(hub.reader(&alice, Some(&cursor)).await.unwrap());
    }
    let refused = hub.reader(&alice, Some(&cursor)).await.err().expect("one reader too many");
    assert_eq!(refused.code, quartet_protocol::ErrorCode::LimitReached, "{refused}");
    // Another client is not affected.
    let (bob, bob_cursor) = client(&hub, "bob").await;
    assert!(hub.reader(&bob, Some(&bob_cursor)).await.is_ok());
    drop(open.pop());
    assert!(hub.reader(&alice, Some(&cursor)).await.is_ok(), "a closed reader frees its place");
}

/// One user may hold only so many clients at once; another user is not affected, and ending a
/// client frees its place.
#[tokio::test]
async fn a_user_may_hold_only_so_many_clients() {
    use quartet_core::limits::MAX_CLIENTS_PER_USER;
    let hub = hub();
    let mut clients = Vec::new();
    for _ in 0..MAX_CLIENTS_PER_USER {
        clients.push(client(&hub, "alice").await.0);
    }
    let refused = hub.register("alice").await.expect_err("one client too many");
    assert_eq!(refused.code, quartet_protocol::ErrorCode::LimitReached, "{refused}");
    assert!(hub.register("bob").await.is_ok(), "another user is not affected");
    hub.remove(&clients.pop().unwrap()).await.unwrap();
    assert!(hub.register("alice").await.is_ok(), "an ended client frees its place");
}

/// A client in 50 rooms: once its reader has stored a base, an event's cursor names the base
/// and the room that moved, so it is about as long as a one-room client's; and that short
/// cursor resumes exactly (on a new reader, and by registering again after the client is gone),
/// only for the same user.
#[tokio::test]
async fn a_cursor_for_fifty_rooms_names_a_base_and_resumes_exactly() {
    let hub = hub();
    let (one, one_cursor) = client(&hub, "solo").await;
    run(&hub, &one, json!({"type":"join","room":"r0"})).await;
    let mut solo = hub.reader(&one, Some(&one_cursor)).await.unwrap();
    let (many, many_cursor) = client(&hub, "crowd").await;
    for i in 0..50 {
        assert_eq!(run(&hub, &many, json!({"type":"join","room":format!("r{i}")})).await["type"], "joined");
    }
    let mut crowd = hub.reader(&many, Some(&many_cursor)).await.unwrap();
    drain(&mut solo).await;
    // 50 rooms: the reader asks for a base (stored in a task of its own).
    let mut seen: Vec<(String, u64)> = drain(&mut crowd).await.iter().map(room_seq).collect();
    tokio::task::yield_now().await;
    let say = |text: &str| json!({"type":"publish","room":"r0","event":"chat","data":text});
    run(&hub, &one, say("one")).await;
    let solo_frame = read_now(&mut solo).await.unwrap().pop().unwrap();
    let crowd_frames = read_now(&mut crowd).await.unwrap();
    seen.extend(crowd_frames.iter().map(|f| room_seq(&serde_json::from_slice(&f.json).unwrap())));
    let crowd_frame = crowd_frames.last().unwrap().clone();
    let decoded = quartet_protocol::Cursor::decode(&crowd_frame.cursor).unwrap();
    assert!(decoded.base.is_some(), "the crowd's cursor names a base");
    assert!(
        crowd_frame.json.len() as f64 <= solo_frame.json.len() as f64 * 1.2,
        "an event to a client in 50 rooms is {} bytes, to one in 1 room {}",
        crowd_frame.json.len(),
        solo_frame.json.len()
    );
    // More events, in several rooms; a new reader from the short cursor gets exactly those.
    run(&hub, &one, say("two")).await;
    for room in ["r7", "r30"] {
        run(&hub, &many, json!({"type":"publish","room":room,"event":"chat","data":room})).await;
    }
    drop(crowd);
    // (A reader goes through its logs in name order: r30 before r7.)
    let mut resumed = hub.reader(&many, Some(&crowd_frame.cursor)).await.unwrap();
    let events = drain(&mut resumed).await;
    assert_eq!(chat(&events), ["two", "r30", "r7"]);
    assert_eq!(events.len(), 3, "only what was missed");
    drop(resumed);
    // The client is gone: registering again from the short cursor restores its 50 rooms at
    // their positions: what was missed comes (and the presence of the leave and the rejoin),
    // nothing delivered before.
    hub.remove(&many).await.unwrap();
    let again = hub.register_from("crowd", Some(&crowd_frame.cursor)).await.unwrap();
    let again_id = ClientId::from_wire(&again.client).unwrap();
    let mut reader = hub.reader(&again_id, Some(&again.cursor)).await.unwrap();
    let events = drain(&mut reader).await;
    assert_eq!(chat(&events), ["two", "r30", "r7"]);
    let repeated = events.iter().map(room_seq).filter(|e| seen.contains(e)).count();
    assert_eq!(repeated, 0, "events delivered before the cursor came again");
    let rooms: std::collections::BTreeSet<String> =
        events.iter().map(|e| e["room"].as_str().unwrap().to_owned()).collect();
    assert_eq!(rooms.len(), 50, "every room restored");
    run(&hub, &one, say("three")).await;
    assert_eq!(chat(&drain(&mut reader).await), ["three"]);
    // Another user cannot resume from it.
    let thief = hub.register_from("thief", Some(&crowd_frame.cursor)).await.unwrap_err();
    assert_eq!(thief.code, quartet_protocol::ErrorCode::BadCursor, "{thief:?}");
}

fn room_seq(event: &Value) -> (String, u64) {
    (event["room"].as_str().unwrap_or_default().to_owned(), event["seq"].as_u64().unwrap_or_default())
}
