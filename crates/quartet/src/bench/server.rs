//! The server under test: a `quartet serve` child process started by the bench itself, pinned
//! to CPU 0 when the machine has two or more, so its CPU time and memory can be read from /proc.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

/// The executable whose `serve` is measured, when not this one (`quartet bench --server-exe`).
pub(crate) static SERVER_EXE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// A running server; killed when dropped.
pub(crate) struct ServerUnderTest {
    child: Child,
    pub(crate) url: String,
}

impl ServerUnderTest {
    /// Starts `quartet serve` (this same executable, or `--server-exe`) on a free loopback port,
    /// keeping nothing (`--store memory`).
    pub(crate) fn start() -> anyhow::Result<ServerUnderTest> {
        ServerUnderTest::start_with(&["--store".into(), "memory".into()])
    }

    /// [`ServerUnderTest::start`] with other store flags (`--store sqlite:PATH`, `--redis URL
    /// --redis-prefix P`).
    pub(crate) fn start_with(store: &[String]) -> anyhow::Result<ServerUnderTest> {
        let exe = match SERVER_EXE.get() {
            Some(exe) => exe.clone(),
            None => std::env::current_exe().context("cannot find the quartet executable")?,
        };
        let mut command = if server_pinned() {
            let mut c = Command::new("taskset");
            c.args(["-c", "0"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        command
            // The publisher sends hundreds of commands per second: lift the per-client limit.
            .args(["serve", "--addr", "127.0.0.1:0", "--rate-limit", "1000000"])
            // 10 000 parked long polls: the default cap (half the descriptor limit) is below
            // that where descriptors are capped at 20 000, as on the bench's machine.
            .args(["--max-long-polls", "100000"])
            .args(store)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command.spawn().context("cannot start the server")?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(url) = line.strip_prefix("quartet listening on ") {
                        break url.trim().to_owned();
                    }
                }
                _ => bail!("the server exited before listening"),
            }
        };
        // Keep draining its output so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.by_ref() {});
        Ok(ServerUnderTest { child, url })
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's CPU time (user + system) so far, in microseconds.
    pub(crate) fn cpu_us(&self) -> Option<u64> {
        process_cpu_us(self.child.id())
    }

    /// The server's CPU time so far, user and system apart (see [`CpuSplit`]).
    pub(crate) fn cpu_split_us(&self) -> Option<CpuSplit> {
        process_cpu_split_us(self.child.id())
    }

    /// The server's CPU time so far by thread name (see [`thread_cpu_us`]).
    pub(crate) fn thread_cpu_us(&self) -> BTreeMap<String, u64> {
        thread_cpu_us(self.child.id())
    }

    /// The server's resident memory, in bytes.
    pub(crate) fn rss_bytes(&self) -> Option<u64> {
        process_rss_bytes(self.child.id())
    }
}

impl Drop for ServerUnderTest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident memory of process `pid`, in bytes, from /proc (Linux).
pub(crate) fn process_rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 =
        status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// CPU time of process `pid` (user + system), in microseconds, from /proc (Linux).
pub(crate) fn process_cpu_us(pid: u32) -> Option<u64> {
    process_cpu_split_us(pid).map(CpuSplit::total)
}

/// The same, user and system apart (see [`CpuSplit`]).
pub(crate) fn process_cpu_split_us(pid: u32) -> Option<CpuSplit> {
    cpu_split_us_of_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// CPU time (user + system, µs) of each thread of process `pid`, summed by thread name with
/// any trailing digits dropped (`tokio-rt-worker`, `sqlite-writer`, ...), from /proc (Linux).
/// Threads that ended are not counted: take it twice around a run and subtract.
pub(crate) fn thread_cpu_us(pid: u32) -> BTreeMap<String, u64> {
    let mut by_name = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return by_name };
    for task in tasks.flatten() {
        let path = task.path();
        let (Ok(stat), Ok(name)) =
            (std::fs::read_to_string(path.join("stat")), std::fs::read_to_string(path.join("comm")))
        else {
            continue;
        };
        let Some(us) = cpu_us_of_stat(&stat) else { continue };
        let name = name.trim().trim_end_matches(|c: char| c.is_ascii_digit() || c == '-').to_owned();
        *by_name.entry(name).or_default() += us;
    }
    by_name
}

/// User + system CPU time in a `/proc/.../stat` line, in microseconds (100 ticks a second).
pub(crate) fn cpu_us_of_stat(stat: &str) -> Option<u64> {
    cpu_split_us_of_stat(stat).map(CpuSplit::total)
}

/// CPU time in microseconds, in the process's own code (user mode) and in the kernel's
/// (system calls, and the interrupts and network processing they run on its CPU).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CpuSplit {
    pub(crate) user: u64,
    pub(crate) system: u64,
}

impl CpuSplit {
    /// User + system.
    pub(crate) fn total(self) -> u64 {
        self.user + self.system
    }
}

/// [`CpuSplit`] of a `/proc/.../stat` line (fields 14 and 15, 100 ticks a second).
pub(crate) fn cpu_split_us_of_stat(stat: &str) -> Option<CpuSplit> {
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some(CpuSplit { user: ticks(11)? * 10_000, system: ticks(12)? * 10_000 })
}

/// Whether servers are started pinned to CPU 0.
pub(crate) fn server_pinned() -> bool {
    cpu_count() >= 2 && which("taskset")
}

/// CPUs of the machine, read once before this process pins itself (after pinning, the
/// standard library would report only the one CPU it may use).
pub(crate) fn cpu_count() -> usize {
    static CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

pub(crate) fn which(program: &str) -> bool {
    Command::new(program).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// Pins this process (all its threads, present and future) to every CPU but the server's
/// CPU 0: the load generator's CPUs. Returns whether it could.
pub(crate) fn pin_self_off_cpu0() -> bool {
    if cpu_count() < 2 || !which("taskset") {
        return false;
    }
    let pid = std::process::id().to_string();
    let cpus = format!("1-{}", cpu_count() - 1);
    Command::new("taskset")
        .args(["-a", "-p", "-c", &cpus, &pid])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The CPUs the load generator has: every one but the server's when pinned, else all.
pub(crate) fn loadgen_cpus() -> usize {
    if server_pinned() { cpu_count() - 1 } else { cpu_count() }.max(1)
}

/// The load generator's runtime threads (set once, at start).
pub(crate) static LOADGEN_THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

/// What the load generator can use at most, in CPU-µs per second: its threads, on as many CPUs.
pub(crate) fn loadgen_capacity() -> f64 {
    LOADGEN_THREADS.get().copied().unwrap_or(1).min(loadgen_cpus()) as f64
}

/// Scrapes `/metrics` into `name{labels}` → value, on a connection of its own (never one of
/// the subscribers' pooled ones), retrying once.
pub(crate) async fn scrape(url: &str) -> anyhow::Result<HashMap<String, f64>> {
    let mut attempt = 0;
    let text = loop {
        let http = reqwest::Client::builder().pool_max_idle_per_host(0).build()?;
        match http.get(format!("{url}/metrics")).timeout(Duration::from_secs(10)).send().await {
            Ok(response) => break response.text().await?,
            Err(error) if attempt == 0 => {
                attempt += 1;
                eprintln!("scraping /metrics failed ({error:?}); retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => {
                return Err(anyhow::Error::new(error).context("cannot scrape the server's /metrics"));
            }
        }
    };
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter_map(|(k, v)| Some((k.to_owned(), v.parse().ok()?)))
        .collect())
}

/// A busy loop that ends once its parent (the bench) is gone.
const SPIN: &str = "while kill -0 $PPID 2>/dev/null; do :; done";

/// Busy loops at the lowest priority, one pinned to each CPU, for as long as it lives: they
/// keep the CPUs from halting between messages (waking a halted virtual CPU costs tens of
/// microseconds) and yield at once to any real work. Separate processes, so neither the
/// server's nor the load generator's CPU time counts them.
pub(crate) struct Spinners(Vec<std::process::Child>);

impl Spinners {
    /// One per CPU; `None` when `taskset` or `nice` is missing.
    pub(crate) fn start() -> Option<Spinners> {
        if !which("taskset") || !which("nice") {
            return None;
        }
        let mut children = Vec::new();
        for cpu in 0..cpu_count() {
            let child = Command::new("taskset")
                // `taskset` and `nice` exec the shell, so its parent is this process: the loop
                // ends by itself if the bench is killed before it can stop it.
                .args(["-c", &cpu.to_string(), "nice", "-n", "19", "sh", "-c", SPIN])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .ok()?;
            children.push(child);
        }
        Some(Spinners(children))
    }
}

impl Drop for Spinners {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_splits_into_user_and_system_time() {
        // pid (comm with ") " in it) state ppid ... utime=7 stime=3 (fields 14 and 15)
        let stat = "42 (a) b) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 2 0 100 0 0";
        assert_eq!(cpu_split_us_of_stat(stat), Some(CpuSplit { user: 70_000, system: 30_000 }));
        assert_eq!(cpu_us_of_stat(stat), Some(100_000));
        assert_eq!(cpu_split_us_of_stat("42 (a) S 1"), None);
    }
}
