//! The SQLite engine on its own: group commit, what survives reopening the file, history reads,
//! kept sessions and acks, and retention reported to readers as a gap.

use std::path::PathBuf;
use std::sync::Arc;

use quartet_core::engine::SessionRecord;
use quartet_core::entry::Draft;
use quartet_core::testing::read_now;
use quartet_core::{Config, Engine, Grant, History, Hub, Role};
use quartet_protocol::{ClientId, EventName, Frame, GapReason, LogId, RoomName, Scope, Seq, UserName};
use quartet_sqlite::{Options, SqliteEngine};
use serde_json::json;
use serde_json::value::RawValue;

fn file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("quartet-sqlite-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("test.db")
}

fn room(name: &str) -> LogId {
    LogId::Room(RoomName::parse(name).unwrap())
}

fn draft(log: &LogId, text: &str) -> Draft {
    let data = RawValue::from_string(json!({ "text": text }).to_string()).unwrap();
    Draft::now(
        log.clone(),
        EventName::parse("chat").unwrap(),
        UserName::parse("alice").unwrap(),
        ClientId::from_random([1; 16]),
        Scope::Room,
        data,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_are_committed_in_groups_with_contiguous_seqs() {
    let engine = SqliteEngine::open(&file("group"), Options::default()).unwrap();
    let logs = [room("a"), room("b"), room("c")];
    let drafts: Vec<Draft> = (0..300).map(|i| draft(&logs[i % 3], &i.to_string())).collect();
    let seqs = futures_util::future::join_all(drafts.iter().map(|d| engine.append(d))).await;
    for (i, log) in logs.iter().enumerate() {
        let mut mine: Vec<u64> = seqs.iter().skip(i).step_by(3).map(|s| s.as_ref().unwrap().0).collect();
        mine.sort_unstable();
        assert_eq!(mine, (1..=100).collect::<Vec<_>>(), "{log}");
    }
    let (commits, writes) = engine.commit_stats();
    assert_eq!(writes, 300);
    assert!(commits <= 10, "300 concurrent appends took {commits} commits: no group commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopened_file_keeps_epoch_seqs_events_sessions_and_acks() {
    let path = file("reopen");
    let lobby = room("lobby");
    let session = SessionRecord {
        client: ClientId::from_random([9; 16]),
        user: UserName::parse("alice").unwrap(),
        // Not the open grant: what a token gave must come back as it was.
        grant: Grant::new(Role::Viewer, Some(vec!["lobby".into(), "live-*".into()])).unwrap(),
        inbox_from: Seq(3),
        rooms: vec![(RoomName::parse("lobby").unwrap(), Seq(1))],
        last_seen_ms: 1_764_150_000_000,
        acks: Vec::new(),
    };
    let epoch = {
        let engine = SqliteEngine::open(&path, Options::default()).unwrap();
        engine.save_session(&session).await.unwrap();
        for i in 0..5 {
            let mut d = draft(&lobby, &format!("m{i}"));
            d.from_client = session.client.clone();
            d.id = Some(format!("id{i}"));
            assert_eq!(engine.append(&d).await.unwrap(), Seq(i + 1));
        }
        engine.epoch()
    };
    let engine = SqliteEngine::open(&path, Options::default()).unwrap();
    assert_eq!(engine.epoch(), epoch, "cursors outlive the restart");
    assert_eq!(engine.head(&lobby).await.unwrap(), Seq(5));
    assert_eq!(engine.append(&draft(&lobby, "after")).await.unwrap(), Seq(6), "seqs continue");
    let History::Events(events) = engine.read(&lobby, Seq(2), 10).await.unwrap() else {
        panic!("sqlite keeps history")
    };
    let texts: Vec<String> = events
        .iter()
        .map(|e| {
            serde_json::from_str::<serde_json::Value>(e.draft.data.get()).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(texts, ["m2", "m3", "m4", "after"]);
    assert_eq!(events.iter().map(|e| e.seq.0).collect::<Vec<_>>(), [3, 4, 5, 6]);
    let loaded = engine.load_sessions().await.unwrap();
    assert_eq!(loaded.len(), 1);
    let acks: Vec<(String, u64)> = loaded[0].acks.iter().map(|(id, _, seq)| (id.clone(), seq.0)).collect();
    assert_eq!(acks, (0..5).map(|i| (format!("id{i}"), i + 1)).collect::<Vec<_>>());
    assert_eq!(SessionRecord { acks: Vec::new(), ..loaded[0].clone() }, session);
    engine.delete_session(&session.client).await.unwrap();
    assert!(engine.load_sessions().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_retention_dropped_reaches_a_reader_as_a_retention_gap() {
    let path = file("retention");
    let lobby = room("lobby");
    {
        let engine = SqliteEngine::open(&path, Options::default()).unwrap();
        for i in 0..20 {
            engine.append(&draft(&lobby, &format!("m{i}"))).await.unwrap();
        }
    }
    // Reopened keeping 5 events per log: retention runs at start.
    let options = Options { retain_events: Some(5), ..Options::default() };
    let engine: Arc<dyn Engine> = Arc::new(SqliteEngine::open(&path, options).unwrap());
    let mut waited = 0;
    while !matches!(engine.read(&lobby, Seq(0), 1).await.unwrap(), History::Events(e) if e[0].seq == Seq(16))
    {
        waited += 1;
        assert!(waited < 100, "retention did not run at start");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // A client whose cursor is at seq 2 of the room: a gap for 3..=15, then 16..=20.
    let hub = Hub::new(engine.clone(), Config::default());
    let reg = hub.register("bob").await.unwrap();
    let bob = ClientId::from_wire(&reg.client).unwrap();
    let mut cursor = quartet_protocol::Cursor::decode(&reg.cursor).unwrap();
    cursor.positions.insert(lobby.clone(), Seq(2));
    let again = hub.register_from("bob", Some(&cursor.encode())).await.unwrap();
    hub.remove(&bob).await.unwrap();
    let bob = ClientId::from_wire(&again.client).unwrap();
    let mut reader = hub.reader(&bob, Some(&again.cursor)).await.unwrap();
    let frames: Vec<Frame> = read_now(&mut reader)
        .await
        .unwrap()
        .iter()
        .map(|o| serde_json::from_slice(&o.json).unwrap())
        .collect();
    let gap = frames[0].as_gap().unwrap_or_else(|| panic!("no gap first: {frames:#?}"));
    assert_eq!((gap.reason, gap.missed_from, gap.missed_to), (GapReason::Retention, Some(3), Some(15)));
    let chats: Vec<u64> =
        frames.iter().filter_map(Frame::as_event).filter(|e| e.event == "chat").map(|e| e.seq).collect();
    assert_eq!(chats, [16, 17, 18, 19, 20]);
}

fn metric(engine: &SqliteEngine, name: &str) -> u64 {
    engine.metrics().into_iter().find(|(n, _, _)| *n == name).map(|(_, _, v)| v).unwrap()
}

fn seqs(history: History) -> Vec<u64> {
    let History::Events(events) = history else { panic!("sqlite keeps history") };
    events.iter().map(|e| e.seq.0).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_finds_events_on_both_sides_of_the_index() {
    let engine = SqliteEngine::open(&file("index"), Options::default()).unwrap();
    let (lobby, other) = (room("lobby"), room("other"));
    for i in 0..5 {
        engine.append(&draft(&lobby, &format!("m{i}"))).await.unwrap();
        engine.append(&draft(&other, &format!("o{i}"))).await.unwrap();
    }
    let mut waited = 0;
    while metric(&engine, "quartet_sqlite_indexed_events_total") < 10 {
        waited += 1;
        assert!(waited < 100, "the appended events were never indexed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Appended and read at once, within one index interval: the read must find the indexed
    // events of the room, then the ones not indexed yet (and none of the other room's).
    let mut next = 6;
    for _attempt in 0..5 {
        let indexed = metric(&engine, "quartet_sqlite_indexed_events_total");
        for i in 0..3 {
            engine.append(&draft(&lobby, &format!("m{}", next + i))).await.unwrap();
            engine.append(&draft(&other, "o")).await.unwrap();
        }
        next += 3;
        let read = seqs(engine.read(&lobby, Seq(2), 100).await.unwrap());
        assert_eq!(read, (3..next).collect::<Vec<_>>());
        assert_eq!(seqs(engine.read(&lobby, Seq(2), 4).await.unwrap()), [3, 4, 5, 6], "limit");
        if metric(&engine, "quartet_sqlite_indexed_events_total") == indexed {
            return; // the reads did cross from indexed to unindexed events
        }
    }
    panic!("every attempt was indexed before it was read: the unindexed part was never read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_starts_over_while_writes_never_pause() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let path = file("wal");
    let engine = Arc::new(SqliteEngine::open(&path, Options::default()).unwrap());
    let text = "x".repeat(1000);
    let written = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = std::time::Instant::now();
    // 20 appenders that never pause: a checkpoint on another thread alone never gets to copy
    // all of the WAL, so only the writer's own restarts keep the file from growing.
    let appenders: Vec<_> = (0..20)
        .map(|i| {
            let (engine, text, written, stop) = (engine.clone(), text.clone(), written.clone(), stop.clone());
            tokio::spawn(async move {
                let log = room(&format!("r{i}"));
                while !stop.load(Ordering::Relaxed) {
                    engine.append(&draft(&log, &text)).await.unwrap();
                    written.fetch_add(text.len() as u64, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let wal_size = || std::fs::metadata(&wal).map_or(0, |m| m.len());
    let in_time = |what: &str| assert!(started.elapsed().as_secs() < 40, "{what} took over 40 s");
    // However long the first restarts take on a busy machine, the WAL then stops growing: as
    // much again written after the third restart adds less than half of it to the file.
    while metric(&engine, "quartet_sqlite_wal_restarts_total") < 3 {
        in_time("three WAL restarts");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (size_then, written_then) = (wal_size(), written.load(Ordering::Relaxed));
    let more = size_then.max(8 << 20);
    while written.load(Ordering::Relaxed) - written_then < more {
        in_time("writing as much again");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for appender in futures_util::future::join_all(appenders).await {
        appender.unwrap();
    }
    let since = written.load(Ordering::Relaxed) - written_then;
    let size_now = wal_size();
    assert!(
        size_now < size_then + since / 2,
        "the WAL grew from {size_then} B to {size_now} B while {since} B were written: it did not start over"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_of_schema_3_is_upgraded_and_its_sessions_are_open() {
    let path = file("schema3");
    let session = SessionRecord {
        client: ClientId::from_random([3; 16]),
        user: UserName::parse("alice").unwrap(),
        grant: Grant::open(),
        inbox_from: Seq(0),
        rooms: vec![(RoomName::parse("lobby").unwrap(), Seq(0))],
        last_seen_ms: 1_764_150_000_000,
        acks: Vec::new(),
    };
    {
        let engine = SqliteEngine::open(&path, Options::default()).unwrap();
        engine.save_session(&session).await.unwrap();
    }
    // What schema 3 looked like: no grants.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "ALTER TABLE sessions DROP COLUMN access; UPDATE meta SET value = '3' WHERE key = 'schema';",
    )
    .unwrap();
    drop(conn);
    let engine = SqliteEngine::open(&path, Options::default()).expect("a schema 3 file opens");
    let loaded = engine.load_sessions().await.unwrap();
    assert_eq!(loaded, [session]);
    // And it is schema 4 now: a viewer's grant is kept.
    let viewer = SessionRecord {
        client: ClientId::from_random([4; 16]),
        grant: Grant::new(Role::Viewer, None).unwrap(),
        ..loaded[0].clone()
    };
    engine.save_session(&viewer).await.unwrap();
    assert!(engine.load_sessions().await.unwrap().contains(&viewer));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_leaves_the_whole_store_in_the_file() {
    let path = file("close");
    let engine = SqliteEngine::open(&path, Options::default()).unwrap();
    let lobby = room("lobby");
    for i in 0..50 {
        engine.append(&draft(&lobby, &format!("m{i}"))).await.unwrap();
    }
    engine.close().await.unwrap();
    assert_eq!(
        metric(&engine, "quartet_sqlite_indexed_events_total"),
        50,
        "the last events indexed at close"
    );
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    assert_eq!(std::fs::metadata(&wal).map_or(0, |m| m.len()), 0, "the WAL copied into the file and emptied");
    drop(engine);
    // The file alone (as a copy of quartet.db without its -wal would be) has every event.
    let copy = path.with_file_name("copy.db");
    std::fs::copy(&path, &copy).unwrap();
    let reopened = SqliteEngine::open(&copy, Options::default()).unwrap();
    assert_eq!(seqs(reopened.read(&lobby, Seq(0), 100).await.unwrap()), (1..=50).collect::<Vec<_>>());
}

/// Mutes and bans are kept in the file: they are there after reopening, ended ones are not,
/// and a lifted one is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restrictions_survive_reopening_until_they_end() {
    use quartet_core::engine::wall_ms;
    use quartet_core::moderation::{Restriction, RestrictionKind};
    let path = file("restrictions");
    let (lobby, other) = (RoomName::parse("lobby").unwrap(), RoomName::parse("other").unwrap());
    let restriction =
        |user: &str, kind, until_ms| Restriction { user: UserName::parse(user).unwrap(), kind, until_ms };
    let now = wall_ms();
    {
        let engine = SqliteEngine::open(&path, Options::default()).unwrap();
        engine.restrict(&lobby, &restriction("bob", RestrictionKind::Mute, now + 60_000)).await.unwrap();
        engine.restrict(&lobby, &restriction("eve", RestrictionKind::Ban, now + 60_000)).await.unwrap();
        engine.restrict(&lobby, &restriction("zed", RestrictionKind::Ban, now + 1)).await.unwrap();
        engine.restrict(&other, &restriction("bob", RestrictionKind::Ban, now + 60_000)).await.unwrap();
        engine.close().await.unwrap();
    }
    let engine = SqliteEngine::open(&path, Options::default()).unwrap();
    let mut kept = engine.restrictions(&lobby, now + 10).await.unwrap();
    kept.sort_by(|a, b| a.user.cmp(&b.user));
    assert_eq!(
        kept,
        [
            restriction("bob", RestrictionKind::Mute, now + 60_000),
            restriction("eve", RestrictionKind::Ban, now + 60_000)
        ],
        "zed's ban ended; other's restriction belongs to other"
    );
    engine.restrict(&lobby, &restriction("bob", RestrictionKind::Mute, 0)).await.unwrap();
    let kept = engine.restrictions(&lobby, now + 10).await.unwrap();
    assert_eq!(kept, [restriction("eve", RestrictionKind::Ban, now + 60_000)], "bob's mute was lifted");
    assert!(engine.restrictions(&lobby, now + 60_000).await.unwrap().is_empty(), "eve's ban ends on time");
}

/// A cursor naming a base resumes after a restart: the base is in the file. A base is dropped
/// by retention only a day after the events it points past.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_on_a_base_resumes_after_reopening_and_old_bases_are_dropped() {
    let path = file("bases");
    let rooms: Vec<String> = (0..8).map(|i| format!("r{i}")).collect();
    let (cursor, base) = {
        let engine: Arc<dyn Engine> = Arc::new(SqliteEngine::open(&path, Options::default()).unwrap());
        let hub = Hub::new(engine.clone(), Config::default());
        let reg = hub.register("crowd").await.unwrap();
        let crowd = ClientId::from_wire(&reg.client).unwrap();
        for room in &rooms {
            hub.execute(&crowd, json!({"type":"join","room":room}).to_string().as_bytes()).await.unwrap();
        }
        let mut reader = hub.reader(&crowd, Some(&reg.cursor)).await.unwrap();
        read_now(&mut reader).await.unwrap(); // 8 rooms: a base is stored, off the delivery path
        let publish =
            |text: &str| json!({"type":"publish","room":"r3","event":"chat","data":text}).to_string();
        let mut based = None;
        for i in 0..100 {
            hub.execute(&crowd, publish(&format!("before{i}")).as_bytes()).await.unwrap();
            let frame = read_now(&mut reader).await.unwrap().pop().unwrap();
            let decoded = quartet_protocol::Cursor::decode(&frame.cursor).unwrap();
            if let Some(base) = decoded.base {
                based = Some((frame.cursor, base));
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let (cursor, base) = based.expect("the reader's cursors name a base once it is committed");
        hub.execute(&crowd, publish("after").as_bytes()).await.unwrap();
        engine.close().await.unwrap();
        (cursor, base)
    };
    let engine: Arc<dyn Engine> = Arc::new(SqliteEngine::open(&path, Options::default()).unwrap());
    let hub = Hub::new(engine.clone(), Config::default());
    let again = hub.register_from("crowd", Some(&cursor)).await.unwrap();
    let crowd = ClientId::from_wire(&again.client).unwrap();
    let mut reader = hub.reader(&crowd, Some(&again.cursor)).await.unwrap();
    // Read until nothing more comes (older than the rings, some logs come from the file).
    let mut frames: Vec<Frame> = Vec::new();
    loop {
        let more = read_now(&mut reader).await.unwrap();
        if more.is_empty() {
            break;
        }
        frames.extend(more.iter().map(|o| serde_json::from_slice::<Frame>(&o.json).unwrap()));
    }
    let chats: Vec<String> = frames
        .iter()
        .filter_map(Frame::as_event)
        .filter(|e| e.event == "chat")
        .map(|e| e.data.as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(chats, ["after"], "exactly what came after the cursor");
    let rooms_read: std::collections::BTreeSet<&str> =
        frames.iter().filter_map(Frame::as_event).map(|e| e.room.as_str()).collect();
    assert_eq!(rooms_read.len(), 8, "every room restored from the base: {rooms_read:?}");
    engine.close().await.unwrap();
    drop(hub);
    drop(engine);

    // Made 40 days ago: with 30 days of retention, the base is dropped at the next start.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let old = quartet_core::engine::wall_ms() - 40 * 24 * 3600 * 1000;
    conn.execute(
        "UPDATE cursor_bases SET created_ms = ?1 WHERE id = ?2",
        rusqlite::params![old as i64, base.0 as i64],
    )
    .unwrap();
    drop(conn);
    let options =
        Options { retain_for: Some(std::time::Duration::from_secs(30 * 24 * 3600)), ..Options::default() };
    let engine = SqliteEngine::open(&path, options).unwrap();
    let mut waited = 0;
    while engine.load_base(base).await.unwrap().is_some() {
        waited += 1;
        assert!(waited < 100, "retention kept a base older than the events it points past");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
