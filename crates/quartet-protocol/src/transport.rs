//! The four techniques' names, the same everywhere: URLs, CLI values, JSON, metrics, bench ids.

use std::fmt;
use std::str::FromStr;

/// One of the four ways a client receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Ask every interval; the answer comes at once.
    ShortPoll = 0,
    /// Ask; the server holds the request until there is an event.
    LongPoll = 1,
    /// One endless `text/event-stream` response.
    Sse = 2,
    /// One full-duplex socket after an HTTP upgrade.
    Ws = 3,
}

impl Transport {
    /// All four, in teaching order.
    pub const ALL: [Transport; 4] =
        [Transport::ShortPoll, Transport::LongPoll, Transport::Sse, Transport::Ws];

    /// `short-poll`, `long-poll`, `sse` or `ws`.
    pub fn name(self) -> &'static str {
        match self {
            Transport::ShortPoll => "short-poll",
            Transport::LongPoll => "long-poll",
            Transport::Sse => "sse",
            Transport::Ws => "ws",
        }
    }

    /// Its position in [`Transport::ALL`] (for per-transport tables).
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Transport {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Transport::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("unknown transport {s:?}: expected short-poll, long-poll, sse or ws"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_index_the_table() {
        for (i, t) in Transport::ALL.into_iter().enumerate() {
            assert_eq!(t.name().parse::<Transport>().unwrap(), t);
            assert_eq!(t.index(), i);
        }
        assert!("websocket".parse::<Transport>().is_err());
    }
}
