//! The cursor: one opaque string that says "everything up to here was delivered", for every log
//! a client reads, and that resumes the client on any transport.
//!
//! A client reads several logs (its rooms and its `@user` inbox), so a position is a set of
//! `(log, seq)` pairs. The cursor is that set plus the store's [`Epoch`], written as text and
//! then base64url-encoded so it is safe verbatim in a query string and an HTTP header
//! (`Last-Event-ID`). Decoded, a cursor reads like `1f0c2b9e4d5a6b7c|lobby:43|@alice:2`.
//!
//! Clients must treat it as opaque: the format may change, and the server rejects cursors it
//! could not have issued (`bad_cursor`).

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::{Error, ErrorCode};
use crate::ids::{LogId, Seq};
use crate::limits::MAX_ROOMS_PER_CLIENT;

/// Longest cursor accepted from a client, in bytes: enough for every room a client may join.
pub const MAX_CURSOR_LEN: usize = 8 * 1024;

/// Identifies one lifetime of the stored logs. A memory store gets a new epoch at every start; a
/// durable store keeps its epoch. A cursor from another epoch points into logs that no longer
/// exist, so the client is told with a `gap` event (reason `reset`) instead of being fed wrong
/// events under reused seq numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Epoch(pub u64);

/// A set of positions, one per log, in one epoch. See the module doc.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    /// The store lifetime these positions belong to.
    pub epoch: Epoch,
    /// Last delivered seq per log.
    pub positions: BTreeMap<LogId, Seq>,
}

impl Cursor {
    /// Parses the wire form; any malformation is `bad_cursor`.
    pub fn decode(text: &str) -> Result<Cursor, Error> {
        let bad = |why: &str| Error::new(ErrorCode::BadCursor, format!("malformed cursor: {why}"));
        if text.len() > MAX_CURSOR_LEN {
            return Err(bad("too long"));
        }
        let raw = URL_SAFE_NO_PAD.decode(text).map_err(|_| bad("not base64url"))?;
        let raw = String::from_utf8(raw).map_err(|_| bad("not text"))?;
        let mut parts = raw.split('|');
        let epoch = parts.next().and_then(|e| u64::from_str_radix(e, 16).ok());
        let epoch = Epoch(epoch.ok_or_else(|| bad("no epoch"))?);
        let mut positions = BTreeMap::new();
        for part in parts {
            let (log, seq) = part.rsplit_once(':').ok_or_else(|| bad("no seq"))?;
            let log = LogId::parse(log).map_err(|_| bad("bad log name"))?;
            let seq = seq.parse::<u64>().map_err(|_| bad("bad seq"))?;
            if positions.insert(log, Seq(seq)).is_some() {
                return Err(bad("log named twice"));
            }
            if positions.len() > MAX_ROOMS_PER_CLIENT + 1 {
                return Err(bad("too many logs"));
            }
        }
        Ok(Cursor { epoch, positions })
    }

    /// The wire form.
    pub fn encode(&self) -> String {
        let mut raw = String::with_capacity(16 + 24 * self.positions.len());
        let _ = write!(raw, "{:x}", self.epoch.0);
        for (log, seq) in &self.positions {
            let _ = write!(raw, "|{log}:{seq}");
        }
        URL_SAFE_NO_PAD.encode(raw)
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{RoomName, UserName};

    #[test]
    fn cursor_round_trips_and_is_url_safe() {
        let mut positions = BTreeMap::new();
        positions.insert(LogId::Room(RoomName::parse("lobby").unwrap()), Seq(43));
        positions.insert(LogId::Inbox(UserName::parse("alice").unwrap()), Seq(2));
        let cursor = Cursor { epoch: Epoch(0x1f0c), positions };
        let text = cursor.encode();
        assert!(text.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_eq!(Cursor::decode(&text).unwrap(), cursor);
    }

    #[test]
    fn malformed_cursors_are_bad_cursor() {
        let enc = |s: &str| URL_SAFE_NO_PAD.encode(s);
        for bad in [
            "!!".to_string(),
            enc("zz"),
            enc("1f|lobby"),
            enc("1f|lobby:x"),
            enc("1f|bad room:1"),
            enc("1f|a:1|a:2"),
            "A".repeat(MAX_CURSOR_LEN + 1),
        ] {
            assert_eq!(Cursor::decode(&bad).unwrap_err().code, ErrorCode::BadCursor, "{bad}");
        }
    }
}
