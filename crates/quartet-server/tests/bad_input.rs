//! Hostile and broken input: every case gets a JSON error with a code and the right HTTP
//! status, the WebSocket stays open after a bad frame, and the server keeps serving.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use quartet_core::limits::MAX_COMMAND_BYTES;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

struct Api {
    http: reqwest::Client,
    url: String,
    client: String,
    cursor: String,
}

impl Api {
    async fn new(server: &Server) -> Api {
        let http = reqwest::Client::new();
        let (client, cursor) = register_raw(&http, &server.url, "mallory").await;
        Api { http, url: server.url.clone(), client, cursor }
    }

    fn client_url(&self, route: &str) -> String {
        format!("{}/v1/clients/{}/{route}", self.url, self.client)
    }

    async fn post_raw(&self, url: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let response =
            self.http.post(url).header("content-type", "application/json").body(body).send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
    }

    /// Opens this client's WebSocket with `query` and expects the upgrade refused with a 400.
    async fn websocket_refused_400(&self, query: &str) {
        let url = format!("{}?{query}", self.client_url("ws").replacen("http", "ws", 1));
        match tokio_tungstenite::connect_async(url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status().as_u16(), 400, "{query}")
            }
            other => panic!("expected a 400 for {query}, got {other:?}"),
        }
    }

    async fn get(&self, url: &str) -> (u16, Value) {
        let response = self.http.get(url).send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
    }

    /// The first reply to `command` posted alone.
    async fn reply(&self, command: Value) -> Value {
        let (status, body) = self.post_raw(&self.client_url("commands"), command.to_string()).await;
        assert_eq!(status, 200, "{body}");
        body["replies"][0].clone()
    }

    async fn still_serving(&self) {
        let (status, _) = self.get(&format!("{}/healthz", self.url)).await;
        assert_eq!(status, 200);
        assert_eq!(self.reply(json!({"type":"ping"})).await["type"], "pong");
    }
}

fn assert_error(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["code"], want_code, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
}

/// Malformed JSON and oversized bodies fail the whole request, with 400 and 413.
#[tokio::test]
async fn malformed_and_oversized_bodies() {
    let server = start_default().await;
    let api = Api::new(&server).await;
    let commands = api.client_url("commands");
    for bad in ["{", "not json", "[1,", "\"just a string\"", ""] {
        let (status, body) = api.post_raw(&commands, bad).await;
        assert_error(status, &body, 400, "bad_request");
    }
    let just_over = format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(MAX_COMMAND_BYTES));
    let (status, body) = api.post_raw(&commands, just_over).await;
    assert_error(status, &body, 413, "too_large");
    let huge = vec![b' '; 8 * 1024 * 1024];
    let (status, body) = api.post_raw(&commands, huge).await;
    assert_error(status, &body, 413, "too_large");
    let many: Vec<Value> = (0..100).map(|_| json!({"type":"ping"})).collect();
    let (status, body) = api.post_raw(&commands, Value::Array(many).to_string()).await;
    assert_error(status, &body, 413, "too_large");
    let (status, body) = api.post_raw(&format!("{}/v1/clients", api.url), "{oops").await;
    assert_error(status, &body, 400, "bad_request");
    let (status, body) =
        api.post_raw(&format!("{}/v1/clients", api.url), r#"{"name":"no spaces allowed"}"#).await;
    assert_error(status, &body, 400, "bad_request");
    api.still_serving().await;
}

/// Unknown types, missing fields and rule violations are error replies carrying the id.
#[tokio::test]
async fn bad_commands_get_error_replies() {
    let server = start_default().await;
    let api = Api::new(&server).await;
    let cases = [
        (json!({"type":"dance","id":"x1"}), "bad_request"),
        (json!({"room":"lobby","id":"x2"}), "bad_request"),
        (json!({"type":"join","id":"x3"}), "bad_request"),
        (json!({"type":"join","room":"bad room","id":"x4"}), "bad_request"),
        (json!({"type":"publish","room":"lobby","id":"x5"}), "bad_request"),
        (json!({"type":"publish","room":"lobby","event":"chat","id":"x6"}), "not_joined"),
        (json!({"type":"leave","room":"lobby","id":"x7"}), "not_joined"),
        (json!({"type":"publish","room":"lobby","event":"presence","id":"x8"}), "forbidden"),
        (json!({"type":"direct","user":"nobody","event":"chat","id":"x9"}), "unknown_user"),
        (json!({"type":"publish","room":"lobby","event":"chat","to":"everyone","id":"x10"}), "bad_request"),
    ];
    for (command, code) in cases {
        let reply = api.reply(command.clone()).await;
        assert_eq!(reply["type"], "error", "{command} -> {reply}");
        assert_eq!(reply["code"], code, "{command} -> {reply}");
        assert_eq!(reply["id"], command["id"], "{command} -> {reply}");
    }
    // Valid JSON no client could read back (it would wedge every reader of the room).
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    for data in ["1e999999", deep.as_str()] {
        let body = format!(r#"{{"type":"publish","room":"lobby","event":"chat","data":{data},"id":"x11"}}"#);
        let (status, reply) = api.post_raw(&api.client_url("commands"), body).await;
        assert_eq!(status, 200, "{reply}");
        assert_eq!(reply["replies"][0]["code"], "bad_request", "{reply}");
    }
    api.still_serving().await;
}

/// An unknown client is 404 `unknown_client` on every route.
#[tokio::test]
async fn unknown_client_everywhere() {
    let server = start_default().await;
    let api = Api { client: "no-such-client".into(), ..Api::new(&server).await };
    let (status, body) = api.post_raw(&api.client_url("commands"), r#"{"type":"ping"}"#).await;
    assert_error(status, &body, 404, "unknown_client");
    for route in ["poll", "long-poll?wait_ms=10", "sse"] {
        let (status, body) = api.get(&api.client_url(route)).await;
        assert_error(status, &body, 404, "unknown_client");
    }
    let response = api.http.delete(format!("{}/v1/clients/no-such-client", api.url)).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 404);
    let ws_url = api.client_url("ws").replacen("http", "ws", 1);
    match tokio_tungstenite::connect_async(ws_url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 404);
            let body: Value = serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
            assert_eq!(body["code"], "unknown_client");
        }
        other => panic!("expected a 404, got {other:?}"),
    }
}

/// A malformed cursor is 400 `bad_cursor` on every read route; bad query values are 400.
#[tokio::test]
async fn bad_cursor_and_bad_query() {
    let server = start_default().await;
    let api = Api::new(&server).await;
    for route in ["poll?cursor=%%%", "long-poll?cursor=bm9wZQ&wait_ms=10", "sse?cursor=!!"] {
        let (status, body) = api.get(&api.client_url(route)).await;
        assert_error(status, &body, 400, "bad_cursor");
    }
    let response =
        api.http.get(api.client_url("sse")).header("last-event-id", "garbage!").send().await.unwrap();
    assert_eq!(response.status().as_u16(), 400);
    api.websocket_refused_400("cursor=zz!").await;
    let (status, body) = api.get(&api.client_url("long-poll?wait_ms=soon")).await;
    assert_error(status, &body, 400, "bad_request");
    let (status, body) = api.get(&format!("{}/v1/rooms/bad%20room", api.url)).await;
    assert_error(status, &body, 400, "bad_request");
    let (status, body) = api.get(&format!("{}/no/such/route", api.url)).await;
    assert_error(status, &body, 404, "not_found");
    // A valid cursor still works after all that.
    let (status, _) = api.get(&api.client_url(&format!("poll?cursor={}", api.cursor))).await;
    assert_eq!(status, 200);
    api.still_serving().await;
}

/// A well-formed cursor with a position no server issued (past its log's head, up to the
/// largest seq) is 400 `bad_cursor` on every read route, and the client keeps working.
#[tokio::test]
async fn a_forged_cursor_position_is_refused_on_every_route() {
    let server = start_default().await;
    let api = Api::new(&server).await;
    for seq in [1_000_000, u64::MAX] {
        let mut forged = quartet_protocol::Cursor::decode(&api.cursor).unwrap();
        assert!(!forged.positions.is_empty(), "the client reads at least its inbox");
        for position in forged.positions.values_mut() {
            *position = quartet_protocol::Seq(seq);
        }
        let forged = forged.encode();
        for route in ["poll", "long-poll", "sse"] {
            let (status, body) =
                api.get(&api.client_url(&format!("{route}?cursor={forged}&wait_ms=10"))).await;
            assert_error(status, &body, 400, "bad_cursor");
        }
        let response =
            api.http.get(api.client_url("sse")).header("last-event-id", &forged).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 400, "Last-Event-ID");
        api.websocket_refused_400(&format!("cursor={forged}")).await;
    }
    let (status, _) = api.get(&api.client_url(&format!("poll?cursor={}", api.cursor))).await;
    assert_eq!(status, 200);
    api.still_serving().await;
}

/// The errors the framework makes by itself are the protocol's error frame too: a path segment
/// that is not UTF-8, a method a route does not take (405, with `Allow`); a `Last-Event-ID`
/// that is not text is `bad_cursor`, not silently ignored.
#[tokio::test]
async fn every_error_is_a_json_error_frame() {
    let server = start_default().await;
    let api = Api::new(&server).await;
    let (status, body) = api.get(&format!("{}/v1/clients/%FF/poll", api.url)).await;
    assert_error(status, &body, 400, "bad_request");
    for (method, route) in [("POST", "poll"), ("GET", "commands"), ("PUT", "sse")] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = api.http.request(method.clone(), api.client_url(route)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 405, "{method} {route}");
        assert!(response.headers().contains_key("allow"), "{method} {route}");
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(
            (body["type"].as_str(), body["code"].as_str()),
            (Some("error"), Some("bad_request")),
            "{body}"
        );
    }
    let not_text = reqwest::header::HeaderValue::from_bytes(b"\xff\xfe").unwrap();
    let response =
        api.http.get(api.client_url("sse")).header("last-event-id", not_text).send().await.unwrap();
    let status = response.status().as_u16();
    assert_eq!(status, 400, "a stream was opened instead of refusing the header");
    assert_error(status, &response.json().await.unwrap_or(Value::Null), 400, "bad_cursor");
    api.still_serving().await;
}

/// On a WebSocket, malformed, binary, oversized and unknown frames each get an error frame,
/// and the socket stays open: a ping afterwards is answered.
#[tokio::test]
async fn websocket_survives_bad_frames() {
    let server = start_default().await;
    let api = Api::new(&server).await;
    let url = format!("{}?cursor={}", api.client_url("ws").replacen("http", "ws", 1), api.cursor);
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let oversized = format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(MAX_COMMAND_BYTES));
    let cases = [
        (Message::Text("{nope".into()), "bad_request"),
        (Message::Binary(vec![1, 2, 3].into()), "bad_request"),
        (Message::Text(oversized.into()), "too_large"),
        (Message::Text(r#"{"type":"fly"}"#.into()), "bad_request"),
        (Message::Text(r#"{"type":"publish","room":"x","event":"chat"}"#.into()), "not_joined"),
    ];
    for (frame, code) in cases {
        socket.send(frame).await.unwrap();
        let reply = next_text(&mut socket).await;
        assert_eq!((reply["type"].as_str(), reply["code"].as_str()), (Some("error"), Some(code)), "{reply}");
    }
    socket.send(Message::Text(r#"{"type":"ping"}"#.into())).await.unwrap();
    assert_eq!(next_text(&mut socket).await["type"], "pong");
    api.still_serving().await;
}

/// The WebSocket protocol itself: fragmented messages are reassembled; a plain GET is a JSON 400;
/// a message over the protocol limit closes the socket with 1009 and the server keeps serving.
#[tokio::test]
async fn websocket_protocol_edges() {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::{Frame, coding::CloseCode};
    let server = start_default().await;
    let api = Api::new(&server).await;
    let (status, body) = api.get(&api.client_url("ws")).await;
    assert_error(status, &body, 400, "bad_request");

    let url = format!("{}?cursor={}", api.client_url("ws").replacen("http", "ws", 1), api.cursor);
    let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let first = Frame::message(&b"{\"type\":"[..], OpCode::Data(Data::Text), false);
    let last = Frame::message(&b"\"ping\"}"[..], OpCode::Data(Data::Continue), true);
    socket.send(Message::Frame(first)).await.unwrap();
    socket.send(Message::Frame(last)).await.unwrap();
    assert_eq!(next_text(&mut socket).await["type"], "pong");

    let huge = "x".repeat(quartet_server::transport::ws::WS_MAX_MESSAGE_BYTES + 1);
    socket.send(Message::Text(huge.into())).await.unwrap();
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(5), socket.next()).await.unwrap() {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(close.map(|c| c.code), Some(CloseCode::Size));
    api.still_serving().await;
}

async fn next_text<S>(socket: &mut S) -> Value
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let message =
            tokio::time::timeout(Duration::from_secs(5), socket.next()).await.unwrap().unwrap().unwrap();
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).unwrap();
        }
    }
}
