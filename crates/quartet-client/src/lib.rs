//! # quartet-client: a Rust client with the four transports behind one trait
//!
//! [`Client`] registers with a quartet server, sends commands and receives events over any of
//! the four transports, and can switch transport mid-conversation: it resumes from its cursor,
//! so nothing is lost and nothing repeated. It is what `quartet chat`, the test suites and the
//! benchmarks use.
//!
//! ```
//! use quartet_client::{Client, Command, Frame, Reply, TransportKind};
//! use serde_json::json;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let url = serve_for_the_example().await;
//! let mut alice = Client::connect(&url, "alice", TransportKind::Sse).await?;
//! let joined = alice.command(Command::join("lobby")?).await?;
//! assert!(matches!(joined, Reply::Joined { online: 1, .. }));
//! alice.command(Command::publish("lobby", "chat", &json!({"text": "hi"}))?).await?;
//! for frame in alice.receive_n(2, std::time::Duration::from_secs(5)).await? {
//!     if let Frame::Event(event) = frame {
//!         println!("[{} #{}] {}: {}", event.room, event.seq, event.from, event.data);
//!     }
//! }
//! # Ok(()) }
//! # async fn serve_for_the_example() -> String {
//! #     let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! #     let url = format!("http://{}", listener.local_addr().unwrap());
//! #     let hub = quartet_core::Hub::new(std::sync::Arc::new(quartet_core::MemoryEngine::new()), Default::default());
//! #     tokio::spawn(quartet_server::serve(listener, hub, std::future::pending()));
//! #     url
//! # }
//! ```
//!
//! The wire types ([`Command`], [`Reply`], [`Frame`], [`Event`], [`Gap`], [`ErrorCode`]) are
//! `quartet-protocol`'s, re-exported here.
//!
//! Module map: [`transport`] (the trait and its four implementations), [`error`].

pub mod error;
pub mod transport;

use std::time::Duration;

pub use error::ClientError;
use quartet_protocol::api::NewClient;
pub use quartet_protocol::{Command, ErrorCode, Event, Frame, Gap, GapReason, Registration, Reply, Scope};
pub use transport::{AnyTransport, Options, Transport, TransportKind};

/// `POST /v1/clients`, as `name` or, with a token (a server with `--auth-secret`), as the
/// token's user.
async fn register(
    http: &reqwest::Client,
    base: &str,
    name: Option<&str>,
    cursor: Option<&str>,
    token: Option<&str>,
) -> Result<Registration, ClientError> {
    let body = NewClient { name: name.map(str::to_owned), cursor: cursor.map(str::to_owned) };
    let mut request = http.post(format!("{base}/v1/clients")).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    error::json_or_error(request.send().await?).await
}

/// A registered client on one transport at a time.
pub struct Client {
    http: reqwest::Client,
    base: String,
    registration: Registration,
    options: Options,
    transport: AnyTransport,
    /// The token it registered with, for registering again.
    token: Option<String>,
}

impl Client {
    /// Registers `name` at `base` (`http://host:port`) and opens `kind` from the registration
    /// cursor.
    pub async fn connect(base: &str, name: &str, kind: TransportKind) -> Result<Client, ClientError> {
        Client::connect_with(base, name, kind, Options::default()).await
    }

    /// [`Client::connect`] with explicit [`Options`].
    pub async fn connect_with(
        base: &str,
        name: &str,
        kind: TransportKind,
        options: Options,
    ) -> Result<Client, ClientError> {
        Client::connect_via(reqwest::Client::new(), base, name, kind, options).await
    }

    /// [`Client::connect_with`] over an existing HTTP client, so many clients (a load
    /// generator's thousands) share one connection pool.
    pub async fn connect_via(
        http: reqwest::Client,
        base: &str,
        name: &str,
        kind: TransportKind,
        options: Options,
    ) -> Result<Client, ClientError> {
        Client::connect_from(http, base, name, None, kind, options).await
    }

    /// Registers `name` as a new client that carries on from an earlier client's `cursor` (one
    /// that expired, or whose server restarted): it rejoins the cursor's rooms and receives
    /// exactly what was missed since (or a `gap` for what the server no longer keeps).
    pub async fn connect_from(
        http: reqwest::Client,
        base: &str,
        name: &str,
        cursor: Option<&str>,
        kind: TransportKind,
        options: Options,
    ) -> Result<Client, ClientError> {
        let base = base.trim_end_matches('/').to_owned();
        let registration = register(&http, &base, Some(name), cursor, None).await?;
        Client::resume(http, base, registration.clone(), kind, &registration.cursor, options).await
    }

    /// Registers with `token` on a server started with `--auth-secret` (the token names the
    /// user and what it may do) and opens `kind`.
    pub async fn connect_with_token(
        http: reqwest::Client,
        base: &str,
        token: &str,
        kind: TransportKind,
        options: Options,
    ) -> Result<Client, ClientError> {
        let base = base.trim_end_matches('/').to_owned();
        let registration = register(&http, &base, None, None, Some(token)).await?;
        let mut client =
            Client::resume(http, base, registration.clone(), kind, &registration.cursor, options).await?;
        client.token = Some(token.to_owned());
        Ok(client)
    }

    /// Registers again from this client's cursor, on the same transport: what to do when the
    /// server answers `unknown_client` (the session expired, or the server forgot it). Nothing
    /// is lost: the new client reads on from where this one stopped.
    pub async fn register_again(&mut self) -> Result<(), ClientError> {
        let cursor = self.cursor().to_owned();
        let name = self.token.is_none().then_some(self.registration.name.as_str());
        let registration =
            register(&self.http, &self.base, name, Some(&cursor), self.token.as_deref()).await?;
        let kind = self.kind();
        self.transport = AnyTransport::open(
            kind,
            &self.http,
            &self.base,
            &registration.client,
            &registration.cursor,
            &self.options,
        )
        .await?;
        self.registration = registration;
        Ok(())
    }

    /// Opens `kind` for an existing registration, from `cursor`.
    pub async fn resume(
        http: reqwest::Client,
        base: String,
        registration: Registration,
        kind: TransportKind,
        cursor: &str,
        options: Options,
    ) -> Result<Client, ClientError> {
        let transport =
            AnyTransport::open(kind, &http, &base, &registration.client, cursor, &options).await?;
        Ok(Client { http, base, registration, options, transport, token: None })
    }

    /// The registration (id, name, heartbeat).
    pub fn registration(&self) -> &Registration {
        &self.registration
    }

    /// The client id.
    pub fn id(&self) -> &str {
        &self.registration.client
    }

    /// The transport in use.
    pub fn kind(&self) -> TransportKind {
        self.transport.kind()
    }

    /// The cursor after everything received so far.
    pub fn cursor(&self) -> &str {
        self.transport.cursor()
    }

    /// Sends one command and returns its reply (`ack`, `joined`, `error`, ...). A refusal is a
    /// [`Reply::Error`], not an `Err`: `Err` means the request itself failed.
    pub async fn command(&mut self, command: Command) -> Result<Reply, ClientError> {
        let mut replies = self.transport.send(std::slice::from_ref(&command)).await?;
        replies.pop().ok_or_else(|| ClientError::Protocol("no reply to a command".into()))
    }

    /// Sends several commands at once and returns their replies in order.
    pub async fn commands(&mut self, commands: &[Command]) -> Result<Vec<Reply>, ClientError> {
        self.transport.send(commands).await
    }

    /// Waits for the next frames (events and gaps); never returns an empty batch. Safe to
    /// cancel (see [`Transport::receive`]). A stream the server closed `slow` (it stayed behind
    /// its events) is opened again from the cursor, on the same transport: nothing is lost.
    pub async fn receive(&mut self) -> Result<Vec<Frame>, ClientError> {
        loop {
            match self.transport.receive().await {
                Err(ClientError::Server { code: ErrorCode::Slow, .. }) => self.switch(self.kind()).await?,
                received => return received,
            }
        }
    }

    /// Receives until `wanted` frames have arrived or `within` passes; returns what came.
    pub async fn receive_n(&mut self, wanted: usize, within: Duration) -> Result<Vec<Frame>, ClientError> {
        let mut frames = Vec::new();
        let deadline = tokio::time::Instant::now() + within;
        while frames.len() < wanted {
            match tokio::time::timeout_at(deadline, self.receive()).await {
                Ok(batch) => frames.extend(batch?),
                Err(_) => break,
            }
        }
        Ok(frames)
    }

    /// Closes the current transport and continues on `kind` from the cursor.
    pub async fn switch(&mut self, kind: TransportKind) -> Result<(), ClientError> {
        let cursor = self.cursor().to_owned();
        let transport = AnyTransport::open(
            kind,
            &self.http,
            &self.base,
            &self.registration.client,
            &cursor,
            &self.options,
        )
        .await?;
        self.transport = transport;
        Ok(())
    }

    /// Drops the connection but keeps the registration and cursor (for resume tests and
    /// reconnect logic): returns what [`Client::resume`] needs.
    pub fn disconnect(self) -> (reqwest::Client, String, Registration, String) {
        let cursor = self.cursor().to_owned();
        (self.http, self.base, self.registration, cursor)
    }

    /// Leaves everything now (`DELETE /v1/clients/{id}`).
    pub async fn close(self) -> Result<(), ClientError> {
        let url = format!("{}/v1/clients/{}", self.base, self.registration.client);
        let response = self.http.delete(url).send().await?;
        error::ok_or_error(response).await
    }
}
