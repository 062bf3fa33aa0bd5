//! Long polling: `GET …/long-poll`, held by the server until there is an event; ask again at
//! once after every answer.

use std::time::Duration;

use super::{Command, Endpoint, PollBody, Reply, Transport, TransportKind};
use crate::Frame;
use crate::error::ClientError;

/// See the module doc.
pub struct LongPoll {
    endpoint: Endpoint,
    cursor: String,
    wait: Duration,
    /// Events skipped as unreadable, reported by the next `receive`.
    unreadable: Option<ClientError>,
}

impl LongPoll {
    pub(crate) fn new(endpoint: Endpoint, cursor: String, wait: Duration) -> LongPoll {
        LongPoll { endpoint, cursor, wait, unreadable: None }
    }
}

impl Transport for LongPoll {
    fn kind(&self) -> TransportKind {
        TransportKind::LongPoll
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
            // Let the HTTP client put the previous poll's connection back in its pool, so this
            // one reuses it. Yielding before the request (never between storing a cursor and
            // returning its events) keeps `receive` safe to cancel.
            tokio::task::yield_now().await;
            // Cursors are base64url: safe in a query string as they are.
            let url = format!(
                "{}?cursor={}&wait_ms={}",
                self.endpoint.url("long-poll"),
                self.cursor,
                self.wait.as_millis()
            );
            let body = PollBody::read(self.endpoint.http.get(url).send().await?).await?;
            // No await from here to the return: the cursor and the events go together.
            self.cursor = body.cursor;
            self.unreadable = body.skipped;
            if !body.events.is_empty() {
                return Ok(body.events);
            }
        }
    }
}
