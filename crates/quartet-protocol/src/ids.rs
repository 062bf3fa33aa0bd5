//! Identifiers as newtypes: a room name is never confused with a user name or a client id.
//!
//! Names are validated once, when they enter from the wire ([`RoomName::parse`],
//! [`UserName::parse`]); everything past that point can trust them.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, ErrorCode};
use crate::limits::{MAX_CLIENT_ID_LEN, MAX_NAME_LEN};

/// Checks that `name` is 1..=[`MAX_NAME_LEN`] bytes of `[A-Za-z0-9_-]`.
///
/// The alphabet is deliberately small: names appear in URLs, in cursors and in terminal output,
/// and a small alphabet needs no escaping anywhere.
fn check_name(what: &str, name: &str) -> Result<(), Error> {
    let ok_char = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'-';
    if name.is_empty() || name.len() > MAX_NAME_LEN || !name.bytes().all(ok_char) {
        return Err(Error::bad_request(format!(
            "{what} must be 1 to {MAX_NAME_LEN} characters of A-Z a-z 0-9 _ -, got {name:?}"
        )));
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $ty:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $ty(Arc<str>);

        impl $ty {
            #[doc = concat!("Validates a ", $what, " coming from outside.")]
            pub fn parse(name: &str) -> Result<Self, Error> {
                check_name($what, name)?;
                Ok(Self(name.into()))
            }

            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($ty), &*self.0)
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        /// Read back with the same checks as [`Self::parse`].
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                Self::parse(&name).map_err(|e| serde::de::Error::custom(e.message))
            }
        }
    };
}

name_type!(
    /// A room: a named, append-only log of events that clients join and read.
    RoomName,
    "room name"
);
name_type!(
    /// A user's display name. Several clients (tabs, devices) may share one user name; direct
    /// messages go to the user, so every client of that user receives them.
    UserName,
    "user name"
);
name_type!(
    /// The name of an application event inside a room (`chat`, `gift`, ...).
    EventName,
    "event name"
);

impl UserName {
    /// The empty name: the `from` of events the server itself makes (presence counts). No
    /// name parsed from the wire is empty, so it cannot be impersonated.
    pub fn nobody() -> UserName {
        UserName("".into())
    }
}

/// One client session: what `POST /v1/clients` creates and every other route names.
///
/// It is 128 random bits, so knowing it is what lets a request act as that client.
///
/// Its text is kept inline when it is as short as the ids the server makes (22 characters),
/// shared on the heap otherwise (an id from the wire may be longer, and is then unknown): a
/// poll names its client on every request, and an inline id is made, compared, hashed and
/// cloned without an allocation, a reference count or a pointer to follow.
#[derive(Clone)]
pub struct ClientId(IdText);

/// A [`ClientId`]'s text. Inline for any text of at most [`INLINE_ID`] bytes and only for those,
/// so that equal ids always have the same form.
#[derive(Clone)]
enum IdText {
    Inline { len: u8, bytes: [u8; INLINE_ID] },
    Shared(Arc<str>),
}

/// Bytes of a client id kept inline: the length of [`ClientId::from_random`]'s ids.
const INLINE_ID: usize = 22;

impl ClientId {
    /// The id made of 16 random bytes (the caller brings the randomness), base64url.
    pub fn from_random(bytes: [u8; 16]) -> Self {
        let mut text = [0u8; INLINE_ID];
        let len = URL_SAFE_NO_PAD.encode_slice(bytes, &mut text).expect("16 bytes are 22 in base64");
        Self::from_text(std::str::from_utf8(&text[..len]).expect("base64 is ASCII"))
    }

    /// The id of no client: the sender of events the server itself makes.
    pub fn nobody() -> ClientId {
        Self::from_text("")
    }

    /// Wraps an id received from a client. No validation beyond the size: an id that does not
    /// name a live client is answered `unknown_client` by the lookup.
    pub fn from_wire(id: &str) -> Result<Self, Error> {
        if id.is_empty() || id.len() > MAX_CLIENT_ID_LEN {
            return Err(Error::new(ErrorCode::UnknownClient, "no such client"));
        }
        Ok(Self::from_text(id))
    }

    fn from_text(text: &str) -> Self {
        Self(if text.len() <= INLINE_ID {
            let mut bytes = [0u8; INLINE_ID];
            bytes[..text.len()].copy_from_slice(text.as_bytes());
            IdText::Inline { len: text.len() as u8, bytes }
        } else {
            IdText::Shared(text.into())
        })
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Copied from a `&str` whole (`from_text`): always UTF-8.
            IdText::Inline { len, bytes } => std::str::from_utf8(&bytes[..*len as usize]).unwrap_or_default(),
            IdText::Shared(text) => text,
        }
    }

    /// The id as bytes, for comparing and hashing (no UTF-8 check).
    fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            IdText::Inline { len, bytes } => &bytes[..*len as usize],
            IdText::Shared(text) => text.as_bytes(),
        }
    }

    /// The id for logs: its first characters only. The id is the session's bearer secret (any
    /// request carrying it acts as the client), so it is never logged whole.
    pub fn redacted(&self) -> Redacted<'_> {
        Redacted(self.as_str())
    }
}

impl PartialEq for ClientId {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for ClientId {}

impl std::hash::Hash for ClientId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl PartialOrd for ClientId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ClientId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

/// A client id shortened for logs (see [`ClientId::redacted`]); also for ids read from
/// storage that may not be valid.
#[derive(Clone, Copy)]
pub struct Redacted<'a>(pub &'a str);

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: String = self.0.chars().take(REDACTED_CHARS).collect();
        write!(f, "{shown}…")
    }
}

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Characters of a client id shown in logs: 36 of its 128 random bits, enough to tell clients
/// apart in a log, far too few to act as one.
const REDACTED_CHARS: usize = 6;

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientId({})", self.redacted())
    }
}

/// A position in one log: the `seq` of the last event at or before it. Seq 0 is "before the
/// first event"; the first event of every log has seq 1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seq(pub u64);

impl Seq {
    /// The seq right after this one (saturating: the last seq has no next, and arithmetic on
    /// seqs never wraps or panics, whatever a client sent).
    pub fn next(self) -> Seq {
        Seq(self.0.saturating_add(1))
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Which log an event lives in: a room, or a user's private inbox for direct messages.
///
/// On the wire both are the `room` field of an event: `lobby` or `@alice`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum LogId {
    /// A room's log.
    Room(RoomName),
    /// A user's inbox of direct messages, written `@user`.
    Inbox(UserName),
}

impl LogId {
    /// Parses `lobby` or `@alice`.
    pub fn parse(text: &str) -> Result<Self, Error> {
        match text.strip_prefix('@') {
            Some(user) => Ok(LogId::Inbox(UserName::parse(user)?)),
            None => Ok(LogId::Room(RoomName::parse(text)?)),
        }
    }

    /// Appends the wire form (`lobby` or `@alice`) to `out`, without the formatting machinery.
    pub fn push_to(&self, out: &mut String) {
        match self {
            LogId::Room(room) => out.push_str(room.as_str()),
            LogId::Inbox(user) => {
                out.push('@');
                out.push_str(user.as_str());
            }
        }
    }
}

impl fmt::Display for LogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogId::Room(room) => write!(f, "{room}"),
            LogId::Inbox(user) => write!(f, "@{user}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_accept_the_small_alphabet_only() {
        assert!(RoomName::parse("lobby-1_A").is_ok());
        for bad in ["", "has space", "é", "a/b", "@x", &"x".repeat(MAX_NAME_LEN + 1)] {
            let err = RoomName::parse(bad).unwrap_err();
            assert_eq!(err.code, ErrorCode::BadRequest, "{bad:?}");
        }
    }

    #[test]
    fn log_ids_round_trip_through_text() {
        for text in ["lobby", "@alice"] {
            let log = LogId::parse(text).unwrap();
            assert_eq!(log.to_string(), text);
            let mut pushed = String::new();
            log.push_to(&mut pushed);
            assert_eq!(pushed, text);
        }
    }

    #[test]
    fn client_ids_are_url_safe_and_follow_their_bytes() {
        let (a, b) = (ClientId::from_random([1; 16]), ClientId::from_random([2; 16]));
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 22);
        assert!(a.as_str().bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert!(ClientId::from_wire("").is_err());
        assert!(ClientId::from_wire(&"x".repeat(MAX_CLIENT_ID_LEN + 1)).is_err());
    }

    #[test]
    fn a_client_id_is_its_text_inline_or_shared() {
        use std::hash::BuildHasher as _;
        let hashes = std::collections::hash_map::RandomState::new();
        let made = ClientId::from_random([7; 16]);
        let heard = ClientId::from_wire(made.as_str()).unwrap();
        assert_eq!(made, heard);
        assert_eq!(hashes.hash_one(&made), hashes.hash_one(&heard));
        for len in [1, 21, 22, 23, MAX_CLIENT_ID_LEN] {
            let text = "k".repeat(len);
            let id = ClientId::from_wire(&text).unwrap();
            assert_eq!(id.as_str(), text);
            assert_eq!(id.to_string(), text);
            assert_eq!(id, ClientId::from_wire(&text).unwrap());
        }
        // Ordered and told apart by their text, across both forms.
        let (short, long) =
            (ClientId::from_wire("zz").unwrap(), ClientId::from_wire(&"a".repeat(40)).unwrap());
        assert!(short > long);
        assert!(ClientId::from_wire("ab").unwrap() < ClientId::from_wire("abc").unwrap());
        assert_ne!(
            ClientId::from_wire(&"b".repeat(22)).unwrap(),
            ClientId::from_wire(&"b".repeat(23)).unwrap()
        );
        assert_eq!(ClientId::nobody().as_str(), "");
    }
}
