//! `quartet serve`: parse the flags, pick the engine, run the server until Ctrl-C or SIGTERM.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use quartet_core::{Config, Engine, Hub, MemoryEngine};
use quartet_server::auth::Auth;
use tokio::net::TcpListener;

/// Flags of `quartet serve`.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "QUARTET_ADDR", default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Where events are kept: `sqlite:PATH` (durable: events, rooms and clients survive a
    /// restart) or `memory` (nothing does).
    #[arg(long, env = "QUARTET_STORE", default_value = "sqlite:quartet.db")]
    store: String,
    /// SQLite and Redis: most events kept per room or inbox; older ones are dropped (readers
    /// get a `retention` gap). 0 keeps any number.
    #[arg(long, env = "QUARTET_RETAIN_EVENTS", default_value_t = quartet_sqlite::DEFAULT_RETAIN_EVENTS)]
    retain_events: u64,
    /// SQLite: events older than this are dropped (`30d`, `12h`, `90m`, `45s`; `0` keeps them
    /// forever). Not applied with `--redis` (its streams are trimmed by count only).
    #[arg(long, env = "QUARTET_RETAIN_FOR", default_value = "30d", value_parser = parse_duration)]
    retain_for: Duration,
    /// SQLite: `full` syncs every commit to disk (an ack survives a power loss); `normal` leaves
    /// it to the OS (an ack survives a crash of quartet, not of the machine), for less latency.
    #[arg(long, env = "QUARTET_SQLITE_SYNC", default_value = "full", value_parser = ["full", "normal"])]
    sqlite_sync: String,
    /// Redis URL: several `quartet serve` processes with the same Redis (and prefix) form one
    /// cluster; Redis is then the store (`--store` is not used).
    #[arg(long, env = "QUARTET_REDIS")]
    redis: Option<String>,
    /// Prefix of every Redis key: nodes with the same URL and prefix are one cluster.
    #[arg(long, env = "QUARTET_REDIS_PREFIX", default_value = "quartet")]
    redis_prefix: String,
    /// How often clients must show life, in ms (announced as `heartbeat_ms`); a client silent
    /// for two of these is removed.
    #[arg(long, env = "QUARTET_HEARTBEAT_MS", default_value_t = quartet_core::limits::DEFAULT_HEARTBEAT.as_millis() as u64)]
    heartbeat_ms: u64,
    /// Commands per second each client may send (bursts of twice that pass).
    #[arg(long, env = "QUARTET_RATE_LIMIT", default_value_t = quartet_core::limits::COMMANDS_PER_SECOND)]
    rate_limit: f64,
    /// Secret for client tokens (HS256; 32 bytes or more, else called weak at start; mint
    /// tokens with `quartet token`).
    /// When set, `POST /v1/clients` needs `Authorization: Bearer <token>`, which names the user
    /// and what it may do. Unset: an open demo server, anyone registers under any name. Prefer
    /// the environment variable: a flag shows in `ps`.
    #[arg(long, env = "QUARTET_AUTH_SECRET", hide_env_values = true)]
    auth_secret: Option<String>,
    /// Time a request has to send its headers, from the connection's opening or the previous
    /// response; also how long an idle keep-alive connection is kept: `20s`, `1m`.
    #[arg(long, env = "QUARTET_HEADER_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    header_timeout: Duration,
    /// Open connections at most [default: the descriptor limit less 256, kept for the store and
    /// the server's own sockets]; past it a new connection is closed at once.
    #[arg(long, env = "QUARTET_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Open connections per client address at most [default: no cap]. Set it when quartet
    /// faces clients directly; behind a proxy every client has the proxy's address: cap there.
    #[arg(long, env = "QUARTET_MAX_CONNECTIONS_PER_IP")]
    max_connections_per_ip: Option<usize>,
    /// Long polls parked at once at most [default: half the connection cap]; past it a long
    /// poll is answered `limit_reached` at once, so parked requests leave connections for SSE,
    /// WebSockets, commands and `/healthz`.
    #[arg(long, env = "QUARTET_MAX_LONG_POLLS")]
    max_long_polls: Option<usize>,
    /// Threads that run connections [default: one per CPU this process may use, as its
    /// affinity mask and cgroup quota allow]. With one, a single-threaded scheduler runs them:
    /// no work stealing and no wake-ups handed between threads, the cheapest on one CPU.
    #[arg(long, env = "QUARTET_WORKERS", value_parser = clap::value_parser!(u16).range(1..))]
    workers: Option<u16>,
}

impl ServeArgs {
    /// The runtime `serve` runs on: `--workers` threads, or one per usable CPU; one thread is a
    /// current-thread runtime (blocking work, as SQLite's writes, still goes to its own pool).
    pub(crate) fn runtime(&self) -> std::io::Result<tokio::runtime::Runtime> {
        let usable = || std::thread::available_parallelism().map_or(1, |n| n.get());
        match self.workers.map_or_else(usable, usize::from) {
            1 => tokio::runtime::Builder::new_current_thread().enable_all().build(),
            n => tokio::runtime::Builder::new_multi_thread().worker_threads(n).enable_all().build(),
        }
    }
}

/// Descriptors kept out of the connection cap: the store's files, Redis, the listener, logs.
const RESERVED_DESCRIPTORS: u64 = 256;

/// The connection limits of `args`, the default cap from this process's descriptor limit.
fn limits(args: &ServeArgs) -> anyhow::Result<quartet_server::connections::Limits> {
    if args.header_timeout < Duration::from_millis(100) {
        bail!("--header-timeout must be at least 100ms");
    }
    let descriptors = rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| soft).unwrap_or(1024);
    let max_connections =
        args.max_connections.unwrap_or(descriptors.saturating_sub(RESERVED_DESCRIPTORS).max(64) as usize);
    Ok(quartet_server::connections::Limits {
        header_timeout: args.header_timeout,
        max_connections: Some(max_connections),
        max_connections_per_ip: args.max_connections_per_ip,
        max_long_polls: Some(args.max_long_polls.unwrap_or(max_connections / 2)),
    })
}

async fn engine(args: &ServeArgs) -> anyhow::Result<Arc<dyn Engine>> {
    if let Some(url) = &args.redis {
        let engine =
            quartet_redis::RedisEngine::connect(url, &args.redis_prefix).await.map_err(anyhow::Error::msg)?;
        return Ok(Arc::new(engine.retain_events((args.retain_events > 0).then_some(args.retain_events))));
    }
    match args.store.as_str() {
        "memory" => Ok(Arc::new(MemoryEngine::new())),
        other if other.starts_with("sqlite:") => {
            let path = Path::new(&other["sqlite:".len()..]);
            anyhow::ensure!(!path.as_os_str().is_empty(), "--store sqlite:PATH needs a file path");
            let options = quartet_sqlite::Options {
                retain_events: (args.retain_events > 0).then_some(args.retain_events),
                retain_for: (!args.retain_for.is_zero()).then_some(args.retain_for),
                sync: if args.sqlite_sync == "normal" {
                    quartet_sqlite::Sync::Normal
                } else {
                    quartet_sqlite::Sync::Full
                },
            };
            let engine = quartet_sqlite::SqliteEngine::open(path, options).map_err(anyhow::Error::msg)?;
            Ok(Arc::new(engine))
        }
        other => bail!("--store {other:?}: expected `memory` or `sqlite:PATH`"),
    }
}

/// `30d`, `12h`, `90m`, `45s` or a number of seconds.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 =
        number.parse().map_err(|_| format!("{text:?}: expected a number and d, h, m or s, like 30d"))?;
    let seconds = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: the unit must be d, h, m or s")),
    };
    Ok(Duration::from_secs(n.saturating_mul(seconds)))
}

pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let auth = args
        .auth_secret
        .as_deref()
        .map(|secret| Auth::new(secret).map_err(|e| anyhow::anyhow!("--auth-secret: {e}")))
        .transpose()?;
    let limits = limits(&args)?;
    let engine = engine(&args).await?;
    let listener =
        TcpListener::bind(args.addr).await.with_context(|| format!("cannot listen on {}", args.addr))?;
    if !args.rate_limit.is_finite() || args.rate_limit <= 0.0 {
        bail!("--rate-limit must be a positive number of commands per second");
    }
    if args.heartbeat_ms < 100 {
        bail!("--heartbeat-ms must be at least 100");
    }
    let config = Config {
        heartbeat: Duration::from_millis(args.heartbeat_ms),
        command_rate: args.rate_limit,
        command_burst: args.rate_limit * 2.0,
        ..Config::default()
    };
    let hub = Hub::new(engine.clone(), config);
    let restored = hub.restore().await.context("cannot read the sessions kept in the store")?;
    let addr = listener.local_addr()?;
    println!("quartet listening on http://{addr}");
    if let Some(url) = &args.redis {
        println!(
            "store: redis {url} prefix {:?} (durable; a cluster with every node of that prefix)",
            args.redis_prefix
        );
    } else if engine.durable() {
        println!("store: {} {} (durable; {restored} client sessions restored)", engine.name(), &args.store);
    } else {
        println!(
            "store: {}: NOTHING IS KEPT — events, rooms and clients are lost when the server stops",
            engine.name()
        );
    }
    if let Some(auth) = &auth {
        println!("auth: tokens required (HS256, --auth-secret); mint one with `quartet token`");
        if auth.is_weak() {
            println!(
                "auth: WEAK SECRET — under {} bytes, tokens may be forged by guessing it (`openssl rand -base64 48` makes a good one)",
                quartet_server::auth::STRONG_SECRET_BYTES
            );
        }
    } else {
        println!(
            "auth: OPEN — anyone may register under any name (a demo); set --auth-secret to require tokens"
        );
    }
    println!(
        "connections: at most {}{}, {} parked long polls; headers within {:?}, idle keep-alive closed after as long",
        limits.max_connections.map_or("unlimited".into(), |n| n.to_string()),
        limits.max_connections_per_ip.map_or(String::new(), |n| format!(", {n} per address")),
        limits.max_long_polls.map_or("unlimited".into(), |n| n.to_string()),
        limits.header_timeout
    );
    let runtime = tokio::runtime::Handle::current();
    if runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread {
        println!("workers: 1 thread (a single-threaded scheduler; --workers N for more)");
    } else {
        println!(
            "workers: {} threads (a work-stealing scheduler; --workers N to change)",
            runtime.metrics().num_workers()
        );
    }
    println!("web demo: http://{addr}/   API: docs/protocol.md   stop: Ctrl-C");
    quartet_server::serve_with(listener, hub, quartet_server::Options { auth, limits }, shutdown_signal())
        .await?;
    // Everything acked is on disk already; this makes the store's file whole by itself.
    match tokio::time::timeout(Duration::from_secs(30), engine.close()).await {
        Ok(Ok(())) if engine.name() == "sqlite" => {
            let _ = writeln!(std::io::stdout(), "store closed: everything is in {}", args.store);
        }
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::warn!(%error, "the store did not close cleanly; it recovers at next start")
        }
        Err(_) => tracing::warn!("the store took over 30 s to close; it recovers at next start"),
    }
    // Stdout may be gone by now (a closed pipe): stopping must not fail on it.
    let _ = writeln!(std::io::stdout(), "quartet stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert_eq!(parse_duration("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("7 weeks").is_err());
        assert!(parse_duration("d").is_err());
    }
}
