//! Long polling: `GET …/long-poll`, held by the server until there is an event; ask again at
//! once after every answer.

use std::time::Duration;

use serde_json::Value;

use super::{Endpoint, PollBody, Transport, TransportKind};
use crate::error::{ClientError, json_or_error};
use crate::frame::Frame;

/// See the module doc.
pub struct LongPoll {
    endpoint: Endpoint,
    cursor: String,
    wait: Duration,
}

impl LongPoll {
    pub(crate) fn new(endpoint: Endpoint, cursor: String, wait: Duration) -> LongPoll {
        LongPoll { endpoint, cursor, wait }
    }
}

impl Transport for LongPoll {
    fn kind(&self) -> TransportKind {
        TransportKind::LongPoll
    }

    fn cursor(&self) -> &str {
        &self.cursor
    }

    async fn send(&mut self, commands: Vec<Value>) -> Result<Vec<Value>, ClientError> {
        self.endpoint.post_commands(commands).await
    }

    async fn receive(&mut self) -> Result<Vec<Frame>, ClientError> {
        loop {
            // Cursors are base64url: safe in a query string as they are.
            let url = format!(
                "{}?cursor={}&wait_ms={}",
                self.endpoint.url("long-poll"),
                self.cursor,
                self.wait.as_millis()
            );
            let request = self.endpoint.http.get(url);
            let body: PollBody = json_or_error(request.send().await?).await?;
            self.cursor = body.cursor;
            // Let the HTTP client put the connection back in its pool before the next request,
            // so the next poll reuses it instead of opening a second one.
            tokio::task::yield_now().await;
            if !body.events.is_empty() {
                return Ok(body.events);
            }
        }
    }
}
