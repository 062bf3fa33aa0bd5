//! Moderation: what a mute and a kick are, how a room's restrictions are held, and the notice
//! that carries a change to every node.
//!
//! A `host` or `moderator` of a room may mute a user (their publishes to the room are refused
//! `forbidden` for a while) or kick one (their clients leave the room now, with a presence
//! `leave` whose reason is `kicked`, and may not join again for a while). Three things make it
//! hold everywhere:
//!
//! 1. The engine keeps the [`Restriction`] ([`Engine::restrict`](crate::engine::Engine::restrict)),
//!    so it outlives the room's log in memory, a restart, and applies on every node.
//! 2. A `moderation` event goes into the room's log: the room sees who was muted or kicked, and
//!    every node holding the room hears of it the way it hears of any event, and updates its copy
//!    of the room's [`Restrictions`] (a node that loads the room later reads them from the engine).
//! 3. The same notice goes to the user's inbox, so each of their clients is told, also the ones
//!    no longer reading the room.

use std::collections::HashMap;

use quartet_protocol::{RoomName, UserName};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// What a restriction forbids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RestrictionKind {
    /// Publishing to the room.
    Mute,
    /// Joining (and so reading and publishing in) the room: what a kick leaves behind.
    Ban,
}

impl RestrictionKind {
    /// The name engines store.
    pub fn as_str(self) -> &'static str {
        match self {
            RestrictionKind::Mute => "mute",
            RestrictionKind::Ban => "ban",
        }
    }

    /// The kind of a stored name.
    pub fn parse(name: &str) -> Option<RestrictionKind> {
        match name {
            "mute" => Some(RestrictionKind::Mute),
            "ban" => Some(RestrictionKind::Ban),
            _ => None,
        }
    }
}

/// One user's restriction in one room, as engines keep it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restriction {
    /// Who.
    pub user: UserName,
    /// What is forbidden.
    pub kind: RestrictionKind,
    /// Until when, wall clock, Unix ms; 0 lifts the restriction.
    pub until_ms: u64,
}

/// A room's restrictions in force, as a node holds them (one per log, next to its ring).
#[derive(Debug, Default)]
pub struct Restrictions {
    users: HashMap<UserName, Until>,
}

#[derive(Debug, Default)]
struct Until {
    mute: u64,
    ban: u64,
}

impl Restrictions {
    /// Applies a restriction (or lifts it, with `until_ms` 0), dropping those that ended.
    pub fn set(&mut self, restriction: &Restriction, now_ms: u64) {
        let until = self.users.entry(restriction.user.clone()).or_default();
        match restriction.kind {
            RestrictionKind::Mute => until.mute = restriction.until_ms,
            RestrictionKind::Ban => until.ban = restriction.until_ms,
        }
        self.users.retain(|_, until| until.mute.max(until.ban) > now_ms);
    }

    /// Milliseconds before `user` may publish in the room again (muted or banned), if not now.
    pub fn silenced_for(&self, user: &UserName, now_ms: u64) -> Option<u64> {
        let until = self.users.get(user)?;
        let end = until.mute.max(until.ban);
        (end > now_ms).then(|| end - now_ms)
    }

    /// Milliseconds before `user` may join the room again, if not now.
    pub fn banned_for(&self, user: &UserName, now_ms: u64) -> Option<u64> {
        let ban = self.users.get(user)?.ban;
        (ban > now_ms).then(|| ban - now_ms)
    }
}

/// What a moderator did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Muted the user for `seconds`.
    Mute,
    /// Lifted the user's mute.
    Unmute,
    /// Made the user's clients leave, and kept them out for `seconds`.
    Kick,
}

/// The data of a `moderation` event: in the room's log (for the room and every node) and in
/// the user's inbox (for the user's clients), e.g.
/// `{"action":"kick","room":"lobby","user":"bob","by":"alice","seconds":600,"until":1764...}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// What was done.
    pub action: Action,
    /// In which room.
    pub room: RoomName,
    /// To whom.
    pub user: UserName,
    /// By whom.
    pub by: UserName,
    /// For how long (0 for `unmute`).
    pub seconds: u64,
    /// Until when, wall clock, Unix ms (0 for `unmute`).
    pub until: u64,
}

impl Notice {
    /// The restriction it sets or lifts.
    pub fn restriction(&self) -> Restriction {
        let kind = match self.action {
            Action::Mute | Action::Unmute => RestrictionKind::Mute,
            Action::Kick => RestrictionKind::Ban,
        };
        Restriction { user: self.user.clone(), kind, until_ms: self.until }
    }

    /// As an event's data.
    pub fn to_data(&self) -> Box<RawValue> {
        serde_json::value::to_raw_value(self).expect("a notice is plain JSON")
    }

    /// From an event's data; `None` if it is not a notice (never from a client: the event name
    /// is reserved).
    pub fn parse(data: &RawValue) -> Option<Notice> {
        serde_json::from_str(data.get()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> UserName {
        UserName::parse(name).unwrap()
    }

    #[test]
    fn restrictions_end_on_time_and_a_ban_also_silences() {
        let mut room = Restrictions::default();
        let (bob, eve) = (user("bob"), user("eve"));
        room.set(&Restriction { user: bob.clone(), kind: RestrictionKind::Mute, until_ms: 2_000 }, 1_000);
        room.set(&Restriction { user: eve.clone(), kind: RestrictionKind::Ban, until_ms: 5_000 }, 1_000);
        assert_eq!(room.silenced_for(&bob, 1_500), Some(500));
        assert_eq!(room.banned_for(&bob, 1_500), None, "a mute does not keep anyone out");
        assert_eq!(room.silenced_for(&bob, 2_000), None, "the mute ended");
        assert_eq!(room.banned_for(&eve, 4_000), Some(1_000));
        assert_eq!(room.silenced_for(&eve, 4_000), Some(1_000), "a kicked user cannot publish either");
        // Lifting.
        room.set(&Restriction { user: eve.clone(), kind: RestrictionKind::Ban, until_ms: 0 }, 4_000);
        assert_eq!(room.banned_for(&eve, 4_000), None);
        // Ended restrictions are dropped when the next one is set.
        room.set(&Restriction { user: user("zed"), kind: RestrictionKind::Mute, until_ms: 9_000 }, 3_000);
        assert_eq!(room.users.len(), 1);
    }

    #[test]
    fn a_notice_reads_back_from_its_data() {
        let notice = Notice {
            action: Action::Kick,
            room: RoomName::parse("lobby").unwrap(),
            user: user("bob"),
            by: user("alice"),
            seconds: 600,
            until: 1_700_000_600_000,
        };
        let data = notice.to_data();
        assert_eq!(
            data.get(),
            r#"{"action":"kick","room":"lobby","user":"bob","by":"alice","seconds":600,"until":1700000600000}"#
        );
        assert_eq!(Notice::parse(&data), Some(notice.clone()));
        assert_eq!(notice.restriction().kind, RestrictionKind::Ban);
        assert_eq!(Notice::parse(&RawValue::from_string(r#"{"action":"dance"}"#.into()).unwrap()), None);
    }
}
