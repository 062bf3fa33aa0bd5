//! Socket.IO v5 packets, carried in Engine.IO `message` packets:
//! `<type>[<attachments>-][<namespace>,][<ack id>][<JSON>]`.
//!
//! | type | name | data |
//! |---|---|---|
//! | 0 | CONNECT | the client's `auth` object; the server's reply `{"sid":…,"pid":…}` |
//! | 1 | DISCONNECT | none |
//! | 2 | EVENT | `["name", args…]` |
//! | 3 | ACK | `[args…]`, with the id of the event it answers |
//! | 4 | CONNECT_ERROR | `{"message":…,"data"?:…}` |
//! | 5 | BINARY_EVENT | an EVENT whose binary arguments are `{"_placeholder":true,"num":N}`, the bytes following as `<attachments>` binary packets |
//! | 6 | BINARY_ACK | the same for an ACK |
//!
//! The namespace is omitted for `/`. (The wire rules follow the socket.io-protocol repository's
//! description, version 5.)

use serde_json::value::RawValue;

use super::engine::Malformed;

/// Most attachments one packet may announce: each is a frame the server must wait for and hold.
pub const MAX_ATTACHMENTS: usize = 10;

/// Longest namespace accepted, in bytes.
pub const MAX_NAMESPACE_LEN: usize = 128;

/// A packet's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `0`.
    Connect,
    /// `1`.
    Disconnect,
    /// `2`.
    Event,
    /// `3`.
    Ack,
    /// `4`.
    ConnectError,
    /// `5`.
    BinaryEvent,
    /// `6`.
    BinaryAck,
}

impl Kind {
    fn digit(self) -> char {
        match self {
            Kind::Connect => '0',
            Kind::Disconnect => '1',
            Kind::Event => '2',
            Kind::Ack => '3',
            Kind::ConnectError => '4',
            Kind::BinaryEvent => '5',
            Kind::BinaryAck => '6',
        }
    }

    fn binary(self) -> bool {
        matches!(self, Kind::BinaryEvent | Kind::BinaryAck)
    }
}

/// One Socket.IO packet.
#[derive(Debug)]
pub struct Packet {
    /// Its type.
    pub kind: Kind,
    /// Binary attachments that follow (binary types only).
    pub attachments: usize,
    /// Its namespace (`/` when the wire omits it).
    pub namespace: String,
    /// The ack id: on an EVENT, "answer me with this id"; on an ACK, the id answered.
    pub id: Option<u64>,
    /// The JSON data, as sent.
    pub data: Option<Box<RawValue>>,
}

impl PartialEq for Packet {
    fn eq(&self, other: &Packet) -> bool {
        (self.kind, self.attachments, &self.namespace, self.id)
            == (other.kind, other.attachments, &other.namespace, other.id)
            && self.data.as_ref().map(|d| d.get()) == other.data.as_ref().map(|d| d.get())
    }
}

impl Packet {
    /// Reads the text of an Engine.IO `message` packet.
    pub fn decode(text: &str) -> Result<Packet, Malformed> {
        let bytes = text.as_bytes();
        let kind = match bytes.first() {
            Some(b'0') => Kind::Connect,
            Some(b'1') => Kind::Disconnect,
            Some(b'2') => Kind::Event,
            Some(b'3') => Kind::Ack,
            Some(b'4') => Kind::ConnectError,
            Some(b'5') => Kind::BinaryEvent,
            Some(b'6') => Kind::BinaryAck,
            _ => return Err(Malformed("an unknown Socket.IO packet type")),
        };
        let mut at = 1;
        let digits = |from: usize| bytes[from..].iter().take_while(|b| b.is_ascii_digit()).count();
        let mut attachments = 0;
        if kind.binary() {
            let n = digits(at);
            if n == 0 || bytes.get(at + n) != Some(&b'-') {
                return Err(Malformed("a binary packet without its attachment count"));
            }
            attachments = text[at..at + n].parse().map_err(|_| Malformed("an attachment count too large"))?;
            if attachments > MAX_ATTACHMENTS {
                return Err(Malformed("too many attachments"));
            }
            at += n + 1;
        }
        let mut namespace = "/".to_owned();
        if bytes.get(at) == Some(&b'/') {
            let end = text[at..].find(',').map_or(text.len(), |i| at + i);
            if end - at > MAX_NAMESPACE_LEN {
                return Err(Malformed("a namespace too long"));
            }
            namespace = text[at..end].to_owned();
            at = (end + 1).min(text.len());
        }
        let mut id = None;
        let n = digits(at);
        if n > 0 {
            id = Some(text[at..at + n].parse().map_err(|_| Malformed("an ack id too large"))?);
            at += n;
        }
        let rest = &text[at..];
        let data = if rest.is_empty() {
            None
        } else {
            Some(
                serde_json::from_str::<Box<RawValue>>(rest)
                    .map_err(|_| Malformed("data that is not JSON"))?,
            )
        };
        let packet = Packet { kind, attachments, namespace, id, data };
        packet.check()?;
        Ok(packet)
    }

    /// What each type requires of its data.
    fn check(&self) -> Result<(), Malformed> {
        let first = self.data.as_ref().map(|d| d.get().as_bytes()[0]);
        match self.kind {
            Kind::Connect if first.is_some_and(|b| b != b'{') => {
                Err(Malformed("CONNECT data must be an object"))
            }
            Kind::Disconnect if self.data.is_some() => Err(Malformed("DISCONNECT carries no data")),
            Kind::Event | Kind::BinaryEvent if first != Some(b'[') => {
                Err(Malformed("an EVENT's data must be an array: [name, args…]"))
            }
            Kind::Ack | Kind::BinaryAck if first != Some(b'[') || self.id.is_none() => {
                Err(Malformed("an ACK needs an id and an array of arguments"))
            }
            Kind::ConnectError if first != Some(b'{') => {
                Err(Malformed("CONNECT_ERROR data must be an object"))
            }
            _ => Ok(()),
        }
    }

    /// The packet's text, for an Engine.IO `message` packet.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        out.push(self.kind.digit());
        if self.kind.binary() {
            out.push_str(&self.attachments.to_string());
            out.push('-');
        }
        if self.namespace != "/" {
            out.push_str(&self.namespace);
            out.push(',');
        }
        if let Some(id) = self.id {
            out.push_str(&id.to_string());
        }
        if let Some(data) = &self.data {
            out.push_str(data.get());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(
        kind: Kind,
        attachments: usize,
        namespace: &str,
        id: Option<u64>,
        data: Option<&str>,
    ) -> Packet {
        let data = data.map(|d| RawValue::from_string(d.to_owned()).unwrap());
        Packet { kind, attachments, namespace: namespace.into(), id, data }
    }

    /// The examples of the protocol's description, both ways.
    #[test]
    fn the_protocols_examples_read_and_write() {
        let cases = [
            ("0", packet(Kind::Connect, 0, "/", None, None)),
            (
                r#"0/admin,{"token":"123"}"#,
                packet(Kind::Connect, 0, "/admin", None, Some(r#"{"token":"123"}"#)),
            ),
            (
                r#"0{"sid":"oSO0OpakMV_3jnilAAAA"}"#,
                packet(Kind::Connect, 0, "/", None, Some(r#"{"sid":"oSO0OpakMV_3jnilAAAA"}"#)),
            ),
            (
                r#"4{"message":"Not authorized"}"#,
                packet(Kind::ConnectError, 0, "/", None, Some(r#"{"message":"Not authorized"}"#)),
            ),
            ("1/admin,", packet(Kind::Disconnect, 0, "/admin", None, None)),
            (r#"2["foo"]"#, packet(Kind::Event, 0, "/", None, Some(r#"["foo"]"#))),
            (r#"2/admin,["bar"]"#, packet(Kind::Event, 0, "/admin", None, Some(r#"["bar"]"#))),
            (r#"212["foo"]"#, packet(Kind::Event, 0, "/", Some(12), Some(r#"["foo"]"#))),
            (r#"3/admin,13["bar"]"#, packet(Kind::Ack, 0, "/admin", Some(13), Some(r#"["bar"]"#))),
            (
                r#"51-["baz",{"_placeholder":true,"num":0}]"#,
                packet(Kind::BinaryEvent, 1, "/", None, Some(r#"["baz",{"_placeholder":true,"num":0}]"#)),
            ),
            (
                r#"61-/admin,15[{"_placeholder":true,"num":0}]"#,
                packet(Kind::BinaryAck, 1, "/admin", Some(15), Some(r#"[{"_placeholder":true,"num":0}]"#)),
            ),
        ];
        for (text, expected) in cases {
            let read = Packet::decode(text).unwrap_or_else(|e| panic!("{text}: {e:?}"));
            assert_eq!(read, expected, "{text}");
            // "1/admin," writes back without its trailing comma's absence mattering.
            let written = expected.encode();
            assert_eq!(Packet::decode(&written).unwrap(), expected, "{written}");
        }
        assert_eq!(packet(Kind::Event, 0, "/", Some(12), Some(r#"["foo"]"#)).encode(), r#"212["foo"]"#);
    }

    #[test]
    fn malformed_packets_get_a_reason() {
        for bad in [
            "",
            "9",
            "2",
            r#"2{"not":"an array"}"#,
            r#"3["no id"]"#,
            r#"5["no count"]"#,
            r#"511-["too many"]"#,
            r#"2["unfinished"#,
            "1data",
            r#"0["not an object"]"#,
            "299999999999999999999999[\"id too large\"]",
        ] {
            assert!(Packet::decode(bad).is_err(), "{bad:?} was read");
        }
        let long = format!("0/{},", "n".repeat(MAX_NAMESPACE_LEN + 1));
        assert!(Packet::decode(&long).is_err());
    }
}
