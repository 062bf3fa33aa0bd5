//! The `socketio` column: subscribers that speak Socket.IO to `/socket.io/`, measured exactly like
//! the native four (same room, same publisher, same counters).
//!
//! Each subscriber does what `socket.io-client` does once upgraded: Engine.IO over a WebSocket
//! (the client starts on polling and upgrades within its first round trips; the bench opens the
//! WebSocket directly, as `transports: ["websocket"]` does), a CONNECT with its name, a `join`
//! emitted with an ack, then events as `42["bench",data,meta,offset]` and a pong for every ping.

use std::fmt;
use std::str::FromStr;

use futures_util::{SinkExt, StreamExt};
use quartet_client::TransportKind;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// What a bench column measures: one of the four native transports, or Socket.IO.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Technique {
    /// `short-poll`, `long-poll`, `sse`, `ws`.
    Native(TransportKind),
    /// `socketio`: Engine.IO over a WebSocket, Socket.IO packets inside.
    SocketIo,
}

impl Technique {
    /// The name in reports, flags and the server's metrics labels.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Technique::Native(kind) => kind.name(),
            Technique::SocketIo => "socketio",
        }
    }
}

impl fmt::Display for Technique {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl FromStr for Technique {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "socketio" => Ok(Technique::SocketIo),
            other => other.parse().map(Technique::Native).map_err(|e| format!("{e}, or socketio")),
        }
    }
}

/// One Socket.IO subscriber.
pub(crate) struct Subscriber {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Subscriber {
    /// Opens the session, connects as `name` and joins `room` (waiting for the ack).
    pub(crate) async fn connect(base: &str, name: &str, room: &str) -> anyhow::Result<Subscriber> {
        let url = format!("{}/socket.io/?EIO=4&transport=websocket", base.replacen("http", "ws", 1));
        let config = WebSocketConfig::default().read_buffer_size(8 * 1024);
        let (socket, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true).await?;
        let mut subscriber = Subscriber { socket };
        let open = subscriber.text().await?;
        anyhow::ensure!(open.starts_with('0'), "expected the Engine.IO handshake, got {open}");
        subscriber.send(format!("40{}", serde_json::json!({ "name": name }))).await?;
        let connected = subscriber.reply("40").await?;
        anyhow::ensure!(connected.contains("\"pid\""), "CONNECT refused: {connected}");
        subscriber.send(format!("420{}", serde_json::json!(["join", { "room": room }]))).await?;
        let joined = subscriber.reply("430").await?;
        anyhow::ensure!(joined.contains("\"joined\""), "join refused: {joined}");
        Ok(subscriber)
    }

    async fn send(&mut self, text: String) -> anyhow::Result<()> {
        Ok(self.socket.send(Message::Text(text.into())).await?)
    }

    /// The next text message, answering pings on the way.
    async fn text(&mut self) -> anyhow::Result<String> {
        loop {
            let message = self.socket.next().await.ok_or_else(|| anyhow::anyhow!("socket closed"))??;
            match message {
                Message::Text(text) if text.as_str() == "2" => self.send("3".into()).await?,
                Message::Text(text) => return Ok(text.to_string()),
                Message::Close(close) => anyhow::bail!("socket closed: {close:?}"),
                _ => {}
            }
        }
    }

    /// The next message starting with `prefix` (events before it are not expected yet).
    async fn reply(&mut self, prefix: &str) -> anyhow::Result<String> {
        loop {
            let text = self.text().await?;
            if text.starts_with(prefix) || text.starts_with("44") {
                return Ok(text);
            }
        }
    }

    /// The next event: its name and data.
    pub(crate) async fn next_event(&mut self) -> anyhow::Result<(String, Value)> {
        loop {
            let text = self.text().await?;
            let Some(array) = text.strip_prefix("42") else { continue };
            let (name, data, _meta, _offset): (String, Value, Value, String) = serde_json::from_str(array)?;
            return Ok((name, data));
        }
    }
}
