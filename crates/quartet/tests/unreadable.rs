//! A stored event this project's client cannot parse (a number no `f64` holds, kept by an older
//! server that did not refuse it at publish) is reported and skipped on every transport: the
//! client never reconnects forever from the same cursor, and the events after it arrive.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use quartet_client::{Client, ClientError, Command, Frame, Options, Reply, TransportKind};
use quartet_core::{Config, Engine, Hub};
use quartet_sqlite::SqliteEngine;
use serde_json::json;
use tokio::net::TcpListener;

struct Running {
    url: String,
    engine: Arc<SqliteEngine>,
    stop: tokio::sync::oneshot::Sender<()>,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn serve(path: &Path) -> Running {
    let engine = Arc::new(SqliteEngine::open(path, quartet_sqlite::Options::default()).unwrap());
    let hub = Hub::new(engine.clone(), Config::default());
    hub.restore().await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(quartet_server::serve(listener, hub, async move {
        let _ = stopped.await;
    }));
    Running { url, engine, stop, served }
}

fn options() -> Options {
    Options { poll_interval: Duration::from_millis(20), long_poll_wait: Duration::from_secs(2) }
}

fn text(frame: &Frame) -> Option<String> {
    frame
        .as_event()
        .filter(|e| e.event == "chat")
        .map(|e| e.data["text"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_the_client_cannot_read_is_reported_and_skipped_on_every_transport() {
    let dir = std::env::temp_dir().join(format!("quartet-unreadable-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("q.db");

    // A reader in room `r` (its cursor is taken after its own join), then one readable event.
    let first = serve(&path).await;
    let mut reader =
        Client::connect_with(&first.url, "reader", TransportKind::LongPoll, options()).await.unwrap();
    reader.command(Command::join("r").unwrap()).await.unwrap();
    reader.receive().await.unwrap();
    let cursor = reader.cursor().to_owned();
    let mut writer = Client::connect_with(&first.url, "writer", TransportKind::Ws, options()).await.unwrap();
    writer.command(Command::join("r").unwrap()).await.unwrap();
    let reply =
        writer.command(Command::publish("r", "chat", &json!({ "text": "before" })).unwrap()).await.unwrap();
    assert!(matches!(reply, Reply::Ack { .. }), "{reply:?}");
    let _ = first.stop.send(());
    first.served.await.unwrap().unwrap();
    first.engine.close().await.unwrap();
    drop(first.engine);

    // What an older server let in: a number past f64, then a readable event after it.
    {
        let db = rusqlite::Connection::open(&path).unwrap();
        db.busy_timeout(Duration::from_secs(5)).unwrap();
        let id: i64 = db.query_row("SELECT max(id) FROM events", [], |r| r.get(0)).unwrap();
        let head: i64 = db.query_row("SELECT head FROM logs WHERE log = 'r'", [], |r| r.get(0)).unwrap();
        for (i, data) in [r#"{"text":"bad","n":1e999999}"#, r#"{"text":"after"}"#].into_iter().enumerate() {
            let i = i as i64 + 1;
            db.execute(
                "INSERT INTO events (id, log, seq, event, from_user, from_client, scope, data, ts)
                 VALUES (?1, 'r', ?2, 'chat', 'writer', 'x', 0, ?3, 1764000000000)",
                rusqlite::params![id + i, head + i, data],
            )
            .unwrap();
        }
    }

    let second = serve(&path).await;
    for kind in TransportKind::ALL {
        let http = reqwest::Client::new();
        let mut client =
            Client::connect_from(http, &second.url, "reader", Some(&cursor), kind, options()).await.unwrap();
        let (mut texts, mut skipped) = (Vec::new(), 0);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        // Polls give the readable events of a batch first and report what they skipped next.
        while !texts.iter().any(|t| t == "after") || skipped == 0 {
            match tokio::time::timeout_at(deadline, client.receive()).await {
                Err(_) => panic!("{kind}: stuck after {texts:?} and {skipped} skipped"),
                Ok(Ok(frames)) => texts.extend(frames.iter().filter_map(text)),
                Ok(Err(ClientError::Unreadable { .. })) => skipped += 1,
                Ok(Err(other)) => panic!("{kind}: {other}"),
            }
        }
        assert_eq!((texts, skipped), (vec!["before".to_owned(), "after".to_owned()], 1), "{kind}");
    }
    let _ = second.stop.send(());
    let _ = std::fs::remove_dir_all(&dir);
}
