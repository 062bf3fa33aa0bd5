//! The guards on connections: a request must finish its headers in time (a slow loris is cut
//! off, an idle keep-alive connection too), and past a connection cap new connections are
//! closed at once while the server keeps answering the others.

mod common;

use std::time::{Duration, Instant};

use common::{ServeOptions, Server, start_with};
use quartet_core::Config;
use quartet_server::connections::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HEADER_TIMEOUT: Duration = Duration::from_millis(800);

async fn server(limits: Limits) -> Server {
    start_with(Config::default(), ServeOptions { limits, ..ServeOptions::default() }).await
}

fn address(server: &Server) -> String {
    server.url.trim_start_matches("http://").to_owned()
}

/// Reads until the peer closes; how long that took (panics after `within`).
async fn closed_within(socket: &mut TcpStream, within: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(within.saturating_sub(started.elapsed()), socket.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("still open after {within:?}"),
        }
    }
}

async fn healthz(server: &Server) -> u16 {
    server.http.get(format!("{}/healthz", server.url)).send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn a_slow_loris_and_an_idle_connection_are_cut_off() {
    let server = server(Limits { header_timeout: HEADER_TIMEOUT, ..Limits::default() }).await;
    // One header byte every 100 ms: never done.
    let mut loris = TcpStream::connect(address(&server)).await.unwrap();
    let started = Instant::now();
    let mut cut = false;
    for byte in
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter()
    {
        if loris.write_all(&[*byte]).await.is_err() {
            cut = true;
            break;
        }
        let mut probe = [0u8; 64];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(100), loris.read(&mut probe)).await
        {
            cut = true;
            break;
        }
    }
    assert!(cut, "a request dripping its headers for {:?} was never cut off", started.elapsed());
    assert!(started.elapsed() < HEADER_TIMEOUT * 3, "cut off only after {:?}", started.elapsed());

    // A whole request, its answer, then silence: closed after the same time.
    let mut idle = TcpStream::connect(address(&server)).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut answer = [0u8; 1024];
    let n = idle.read(&mut answer).await.unwrap();
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"));
    let after = closed_within(&mut idle, HEADER_TIMEOUT * 3).await;
    assert!(after >= HEADER_TIMEOUT / 2, "closed too soon: {after:?}");
    assert_eq!(healthz(&server).await, 200, "the server serves on");
}

/// The time a connection has for its next head counts from its last answer: a connection that
/// asks again more often than the header timeout is never cut off (the server's timer for it is
/// set once and moved on only when it fires: it must not fire for an earlier request's deadline).
#[tokio::test]
async fn each_request_gives_the_next_head_a_whole_header_timeout() {
    let server = server(Limits { header_timeout: HEADER_TIMEOUT, ..Limits::default() }).await;
    let mut socket = TcpStream::connect(address(&server)).await.unwrap();
    let started = Instant::now();
    // Four requests 0.6 header timeouts apart: the last comes 1.8 timeouts after the first.
    for request in 0..4 {
        if request > 0 {
            tokio::time::sleep(HEADER_TIMEOUT * 6 / 10).await;
        }
        socket.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut answer = [0u8; 1024];
        let n = socket.read(&mut answer).await.unwrap();
        assert!(
            String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"),
            "request {request}, {:?} after the first, was not answered",
            started.elapsed()
        );
    }
    let after = closed_within(&mut socket, HEADER_TIMEOUT * 3).await;
    assert!(after >= HEADER_TIMEOUT / 2, "closed too soon after the last answer: {after:?}");
}

#[tokio::test]
async fn past_the_cap_a_connection_is_closed_at_once_and_the_others_are_served() {
    let server = server(Limits { max_connections: Some(4), ..Limits::default() }).await;
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(TcpStream::connect(address(&server)).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await; // all four accepted
    let mut fifth = TcpStream::connect(address(&server)).await.unwrap();
    let _ = fifth.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    closed_within(&mut fifth, Duration::from_secs(2)).await;
    // One of the four goes: its slot is free again.
    drop(silent.pop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(healthz(&server).await, 200);
    let metrics =
        server.http.get(format!("{}/metrics", server.url)).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with("quartet_tcp_refused_total ") && !l.ends_with(" 0")),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_cap_per_address_leaves_room_for_other_addresses() {
    let server = server(Limits { max_connections_per_ip: Some(2), ..Limits::default() }).await;
    let _held = [
        TcpStream::connect(address(&server)).await.unwrap(),
        TcpStream::connect(address(&server)).await.unwrap(),
    ];
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = TcpStream::connect(address(&server)).await.unwrap();
    let _ = third.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    closed_within(&mut third, Duration::from_secs(2)).await;
    // Another address (all of 127.0.0.0/8 is loopback) is served.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut other = socket.connect(address(&server).parse().unwrap()).await.unwrap();
    other.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut answer = [0u8; 1024];
    let n = other.read(&mut answer).await.unwrap();
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"), "another address is served");
}

/// Past the cap of parked long polls, another long poll is answered `limit_reached` at once
/// with a retry hint, while other transports and `/healthz` are served; an answered long poll
/// frees its place.
#[tokio::test]
async fn past_the_cap_of_parked_long_polls_another_is_refused_at_once() {
    let server = server(Limits { max_long_polls: Some(2), ..Limits::default() }).await;
    let http = reqwest::Client::new();
    let mut clients = Vec::new();
    for name in ["a", "b", "c"] {
        clients.push(common::register_raw(&http, &server.url, name).await);
    }
    let poll = |(client, cursor): &(String, String), wait_ms: u64| {
        let url = format!("{}/v1/clients/{client}/long-poll?cursor={cursor}&wait_ms={wait_ms}", server.url);
        let http = http.clone();
        async move {
            let response = http.get(url).send().await.unwrap();
            (response.status().as_u16(), response.json::<serde_json::Value>().await.unwrap())
        }
    };
    let parked: Vec<_> = clients[..2].iter().map(|c| tokio::spawn(poll(c, 1500))).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let (status, body) = poll(&clients[2], 1500).await;
    assert_eq!((status, body["code"].as_str()), (503, Some("limit_reached")), "{body}");
    assert!(body["retry_after_ms"].as_u64().is_some(), "{body}");
    assert!(started.elapsed() < Duration::from_millis(500), "refused at once, not parked");
    assert_eq!(healthz(&server).await, 200);
    let short = format!("{}/v1/clients/{}/poll?cursor={}", server.url, clients[2].0, clients[2].1);
    assert_eq!(http.get(short).send().await.unwrap().status().as_u16(), 200, "short polls are not capped");
    for parked in parked {
        assert_eq!(parked.await.unwrap().0, 200);
    }
    assert_eq!(poll(&clients[2], 100).await.0, 200, "the places are free again");
}

/// A request head over the stated size is refused (431) and its connection closed; the server
/// goes on serving.
#[tokio::test]
async fn an_oversized_request_head_is_refused() {
    use quartet_server::connections::MAX_HEAD_BYTES;
    let server = server(Limits::default()).await;
    let mut socket = TcpStream::connect(address(&server)).await.unwrap();
    let cookie = "c".repeat(2 * MAX_HEAD_BYTES);
    let request = format!("GET /healthz HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\n\r\n");
    let _ = socket.write_all(request.as_bytes()).await; // the server may stop reading midway
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut answer)).await;
    let status = String::from_utf8_lossy(&answer).lines().next().unwrap_or("").to_owned();
    assert!(status.contains(" 431 "), "got {status:?}");
    // A head just under the size passes.
    let fine = "c".repeat(MAX_HEAD_BYTES / 2);
    let status = server
        .http
        .get(format!("{}/healthz", server.url))
        .header("cookie", fine)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 200);
}
