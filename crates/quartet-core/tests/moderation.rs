//! Moderation in the core: who may mute, unmute and kick; what a mute and a kick do to the
//! user's clients, to the room and to the user's inbox; that they end on time and outlive the
//! room's log in memory.

use std::sync::Arc;
use std::time::Duration;

use quartet_core::hub::IDLE_LOG_EVICTION;
use quartet_core::testing::read_now;
use quartet_core::{Config, Grant, Hub, MemoryEngine, Reader, Role};
use quartet_protocol::ClientId;
use serde_json::{Value, json};

fn hub() -> Hub {
    Hub::new(Arc::new(MemoryEngine::new()), Config::default())
}

async fn client(hub: &Hub, name: &str, role: Role) -> (ClientId, Reader) {
    let grant = Grant::new(role, None).unwrap();
    let reg = hub.register_as(name, None, grant).await.unwrap();
    let id = ClientId::from_wire(&reg.client).unwrap();
    let reader = hub.reader(&id, Some(&reg.cursor)).await.unwrap();
    (id, reader)
}

async fn run(hub: &Hub, client: &ClientId, command: Value) -> Value {
    let replies = hub.execute(client, command.to_string().as_bytes()).await.unwrap();
    serde_json::to_value(&replies[0]).unwrap()
}

async fn drain(reader: &mut Reader) -> Vec<Value> {
    let frames = read_now(reader).await.unwrap();
    frames.iter().map(|d| serde_json::from_slice(&d.json).unwrap()).collect()
}

fn say(room: &str, text: &str) -> Value {
    json!({"type":"publish","room":room,"event":"chat","data":text})
}

fn code(reply: &Value) -> &str {
    reply["code"].as_str().unwrap_or_else(|| panic!("not an error: {reply}"))
}

/// A host mutes bob: his publishes to that room are refused `forbidden` with the time left,
/// elsewhere he still speaks; the room and bob's inbox carry the notice; unmute lifts it.
#[tokio::test]
async fn a_muted_user_cannot_publish_in_that_room_until_unmuted() {
    let hub = hub();
    let (host, mut host_reader) = client(&hub, "alice", Role::Host).await;
    let (bob, mut bob_reader) = client(&hub, "bob", Role::Member).await;
    for room in ["lobby", "other"] {
        run(&hub, &host, json!({"type":"join","room":room})).await;
        run(&hub, &bob, json!({"type":"join","room":room})).await;
    }
    drain(&mut host_reader).await;
    drain(&mut bob_reader).await;

    let ack = run(&hub, &host, json!({"type":"mute","room":"lobby","user":"bob","seconds":60})).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(ack["room"], "lobby");
    let refused = run(&hub, &bob, say("lobby", "let me speak")).await;
    assert_eq!(code(&refused), "forbidden", "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("muted"), "{refused}");
    let retry = refused["retry_after_ms"].as_u64().unwrap();
    assert!((59_000..=60_000).contains(&retry), "{refused}");
    assert_eq!(run(&hub, &bob, say("other", "fine here")).await["type"], "ack");

    // The room sees the moderation event; bob's inbox carries the same notice.
    let seen = drain(&mut host_reader).await;
    let notice = seen.iter().find(|e| e["event"] == "moderation").expect("the room's notice");
    assert_eq!(notice["room"], "lobby");
    assert_eq!(notice["seq"], ack["seq"]);
    assert_eq!(notice["data"]["action"], "mute");
    assert_eq!(notice["data"]["user"], "bob");
    assert_eq!(notice["data"]["by"], "alice");
    assert_eq!(notice["data"]["seconds"], 60);
    let to_bob = drain(&mut bob_reader).await;
    let personal = to_bob.iter().find(|e| e["room"] == "@bob").expect("bob's own notice");
    assert_eq!(personal["event"], "moderation");
    assert_eq!(personal["data"]["room"], "lobby");

    assert_eq!(run(&hub, &host, json!({"type":"unmute","room":"lobby","user":"bob"})).await["type"], "ack");
    assert_eq!(run(&hub, &bob, say("lobby", "thanks")).await["type"], "ack");
}

/// A kick: every client of the user leaves the room now (others see presence `leave` with
/// reason `kicked`), each is told in its inbox, and a rejoin is refused with the time left until
/// the kick ends; other users and other rooms are untouched.
#[tokio::test]
async fn a_kicked_users_clients_leave_and_cannot_rejoin_for_a_while() {
    let hub = hub();
    let (host, mut host_reader) = client(&hub, "alice", Role::Moderator).await;
    let (tab1, mut tab1_reader) = client(&hub, "bob", Role::Member).await;
    let (tab2, mut tab2_reader) = client(&hub, "bob", Role::Member).await;
    let (carol, _) = client(&hub, "carol", Role::Member).await;
    for c in [&host, &tab1, &tab2, &carol] {
        run(&hub, c, json!({"type":"join","room":"lobby"})).await;
    }
    run(&hub, &tab1, json!({"type":"join","room":"other"})).await;
    drain(&mut host_reader).await;
    drain(&mut tab1_reader).await;
    drain(&mut tab2_reader).await;

    let ack = run(&hub, &host, json!({"type":"kick","room":"lobby","user":"bob","seconds":30})).await;
    assert_eq!(ack["type"], "ack", "{ack}");

    let seen = drain(&mut host_reader).await;
    let kicked: Vec<&Value> =
        seen.iter().filter(|e| e["event"] == "presence" && e["data"]["reason"] == "kicked").collect();
    assert_eq!(kicked.len(), 2, "one leave per client of bob: {seen:?}");
    assert!(kicked.iter().all(|e| e["from"] == "bob" && e["data"]["action"] == "leave"));
    assert_eq!(kicked[1]["data"]["online"], 2, "alice and carol remain");
    let info = hub.room_info("lobby").await.unwrap();
    assert_eq!(info.online, 2);

    for reader in [&mut tab1_reader, &mut tab2_reader] {
        let told = drain(reader).await;
        let notice = told.iter().find(|e| e["room"] == "@bob").expect("the kicked client is told");
        assert_eq!(
            (notice["data"]["action"].as_str(), notice["data"]["room"].as_str()),
            (Some("kick"), Some("lobby"))
        );
    }
    // Out of the room: publishing there is not joined; joining again is refused for the kick's time.
    assert_eq!(code(&run(&hub, &tab1, say("lobby", "hey")).await), "not_joined");
    let rejoin = run(&hub, &tab2, json!({"type":"join","room":"lobby"})).await;
    assert_eq!(code(&rejoin), "forbidden", "{rejoin}");
    assert!(rejoin["message"].as_str().unwrap().contains("kicked"), "{rejoin}");
    assert!((29_000..=30_000).contains(&rejoin["retry_after_ms"].as_u64().unwrap()), "{rejoin}");
    // A new client of bob is kept out as well; bob's other room and carol are untouched.
    let (tab3, _) = client(&hub, "bob", Role::Member).await;
    assert_eq!(code(&run(&hub, &tab3, json!({"type":"join","room":"lobby"})).await), "forbidden");
    assert_eq!(run(&hub, &tab1, say("other", "still here")).await["type"], "ack");
    assert_eq!(run(&hub, &carol, say("lobby", "hi")).await["type"], "ack");
}

/// A kick ends on time, and a mute or kick outlives the room's log leaving memory (the engine
/// keeps it). Restrictions run on the wall clock, log eviction on tokio's (paused here).
#[tokio::test(start_paused = true)]
async fn restrictions_end_on_time_and_survive_the_room_leaving_memory() {
    let hub = hub();
    let (host, _) = client(&hub, "alice", Role::Host).await;
    let (bob, _) = client(&hub, "bob", Role::Member).await;
    run(&hub, &bob, json!({"type":"join","room":"lobby"})).await;
    let kick = json!({"type":"kick","room":"lobby","user":"bob","seconds":1});
    assert_eq!(run(&hub, &host, kick).await["type"], "ack");
    let mute = json!({"type":"mute","room":"quiet","user":"bob","seconds":600});
    assert_eq!(run(&hub, &host, mute).await["type"], "ack");
    assert_eq!(code(&run(&hub, &bob, json!({"type":"join","room":"lobby"})).await), "forbidden");

    // Everyone leaves, and the idle rooms are dropped from memory: the restrictions stay.
    hub.remove(&host).await.unwrap();
    hub.remove(&bob).await.unwrap();
    tokio::time::advance(IDLE_LOG_EVICTION + Duration::from_secs(1)).await;
    hub.expire_idle().await;
    assert_eq!(hub.log_count(), 0, "the rooms and inboxes left memory");
    let (bob, _) = client(&hub, "bob", Role::Member).await;
    assert_eq!(run(&hub, &bob, json!({"type":"join","room":"quiet"})).await["type"], "joined");
    assert_eq!(code(&run(&hub, &bob, say("quiet", "hello?")).await), "forbidden");
    assert_eq!(code(&run(&hub, &bob, json!({"type":"join","room":"lobby"})).await), "forbidden");

    std::thread::sleep(Duration::from_millis(1_100)); // the wall clock: the kick ends
    assert_eq!(run(&hub, &bob, json!({"type":"join","room":"lobby"})).await["type"], "joined");
}

/// Only a host or moderator, only in the rooms its token allows, never on itself; and nobody
/// publishes a `moderation` event by hand.
#[tokio::test]
async fn only_hosts_and_moderators_of_the_room_moderate() {
    let hub = hub();
    let (member, _) = client(&hub, "mallory", Role::Member).await;
    let (viewer, _) = client(&hub, "victor", Role::Viewer).await;
    let grant = Grant::new(Role::Host, Some(vec!["live-*".into()])).unwrap();
    let reg = hub.register_as("hank", None, grant).await.unwrap();
    let host = ClientId::from_wire(&reg.client).unwrap();
    let mute = json!({"type":"mute","room":"live-1","user":"bob"});
    for c in [&member, &viewer] {
        let refused = run(&hub, c, mute.clone()).await;
        assert_eq!(code(&refused), "forbidden", "{refused}");
    }
    assert_eq!(run(&hub, &host, mute).await["type"], "ack");
    let elsewhere = run(&hub, &host, json!({"type":"kick","room":"lobby","user":"bob"})).await;
    assert_eq!(code(&elsewhere), "forbidden", "{elsewhere}");
    let itself = run(&hub, &host, json!({"type":"kick","room":"live-1","user":"hank"})).await;
    assert_eq!(code(&itself), "bad_request", "{itself}");
    run(&hub, &member, json!({"type":"join","room":"live-1"})).await;
    let forged =
        run(&hub, &member, json!({"type":"publish","room":"live-1","event":"moderation","data":{}})).await;
    assert_eq!(code(&forged), "forbidden");
}

/// A client resuming from a cursor that names a room it was kicked from gets its other rooms
/// back, not that one.
#[tokio::test]
async fn a_resumed_cursor_does_not_bring_a_kicked_user_back() {
    let hub = hub();
    let (host, _) = client(&hub, "alice", Role::Host).await;
    let reg = hub.register("bob").await.unwrap();
    let bob = ClientId::from_wire(&reg.client).unwrap();
    run(&hub, &bob, json!({"type":"join","room":"lobby"})).await;
    run(&hub, &bob, json!({"type":"join","room":"other"})).await;
    let cursor = hub.reader(&bob, None).await.unwrap().current_cursor();
    run(&hub, &host, json!({"type":"kick","room":"lobby","user":"bob"})).await;
    hub.remove(&bob).await.unwrap();

    let again = hub.register_from("bob", Some(&cursor)).await.unwrap();
    let bob = ClientId::from_wire(&again.client).unwrap();
    assert_eq!(code(&run(&hub, &bob, say("lobby", "back?")).await), "not_joined");
    assert_eq!(run(&hub, &bob, say("other", "here")).await["type"], "ack");
}
