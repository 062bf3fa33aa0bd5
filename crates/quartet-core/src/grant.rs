//! What a client may do: its role, and the rooms it may join.
//!
//! On a server started with `--auth-secret`, a client's grant comes from the token it registered
//! with (claims `role` and `rooms`); on an open server every client gets [`Grant::open`]. The
//! grant is kept with the session (and by durable engines with its record), so a restart or
//! another node of a cluster never widens it.

use quartet_protocol::{Error, RoomName};
use serde::{Deserialize, Serialize};

/// Most room patterns one grant may carry.
pub const MAX_ROOM_PATTERNS: usize = 64;

/// What a client may do besides reading the rooms it may join.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Joins and reads; never publishes nor sends direct messages.
    Viewer,
    /// Publishes and sends direct messages too (the default).
    #[default]
    Member,
    /// A member who may also moderate the rooms it may join.
    Host,
    /// Same rights as a host, named apart for the people who use them.
    Moderator,
}

impl Role {
    /// Every role, in order of rights.
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Member, Role::Host, Role::Moderator];

    /// The role's name, as in tokens.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Member => "member",
            Role::Host => "host",
            Role::Moderator => "moderator",
        }
    }

    /// Parses a role's name.
    pub fn parse(name: &str) -> Result<Role, Error> {
        Role::ALL.into_iter().find(|role| role.as_str() == name).ok_or_else(|| {
            Error::bad_request(format!("unknown role {name:?}: one of viewer, member, host, moderator"))
        })
    }

    /// Whether it may publish and send direct messages.
    pub fn may_publish(self) -> bool {
        self != Role::Viewer
    }

    /// Whether it may mute, unmute and kick (in the rooms it may join).
    pub fn may_moderate(self) -> bool {
        matches!(self, Role::Host | Role::Moderator)
    }
}

/// A client's rights.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// What it may do.
    #[serde(default)]
    pub role: Role,
    /// The rooms it may join: names, or `prefix*` patterns; `None`: every room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rooms: Option<Vec<String>>,
}

impl Grant {
    /// Every room, as a member: a client of a server without `--auth-secret`.
    pub fn open() -> Grant {
        Grant { role: Role::Member, rooms: None }
    }

    /// A grant of `role` in `rooms` (`None`: every room). Each pattern is a room name, or a
    /// prefix of one followed by `*` (`live-*`; `*` alone is every room).
    pub fn new(role: Role, rooms: Option<Vec<String>>) -> Result<Grant, Error> {
        if let Some(patterns) = &rooms {
            if patterns.len() > MAX_ROOM_PATTERNS {
                return Err(Error::bad_request(format!(
                    "at most {MAX_ROOM_PATTERNS} room patterns, got {}",
                    patterns.len()
                )));
            }
            for pattern in patterns {
                check_pattern(pattern)?;
            }
        }
        Ok(Grant { role, rooms })
    }

    /// The room patterns (`None`: every room).
    pub fn rooms(&self) -> Option<&[String]> {
        self.rooms.as_deref()
    }

    /// Whether it may join `room`.
    pub fn may_join(&self, room: &RoomName) -> bool {
        let Some(patterns) = &self.rooms else { return true };
        patterns.iter().any(|pattern| match pattern.strip_suffix('*') {
            Some(prefix) => room.as_str().starts_with(prefix),
            None => pattern == room.as_str(),
        })
    }

    /// The grant as stored beside a session (JSON).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a grant serialises")
    }

    /// A stored grant; `None` or a blank text (a record from before grants) is the open grant.
    pub fn from_stored(text: Option<&str>) -> Result<Grant, Error> {
        match text.map(str::trim).filter(|t| !t.is_empty()) {
            None => Ok(Grant::open()),
            Some(text) => {
                let grant: Grant = serde_json::from_str(text)
                    .map_err(|e| Error::bad_request(format!("a stored grant is unreadable: {e}")))?;
                Grant::new(grant.role, grant.rooms)
            }
        }
    }
}

/// A room name ([`RoomName::parse`] says what one is), or a prefix of one followed by `*`.
fn check_pattern(pattern: &str) -> Result<(), Error> {
    let valid = match pattern.strip_suffix('*') {
        Some(prefix) => prefix.is_empty() || RoomName::parse(prefix).is_ok(),
        None => RoomName::parse(pattern).is_ok(),
    };
    if !valid {
        return Err(Error::bad_request(format!(
            "a room pattern is a room name or a prefix followed by *, got {pattern:?}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use quartet_protocol::limits::MAX_NAME_LEN;

    use super::*;

    fn room(name: &str) -> RoomName {
        RoomName::parse(name).unwrap()
    }

    #[test]
    fn patterns_match_names_and_prefixes_only() {
        let grant = Grant::new(Role::Viewer, Some(vec!["lobby".into(), "live-*".into()])).unwrap();
        assert!(grant.may_join(&room("lobby")));
        assert!(grant.may_join(&room("live-1")));
        assert!(grant.may_join(&room("live-")));
        assert!(!grant.may_join(&room("lobby2")));
        assert!(!grant.may_join(&room("live")));
        assert!(!grant.may_join(&room("other")));
        assert!(Grant::new(Role::Member, Some(vec!["*".into()])).unwrap().may_join(&room("any")));
        assert!(!Grant::new(Role::Member, Some(Vec::new())).unwrap().may_join(&room("any")));
        assert!(Grant::open().may_join(&room("any")));
    }

    #[test]
    fn bad_patterns_and_roles_are_refused() {
        for bad in ["", "a b", "live-**", "*live", "x".repeat(MAX_NAME_LEN + 1).as_str()] {
            assert!(Grant::new(Role::Member, Some(vec![bad.to_owned()])).is_err(), "{bad:?}");
        }
        assert!(Role::parse("admin").is_err());
        assert_eq!(Role::parse("host").unwrap(), Role::Host);
    }

    #[test]
    fn a_grant_survives_storage_and_old_records_are_open() {
        let grant = Grant::new(Role::Host, Some(vec!["live-*".into()])).unwrap();
        assert_eq!(Grant::from_stored(Some(&grant.to_json())).unwrap(), grant);
        assert_eq!(Grant::from_stored(None).unwrap(), Grant::open());
        assert_eq!(Grant::from_stored(Some("")).unwrap(), Grant::open());
        assert!(Grant::from_stored(Some(r#"{"role":"viewer","rooms":["a b"]}"#)).is_err());
    }
}
