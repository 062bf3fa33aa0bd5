//! HTTP/1.1 as the server speaks it, on raw sockets: pipelining, both body framings,
//! `Expect: 100-continue`, `HEAD`, HTTP/1.0, and the refusals (request smuggling shapes,
//! oversized bodies, malformed heads) answered with JSON error frames.

mod common;

use std::time::Duration;

use common::{Server, register_raw, start};
use quartet_core::Config;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn connect(server: &Server) -> TcpStream {
    TcpStream::connect(server.url.trim_start_matches("http://")).await.unwrap()
}

/// One answer read off a socket.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// Header lines, names lowercased.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

/// Reads one answer from `socket` (bytes past it stay in `pending`). `head_only`: the answer
/// to a HEAD, whose `content-length` announces a body that is not sent.
/// An answer's status and headers, in order, but the date.
fn undated(answer: &Answer) -> Vec<(String, String)> {
    let status = ("status".to_owned(), answer.status.to_string());
    std::iter::once(status).chain(answer.headers.iter().filter(|(name, _)| name != "date").cloned()).collect()
}

async fn read_answer(socket: &mut TcpStream, pending: &mut Vec<u8>, head_only: bool) -> Answer {
    let end = loop {
        if let Some(at) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        read_more(socket, pending).await;
    };
    let head = String::from_utf8(pending.drain(..end + 4).collect()).unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (name, value) = l.split_once(':').unwrap();
            (name.to_ascii_lowercase(), value.trim().to_owned())
        })
        .collect();
    let length: usize = match headers.iter().find(|(n, _)| n == "content-length") {
        _ if head_only => 0,
        Some((_, v)) => v.parse().unwrap(),
        None => 0,
    };
    while pending.len() < length {
        read_more(socket, pending).await;
    }
    let body = pending.drain(..length).collect();
    Answer { status, headers, body }
}

/// Reads what comes next into `pending` (panics if nothing comes within 5 s, or the end).
async fn read_more(socket: &mut TcpStream, pending: &mut Vec<u8>) {
    let mut chunk = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut chunk))
        .await
        .expect("an answer within 5 s")
        .unwrap();
    assert!(n > 0, "closed before the answer was whole: {:?}", String::from_utf8_lossy(pending));
    pending.extend_from_slice(&chunk[..n]);
}

/// Whether the server closes `socket` within two seconds.
async fn closes(socket: &mut TcpStream) -> bool {
    let mut rest = Vec::new();
    matches!(tokio::time::timeout(Duration::from_secs(2), socket.read_to_end(&mut rest)).await, Ok(Ok(_)))
}

/// A register request's body framed by chunks: `{"name":"carol"}` in two pieces and a trailer.
const CHUNKED_REGISTER: &[u8] = b"POST /v1/clients HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n{\"name\":\"\r\n7;ext=1\r\ncarol\"}\r\n0\r\nX-Trailer: yes\r\n\r\n";

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let server = start(Config::default()).await;
    let mut socket = connect(&server).await;
    socket
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/rooms/lobby HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut pending = Vec::new();
    let first = read_answer(&mut socket, &mut pending, false).await;
    assert_eq!((first.status, first.json()["status"].as_str()), (200, Some("ok")), "{first:?}");
    let second = read_answer(&mut socket, &mut pending, false).await;
    assert_eq!((second.status, second.json()["room"].as_str()), (200, Some("lobby")), "{second:?}");
    // And the connection carries a third.
    socket.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    assert_eq!(read_answer(&mut socket, &mut pending, false).await.status, 200);
}

#[tokio::test]
async fn a_chunked_body_is_read_whole() {
    let server = start(Config::default()).await;
    let mut socket = connect(&server).await;
    socket.write_all(CHUNKED_REGISTER).await.unwrap();
    let answer = read_answer(&mut socket, &mut Vec::new(), false).await;
    assert_eq!(answer.status, 201, "{answer:?}");
    assert_eq!(answer.json()["name"], "carol");
}

#[tokio::test]
async fn expect_100_continue_is_answered_before_the_body() {
    let server = start(Config::default()).await;
    let mut socket = connect(&server).await;
    let body = br#"{"name":"dave"}"#;
    let head = format!(
        "POST /v1/clients HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut pending = Vec::new();
    let interim = read_answer(&mut socket, &mut pending, false).await;
    assert_eq!(interim.status, 100, "{interim:?}");
    socket.write_all(body).await.unwrap();
    let answer = read_answer(&mut socket, &mut pending, false).await;
    assert_eq!((answer.status, answer.json()["name"].as_str()), (201, Some("dave")), "{answer:?}");
}

#[tokio::test]
async fn head_answers_without_a_body_and_the_connection_goes_on() {
    let server = start(Config::default()).await;
    let mut socket = connect(&server).await;
    socket
        .write_all(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut pending = Vec::new();
    let head = read_answer(&mut socket, &mut pending, true).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("application/json"), "{head:?}");
    // The next bytes are the GET's answer, not a body of the HEAD's.
    let get = read_answer(&mut socket, &mut pending, false).await;
    assert_eq!((get.status, get.json()["status"].as_str()), (200, Some("ok")), "{get:?}");
}

#[tokio::test]
async fn http_1_0_closes_unless_asked_to_keep_alive() {
    let server = start(Config::default()).await;
    let mut socket = connect(&server).await;
    socket.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").await.unwrap();
    let answer = read_answer(&mut socket, &mut Vec::new(), false).await;
    assert_eq!((answer.status, answer.header("connection")), (200, Some("close")), "{answer:?}");
    assert!(closes(&mut socket).await, "a 1.0 request without keep-alive ends its connection");

    let mut socket = connect(&server).await;
    socket.write_all(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").await.unwrap();
    let mut pending = Vec::new();
    let answer = read_answer(&mut socket, &mut pending, false).await;
    assert_eq!((answer.status, answer.header("connection")), (200, Some("keep-alive")), "{answer:?}");
    socket.write_all(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").await.unwrap();
    assert_eq!(read_answer(&mut socket, &mut pending, false).await.status, 200);
}

#[tokio::test]
async fn connection_close_is_honoured() {
    let server = start(Config::default()).await;
    let mut socket = connect(&server).await;
    socket.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let answer = read_answer(&mut socket, &mut Vec::new(), false).await;
    assert_eq!((answer.status, answer.header("connection")), (200, Some("close")));
    assert!(closes(&mut socket).await);
}

/// The shapes a proxy in front could frame differently from the server are refused whole,
/// with a JSON error, and the connection closed; the server serves on.
#[tokio::test]
async fn ambiguous_or_oversized_requests_are_refused_with_json_errors() {
    let server = start(Config::default()).await;
    let cases: [(&[u8], u16, &str); 6] = [
        (
            b"POST /v1/clients HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
            "bad_request",
        ),
        (b"POST /v1/clients HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde", 400, "bad_request"),
        (b"POST /v1/clients HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501, "bad_request"),
        (b"POST /v1/clients HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n", 413, "too_large"),
        (b"POST /v1/clients HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400, "bad_request"),
        (b"GET /healthz HTTP/1.1\r\nHo st: x\r\n\r\n", 400, "bad_request"),
    ];
    for (request, status, code) in cases {
        let mut socket = connect(&server).await;
        socket.write_all(request).await.unwrap();
        let answer = read_answer(&mut socket, &mut Vec::new(), false).await;
        let shown = String::from_utf8_lossy(request);
        assert_eq!(answer.status, status, "{shown}: {answer:?}");
        assert_eq!(answer.json()["code"], code, "{shown}: {answer:?}");
        assert_eq!(answer.header("connection"), Some("close"), "{shown}");
        assert!(closes(&mut socket).await, "{shown}: still open");
    }
    let health = server.http.get(format!("{}/healthz", server.url)).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
}

/// An SSE stream to an HTTP/1.0 client cannot be chunked: it is sent as is, and ends with the
/// connection.
#[tokio::test]
async fn a_stream_to_http_1_0_is_close_delimited() {
    let server = start(Config::default()).await;
    let (client, _) = register_raw(&server.http, &server.url, "erin").await;
    let mut socket = connect(&server).await;
    socket.write_all(format!("GET /v1/clients/{client}/sse HTTP/1.0\r\n\r\n").as_bytes()).await.unwrap();
    let mut pending = Vec::new();
    let answer = read_answer(&mut socket, &mut pending, false).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("transfer-encoding"), None, "{answer:?}");
    assert_eq!(answer.header("connection"), Some("close"), "{answer:?}");
    while !pending.ends_with(b"\n\n") {
        read_more(&mut socket, &mut pending).await;
    }
    assert_eq!(String::from_utf8_lossy(&pending), "retry: 1000\n\n", "the stream's first block, unframed");
}

/// A client that goes away while its long poll is parked, or while its SSE stream is idle,
/// frees its reader at once: the client may open its eight readers again right away (without
/// it, the parked polls would hold them for their whole wait, and the idle streams until a
/// write failed).
#[tokio::test]
async fn a_client_gone_mid_answer_frees_its_reader_at_once() {
    let server = start(Config::default()).await;
    let (client, _) = register_raw(&server.http, &server.url, "fay").await;
    for route in ["long-poll?wait_ms=30000", "sse"] {
        let mut sockets = Vec::new();
        for _ in 0..8 {
            let mut socket = connect(&server).await;
            socket
                .write_all(format!("GET /v1/clients/{client}/{route} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .await
                .unwrap();
            sockets.push(socket);
        }
        tokio::time::sleep(Duration::from_millis(200)).await; // all eight parked or streaming
        drop(sockets);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let status = server
            .http
            .get(format!("{}/v1/clients/{client}/long-poll?wait_ms=10", server.url))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status.as_u16(), 200, "{route}: the gone clients' readers are still held");
    }
}

/// A poll in its plainest form is answered by the connection's direct route; the same poll
/// with one character of its target percent-encoded goes through the router. Both answer
/// alike: events, cursor, errors, on the same keep-alive connection.
#[tokio::test]
async fn a_poll_answers_alike_by_the_direct_route_and_by_the_router() {
    let server = start(Config::default()).await;
    let (client, first) = register_raw(&server.http, &server.url, "fay").await;
    let commands = format!("{}/v1/clients/{client}/commands", server.url);
    for command in [
        serde_json::json!({"type":"join","room":"lobby"}),
        serde_json::json!({"type":"publish","room":"lobby","event":"chat","data":{"text":"hi"}}),
    ] {
        let reply = common::post_json(&server.http, &commands, &command).await;
        assert_ne!(reply["replies"][0]["type"], "error", "{reply}");
    }
    // The router decodes `%XX`; the direct route takes no target that needs it.
    let encoded = |text: &str| format!("%{:02X}{}", text.as_bytes()[0], &text[1..]);
    let cases = [
        (format!("{client}/poll?cursor={first}"), format!("{}/poll?cursor={first}", encoded(&client))),
        (format!("{client}/poll"), format!("{}/poll", encoded(&client))),
        // A fragment is no part of the query the router reads.
        (format!("{client}/poll?cursor={first}#x"), format!("{}/poll?cursor={first}#x", encoded(&client))),
        (
            format!("{client}/long-poll?cursor={first}&wait_ms=0"),
            format!("{client}/long-poll?cursor={}&wait_ms=0", encoded(&first)),
        ),
        (format!("{client}/poll?cursor=zzz"), format!("{client}/poll?cursor=z%7Az")),
        ("nobody/poll".to_owned(), "n%6Fbody/poll".to_owned()),
        ("nobody/long-poll?wait_ms=0".to_owned(), "nobody/long-poll?wait_ms=0&".to_owned()),
    ];
    let mut socket = connect(&server).await;
    let mut pending = Vec::new();
    let mut seen = Vec::new();
    for (direct, routed) in cases {
        let mut answers = Vec::new();
        for target in [&direct, &routed] {
            let request = format!("GET /v1/clients/{target} HTTP/1.1\r\nHost: x\r\n\r\n");
            socket.write_all(request.as_bytes()).await.unwrap();
            answers.push(read_answer(&mut socket, &mut pending, false).await);
        }
        let [direct_answer, routed_answer] = &answers[..] else { unreachable!() };
        assert_eq!(direct_answer.status, routed_answer.status, "{direct} / {routed}");
        assert_eq!(direct_answer.header("content-type"), Some("application/json"), "{direct}");
        assert_eq!(routed_answer.header("content-type"), Some("application/json"), "{routed}");
        assert_eq!(direct_answer.json(), routed_answer.json(), "{direct} / {routed}");
        assert_eq!(undated(direct_answer), undated(routed_answer), "{direct} / {routed}");
        seen.push(direct_answer.json());
    }
    // An HTTP/1.0 client's: kept alive on request, else closed; framed alike both ways.
    for version in ["HTTP/1.0\r\nConnection: keep-alive", "HTTP/1.0"] {
        let mut answers = Vec::new();
        for target in [format!("{client}/poll"), format!("{}/poll", encoded(&client))] {
            let mut socket = connect(&server).await;
            let request = format!("GET /v1/clients/{target} {version}\r\n\r\n");
            socket.write_all(request.as_bytes()).await.unwrap();
            answers.push(undated(&read_answer(&mut socket, &mut Vec::new(), false).await));
        }
        assert_eq!(answers[0], answers[1], "{version}");
        let connection = answers[0].iter().find(|(name, _)| name == "connection").map(|(_, v)| v.as_str());
        assert_eq!(connection, Some(if version.contains("keep-alive") { "keep-alive" } else { "close" }));
    }
    // What was compared: the events from the first cursor, then the errors.
    assert!(
        seen[0]["events"].as_array().is_some_and(|e| e.iter().any(|e| e["event"] == "chat")),
        "{}",
        seen[0]
    );
    assert_eq!(seen[2]["events"], seen[0]["events"]);
    assert_eq!(seen[3]["events"], seen[0]["events"]);
    assert_eq!(seen[4]["code"], "bad_cursor", "{}", seen[4]);
    assert_eq!((&seen[5]["code"], &seen[6]["code"]), (&"unknown_client".into(), &"unknown_client".into()));
}
