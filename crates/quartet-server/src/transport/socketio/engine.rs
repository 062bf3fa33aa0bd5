//! Engine.IO v4 packets: the layer under Socket.IO that carries its messages over HTTP
//! long-polling or a WebSocket, with its own handshake and heartbeat.
//!
//! A packet is one character for its type, then its data: `0` open (the handshake, JSON), `1`
//! close, `2` ping, `3` pong, `4` message (a Socket.IO packet), `5` upgrade, `6` noop. Binary
//! data rides in WebSocket binary frames as is, and in a polling body as `b` + base64. A polling
//! body carries several packets separated by the record separator `\x1e`.
//!
//! (The wire rules follow the engine.io-protocol repository's description, version 4.)

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// The separator of packets in a polling body.
pub const SEPARATOR: char = '\u{1e}';

/// One Engine.IO packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    /// `0` + the handshake JSON (server to client).
    Open(String),
    /// `1`: the session ends.
    Close,
    /// `2` (+ `probe` during an upgrade).
    Ping(String),
    /// `3` (+ `probe` during an upgrade).
    Pong(String),
    /// `4` + text: a Socket.IO packet.
    Message(String),
    /// Binary data (a Socket.IO attachment).
    Binary(Vec<u8>),
    /// `5`: the client switches to the transport it probed.
    Upgrade,
    /// `6`: nothing (answers a pending poll during an upgrade).
    Noop,
}

/// Why a packet could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

impl Packet {
    /// Reads a text packet (a WebSocket text frame, or one packet of a polling body).
    pub fn decode(text: &str) -> Result<Packet, Malformed> {
        let mut chars = text.chars();
        let kind = chars.next().ok_or(Malformed("an empty packet"))?;
        let rest = chars.as_str();
        Ok(match kind {
            '0' => Packet::Open(rest.to_owned()),
            '1' if rest.is_empty() => Packet::Close,
            '2' => Packet::Ping(rest.to_owned()),
            '3' => Packet::Pong(rest.to_owned()),
            '4' => Packet::Message(rest.to_owned()),
            '5' if rest.is_empty() => Packet::Upgrade,
            '6' if rest.is_empty() => Packet::Noop,
            'b' => Packet::Binary(
                STANDARD.decode(rest).map_err(|_| Malformed("binary data that is not base64"))?,
            ),
            '1' | '5' | '6' => return Err(Malformed("data after a packet type that has none")),
            _ => return Err(Malformed("an unknown packet type")),
        })
    }

    /// The packet as text (binary as `b` + base64, as a polling body carries it).
    pub fn encode(&self) -> String {
        match self {
            Packet::Open(json) => format!("0{json}"),
            Packet::Close => "1".into(),
            Packet::Ping(data) => format!("2{data}"),
            Packet::Pong(data) => format!("3{data}"),
            Packet::Message(text) => format!("4{text}"),
            Packet::Binary(bytes) => format!("b{}", STANDARD.encode(bytes)),
            Packet::Upgrade => "5".into(),
            Packet::Noop => "6".into(),
        }
    }
}

/// Reads a polling body: packets separated by [`SEPARATOR`].
pub fn decode_payload(body: &str) -> Result<Vec<Packet>, Malformed> {
    if body.is_empty() {
        return Err(Malformed("an empty body"));
    }
    body.split(SEPARATOR).map(Packet::decode).collect()
}

/// Writes a polling body.
pub fn encode_payload(packets: &[Packet]) -> String {
    let mut out = String::new();
    for (i, packet) in packets.iter().enumerate() {
        if i > 0 {
            out.push(SEPARATOR);
        }
        out.push_str(&packet.encode());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_read_back_as_written() {
        let packets = [
            Packet::Open(r#"{"sid":"abc","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#.into()),
            Packet::Close,
            Packet::Ping(String::new()),
            Packet::Ping("probe".into()),
            Packet::Pong("probe".into()),
            Packet::Message(r#"2["hello",1]"#.into()),
            Packet::Binary(vec![1, 2, 3, 4]),
            Packet::Upgrade,
            Packet::Noop,
        ];
        for packet in &packets {
            assert_eq!(Packet::decode(&packet.encode()).as_ref(), Ok(packet), "{}", packet.encode());
        }
        // The protocol's own examples.
        assert_eq!(Packet::Binary(vec![1, 2, 3, 4]).encode(), "bAQIDBA==");
        assert_eq!(Packet::decode("4hello"), Ok(Packet::Message("hello".into())));
        assert_eq!(Packet::decode("2probe"), Ok(Packet::Ping("probe".into())));
    }

    #[test]
    fn a_polling_body_carries_several_packets() {
        let body = "4hello\u{1e}bAQIDBA==\u{1e}4world";
        let packets = decode_payload(body).unwrap();
        assert_eq!(
            packets,
            [
                Packet::Message("hello".into()),
                Packet::Binary(vec![1, 2, 3, 4]),
                Packet::Message("world".into())
            ]
        );
        assert_eq!(encode_payload(&packets), body);
    }

    #[test]
    fn malformed_packets_are_refused_not_guessed() {
        for bad in ["", "7", "x", "1data", "5x", "6x", "b!!!"] {
            assert!(Packet::decode(bad).is_err(), "{bad:?} was read");
        }
        assert!(decode_payload("").is_err());
        assert!(decode_payload("4a\u{1e}\u{1e}4b").is_err(), "an empty packet inside a body");
    }
}
