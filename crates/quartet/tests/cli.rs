//! The `quartet` binary end to end: `serve` on an ephemeral port, two `quartet chat` processes on
//! different transports talking through it, and a server that needs tokens.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_quartet");

/// Kills the process when the test ends, pass or fail.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Forwards a child's stdout lines to a channel, so the test can wait with a deadline.
fn lines(stdout: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a line containing `needle`; returns it, or panics with what came instead.
fn expect_line(rx: &mpsc::Receiver<String>, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    panic!("no line with {needle:?}; got {seen:#?}");
}

fn spawn(args: &[&str]) -> (Reaped, mpsc::Receiver<String>) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the quartet binary runs");
    let out = lines(child.stdout.take().unwrap());
    (Reaped(child), out)
}

/// The address a server's banner says it listens on.
fn listening(server_out: &mpsc::Receiver<String>) -> String {
    expect_line(server_out, "listening on").rsplit(' ').next().unwrap().to_owned()
}

/// A `quartet chat` of `name` over `transport` in room `lobby`, once it has joined.
fn join_lobby(url: &str, transport: &str, name: &str) -> (Reaped, mpsc::Receiver<String>) {
    let chat = spawn(&["chat", "--transport", transport, "--room", "lobby", "--name", name, "--url", url]);
    expect_line(&chat.1, "joined lobby");
    chat
}

/// Two terminal chats, one on SSE and one on WebSocket, see each other's lines and presence.
#[test]
fn two_chats_talk_through_a_server() {
    let (_server, server_out) = spawn(&["serve", "--addr", "127.0.0.1:0", "--store", "memory"]);
    let url = listening(&server_out);
    expect_line(&server_out, "NOTHING IS KEPT");

    let (mut alice, alice_out) = join_lobby(&url, "sse", "alice");
    let (mut bob, bob_out) = join_lobby(&url, "ws", "bob");
    expect_line(&alice_out, "bob joined");

    writeln!(alice.0.stdin.as_mut().unwrap(), "hello from sse").unwrap();
    expect_line(&bob_out, "alice: hello from sse");
    writeln!(bob.0.stdin.as_mut().unwrap(), "/switch short-poll").unwrap();
    expect_line(&bob_out, "now on short-poll");
    writeln!(bob.0.stdin.as_mut().unwrap(), "hi from bob").unwrap();
    expect_line(&alice_out, "bob: hi from bob");
    writeln!(bob.0.stdin.as_mut().unwrap(), "/quit").unwrap();
    expect_line(&alice_out, "bob left");
}

/// One worker thread runs the server on a single-threaded scheduler, with the durable store's
/// appends on its blocking pool (a chat line is delivered only once the store has it): two
/// chats, on long polling and WebSocket, still talk.
#[test]
fn one_worker_serves_chats_on_the_durable_store() {
    let dir = std::env::temp_dir().join(format!("quartet-one-worker-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = format!("sqlite:{}", dir.join("one.db").display());
    let (_server, server_out) =
        spawn(&["serve", "--addr", "127.0.0.1:0", "--store", &store, "--workers", "1"]);
    let url = listening(&server_out);
    expect_line(&server_out, "workers: 1 thread (a single-threaded scheduler");

    let (mut alice, alice_out) = join_lobby(&url, "long-poll", "alice");
    let (_bob, bob_out) = join_lobby(&url, "ws", "bob");
    expect_line(&alice_out, "bob joined");
    writeln!(alice.0.stdin.as_mut().unwrap(), "kept on one thread").unwrap();
    expect_line(&bob_out, "alice: kept on one thread");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `POST /v1/clients` over a bare socket, with an optional bearer token: the status line.
fn register_status(url: &str, token: Option<&str>) -> String {
    let address = url.trim_start_matches("http://");
    let mut socket = std::net::TcpStream::connect(address).unwrap();
    let authorization = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(
        socket,
        "POST /v1/clients HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n{authorization}Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    )
    .unwrap();
    let mut status = String::new();
    BufReader::new(socket).read_line(&mut status).unwrap();
    status
}

/// With `--auth-secret` the server says it needs tokens (and that this secret is weak), takes a
/// token minted by `quartet token` with the same secret, and refuses a request without one.
#[test]
fn a_server_with_a_secret_takes_the_tokens_quartet_token_mints() {
    let (_server, out) = spawn(&["--auth-secret", "s3cret", "--addr", "127.0.0.1:0", "--store", "memory"]);
    let url = listening(&out);
    expect_line(&out, "auth: tokens required");
    expect_line(&out, "WEAK SECRET");
    let minted = Command::new(BIN)
        .args(["token", "--secret", "s3cret", "--sub", "alice", "--ttl", "5m"])
        .output()
        .unwrap();
    assert!(minted.status.success(), "{}", String::from_utf8_lossy(&minted.stderr));
    let token = String::from_utf8(minted.stdout).unwrap().trim().to_owned();
    assert!(register_status(&url, Some(&token)).contains(" 201 "), "a minted token registers");
    assert!(register_status(&url, None).contains(" 401 "), "no token: 401");
    let bad_role = Command::new(BIN)
        .args(["token", "--secret", "s3cret", "--sub", "alice", "--role", "admin"])
        .output()
        .unwrap();
    assert!(!bad_role.status.success(), "a token the server would refuse is not minted");

    // Two chats with tokens: the host mutes and kicks the member.
    let mint = |sub: &str, role: &str| {
        let out = Command::new(BIN)
            .args(["token", "--secret", "s3cret", "--sub", sub, "--role", role])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let (hana_token, bob_token) = (mint("hana", "host"), mint("bob", "member"));
    let (mut hana, hana_out) =
        spawn(&["chat", "--transport", "ws", "--room", "lobby", "--token", &hana_token, "--url", &url]);
    expect_line(&hana_out, "hana in lobby");
    let (mut bob, bob_out) =
        spawn(&["chat", "--transport", "long-poll", "--room", "lobby", "--token", &bob_token, "--url", &url]);
    expect_line(&bob_out, "bob in lobby");
    writeln!(hana.0.stdin.as_mut().unwrap(), "/mute bob 60").unwrap();
    expect_line(&bob_out, "hana muted bob in lobby for 60 s");
    writeln!(bob.0.stdin.as_mut().unwrap(), "let me talk").unwrap();
    expect_line(&bob_out, "forbidden: you are muted in room lobby");
    writeln!(hana.0.stdin.as_mut().unwrap(), "/kick bob").unwrap();
    expect_line(&hana_out, "bob was kicked");
    writeln!(bob.0.stdin.as_mut().unwrap(), "/join lobby").unwrap();
    expect_line(&bob_out, "forbidden: you were kicked from room lobby");
}

/// Without a secret the server says it is open.
#[test]
fn an_open_server_says_so_at_start() {
    let (_server, out) = spawn(&["--addr", "127.0.0.1:0", "--store", "memory"]);
    expect_line(&out, "auth: OPEN");
}

/// `quartet soak`, briefly: it starts its own server, connects clients over the four
/// transports, publishes, and prints a row per window with every client served and no error.
#[test]
fn a_short_soak_reports_its_windows() {
    let out = Command::new(BIN)
        .args([
            "soak",
            "--clients",
            "40",
            "--rooms",
            "4",
            "--minutes",
            "0.1",
            "--sample-seconds",
            "2",
            "--rate",
            "20",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<&str> = stdout.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| at")).collect();
    assert!(rows.len() >= 2, "{stdout}");
    for row in rows {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        assert_eq!(cells[2], "41", "40 clients and the publisher: {row}");
        assert!(cells[6].parse::<f64>().unwrap() > 0.0, "events were delivered: {row}");
        assert_eq!(cells[12], "0", "no client error: {row}");
    }
}
