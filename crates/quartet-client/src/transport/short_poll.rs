//! Short polling: `GET …/poll` every interval until something comes back.

use std::time::Duration;

use serde_json::Value;

use super::{Endpoint, PollBody, Transport, TransportKind};
use crate::error::{ClientError, json_or_error};
use crate::frame::Frame;

/// See the module doc.
pub struct ShortPoll {
    endpoint: Endpoint,
    cursor: String,
    interval: Duration,
    /// Whether the last poll came back empty: then wait an interval before the next.
    idle: bool,
}

impl ShortPoll {
    pub(crate) fn new(endpoint: Endpoint, cursor: String, interval: Duration) -> ShortPoll {
        ShortPoll { endpoint, cursor, interval, idle: false }
    }
}

impl Transport for ShortPoll {
    fn kind(&self) -> TransportKind {
        TransportKind::ShortPoll
    }

    fn cursor(&self) -> &str {
        &self.cursor
    }

    async fn send(&mut self, commands: Vec<Value>) -> Result<Vec<Value>, ClientError> {
        self.endpoint.post_commands(commands).await
    }

    async fn receive(&mut self) -> Result<Vec<Frame>, ClientError> {
        loop {
            if self.idle {
                tokio::time::sleep(self.interval).await;
            }
            // Cursors are base64url: safe in a query string as they are.
            let request =
                self.endpoint.http.get(format!("{}?cursor={}", self.endpoint.url("poll"), self.cursor));
            let body: PollBody = json_or_error(request.send().await?).await?;
            self.cursor = body.cursor;
            self.idle = body.events.is_empty();
            // Let the HTTP client put the connection back in its pool before the next request,
            // so a poll right after a non-empty one reuses it instead of opening a second one
            // (10 000 pollers woken by one message would otherwise open 10 000 more sockets).
            tokio::task::yield_now().await;
            if !body.events.is_empty() {
                return Ok(body.events);
            }
        }
    }
}
