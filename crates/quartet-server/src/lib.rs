//! # quartet-server: the four transports over one core
//!
//! Each transport is one small file under [`transport`]: it parses the request, calls the core
//! ([`quartet_core::Hub`]) and encodes the answer. Everything the four share (errors, cursor
//! parsing, the command route) is written once, beside them.
//!
//! ```text
//!  POST /v1/clients ───────────────► api::register ─┐
//!  POST /v1/clients/{id}/commands ─► api::commands ─┼─► Hub (quartet-core) ─► logs
//!  GET  …/poll       short_poll ─┐                 │
//!  GET  …/long-poll  long_poll  ─┼─► Reader::read_into / next_into ◄───────┘
//!  GET  …/sse        sse        ─┤
//!  GET  …/ws         ws         ─┘   (ws also carries commands the other way)
//! ```
//!
//! [`serve`] is the whole public surface a binary or a test needs: it builds the router, adds
//! the listener, the reaper of silent clients and graceful shutdown. [`transport`] is public for
//! its sinks, which the criterion benches drive without HTTP.

mod api;
pub mod auth;
pub mod connections;
mod error;
mod http1;
mod meter;
mod metrics;
pub mod transport;
mod web;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::routing::{any, delete, get, post};
use quartet_core::Hub;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::catch_panic::CatchPanicLayer;

use crate::auth::Auth;
use crate::meter::{Meter, MeteredListener};
use crate::metrics::TransportStats;

/// Everything a handler needs: one shared [`Served`], so a request's copy (axum's `State`
/// extractor clones it for every request) is one reference count, not one per part.
#[derive(Clone)]
pub(crate) struct AppState(Arc<Served>);

impl std::ops::Deref for AppState {
    type Target = Served;

    fn deref(&self) -> &Served {
        &self.0
    }
}

/// What the routes share: the core, counters, the shutdown signal, limits.
pub(crate) struct Served {
    /// The message core.
    pub(crate) hub: Hub,
    /// Per-transport counters for `/metrics` and the benchmarks.
    pub(crate) stats: Arc<TransportStats>,
    /// Flips to `true` when the server starts shutting down; streams end on it.
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Bytes on the wire, all connections.
    pub(crate) meter: Arc<Meter>,
    /// With `--auth-secret`: registering needs a token signed with it. `None`: open server.
    pub(crate) auth: Option<Arc<Auth>>,
    /// Long polls parked at once at most (see [`connections::Limits::max_long_polls`]).
    pub(crate) max_long_polls: Option<usize>,
    /// Socket.IO's Engine.IO sessions on this node.
    pub(crate) sessions: Arc<transport::socketio::session::Sessions>,
}

/// How a server is run, beyond its core.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Tokens required to register (`--auth-secret`); `None`: anyone may register under any
    /// name (a demo server).
    pub auth: Option<Auth>,
    /// Header timeout and connection caps.
    pub limits: connections::Limits,
}

/// The whole HTTP API as a router.
fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(metrics::render))
        .route("/v1/clients", post(api::register))
        .route("/v1/clients/{client}", delete(api::remove))
        .route("/v1/clients/{client}/commands", post(api::commands))
        .route("/v1/clients/{client}/poll", get(transport::short_poll::poll))
        .route("/v1/clients/{client}/long-poll", get(transport::long_poll::long_poll))
        .route("/v1/clients/{client}/sse", get(transport::sse::sse))
        .route("/v1/clients/{client}/ws", get(transport::ws::ws))
        .route("/v1/rooms/{room}", get(api::room))
        .route("/socket.io", any(transport::socketio::socketio))
        .route("/socket.io/", any(transport::socketio::socketio))
        .fallback(web::asset)
        .layer(axum::middleware::map_response(error::json_error_frames))
        .layer(CatchPanicLayer::custom(error::panic_response))
        .with_state(state)
}

/// Serves `hub` on `listener` until `shutdown` completes, then closes streams and drains; an
/// open server (no tokens: see [`serve_with`]).
pub async fn serve(
    listener: TcpListener,
    hub: Hub,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, hub, Options::default(), shutdown).await
}

/// [`serve`], with `options`.
pub async fn serve_with(
    listener: TcpListener,
    hub: Hub,
    options: Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let meter = Arc::new(Meter::default());
    // A client that takes none of our bytes for as long as a silent client is allowed is gone.
    let patience = hub.config().client_timeout();
    let state = AppState(Arc::new(Served {
        hub: hub.clone(),
        stats: Arc::default(),
        shutdown: stop_rx,
        meter: meter.clone(),
        auth: options.auth.map(Arc::new),
        max_long_polls: options.limits.max_long_polls,
        sessions: Arc::new(transport::socketio::session::Sessions::new(
            transport::socketio::EngineConfig::from_heartbeat(hub.config().heartbeat),
        )),
    }));
    let reaper = tokio::spawn(hub.clone().run_reaper());
    let follower = tokio::spawn(hub.clone().follow());
    let listener = MeteredListener::new(listener, meter.clone(), patience);
    let stopping = stop_tx.subscribe();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: closing streams");
        let _ = stop_tx.send(true);
    });
    let direct = {
        let state = state.clone();
        Arc::new(move |target: &str| transport::direct(&state, target))
    };
    let routes = http1::Routes { router: app(state), direct };
    connections::serve(listener, routes, options.limits, meter, stopping).await;
    reaper.abort();
    follower.abort();
    Ok(())
}
