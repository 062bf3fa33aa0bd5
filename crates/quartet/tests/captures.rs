//! Captures that cannot drift. The exchanges the docs quote are made again here, byte for byte,
//! against the real binary, normalised (client ids, cursors, ports, times become `<client>`,
//! `<cursor>`, `<port>`, `<ts>`, `<date>`) and compared with `docs/captures/NAME.txt`. Every
//! fenced block in `docs/` right after a `<!-- capture: NAME -->` line must hold that file's text
//! exactly. So when the server's bytes change, this test fails until the docs say the new truth.
//!
//! After a deliberate change: `QUARTET_CAPTURE_WRITE=1 cargo test -p quartet --test captures`
//! rewrites the files and the marked blocks; read the diff before committing it.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use common::{Server, repo_root};

fn writing() -> bool {
    std::env::var("QUARTET_CAPTURE_WRITE").is_ok_and(|v| v == "1")
}

fn start() -> Server {
    start_with(&[])
}

fn start_with(extra: &[&str]) -> Server {
    Server::start(&[&["serve", "--store", "memory"], extra].concat())
}

/// Registers `name`: (request, response, client id, cursor).
fn register_exchange(server: &Server, name: &str) -> (String, String, String, String) {
    let body = format!(r#"{{"name":"{name}"}}"#);
    let (request, response) = http(
        server,
        &format!(
            "POST /v1/clients HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            server.address,
            body.len()
        ),
    );
    let reg: serde_json::Value = serde_json::from_str(self::body(&response)).unwrap();
    let (client, cursor) =
        (reg["client"].as_str().unwrap().to_owned(), reg["cursor"].as_str().unwrap().to_owned());
    (request, response, client, cursor)
}

/// Registers `name`; returns its client id and cursor.
fn register(server: &Server, name: &str) -> (String, String) {
    let (_, _, client, cursor) = register_exchange(server, name);
    (client, cursor)
}

/// `POST …/commands` with `body`: (request, response).
fn commands(server: &Server, client: &str, body: &str) -> (String, String) {
    http(
        server,
        &format!(
            "POST /v1/clients/{client}/commands HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            server.address,
            body.len()
        ),
    )
}

/// `GET …/poll?cursor=C`: (request, response, the cursor after it).
fn poll(server: &Server, client: &str, cursor: &str) -> (String, String, String) {
    let (request, response) = http(
        server,
        &format!(
            "GET /v1/clients/{client}/poll?cursor={cursor} HTTP/1.1\r\nHost: {}\r\n\r\n",
            server.address
        ),
    );
    let body: serde_json::Value = serde_json::from_str(response.split_once("\r\n\r\n").unwrap().1).unwrap();
    let next = body["cursor"].as_str().unwrap().to_owned();
    (request, response, next)
}

/// The body of a response.
fn body(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

/// One HTTP/1.1 exchange on a new connection: the request as sent, the response as received
/// (the body read to its Content-Length).
fn http(server: &Server, request: &str) -> (String, String) {
    let (mut socket, head, rest) = send_request(server, request);
    let length = head
        .lines()
        .find_map(|l| {
            l.to_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap())
        })
        .unwrap_or(0);
    let mut body = rest;
    while body.len() < length {
        let mut buf = [0u8; 4096];
        let n = socket.read(&mut buf).unwrap();
        assert!(n > 0, "the response ended early");
        body.extend_from_slice(&buf[..n]);
    }
    (request.to_owned(), format!("{head}{}", String::from_utf8(body).unwrap()))
}

/// Sends `request` on a new connection and reads the response head: (the socket, the head, any
/// bytes read after it).
fn send_request(server: &Server, request: &str) -> (TcpStream, String, Vec<u8>) {
    let mut socket = TcpStream::connect(&server.address).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    socket.write_all(request.as_bytes()).unwrap();
    let (head, rest) = read_head(&mut socket);
    (socket, head, rest)
}

/// Reads a response head (through the blank line); returns it and any bytes read after it.
fn read_head(socket: &mut TcpStream) -> (String, Vec<u8>) {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(at) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = bytes.split_off(at + 4);
            return (String::from_utf8(bytes).unwrap(), rest);
        }
        let n = socket.read(&mut buf).unwrap();
        assert!(n > 0, "the connection closed before the head ended");
        bytes.extend_from_slice(&buf[..n]);
    }
}

/// One chunk of a chunked HTTP/1.1 body, as text.
fn read_chunk(socket: &mut TcpStream, buffered: &mut Vec<u8>) -> String {
    let mut fill = |buffered: &mut Vec<u8>| {
        let mut buf = [0u8; 4096];
        let n = socket.read(&mut buf).unwrap();
        assert!(n > 0, "the stream ended");
        buffered.extend_from_slice(&buf[..n]);
    };
    loop {
        if let Some(at) = buffered.windows(2).position(|w| w == b"\r\n") {
            let size =
                usize::from_str_radix(std::str::from_utf8(&buffered[..at]).unwrap().trim(), 16).unwrap();
            while buffered.len() < at + 2 + size + 2 {
                fill(buffered);
            }
            let chunk: Vec<u8> = buffered.drain(..at + 2 + size + 2).collect();
            return String::from_utf8(chunk[at + 2..at + 2 + size].to_vec()).unwrap();
        }
        fill(buffered);
    }
}

/// Request and response as a transcript: `C:` lines the client sent, `S:` lines the server sent.
fn transcript(request: &str, response: &str) -> String {
    let mut out = String::new();
    for (who, text) in [("C", request), ("S", response)] {
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
        for line in head.lines() {
            out.push_str(&format!("{who}: {line}\n"));
        }
        out.push_str(&format!("{who}:\n"));
        if !body.is_empty() {
            out.push_str(&format!("{who}: {body}\n"));
        }
    }
    out
}

/// Replaces what changes from run to run with a name for it.
fn normalise(text: &str, server: &Server, client: Option<&str>) -> String {
    let mut out = text.replace(&server.address, "127.0.0.1:<port>");
    if let Some(client) = client {
        out = out.replace(client, "<client>");
    }
    let lines: Vec<String> = out
        .lines()
        .map(|line| {
            let lower = line.to_lowercase();
            if let Some(at) = lower.find("date: ") {
                format!("{}<date>", &line[..at + "date: ".len()])
            } else {
                line.to_owned()
            }
        })
        .collect();
    let mut out = lines.join("\n") + "\n";
    for (key, end) in [("\"cursor\":\"", '"'), ("cursor=", ' '), ("\"ts\":", ','), ("S: id: ", '\n')] {
        let mut result = String::new();
        let mut rest = out.as_str();
        while let Some(at) = rest.find(key) {
            result.push_str(&rest[..at + key.len()]);
            rest = &rest[at + key.len()..];
            let stop = rest.find([end, '&', '\n', '}']).unwrap_or(rest.len());
            result.push_str(if key == "\"ts\":" { "<ts>" } else { "<cursor>" });
            rest = &rest[stop..];
        }
        result.push_str(rest);
        out = result;
    }
    out
}

/// The bytes of a masked client text frame carrying `text`, with the mask key of RFC 6455's
/// own example (`37 fa 21 3d`).
fn client_text_frame(text: &str) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    assert!(text.len() < 126, "the example frames are small");
    let mut frame = vec![0x81, 0x80 | text.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}

/// One server frame off the socket: (header bytes, payload).
fn server_frame(socket: &mut TcpStream, buffered: &mut Vec<u8>) -> (Vec<u8>, Vec<u8>) {
    let mut need = |n: usize, buffered: &mut Vec<u8>| {
        while buffered.len() < n {
            let mut buf = [0u8; 4096];
            let got = socket.read(&mut buf).unwrap();
            assert!(got > 0, "the socket closed mid-frame");
            buffered.extend_from_slice(&buf[..got]);
        }
    };
    need(2, buffered);
    let (header_len, len) = match buffered[1] & 0x7f {
        126 => {
            need(4, buffered);
            (4, u16::from_be_bytes([buffered[2], buffered[3]]) as usize)
        }
        127 => panic!("the example frames are small"),
        n => (2, n as usize),
    };
    need(header_len + len, buffered);
    let frame: Vec<u8> = buffered.drain(..header_len + len).collect();
    (frame[..header_len].to_vec(), frame[header_len..].to_vec())
}

/// The exchanges, by capture name.
fn capture_all() -> Vec<(&'static str, String)> {
    let server = start();
    let host = format!("Host: {}", server.address);
    let mut captures = Vec::new();

    // Registering: the first request of every client.
    let (request, response, client, cursor) = register_exchange(&server, "alice");
    captures.push(("register", normalise(&transcript(&request, &response), &server, Some(&client))));

    // The WebSocket upgrade, with the key of RFC 6455's example.
    let request = format!(
        "GET /v1/clients/{client}/ws?cursor={cursor} HTTP/1.1\r\n{host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    let (mut socket, head, mut buffered) = send_request(&server, &request);
    captures.push(("ws-upgrade", normalise(&transcript(&request, &head), &server, Some(&client))));

    // Sec-WebSocket-Key → Sec-WebSocket-Accept, step by step, checked against what the server
    // answered.
    {
        use base64::Engine as _;
        use base64::engine::general_purpose::STANDARD;
        use sha1::{Digest, Sha1};
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
        let nonce = STANDARD.decode(key).unwrap();
        let digest = Sha1::digest(format!("{key}{guid}").as_bytes());
        let accept = STANDARD.encode(digest);
        assert!(
            head.to_lowercase().contains(&format!("sec-websocket-accept: {}", accept.to_lowercase())),
            "the server's accept is not the one computed here: {head}"
        );
        captures.push((
            "ws-accept",
            format!(
                "Sec-WebSocket-Key       {key}\n  (base64 of 16 bytes:  {}, \"{}\")\n\
                 + the GUID of RFC 6455  {guid}\n\
                 = {key}{guid}\n\
                 SHA-1 of that (20 bytes) {}\n\
                 base64 of the SHA-1     {accept}   = Sec-WebSocket-Accept\n",
                hex(&nonce),
                String::from_utf8_lossy(&nonce),
                hex(&digest),
            ),
        ));
    }

    // Frames: the client joins a room (a masked text frame); the server answers with the reply,
    // then the room's presence event (unmasked text frames).
    let join = r#"{"type":"join","room":"lobby"}"#;
    let frame = client_text_frame(join);
    socket.write_all(&frame).unwrap();
    let mut frames = format!(
        "C: {}\nC:    {}\nC:    (payload: {} bytes of {join} XOR the mask)\n",
        hex(&frame[..6]),
        hex(&frame[6..]),
        join.len()
    );
    for _ in 0..2 {
        let (header, payload) = server_frame(&mut socket, &mut buffered);
        frames.push_str(&format!("S: {}\nS:    {}\n", hex(&header), String::from_utf8(payload).unwrap()));
    }
    captures.push(("ws-frames", normalise(&frames, &server, Some(&client))));

    // Short polling, by a second user: a command over POST, then two polls, one with events
    // and one without.
    let (bob, bob_cursor) = register(&server, "bob");
    let bob = bob.as_str();
    let (request, response) = commands(&server, bob, r#"{"type":"join","room":"lobby"}"#);
    captures.push(("commands-join", normalise(&transcript(&request, &response), &server, Some(bob))));
    let (request, response, next) = poll(&server, bob, &bob_cursor);
    captures.push(("short-poll", normalise(&transcript(&request, &response), &server, Some(bob))));
    let (request, response, next) = poll(&server, bob, &next);
    captures.push(("short-poll-empty", normalise(&transcript(&request, &response), &server, Some(bob))));
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let empty_poll = (request.len(), response.len(), head.len() + 4, body.len());

    // Long polling: a poll held until carol joins the room (her presence event), then one that
    // finds nothing before its wait is over.
    let carol_joins = {
        let address = server.address.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let server = Server::at(address);
            let (carol, _) = register(&server, "carol");
            commands(&server, &carol, r#"{"type":"join","room":"lobby"}"#);
            carol
        })
    };
    let (request, response) = http(
        &server,
        &format!("GET /v1/clients/{bob}/long-poll?cursor={next}&wait_ms=25000 HTTP/1.1\r\n{host}\r\n\r\n"),
    );
    let carol = carol_joins.join().unwrap();
    captures.push(("long-poll", normalise(&transcript(&request, &response), &server, Some(bob))));
    let polled: serde_json::Value = serde_json::from_str(self::body(&response)).unwrap();
    let next = polled["cursor"].as_str().unwrap().to_owned();
    let (request, response) = http(
        &server,
        &format!("GET /v1/clients/{bob}/long-poll?cursor={next}&wait_ms=200 HTTP/1.1\r\n{host}\r\n\r\n"),
    );
    captures.push(("long-poll-empty", normalise(&transcript(&request, &response), &server, Some(bob))));

    // Server-Sent Events: bob's stream from the same cursor; carol says hi meanwhile. The body
    // is shown as the browser's EventSource reads it (HTTP/1.1 sends it in chunks).
    let request = format!(
        "GET /v1/clients/{bob}/sse?cursor={next} HTTP/1.1\r\n{host}\r\nAccept: text/event-stream\r\n\r\n"
    );
    let (mut socket, head, mut buffered) = send_request(&server, &request);
    commands(&server, &carol, r#"{"type":"publish","room":"lobby","event":"chat","data":{"text":"hi all"}}"#);
    let mut stream = String::new();
    let mut stream_event = String::new();
    while !stream.contains("hi all") {
        let chunk = read_chunk(&mut socket, &mut buffered);
        if chunk.contains("hi all") {
            stream_event = chunk.clone();
        }
        stream.push_str(&chunk);
    }
    let stream: String =
        stream.lines().map(|l| if l.is_empty() { "S:\n".to_owned() } else { format!("S: {l}\n") }).collect();
    let sse = format!("{}{stream}", transcript(&request, &head));
    captures.push(("sse", normalise(&sse, &server, Some(bob)).replace(&carol, "<client>")));
    captures.push((
        "short-poll-empty-bytes",
        format!(
            "an empty short poll, on the wire: request {} bytes; response {} bytes ({} of status line and headers, {} of body)\n",
            empty_poll.0, empty_poll.1, empty_poll.2, empty_poll.3
        ),
    ));
    // The same event, framed by each transport: bytes on the wire (from the SSE capture's event).
    {
        let block = stream_event.as_str();
        let data = block.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
        let id = block.lines().find_map(|l| l.strip_prefix("id: ")).unwrap();
        let ws_header = if data.len() < 126 {
            2
        } else if data.len() < 65_536 {
            4
        } else {
            10
        };
        let chunk = format!("{:x}\r\n", block.len()).len() + 2;
        let poll_body = format!("{{\"events\":[{data}],\"cursor\":\"{id}\"}}").len();
        // A poll's answer: the empty poll's head with this body's length in it.
        let poll_head = empty_poll.2 - empty_poll.3.to_string().len() + poll_body.to_string().len();
        captures.push((
            "bytes-per-event",
            format!(
                "one chat event of {} bytes of JSON, as each transport sends it to one client:\n\
                 WebSocket    {:>4} bytes  ({ws_header} of frame header + the JSON)\n\
                 SSE          {:>4} bytes  (id: and data: lines, {chunk} of chunk framing)\n\
                 long poll    {:>4} bytes  (a whole HTTP response: {poll_head} of head, {poll_body} of body), plus the next request\n\
                 short poll   {:>4} bytes  (the same answer), plus every empty answer in between\n",
                data.len(),
                data.len() + ws_header,
                block.len() + chunk,
                poll_head + poll_body,
                poll_head + poll_body,
            ),
        ));
    }
    captures.extend(rooms_scopes_acks(&server));
    captures.extend(cursors_and_gaps(&server));
    captures.push(("socketio-polling", socketio_polling(&server)));
    drop(server);
    captures.push(("ws-silent", silent_websocket()));
    if let Some(cluster) = two_nodes() {
        captures.push(("cluster", cluster));
    }
    captures
}

/// Two nodes on one Redis: a client registers and joins on node A, and reads on node B. `None`
/// (said so) when there is no Redis, unless `QUARTET_REQUIRE_REDIS=1`, as in CI.
fn two_nodes() -> Option<String> {
    let redis = quartet_redis::test_redis()?;
    let prefix = format!("quartet-test-capture-{}", std::process::id());
    let a = start_with(&["--redis", &redis, "--redis-prefix", &prefix]);
    let b = start_with(&["--redis", &redis, "--redis-prefix", &prefix]);
    let (register_request, register_response, client, cursor) = register_exchange(&a, "hana");
    let client = client.as_str();
    let (join_request, join_response) = commands(&a, client, r#"{"type":"join","room":"lobby"}"#);
    let (poll_request, poll_response, _) = poll(&b, client, &cursor);
    let _ = quartet_redis::delete_prefix_blocking(&redis, &prefix);
    let text = format!(
        "{}{}{}",
        transcript(&register_request, &register_response),
        transcript(&join_request, &join_response),
        transcript(&poll_request, &poll_response)
    )
    .replace(&a.address, "node-a:<port>")
    .replace(&b.address, "node-b:<port>");
    Some(normalise(&text, &a, Some(client)))
}

/// One client in two rooms; scopes; acks and resends.
fn rooms_scopes_acks(server: &Server) -> Vec<(&'static str, String)> {
    let mut captures = Vec::new();
    let (dora, dora_cursor) = register(server, "dora");
    let (eve, eve_cursor) = register(server, "eve");
    // Dora joins two rooms in one request; eve joins one of them.
    let (request, response) =
        commands(server, &dora, r#"[{"type":"join","room":"music"},{"type":"join","room":"quiz"}]"#);
    captures.push(("join-two-rooms", normalise(&transcript(&request, &response), server, Some(&dora))));
    commands(server, &eve, r#"{"type":"join","room":"music"}"#);
    // Eve publishes to music with each scope; dora's one poll shows both rooms and the scopes.
    let say = |text: &str, to: &str| {
        format!(
            r#"{{"type":"publish","room":"music","event":"chat","data":{{"text":"{text}"}},"to":"{to}"}}"#
        )
    };
    let (request, response) = commands(
        server,
        &eve,
        &format!(
            "[{},{},{}]",
            say("for the room", "room"),
            say("for the others", "others"),
            say("for me", "self")
        ),
    );
    captures.push(("scopes-publish", normalise(&transcript(&request, &response), server, Some(&eve))));
    let (quiz_client, _) = register(server, "fred");
    commands(server, &quiz_client, r#"{"type":"join","room":"quiz"}"#);
    commands(
        server,
        &quiz_client,
        r#"{"type":"publish","room":"quiz","event":"chat","data":{"text":"2+2?"}}"#,
    );
    let (request, response, _) = poll(server, &dora, &dora_cursor);
    captures.push(("two-rooms-poll", normalise(&transcript(&request, &response), server, Some(&dora))));
    let (_, eve_view, _) = poll(server, &eve, &eve_cursor);
    let texts = |response: &str| -> Vec<String> {
        let body: serde_json::Value = serde_json::from_str(body(response)).unwrap();
        body["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["event"] == "chat" && e["room"] == "music")
            .map(|e| format!("#{} {}", e["seq"], e["data"]["text"].as_str().unwrap()))
            .collect()
    };
    captures.push((
        "scopes-seen",
        format!(
            "eve (the sender) reads in music: {}\ndora (another client) reads:   {}\n",
            texts(&eve_view).join(", "),
            texts(&response).join(", ")
        ),
    ));
    // An ack, and the same message id sent again: the same ack, one event.
    let publish = r#"{"type":"publish","room":"music","event":"chat","data":{"text":"once"},"id":"m-17"}"#;
    let (request, response) = commands(server, &eve, publish);
    let (again_request, again) = commands(server, &eve, publish);
    captures.push((
        "ack-resend",
        normalise(
            &format!("{}{}", transcript(&request, &response), transcript(&again_request, &again)),
            server,
            Some(&eve),
        ),
    ));
    captures
}

/// What a cursor is, and a gap.
fn cursors_and_gaps(server: &Server) -> Vec<(&'static str, String)> {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut captures = Vec::new();
    let (gus, cursor) = register(server, "gus");
    commands(server, &gus, r#"[{"type":"join","room":"music"},{"type":"join","room":"quiz"}]"#);
    let (_, _, after) = poll(server, &gus, &cursor);
    let decoded = String::from_utf8(URL_SAFE_NO_PAD.decode(&after).unwrap()).unwrap();
    let (epoch, positions) = decoded.split_once('|').unwrap();
    captures.push((
        "cursor-decoded",
        format!(
            "cursor (base64url)  {}\ndecoded             <epoch>|{positions}\n  epoch             {} hex digits: this store's lifetime\n  positions         one log:seq per room read, and the user's inbox @gus\n",
            "<cursor>",
            epoch.len()
        ),
    ));
    // A client in 50 rooms: from its first poll on, its cursors name a base.
    let (ivy, ivy_cursor) = register(server, "ivy");
    let mut rooms: Vec<String> = (0..50).map(|i| format!("r{i}")).collect();
    let joins: Vec<String> = rooms.iter().map(|r| format!(r#"{{"type":"join","room":"{r}"}}"#)).collect();
    commands(server, &ivy, &format!("[{}]", joins.join(",")));
    let (_, _, first) = poll(server, &ivy, &ivy_cursor);
    commands(server, &ivy, r#"{"type":"publish","room":"r7","event":"chat","data":{"text":"hi"}}"#);
    let (_, _, based) = poll(server, &ivy, &first);
    let decoded = String::from_utf8(URL_SAFE_NO_PAD.decode(&based).unwrap()).unwrap();
    let (epoch, rest) = decoded.split_once('|').unwrap();
    let (base, amended) = rest.split_once('|').unwrap();
    assert!(base.starts_with('~'), "a 50-room client's cursor names a base: {decoded}");
    // The whole cursor it stands for: every room at its join's presence (seq 1), r7 one further.
    rooms.sort();
    let whole: Vec<String> = rooms
        .iter()
        .map(|r| format!("{r}:{}", if r == "r7" { 2 } else { 1 }))
        .chain(["@ivy:0".into()])
        .collect();
    let whole = URL_SAFE_NO_PAD.encode(format!("{epoch}|{}", whole.join("|")));
    captures.push((
        "cursor-base",
        format!(
            "a client in 50 rooms, after one event in r7:\ndecoded             <epoch>|~<base>|{amended}\n  ~<base>           positions the server stored for this client's cursors (its 50 rooms and inbox)\n  {amended}              the one log that moved since\nlength              {} bytes, where the whole cursor would take {}\n",
            based.len(),
            whole.len()
        ),
    ));
    // A cursor from another lifetime of the store (a memory store restarted): a `reset` gap.
    let foreign = URL_SAFE_NO_PAD.encode(format!("{}|{positions}", "0".repeat(epoch.len())));
    let (request, response, _) = poll(server, &gus, &foreign);
    captures.push(("gap-reset", normalise(&transcript(&request, &response), server, Some(&gus))));
    captures
}

/// A WebSocket peer that reads but never answers: pings every heartbeat, then the close frame.
/// On a server of its own with a 300 ms heartbeat (a 600 ms timeout).
fn silent_websocket() -> String {
    let server = start_with(&["--heartbeat-ms", "300"]);
    let (client, cursor) = register(&server, "quiet");
    let request = format!(
        "GET /v1/clients/{client}/ws?cursor={cursor} HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        server.address
    );
    let (mut socket, _, mut buffered) = send_request(&server, &request);
    let mut seen = Vec::new();
    loop {
        let (header, payload) = server_frame(&mut socket, &mut buffered);
        let line = match header[0] & 0x0f {
            0x9 => {
                format!("S: {}            ping (opcode 9), empty: the client must answer pong", hex(&header))
            }
            0x8 => format!(
                "S: {} {} {}   close (opcode 8): code {}, reason \"{}\"",
                hex(&header),
                hex(&payload[..2]),
                "…",
                u16::from_be_bytes([payload[0], payload[1]]),
                String::from_utf8_lossy(&payload[2..])
            ),
            other => format!("S: {} opcode {other}", hex(&header)),
        };
        let close = header[0] & 0x0f == 0x8;
        if !seen.contains(&line) {
            seen.push(line);
        }
        if close {
            break;
        }
    }
    seen.iter().map(|l| format!("{l}\n")).collect()
}

/// A Socket.IO client's first steps on Engine.IO's long-polling: the handshake, CONNECT, its
/// reply, a `join` emitted with an ack, and what comes back (the ack, then the room's presence
/// event as `(data, meta, offset)`). The record separator between packets shows as `␞`.
fn socketio_polling(server: &Server) -> String {
    let get = |query: &str| {
        http(server, &format!("GET /socket.io/?{query} HTTP/1.1\r\nHost: {}\r\n\r\n", server.address))
    };
    let post = |query: &str, body: &str| {
        http(
            server,
            &format!(
                "POST /socket.io/?{query} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n{body}",
                server.address,
                body.len()
            ),
        )
    };
    let mut exchanges = vec![get("EIO=4&transport=polling")];
    let open: serde_json::Value = serde_json::from_str(&body(&exchanges[0].1)[1..]).unwrap();
    let sid = open["sid"].as_str().unwrap().to_owned();
    let session = format!("EIO=4&transport=polling&sid={sid}");
    exchanges.push(post(&session, r#"40{"name":"ada"}"#));
    exchanges.push(get(&session));
    let connected: serde_json::Value = serde_json::from_str(&body(&exchanges[2].1)[2..]).unwrap();
    let (socket_id, pid) = (connected["sid"].as_str().unwrap(), connected["pid"].as_str().unwrap());
    exchanges.push(post(&session, r#"421["join",{"room":"stage"}]"#));
    exchanges.push(get(&session));
    let mut text = String::new();
    for (request, response) in &exchanges {
        text.push_str(&transcript(request, response));
        text.push('\n');
    }
    // The offset (a cursor) is the last argument of each event.
    for packet in body(&exchanges[4].1).split('\u{1e}').filter_map(|p| p.strip_prefix("42")) {
        let args: Vec<serde_json::Value> = serde_json::from_str(packet).unwrap();
        text = text.replace(args.last().unwrap().as_str().unwrap(), "<cursor>");
    }
    let text = text.replace(&sid, "<sid>").replace(socket_id, "<socket-id>").replace('\u{1e}', "␞");
    normalise(text.trim_end(), server, Some(pid))
}

fn capture_path(name: &str) -> PathBuf {
    repo_root().join("docs/captures").join(format!("{name}.txt"))
}

/// The fenced blocks of the docs marked `<!-- capture: NAME -->`: (page, name, line of the
/// block's first content line, its text).
fn marked_blocks() -> Vec<(PathBuf, String, usize, String)> {
    let mut found = Vec::new();
    for path in common::markdown_under(&repo_root().join("docs")) {
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let Some(name) = line.trim().strip_prefix("<!-- capture: ").and_then(|l| l.strip_suffix(" -->"))
            else {
                continue;
            };
            assert!(
                lines.get(i + 1).is_some_and(|l| l.starts_with("```")),
                "{}:{}: a capture marker must be followed by a fenced block",
                path.display(),
                i + 1
            );
            let end = (i + 2..lines.len()).find(|&j| lines[j].starts_with("```")).expect("an unclosed block");
            let block = lines[i + 2..end].iter().map(|l| format!("{l}\n")).collect::<String>();
            found.push((path.clone(), name.to_owned(), i + 3, block));
        }
    }
    found
}

/// `page` with every marked block's content replaced by its capture file's text.
fn with_captures(page: &str) -> String {
    let mut out = String::new();
    let mut lines = page.lines();
    while let Some(line) = lines.next() {
        out.push_str(line);
        out.push('\n');
        let Some(name) = line.trim().strip_prefix("<!-- capture: ").and_then(|l| l.strip_suffix(" -->"))
        else {
            continue;
        };
        let fence = lines.next().expect("a fenced block after the marker");
        out.push_str(fence);
        out.push('\n');
        for old in lines.by_ref() {
            if old.starts_with("```") {
                out.push_str(&std::fs::read_to_string(capture_path(name)).unwrap());
                out.push_str(old);
                out.push('\n');
                break;
            }
        }
    }
    out
}

#[test]
fn the_docs_quote_what_the_server_sends_today() {
    let captures = capture_all();
    let mut stale = Vec::new();
    for (name, text) in &captures {
        let path = capture_path(name);
        if writing() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, text).unwrap();
            continue;
        }
        let kept = std::fs::read_to_string(&path).unwrap_or_default();
        if &kept != text {
            stale.push(format!("docs/captures/{name}.txt differs from what the server sends now:\n--- kept\n{kept}--- now\n{text}"));
        }
    }
    let blocks = marked_blocks();
    if writing() {
        let pages: std::collections::BTreeSet<&PathBuf> = blocks.iter().map(|(page, ..)| page).collect();
        for page in pages {
            std::fs::write(page, with_captures(&std::fs::read_to_string(page).unwrap())).unwrap();
        }
        return;
    }
    for (page, name, line, block) in &blocks {
        let page = page.strip_prefix(repo_root()).unwrap_or(page).display();
        let capture = std::fs::read_to_string(capture_path(name))
            .unwrap_or_else(|_| panic!("{page}:{line}: no capture named {name}"));
        if &capture != block {
            stale.push(format!("{page}:{line}: the block differs from docs/captures/{name}.txt"));
        }
    }
    assert!(
        stale.is_empty(),
        "{}\n(after a deliberate change: QUARTET_CAPTURE_WRITE=1 cargo test -p quartet --test captures)",
        stale.join("\n")
    );
}

#[test]
fn normalising_names_what_changes() {
    let server = Server::at("127.0.0.1:4242".into());
    let text = "C: Host: 127.0.0.1:4242\nS: date: Fri, 27 Nov 2026 20:00:00 GMT\nS: {\"ts\":1795000000000,\"cursor\":\"QUJD\"}\nC: GET /v1/clients/abc/ws?cursor=QUJD HTTP/1.1";
    assert_eq!(
        normalise(text, &server, Some("abc")),
        "C: Host: 127.0.0.1:<port>\nS: date: <date>\nS: {\"ts\":<ts>,\"cursor\":\"<cursor>\"}\nC: GET /v1/clients/<client>/ws?cursor=<cursor> HTTP/1.1\n"
    );
}
