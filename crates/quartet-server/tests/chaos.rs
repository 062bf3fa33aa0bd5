//! Chaos: clients on all four transports in several rooms publish and read while a proxy between
//! them and the server cuts their connections at random. A cut stream is resumed from the
//! client's cursor (on another transport, sometimes); a publish cut before its ack is sent again
//! with the same message id. At the end every client must have every acknowledged chat event of
//! its rooms exactly once, in seq order.
//!
//! Bounded for `cargo test` (40 clients, about 15 s). A longer run:
//! `QUARTET_CHAOS_CLIENTS=200 QUARTET_CHAOS_PUBLISHES=60 cargo test --release -p quartet-server --test chaos -- --nocapture`;
//! `QUARTET_CHAOS_SEED` replays a run.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use quartet_client::{Client, ClientError, Command, Frame, Options, Reply, TransportKind};
use quartet_core::Config;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::time::Instant;

const ROOMS: [&str; 4] = ["alpha", "beta", "gamma", "delta"];

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A proxy to `server` that cuts connections at random (both ways at once): each one after a
/// random 100 ms to 1.5 s, and, with odds of one in six, right after forwarding something the
/// client sent, before the answer can come back (a publish is then in the log, its ack lost).
/// Returns its URL.
async fn cutting_proxy(server: &str, seed: u64, cuts: Arc<AtomicU64>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let target: std::net::SocketAddr = server.trim_start_matches("http://").parse().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let life = Duration::from_millis(rng.random_range(100..1500));
            let mut conn_rng = StdRng::seed_from_u64(rng.random());
            let cuts = cuts.clone();
            tokio::spawn(async move {
                let Ok(outbound) = tokio::net::TcpStream::connect(target).await else { return };
                let (mut client_in, mut client_out) = inbound.into_split();
                let (mut server_in, mut server_out) = outbound.into_split();
                let up = async {
                    let mut buf = vec![0; 16 * 1024];
                    loop {
                        let n = client_in.read(&mut buf).await.unwrap_or(0);
                        if n == 0 || server_out.write_all(&buf[..n]).await.is_err() {
                            return false;
                        }
                        if conn_rng.random_ratio(1, 6) {
                            // Let the server take it, then cut before its answer is through.
                            tokio::time::sleep(Duration::from_millis(2)).await;
                            return true;
                        }
                    }
                };
                let down = tokio::io::copy(&mut server_in, &mut client_out);
                let cut = tokio::select! {
                    cut = up => cut,
                    _ = down => false,
                    () = tokio::time::sleep(life) => true,
                };
                if cut {
                    cuts.fetch_add(1, Ordering::Relaxed);
                }
                // Returning drops all four halves: that is the cut.
            });
        }
    });
    url
}

/// What one client saw and did.
#[derive(Default)]
struct Outcome {
    /// Chat seqs received per room, in arrival order.
    received: BTreeMap<String, Vec<u64>>,
    /// Time from a cut to the transport being open again, per resume.
    resumes: Vec<Duration>,
    /// Publishes sent again after a cut lost their reply.
    resent: u64,
}

/// Acks of every client: room → seqs of acknowledged chat events.
type Acked = Arc<Mutex<BTreeMap<String, BTreeSet<u64>>>>;

/// Opens a transport again from the cursor until it works; the kind is kept or changed at random.
async fn resume(client: &mut Client, rng: &mut StdRng, outcome: &mut Outcome) {
    let started = Instant::now();
    loop {
        let kind = if rng.random_bool(0.5) {
            client.kind()
        } else {
            TransportKind::ALL[rng.random_range(0..TransportKind::ALL.len())]
        };
        match client.switch(kind).await {
            Ok(()) => break,
            Err(ClientError::Server { code, message, .. }) => panic!("resume refused: {code}: {message}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await, // cut again: retry
        }
    }
    outcome.resumes.push(started.elapsed());
}

/// Sends `command` until it is answered; a cut before the reply means "send it again": the
/// message id makes the server acknowledge it once.
async fn until_answered(
    client: &mut Client,
    command: impl Fn() -> Command,
    rng: &mut StdRng,
    outcome: &mut Outcome,
) -> Reply {
    let mut attempts = 0;
    loop {
        match client.command(command()).await {
            Ok(reply) => {
                if attempts > 0 {
                    outcome.resent += 1;
                }
                return reply;
            }
            Err(ClientError::Server { code, message, .. }) => panic!("command refused: {code}: {message}"),
            Err(_) => {
                attempts += 1;
                resume(client, rng, outcome).await;
            }
        }
    }
}

fn keep(frames: Vec<Frame>, outcome: &mut Outcome) {
    for frame in frames {
        if let Some(event) = frame.as_event().filter(|e| e.event == "chat") {
            outcome.received.entry(event.room.clone()).or_default().push(event.seq);
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_client(
    proxy: String,
    name: String,
    kind: TransportKind,
    rooms: Vec<&'static str>,
    publishes: u64,
    seed: u64,
    acked: Acked,
    publishing: Arc<AtomicU64>,
    expected: Arc<tokio::sync::OnceCell<BTreeMap<String, BTreeSet<u64>>>>,
) -> (Vec<&'static str>, Outcome) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut outcome = Outcome::default();
    let options =
        Options { poll_interval: Duration::from_millis(50), long_poll_wait: Duration::from_secs(2) };
    let mut client = loop {
        match Client::connect_via(reqwest::Client::new(), &proxy, &name, kind, options.clone()).await {
            Ok(client) => break client,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await, // cut while registering
        }
    };
    for room in &rooms {
        let reply =
            until_answered(&mut client, || Command::join(room).unwrap(), &mut rng, &mut outcome).await;
        assert!(matches!(reply, Reply::Joined { .. }), "{reply:?}");
    }
    // Everyone is in before the first publish (see the barrier in the test).
    publishing.fetch_add(1, Ordering::SeqCst);
    let mut next_publish = Instant::now() + Duration::from_millis(rng.random_range(200..600));
    let mut sent = 0;
    loop {
        if sent == publishes
            && let Some(expected) = expected.get()
        {
            let done = rooms.iter().all(|room| {
                let got: BTreeSet<u64> = outcome.received.get(*room).into_iter().flatten().copied().collect();
                expected.get(*room).is_none_or(|want| want.is_subset(&got))
            });
            if done {
                break;
            }
        }
        tokio::select! {
            received = client.receive() => match received {
                Ok(frames) => keep(frames, &mut outcome),
                Err(ClientError::Server { code, message, .. }) => panic!("{name}: the server ended the client: {code}: {message}"),
                Err(_) => resume(&mut client, &mut rng, &mut outcome).await,
            },
            () = tokio::time::sleep_until(next_publish), if sent < publishes && publishing.load(Ordering::SeqCst) >= u64::MAX / 2 => {
                let room = rooms[rng.random_range(0..rooms.len())];
                let id = format!("{name}-{sent}");
                let text = id.clone();
                let make = || Command::publish(room, "chat", &json!({ "text": text })).unwrap().id(id.clone());
                match until_answered(&mut client, make, &mut rng, &mut outcome).await {
                    Reply::Ack { room, seq, .. } => {
                        acked.lock().unwrap().entry(room).or_default().insert(seq);
                    }
                    other => panic!("{name}: publish refused: {other:?}"),
                }
                sent += 1;
                next_publish = Instant::now() + Duration::from_millis(rng.random_range(100..900));
            }
            // Look again whether everything is in, even when nothing arrives.
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    (rooms, outcome)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acked_event_arrives_once_in_order_through_random_cuts() {
    let clients = env("QUARTET_CHAOS_CLIENTS", 40);
    let publishes = env("QUARTET_CHAOS_PUBLISHES", 12);
    let seed = env("QUARTET_CHAOS_SEED", rand::random::<u32>() as u64);
    eprintln!(
        "chaos: {clients} clients, {publishes} publishes each, seed {seed} (QUARTET_CHAOS_SEED replays it)"
    );
    let server = start(Config { command_rate: 1e6, command_burst: 1e6, ..Config::default() }).await;
    let cuts = Arc::new(AtomicU64::new(0));
    let proxy = cutting_proxy(&server.url, seed, cuts.clone()).await;
    let acked: Acked = Arc::default();
    let publishing = Arc::new(AtomicU64::new(0));
    let expected = Arc::new(tokio::sync::OnceCell::new());
    let mut tasks = Vec::new();
    let mut rng = StdRng::seed_from_u64(seed);
    for i in 0..clients {
        let first = rng.random_range(0..ROOMS.len());
        let rooms =
            vec![ROOMS[first], ROOMS[(first + 1 + rng.random_range(0..ROOMS.len() - 1)) % ROOMS.len()]];
        let kind = TransportKind::ALL[i as usize % TransportKind::ALL.len()];
        tasks.push(tokio::spawn(run_client(
            proxy.clone(),
            format!("c{i}"),
            kind,
            rooms,
            publishes,
            rng.random(),
            acked.clone(),
            publishing.clone(),
            expected.clone(),
        )));
    }
    // Publishing starts once every client is in its rooms, so each must get every chat of them.
    let started = Instant::now();
    while publishing.load(Ordering::SeqCst) < clients {
        assert!(started.elapsed() < PATIENCE * 3, "clients never all joined");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    publishing.store(u64::MAX, Ordering::SeqCst);
    // Once every publish is acked, the clients know what to wait for.
    let total = clients * publishes;
    while acked.lock().unwrap().values().map(BTreeSet::len).sum::<usize>() < total as usize {
        assert!(started.elapsed() < PATIENCE * 6, "publishes never all acked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all_acked = acked.lock().unwrap().clone();
    expected.set(all_acked.clone()).unwrap();

    let mut resumes = Vec::new();
    let (mut deliveries, mut resent) = (0, 0);
    for task in tasks {
        let (rooms, outcome) =
            tokio::time::timeout(PATIENCE * 6, task).await.expect("a client never got everything").unwrap();
        for room in rooms {
            let got = outcome.received.get(room).cloned().unwrap_or_default();
            let want: Vec<u64> = all_acked.get(room).into_iter().flatten().copied().collect();
            assert_eq!(got, want, "room {room}: every acked chat once, in seq order");
            deliveries += got.len();
        }
        resumes.extend(outcome.resumes);
        resent += outcome.resent;
    }
    resumes.sort();
    let pct = |p: usize| resumes.get(resumes.len() * p / 100).copied().unwrap_or_default();
    let cuts = cuts.load(Ordering::Relaxed);
    eprintln!(
        "chaos: {deliveries} deliveries of {total} acked chats exactly once, {cuts} cuts, {} resumes (p50 {:?}, p99 {:?}), {resent} publishes resent, {:.1} s",
        resumes.len(),
        pct(50),
        pct(99),
        started.elapsed().as_secs_f64()
    );
    assert!(cuts >= clients, "the proxy cut too little to test anything: {cuts}");
    assert!(!resumes.is_empty());
}
