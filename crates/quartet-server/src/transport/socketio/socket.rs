//! The Socket.IO layer: what the packets inside Engine.IO `message`s mean to quartet.
//!
//! | Socket.IO | quartet |
//! |---|---|
//! | CONNECT `/` with `auth: {name, token?}` | register a client (the reply's `pid` is its id) |
//! | CONNECT with `auth: {pid, offset}` | open a reader for that client at the cursor `offset`: recovery |
//! | `emit("join" \| "leave" \| "publish" \| "direct", {…}, ack)` | the native command of that type; the ack receives its reply |
//! | an event of a joined room | `emit(event, data, meta, offset)`, `offset` being the cursor after it |
//! | DISCONNECT | `DELETE /v1/clients/{id}` |
//!
//! Binary arguments arrive as attachments; the server puts each in the data as
//! `{"_binary":"<base64>"}` (what native clients see, see docs/protocol.md) and turns it back
//! into an attachment for Socket.IO readers.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use quartet_core::entry::{Entry, OtherForm};
use quartet_core::{EncodedFrame, Reader, Sink, Source};
use quartet_protocol::cursor::Cursor;
use quartet_protocol::limits::MAX_COMMAND_BYTES;
use quartet_protocol::{ClientId, Error, ErrorCode, Reply};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::engine::Malformed;
use super::packet::{Kind, Packet};
use super::session::{Outgoing, Session};
use crate::AppState;
use crate::auth;

/// The event names Socket.IO keeps for itself: a quartet event so named arrives as
/// `quartet:<name>`.
pub(crate) const RESERVED_EVENTS: [&str; 6] =
    ["connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"];

/// The commands a Socket.IO client may emit.
const COMMANDS: [&str; 4] = ["join", "leave", "publish", "direct"];

/// The Socket.IO socket of one Engine.IO session (namespace `/` only).
#[derive(Debug, Default)]
pub(crate) struct Socket {
    /// The quartet client, once connected.
    client: Option<ClientId>,
    /// The Socket.IO socket id of the CONNECT reply.
    id: String,
    /// A binary packet waiting for its attachments.
    partial: Option<Partial>,
}

/// A binary packet and the attachments received so far.
#[derive(Debug)]
struct Partial {
    packet: Packet,
    attachments: Vec<Bytes>,
    /// Attachments received, kept or not.
    received: usize,
    /// Their bytes: past [`MAX_COMMAND_BYTES`] they could never make a command, so they are
    /// counted, not kept, and the event is answered `too_large`.
    bytes: usize,
}

impl Socket {
    /// Whether a CONNECT succeeded (and no DISCONNECT followed).
    pub(crate) fn connected(&self) -> bool {
        self.client.is_some()
    }

    /// Handles a text `message` packet. A packet that breaks the protocol is an error: the
    /// carrier ends the session.
    pub(crate) async fn message(
        &mut self,
        app: &AppState,
        session: &Session,
        text: &str,
    ) -> Result<(), Malformed> {
        if self.partial.is_some() {
            return Err(Malformed("a packet arrived before the attachments of the last one"));
        }
        let packet = Packet::decode(text)?;
        if packet.attachments > 0 {
            self.partial = Some(Partial { packet, attachments: Vec::new(), received: 0, bytes: 0 });
            return Ok(());
        }
        self.handle(app, session, packet, Vec::new()).await
    }

    /// Handles a binary packet: the next attachment of the packet being assembled.
    pub(crate) async fn binary(
        &mut self,
        app: &AppState,
        session: &Session,
        bytes: Bytes,
    ) -> Result<(), Malformed> {
        let Some(partial) = self.partial.as_mut() else {
            return Err(Malformed("binary data with no packet waiting for it"));
        };
        partial.received += 1;
        partial.bytes += bytes.len();
        if partial.bytes <= MAX_COMMAND_BYTES {
            partial.attachments.push(bytes);
        } else {
            partial.attachments.clear(); // let go of what can never be sent
        }
        if partial.received < partial.packet.attachments {
            return Ok(());
        }
        let Partial { packet, attachments, bytes, .. } = self.partial.take().expect("checked above");
        if bytes > MAX_COMMAND_BYTES {
            let error = Error::new(
                ErrorCode::TooLarge,
                format!("attachments of {bytes} bytes: a command may carry at most {MAX_COMMAND_BYTES}"),
            );
            ack(session, packet.id, &Reply::error(None, error));
            return Ok(());
        }
        self.handle(app, session, packet, attachments).await
    }

    async fn handle(
        &mut self,
        app: &AppState,
        session: &Session,
        packet: Packet,
        attachments: Vec<Bytes>,
    ) -> Result<(), Malformed> {
        match packet.kind {
            Kind::Connect => {
                self.connect(app, session, packet).await;
                Ok(())
            }
            Kind::Disconnect => {
                if packet.namespace == "/"
                    && let Some(client) = self.client.take()
                {
                    session.set_reader(None);
                    // Gone already (expired, removed) is the same outcome.
                    let _ = app.hub.remove(&client).await;
                }
                Ok(())
            }
            Kind::Event | Kind::BinaryEvent => self.event(app, session, packet, attachments).await,
            // The server requests no acks, so an ACK answers nothing; ignored.
            Kind::Ack | Kind::BinaryAck => Ok(()),
            Kind::ConnectError => Err(Malformed("CONNECT_ERROR is the server's to send")),
        }
    }

    /// CONNECT: registers a client, or recovers one by `pid` and `offset`, and replies
    /// `40{"sid","pid"}`; or replies CONNECT_ERROR.
    async fn connect(&mut self, app: &AppState, session: &Session, packet: Packet) {
        if packet.namespace != "/" {
            let refusal = Packet {
                kind: Kind::ConnectError,
                attachments: 0,
                namespace: packet.namespace,
                id: None,
                data: Some(raw(&serde_json::json!({ "message": "Invalid namespace" }))),
            };
            session.send(format!("4{}", refusal.encode()));
            return;
        }
        let opened = match self.client.clone() {
            // Connected already: the same answer again, reading on where it was.
            Some(client) => Ok((client, None)),
            None => open_client(app, packet.data.as_deref().map(|d| d.get()))
                .await
                .map(|(client, reader)| (client, Some(reader))),
        };
        match opened {
            Ok((client, reader)) => {
                if self.id.is_empty() {
                    self.id = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 15]>());
                }
                // Both ids are base64url: no escaping needed.
                let reply = format!(r#"40{{"sid":"{}","pid":"{}"}}"#, self.id, client.as_str());
                self.client = Some(client);
                // The reply first: the carrier drains the outbox before it reads events.
                session.send(reply);
                if reader.is_some() {
                    session.set_reader(reader);
                }
            }
            Err(error) => {
                let native =
                    serde_json::to_value(Reply::error(None, error.clone())).expect("replies serialise");
                let refusal = serde_json::json!({ "message": error.message, "data": native });
                session.send(format!("44{refusal}"));
            }
        }
    }

    /// An EVENT: the command it names, its reply in the ack when one was asked for.
    async fn event(
        &mut self,
        app: &AppState,
        session: &Session,
        packet: Packet,
        attachments: Vec<Bytes>,
    ) -> Result<(), Malformed> {
        if packet.namespace != "/" {
            return Ok(()); // no socket there: Socket.IO ignores it
        }
        let data = packet.data.as_deref().map_or("[]", |d| d.get());
        let mut args: Vec<Value> =
            serde_json::from_str(data).map_err(|_| Malformed("data that is not JSON"))?;
        let Some(Value::String(name)) = args.first().cloned() else {
            return Err(Malformed("an EVENT's first element must be its name"));
        };
        let mut arg = args.get_mut(1).map(Value::take);
        if let Some(arg) = arg.as_mut() {
            put_attachments(arg, &attachments)?;
        }
        let reply = match &self.client {
            None => Reply::error(None, Error::new(ErrorCode::BadRequest, "not connected: CONNECT first")),
            Some(client) => command(app, client, &name, arg).await,
        };
        ack(session, packet.id, &reply);
        Ok(())
    }
}

/// Answers the event numbered `id` with `reply`, if it asked for an answer.
fn ack(session: &Session, id: Option<u64>, reply: &Reply) {
    if let Some(id) = id {
        let reply = serde_json::to_string(reply).expect("replies serialise");
        session.send(format!("43{id}[{reply}]"));
    }
}

/// What a CONNECT's `auth` may carry.
#[derive(Debug, Default, Deserialize)]
struct Auth {
    name: Option<String>,
    token: Option<String>,
    pid: Option<String>,
    offset: Option<String>,
}

/// The client a CONNECT stands for, with its reader: the one named by `pid` when it is still
/// there (recovery), else a new one.
async fn open_client(app: &AppState, auth: Option<&str>) -> Result<(ClientId, Reader), Error> {
    let auth: Auth = match auth {
        None => Auth::default(),
        Some(json) => {
            serde_json::from_str(json).map_err(|e| Error::bad_request(format!("malformed auth: {e}")))?
        }
    };
    let (name, grant) = auth::identity(app.auth.as_deref(), auth.name, || {
        auth.token.as_deref().ok_or_else(|| {
            Error::new(ErrorCode::Unauthorized, "this server needs a token: connect with auth: {token}")
        })
    })?;
    if let Some(pid) = auth.pid.as_deref().and_then(|p| ClientId::from_wire(p).ok()) {
        // Without an offset, from where the session started: its floors in every log.
        let cursor = match auth.offset {
            Some(offset) => offset,
            None => Cursor::new(app.hub.engine().epoch(), Default::default()).encode(),
        };
        match app.hub.reader(&pid, Some(&cursor)).await {
            Ok(reader) => return Ok((pid, with_stream_rules(app, reader))),
            Err(error) if error.code == ErrorCode::UnknownClient => {} // gone: a new client
            Err(error) => return Err(error),
        }
    }
    let registration = app.hub.register_as(&name, None, grant).await?;
    let client = ClientId::from_wire(&registration.client)?;
    let reader = app.hub.reader(&client, Some(&registration.cursor)).await?;
    Ok((client, with_stream_rules(app, reader)))
}

fn with_stream_rules(app: &AppState, mut reader: Reader) -> Reader {
    reader.close_when_behind_for(app.hub.config().slow_after);
    reader
}

/// Runs the native command `name` with `arg` as its fields.
async fn command(app: &AppState, client: &ClientId, name: &str, arg: Option<Value>) -> Reply {
    if !COMMANDS.contains(&name) {
        return Reply::error(
            None,
            Error::bad_request(format!("unknown event {name:?}: emit join, leave, publish or direct")),
        );
    }
    let Some(Value::Object(mut fields)) = arg else {
        return Reply::error(
            None,
            Error::bad_request(format!(
                "the argument of {name:?} must be an object, e.g. {{\"room\":\"lobby\"}}"
            )),
        );
    };
    fields.insert("type".into(), Value::String(name.into()));
    let body = serde_json::to_vec(&fields).expect("a map serialises");
    match app.hub.execute(client, &body).await {
        Ok(mut replies) if !replies.is_empty() => replies.swap_remove(0),
        Ok(_) => Reply::error(None, Error::new(ErrorCode::Internal, "no reply")),
        Err(error) => Reply::error(None, error),
    }
}

fn raw(value: &Value) -> Box<serde_json::value::RawValue> {
    serde_json::value::to_raw_value(value).expect("a value serialises")
}

/// Replaces each `{"_placeholder":true,"num":N}` in `value` with `{"_binary":"<base64>"}` of
/// attachment N.
fn put_attachments(value: &mut Value, attachments: &[Bytes]) -> Result<(), Malformed> {
    match value {
        Value::Object(map) if map.get("_placeholder") == Some(&Value::Bool(true)) => {
            let n = map
                .get("num")
                .and_then(Value::as_u64)
                .ok_or(Malformed("a placeholder without its number"))?;
            let bytes =
                attachments.get(n as usize).ok_or(Malformed("a placeholder for a missing attachment"))?;
            *value = Value::Object(Map::from_iter([(
                "_binary".to_owned(),
                Value::String(STANDARD.encode(bytes)),
            )]));
        }
        Value::Object(map) => map.values_mut().try_for_each(|v| put_attachments(v, attachments))?,
        Value::Array(items) => items.iter_mut().try_for_each(|v| put_attachments(v, attachments))?,
        _ => {}
    }
    Ok(())
}

/// The reverse for a reader: each `{"_binary":"<base64>"}` becomes a placeholder and its bytes
/// an attachment.
fn take_attachments(value: &mut Value, attachments: &mut Vec<Bytes>) {
    match value {
        Value::Object(map) if map.len() == 1 => {
            if let Some(bytes) =
                map.get("_binary").and_then(Value::as_str).and_then(|b| STANDARD.decode(b).ok())
            {
                let num = attachments.len();
                attachments.push(Bytes::from(bytes));
                *value = serde_json::json!({ "_placeholder": true, "num": num });
            } else {
                map.values_mut().for_each(|v| take_attachments(v, attachments));
            }
        }
        Value::Object(map) => map.values_mut().for_each(|v| take_attachments(v, attachments)),
        Value::Array(items) => items.iter_mut().for_each(|v| take_attachments(v, attachments)),
        _ => {}
    }
}

/// An event as a Socket.IO EVENT (or BINARY_EVENT) packet: `42["event",data,meta,"` then the
/// reader's cursor, then `"]`.
pub fn encode_event(entry: &Entry) -> OtherForm {
    let draft = &entry.draft;
    let name = draft.event.as_str();
    let name = if RESERVED_EVENTS.contains(&name) { format!("quartet:{name}") } else { name.to_owned() };
    // By hand, to keep the contract's order: room, seq, from, ts.
    let string = |s: &str| serde_json::to_string(s).expect("a string serialises");
    let meta = format!(
        r#"{{"room":{},"seq":{},"from":{},"ts":{}}}"#,
        string(&draft.log.to_string()),
        entry.seq.0,
        string(draft.from.as_str()),
        draft.ts
    );
    let mut attachments = Vec::new();
    let data = draft.data.get();
    let data = if data.contains("\"_binary\"") {
        let mut value: Value = serde_json::from_str(data).expect("stored data is JSON");
        take_attachments(&mut value, &mut attachments);
        value.to_string()
    } else {
        data.to_owned()
    };
    let kind = if attachments.is_empty() { "42".to_owned() } else { format!("45{}-", attachments.len()) };
    let head = format!("{kind}[{},{data},{meta},\"", string(&name)).into_bytes();
    OtherForm { head, tail: b"\"]".to_vec(), attachments }
}

impl Sink for Outgoing {
    fn push(&mut self, frame: EncodedFrame<'_>) {
        self.events += 1;
        match frame.source {
            Source::Event(entry) => {
                let form = entry.socketio_form(encode_event);
                self.text(&[&form.head, frame.cursor.as_bytes(), &form.tail]);
                for attachment in &form.attachments {
                    self.binary(attachment);
                }
            }
            Source::Gap { log, reason, missed } => {
                let data = serde_json::json!({
                    "reason": reason.as_str(),
                    "missed_from": missed.map(|m| m.0.0),
                    "missed_to": missed.map(|m| m.1.0),
                });
                let meta = serde_json::json!({ "room": log.to_string() });
                let head = format!("42[\"gap\",{data},{meta},\"");
                self.text(&[head.as_bytes(), frame.cursor.as_bytes(), b"\"]"]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachments_become_base64_and_come_back() {
        let attachments = [Bytes::from_static(&[1, 2, 3]), Bytes::from_static(&[4, 5, 6])];
        let mut arg = serde_json::json!({
            "room": "lobby",
            "data": {"a": {"_placeholder": true, "num": 1}, "b": [{"_placeholder": true, "num": 0}]}
        });
        put_attachments(&mut arg, &attachments).unwrap();
        assert_eq!(arg["data"]["a"], serde_json::json!({"_binary": "BAUG"}));
        assert_eq!(arg["data"]["b"][0], serde_json::json!({"_binary": "AQID"}));
        let mut back = Vec::new();
        take_attachments(&mut arg, &mut back);
        assert_eq!(back.len(), 2);
        // Numbered in the order met, each pointing at its own bytes.
        let a = arg["data"]["a"]["num"].as_u64().unwrap() as usize;
        let b = arg["data"]["b"][0]["num"].as_u64().unwrap() as usize;
        assert_eq!((&back[a][..], &back[b][..]), (&[4, 5, 6][..], &[1, 2, 3][..]));
        let mut missing = serde_json::json!({"_placeholder": true, "num": 2});
        assert!(put_attachments(&mut missing, &attachments).is_err());
    }
}
