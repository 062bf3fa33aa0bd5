//! What an acked append costs the SQLite engine alone, without the network: 100 appenders in
//! rooms of their own, each appending its next event when the last is committed, on one
//! current-thread runtime. Prints appends per second, the process's CPU time per append (the
//! figure to compare between two builds: less sensitive to a busy machine than the rate) and
//! the mean commit group.
//!
//! ```text
//! taskset -c 0 cargo run --release -p quartet-sqlite --example append_cost -- [seconds]
//! ```
//! (`taskset -c 0`: the writer thread shares one core with the appenders, as in `quartet bench`.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use quartet_core::Engine;
use quartet_core::entry::Draft;
use quartet_protocol::{ClientId, EventName, LogId, RoomName, Scope, UserName};
use quartet_sqlite::{Options, SqliteEngine};
use serde_json::value::RawValue;

const APPENDERS: u8 = 100;

/// This process's CPU time so far (user + system), in seconds, from `/proc/self/stat`.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0) // USER_HZ, 100 on Linux
}

fn main() {
    let seconds: f64 = std::env::args().nth(1).map_or(5.0, |s| s.parse().expect("seconds: a number"));
    let dir = std::env::temp_dir().join(format!("quartet-append-cost-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let engine = Arc::new(SqliteEngine::open(&dir.join("cost.db"), Options::default()).expect("open"));
    runtime.block_on(async {
        let until = Instant::now() + Duration::from_secs_f64(seconds);
        let (cpu0, started) = (cpu_seconds(), Instant::now());
        let appenders: Vec<_> = (0..APPENDERS)
            .map(|p| {
                let engine = engine.clone();
                tokio::spawn(async move {
                    let log = LogId::Room(RoomName::parse(&format!("room-{p}")).expect("room"));
                    let mut appended = 0u64;
                    while Instant::now() < until {
                        let data = RawValue::from_string(format!("{{\"i\":{appended}}}")).expect("json");
                        let mut draft = Draft::now(
                            log.clone(),
                            EventName::parse("bench").expect("event"),
                            UserName::parse(&format!("pub{p}")).expect("user"),
                            ClientId::from_random([p; 16]),
                            Scope::Room,
                            data,
                        );
                        draft.id = Some(format!("m{appended}"));
                        engine.append(&draft).await.expect("append");
                        appended += 1;
                    }
                    appended
                })
            })
            .collect();
        let mut appended = 0;
        for appender in appenders {
            appended += appender.await.expect("appender");
        }
        let elapsed = started.elapsed().as_secs_f64();
        let cpu = cpu0.zip(cpu_seconds()).map(|(a, b)| format!("{:.2}", (b - a) * 1e6 / appended as f64));
        let (commits, writes) = engine.commit_stats();
        println!(
            "{appended} appends in {elapsed:.2} s: {:.0}/s, CPU {} µs per append, {:.1} writes per commit",
            appended as f64 / elapsed,
            cpu.unwrap_or_else(|| "?".into()),
            writes as f64 / commits.max(1) as f64
        );
    });
    drop(engine);
    std::thread::sleep(Duration::from_millis(300)); // the writer's last index step
    let _ = std::fs::remove_dir_all(&dir);
}
