//! Socket.IO clients (work in progress, issue 11): the wire codecs of its two layers, Engine.IO
//! v4 ([`engine`]: the handshake, heartbeat and polling/WebSocket carriage) and Socket.IO v5
//! ([`packet`]: namespaces, events, acks, binary attachments). The routes at `/socket.io/` that
//! map them onto the core come next; until then nothing serves them.

pub mod engine;
pub mod packet;
