//! The JSON bodies of the HTTP routes that are neither commands nor events.

use serde::{Deserialize, Serialize};

/// What `POST /v1/clients` answers (201).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// The new client's id: the session's secret for every later request.
    pub client: String,
    /// Its user name.
    pub name: String,
    /// Where its reading starts.
    pub cursor: String,
    /// How often it must show life, in ms.
    pub heartbeat_ms: u64,
    /// After how much silence it is removed, in ms.
    pub timeout_ms: u64,
}

/// What `POST /v1/clients` takes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewClient {
    /// The user name (`guest` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A cursor of an earlier client (one that expired, or from before a restart): the new
    /// client rejoins the rooms it names and reads on from its positions, so it gets exactly
    /// what it missed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// What `POST /v1/clients/{client}/commands` answers: one reply per command, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replies {
    /// The replies.
    pub replies: Vec<crate::Reply>,
}

/// What `GET /v1/rooms/{room}` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomInfo {
    /// The room.
    pub room: String,
    /// Clients in it on this node.
    pub online: usize,
    /// Its last seq.
    pub seq: u64,
}
