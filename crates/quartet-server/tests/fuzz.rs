//! Fuzzing every decoder a stranger reaches: command bodies, cursors, tokens, WebSocket frames,
//! request targets and their query strings, and whole HTTP/1.1 requests against a live server.
//!
//! Each target starts from valid inputs and feeds its decoder thousands of mutations of them
//! (bit flips, bytes changed, inserted, deleted, duplicated, spliced, truncated) and random
//! bytes. A decoder must answer every input with a value or an error: never panic, never hang,
//! never take memory an input did not bring. A failure prints the seed and the input.
//!
//! Bounded for CI: `QUARTET_FUZZ_SECONDS` per target (default 2); `QUARTET_FUZZ_SEED` replays
//! one run. The long version: `QUARTET_FUZZ_SECONDS=300 cargo test --release -p quartet-server
//! --test fuzz -- --nocapture`.

mod common;

use std::io::{Read as _, Write as _};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use quartet_protocol::command::parse_commands;
use quartet_protocol::{Cursor, ErrorCode};
use quartet_server::auth::{Auth, Claims};
use quartet_server::transport::ws::codec::{
    Decoder, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_TEXT, client_frame,
};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

fn budget() -> Duration {
    let seconds = std::env::var("QUARTET_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(2.0);
    Duration::from_secs_f64(seconds)
}

fn seed() -> u64 {
    std::env::var("QUARTET_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random)
}

/// One mutation of `input`, `rounds` times over.
fn mutate(rng: &mut StdRng, seeds: &[Vec<u8>], input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let at = if out.is_empty() { 0 } else { rng.random_range(0..out.len()) };
        match rng.random_range(0..8) {
            0 if !out.is_empty() => out[at] ^= 1 << rng.random_range(0..8),
            1 if !out.is_empty() => out[at] = rng.random(),
            2 => out.insert(at, rng.random()),
            3 if !out.is_empty() => {
                out.remove(at);
            }
            4 if !out.is_empty() => {
                let end = rng.random_range(at..out.len());
                let piece = out[at..=end].to_vec();
                out.splice(at..at, piece);
            }
            5 => {
                let other = &seeds[rng.random_range(0..seeds.len())];
                if !other.is_empty() {
                    let from = rng.random_range(0..other.len());
                    out.splice(at..at, other[from..].iter().copied());
                }
            }
            6 => out.truncate(at),
            _ => {
                let interesting: &[&[u8]] = &[
                    b"{",
                    b"}",
                    b"[",
                    b"]",
                    b"\"",
                    b"\\u0000",
                    b"1e999999",
                    b"-0",
                    b"null",
                    b"\xff\xfe",
                    b":",
                    b",",
                ];
                let piece = interesting[rng.random_range(0..interesting.len())];
                out.splice(at..at, piece.iter().copied());
            }
        }
    }
    out
}

/// Feeds `decode` mutations of `seeds` (and random bytes) until the budget is spent; returns
/// how many inputs it ran.
fn fuzz(name: &str, seeds: &[Vec<u8>], mut decode: impl FnMut(&[u8])) -> u64 {
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let mut runs = 0u64;
    while started.elapsed() < budget() {
        let input = if rng.random_range(0..10) == 0 {
            let mut random = vec![0u8; rng.random_range(0..256)];
            rng.fill_bytes(&mut random);
            random
        } else {
            let base = &seeds[rng.random_range(0..seeds.len())];
            mutate(&mut rng, seeds, base)
        };
        if catch_unwind(AssertUnwindSafe(|| decode(&input))).is_err() {
            panic!(
                "{name}: the decoder panicked (QUARTET_FUZZ_SEED={seed}) on {:?}",
                String::from_utf8_lossy(&input)
            );
        }
        runs += 1;
    }
    println!("{name}: {runs} inputs in {:?} (seed {seed})", started.elapsed());
    runs
}

#[test]
fn command_bodies() {
    let seeds: Vec<Vec<u8>> = [
        r#"{"type":"join","room":"lobby","history":20}"#,
        r#"{"type":"leave","room":"lobby"}"#,
        r#"{"type":"publish","room":"lobby","event":"chat","data":{"text":"hi","n":[1,2.5,-3e2,{"a":null}]},"to":"others","id":"m-1"}"#,
        r#"{"type":"direct","user":"bob","event":"dm","data":"x","id":"m2"}"#,
        r#"[{"type":"ping"},{"type":"join","room":"a"},{"type":"publish","room":"a","event":"gift","data":{"gift":"rose","count":3}}]"#,
        r#"{"type":"publish","room":"a","event":"chat","data":[[[[[[[[[[1]]]]]]]]]]}"#,
    ]
    .map(|s| s.as_bytes().to_vec())
    .to_vec();
    let runs = fuzz("commands", &seeds, |body| {
        if let Ok(commands) = parse_commands(body) {
            for command in commands {
                let _ = command.validate();
            }
        }
    });
    assert!(runs > 100, "the fuzzer ran only {runs} inputs");
}

#[test]
fn cursors() {
    let seeds: Vec<Vec<u8>> = [
        "MjE3ZGFkZDkyNGNiZWIzOXxAdmljOjA",
        "NzI3MWViN2QyNTJhMmNiNHxyOjR8QHJlYWRlcjow",
        "NzI3MWViN2QyNTJhMmNiNHxsb2JieTo5OTk5OTk5OTk5OTk5OTk5OTk5OXxAYToxOHxyb29tLTI6Mw",
    ]
    .map(|s| s.as_bytes().to_vec())
    .to_vec();
    let runs = fuzz("cursors", &seeds, |bytes| {
        let _ = Cursor::decode(&String::from_utf8_lossy(bytes));
    });
    assert!(runs > 100, "the fuzzer ran only {runs} inputs");
}

#[test]
fn tokens() {
    let auth = Auth::new("the-secret-of-the-fuzzer-at-least-32-bytes").unwrap();
    let claims = |role: Option<&str>, rooms: Option<Vec<String>>| Claims {
        sub: "alice".into(),
        exp: 4_000_000_000,
        nbf: None,
        role: role.map(str::to_owned),
        rooms,
    };
    let seeds: Vec<Vec<u8>> = [
        auth.mint(&claims(None, None)),
        auth.mint(&claims(Some("host"), Some(vec!["live-*".into(), "lobby".into()]))),
        auth.mint(&claims(Some("viewer"), Some(Vec::new()))),
    ]
    .map(String::into_bytes)
    .to_vec();
    let mut accepted_altered = Vec::new();
    let runs = fuzz("tokens", &seeds, |bytes| {
        let token = String::from_utf8_lossy(bytes);
        match auth.verify(&token, 1_800_000_000) {
            Ok(_) if !seeds.iter().any(|s| s.as_slice() == bytes) => {
                accepted_altered.push(token.into_owned())
            }
            Ok(_) => {}
            Err(error) => {
                assert!(matches!(error.code, ErrorCode::Unauthorized | ErrorCode::TokenExpired), "{error}")
            }
        }
    });
    assert!(runs > 100, "the fuzzer ran only {runs} inputs");
    // base64url without padding has a little slack in its last character: a token changed
    // only there decodes to the same bytes and is the same token. Anything else is a forgery.
    for token in accepted_altered {
        let same = seeds.iter().any(|s| {
            let s = String::from_utf8_lossy(s);
            s.len() == token.len() && s[..s.len() - 1] == token[..token.len() - 1]
        });
        assert!(same, "an altered token was accepted: {token}");
    }
}

#[test]
fn websocket_frames() {
    // Client frames (masked): a text frame, a fragmented message, a ping, a close, a longer
    // text, a binary frame.
    let seeds: Vec<Vec<u8>> = vec![
        client_frame(true, OP_TEXT, br#"{"type":"ping"}"#),
        [client_frame(false, OP_TEXT, br#"{"type":"#), client_frame(true, OP_CONTINUATION, br#""ping"}"#)]
            .concat(),
        client_frame(true, OP_PING, b"are you there"),
        client_frame(true, OP_CLOSE, &[0x03, 0xe8, b'b', b'y', b'e']),
        client_frame(true, OP_TEXT, &[b'x'; 300]),
        client_frame(true, OP_BINARY, &[0, 1, 2, 3]),
    ];
    const LIMIT: usize = 64 * 1024;
    let runs = fuzz("websocket", &seeds, |bytes| {
        let mut decoder = Decoder::new(LIMIT);
        // Fed in pieces, as reads deliver them.
        let mut buf = BytesMut::new();
        for piece in bytes.chunks(7) {
            buf.extend_from_slice(piece);
            loop {
                match decoder.next(&mut buf) {
                    Ok(Some(_)) => continue,
                    Ok(None) => break,
                    Err(_) => return, // the connection is closed with a code
                }
            }
            // What the read loop would reserve next stays bounded, whatever a header claims.
            assert!(decoder.needed() <= LIMIT + 14, "asks for {} bytes", decoder.needed());
        }
    });
    assert!(runs > 100, "the fuzzer ran only {runs} inputs");
}

/// The request targets of the read routes: the URI itself (as hyper parses it), the query string
/// (as the routes' extractors decode it: `cursor`, `wait_ms`), and the cursor inside it.
#[test]
fn query_strings() {
    use axum::extract::Query;
    use axum::http::Uri;
    use quartet_server::transport::CursorQuery;
    use quartet_server::transport::long_poll::{LONG_POLL_MAX_WAIT, LongPollQuery};
    let seeds: Vec<Vec<u8>> = [
        "/v1/clients/AbCdEf0123456789_-xyzw/long-poll?cursor=NzI3MWViN2QyNTJhMmNiNHxyOjR8QHJlYWRlcjow&wait_ms=25000",
        "/v1/clients/AbCdEf0123456789_-xyzw/poll?cursor=MjE3ZGFkZDkyNGNiZWIzOXxAdmljOjA",
        "/v1/clients/x/sse?cursor=&wait_ms=18446744073709551615&cursor=a%20b%FF",
        "/v1/clients/%FF%FE/ws?cursor=%E2%82%AC&&=&wait_ms=-1",
    ]
    .map(|s| s.as_bytes().to_vec())
    .to_vec();
    let runs = fuzz("query strings", &seeds, |bytes| {
        let Ok(uri) = Uri::try_from(bytes) else { return };
        if let Ok(Query(query)) = Query::<LongPollQuery>::try_from_uri(&uri) {
            assert!(query.wait() <= LONG_POLL_MAX_WAIT, "a wait beyond the cap: {:?}", query.wait_ms);
            if let Some(cursor) = &query.cursor {
                let _ = Cursor::decode(cursor);
            }
        }
        if let Ok(Query(query)) = Query::<CursorQuery>::try_from_uri(&uri)
            && let Some(cursor) = &query.cursor
        {
            let _ = Cursor::decode(cursor);
        }
    });
    assert!(runs > 100, "the fuzzer ran only {runs} inputs");
}

/// Engine.IO polling bodies and the Socket.IO packets inside them (the codecs of the Socket.IO
/// transport being built): a value or an error, never a panic; what is read writes back to
/// something that reads the same.
#[test]
fn socketio_packets() {
    use quartet_server::transport::socketio::{engine, packet};
    let seeds: Vec<Vec<u8>> = [
        "4hello\u{1e}bAQIDBA==\u{1e}4world",
        r#"40/admin,{"token":"123"}"#,
        r#"42["chat",{"text":"hi"},"offset"]"#,
        r#"4212["join",{"room":"lobby"}]"#,
        r#"43/admin,13["bar"]"#,
        r#"451-["baz",{"_placeholder":true,"num":0}]"#,
        r#"461-/admin,15[{"_placeholder":true,"num":0}]"#,
        "2probe\u{1e}3probe\u{1e}5\u{1e}6\u{1e}1",
    ]
    .map(|s| s.as_bytes().to_vec())
    .to_vec();
    let runs = fuzz("socket.io packets", &seeds, |bytes| {
        let Ok(packets) = engine::decode_payload(&String::from_utf8_lossy(bytes)) else { return };
        for p in packets {
            if let engine::Packet::Message(text) = p
                && let Ok(read) = packet::Packet::decode(&text)
            {
                let again =
                    packet::Packet::decode(&read.encode()).expect("what is read writes back readably");
                assert_eq!(again, read);
            }
        }
    });
    assert!(runs > 100, "the fuzzer ran only {runs} inputs");
}

/// Whole requests, mutated, against a live server: each on a connection of its own, sent whole
/// and then the sending side closed, must get an answer that is HTTP (or none) and a closed
/// connection within seconds, never a hang; and the server serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_requests() {
    let server = common::start(quartet_core::Config::default()).await;
    let address = server.url.trim_start_matches("http://").to_owned();
    let seeds: Vec<Vec<u8>> = [
        &b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"POST /v1/clients HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{\"name\":\"carol\"}",
        b"POST /v1/clients HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n{\"name\":\"\r\n7;x=1\r\ncarol\"}\r\n0\r\nT: 1\r\n\r\n",
        b"POST /v1/clients HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n{}",
        b"GET /healthz HTTP/1.1\r\n\r\nHEAD /v1/rooms/lobby HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        b"GET /v1/clients/abc/sse?cursor=QUJD HTTP/1.1\r\nLast-Event-ID: QUJD\r\n\r\n",
    ]
    .iter()
    .map(|s| s.to_vec())
    .collect();
    let runs = tokio::task::spawn_blocking(move || {
        fuzz("http requests", &seeds, |input| {
            let mut socket = std::net::TcpStream::connect(&address).unwrap();
            socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = socket.write_all(input); // the server may close first
            let _ = socket.shutdown(std::net::Shutdown::Write);
            let mut answer = Vec::new();
            match socket.read_to_end(&mut answer) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
                Err(e) => panic!("neither answered nor closed within 5 s ({e})"),
            }
            assert!(
                answer.is_empty() || answer.starts_with(b"HTTP/1.1 "),
                "not an HTTP answer: {:?}",
                String::from_utf8_lossy(&answer)
            );
        })
    })
    .await
    .unwrap();
    assert!(runs > 0);
    let health = server.http.get(format!("{}/healthz", server.url)).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200, "the server serves on");
}
