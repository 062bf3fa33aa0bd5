//! # quartet-redis: several quartet nodes as one server
//!
//! `--redis redis://HOST:PORT[/DB]` makes every `quartet serve` started with the same URL and
//! `--redis-prefix` one cluster: any node serves any request of any client. Redis holds what
//! must be agreed (keys under the prefix `P`):
//!
//! | key | what |
//! |---|---|
//! | `P:epoch` | the store's lifetime, made once |
//! | `P:seq:{log}` | the last seq of a log (`INCR`) |
//! | `P:log:{log}` | the log's events, a stream whose entry ids are `{seq}-0`, trimmed to what retention keeps |
//! | `P:ann:{log}` | channel: each append, with the whole event, for the nodes that hold the log |
//! | `P:ack:{client}:{id}` | the seq acked for a client's message id (idempotent resends, any node) |
//! | `P:session:{client}` | a session: user, inbox floor, rooms and floors |
//! | `P:seen` | sorted set: each session's last sign of life (ms), for cluster-wide expiry |
//! | `P:members:{room}` | set: the clients in a room, for cluster-wide online counts |
//! | `P:restrict:{room}` | hash: `mute:{user}` / `ban:{user}` → until (ms); gone when the last ends |
//! | `P:claim:{task}` | a one-time task (a kick's leave) claimed by one node, kept an hour |
//! | `P:bases` | the last cursor base id given (`INCR`) |
//! | `P:base:{id}` | a cursor base: its user, a newline, its positions as a cursor; kept [`BASE_TTL`] |
//! | `P:sessions` | channel: "this session changed", so nodes holding a copy reload it |
//!
//! An append is one atomic step (a Lua script: the ack check, `INCR`, `XADD`, the ack, the
//! announcement), so an ack means "in Redis". The announcement carries the encoded event, so a
//! node that holds the log inserts it into its ring without a round trip; fan-out to that
//! node's readers stays local: one Redis message per node per event, whatever the room's size.
//! A node subscribes only to the logs it holds. A seq it missed is filled from the stream by
//! the hub.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use quartet_core::engine::{Announcement, BoxFuture, CursorBase, Health, History, SessionRecord, wall_ms};
use quartet_core::entry::{Draft, Entry, StoredEvent, stored_scope};
use quartet_core::moderation::{Restriction, RestrictionKind};
use quartet_core::{Engine, Grant};
use quartet_protocol::{BaseId, ClientId, Cursor, Epoch, Error, ErrorCode, LogId, RoomName, Seq, UserName};
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSubSink};
use serde_json::value::RawValue;
use tokio::sync::mpsc;

/// How long a message id's ack is remembered for resends.
pub const ACK_TTL: Duration = Duration::from_secs(24 * 3600);

/// How long a session's keys live without a sign of life: a safety net, far past the timeout
/// after which the cluster expires it anyway.
pub const SESSION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// How long one Redis call may take before the store counts as failing.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);

const APPEND: &str = r#"
if KEYS[3] ~= '' then
  local acked = redis.call('GET', KEYS[3])
  if acked then return tonumber(acked) end
end
local seq = redis.call('INCR', KEYS[1])
local fields = {'e', ARGV[2], 'f', ARGV[3], 'c', ARGV[4], 's', ARGV[5], 'd', ARGV[6], 't', ARGV[7]}
if ARGV[10] ~= '' then
  redis.call('XADD', KEYS[2], 'MAXLEN', '=', ARGV[10], seq .. '-0', unpack(fields))
else
  redis.call('XADD', KEYS[2], seq .. '-0', unpack(fields))
end
if KEYS[3] ~= '' then redis.call('SET', KEYS[3], seq, 'EX', ARGV[9]) end
redis.call('PUBLISH', ARGV[1], seq .. ' ' .. ARGV[8])
return seq
"#;

/// How long Redis keeps a cursor base. Redis retention is by count, not age, so this is a
/// time chosen: the SQLite default retention (30 days), plus the day within which a reader
/// renews its base.
pub const BASE_TTL: Duration = Duration::from_secs(31 * 24 * 3600);

/// Deletes every key under `prefix` (a test's or a bench's cluster when it is done).
pub async fn delete_prefix(url: &str, prefix: &str) -> Result<u64, String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let mut conn = client.get_multiplexed_async_connection().await.map_err(|e| e.to_string())?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    if keys.is_empty() {
        return Ok(0);
    }
    redis::cmd("DEL").arg(keys).query_async(&mut conn).await.map_err(|e| e.to_string())
}

/// For test suites: the Redis they run against, `QUARTET_TEST_REDIS` or the local default.
pub fn test_redis_url() -> String {
    std::env::var("QUARTET_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// For test suites: [`test_redis_url`] if a Redis answers there. If none does, prints a
/// "skipped" line and returns `None`, unless `QUARTET_REQUIRE_REDIS=1` (as `.ci/run` sets):
/// then it panics, so that CI never skips a Redis test silently. Blocks for one round trip.
pub fn test_redis() -> Option<String> {
    let url = test_redis_url();
    match delete_prefix_blocking(&url, "quartet-test-probe") {
        Ok(_) => Some(url),
        Err(error) if std::env::var("QUARTET_REQUIRE_REDIS").as_deref() == Ok("1") => {
            panic!("QUARTET_REQUIRE_REDIS=1 and no Redis at {url}: {error}")
        }
        Err(error) => {
            println!("skipped: needs Redis at {url} ({error})");
            None
        }
    }
}

/// [`delete_prefix`] for code that cannot wait asynchronously (a test's `Drop`).
pub fn delete_prefix_blocking(url: &str, prefix: &str) -> Result<u64, String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let mut conn = client.get_connection().map_err(|e| e.to_string())?;
    let keys: Vec<String> =
        redis::cmd("KEYS").arg(format!("{prefix}:*")).query(&mut conn).map_err(|e| e.to_string())?;
    if keys.is_empty() {
        return Ok(0);
    }
    redis::cmd("DEL").arg(keys).query(&mut conn).map_err(|e| e.to_string())
}

/// See the crate doc.
pub struct RedisEngine {
    prefix: String,
    epoch: Epoch,
    /// Commands; reconnects by itself after Redis comes back.
    conn: ConnectionManager,
    /// The subscription connection's sink while it is up (see `subscribe_forever`).
    sink: Arc<Mutex<Option<PubSubSink>>>,
    append: redis::Script,
    /// Why the last call failed, until one succeeds.
    failing: Arc<Mutex<Option<String>>>,
    /// Set while the subscription is down.
    deaf: Arc<Mutex<Option<String>>>,
    announcements: Mutex<Option<mpsc::UnboundedReceiver<Announcement>>>,
    /// Channels of the logs this node holds: subscribed again after a reconnect.
    watched: Arc<Mutex<HashSet<String>>>,
    /// Events kept per log (older ones are trimmed as new ones are appended); `None`: all.
    retain_events: Option<u64>,
    /// Round trips to Redis made by this node.
    calls: std::sync::atomic::AtomicU64,
    /// Announcements (appends of any node) this node received.
    heard: Arc<std::sync::atomic::AtomicU64>,
}

fn unavailable(why: impl std::fmt::Display) -> Error {
    Error::new(ErrorCode::Unavailable, format!("the store cannot take writes: redis: {why}"))
}

impl RedisEngine {
    /// Connects to `url` and joins the cluster of the nodes that use `prefix`.
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisEngine, String> {
        let client = redis::Client::open(url).map_err(|e| format!("--redis {url}: {e}"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CALL_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT))
            .set_number_of_retries(1);
        let mut conn = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(|e| format!("cannot connect to redis at {url}: {e}"))?;
        let epoch_key = format!("{prefix}:epoch");
        let fresh = format!("{:x}", rand::random::<u64>());
        let _: bool = conn.set_nx(&epoch_key, &fresh).await.map_err(|e| e.to_string())?;
        let hex: String = conn.get(&epoch_key).await.map_err(|e| e.to_string())?;
        let epoch = u64::from_str_radix(&hex, 16).map_err(|_| format!("{epoch_key} is not hex: {hex:?}"))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let heard: Arc<std::sync::atomic::AtomicU64> = Arc::default();
        let follower = Follower {
            client,
            prefix: prefix.to_owned(),
            heard: heard.clone(),
            tx,
            sink: Arc::default(),
            deaf: Arc::default(),
            watched: Arc::default(),
        };
        // The first subscription is made before returning, so a node that starts misses nothing.
        let (sink, stream) =
            follower.subscribe().await.map_err(|e| format!("cannot subscribe at {url}: {e}"))?;
        *follower.sink.lock().expect("sink lock") = Some(sink);
        let (sink, deaf, watched) = (follower.sink.clone(), follower.deaf.clone(), follower.watched.clone());
        tokio::spawn(follower.run(stream));
        let failing: Arc<Mutex<Option<String>>> = Arc::default();
        tokio::spawn(probe(conn.clone(), Arc::downgrade(&failing)));
        Ok(RedisEngine {
            prefix: prefix.to_owned(),
            epoch: Epoch(epoch),
            conn,
            sink,
            append: redis::Script::new(APPEND),
            failing,
            deaf,
            announcements: Mutex::new(Some(rx)),
            watched,
            retain_events: None,
            calls: Default::default(),
            heard,
        })
    }

    /// Keeps at most `events` events per log: each append trims its log's stream to that many
    /// (exactly, in the same script), and a reader behind what is left gets a `retention` gap.
    /// `None` (the default) keeps everything. Age limits are not applied in Redis: a stream's
    /// entry ids are seqs, not times.
    pub fn retain_events(mut self, events: Option<u64>) -> RedisEngine {
        self.retain_events = events;
        self
    }

    fn key(&self, kind: &str, name: &str) -> String {
        format!("{}:{kind}:{name}", self.prefix)
    }

    /// Runs one call with a timeout, recording the store's health from its outcome.
    async fn call<T>(
        &self,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Error> {
        let outcome = match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!("no answer within {CALL_TIMEOUT:?}")),
        };
        let mut failing = self.failing.lock().expect("health lock");
        match outcome {
            Ok(value) => {
                if failing.take().is_some() {
                    tracing::info!("redis takes writes again");
                }
                Ok(value)
            }
            Err(why) => {
                if failing.is_none() {
                    tracing::error!(%why, "redis cannot take writes: refusing publishes until it can");
                }
                *failing = Some(why.clone());
                Err(unavailable(why))
            }
        }
    }
}

/// The subscription: appends of watched logs and session changes, handed to the hub; after
/// Redis went away, subscribed again (every watched log) and a `Resync` sent, since what was
/// announced meanwhile is lost.
struct Follower {
    client: redis::Client,
    prefix: String,
    heard: Arc<std::sync::atomic::AtomicU64>,
    tx: mpsc::UnboundedSender<Announcement>,
    sink: Arc<Mutex<Option<PubSubSink>>>,
    deaf: Arc<Mutex<Option<String>>>,
    watched: Arc<Mutex<HashSet<String>>>,
}

/// Pause between attempts to subscribe again.
const RESUBSCRIBE_EVERY: Duration = Duration::from_millis(250);

impl Follower {
    async fn subscribe(&self) -> redis::RedisResult<(PubSubSink, redis::aio::PubSubStream)> {
        let pubsub = tokio::time::timeout(CALL_TIMEOUT, self.client.get_async_pubsub())
            .await
            .map_err(|_| redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)))??;
        let (mut sink, stream) = pubsub.split();
        let mut channels: Vec<String> = self.watched.lock().expect("watched lock").iter().cloned().collect();
        channels.push(format!("{}:sessions", self.prefix));
        sink.subscribe(channels).await?;
        Ok((sink, stream))
    }

    async fn run(self, mut stream: redis::aio::PubSubStream) {
        loop {
            self.read(&mut stream).await;
            *self.sink.lock().expect("sink lock") = None;
            if self.tx.is_closed() {
                return; // the hub is gone
            }
            *self.deaf.lock().expect("deaf lock") = Some("the subscription to redis broke".into());
            tracing::error!("redis subscription broke: subscribing again");
            stream = loop {
                tokio::time::sleep(RESUBSCRIBE_EVERY).await;
                if self.tx.is_closed() {
                    return;
                }
                if let Ok((sink, stream)) = self.subscribe().await {
                    *self.sink.lock().expect("sink lock") = Some(sink);
                    break stream;
                }
            };
            *self.deaf.lock().expect("deaf lock") = None;
            tracing::info!("redis subscription back: reading what was missed");
            if self.tx.send(Announcement::Resync).is_err() {
                return;
            }
        }
    }

    /// Hands every message to the hub until the subscription ends.
    async fn read(&self, stream: &mut redis::aio::PubSubStream) {
        let sessions = format!("{}:sessions", self.prefix);
        let ann = format!("{}:ann:", self.prefix);
        while let Some(message) = stream.next().await {
            let channel = message.get_channel_name();
            let payload = message.get_payload_bytes();
            self.heard.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let announcement = if channel == sessions {
                std::str::from_utf8(payload)
                    .ok()
                    .and_then(|c| ClientId::from_wire(c).ok())
                    .map(Announcement::SessionChanged)
            } else if let Some(log) = channel.strip_prefix(&ann) {
                LogId::parse(log)
                    .ok()
                    .and_then(|log| decode_announcement(&log, payload))
                    .map(Announcement::Appended)
            } else {
                None
            };
            if let Some(announcement) = announcement
                && self.tx.send(announcement).is_err()
            {
                return;
            }
        }
    }
}

/// While calls fail, pings Redis every [`RESUBSCRIBE_EVERY`], so the node reports itself
/// healthy again as soon as Redis answers, even with no traffic. Ends with the engine.
async fn probe(mut conn: ConnectionManager, failing: std::sync::Weak<Mutex<Option<String>>>) {
    loop {
        tokio::time::sleep(RESUBSCRIBE_EVERY).await;
        let Some(failing) = failing.upgrade() else { return };
        if failing.lock().expect("health lock").is_none() {
            continue;
        }
        let pong =
            tokio::time::timeout(CALL_TIMEOUT, redis::cmd("PING").query_async::<String>(&mut conn)).await;
        if matches!(pong, Ok(Ok(_))) {
            *failing.lock().expect("health lock") = None;
            tracing::info!("redis answers again");
        }
    }
}

/// `{seq} [event, from, client, scope, ts, data]`.
fn decode_announcement(log: &LogId, payload: &[u8]) -> Option<Arc<Entry>> {
    let text = std::str::from_utf8(payload).ok()?;
    let (seq, rest) = text.split_once(' ')?;
    let seq: u64 = seq.parse().ok()?;
    let (event, from, from_client, scope, ts, data): (String, String, String, i64, u64, Box<RawValue>) =
        serde_json::from_str(rest).ok()?;
    Entry::from_stored(
        log,
        StoredEvent { seq, event: &event, from: &from, from_client: &from_client, scope, data, ts },
    )
}

impl Engine for RedisEngine {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn durable(&self) -> bool {
        true
    }

    fn epoch(&self) -> Epoch {
        self.epoch
    }

    fn clustered(&self) -> bool {
        true
    }

    fn metrics(&self) -> Vec<(&'static str, &'static str, u64)> {
        use std::sync::atomic::Ordering::Relaxed;
        vec![
            (
                "quartet_redis_calls_total",
                "Round trips to Redis made by this node.",
                self.calls.load(Relaxed),
            ),
            (
                "quartet_redis_announcements_total",
                "Messages this node received from Redis (one per append to a log it holds, whatever the number of its readers).",
                self.heard.load(Relaxed),
            ),
        ]
    }

    fn health(&self) -> Health {
        let failing = self.failing.lock().expect("health lock").clone();
        match failing.or_else(|| self.deaf.lock().expect("deaf lock").clone()) {
            None => Health::Ok,
            Some(why) => Health::Failing(format!("redis: {why}")),
        }
    }

    fn append<'a>(&'a self, draft: &'a Draft) -> BoxFuture<'a, Result<Seq, Error>> {
        Box::pin(async move {
            let log = draft.log.to_string();
            let ack = match &draft.id {
                Some(id) => format!("{}:ack:{}:{id}", self.prefix, draft.from_client),
                None => String::new(),
            };
            let scope = stored_scope(draft);
            let rest = serde_json::to_string(&(
                draft.event.as_str(),
                draft.from.as_str(),
                draft.from_client.as_str(),
                scope,
                draft.ts,
                &draft.data,
            ))
            .map_err(|e| unavailable(format!("cannot encode: {e}")))?;
            let mut conn = self.conn.clone();
            let mut invocation = self.append.prepare_invoke();
            invocation
                .key(self.key("seq", &log))
                .key(self.key("log", &log))
                .key(ack)
                .arg(self.key("ann", &log))
                .arg(draft.event.as_str())
                .arg(draft.from.as_str())
                .arg(draft.from_client.as_str())
                .arg(scope)
                .arg(draft.data.get())
                .arg(draft.ts)
                .arg(rest)
                .arg(ACK_TTL.as_secs())
                .arg(self.retain_events.map(|n| n.to_string()).unwrap_or_default());
            let seq: u64 = self.call(invocation.invoke_async(&mut conn)).await?;
            Ok(Seq(seq))
        })
    }

    fn head<'a>(&'a self, log: &'a LogId) -> BoxFuture<'a, Result<Seq, Error>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let head: Option<u64> = self.call(conn.get(self.key("seq", &log.to_string()))).await?;
            Ok(Seq(head.unwrap_or(0)))
        })
    }

    fn read<'a>(&'a self, log: &'a LogId, after: Seq, limit: usize) -> BoxFuture<'a, Result<History, Error>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let key = self.key("log", &log.to_string());
            let from = format!("({}-0", after.0);
            let reply: redis::streams::StreamRangeReply =
                self.call(conn.xrange_count(key, from, "+", limit)).await?;
            let mut entries = Vec::with_capacity(reply.ids.len());
            for id in reply.ids {
                let seq = id.id.split_once('-').and_then(|(s, _)| s.parse::<u64>().ok());
                let field = |name: &str| id.get::<String>(name);
                let built = (|| {
                    let (event, from, from_client) = (field("e")?, field("f")?, field("c")?);
                    Entry::from_stored(
                        log,
                        StoredEvent {
                            seq: seq?,
                            event: &event,
                            from: &from,
                            from_client: &from_client,
                            scope: field("s")?.parse().ok()?,
                            data: RawValue::from_string(field("d")?).ok()?,
                            ts: field("t")?.parse().ok()?,
                        },
                    )
                })();
                match built {
                    Some(entry) => entries.push(entry),
                    None => tracing::warn!(%log, id = id.id, "skipping a stored event quartet cannot read"),
                }
            }
            Ok(History::Events(entries))
        })
    }

    fn save_session<'a>(&'a self, s: &'a SessionRecord) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let key = self.key("session", s.client.as_str());
            let rooms: serde_json::Map<String, serde_json::Value> =
                s.rooms.iter().map(|(room, floor)| (room.to_string(), floor.0.into())).collect();
            let mut pipe = redis::pipe();
            pipe.atomic()
                .hset_multiple(
                    &key,
                    &[
                        ("user", s.user.to_string()),
                        ("inbox_from", s.inbox_from.0.to_string()),
                        ("rooms", serde_json::Value::Object(rooms).to_string()),
                        ("access", s.grant.to_json()),
                    ],
                )
                .ignore()
                .expire(&key, SESSION_TTL.as_secs() as i64)
                .ignore()
                .zadd(format!("{}:seen", self.prefix), s.client.as_str(), s.last_seen_ms)
                .ignore()
                .publish(format!("{}:sessions", self.prefix), s.client.as_str())
                .ignore();
            let mut conn = self.conn.clone();
            self.call(pipe.query_async::<()>(&mut conn)).await
        })
    }

    fn delete_session<'a>(&'a self, client: &'a ClientId) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let mut pipe = redis::pipe();
            pipe.atomic()
                .del(self.key("session", client.as_str()))
                .ignore()
                .zrem(format!("{}:seen", self.prefix), client.as_str())
                .ignore()
                .publish(format!("{}:sessions", self.prefix), client.as_str())
                .ignore();
            let mut conn = self.conn.clone();
            self.call(pipe.query_async::<()>(&mut conn)).await
        })
    }

    fn touch_sessions<'a>(&'a self, seen: &'a [(ClientId, u64)]) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let mut pipe = redis::pipe();
            let key = format!("{}:seen", self.prefix);
            for (client, at) in seen {
                // GT: a node that saw the client earlier never moves its last sign of life back.
                pipe.cmd("ZADD").arg(&key).arg("GT").arg(*at).arg(client.as_str()).ignore();
            }
            let mut conn = self.conn.clone();
            self.call(pipe.query_async::<()>(&mut conn)).await
        })
    }

    fn load_session<'a>(
        &'a self,
        client: &'a ClientId,
    ) -> BoxFuture<'a, Result<Option<SessionRecord>, Error>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let fields: std::collections::HashMap<String, String> =
                self.call(conn.hgetall(self.key("session", client.as_str()))).await?;
            if fields.is_empty() {
                return Ok(None);
            }
            let last_seen: Option<f64> =
                self.call(conn.zscore(format!("{}:seen", self.prefix), client.as_str())).await?;
            let Some(user) = fields.get("user").and_then(|u| UserName::parse(u).ok()) else {
                return Ok(None);
            };
            // A grant that cannot be read: no session (never widen a client's rights).
            let Ok(grant) = Grant::from_stored(fields.get("access").map(String::as_str)) else {
                tracing::warn!(client = %client.redacted(), "a stored session's grant is unreadable; ignoring it");
                return Ok(None);
            };
            let inbox_from = Seq(fields.get("inbox_from").and_then(|v| v.parse().ok()).unwrap_or(0));
            let rooms = fields
                .get("rooms")
                .and_then(|r| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(r).ok())
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(room, floor)| Some((RoomName::parse(&room).ok()?, Seq(floor.as_u64()?))))
                .collect();
            Ok(Some(SessionRecord {
                client: client.clone(),
                user,
                grant,
                inbox_from,
                rooms,
                last_seen_ms: last_seen.unwrap_or(0.0) as u64,
                acks: Vec::new(),
            }))
        })
    }

    fn announcements(&self) -> Option<mpsc::UnboundedReceiver<Announcement>> {
        self.announcements.lock().expect("announcements lock").take()
    }

    fn watch<'a>(&'a self, log: &'a LogId) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let channel = self.key("ann", &log.to_string());
            if !self.watched.lock().expect("watched lock").insert(channel.clone()) {
                return Ok(());
            }
            // While the subscription is down, the reconnect subscribes it with the others.
            let sink = self.sink.lock().expect("sink lock").clone();
            let Some(mut sink) = sink else { return Err(unavailable("the subscription to redis is down")) };
            let subscribed = self.call(sink.subscribe(&channel)).await;
            if subscribed.is_err() {
                self.watched.lock().expect("watched lock").remove(&channel);
            }
            subscribed
        })
    }

    fn unwatch(&self, log: &LogId) {
        let channel = self.key("ann", &log.to_string());
        if !self.watched.lock().expect("watched lock").remove(&channel) {
            return;
        }
        if let Some(mut sink) = self.sink.lock().expect("sink lock").clone() {
            tokio::spawn(async move {
                let _ = sink.unsubscribe(&channel).await;
            });
        }
    }

    fn stale(&self, before_ms: u64) -> BoxFuture<'_, Result<Vec<ClientId>, Error>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let key = format!("{}:seen", self.prefix);
            let stale: Vec<String> = self.call(conn.zrangebyscore_limit(key, 0, before_ms, 0, 1000)).await?;
            Ok(stale.iter().filter_map(|c| ClientId::from_wire(c).ok()).collect())
        })
    }

    fn last_seen<'a>(&'a self, client: &'a ClientId) -> BoxFuture<'a, Result<Option<u64>, Error>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let seen: Option<f64> =
                self.call(conn.zscore(format!("{}:seen", self.prefix), client.as_str())).await?;
            Ok(seen.map(|s| s as u64))
        })
    }

    fn restrict<'a>(&'a self, room: &'a RoomName, r: &'a Restriction) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let key = self.key("restrict", room.as_str());
            let field = format!("{}:{}", r.kind.as_str(), r.user);
            let mut conn = self.conn.clone();
            let mut pipe = redis::pipe();
            pipe.atomic();
            if r.until_ms > 0 {
                pipe.hset(&key, &field, r.until_ms).ignore();
            } else {
                pipe.hdel(&key, &field).ignore();
            }
            pipe.hgetall(&key);
            let (kept,): (std::collections::HashMap<String, u64>,) =
                self.call(pipe.query_async(&mut conn)).await?;
            // The hash lives as long as its longest restriction; ended ones are dropped now.
            let now = wall_ms();
            let ended: Vec<&String> =
                kept.iter().filter(|(_, until)| **until <= now).map(|(f, _)| f).collect();
            let mut tidy = redis::pipe();
            if !ended.is_empty() {
                tidy.hdel(&key, ended).ignore();
            }
            match kept.values().copied().max().filter(|last| *last > now) {
                Some(last) => tidy.pexpire_at(&key, last as i64).ignore(),
                None => tidy.del(&key).ignore(),
            };
            self.call(tidy.query_async::<()>(&mut conn)).await
        })
    }

    fn restrictions<'a>(
        &'a self,
        room: &'a RoomName,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<Vec<Restriction>, Error>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let kept: std::collections::HashMap<String, u64> =
                self.call(conn.hgetall(self.key("restrict", room.as_str()))).await?;
            Ok(kept
                .into_iter()
                .filter(|(_, until)| *until > now_ms)
                .filter_map(|(field, until_ms)| {
                    let (kind, user) = field.split_once(':')?;
                    let kind = RestrictionKind::parse(kind)?;
                    Some(Restriction { user: UserName::parse(user).ok()?, kind, until_ms })
                })
                .collect())
        })
    }

    fn save_base<'a>(&'a self, base: &'a CursorBase) -> BoxFuture<'a, Result<Option<BaseId>, Error>> {
        let value = format!("{}\n{}", base.user, Cursor::new(self.epoch, base.positions.clone()).encode());
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let id: u64 = self.call(conn.incr(format!("{}:bases", self.prefix), 1)).await?;
            let options =
                redis::SetOptions::default().with_expiration(redis::SetExpiry::EX(BASE_TTL.as_secs()));
            let _: () =
                self.call(conn.set_options(self.key("base", &id.to_string()), value, options)).await?;
            Ok(Some(BaseId(id)))
        })
    }

    fn load_base<'a>(&'a self, id: BaseId) -> BoxFuture<'a, Result<Option<CursorBase>, Error>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let value: Option<String> = self.call(conn.get(self.key("base", &id.0.to_string()))).await?;
            Ok(value.and_then(|value| {
                let (user, cursor) = value.split_once('\n')?;
                Some(CursorBase {
                    user: UserName::parse(user).ok()?,
                    positions: Cursor::decode(cursor).ok()?.positions,
                })
            }))
        })
    }

    fn claim<'a>(&'a self, what: &'a str) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let options = redis::SetOptions::default()
                .conditional_set(redis::ExistenceCheck::NX)
                .with_expiration(redis::SetExpiry::EX(3600));
            let set: Option<String> =
                self.call(conn.set_options(self.key("claim", what), 1, options)).await?;
            Ok(set.is_some())
        })
    }

    fn claim_expiry<'a>(&'a self, client: &'a ClientId) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let removed: i64 = self.call(conn.zrem(format!("{}:seen", self.prefix), client.as_str())).await?;
            Ok(removed == 1)
        })
    }

    fn presence<'a>(
        &'a self,
        room: &'a RoomName,
        client: &'a ClientId,
        present: bool,
    ) -> BoxFuture<'a, Result<Option<usize>, Error>> {
        Box::pin(async move {
            let key = self.key("members", room.as_str());
            let mut pipe = redis::pipe();
            pipe.atomic();
            if present {
                pipe.sadd(&key, client.as_str()).ignore();
            } else {
                pipe.srem(&key, client.as_str()).ignore();
            }
            pipe.scard(&key);
            let mut conn = self.conn.clone();
            let (count,): (usize,) = self.call(pipe.query_async(&mut conn)).await?;
            Ok(Some(count))
        })
    }

    fn online<'a>(&'a self, room: &'a RoomName) -> BoxFuture<'a, Result<Option<usize>, Error>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let count: usize = self.call(conn.scard(self.key("members", room.as_str()))).await?;
            Ok(Some(count))
        })
    }
}
