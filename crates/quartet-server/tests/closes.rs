//! Closing so the client is always told why: when the server ends a connection while the client
//! is still sending (a WebSocket message over the limit, an HTTP body over the limit), the
//! client must still read the close frame or the 413 answer. Closing the socket at once would
//! let the kernel answer the client's next bytes with a reset, which can overtake the answer.

mod common;

use std::time::Duration;

use common::start_default;
use futures_util::{SinkExt, StreamExt};
use quartet_server::transport::ws::WS_MAX_MESSAGE_BYTES;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// Tries per test: a reset that wins the race about half the time fails one of them.
const TRIES: usize = 10;

#[tokio::test]
async fn a_websocket_message_over_the_limit_always_gets_its_1009() {
    let server = start_default().await;
    for attempt in 0..TRIES {
        let (client, cursor) = common::register_raw(&server.http, &server.url, "big").await;
        let url = format!("{}/v1/clients/{client}/ws?cursor={cursor}", server.url.replacen("http", "ws", 1));
        let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        // Four times the limit, all of it sent before reading anything (as a simple client
        // does), while the server has long decided to refuse it.
        let huge = "x".repeat(4 * WS_MAX_MESSAGE_BYTES);
        let _ = socket.send(Message::Text(huge.into())).await;
        let close = loop {
            match tokio::time::timeout(Duration::from_secs(10), socket.next()).await.expect("an answer") {
                Some(Ok(Message::Close(frame))) => break frame,
                Some(Ok(_)) => continue,
                other => panic!("attempt {attempt}: the close frame was lost: {other:?}"),
            }
        };
        assert_eq!(close.map(|c| c.code), Some(CloseCode::Size), "attempt {attempt}");
        // Then the server's end of the stream, not a reset: it closed after the close frame
        // with a FIN, and did not throw away the bytes still coming.
        match tokio::time::timeout(Duration::from_secs(10), socket.next()).await.expect("an end") {
            None | Some(Ok(_)) => {}
            Some(Err(error)) => panic!("attempt {attempt}: the connection was reset: {error}"),
        }
    }
}

#[tokio::test]
async fn an_http_body_over_the_limit_always_gets_its_413() {
    let server = start_default().await;
    let address = server.url.trim_start_matches("http://").to_owned();
    let body_len = 4 * 1024 * 1024;
    for attempt in 0..TRIES {
        let socket = tokio::net::TcpStream::connect(&address).await.unwrap();
        let (mut read, mut write) = socket.into_split();
        let head = format!(
            "POST /v1/clients HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {body_len}\r\n\r\n"
        );
        // All of the body first, then the answer, as most HTTP clients do: the sending must not
        // fail halfway (a reset would end it there, and such a client never reads the 413).
        write.write_all(head.as_bytes()).await.unwrap();
        let chunk = vec![b' '; 64 * 1024];
        for sent in 0..body_len / chunk.len() {
            if let Err(error) = write.write_all(&chunk).await {
                panic!("attempt {attempt}: reset after {} KiB of the body: {error}", sent * 64);
            }
        }
        // The whole answer, then the server's end of the stream: a FIN, not a reset.
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match tokio::time::timeout(Duration::from_secs(10), read.read(&mut buf)).await.expect("an answer")
            {
                Ok(0) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
                Err(error) => {
                    panic!("attempt {attempt}: reset after {:?}: {error}", String::from_utf8_lossy(&answer))
                }
            }
        }
        let answer = String::from_utf8_lossy(&answer).into_owned();
        assert!(answer.starts_with("HTTP/1.1 413"), "attempt {attempt}: {answer:?}");
        drop(write);
    }
}

/// A client removed while its WebSocket is open is told so on it, then the socket closes
/// (1008): the end of a session reaches a connection whose events publishers write for it.
#[tokio::test]
async fn a_removed_client_s_websocket_is_told_why_and_closed() {
    let server = start_default().await;
    let (client, cursor) = common::register_raw(&server.http, &server.url, "gone").await;
    let url = format!("{}/v1/clients/{client}/ws?cursor={cursor}", server.url.replacen("http", "ws", 1));
    let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let deleted = server.http.delete(format!("{}/v1/clients/{client}", server.url)).send().await.unwrap();
    assert!(deleted.status().is_success(), "{}", deleted.status());
    let mut said = None;
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.next()).await.expect("the end within 10 s")
        {
            Some(Ok(Message::Text(text))) => said = Some(text.to_string()),
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("no close frame: {other:?}"),
        }
    };
    assert!(said.as_deref().is_some_and(|s| s.contains("unknown_client")), "said: {said:?}");
    assert_eq!(close.map(|c| c.code), Some(CloseCode::Policy));
}
