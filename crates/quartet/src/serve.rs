//! `quartet serve`: parse the flags, pick the engine, run the server until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail};
use quartet_core::{Config, Engine, Hub, MemoryEngine};
use tokio::net::TcpListener;

/// Flags of `quartet serve`.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "QUARTET_ADDR", default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Where events are kept: `memory` (nothing survives a restart) or `sqlite:PATH`.
    #[arg(long, env = "QUARTET_STORE", default_value = "memory")]
    store: String,
    /// Redis URL: several `quartet serve` processes with the same Redis form one cluster.
    #[arg(long, env = "QUARTET_REDIS")]
    redis: Option<String>,
    /// Commands per second each client may send (bursts of twice that pass).
    #[arg(long, env = "QUARTET_RATE_LIMIT", default_value_t = quartet_core::limits::COMMANDS_PER_SECOND)]
    rate_limit: f64,
    /// Secret for client tokens; when set, `POST /v1/clients` needs `Authorization: Bearer T`.
    #[arg(long, env = "QUARTET_AUTH_SECRET", hide_env_values = true)]
    auth_secret: Option<String>,
}

fn engine(args: &ServeArgs) -> anyhow::Result<Arc<dyn Engine>> {
    if args.redis.is_some() {
        bail!("--redis: the Redis cluster engine is not built yet; run one node with --store memory");
    }
    if args.auth_secret.is_some() {
        bail!(
            "--auth-secret: client authentication is not built yet; refusing to run open while asked for auth"
        );
    }
    match args.store.as_str() {
        "memory" => Ok(Arc::new(MemoryEngine::new())),
        other if other.starts_with("sqlite:") => {
            bail!("--store {other}: the SQLite store is not built yet; use --store memory")
        }
        other => bail!("--store {other:?}: expected `memory` or `sqlite:PATH`"),
    }
}

pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let engine = engine(&args)?;
    let listener =
        TcpListener::bind(args.addr).await.with_context(|| format!("cannot listen on {}", args.addr))?;
    if !args.rate_limit.is_finite() || args.rate_limit <= 0.0 {
        bail!("--rate-limit must be a positive number of commands per second");
    }
    let config =
        Config { command_rate: args.rate_limit, command_burst: args.rate_limit * 2.0, ..Config::default() };
    let hub = Hub::new(engine.clone(), config);
    let addr = listener.local_addr()?;
    println!("quartet listening on http://{addr}");
    if engine.durable() {
        println!("store: {} (durable)", engine.name());
    } else {
        println!(
            "store: {}: NOTHING IS KEPT — events, rooms and clients are lost when the server stops",
            engine.name()
        );
    }
    println!("web demo: http://{addr}/   API: docs/protocol.md   stop: Ctrl-C");
    quartet_server::serve(listener, hub, shutdown_signal()).await?;
    println!("quartet stopped");
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
