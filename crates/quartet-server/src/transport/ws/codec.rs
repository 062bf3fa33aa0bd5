//! The WebSocket wire format (RFC 6455 §5), server side, and only what quartet needs of it.
//!
//! ```text
//!  byte 0          byte 1            then                     then
//! ┌─┬───┬──────┐ ┌─┬───────────┐ ┌──────────────────────┐ ┌──────────────┐ ┌─────────┐
//! │F│RSV│opcode│ │M│ length 7  │ │ length 16 or 64 bits │ │ mask, 4 bytes│ │ payload │
//! │I│000│ 1..A │ │A│ 0..125,   │ │ (when length 7 is    │ │ (client→     │ │         │
//! │N│   │      │ │S│ 126, 127  │ │  126 or 127)         │ │  server only)│ │         │
//! └─┴───┴──────┘ └─┴───────────┘ └──────────────────────┘ └──────────────┘ └─────────┘
//! ```
//!
//! Server→client frames are never masked, so their bytes are the same for every reader and
//! cost 2 bytes of header for a payload up to 125 bytes, 4 up to 64 KiB. quartet writes each
//! event as one unfragmented text frame straight into the connection's write buffer
//! ([`put_header`]); a batch of events becomes one buffer and one write.
//!
//! Client→server frames are masked and may be fragmented; [`Decoder`] unmasks, reassembles and
//! checks them, and says which close code ends the connection when a peer breaks the protocol.

use bytes::{Buf, BytesMut};

/// Continues a fragmented message.
pub const OP_CONTINUATION: u8 = 0x0;
/// A UTF-8 text message.
pub const OP_TEXT: u8 = 0x1;
/// A binary message.
pub const OP_BINARY: u8 = 0x2;
/// Starts the closing handshake.
pub const OP_CLOSE: u8 = 0x8;
/// Asks for a pong.
pub const OP_PING: u8 = 0x9;
/// Answers a ping (or proves life unasked).
pub const OP_PONG: u8 = 0xA;

/// Close codes used here (RFC 6455 §7.4.1).
pub mod close_code {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The server is going away (shutting down).
    pub const AWAY: u16 = 1001;
    /// The peer broke the protocol.
    pub const PROTOCOL: u16 = 1002;
    /// A text message that is not UTF-8.
    pub const INVALID_DATA: u16 = 1007;
    /// The server's policy ends the connection (here: the client was removed, or the socket
    /// stayed behind its events: `slow`).
    pub const POLICY: u16 = 1008;
    /// A message larger than the server accepts.
    pub const TOO_BIG: u16 = 1009;
    /// The server cannot go on (here: its store failed a read); reconnect from the cursor.
    pub const SERVER_ERROR: u16 = 1011;

    /// The code to answer a peer's close with (RFC 6455 §5.5.1, §7.4): its own code if it may
    /// be sent in a close frame, 1000 for a close with no code, 1002 for a code no endpoint may
    /// send (1005, 1006 and 1015 are for reporting only; 0–999, 1004, 1016–2999 and 5000 up
    /// are not codes).
    pub fn answer(peer: Option<u16>) -> u16 {
        match peer {
            None => NORMAL,
            Some(code @ (1000..=1003 | 1007..=1014 | 3000..=4999)) => code,
            Some(_) => PROTOCOL,
        }
    }
}

/// Longest header of a server frame: 2 bytes and a 64-bit length.
pub const MAX_HEADER: usize = 10;

/// Largest payload of a control frame (ping, pong, close).
const MAX_CONTROL_PAYLOAD: usize = 125;

/// Appends the header of one final, unmasked frame whose payload is `len` bytes.
pub fn put_header(out: &mut Vec<u8>, opcode: u8, len: usize) {
    out.push(0x80 | opcode);
    if len < 126 {
        out.push(len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        out.push(126);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// Appends one whole frame.
pub fn put_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    put_header(out, opcode, payload.len());
    out.extend_from_slice(payload);
}

/// Appends a close frame with `code` and a short `reason` (at most 123 bytes).
pub fn put_close(out: &mut Vec<u8>, code: u16, reason: &str) {
    let reason = &reason.as_bytes()[..reason.len().min(MAX_CONTROL_PAYLOAD - 2)];
    put_header(out, OP_CLOSE, 2 + reason.len());
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(reason);
}

/// What the client sent: a whole message or a control frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A text message, UTF-8 checked.
    Text(BytesMut),
    /// A binary message (the native protocol has no use for one; Socket.IO's attachments do).
    Binary(BytesMut),
    /// A ping; its payload goes back in the pong.
    Ping(BytesMut),
    /// A pong.
    Pong,
    /// The client closes, with its code if it gave one.
    Close(Option<u16>),
}

/// The peer broke the protocol: close with this code and reason, then drop the connection.
#[derive(Debug, PartialEq, Eq)]
pub struct Violation {
    /// The close code to send.
    pub code: u16,
    /// Why, for the close frame and the log.
    pub reason: &'static str,
}

fn violation(code: u16, reason: &'static str) -> Violation {
    Violation { code, reason }
}

/// Parses client frames from a read buffer and reassembles fragmented messages.
#[derive(Debug)]
pub struct Decoder {
    max_message: usize,
    /// A fragmented message in progress: its opcode and the payload so far.
    partial: Option<(u8, BytesMut)>,
    /// Bytes the buffer must hold before the frame at its front is complete.
    needed: usize,
}

impl Decoder {
    /// A decoder refusing messages (whole, after reassembly) larger than `max_message` bytes.
    pub fn new(max_message: usize) -> Decoder {
        Decoder { max_message, partial: None, needed: 2 }
    }

    /// How many bytes `buf` must hold for the next step to make progress: the read loop
    /// reserves that much, so a large frame is read in few calls.
    pub fn needed(&self) -> usize {
        self.needed
    }

    /// The next message or control frame from the front of `buf`, consuming its bytes, or
    /// `None` when `buf` does not hold a whole frame yet.
    pub fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Incoming>, Violation> {
        loop {
            let Some(frame) = self.frame(buf)? else { return Ok(None) };
            if let Some(message) = self.assemble(frame)? {
                return Ok(Some(message));
            }
        }
    }

    /// One frame off the front of `buf`, unmasked.
    fn frame(&mut self, buf: &mut BytesMut) -> Result<Option<(bool, u8, BytesMut)>, Violation> {
        if buf.len() < 2 {
            self.needed = 2;
            return Ok(None);
        }
        let (b0, b1) = (buf[0], buf[1]);
        let fin = b0 & 0x80 != 0;
        let opcode = b0 & 0x0F;
        if b0 & 0x70 != 0 {
            return Err(violation(close_code::PROTOCOL, "reserved bits set (no extension was agreed)"));
        }
        if !matches!(opcode, OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG) {
            return Err(violation(close_code::PROTOCOL, "unknown opcode"));
        }
        if b1 & 0x80 == 0 {
            return Err(violation(close_code::PROTOCOL, "client frames must be masked"));
        }
        let (len, offset) = match b1 & 0x7F {
            126 if buf.len() >= 4 => (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
            127 if buf.len() >= 10 => (u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes")), 10),
            126 => return self.wait_for(4),
            127 => return self.wait_for(10),
            short => (u64::from(short), 2),
        };
        let control = opcode & 0x8 != 0;
        if control && (!fin || len > MAX_CONTROL_PAYLOAD as u64) {
            return Err(violation(close_code::PROTOCOL, "control frames must be whole and short"));
        }
        let so_far = self.partial.as_ref().filter(|_| !control).map_or(0, |(_, p)| p.len() as u64);
        if len.saturating_add(so_far) > self.max_message as u64 {
            return Err(violation(close_code::TOO_BIG, "message too big"));
        }
        let header = offset + 4;
        let total = header + len as usize;
        if buf.len() < total {
            return self.wait_for(total);
        }
        let mask: [u8; 4] = buf[offset..header].try_into().expect("4 bytes");
        buf.advance(header);
        let mut payload = buf.split_to(len as usize);
        unmask(&mut payload, mask);
        self.needed = 2;
        Ok(Some((fin, opcode, payload)))
    }

    fn wait_for<T>(&mut self, bytes: usize) -> Result<Option<T>, Violation> {
        self.needed = bytes;
        Ok(None)
    }

    /// Turns frames into messages: control frames pass through, data frames are joined.
    fn assemble(
        &mut self,
        (fin, opcode, payload): (bool, u8, BytesMut),
    ) -> Result<Option<Incoming>, Violation> {
        let (opcode, message) = match opcode {
            OP_PING => return Ok(Some(Incoming::Ping(payload))),
            OP_PONG => return Ok(Some(Incoming::Pong)),
            OP_CLOSE => return close(&payload).map(Some),
            OP_CONTINUATION => {
                let Some((first, mut so_far)) = self.partial.take() else {
                    return Err(violation(close_code::PROTOCOL, "continuation without a message"));
                };
                so_far.extend_from_slice(&payload);
                if !fin {
                    self.partial = Some((first, so_far));
                    return Ok(None);
                }
                (first, so_far)
            }
            _ if self.partial.is_some() => {
                return Err(violation(close_code::PROTOCOL, "new message before the last one ended"));
            }
            _ if !fin => {
                self.partial = Some((opcode, payload));
                return Ok(None);
            }
            _ => (opcode, payload),
        };
        if opcode == OP_BINARY {
            return Ok(Some(Incoming::Binary(message)));
        }
        if std::str::from_utf8(&message).is_err() {
            return Err(violation(close_code::INVALID_DATA, "text message is not UTF-8"));
        }
        Ok(Some(Incoming::Text(message)))
    }
}

fn close(payload: &[u8]) -> Result<Incoming, Violation> {
    match payload {
        [] => Ok(Incoming::Close(None)),
        [_] => Err(violation(close_code::PROTOCOL, "close payload of one byte")),
        [hi, lo, reason @ ..] if std::str::from_utf8(reason).is_ok() => {
            Ok(Incoming::Close(Some(u16::from_be_bytes([*hi, *lo]))))
        }
        _ => Err(violation(close_code::INVALID_DATA, "close reason is not UTF-8")),
    }
}

/// Undoes the client's mask (XOR with the 4-byte key, repeating).
fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let mut chunks = payload.chunks_exact_mut(4);
    let key = u32::from_ne_bytes(mask);
    for chunk in &mut chunks {
        let word = u32::from_ne_bytes(chunk.try_into().expect("4 bytes")) ^ key;
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i];
    }
}

#[cfg(test)]
mod close_tests {
    use super::close_code::{NORMAL, PROTOCOL, answer};

    #[test]
    fn a_close_is_echoed_only_with_a_code_that_may_be_sent() {
        assert_eq!(answer(None), NORMAL);
        for code in [1000, 1001, 1003, 1008, 1011, 3000, 4999] {
            assert_eq!(answer(Some(code)), code);
        }
        for code in [0, 999, 1004, 1005, 1006, 1015, 2999, 5000, u16::MAX] {
            assert_eq!(answer(Some(code)), PROTOCOL, "{code}");
        }
    }
}

/// A frame as a client sends it (masked, RFC 6455 §5.3), the other direction from
/// [`put_frame`]: what tests, the fuzzer and tools feed a [`Decoder`].
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8]) -> Result<Vec<Incoming>, Violation> {
        let mut decoder = Decoder::new(1 << 20);
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(message) = decoder.next(&mut buf)? {
            out.push(message);
        }
        assert!(buf.is_empty(), "bytes left over");
        Ok(out)
    }

    #[test]
    fn server_headers_use_the_shortest_length() {
        for (len, header) in [(0, vec![0x81, 0]), (125, vec![0x81, 125]), (126, vec![0x81, 126, 0, 126])] {
            let mut out = Vec::new();
            put_header(&mut out, OP_TEXT, len);
            assert_eq!(out, header);
        }
        let mut out = Vec::new();
        put_header(&mut out, OP_TEXT, 70_000);
        assert_eq!(out, [0x81, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
    }

    #[test]
    fn decodes_masked_text_of_every_length_form() {
        for len in [0, 5, 125, 126, 4000, 70_000] {
            let text = "a".repeat(len);
            let got = decode_all(&client_frame(true, OP_TEXT, text.as_bytes())).unwrap();
            assert_eq!(got, [Incoming::Text(BytesMut::from(text.as_bytes()))]);
        }
    }

    #[test]
    fn waits_for_the_rest_of_a_frame_byte_by_byte() {
        let bytes = client_frame(true, OP_TEXT, br#"{"type":"ping"}"#);
        let mut decoder = Decoder::new(1024);
        let mut buf = BytesMut::new();
        for (i, byte) in bytes.iter().enumerate() {
            buf.extend_from_slice(&[*byte]);
            let got = decoder.next(&mut buf).unwrap();
            assert_eq!(got.is_some(), i == bytes.len() - 1);
        }
    }

    #[test]
    fn reassembles_fragments_with_control_frames_between() {
        let mut bytes = client_frame(false, OP_TEXT, b"hel");
        bytes.extend(client_frame(true, OP_PING, b"p"));
        bytes.extend(client_frame(false, OP_CONTINUATION, b"lo "));
        bytes.extend(client_frame(true, OP_CONTINUATION, b"you"));
        let got = decode_all(&bytes).unwrap();
        assert_eq!(
            got,
            [Incoming::Ping(BytesMut::from(&b"p"[..])), Incoming::Text(BytesMut::from(&b"hello you"[..]))]
        );
    }

    #[test]
    fn close_ping_pong_and_binary() {
        let mut bytes = client_frame(true, OP_BINARY, b"\x00\x01");
        bytes.extend(client_frame(true, OP_PONG, b""));
        bytes.extend(client_frame(true, OP_CLOSE, &[0x03, 0xE8, b'b', b'y', b'e']));
        let got = decode_all(&bytes).unwrap();
        assert_eq!(
            got,
            [Incoming::Binary(BytesMut::from(&b"\x00\x01"[..])), Incoming::Pong, Incoming::Close(Some(1000))]
        );
    }

    #[test]
    fn protocol_violations_name_their_close_code() {
        let unmasked = [0x81, 0x02, b'h', b'i'];
        let mut rsv = client_frame(true, OP_TEXT, b"hi");
        rsv[0] |= 0x40;
        let not_utf8 = client_frame(true, OP_TEXT, &[0xFF, 0xFE]);
        let long_ping = client_frame(true, OP_PING, &[0; 126]);
        let lone_continuation = client_frame(true, OP_CONTINUATION, b"x");
        let mut interleaved = client_frame(false, OP_TEXT, b"a");
        interleaved.extend(client_frame(true, OP_TEXT, b"b"));
        let cases: [(&[u8], u16); 6] = [
            (&unmasked, close_code::PROTOCOL),
            (&rsv, close_code::PROTOCOL),
            (&not_utf8, close_code::INVALID_DATA),
            (&long_ping, close_code::PROTOCOL),
            (&lone_continuation, close_code::PROTOCOL),
            (&interleaved, close_code::PROTOCOL),
        ];
        for (bytes, code) in cases {
            assert_eq!(decode_all(bytes).unwrap_err().code, code, "{bytes:?}");
        }
        // A 64-bit length of 2^40 bytes: refused from the header alone.
        let huge = [0x81, 0xFF, 0, 0, 0x01, 0, 0, 0, 0, 0];
        assert_eq!(
            Decoder::new(1024).next(&mut BytesMut::from(&huge[..])).unwrap_err().code,
            close_code::TOO_BIG
        );
    }

    #[test]
    fn refuses_messages_over_the_limit_before_buffering_them() {
        let mut decoder = Decoder::new(100);
        let frame = client_frame(true, OP_TEXT, &[b'a'; 101]);
        // Only the header has arrived: the length alone is enough to refuse.
        let mut buf = BytesMut::from(&frame[..8]);
        assert_eq!(decoder.next(&mut buf).unwrap_err().code, close_code::TOO_BIG);
        // Fragments count together.
        let mut decoder = Decoder::new(100);
        let mut bytes = client_frame(false, OP_TEXT, &[b'a'; 60]);
        bytes.extend(client_frame(true, OP_CONTINUATION, &[b'a'; 60]));
        assert_eq!(decoder.next(&mut BytesMut::from(&bytes[..])).unwrap_err().code, close_code::TOO_BIG);
    }

    /// A stream of random messages, fragmented at random and interleaved with pings, arriving
    /// in random-sized reads: the decoder gives back exactly the messages, in order.
    #[test]
    fn decodes_any_split_of_any_fragmentation() {
        let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = move |bound: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % bound as u64) as usize
        };
        for _ in 0..200 {
            let mut wire = Vec::new();
            let mut want = Vec::new();
            for m in 0..1 + next(6) {
                let len = [0, 1, 125, 126, 300, 70_000][next(6)];
                let text: Vec<u8> = (0..len).map(|i| b'a' + ((i + m) % 26) as u8).collect();
                let pieces = 1 + next(4).min(len);
                let mut at = 0;
                for p in 0..pieces {
                    let end = if p + 1 == pieces { len } else { at + next(len - at + 1) };
                    let opcode = if p == 0 { OP_TEXT } else { OP_CONTINUATION };
                    wire.extend(client_frame(p + 1 == pieces, opcode, &text[at..end]));
                    at = end;
                    if next(3) == 0 {
                        wire.extend(client_frame(true, OP_PING, b"hi"));
                        want.push(Incoming::Ping(BytesMut::from(&b"hi"[..])));
                    }
                }
                want.push(Incoming::Text(BytesMut::from(&text[..])));
            }
            let mut decoder = Decoder::new(1 << 20);
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            let mut at = 0;
            while at < wire.len() {
                let end = (at + 1 + next(2000)).min(wire.len());
                buf.extend_from_slice(&wire[at..end]);
                at = end;
                while let Some(message) = decoder.next(&mut buf).unwrap() {
                    got.push(message);
                }
            }
            assert!(buf.is_empty());
            // A ping sent between a message's fragments is decoded before the message it
            // interrupts; compare texts in order, then the pings.
            let (mut got, mut want) = (got, want);
            got.sort_by_key(|m| matches!(m, Incoming::Ping(_)));
            want.sort_by_key(|m| matches!(m, Incoming::Ping(_)));
            assert_eq!(got, want);
        }
    }
}
