//! The kernel's floor for a delivery on this machine, measured in the same run as the server:
//! one thread on the server's CPU writes ~100-byte messages to 1 000 loopback sockets (read on
//! the load generator's CPU), first one message per `write()`, then ten per `write()`. Its CPU
//! time per message is what any server pays the kernel at least, before its own work; on
//! loopback the sender also pays much of the receiver's TCP processing.
//!
//! A server at one event per write cannot go below the first number; only batching events per
//! write (which the saturation runs show) gets near the second.

use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use serde::Serialize;
use tokio::io::AsyncReadExt as _;

use super::server::{cpu_count, cpu_us_of_stat, which};

/// Sockets written to, as many as a 1 000-subscriber room has.
const SOCKETS: usize = 1000;
/// Bytes per message, about one of the bench's events without its cursor.
const MESSAGE: usize = 100;
/// Writes per socket and mode: 200 000 writes each, enough CPU time for /proc's 10 ms ticks.
const ROUNDS: usize = 200;

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

/// Measures the floor; the readers run on the calling (load generator's) runtime.
pub(crate) async fn measure() -> anyhow::Result<Floor> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    let mut readers = Vec::with_capacity(SOCKETS);
    let mut writers = Vec::with_capacity(SOCKETS);
    for _ in 0..SOCKETS {
        let mut client = tokio::net::TcpStream::connect(address).await?;
        let (server, _) = listener.accept()?;
        server.set_nodelay(true)?;
        writers.push(server);
        readers.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 8 * 1024];
            while matches!(client.read(&mut buf).await, Ok(n) if n > 0) {}
        }));
    }
    let writer = std::thread::spawn(move || write_all_rounds(writers));
    let (pinned, one, ten) = tokio::task::spawn_blocking(move || writer.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the floor's writer thread panicked"))??;
    for reader in readers {
        let _ = tokio::time::timeout(Duration::from_secs(10), reader).await;
    }
    let writes = SOCKETS * ROUNDS;
    Ok(Floor {
        sockets: SOCKETS,
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
fn write_all_rounds(mut sockets: Vec<TcpStream>) -> anyhow::Result<(bool, u64, u64)> {
    let pinned = pin_this_thread_to_cpu0();
    let message = [b'x'; MESSAGE];
    let ten = [b'x'; MESSAGE * 10];
    let start = thread_cpu_us()?;
    for _ in 0..ROUNDS {
        for socket in &mut sockets {
            socket.write_all(&message)?;
        }
    }
    let middle = thread_cpu_us()?;
    for _ in 0..ROUNDS {
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
    // /proc/thread-self links to /proc/<pid>/task/<tid>.
    let Some(tid) = std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_owned))
    else {
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
    std::fs::read_to_string("/proc/thread-self/schedstat").ok()?.split_whitespace().next()?.parse().ok()
}
