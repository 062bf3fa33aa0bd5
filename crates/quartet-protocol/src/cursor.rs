//! The cursor: one opaque string that says "everything up to here was delivered", for every log
//! a client reads, and that resumes the client on any transport.
//!
//! A client reads several logs (its rooms and its `@user` inbox), so a position is a set of
//! `(log, seq)` pairs. The cursor is that set plus the store's [`Epoch`], written as text and
//! then base64url-encoded so it is safe verbatim in a query string and an HTTP header
//! (`Last-Event-ID`). Decoded, a cursor reads like `1f0c2b9e4d5a6b7c|lobby:43|@alice:2`.
//!
//! Every event carries the cursor after it, so a client in many rooms would carry every room's
//! position in every event. Instead, a cursor may name a **base**: positions the server stored
//! once ([`BaseId`]), which the cursor then only amends: `1f0c2b9e4d5a6b7c|~17|lobby:44` is
//! "base 17, but `lobby` at 44", and `lobby:-` would say the client no longer reads `lobby`.
//! Resolving a cursor against its base gives the full set back ([`Cursor::resolve`]); a
//! cursor's size then grows with the logs that moved since its base, not with the logs read.
//!
//! There is one encoder, [`CursorWriter`]: [`Cursor::encode`] uses it once, a server's readers
//! keep one each and reuse its buffers for every delivery.
//!
//! Clients must treat a cursor as opaque: the format may change, and the server rejects cursors
//! it could not have issued (`bad_cursor`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::{Error, ErrorCode};
use crate::ids::{LogId, Seq};
use crate::limits::{MAX_CURSOR_LEN, MAX_ROOMS_PER_CLIENT};

/// Identifies one lifetime of the stored logs. A memory store gets a new epoch at every start; a
/// durable store keeps its epoch. A cursor from another epoch points into logs that no longer
/// exist, so the client is told with a `gap` event (reason `reset`) instead of being fed wrong
/// events under reused seq numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Epoch(pub u64);

/// Positions a server stored for cursors to name instead of repeating them (see the module
/// doc): the id the store gave them, within one epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BaseId(pub u64);

/// A set of positions, one per log, in one epoch. See the module doc.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    /// The store lifetime these positions belong to.
    pub epoch: Epoch,
    /// Stored positions that `positions` and `dropped` amend; `None`: `positions` is all.
    pub base: Option<BaseId>,
    /// Last delivered seq per log (with a base: per log that moved since it).
    pub positions: BTreeMap<LogId, Seq>,
    /// With a base: logs of the base no longer read.
    pub dropped: BTreeSet<LogId>,
}

impl Cursor {
    /// A whole cursor: `positions` in `epoch`, no base.
    pub fn new(epoch: Epoch, positions: BTreeMap<LogId, Seq>) -> Cursor {
        Cursor { epoch, base: None, positions, dropped: BTreeSet::new() }
    }

    /// The whole cursor this one means, given its base's positions: the base, amended.
    pub fn resolve(self, base: &BTreeMap<LogId, Seq>) -> Cursor {
        let mut positions = base.clone();
        positions.retain(|log, _| !self.dropped.contains(log));
        positions.extend(self.positions);
        Cursor::new(self.epoch, positions)
    }

    /// Parses the wire form; any malformation is `bad_cursor`.
    pub fn decode(text: &str) -> Result<Cursor, Error> {
        let bad = |why: &str| Error::new(ErrorCode::BadCursor, format!("malformed cursor: {why}"));
        if text.len() > MAX_CURSOR_LEN {
            return Err(bad("too long"));
        }
        let raw = URL_SAFE_NO_PAD.decode(text).map_err(|_| bad("not base64url"))?;
        let raw = String::from_utf8(raw).map_err(|_| bad("not text"))?;
        let mut parts = raw.split('|').peekable();
        let epoch = parts.next().and_then(|e| u64::from_str_radix(e, 16).ok());
        let epoch = Epoch(epoch.ok_or_else(|| bad("no epoch"))?);
        let base = match parts.next_if(|p| p.starts_with('~')) {
            Some(id) => Some(BaseId(id[1..].parse::<u64>().map_err(|_| bad("bad base"))?)),
            None => None,
        };
        let mut cursor = Cursor { epoch, base, positions: BTreeMap::new(), dropped: BTreeSet::new() };
        for part in parts {
            let (log, seq) = part.rsplit_once(':').ok_or_else(|| bad("no seq"))?;
            let log = LogId::parse(log).map_err(|_| bad("bad log name"))?;
            if cursor.positions.contains_key(&log) || cursor.dropped.contains(&log) {
                return Err(bad("log named twice"));
            }
            if seq == "-" && base.is_some() {
                cursor.dropped.insert(log);
            } else {
                cursor.positions.insert(log, Seq(seq.parse::<u64>().map_err(|_| bad("bad seq"))?));
            }
            if cursor.positions.len() + cursor.dropped.len() > MAX_ROOMS_PER_CLIENT + 1 {
                return Err(bad("too many logs"));
            }
        }
        Ok(cursor)
    }

    /// The wire form.
    pub fn encode(&self) -> String {
        let mut writer = CursorWriter::default();
        let amended = self.positions.iter().map(|(log, seq)| (log, Some(*seq)));
        let dropped = self.dropped.iter().map(|log| (log, None));
        // Sorted by log over both, as a reader writes them.
        let mut entries: Vec<(&LogId, Option<Seq>)> = amended.chain(dropped).collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        writer.write_based(self.epoch, self.base, entries);
        writer.encoded
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

/// The cursor encoder. It keeps its buffers between calls, so a reader that encodes a cursor
/// per delivery allocates nothing once they have grown.
#[derive(Debug, Default)]
pub struct CursorWriter {
    /// The text before base64.
    raw: String,
    /// The last cursor written.
    encoded: String,
}

impl CursorWriter {
    /// Encodes `positions` (in the order given: pass them sorted by log, as a [`Cursor`] keeps
    /// them) and returns the cursor, which [`CursorWriter::last`] keeps until the next call.
    pub fn write<'a>(&mut self, epoch: Epoch, positions: impl IntoIterator<Item = (&'a LogId, Seq)>) -> &str {
        self.write_based(epoch, None, positions.into_iter().map(|(log, seq)| (log, Some(seq))))
    }

    /// As [`CursorWriter::write`], for a cursor on `base` (if any): `entries` are the logs that
    /// differ from it, each with its position, or `None` for a log of the base no longer read.
    pub fn write_based<'a>(
        &mut self,
        epoch: Epoch,
        base: Option<BaseId>,
        entries: impl IntoIterator<Item = (&'a LogId, Option<Seq>)>,
    ) -> &str {
        self.raw.clear();
        push_hex(&mut self.raw, epoch.0);
        if let Some(base) = base {
            self.raw.push_str("|~");
            push_decimal(&mut self.raw, base.0);
        }
        for (log, seq) in entries {
            self.raw.push('|');
            log.push_to(&mut self.raw);
            self.raw.push(':');
            match seq {
                Some(seq) => push_decimal(&mut self.raw, seq.0),
                None => self.raw.push('-'),
            }
        }
        self.encoded.clear();
        URL_SAFE_NO_PAD.encode_string(&self.raw, &mut self.encoded);
        &self.encoded
    }

    /// The cursor of the last [`CursorWriter::write`] (empty before the first).
    pub fn last(&self) -> &str {
        &self.encoded
    }
}

/// Appends `n` in decimal, without the formatting machinery (this runs once per delivery).
fn push_decimal(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&digits[i..]).expect("ASCII digits"));
}

/// Appends `n` in lowercase hex, all 16 digits: every cursor of a store's lifetime then has the
/// same length for the same logs and seqs (older cursors, written without leading zeros, still
/// decode).
fn push_hex(out: &mut String, n: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 16];
    for (i, digit) in buf.iter_mut().enumerate() {
        *digit = DIGITS[((n >> (60 - 4 * i)) & 0xf) as usize];
    }
    out.push_str(std::str::from_utf8(&buf).expect("ASCII digits"));
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
        let cursor = Cursor::new(Epoch(0x1f0c), positions);
        let text = cursor.encode();
        assert!(text.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_eq!(URL_SAFE_NO_PAD.decode(&text).unwrap(), b"0000000000001f0c|lobby:43|@alice:2");
        assert_eq!(Cursor::decode(&text).unwrap(), cursor);
        // A cursor written before the epoch had a fixed width still reads the same.
        assert_eq!(Cursor::decode(&URL_SAFE_NO_PAD.encode("1f0c|lobby:43|@alice:2")).unwrap(), cursor);
    }

    #[test]
    fn a_cursor_on_a_base_round_trips_and_resolves() {
        let log = |name: &str| LogId::parse(name).unwrap();
        let text = URL_SAFE_NO_PAD.encode("0000000000001f0c|~17|gone:-|lobby:44|@alice:3");
        let cursor = Cursor::decode(&text).unwrap();
        assert_eq!(cursor.base, Some(BaseId(17)));
        assert_eq!(cursor.positions, BTreeMap::from([(log("@alice"), Seq(3)), (log("lobby"), Seq(44))]));
        assert_eq!(cursor.dropped, BTreeSet::from([log("gone")]));
        assert_eq!(cursor.encode(), text, "written back the same");
        let base = BTreeMap::from([
            (log("@alice"), Seq(2)),
            (log("gone"), Seq(9)),
            (log("kept"), Seq(5)),
            (log("lobby"), Seq(40)),
        ]);
        let whole = cursor.resolve(&base);
        assert_eq!(whole.base, None);
        assert_eq!(
            whole.positions,
            BTreeMap::from([(log("@alice"), Seq(3)), (log("kept"), Seq(5)), (log("lobby"), Seq(44))])
        );
        // A dropped log needs a base to be dropped from.
        assert!(Cursor::decode(&URL_SAFE_NO_PAD.encode("1f0c|lobby:-")).is_err());
    }

    #[test]
    fn numbers_are_written_like_the_formatter_would() {
        for n in [0, 7, 10, 43, 0xabc, 1_000_000, u64::MAX] {
            let (mut dec, mut hex) = (String::new(), String::new());
            push_decimal(&mut dec, n);
            push_hex(&mut hex, n);
            assert_eq!((dec, hex), (n.to_string(), format!("{n:016x}")));
        }
    }

    #[test]
    fn the_writer_reuses_itself_without_leftovers() {
        let lobby = LogId::Room(RoomName::parse("lobby").unwrap());
        let mut writer = CursorWriter::default();
        let long = writer.write(Epoch(1), [(&lobby, Seq(123_456))]).to_owned();
        let short = writer.write(Epoch(1), [(&lobby, Seq(5))]).to_owned();
        assert_ne!(long, short);
        assert_eq!(writer.last(), short);
        assert_eq!(Cursor::decode(&short).unwrap().positions[&lobby], Seq(5));
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
            enc("1f|~x|a:1"),
            enc("1f|~1|a:1|a:-"),
            enc("1f|a:1|~2"),
            "A".repeat(MAX_CURSOR_LEN + 1),
        ] {
            assert_eq!(Cursor::decode(&bad).unwrap_err().code, ErrorCode::BadCursor, "{bad}");
        }
    }
}
