//! Graceful shutdown: every open stream is told (WebSocket close 1001, SSE end, long poll
//! answered) and the server then exits by itself.

mod common;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use quartet_core::{Config, Hub, MemoryEngine};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const PATIENCE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_tells_every_stream_and_exits() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hub = Hub::new(Arc::new(MemoryEngine::new()), Config::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(quartet_server::serve(listener, hub, async move {
        let _ = stopped.await;
    }));

    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for name in ["ws", "sse", "lp"] {
        ids.push(common::register_raw(&http, &url, name).await.0);
    }
    let ws_url = format!("{}/v1/clients/{}/ws", url.replacen("http", "ws", 1), ids[0]);
    let (mut socket, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    let sse = http.get(format!("{url}/v1/clients/{}/sse", ids[1])).send().await.unwrap();
    let mut sse = sse.bytes_stream();
    let long_poll =
        tokio::spawn(http.get(format!("{url}/v1/clients/{}/long-poll?wait_ms=30000", ids[2])).send());
    // Let the long poll park and the SSE stream send its first bytes.
    sse.next().await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    stop.send(()).unwrap();

    let close = loop {
        match tokio::time::timeout(PATIENCE, socket.next()).await.unwrap() {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(close.unwrap().code, CloseCode::Away);
    let answered = tokio::time::timeout(PATIENCE, long_poll).await.unwrap().unwrap().unwrap();
    assert_eq!(answered.status(), 200);
    while let Some(chunk) = tokio::time::timeout(PATIENCE, sse.next()).await.unwrap() {
        assert!(chunk.is_ok(), "the SSE stream ends cleanly: {chunk:?}");
    }
    tokio::time::timeout(PATIENCE, server).await.expect("server exits after shutdown").unwrap().unwrap();
}

/// A keep-alive connection waiting for its next request is closed at once on shutdown, and the
/// server exits: it does not wait for the header timeout (20 s) to run out on it.
#[tokio::test]
async fn an_idle_keep_alive_connection_closes_at_once_on_shutdown() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let hub = Hub::new(Arc::new(MemoryEngine::new()), Config::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(quartet_server::serve(listener, hub, async move {
        let _ = stopped.await;
    }));
    let mut idle = tokio::net::TcpStream::connect(address).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut answer = [0u8; 1024];
    let n = idle.read(&mut answer).await.unwrap();
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"));
    // The connection now waits for a head that does not come.
    tokio::time::sleep(Duration::from_millis(200)).await;

    stop.send(()).unwrap();

    let quick = Duration::from_secs(3);
    let read = tokio::time::timeout(quick, idle.read(&mut answer)).await;
    assert!(matches!(read, Ok(Ok(0) | Err(_))), "the idle connection is still open: {read:?}");
    tokio::time::timeout(quick, server).await.expect("server exits after shutdown").unwrap().unwrap();
}
