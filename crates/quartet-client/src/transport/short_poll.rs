//! Short polling: `GET …/poll` every interval until something comes back.

use std::time::Duration;

use super::{Command, Endpoint, PollBody, Reply, Transport, TransportKind};
use crate::Frame;
use crate::error::ClientError;

/// See the module doc.
pub struct ShortPoll {
    endpoint: Endpoint,
    cursor: String,
    interval: Duration,
    /// Whether the last poll came back empty: then wait an interval before the next.
    idle: bool,
    /// Events skipped as unreadable, reported by the next `receive`.
    unreadable: Option<ClientError>,
}

impl ShortPoll {
    pub(crate) fn new(endpoint: Endpoint, cursor: String, interval: Duration) -> ShortPoll {
        ShortPoll { endpoint, cursor, interval, idle: false, unreadable: None }
    }
}

impl Transport for ShortPoll {
    fn kind(&self) -> TransportKind {
        TransportKind::ShortPoll
    }

    fn cursor(&self) -> &str {
        &self.cursor
    }

    async fn send(&mut self, commands: &[Command]) -> Result<Vec<Reply>, ClientError> {
        self.endpoint.post_commands(commands).await
    }

    async fn receive(&mut self) -> Result<Vec<Frame>, ClientError> {
        loop {
            if let Some(skipped) = self.unreadable.take() {
                return Err(skipped);
            }
            if self.idle {
                tokio::time::sleep(self.interval).await;
            }
            // Let the HTTP client put the previous poll's connection back in its pool first, so
            // this poll reuses it instead of opening a second one (10 000 pollers woken by one
            // message would otherwise open 10 000 more sockets). Yielding here, before the
            // request, and never between storing a cursor and returning its events, is what
            // keeps `receive` safe to cancel.
            tokio::task::yield_now().await;
            // Cursors are base64url: safe in a query string as they are.
            let request =
                self.endpoint.http.get(format!("{}?cursor={}", self.endpoint.url("poll"), self.cursor));
            let body = PollBody::read(request.send().await?).await?;
            // No await from here to the return: the cursor and the events go together.
            self.cursor = body.cursor;
            self.idle = body.events.is_empty();
            self.unreadable = body.skipped;
            if !body.events.is_empty() {
                return Ok(body.events);
            }
        }
    }
}
