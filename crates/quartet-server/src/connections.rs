//! Accepting and serving connections (HTTP/1.1 itself is spoken in `http1.rs`), with the guards a
//! public server needs.
//!
//! - **Headers in time.** A request must finish its headers within `header_timeout` of the
//!   moment the server starts waiting for it: when the connection opens, and again after each
//!   response. That one clock
//!   closes both a slow loris (one header byte a second, forever) and an idle keep-alive
//!   connection. It does not touch a request already being answered: a long poll waiting for
//!   events, an SSE stream, an upgraded WebSocket.
//! - **A bounded number of connections**, all told and per client address. Past the cap a new
//!   connection is closed at once (counted in `/metrics`): the descriptors left keep the
//!   server's own files and sockets working, and the timeouts above free the slots that silent
//!   connections took.
//!
//! Shutdown: stop accepting, ask every connection to finish its request in flight (streams end
//! on the shutdown signal the handlers watch), then wait for them all.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::serve::Listener;
use tokio::sync::watch;

use crate::meter::{Meter, MeteredListener};

/// How long a request may take to send its headers, counted from the connection's opening or
/// the previous response; also how long an idle keep-alive connection is kept.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(20);

pub use crate::http1::{MAX_HEAD_BYTES, MAX_HEADERS};

/// Connection limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// See [`HEADER_TIMEOUT`].
    pub header_timeout: Duration,
    /// Open connections at most; `None`: no cap (the descriptor limit is the cap).
    pub max_connections: Option<usize>,
    /// Open connections per client address at most; `None`: no cap. Behind a proxy every
    /// client has the proxy's address: cap there instead.
    pub max_connections_per_ip: Option<usize>,
    /// Long polls parked at once at most; `None`: no cap. Past it a long poll is answered
    /// `limit_reached` (503, `retry_after_ms`) at once, so parked requests cannot take every
    /// connection the server may hold from the other transports and `/healthz`.
    pub max_long_polls: Option<usize>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_timeout: HEADER_TIMEOUT,
            max_connections: None,
            max_connections_per_ip: None,
            max_long_polls: None,
        }
    }
}

/// Open connections, in all and per address.
#[derive(Default)]
struct Open {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

/// A connection's place in [`Open`], given back when the connection ends: it is held by the
/// connection itself ([`crate::meter::Metered`]), so an upgraded WebSocket keeps counting.
pub(crate) struct Slot {
    open: Arc<Mutex<Open>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.lock().expect("open connections lock");
        open.total -= 1;
        if let Some(n) = open.by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.by_ip.remove(&self.ip);
            }
        }
    }
}

/// Takes a slot for a connection from `ip`, or says which cap it would pass.
fn take_slot(open: &Arc<Mutex<Open>>, ip: IpAddr, limits: &Limits) -> Option<Slot> {
    let mut state = open.lock().expect("open connections lock");
    if limits.max_connections.is_some_and(|max| state.total >= max) {
        return None;
    }
    let here = state.by_ip.get(&ip).copied().unwrap_or(0);
    if limits.max_connections_per_ip.is_some_and(|max| here >= max) {
        return None;
    }
    state.total += 1;
    *state.by_ip.entry(ip).or_default() += 1;
    Some(Slot { open: open.clone(), ip })
}

/// Completes when the server starts shutting down: the accept loop's wait, and every stream's and
/// long poll's (a connection waiting for a head reads the signal and waits for its change itself,
/// see `http1::Waits`).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // The signal is only ever set to true (`serve_with`), so the first change is the stop; an
    // error means the sender is gone, which also means the server is stopping. (Not `wait_for`,
    // whose future is a third larger, in every parked long poll.)
    if !*shutdown.borrow_and_update() {
        let _ = shutdown.changed().await;
    }
}

/// Serves `app` on `listener` until `shutdown` flips to true, then drains.
pub(crate) async fn serve(
    mut listener: MeteredListener,
    app: crate::http1::Routes,
    limits: Limits,
    meter: Arc<Meter>,
    mut shutdown: watch::Receiver<bool>,
) {
    let open = Arc::new(Mutex::new(Open::default()));
    // Every connection task holds a receiver; when all are gone, the drain is over.
    let (alive_tx, mut alive_rx) = tokio::sync::mpsc::channel::<()>(1);
    loop {
        let (mut io, address) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stopped(&mut shutdown) => break,
        };
        match take_slot(&open, address.ip(), &limits) {
            Some(slot) => io.hold(slot),
            None => {
                meter.refused.fetch_add(1, Ordering::Relaxed);
                io.close_now();
                continue;
            }
        }
        let (app, stop, alive) = (app.clone(), shutdown.clone(), alive_tx.clone());
        tokio::spawn(async move {
            crate::http1::serve(io, app, limits.header_timeout, stop).await;
            drop(alive);
        });
    }
    drop(listener);
    drop(alive_tx);
    let _ = alive_rx.recv().await;
}
