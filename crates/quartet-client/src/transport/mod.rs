//! The [`Transport`] trait and its four implementations, one file each, named as on the server.
//!
//! A transport does two things: [`Transport::send`] commands and [`Transport::receive`] frames.
//! The HTTP transports send through `POST …/commands`; the WebSocket sends on its socket. Each
//! keeps the cursor of what it delivered, which is all a new transport needs to take over.

mod long_poll;
mod short_poll;
mod sse;
mod ws;

use std::future::Future;
use std::time::Duration;

use quartet_protocol::api::Replies;
pub use quartet_protocol::{Command, Frame, Reply, Transport as TransportKind};

pub use long_poll::LongPoll;
pub use short_poll::ShortPoll;
pub use sse::Sse;
pub use ws::Ws;

use crate::error::{ClientError, json_or_error};

/// Knobs of the transports.
#[derive(Clone, Debug)]
pub struct Options {
    /// Short poll: time between polls.
    pub poll_interval: Duration,
    /// Long poll: `wait_ms` asked of the server.
    pub long_poll_wait: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options { poll_interval: Duration::from_millis(500), long_poll_wait: Duration::from_secs(25) }
    }
}

/// Sends commands and receives frames; see the module doc.
pub trait Transport: Send {
    /// Which technique this is.
    fn kind(&self) -> TransportKind;

    /// The cursor after the last frame received.
    fn cursor(&self) -> &str;

    /// Sends commands; returns one reply per command, in order.
    fn send(&mut self, commands: &[Command]) -> impl Future<Output = Result<Vec<Reply>, ClientError>> + Send;

    /// Waits for the next batch of frames; never returns an empty one. Safe to cancel (drop the
    /// future at any await, e.g. in a `select!`): nothing is lost, since the cursor moves past
    /// frames only in the poll that returns them.
    fn receive(&mut self) -> impl Future<Output = Result<Vec<Frame>, ClientError>> + Send;
}

/// The address and identity every HTTP transport needs.
#[derive(Clone, Debug)]
pub(crate) struct Endpoint {
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
    pub(crate) client: String,
}

impl Endpoint {
    pub(crate) fn url(&self, route: &str) -> String {
        format!("{}/v1/clients/{}/{route}", self.base, self.client)
    }

    /// `POST …/commands` with an array; returns the replies.
    pub(crate) async fn post_commands(&self, commands: &[Command]) -> Result<Vec<Reply>, ClientError> {
        let response = self.http.post(self.url("commands")).json(commands).send().await?;
        let body: Replies = json_or_error(response).await?;
        if body.replies.len() != commands.len() {
            let (got, sent) = (body.replies.len(), commands.len());
            return Err(ClientError::Protocol(format!("{got} replies to {sent} commands")));
        }
        Ok(body.replies)
    }
}

/// A polling response: `{"events":[...],"cursor":".."}`, read so that an event this client
/// cannot parse is skipped and reported (the body's cursor is after it), never a poll that
/// fails forever from the same cursor.
pub(crate) struct PollBody {
    pub(crate) events: Vec<Frame>,
    pub(crate) cursor: String,
    /// Set when events were skipped: why, as [`ClientError::Unreadable`] says it.
    pub(crate) skipped: Option<ClientError>,
}

impl PollBody {
    pub(crate) async fn read(response: reqwest::Response) -> Result<PollBody, ClientError> {
        #[derive(serde::Deserialize)]
        struct Whole {
            events: Vec<Frame>,
            cursor: String,
        }
        #[derive(serde::Deserialize)]
        struct EachApart<'a> {
            #[serde(borrow)]
            events: Vec<&'a serde_json::value::RawValue>,
            cursor: String,
        }
        let status = response.status();
        let body = response.bytes().await?;
        if !status.is_success() {
            return Err(ClientError::from_body(status.as_u16(), &body));
        }
        if let Ok(Whole { events, cursor }) = serde_json::from_slice(&body) {
            return Ok(PollBody { events, cursor, skipped: None });
        }
        let unreadable =
            |cursor: &str, why: String| ClientError::Unreadable { cursor: cursor.to_owned(), why };
        match serde_json::from_slice::<EachApart<'_>>(&body) {
            // The events one by one: the readable ones are kept.
            Ok(apart) => {
                let mut events = Vec::with_capacity(apart.events.len());
                let mut why = None;
                for event in apart.events {
                    match serde_json::from_str::<Frame>(event.get()) {
                        Ok(frame) => events.push(frame),
                        Err(error) => {
                            why.get_or_insert_with(|| error.to_string());
                        }
                    }
                }
                let skipped = why.map(|why| unreadable(&apart.cursor, why));
                Ok(PollBody { events, cursor: apart.cursor, skipped })
            }
            // Not even the list parses: the whole batch is skipped, by its cursor.
            Err(error) => {
                let text = String::from_utf8_lossy(&body);
                let cursor = crate::error::trailing_cursor(&text)
                    .ok_or_else(|| ClientError::Protocol(format!("unexpected body: {error}")))?;
                Ok(PollBody {
                    events: Vec::new(),
                    cursor: cursor.to_owned(),
                    skipped: Some(unreadable(cursor, error.to_string())),
                })
            }
        }
    }
}

/// Any of the four, chosen at run time.
pub enum AnyTransport {
    /// Short polling.
    ShortPoll(ShortPoll),
    /// Long polling.
    LongPoll(LongPoll),
    /// Server-Sent Events.
    Sse(Sse),
    /// WebSocket (boxed: its socket state is large next to the others).
    Ws(Box<Ws>),
}

impl AnyTransport {
    /// Opens `kind` for `client` from `cursor`.
    pub async fn open(
        kind: TransportKind,
        http: &reqwest::Client,
        base: &str,
        client: &str,
        cursor: &str,
        options: &Options,
    ) -> Result<AnyTransport, ClientError> {
        let endpoint = Endpoint { http: http.clone(), base: base.to_owned(), client: client.to_owned() };
        let cursor = cursor.to_owned();
        Ok(match kind {
            TransportKind::ShortPoll => {
                AnyTransport::ShortPoll(ShortPoll::new(endpoint, cursor, options.poll_interval))
            }
            TransportKind::LongPoll => {
                AnyTransport::LongPoll(LongPoll::new(endpoint, cursor, options.long_poll_wait))
            }
            TransportKind::Sse => AnyTransport::Sse(Sse::open(endpoint, cursor).await?),
            TransportKind::Ws => AnyTransport::Ws(Box::new(Ws::open(endpoint, cursor).await?)),
        })
    }
}

macro_rules! each {
    ($self:ident, $t:ident => $body:expr) => {
        match $self {
            AnyTransport::ShortPoll($t) => $body,
            AnyTransport::LongPoll($t) => $body,
            AnyTransport::Sse($t) => $body,
            AnyTransport::Ws($t) => $body,
        }
    };
}

impl Transport for AnyTransport {
    fn kind(&self) -> TransportKind {
        each!(self, t => t.kind())
    }

    fn cursor(&self) -> &str {
        each!(self, t => t.cursor())
    }

    async fn send(&mut self, commands: &[Command]) -> Result<Vec<Reply>, ClientError> {
        each!(self, t => t.send(commands).await)
    }

    async fn receive(&mut self) -> Result<Vec<Frame>, ClientError> {
        each!(self, t => t.receive().await)
    }
}
