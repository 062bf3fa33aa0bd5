//! The kernel's floor for a delivery on this machine, measured in the same run as the server:
//! one thread on the server's CPU writes ~100-byte messages to 1 000 loopback sockets (read on
//! the load generator's CPU), first one message per `write()`, then ten per `write()`; and
//! again with as many sockets as each larger room of the run has subscribers (the kernel's own
//! cost per write grows with the connections it holds). Its CPU
//! time per message is what any server pays the kernel at least, before its own work; on
//! loopback the sender also pays much of the receiver's TCP processing.
//!
//! A server at one event per write cannot go below the first number; only batching events per
//! write (which the saturation runs show) gets near the second.

use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::server::{cpu_count, cpu_us_of_stat, which};

/// Sockets written to by the main floor, as many as a 1 000-subscriber room has.
pub(crate) const SOCKETS: usize = 1000;
/// Most sockets a floor can hold: both ends are in this process, under its descriptor limit,
/// with room for the rest of the bench.
pub(crate) fn max_sockets() -> usize {
    let limit = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft);
    (usize::try_from(limit).unwrap_or(usize::MAX).saturating_sub(1000) / 2).max(SOCKETS)
}

/// Bytes per message, about one of the bench's events without its cursor.
const MESSAGE: usize = 100;
/// Writes per mode: enough CPU time for /proc's 10 ms ticks.
const WRITES: usize = 200_000;

/// The same writes paced like a room's fan-out: one message to every socket at once, `rate`
/// times a second (as a publish to a room of that size at the bench's rate), instead of
/// back to back. Between bursts the receiving side goes idle, so each burst pays the wake-ups
/// and cold caches a server's fan-out pays too.
#[derive(Debug, Serialize)]
pub(crate) struct PacedFloor {
    /// The room size whose rows it stands beside.
    pub(crate) room: usize,
    pub(crate) sockets: usize,
    pub(crate) bursts_per_s: f64,
    pub(crate) writes: usize,
    /// CPU time per message, in microseconds; `None` where /proc/thread-self/schedstat is
    /// missing.
    pub(crate) us_per_message: Option<f64>,
}

/// Measures a [`PacedFloor`] for `seconds`.
pub(crate) async fn measure_paced(
    room: usize,
    sockets: usize,
    rate: f64,
    seconds: f64,
) -> anyhow::Result<PacedFloor> {
    let (writers, readers) = connect_pairs(sockets).await?;
    let bursts = ((rate * seconds).ceil() as usize).max(1);
    let writer = std::thread::spawn(move || -> anyhow::Result<Option<u64>> {
        pin_this_thread_to_cpu0();
        let mut sockets = writers;
        let message = [b'x'; MESSAGE];
        let period = Duration::from_secs_f64(1.0 / rate);
        let start = std::time::Instant::now();
        let mut cpu = 0;
        for burst in 0..bursts {
            if let Some(wait) =
                (start + period * burst as u32).checked_duration_since(std::time::Instant::now())
            {
                std::thread::sleep(wait);
            }
            let before = thread_cpu_ns();
            for socket in &mut sockets {
                socket.write_all(&message)?;
            }
            match (before, thread_cpu_ns()) {
                (Some(before), Some(after)) => cpu += after - before,
                _ => return Ok(None),
            }
        }
        Ok(Some(cpu))
    });
    let cpu_ns = finish(writer, readers).await?;
    let writes = bursts * sockets;
    Ok(PacedFloor {
        room,
        sockets,
        bursts_per_s: rate,
        writes,
        us_per_message: cpu_ns.map(|ns| ns as f64 / 1000.0 / writes as f64),
    })
}

/// Waits for a floor's writer thread (which drops its sockets when done), then for the readers
/// to see the ends; returns what the writer measured.
async fn finish<T: Send + 'static>(
    writer: std::thread::JoinHandle<anyhow::Result<T>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
) -> anyhow::Result<T> {
    let measured = tokio::task::spawn_blocking(move || writer.join())
        .await?
        .map_err(|_| anyhow::anyhow!("a floor's writer thread panicked"))??;
    for reader in readers {
        let _ = tokio::time::timeout(Duration::from_secs(10), reader).await;
    }
    Ok(measured)
}

/// `sockets` loopback connections: this side's ends (blocking, no Nagle delay), and tasks on
/// the calling runtime reading the other ends until they close.
async fn connect_pairs(sockets: usize) -> anyhow::Result<(Vec<TcpStream>, Vec<tokio::task::JoinHandle<()>>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    let mut readers = Vec::with_capacity(sockets);
    let mut writers = Vec::with_capacity(sockets);
    for _ in 0..sockets {
        let mut client = tokio::net::TcpStream::connect(address).await?;
        let (server, _) = listener.accept()?;
        server.set_nodelay(true)?;
        writers.push(server);
        readers.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 8 * 1024];
            while matches!(client.read(&mut buf).await, Ok(n) if n > 0) {}
        }));
    }
    Ok((writers, readers))
}

/// CPU time per message of bare `write()` calls, in microseconds.
#[derive(Debug, Serialize)]
pub(crate) struct Floor {
    pub(crate) sockets: usize,
    pub(crate) message_bytes: usize,
    /// `write()` calls per mode.
    pub(crate) writes: usize,
    /// One message per `write()`.
    pub(crate) us_per_message_one_per_write: f64,
    /// Ten messages per `write()`.
    pub(crate) us_per_message_ten_per_write: f64,
    /// Whether the writing thread ran on CPU 0, beside where the server runs.
    pub(crate) writer_pinned_to_cpu0: bool,
}

/// Measures the floor over `sockets` sockets; the readers run on the calling (load
/// generator's) runtime.
pub(crate) async fn measure(sockets: usize) -> anyhow::Result<Floor> {
    let (writers, readers) = connect_pairs(sockets).await?;
    let rounds = WRITES.div_ceil(sockets);
    let writer = std::thread::spawn(move || write_all_rounds(writers, rounds));
    let (pinned, one, ten) = finish(writer, readers).await?;
    let writes = sockets * rounds;
    Ok(Floor {
        sockets,
        message_bytes: MESSAGE,
        writes,
        us_per_message_one_per_write: one as f64 / writes as f64,
        us_per_message_ten_per_write: ten as f64 / (writes * 10) as f64,
        writer_pinned_to_cpu0: pinned,
    })
}

/// On its own thread: pins itself to CPU 0, then writes every round in both modes. Returns
/// whether it was pinned and the thread's CPU time (µs) for each mode. Dropping the sockets at
/// the end lets the readers finish.
fn write_all_rounds(mut sockets: Vec<TcpStream>, rounds: usize) -> anyhow::Result<(bool, u64, u64)> {
    let pinned = pin_this_thread_to_cpu0();
    let message = [b'x'; MESSAGE];
    let ten = [b'x'; MESSAGE * 10];
    let start = thread_cpu_us()?;
    for _ in 0..rounds {
        for socket in &mut sockets {
            socket.write_all(&message)?;
        }
    }
    let middle = thread_cpu_us()?;
    for _ in 0..rounds {
        for socket in &mut sockets {
            socket.write_all(&ten)?;
        }
    }
    let end = thread_cpu_us()?;
    Ok((pinned, middle - start, end - middle))
}

fn pin_this_thread_to_cpu0() -> bool {
    if cpu_count() < 2 || !which("taskset") {
        return false;
    }
    let Some(tid) = this_thread_id() else {
        return false;
    };
    std::process::Command::new("taskset")
        .args(["-p", "-c", "0", &tid])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// This thread's CPU time (user + system) in microseconds, from /proc (Linux, 10 ms ticks).
fn thread_cpu_us() -> anyhow::Result<u64> {
    std::fs::read_to_string("/proc/thread-self/stat")
        .ok()
        .and_then(|stat| cpu_us_of_stat(&stat))
        .ok_or_else(|| anyhow::anyhow!("cannot read this thread's CPU time from /proc"))
}

/// Syncs measured for the [`SyncFloor`].
const SYNCS: usize = 300;
/// Bytes written before each sync: about what one commit of a busy group adds to the WAL.
const SYNC_BYTES: usize = 8 * 1024;

/// What making a write durable costs on this machine's disk, no store involved: `SYNC_BYTES`
/// written in place into a preallocated file (as a reused WAL is), then `fdatasync`, repeated.
/// A durable store pays at least this CPU per sync; group commit divides it by the writes a
/// sync covers.
#[derive(Debug, Serialize)]
pub(crate) struct SyncFloor {
    pub(crate) syncs: usize,
    pub(crate) bytes_per_sync: usize,
    /// CPU time (user + system) per write + sync, in microseconds; `None` where
    /// /proc/thread-self/schedstat is missing.
    pub(crate) cpu_us_per_sync: Option<f64>,
    /// Wall time of one write + sync, median, in microseconds.
    pub(crate) wall_us_p50: f64,
    /// Whether the syncing thread ran on CPU 0, where the server runs.
    pub(crate) pinned_to_cpu0: bool,
}

/// Measures the sync floor in `dir` (where the bench's SQLite files go), on a thread of its own.
pub(crate) async fn measure_sync(dir: &std::path::Path) -> anyhow::Result<SyncFloor> {
    let path = dir.join(format!("quartet-bench-sync-{}.tmp", std::process::id()));
    let syncer = std::thread::spawn({
        let path = path.clone();
        move || sync_rounds(&path)
    });
    let result = tokio::task::spawn_blocking(move || syncer.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the sync floor's thread panicked"))?;
    let _ = std::fs::remove_file(&path);
    result
}

/// On its own thread, pinned to CPU 0 where the server runs (the disk's interrupts are then
/// counted as they are for the server).
fn sync_rounds(path: &std::path::Path) -> anyhow::Result<SyncFloor> {
    use std::io::{Seek as _, SeekFrom};
    let pinned = pin_this_thread_to_cpu0();
    let mut file = std::fs::OpenOptions::new().create(true).write(true).truncate(true).open(path)?;
    let chunk = vec![b'x'; SYNC_BYTES];
    for _ in 0..SYNCS {
        file.write_all(&chunk)?;
    }
    file.sync_all()?;
    file.seek(SeekFrom::Start(0))?;
    let cpu_start = thread_cpu_ns();
    let mut walls = Vec::with_capacity(SYNCS);
    for _ in 0..SYNCS {
        let started = std::time::Instant::now();
        file.write_all(&chunk)?;
        file.sync_data()?;
        walls.push(started.elapsed().as_secs_f64() * 1e6);
    }
    let cpu = cpu_start.zip(thread_cpu_ns()).map(|(a, b)| (b - a) as f64 / 1e3 / SYNCS as f64);
    walls.sort_by(f64::total_cmp);
    Ok(SyncFloor {
        syncs: SYNCS,
        bytes_per_sync: SYNC_BYTES,
        cpu_us_per_sync: cpu,
        wall_us_p50: walls[SYNCS / 2],
        pinned_to_cpu0: pinned,
    })
}

/// This thread's CPU time in nanoseconds (the first field of /proc/thread-self/schedstat), far
/// finer than the 10 ms ticks of `stat`: a few hundred syncs take only tens of milliseconds.
fn thread_cpu_ns() -> Option<u64> {
    task_cpu_ns(&this_thread_id()?)
}

/// Bytes relayed per message by the [`relay`] floor: a bench event's size.
const RELAY_MESSAGE: usize = 200;

/// The machine's floor for one idle delivery's latency: a message goes from the load generator
/// to a bare relay thread on the server's CPU and back out on a second socket to the load
/// generator, as a publish goes to the server and its event to a subscriber, with no server in
/// between. Two loopback hops and two wake-ups: what any server's publish→delivery costs here
/// at least.
#[derive(Debug, Serialize)]
pub(crate) struct RelayFloor {
    pub(crate) messages: u64,
    pub(crate) message_bytes: usize,
    /// From each message's scheduled send time to its arrival, as the delivery runs measure.
    pub(crate) latency_us: super::report::Latency,
    /// Whether the relay thread ran on CPU 0, where the server runs.
    pub(crate) relay_pinned_to_cpu0: bool,
}

/// Measures the [`RelayFloor`] at `rate` messages/s for `seconds`, open loop.
pub(crate) async fn relay(rate: f64, seconds: f64) -> anyhow::Result<RelayFloor> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    let mut to_relay = tokio::net::TcpStream::connect(address).await?;
    let (inbound, _) = listener.accept()?;
    let mut from_relay = tokio::net::TcpStream::connect(address).await?;
    let (outbound, _) = listener.accept()?;
    for stream in [&inbound, &outbound] {
        stream.set_nodelay(true)?;
    }
    to_relay.set_nodelay(true)?;
    let relay = std::thread::spawn(move || relay_loop(inbound, outbound));
    let messages = ((rate * seconds).round() as u64).max(1);
    let start = std::time::Instant::now() + Duration::from_millis(50);
    let scheduled = move |i: u64| start + Duration::from_secs_f64(i as f64 / rate);
    let receiver = tokio::spawn(async move {
        let mut histogram = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
        let mut message = [0u8; RELAY_MESSAGE];
        for _ in 0..messages {
            from_relay.read_exact(&mut message).await?;
            let i = u64::from_le_bytes(message[..8].try_into().expect("eight bytes"));
            let late = std::time::Instant::now().saturating_duration_since(scheduled(i));
            histogram.saturating_record(late.as_micros().max(1) as u64);
        }
        Ok::<_, anyhow::Error>(histogram)
    });
    let mut message = [b'x'; RELAY_MESSAGE];
    for i in 0..messages {
        super::load::send_at(scheduled(i)).await;
        message[..8].copy_from_slice(&i.to_le_bytes());
        to_relay.write_all(&message).await?;
    }
    let histogram = tokio::time::timeout(Duration::from_secs(10), receiver)
        .await
        .map_err(|_| anyhow::anyhow!("the relay floor's messages did not all come back within 10 s"))???;
    drop(to_relay);
    let pinned = tokio::task::spawn_blocking(move || relay.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the relay thread panicked"))?;
    Ok(RelayFloor {
        messages,
        message_bytes: RELAY_MESSAGE,
        latency_us: super::load::percentiles(&histogram),
        relay_pinned_to_cpu0: pinned,
    })
}

/// On its own thread, pinned to CPU 0: copies what arrives on `inbound` to `outbound` until
/// `inbound` closes; returns whether it was pinned.
fn relay_loop(mut inbound: TcpStream, mut outbound: TcpStream) -> bool {
    use std::io::Read as _;
    let pinned = pin_this_thread_to_cpu0();
    let mut buffer = [0u8; 4096];
    while let Ok(n) = inbound.read(&mut buffer) {
        if n == 0 || outbound.write_all(&buffer[..n]).is_err() {
            break;
        }
    }
    pinned
}

/// The request every connection of the [`responder`] floor sends: a short poll's size.
const POLL_REQUEST: &[u8] = b"GET /v1/clients/c0123456789abcdef/poll?cursor=MDAwMDAwMDAwMDAwMWYwY3xAc3ViMDoxfGlkbGU6Mg HTTP/1.1\r\nhost: 127.0.0.1\r\naccept: */*\r\n\r\n";

/// The answer: an empty poll's size.
const POLL_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 73\r\n\r\n{\"events\":[],\"cursor\":\"MDAwMDAwMDAwMDAwMWYwY3xAc3ViMDoxfGlkbGU6Mg\"}      ";

/// The machine's floor for one short poll: a bare responder (one event loop on the server's
/// CPU, one task per keep-alive connection, reading a request's head and writing a fixed
/// answer, no HTTP library, no routing, no JSON) polled at the short-poll idle run's request
/// rate. Its CPU per request is what any server's empty poll
/// costs here at least: the kernel's receive, send and readiness work.
#[derive(Debug, Serialize)]
pub(crate) struct ResponderFloor {
    pub(crate) connections: usize,
    /// How often each connection polled.
    pub(crate) interval_ms: f64,
    pub(crate) requests: u64,
    /// CPU time (user + system) of the responder's thread per request, in microseconds;
    /// `None` where /proc/thread-self/schedstat is missing.
    pub(crate) cpu_us_per_request: Option<f64>,
    /// Whether the responder ran on CPU 0, where the server runs.
    pub(crate) pinned_to_cpu0: bool,
}

/// Most connections of the poll floor: both ends are in this process, and its descriptors may be
/// capped near 20 000. Past it, fewer connections poll more often, at the same request rate.
const MAX_POLLERS: usize = 4000;

/// Measures the [`ResponderFloor`]: as many requests per second as `pollers` connections each
/// polling once per `interval` make, for a window of three intervals (at least three seconds)
/// after a first round.
pub(crate) async fn responder(pollers: usize, interval: Duration) -> anyhow::Result<ResponderFloor> {
    let connections = pollers.clamp(1, MAX_POLLERS);
    let interval = interval.mul_f64(connections as f64 / pollers.max(1) as f64);
    let bare = Bare::start(POLL_RESPONSE, None)?;
    let streams = bare.connect(connections).await?;
    let window = Duration::from_secs(3).max(interval * 3);
    let until = tokio::time::Instant::now() + interval + window + Duration::from_secs(1);
    let mut pollers = tokio::task::JoinSet::new();
    for (k, mut stream) in streams.into_iter().enumerate() {
        pollers.spawn(async move {
            // Spread over the interval, as the idle run's clients are.
            tokio::time::sleep(interval.mul_f64(k as f64 / connections as f64)).await;
            let mut answer = vec![0u8; POLL_RESPONSE.len()];
            while tokio::time::Instant::now() < until {
                stream.write_all(POLL_REQUEST).await?;
                stream.read_exact(&mut answer).await?;
                tokio::time::sleep(interval).await;
            }
            Ok::<(), std::io::Error>(())
        });
    }
    tokio::time::sleep(interval + Duration::from_millis(500)).await;
    let (requests, cpu_us_per_request) = bare.window(window).await;
    while let Some(poller) = pollers.join_next().await {
        poller??;
    }
    let pinned_to_cpu0 = bare.stop().await?;
    Ok(ResponderFloor {
        connections,
        interval_ms: interval.as_secs_f64() * 1e3,
        requests,
        cpu_us_per_request,
        pinned_to_cpu0,
    })
}

/// A long poll's request as the bench's clients send it (client id, cursor, wait).
const LONG_POLL_REQUEST: &[u8] = b"GET /v1/clients/PNsrfL5sEzGZzV0T1ZlfmQ/long-poll?cursor=NTY0ODQ2OWQ4NWMwYzI0NHxsb2JieToyfEBzdWIzOjA&wait_ms=25000 HTTP/1.1\r\naccept: */*\r\nhost: 127.0.0.1:40000\r\n\r\n";

/// The answer to a long poll: one event and the cursor after it, about the size of the bench's.
const LONG_POLL_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 313\r\ndate: Sat, 28 Nov 2026 14:00:00 GMT\r\n\r\n{\"events\":[{\"type\":\"event\",\"room\":\"lobby\",\"seq\":2,\"event\":\"bench\",\"from\":\"pub\",\"ts\":1795873517146,\"data\":{\"i\":1,\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"},\"cursor\":\"NTY0ODQ2OWQ4NWMwYzI0NHxsb2JieToyfEBzdWIzOjA\"}],\"cursor\":\"NTY0ODQ2OWQ4NWMwYzI0NHxsb2JieToyfEBzdWIzOjA\"}";

/// The machine's floor for one long-poll batch: a bare responder (one event loop on the
/// server's CPU, one task per keep-alive connection, no HTTP library, no routing, no JSON)
/// holds every connection's request until a tick, `rate` times a second, then answers all of
/// them with a fixed answer of a long poll's size; each client asks again at once. Its CPU per
/// answer is what any server's long poll costs here at least: the kernel's receive, send and
/// readiness work and one wake-up per parked request, in the bursts a room's event makes.
#[derive(Debug, Serialize)]
pub(crate) struct ParkedFloor {
    /// The room size whose long-poll row it stands beside.
    pub(crate) room: usize,
    pub(crate) connections: usize,
    pub(crate) ticks_per_s: f64,
    pub(crate) answers: u64,
    /// CPU time (user + system) of the responder's thread per answer, in microseconds; `None`
    /// where /proc/thread-self/schedstat is missing.
    pub(crate) cpu_us_per_answer: Option<f64>,
    /// Whether the responder ran on CPU 0, where the server runs.
    pub(crate) pinned_to_cpu0: bool,
}

/// Measures the [`ParkedFloor`] beside a long-poll row of `room` subscribers at `rate` events a
/// second, over `seconds` after a first second (with as many connections as the room has, or as
/// this process's descriptors allow with both ends in it).
pub(crate) async fn parked(room: usize, rate: f64, seconds: f64) -> anyhow::Result<ParkedFloor> {
    let connections = room.clamp(1, max_sockets());
    let bare = Bare::start(LONG_POLL_RESPONSE, Some(rate))?;
    let streams = bare.connect(connections).await?;
    let window = Duration::from_secs_f64(seconds.max(1.0));
    let until = tokio::time::Instant::now() + window + Duration::from_secs(2);
    let mut clients = tokio::task::JoinSet::new();
    for mut stream in streams {
        clients.spawn(async move {
            let mut answer = vec![0u8; LONG_POLL_RESPONSE.len()];
            while tokio::time::Instant::now() < until {
                stream.write_all(LONG_POLL_REQUEST).await?;
                stream.read_exact(&mut answer).await?;
            }
            Ok::<(), std::io::Error>(())
        });
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (answers, cpu_us_per_answer) = bare.window(window).await;
    while let Some(client) = clients.join_next().await {
        client??;
    }
    let pinned_to_cpu0 = bare.stop().await?;
    Ok(ParkedFloor { room, connections, ticks_per_s: rate, answers, cpu_us_per_answer, pinned_to_cpu0 })
}

/// A bare responder on its own thread (see [`serve_fixed`]), and what it counts.
struct Bare {
    address: std::net::SocketAddr,
    served: std::sync::Arc<std::sync::atomic::AtomicU64>,
    tid: Option<String>,
    pinned: bool,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<anyhow::Result<()>>,
}

impl Bare {
    /// Starts a responder answering `answer`: at once, or with `ticks` per second, at the next
    /// tick.
    fn start(answer: &'static [u8], ticks: Option<f64>) -> anyhow::Result<Bare> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let address = listener.local_addr()?;
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let served = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let thread = std::thread::spawn({
            let served = served.clone();
            move || serve_fixed(listener, answer, ticks, served, tid_tx, stop_rx)
        });
        let (pinned, tid) = tid_rx.recv()?;
        Ok(Bare { address, served, tid, pinned, stop, thread })
    }

    /// `connections` keep-alive connections to the responder, all open before any sends: the
    /// clients' deadlines are set after (connecting 9 500 takes seconds).
    async fn connect(&self, connections: usize) -> anyhow::Result<Vec<tokio::net::TcpStream>> {
        let mut streams = Vec::with_capacity(connections);
        for _ in 0..connections {
            let stream = tokio::net::TcpStream::connect(self.address).await?;
            stream.set_nodelay(true)?;
            streams.push(stream);
        }
        Ok(streams)
    }

    /// Answers given over the next `window`, and the responder's CPU per answer (µs).
    async fn window(&self, window: Duration) -> (u64, Option<f64>) {
        use std::sync::atomic::Ordering;
        let cpu_ns = || self.tid.as_deref().and_then(task_cpu_ns);
        let (served0, cpu0) = (self.served.load(Ordering::Relaxed), cpu_ns());
        tokio::time::sleep(window).await;
        let (served1, cpu1) = (self.served.load(Ordering::Relaxed), cpu_ns());
        let served = served1 - served0;
        let per = cpu0.zip(cpu1).map(|(a, b)| b.saturating_sub(a) as f64 / 1e3 / served.max(1) as f64);
        (served, per)
    }

    /// Stops the responder; whether it ran on CPU 0.
    async fn stop(self) -> anyhow::Result<bool> {
        let _ = self.stop.send(());
        let thread = self.thread;
        tokio::task::spawn_blocking(move || thread.join())
            .await?
            .map_err(|_| anyhow::anyhow!("a bare responder's thread panicked"))??;
        Ok(self.pinned)
    }
}

/// The responder's thread: pinned to CPU 0, a current-thread runtime answering every request
/// with `answer` (at once, or, with `ticks` per second, at the first tick after the request
/// came), until `stop`. Says first whether it is pinned, and its thread id.
fn serve_fixed(
    listener: std::net::TcpListener,
    answer: &'static [u8],
    ticks: Option<f64>,
    served: std::sync::Arc<std::sync::atomic::AtomicU64>,
    started: std::sync::mpsc::Sender<(bool, Option<String>)>,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> anyhow::Result<()> {
    let pinned = pin_this_thread_to_cpu0();
    let _ = started.send((pinned, this_thread_id()));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    listener.set_nonblocking(true)?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        // Ticks so far: a parked request is answered once it moves past the one it came at.
        let (tick, ticked) = tokio::sync::watch::channel(0u64);
        let ticker = async move {
            let Some(rate) = ticks else { return std::future::pending().await };
            let mut every = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            loop {
                every.tick().await;
                tick.send_modify(|n| *n += 1);
            }
        };
        let accepting = async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let served = served.clone();
                let mut ticked = ticks.map(|_| ticked.clone());
                tokio::spawn(async move {
                    let mut head = [0u8; 512];
                    let mut filled = 0;
                    loop {
                        match stream.read(&mut head[filled..]).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => filled += n,
                        }
                        // One request at a time: a client sends its next only after the answer.
                        if head[..filled].ends_with(b"\r\n\r\n") {
                            filled = 0;
                            if let Some(ticked) = &mut ticked {
                                let came_at = *ticked.borrow_and_update();
                                if ticked.wait_for(|&n| n > came_at).await.is_err() {
                                    break;
                                }
                            }
                            if stream.write_all(answer).await.is_err() {
                                break;
                            }
                            served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        } else if filled == head.len() {
                            break;
                        }
                    }
                });
            }
        };
        tokio::select! {
            () = accepting => {}
            () = ticker => {}
            _ = stop => {}
        }
        Ok(())
    })
}

/// This thread's id, as /proc names it (/proc/thread-self links to /proc/PID/task/TID).
fn this_thread_id() -> Option<String> {
    std::fs::read_link("/proc/thread-self").ok()?.file_name()?.to_str().map(str::to_owned)
}

/// The CPU time in nanoseconds of thread `tid` of this process (/proc/self/task/TID/schedstat).
fn task_cpu_ns(tid: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The long-poll floor's responder holds each request until a tick: over a one-second
    /// window at 20 ticks a second, each connection is answered about 20 times (an answer at
    /// once would be thousands), and every answer is counted.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_long_poll_floor_answers_each_parked_request_once_per_tick() {
        let floor = parked(20, 20.0, 1.0).await.unwrap();
        assert_eq!(floor.connections, 20);
        let per_connection = floor.answers as f64 / 20.0;
        assert!((10.0..=30.0).contains(&per_connection), "{floor:?}");
    }

    /// Both fixed answers announce the length they have.
    #[test]
    fn the_bare_answers_are_framed_by_their_length() {
        for answer in [POLL_RESPONSE, LONG_POLL_RESPONSE] {
            let text = std::str::from_utf8(answer).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            let length = head.lines().find_map(|l| l.strip_prefix("content-length: ")).unwrap();
            assert_eq!(length.parse::<usize>().unwrap(), body.len(), "{head}");
        }
    }
}
