//! Commands (client → server) and their replies (server → client).
//!
//! A server parses in two steps on purpose: serde reads a flat [`WireCommand`] (every field
//! optional, so a missing field is *our* clear error, not serde's), then
//! [`WireCommand::validate`] turns it into a typed [`Command`] or an error that still carries the
//! client's `id`. A client builds [`Command`]s with the constructors below and serialises them;
//! the two directions meet in the tests at the bottom.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::{Error, ErrorCode};
use crate::ids::{EventName, RoomName, UserName};
use crate::limits::{
    DEFAULT_KICK_SECONDS, DEFAULT_MUTE_SECONDS, MAX_COMMAND_BYTES, MAX_COMMANDS_PER_REQUEST, MAX_DATA_DEPTH,
    MAX_JOIN_HISTORY, MAX_MESSAGE_ID_LEN, MAX_RESTRICTION_SECONDS,
};

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

/// Event names the server itself emits; clients may not publish them.
pub const RESERVED_EVENTS: &[&str] = &["presence", "moderation"];

/// A validated command, as the core runs it and as a client sends it.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    /// Start reading a room; announces presence `join`.
    Join {
        /// The room to join.
        room: RoomName,
        /// How many of the room's past events to deliver before the live ones (capped at
        /// [`MAX_JOIN_HISTORY`]; 0: none, delivery starts at the join).
        #[serde(skip_serializing_if = "is_zero")]
        history: u64,
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
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// Whether a reader that is far behind may skip it (likes, viewer counts): see
        /// [`Command::droppable`]. Chat and gifts are must-deliver, the default.
        #[serde(skip_serializing_if = "is_false")]
        droppable: bool,
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
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// Application-level heartbeat; answered `pong`.
    Ping,
    /// Moderation (a `host` or `moderator` of the room): `user`'s publishes to `room` are
    /// refused for `seconds`.
    Mute {
        /// The room.
        room: RoomName,
        /// Who is muted.
        user: UserName,
        /// For how long ([`DEFAULT_MUTE_SECONDS`] if not given, at most
        /// [`MAX_RESTRICTION_SECONDS`]).
        seconds: u64,
    },
    /// Moderation: lifts a mute before its time.
    Unmute {
        /// The room.
        room: RoomName,
        /// Who is unmuted.
        user: UserName,
    },
    /// Moderation: `user`'s clients leave `room` now (presence `leave` with reason `kicked`)
    /// and may not join it again for `seconds`.
    Kick {
        /// The room.
        room: RoomName,
        /// Who is kicked.
        user: UserName,
        /// How long before the user may rejoin ([`DEFAULT_KICK_SECONDS`] if not given, at most
        /// [`MAX_RESTRICTION_SECONDS`]).
        seconds: u64,
    },
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Command {
    /// `{"type":"join","room":room}`.
    pub fn join(room: &str) -> Result<Command, Error> {
        Ok(Command::Join { room: RoomName::parse(room)?, history: 0 })
    }

    /// `{"type":"join","room":room,"history":n}`: the last `n` events first (at most
    /// [`MAX_JOIN_HISTORY`]).
    pub fn join_with_history(room: &str, history: u64) -> Result<Command, Error> {
        Ok(Command::Join { room: RoomName::parse(room)?, history: history.min(MAX_JOIN_HISTORY) })
    }

    /// `{"type":"leave","room":room}`.
    pub fn leave(room: &str) -> Result<Command, Error> {
        Ok(Command::Leave { room: RoomName::parse(room)? })
    }

    /// `{"type":"publish",...}` to everyone in `room`; see [`Command::to`] and [`Command::id`].
    pub fn publish(room: &str, event: &str, data: &impl Serialize) -> Result<Command, Error> {
        Ok(Command::Publish {
            room: RoomName::parse(room)?,
            event: parse_event(event)?,
            data: raw(data)?,
            to: Scope::Room,
            id: None,
            droppable: false,
        })
    }

    /// `{"type":"direct",...}` to every client of `user`; see [`Command::id`].
    pub fn direct(user: &str, event: &str, data: &impl Serialize) -> Result<Command, Error> {
        Ok(Command::Direct {
            user: UserName::parse(user)?,
            event: parse_event(event)?,
            data: raw(data)?,
            id: None,
        })
    }

    /// `{"type":"mute","room":room,"user":user,"seconds":seconds}`.
    pub fn mute(room: &str, user: &str, seconds: u64) -> Result<Command, Error> {
        Ok(Command::Mute { room: RoomName::parse(room)?, user: UserName::parse(user)?, seconds })
    }

    /// `{"type":"unmute","room":room,"user":user}`.
    pub fn unmute(room: &str, user: &str) -> Result<Command, Error> {
        Ok(Command::Unmute { room: RoomName::parse(room)?, user: UserName::parse(user)? })
    }

    /// `{"type":"kick","room":room,"user":user,"seconds":seconds}`.
    pub fn kick(room: &str, user: &str, seconds: u64) -> Result<Command, Error> {
        Ok(Command::Kick { room: RoomName::parse(room)?, user: UserName::parse(user)?, seconds })
    }

    /// Sets who receives a publish (other commands have no scope and are returned unchanged).
    pub fn to(mut self, scope: Scope) -> Command {
        if let Command::Publish { to, .. } = &mut self {
            *to = scope;
        }
        self
    }

    /// Marks a publish droppable: a reader more than a batch behind skips it instead of
    /// falling further behind (other commands are returned unchanged).
    pub fn droppable(mut self) -> Command {
        if let Command::Publish { droppable, .. } = &mut self {
            *droppable = true;
        }
        self
    }

    /// Sets the message id of a publish or direct (other commands carry none and are returned
    /// unchanged): a resend with the same id is acknowledged again and delivered once.
    pub fn id(mut self, message_id: impl Into<String>) -> Command {
        if let Command::Publish { id, .. } | Command::Direct { id, .. } = &mut self {
            *id = Some(message_id.into());
        }
        self
    }
}

fn raw(data: &impl Serialize) -> Result<Box<RawValue>, Error> {
    serde_json::value::to_raw_value(data).map_err(|e| Error::bad_request(format!("data is not JSON: {e}")))
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
    history: Option<u64>,
    seconds: Option<u64>,
    droppable: Option<bool>,
}

fn required<'a>(field: &'a Option<String>, name: &str, kind: &str) -> Result<&'a str, Error> {
    field.as_deref().ok_or_else(|| Error::bad_request(format!("`{kind}` needs the field `{name}`")))
}

impl WireCommand {
    /// The client's message id, if any, to echo in an error reply.
    pub fn id(&self) -> Option<String> {
        self.id.clone()
    }

    /// Checks fields and names and builds the typed command.
    pub fn validate(self) -> Result<Command, Error> {
        let kind = self.kind.as_deref().ok_or_else(|| Error::bad_request("a command needs a `type`"))?;
        if let Some(id) = &self.id
            && (id.is_empty() || id.len() > MAX_MESSAGE_ID_LEN)
        {
            return Err(Error::bad_request(format!("`id` must be 1 to {MAX_MESSAGE_ID_LEN} bytes")));
        }
        let data = || match &self.data {
            Some(data) => check_data(data).map(|()| data.clone()),
            None => Ok(RawValue::NULL.to_owned()),
        };
        match kind {
            "join" => Ok(Command::Join {
                room: RoomName::parse(required(&self.room, "room", kind)?)?,
                history: self.history.unwrap_or(0).min(MAX_JOIN_HISTORY),
            }),
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
                        return Err(Error::bad_request(format!(
                            "`to` must be room, others or self, got {other:?}"
                        )));
                    }
                };
                Ok(Command::Publish {
                    room: RoomName::parse(room)?,
                    event: parse_event(required(&self.event, "event", kind)?)?,
                    data: data()?,
                    to,
                    id: self.id.clone(),
                    droppable: self.droppable.unwrap_or(false),
                })
            }
            "direct" => Ok(Command::Direct {
                user: UserName::parse(required(&self.user, "user", kind)?)?,
                event: parse_event(required(&self.event, "event", kind)?)?,
                data: data()?,
                id: self.id.clone(),
            }),
            "ping" => Ok(Command::Ping),
            "mute" | "unmute" | "kick" => {
                let room = RoomName::parse(required(&self.room, "room", kind)?)?;
                let user = UserName::parse(required(&self.user, "user", kind)?)?;
                let default = if kind == "kick" { DEFAULT_KICK_SECONDS } else { DEFAULT_MUTE_SECONDS };
                let seconds = self.seconds.unwrap_or(default);
                if kind != "unmute" && !(1..=MAX_RESTRICTION_SECONDS).contains(&seconds) {
                    return Err(Error::bad_request(format!(
                        "`seconds` must be 1 to {MAX_RESTRICTION_SECONDS} (a week), got {seconds}"
                    )));
                }
                Ok(match kind {
                    "mute" => Command::Mute { room, user, seconds },
                    "unmute" => Command::Unmute { room, user },
                    _ => Command::Kick { room, user, seconds },
                })
            }
            other => Err(Error::bad_request(format!(
                "unknown command type {other:?}: expected join, leave, publish, direct, ping, mute, unmute or kick"
            ))),
        }
    }
}

/// Refuses `data` that is valid JSON but that clients cannot read back: nested deeper than
/// [`MAX_DATA_DEPTH`], or with a number no `f64` holds (`1e999999`). Stored as sent, such data
/// would make every reader of the room fail on the same event, again and again.
fn check_data(data: &RawValue) -> Result<(), Error> {
    let text = data.get();
    let bytes = text.as_bytes();
    let (mut depth, mut i) = (0usize, 0usize);
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                // Skip the string (the text is valid JSON: it ends), escapes included.
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DATA_DEPTH {
                    return Err(Error::bad_request(format!(
                        "`data` nests arrays and objects deeper than {MAX_DATA_DEPTH} levels"
                    )));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i + 1 < bytes.len()
                    && matches!(bytes[i + 1], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    i += 1;
                }
                let number = &text[start..=i];
                // Short plain integers always fit; anything else is checked.
                let plain = number.len() <= 15 && number.bytes().all(|b| b.is_ascii_digit() || b == b'-');
                if !plain && !number.parse::<f64>().is_ok_and(f64::is_finite) {
                    return Err(Error::bad_request(format!(
                        "`data` has a number no JSON parser can hold: {}",
                        &number[..number.len().min(40)]
                    )));
                }
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

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
/// [`MAX_COMMAND_BYTES`] and [`MAX_COMMANDS_PER_REQUEST`]. Either way, one reply per command
/// answers it, in order.
pub fn parse_commands(body: &[u8]) -> Result<Vec<WireCommand>, Error> {
    if body.len() > MAX_COMMAND_BYTES {
        return Err(Error::new(
            ErrorCode::TooLarge,
            format!("a command may be at most {MAX_COMMAND_BYTES} bytes, this one is {}", body.len()),
        ));
    }
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let parse_error = |e: serde_json::Error| Error::bad_request(format!("malformed JSON command: {e}"));
    if first == Some(&b'[') {
        let commands: Vec<WireCommand> = serde_json::from_slice(body).map_err(parse_error)?;
        if commands.len() > MAX_COMMANDS_PER_REQUEST {
            return Err(Error::new(
                ErrorCode::TooLarge,
                format!("at most {MAX_COMMANDS_PER_REQUEST} commands per request, got {}", commands.len()),
            ));
        }
        Ok(commands)
    } else {
        Ok(vec![serde_json::from_slice(body).map_err(parse_error)?])
    }
}

/// The reply to one command: the contract's `joined`, `left`, `ack`, `pong` and `error` frames.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The log it went to (`lobby` or `@bob`).
        room: String,
        /// Its seq in that log.
        seq: u64,
    },
    /// Reply to `ping`.
    Pong,
    /// The command (or the whole request) was refused; nothing happened. This is also the body
    /// of every HTTP error and the last frame a removed client's stream carries.
    Error {
        /// The client's message id, echoed when the command had one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// Machine-readable cause.
        code: ErrorCode,
        /// Human-readable explanation.
        message: String,
        /// With `rate_limited`: milliseconds to wait before the next command goes through.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
}

impl Reply {
    /// The error frame for `error`, echoing `id`.
    pub fn error(id: Option<String>, error: Error) -> Reply {
        Reply::Error { id, code: error.code, message: error.message, retry_after_ms: error.retry_after_ms }
    }

    /// The error frame's JSON, for an error that answers no particular command.
    pub fn error_json(error: Error) -> Vec<u8> {
        serde_json::to_vec(&Reply::error(None, error)).expect("replies serialise")
    }

    /// The error this reply carries, if it is one.
    pub fn as_error(&self) -> Option<Error> {
        match self {
            Reply::Error { code, message, retry_after_ms, .. } => {
                Some(Error { code: *code, message: message.clone(), retry_after_ms: *retry_after_ms })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(json: &str) -> Result<Command, Error> {
        parse_commands(json.as_bytes())?.remove(0).validate()
    }

    /// Data every client can read back is taken; data nested past the limit, or with a number
    /// no f64 holds, is refused `bad_request` (it would break every reader of the room).
    #[test]
    fn data_clients_cannot_read_back_is_refused() {
        let publish =
            |data: &str| one(&format!(r#"{{"type":"publish","room":"r","event":"chat","data":{data}}}"#));
        let direct =
            |data: &str| one(&format!(r#"{{"type":"direct","user":"bob","event":"dm","data":{data}}}"#));
        let nested = |depth: usize| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        for fine in [
            nested(MAX_DATA_DEPTH),
            r#"{"a":[1,2,{"b":-3.5e10}],"s":"[[[[ \" {{{{ 1e999999"}"#.to_owned(),
            "1e308".into(),
            "-12345678901234567890".into(),
            "1e-400".into(),
            r#""\\""#.into(),
        ] {
            assert!(publish(&fine).is_ok(), "{fine}: {:?}", publish(&fine));
            assert!(direct(&fine).is_ok(), "{fine}");
        }
        for bad in [
            nested(MAX_DATA_DEPTH + 1),
            nested(200),
            "1e999999".into(),
            r#"{"n":[-1e400]}"#.into(),
            "9".repeat(400),
        ] {
            for refused in [publish(&bad), direct(&bad)] {
                let error = refused.err().unwrap_or_else(|| panic!("{bad} was taken"));
                assert_eq!(error.code, ErrorCode::BadRequest, "{bad}");
            }
        }
        // What is taken, a client can parse back.
        let Ok(Command::Publish { data, .. }) = publish(&nested(MAX_DATA_DEPTH)) else { panic!() };
        serde_json::from_str::<serde_json::Value>(data.get()).unwrap();
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

    /// Moderation commands: `seconds` has a default per kind and a stated range; room and user
    /// are checked like everywhere else; `moderation` is the server's event name, not a client's.
    #[test]
    fn moderation_commands_parse_with_their_defaults_and_bounds() {
        let parsed = one(r#"{"type":"mute","room":"r","user":"bob"}"#).unwrap();
        assert!(matches!(parsed, Command::Mute { seconds: DEFAULT_MUTE_SECONDS, .. }), "{parsed:?}");
        let parsed = one(r#"{"type":"kick","room":"r","user":"bob"}"#).unwrap();
        assert!(matches!(parsed, Command::Kick { seconds: DEFAULT_KICK_SECONDS, .. }), "{parsed:?}");
        let parsed = one(r#"{"type":"kick","room":"r","user":"bob","seconds":5}"#).unwrap();
        assert!(matches!(parsed, Command::Kick { seconds: 5, .. }), "{parsed:?}");
        assert!(matches!(one(r#"{"type":"unmute","room":"r","user":"bob"}"#), Ok(Command::Unmute { .. })));
        let code = |json: &str| one(json).unwrap_err().code;
        let too_long = MAX_RESTRICTION_SECONDS + 1;
        for bad in [
            r#"{"type":"mute","room":"r","user":"bob","seconds":0}"#.to_owned(),
            format!(r#"{{"type":"kick","room":"r","user":"bob","seconds":{too_long}}}"#),
            r#"{"type":"mute","room":"r","user":"bob","seconds":-1}"#.to_owned(),
            r#"{"type":"mute","room":"r"}"#.to_owned(),
            r#"{"type":"kick","user":"bob"}"#.to_owned(),
            r#"{"type":"kick","room":"r","user":"no one"}"#.to_owned(),
        ] {
            assert_eq!(code(&bad), ErrorCode::BadRequest, "{bad}");
        }
        assert_eq!(code(r#"{"type":"publish","room":"r","event":"moderation"}"#), ErrorCode::Forbidden);
    }

    /// What a client builds is what a server parses back: the two directions agree.
    #[test]
    fn built_commands_parse_back_to_themselves() {
        let commands = [
            Command::join("lobby").unwrap(),
            Command::join_with_history("lobby", 50).unwrap(),
            Command::leave("lobby").unwrap(),
            Command::publish("lobby", "chat", &json!({"text":"hi"})).unwrap().to(Scope::Others).id("m1"),
            Command::publish("lobby", "gift", &json!({"kind":"rose"})).unwrap().to(Scope::SelfOnly),
            Command::publish("lobby", "like", &1).unwrap().droppable(),
            Command::direct("bob", "chat", &"psst").unwrap().id("d1"),
            Command::Ping,
            Command::mute("lobby", "bob", 60).unwrap(),
            Command::unmute("lobby", "bob").unwrap(),
            Command::kick("lobby", "bob", 30).unwrap(),
        ];
        for command in commands {
            let json = serde_json::to_string(&command).unwrap();
            let parsed = one(&json).unwrap_or_else(|e| panic!("{json}: {e}"));
            assert_eq!(serde_json::to_string(&parsed).unwrap(), json);
        }
        let json =
            serde_json::to_value(Command::publish("r", "chat", &1).unwrap().to(Scope::SelfOnly)).unwrap();
        assert_eq!(json, json!({"type":"publish","room":"r","event":"chat","data":1,"to":"self"}));
        assert_eq!(Command::publish("r", "presence", &1).unwrap_err().code, ErrorCode::Forbidden);
        assert_eq!(Command::join("no spaces").unwrap_err().code, ErrorCode::BadRequest);
        let capped = one(r#"{"type":"join","room":"r","history":100000}"#).unwrap();
        assert!(matches!(capped, Command::Join { history: MAX_JOIN_HISTORY, .. }), "{capped:?}");
        assert!(one(r#"{"type":"join","room":"r","history":-1}"#).is_err());
    }

    #[test]
    fn replies_serialise_as_the_contract_says_and_parse_back() {
        let cases = [
            (
                Reply::Ack { id: Some("m1".into()), room: "lobby".into(), seq: 4 },
                r#"{"type":"ack","id":"m1","room":"lobby","seq":4}"#,
            ),
            (
                Reply::error(None, Error::new(ErrorCode::NotJoined, "x")),
                r#"{"type":"error","code":"not_joined","message":"x"}"#,
            ),
            (Reply::Pong, r#"{"type":"pong"}"#),
            (
                Reply::Joined { room: "r".into(), seq: 3, online: 2 },
                r#"{"type":"joined","room":"r","seq":3,"online":2}"#,
            ),
            (Reply::Left { room: "r".into() }, r#"{"type":"left","room":"r"}"#),
        ];
        for (reply, json) in cases {
            assert_eq!(serde_json::to_string(&reply).unwrap(), json);
            assert_eq!(serde_json::from_str::<Reply>(json).unwrap(), reply);
        }
        assert_eq!(
            Reply::error_json(Error::unknown_client()),
            serde_json::to_vec(&Reply::error(None, Error::unknown_client())).unwrap()
        );
    }
}
