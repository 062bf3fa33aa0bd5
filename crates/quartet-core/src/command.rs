//! Commands (client → server) and their replies, as they are on the wire.
//!
//! Parsing is two steps on purpose: serde reads a flat [`WireCommand`] (every field optional, so
//! a missing field is *our* clear error, not serde's), then [`WireCommand::validate`] turns it
//! into a typed [`Command`] or an error reply that still carries the client's `id`.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::{Error, ErrorCode};
use crate::ids::{EventName, RoomName, UserName};
use crate::limits::{MAX_COMMAND_BYTES, MAX_COMMANDS_PER_REQUEST, MAX_MESSAGE_ID_LEN};

/// Who in a room receives a published event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Everyone in the room, the sender included (the default).
    #[default]
    Room,
    /// Everyone in the room but the sending client.
    Others,
    /// Only the sending client (its other tabs are other clients and do not get it).
    #[serde(rename = "self")]
    SelfOnly,
}

/// A command as read off the wire, before validation.
#[derive(Debug, Deserialize)]
pub struct WireCommand {
    #[serde(rename = "type")]
    kind: Option<String>,
    room: Option<String>,
    user: Option<String>,
    event: Option<String>,
    data: Option<Box<RawValue>>,
    to: Option<String>,
    id: Option<String>,
}

/// A validated command.
#[derive(Debug)]
pub enum Command {
    /// Start reading a room; announces presence `join`.
    Join {
        /// The room to join.
        room: RoomName,
    },
    /// Stop reading a room; announces presence `leave`.
    Leave {
        /// The room to leave.
        room: RoomName,
    },
    /// Append an event to a room the client has joined.
    Publish {
        /// Target room.
        room: RoomName,
        /// Application event name.
        event: EventName,
        /// Application payload, kept as the exact JSON the client sent.
        data: Box<RawValue>,
        /// Who receives it.
        to: Scope,
        /// Client message id, for acks and idempotent resends.
        id: Option<String>,
    },
    /// Append an event to a user's inbox.
    Direct {
        /// Recipient.
        user: UserName,
        /// Application event name.
        event: EventName,
        /// Application payload.
        data: Box<RawValue>,
        /// Client message id.
        id: Option<String>,
    },
    /// Application-level heartbeat; answered `pong`.
    Ping,
}

/// The reply to one command. Serialises as the contract's frames (`joined`, `left`, `ack`,
/// `pong`, `error`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply {
    /// Reply to `join`: the room's last seq (the presence `join` event) and the online count.
    Joined {
        /// The room joined.
        room: String,
        /// Seq of this client's presence `join` event (or the room's last seq if already joined).
        seq: u64,
        /// Clients in the room now.
        online: usize,
    },
    /// Reply to `leave`.
    Left {
        /// The room left.
        room: String,
    },
    /// The event is in the log at `seq`: it will be delivered.
    Ack {
        /// The client's message id, echoed.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The log it went to (`lobby` or `@bob`).
        room: String,
        /// Its seq in that log.
        seq: u64,
    },
    /// Reply to `ping`.
    Pong,
    /// The command was refused; nothing happened.
    Error {
        /// The client's message id, echoed when the command had one.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// Machine-readable cause.
        code: ErrorCode,
        /// Human-readable explanation.
        message: String,
    },
}

impl Reply {
    /// An error reply for `error`, echoing `id`.
    pub fn error(id: Option<String>, error: Error) -> Reply {
        Reply::Error { id, code: error.code, message: error.message }
    }
}

fn bad(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::BadRequest, message)
}

fn required<'a>(field: &'a Option<String>, name: &str, kind: &str) -> Result<&'a str, Error> {
    field.as_deref().ok_or_else(|| bad(format!("`{kind}` needs the field `{name}`")))
}

impl WireCommand {
    /// The client's message id, if any, to echo in an error reply.
    pub fn id(&self) -> Option<String> {
        self.id.clone()
    }

    /// Checks fields and names and builds the typed command.
    pub fn validate(self) -> Result<Command, Error> {
        let kind = self.kind.as_deref().ok_or_else(|| bad("a command needs a `type`"))?;
        if let Some(id) = &self.id
            && (id.is_empty() || id.len() > MAX_MESSAGE_ID_LEN)
        {
            return Err(bad(format!("`id` must be 1 to {MAX_MESSAGE_ID_LEN} bytes")));
        }
        let data = || self.data.clone().unwrap_or_else(|| RawValue::NULL.to_owned());
        match kind {
            "join" => Ok(Command::Join { room: RoomName::parse(required(&self.room, "room", kind)?)? }),
            "leave" => Ok(Command::Leave { room: RoomName::parse(required(&self.room, "room", kind)?)? }),
            "publish" => {
                let room = required(&self.room, "room", kind)?;
                if room.starts_with('@') {
                    return Err(Error::new(
                        ErrorCode::Forbidden,
                        "publish goes to rooms; send to a user's inbox with `direct`",
                    ));
                }
                let to = match self.to.as_deref() {
                    None | Some("room") => Scope::Room,
                    Some("others") => Scope::Others,
                    Some("self") => Scope::SelfOnly,
                    Some(other) => {
                        return Err(bad(format!("`to` must be room, others or self, got {other:?}")));
                    }
                };
                Ok(Command::Publish {
                    room: RoomName::parse(room)?,
                    event: parse_event(required(&self.event, "event", kind)?)?,
                    data: data(),
                    to,
                    id: self.id.clone(),
                })
            }
            "direct" => Ok(Command::Direct {
                user: UserName::parse(required(&self.user, "user", kind)?)?,
                event: parse_event(required(&self.event, "event", kind)?)?,
                data: data(),
                id: self.id.clone(),
            }),
            "ping" => Ok(Command::Ping),
            other => Err(bad(format!(
                "unknown command type {other:?}: expected join, leave, publish, direct or ping"
            ))),
        }
    }
}

/// Event names the server itself emits; clients may not forge them.
const RESERVED_EVENTS: &[&str] = &["presence"];

fn parse_event(name: &str) -> Result<EventName, Error> {
    if RESERVED_EVENTS.contains(&name) {
        return Err(Error::new(
            ErrorCode::Forbidden,
            format!("the event name {name:?} is reserved for the server"),
        ));
    }
    EventName::parse(name)
}

/// Parses a body holding one command object or an array of them, enforcing
/// [`MAX_COMMAND_BYTES`] and [`MAX_COMMANDS_PER_REQUEST`]. Returns whether it was an array, so
/// a WebSocket can answer an object with a reply object.
pub fn parse_commands(body: &[u8]) -> Result<(Vec<WireCommand>, bool), Error> {
    if body.len() > MAX_COMMAND_BYTES {
        return Err(Error::new(
            ErrorCode::TooLarge,
            format!("a command may be at most {MAX_COMMAND_BYTES} bytes, this one is {}", body.len()),
        ));
    }
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let is_array = first == Some(&b'[');
    let parse_error = |e: serde_json::Error| bad(format!("malformed JSON command: {e}"));
    let commands = if is_array {
        let commands: Vec<WireCommand> = serde_json::from_slice(body).map_err(parse_error)?;
        if commands.len() > MAX_COMMANDS_PER_REQUEST {
            return Err(Error::new(
                ErrorCode::TooLarge,
                format!("at most {MAX_COMMANDS_PER_REQUEST} commands per request, got {}", commands.len()),
            ));
        }
        commands
    } else {
        vec![serde_json::from_slice(body).map_err(parse_error)?]
    };
    Ok((commands, is_array))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(json: &str) -> Result<Command, Error> {
        let (mut commands, _) = parse_commands(json.as_bytes())?;
        commands.remove(0).validate()
    }

    #[test]
    fn parses_every_command() {
        assert!(matches!(one(r#"{"type":"join","room":"lobby"}"#), Ok(Command::Join { .. })));
        assert!(matches!(one(r#"{"type":"leave","room":"lobby"}"#), Ok(Command::Leave { .. })));
        assert!(matches!(one(r#"{"type":"ping"}"#), Ok(Command::Ping)));
        let publish =
            one(r#"{"type":"publish","room":"r","event":"chat","data":{"t":"hi"},"to":"self","id":"m1"}"#);
        match publish.unwrap() {
            Command::Publish { to, data, id, .. } => {
                assert_eq!(to, Scope::SelfOnly);
                assert_eq!(data.get(), r#"{"t":"hi"}"#);
                assert_eq!(id.as_deref(), Some("m1"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            one(r#"{"type":"direct","user":"bob","event":"chat"}"#),
            Ok(Command::Direct { .. })
        ));
    }

    #[test]
    fn bad_commands_have_codes() {
        let code = |json: &str| one(json).unwrap_err().code;
        assert_eq!(code("{"), ErrorCode::BadRequest);
        assert_eq!(code(r#"{"type":"dance"}"#), ErrorCode::BadRequest);
        assert_eq!(code(r#"{"room":"x"}"#), ErrorCode::BadRequest);
        assert_eq!(code(r#"{"type":"join"}"#), ErrorCode::BadRequest);
        assert_eq!(code(r#"{"type":"publish","room":"r","event":"e","to":"all"}"#), ErrorCode::BadRequest);
        assert_eq!(code(r#"{"type":"publish","room":"r","event":"presence"}"#), ErrorCode::Forbidden);
        assert_eq!(code(r#"{"type":"publish","room":"@bob","event":"e"}"#), ErrorCode::Forbidden);
        let big = format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(MAX_COMMAND_BYTES));
        assert_eq!(code(&big), ErrorCode::TooLarge);
    }

    #[test]
    fn replies_serialise_as_the_contract_says() {
        let ack = Reply::Ack { id: Some("m1".into()), room: "lobby".into(), seq: 4 };
        assert_eq!(
            serde_json::to_string(&ack).unwrap(),
            r#"{"type":"ack","id":"m1","room":"lobby","seq":4}"#
        );
        let err = Reply::error(None, Error::new(ErrorCode::NotJoined, "x"));
        assert_eq!(
            serde_json::to_string(&err).unwrap(),
            r#"{"type":"error","code":"not_joined","message":"x"}"#
        );
        assert_eq!(serde_json::to_string(&Reply::Pong).unwrap(), r#"{"type":"pong"}"#);
    }
}
