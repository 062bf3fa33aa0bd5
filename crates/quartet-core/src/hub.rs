//! The hub: the one entry point transports call. It owns the logs and the sessions and applies
//! the rules (membership, limits, idempotency, presence, expiry).
//!
//! Cloning a `Hub` is cheap (an `Arc`); every transport handler holds one.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quartet_protocol::{
    ClientId, Command, Cursor, Error, ErrorCode, EventName, LogId, Registration, Reply, RoomInfo, RoomName,
    Scope, Seq, UserName, parse_commands,
};
use serde_json::value::RawValue;
use tokio::time::Instant;

use crate::config::{Config, Stats};
use crate::engine::{Announcement, Engine, History, SessionRecord, wall_ms};
use crate::entry::{Draft, Entry};
use crate::grant::Grant;
use crate::limits::{
    MAX_CLIENTS, MAX_CLIENTS_PER_USER, MAX_EVENTS_PER_BATCH, MAX_LOGS, MAX_READERS_PER_CLIENT,
    MAX_ROOMS_PER_CLIENT,
};
use crate::log::Log;
use crate::moderation::{Action, Notice};
use crate::position::Base;
use crate::reader::Reader;
use crate::session::Session;

/// A log nobody has read for this long is dropped from memory (its seq counter stays with the
/// engine, so seqs continue if the room comes back).
pub const IDLE_LOG_EVICTION: Duration = Duration::from_secs(600);

/// The hub's state, behind one `Arc`.
struct Shared {
    engine: Arc<dyn Engine>,
    config: Config,
    logs: Mutex<HashMap<LogId, Arc<Log>>>,
    sessions: Mutex<HashMap<ClientId, Arc<Session>>>,
    /// Shared with every reader, which counts its deliveries.
    stats: Arc<Stats>,
}

/// See the module doc.
#[derive(Clone)]
pub struct Hub {
    shared: Arc<Shared>,
}

impl Hub {
    /// A hub over `engine`.
    pub fn new(engine: Arc<dyn Engine>, config: Config) -> Hub {
        Hub {
            shared: Arc::new(Shared {
                engine,
                config,
                logs: Mutex::default(),
                sessions: Mutex::default(),
                stats: Arc::default(),
            }),
        }
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// The storage engine.
    pub fn engine(&self) -> &dyn Engine {
        &*self.shared.engine
    }

    /// Live counters.
    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// Clients registered and not yet removed.
    pub fn client_count(&self) -> usize {
        self.shared.sessions.lock().expect("sessions lock").len()
    }

    /// Rooms and inboxes held in memory now.
    pub fn log_count(&self) -> usize {
        self.shared.logs.lock().expect("logs lock").len()
    }

    /// Registers a client for user `name`, reading from now.
    pub async fn register(&self, name: &str) -> Result<Registration, Error> {
        self.register_from(name, None).await
    }

    /// Registers a client for user `name`. With the `cursor` of an earlier client (one that
    /// expired, or from before a restart), the new client rejoins the rooms the cursor names and
    /// reads on from its positions: it gets exactly what it missed, or a `gap` for what the store
    /// no longer keeps. A cursor from another store lifetime rejoins the rooms from now, and the
    /// first read says so with `reset` gaps.
    pub async fn register_from(&self, name: &str, cursor: Option<&str>) -> Result<Registration, Error> {
        self.register_as(name, cursor, Grant::open()).await
    }

    /// Registers a client for user `name` with the rights of `grant` (from a verified token):
    /// as [`Hub::register_from`], and a cursor naming a room the grant does not allow is
    /// refused `forbidden` whole.
    pub async fn register_as(
        &self,
        name: &str,
        cursor: Option<&str>,
        grant: Grant,
    ) -> Result<Registration, Error> {
        let user = UserName::parse(name)?;
        let cursor = cursor.filter(|c| !c.is_empty()).map(Cursor::decode).transpose()?;
        let (cursor, _) = self.resolve(cursor, &user, None).await?;
        if self.client_count() >= MAX_CLIENTS {
            return Err(Error::new(
                ErrorCode::LimitReached,
                format!("the server holds its maximum of {MAX_CLIENTS} clients"),
            ));
        }
        let inbox = self.log(LogId::Inbox(user.clone())).await?;
        // Every client of the user reads its inbox: the inbox's readers are its clients here.
        if inbox.reader_count() >= MAX_CLIENTS_PER_USER {
            return Err(Error::new(
                ErrorCode::LimitReached,
                format!(
                    "user {user} already has {MAX_CLIENTS_PER_USER} clients: end one first (DELETE /v1/clients/ID), or wait for silent ones to time out"
                ),
            ));
        }
        // Positions of this store's lifetime are checked against the logs' heads before anything
        // is made: a position the server could not have issued is refused whole.
        let resumed = cursor.as_ref().is_some_and(|c| c.epoch == self.shared.engine.epoch());
        let mut rooms = Vec::new();
        let mut inbox_from = inbox.head();
        if let Some(cursor) = &cursor {
            for (log_id, seq) in &cursor.positions {
                match log_id {
                    LogId::Room(room) => {
                        if !grant.may_join(room) {
                            return Err(may_not_join(room));
                        }
                        let log = self.log(log_id.clone()).await?;
                        if banned_for(&log, &user).is_some() {
                            continue; // kicked from it: the others resume, this one stays left
                        }
                        rooms.push((room.clone(), log, resumed.then_some(*seq)));
                    }
                    LogId::Inbox(owner) if *owner == user && resumed => inbox_from = *seq,
                    LogId::Inbox(_) => {} // another user's inbox: not this client's to read
                }
            }
            if resumed {
                self.not_beyond_head(&inbox, inbox_from).await?;
                for (_, log, seq) in &rooms {
                    self.not_beyond_head(log, seq.unwrap_or_default()).await?;
                }
            }
        }
        let config = &self.shared.config;
        let session = Arc::new(Session::new(
            ClientId::from_random(rand::random()),
            user,
            grant,
            inbox.clone(),
            inbox_from,
            config.command_rate,
            config.command_burst,
        ));
        inbox.add_reader(session.id.clone(), session.wake_handle());
        self.shared.sessions.lock().expect("sessions lock").insert(session.id.clone(), session.clone());
        self.shared.stats.registered.fetch_add(1, Ordering::Relaxed);
        if let Err(error) = self.persist(&session).await {
            let _ = self.remove(&session.id).await;
            return Err(error);
        }
        for (room, _, from) in rooms.into_iter().take(MAX_ROOMS_PER_CLIENT) {
            let joined = match from {
                Some(from) => self.join_at(&session, room, from).await,
                None => self.join(&session, room, 0).await.map(|_| ()),
            };
            if let Err(error) = joined {
                // A registration that fails leaves no client behind.
                let _ = self.remove(&session.id).await;
                return Err(error);
            }
        }
        let cursor = match (cursor, resumed) {
            // Another lifetime: hand the old cursor back, so the first read reports `reset` gaps.
            (Some(foreign), false) => foreign.encode(),
            // A whole cursor: the first reader stores a base, if it is worth one.
            (cursor, _) => Reader::new(
                self.shared.engine.clone(),
                self.shared.stats.clone(),
                session.clone(),
                cursor,
                None,
            )
            .without_bases()
            .current_cursor(),
        };
        Ok(Registration {
            client: session.id.to_string(),
            name: session.user.to_string(),
            cursor,
            heartbeat_ms: config.heartbeat.as_millis() as u64,
            timeout_ms: config.client_timeout().as_millis() as u64,
        })
    }

    /// Brings back the sessions a durable engine kept (after a restart), with their rooms and
    /// recent acks, so their client ids keep working. Call once, before serving. Returns how
    /// many came back; those silent for longer than the timeout expire at the reaper's next turn
    /// (and their rooms hear the `leave`).
    pub async fn restore(&self) -> Result<usize, Error> {
        let records = self.shared.engine.load_sessions().await?;
        let count = records.len();
        for record in records {
            self.adopt(record).await?;
        }
        Ok(count)
    }

    /// Tells the engine what to keep of `session` (its rooms and floors; acks go with appends).
    async fn persist(&self, session: &Session) -> Result<(), Error> {
        let record = {
            let state = session.state();
            SessionRecord {
                client: session.id.clone(),
                user: session.user.clone(),
                grant: session.grant.clone(),
                inbox_from: state.inbox_from,
                rooms: state.rooms.iter().map(|(room, (_, floor))| (room.clone(), *floor)).collect(),
                last_seen_ms: wall_ms(),
                acks: Vec::new(),
            }
        };
        self.shared.engine.save_session(&record).await
    }

    /// The live session of `client`, marking it alive. In a cluster, a client this node does
    /// not hold yet (registered elsewhere) is loaded from the engine.
    async fn session(&self, client: &ClientId) -> Result<Arc<Session>, Error> {
        let held = self.shared.sessions.lock().expect("sessions lock").get(client).cloned();
        let session = match held {
            Some(session) => session,
            None => {
                let record = self.shared.engine.load_session(client).await?;
                self.adopt(record.ok_or_else(Error::unknown_client)?).await?
            }
        };
        session.state().last_seen = Instant::now();
        Ok(session)
    }

    /// Makes a session kept by the engine live on this node (after a restart, or a client
    /// registered on another node of a cluster): its inbox, its rooms with their floors, its
    /// last sign of life, its recent acks. No presence is announced: it never left.
    async fn adopt(&self, record: SessionRecord) -> Result<Arc<Session>, Error> {
        let config = &self.shared.config;
        let inbox = self.log(LogId::Inbox(record.user.clone())).await?;
        let session = Arc::new(Session::new(
            record.client,
            record.user,
            record.grant,
            inbox.clone(),
            record.inbox_from,
            config.command_rate,
            config.command_burst,
        ));
        let mut kicked = false;
        for (room, floor) in record.rooms {
            let log = self.log(LogId::Room(room.clone())).await?;
            if banned_for(&log, &session.user).is_some() {
                // Kicked while no node held it: it left then, so it is not counted there now.
                self.shared.engine.presence(&room, &session.id, false).await?;
                kicked = true;
                continue;
            }
            log.add_reader(session.id.clone(), session.wake_handle());
            session.state().join(room, log, floor);
        }
        inbox.add_reader(session.id.clone(), session.wake_handle());
        {
            let silent = Duration::from_millis(wall_ms().saturating_sub(record.last_seen_ms));
            let mut state = session.state();
            state.last_seen = Instant::now().checked_sub(silent).unwrap_or(state.last_seen);
            state.persisted_seen = state.last_seen;
        }
        {
            let mut acks = session.publishing.try_lock().expect("a new session's ack memory is free");
            for (id, log, seq) in record.acks {
                let ack = Reply::Ack { id: Some(id.clone()), room: log.to_string(), seq: seq.0 };
                acks.remember(id, ack);
            }
        }
        if kicked {
            self.persist(&session).await?;
        }
        let mut sessions = self.shared.sessions.lock().expect("sessions lock");
        // Two requests of one client may adopt it at once: the first one in wins.
        Ok(sessions.entry(session.id.clone()).or_insert(session).clone())
    }

    /// For the client's next poll with the cursor its last one answered with, at once: a reader
    /// that goes on from the last one's state (see [`Reader::keep`]), reading exactly what
    /// [`Hub::reader`] would open on that cursor. `None` for any other cursor, or a client not
    /// live here: the poll then opens one with [`Hub::reader`].
    pub fn kept_reader(&self, client: &ClientId, cursor: &str) -> Option<Reader> {
        let session = self.shared.sessions.lock().expect("sessions lock").get(client).cloned()?;
        Reader::from_kept(&self.shared.engine, &self.shared.stats, &session, cursor, MAX_READERS_PER_CLIENT)
    }

    /// A reader for `client` from `cursor` (`None`: from now). The cursor is checked here, so a
    /// bad one fails before any transport starts streaming.
    pub async fn reader(&self, client: &ClientId, cursor: Option<&str>) -> Result<Reader, Error> {
        let cursor = cursor.map(Cursor::decode).transpose()?;
        let session = self.session(client).await?;
        let (cursor, base) = self.resolve(cursor, &session.user, Some(&session)).await?;
        // Positions in the logs this client reads must be ones the server could have issued: up
        // to each log's head here, checked under the session's lock (a ring's may be taken
        // under it), or else up to the store's, for the few past it (a cluster's other nodes
        // may have appended). Most polls find none: nothing is collected.
        let this_epoch = cursor.as_ref().filter(|c| c.epoch == self.shared.engine.epoch());
        let past_local_head: Vec<(Arc<Log>, Seq)> = {
            let state = session.state();
            if state.streams as usize >= MAX_READERS_PER_CLIENT {
                return Err(Error::new(
                    ErrorCode::LimitReached,
                    format!(
                        "this client already has {MAX_READERS_PER_CLIENT} streams or polls open: close one first (one per tab is enough)"
                    ),
                ));
            }
            match this_epoch {
                None => Vec::new(),
                Some(cursor) => std::iter::once(&session.inbox)
                    .chain(state.rooms.values().map(|(log, _)| log))
                    .filter_map(|log| {
                        let seq = *cursor.positions.get(&log.id)?;
                        (seq > log.head()).then(|| (log.clone(), seq))
                    })
                    .collect(),
            }
        };
        for (log, seq) in past_local_head {
            self.not_beyond_head(&log, seq).await?;
        }
        Ok(Reader::new(self.shared.engine.clone(), self.shared.stats.clone(), session, cursor, base))
    }

    /// The whole cursor a cursor means: one naming a base gets the base's positions, amended
    /// (the base must be `user`'s), and the base itself for the reader to keep naming. A base
    /// from an earlier store lifetime is gone with it: the logs the cursor names, and with a
    /// `session` every log it reads, get their `reset` gap instead.
    async fn resolve(
        &self,
        cursor: Option<Cursor>,
        user: &UserName,
        session: Option<&Session>,
    ) -> Result<(Option<Cursor>, Option<Base>), Error> {
        let Some(cursor) = cursor else { return Ok((None, None)) };
        let Some(id) = cursor.base else { return Ok((Some(cursor), None)) };
        if cursor.epoch != self.shared.engine.epoch() {
            let mut positions = cursor.positions;
            if let Some(session) = session {
                let state = session.state();
                let logs = std::iter::once(session.inbox.id.clone())
                    .chain(state.rooms.values().map(|(log, _)| log.id.clone()));
                for log in logs {
                    positions.entry(log).or_default();
                }
            }
            return Ok((Some(Cursor::new(cursor.epoch, positions)), None));
        }
        let bad = |message: &str| Error::new(ErrorCode::BadCursor, message);
        let stored = self.shared.engine.load_base(id).await?.ok_or_else(|| {
            bad("the positions this cursor names are no longer kept (older than the store's retention): register again without it")
        })?;
        if stored.user != *user {
            return Err(bad("this cursor is another user's"));
        }
        let base = Base::new(id, stored.positions);
        Ok((Some(cursor.resolve(&base.positions())), Some(base)))
    }

    /// Refuses a cursor position after its log's head: no server issued it (and a reader
    /// there would skip every event up to it). In a cluster this node may not have heard of the
    /// latest appends yet: past the local head, the store has the last word.
    async fn not_beyond_head(&self, log: &Log, seq: Seq) -> Result<(), Error> {
        if seq <= log.head() {
            return Ok(());
        }
        let head = self.shared.engine.head(&log.id).await?;
        if seq <= head {
            return Ok(());
        }
        Err(Error::new(
            ErrorCode::BadCursor,
            format!("the cursor's position {seq} in {} is beyond its last event ({head})", log.id),
        ))
    }

    /// Runs a request body of commands (one object or an array) for `client`. A malformed body
    /// or an unknown client fails as a whole; otherwise every command gets its reply, in order.
    pub async fn execute(&self, client: &ClientId, body: &[u8]) -> Result<Vec<Reply>, Error> {
        let commands = parse_commands(body)?;
        let session = self.session(client).await?;
        let mut replies = Vec::with_capacity(commands.len());
        for wire in commands {
            let id = wire.id();
            let reply = match wire.validate() {
                Ok(command) => self.apply(&session, command).await,
                Err(error) => Err(error),
            };
            replies.push(reply.unwrap_or_else(|error| Reply::error(id, error)));
        }
        Ok(replies)
    }

    async fn apply(&self, session: &Arc<Session>, command: Command) -> Result<Reply, Error> {
        if matches!(command, Command::Ping) {
            return Ok(Reply::Pong);
        }
        let taken = {
            let mut state = session.state();
            state.bucket.take(Instant::now()).map_err(|wait| (wait, state.bucket.rate()))
        };
        if let Err((wait, rate)) = taken {
            // Refused, never dropped: the reply says when the next command will go through.
            return Err(Error::new(
                ErrorCode::RateLimited,
                format!(
                    "too many commands: {rate} a second at most; the next goes through in {} ms",
                    wait.as_millis().max(1)
                ),
            )
            .retry_after(wait));
        }
        match command {
            Command::Ping => Ok(Reply::Pong),
            Command::Join { room, history } => self.join(session, room, history).await,
            Command::Leave { room } => {
                self.catch_up(session, &room).await?;
                self.leave(session, &room).await
            }
            Command::Publish { .. } | Command::Direct { .. } if !session.grant.role.may_publish() => {
                Err(Error::new(ErrorCode::Forbidden, "a viewer may join and read, not publish"))
            }
            Command::Publish { room, event, data, to, id, droppable } => {
                self.catch_up(session, &room).await?;
                let log = session.state().rooms.get(&room).map(|(log, _)| log.clone());
                let log = log.ok_or_else(|| not_joined(&room))?;
                let silenced = log
                    .restrictions
                    .lock()
                    .expect("restrictions lock")
                    .silenced_for(&session.user, wall_ms());
                if let Some(left) = silenced {
                    return Err(Error::new(
                        ErrorCode::Forbidden,
                        format!("you are muted in room {room} for {} more seconds", left.div_ceil(1000)),
                    )
                    .retry_after(Duration::from_millis(left)));
                }
                self.publish_once(session, log, event, data, to, id, droppable).await
            }
            Command::Direct { user, event, data, id } => {
                let log = self.writable_inbox(&user).await?.ok_or_else(|| {
                    Error::new(ErrorCode::UnknownUser, format!("no client of user {user} is connected"))
                })?;
                self.publish_once(session, log, event, data, Scope::Room, id, false).await
            }
            Command::Mute { room, user, seconds } => {
                self.moderate(session, Action::Mute, room, user, seconds).await
            }
            Command::Unmute { room, user } => self.moderate(session, Action::Unmute, room, user, 0).await,
            Command::Kick { room, user, seconds } => {
                self.moderate(session, Action::Kick, room, user, seconds).await
            }
        }
    }

    /// Runs a moderation command (see [`crate::moderation`]): the engine keeps the restriction,
    /// the room's log gets the `moderation` event (every node holding the room applies it from
    /// there), the user's inbox gets the same notice. Acked with the room event's seq.
    async fn moderate(
        &self,
        session: &Arc<Session>,
        action: Action,
        room: RoomName,
        user: UserName,
        seconds: u64,
    ) -> Result<Reply, Error> {
        if !session.grant.role.may_moderate() {
            return Err(Error::new(
                ErrorCode::Forbidden,
                "only a host or moderator may mute, unmute or kick (this client's token has another role)",
            ));
        }
        if !session.grant.may_join(&room) {
            return Err(Error::new(
                ErrorCode::Forbidden,
                format!(
                    "this client's token does not allow room {room}: it moderates only the rooms it may join"
                ),
            ));
        }
        if user == session.user {
            return Err(Error::bad_request("a moderator cannot mute, unmute or kick themselves"));
        }
        let until =
            if action == Action::Unmute { 0 } else { wall_ms().saturating_add(seconds.saturating_mul(1000)) };
        let notice = Notice {
            action,
            room: room.clone(),
            user: user.clone(),
            by: session.user.clone(),
            seconds,
            until,
        };
        // Kept first: from here on every node that loads the room sees it.
        self.shared.engine.restrict(&room, &notice.restriction()).await?;
        let log = self.log(LogId::Room(room.clone())).await?;
        let seq = self.append(&log, moderation_draft(&log, session, &notice)).await?;
        self.apply_notice(&log, &notice, seq).await;
        self.tell_user(session, &notice).await;
        Ok(Reply::Ack { id: None, room: room.to_string(), seq: seq.0 })
    }

    /// Applies a moderation notice that reached the room's log here (appended by this node or
    /// announced by another): the room's restrictions change, and on a kick the user's clients
    /// this node holds leave the room. Running it twice changes nothing more.
    async fn apply_notice(&self, log: &Arc<Log>, notice: &Notice, seq: Seq) {
        log.restrictions.lock().expect("restrictions lock").set(&notice.restriction(), wall_ms());
        if notice.action != Action::Kick {
            return;
        }
        let kicked: Vec<Arc<Session>> = {
            let sessions = self.shared.sessions.lock().expect("sessions lock");
            sessions
                .values()
                .filter(|s| s.user == notice.user && s.state().rooms.contains_key(&notice.room))
                .cloned()
                .collect()
        };
        for session in kicked {
            let Some((log, _)) = session.state().leave(&notice.room) else { continue };
            session.wake();
            // In a cluster several nodes may hold a copy of the session: one announces the leave
            // and stores the session without the room; the others only drop the room here.
            let what = format!("kick:{}:{}:{}", notice.room, seq, session.id.as_str());
            match self.shared.engine.claim(&what).await {
                Ok(true) => {
                    if let Err(error) = self.leave_log(&session, &log, Some("kicked")).await {
                        tracing::warn!(%error, room = %log.id, "could not publish a kicked client's leave");
                    }
                    if let Err(error) = self.persist(&session).await {
                        tracing::warn!(%error, client = %session.id.redacted(), "could not store a kicked client's rooms");
                    }
                }
                Ok(false) => {
                    log.remove_reader(&session.id);
                }
                Err(error) => {
                    log.remove_reader(&session.id);
                    tracing::warn!(%error, client = %session.id.redacted(), "cannot claim a kick; dropping the room here only");
                }
            }
        }
    }

    /// Puts a moderation notice in the user's inbox, so each of their clients learns of it, on
    /// any node (a durable store also keeps it for a user with no client now).
    async fn tell_user(&self, moderator: &Arc<Session>, notice: &Notice) {
        let Ok(Some(log)) = self.writable_inbox(&notice.user).await else { return };
        if let Err(error) = self.append(&log, moderation_draft(&log, moderator, notice)).await {
            // The room's event and the restriction stand; only the personal notice is missing.
            tracing::warn!(%error, user = %notice.user, "could not tell a user of a moderation");
        }
    }

    /// The inbox of `user` if it may be written to now: with a durable store always (it keeps
    /// what it gets for the user's next client: an offline inbox); with memory, which keeps
    /// nothing for later, only while a client of the user reads it (looked up without creating
    /// it, so a made-up name costs no log).
    async fn writable_inbox(&self, user: &UserName) -> Result<Option<Arc<Log>>, Error> {
        let inbox = LogId::Inbox(user.clone());
        if self.shared.engine.durable() {
            return self.log(inbox).await.map(Some);
        }
        Ok(self.existing_log(&inbox).filter(|log| log.reader_count() > 0))
    }

    /// Appends a client's event once per message id: a resend gets the first ack again.
    #[allow(clippy::too_many_arguments)] // the fields of a publish, passed on as they came
    async fn publish_once(
        &self,
        session: &Arc<Session>,
        log: Arc<Log>,
        event: EventName,
        data: Box<RawValue>,
        scope: Scope,
        id: Option<String>,
        droppable: bool,
    ) -> Result<Reply, Error> {
        let mut acks = session.publishing.lock().await;
        if let Some(ack) = id.as_deref().and_then(|id| acks.get(id)) {
            return Ok(ack.clone());
        }
        let mut draft =
            Draft::now(log.id.clone(), event, session.user.clone(), session.id.clone(), scope, data);
        draft.id = id.clone();
        draft.droppable = droppable;
        let seq = self.append(&log, draft).await?;
        let ack = Reply::Ack { id: id.clone(), room: log.id.to_string(), seq: seq.0 };
        if let Some(id) = id {
            acks.remember(id, ack.clone());
        }
        Ok(ack)
    }

    /// The one write path: the engine stores and sequences, the ring makes it readable, the
    /// readers wake.
    async fn append(&self, log: &Log, draft: Draft) -> Result<Seq, Error> {
        let seq = self.shared.engine.append(&draft).await?;
        log.insert(Entry::new(seq, draft));
        self.shared.stats.published.fetch_add(1, Ordering::Relaxed);
        Ok(seq)
    }

    /// Joins `room`, reading from the join, or `history` events before it.
    async fn join(&self, session: &Arc<Session>, room: RoomName, history: u64) -> Result<Reply, Error> {
        self.join_from(session, room, Floor::History(history)).await
    }

    /// Joins `room` reading from `seq` (a resumed cursor's position).
    async fn join_at(&self, session: &Arc<Session>, room: RoomName, seq: Seq) -> Result<(), Error> {
        self.join_from(session, room, Floor::At(seq)).await.map(|_| ())
    }

    async fn join_from(&self, session: &Arc<Session>, room: RoomName, from: Floor) -> Result<Reply, Error> {
        if !session.grant.may_join(&room) {
            return Err(may_not_join(&room));
        }
        let joined = session.state().rooms.get(&room).map(|(log, _)| log.clone());
        if let Some(log) = joined {
            let online = self.shared.engine.online(&room).await?.unwrap_or_else(|| log.reader_count());
            return Ok(Reply::Joined { room: room.to_string(), seq: log.head().0, online });
        }
        if session.state().rooms.len() >= MAX_ROOMS_PER_CLIENT {
            return Err(Error::new(
                ErrorCode::LimitReached,
                format!("a client may be in at most {MAX_ROOMS_PER_CLIENT} rooms"),
            ));
        }
        let log = self.log(LogId::Room(room.clone())).await?;
        if let Some(left) = banned_for(&log, &session.user) {
            return Err(Error::new(
                ErrorCode::Forbidden,
                format!(
                    "you were kicked from room {room}; you may join again in {} seconds",
                    left.div_ceil(1000)
                ),
            )
            .retry_after(Duration::from_millis(left)));
        }
        let here = log.add_reader(session.id.clone(), session.wake_handle());
        let online = self.shared.engine.presence(&room, &session.id, true).await?.unwrap_or(here);
        // The joiner reads from its own presence event, or from now if there is none (a crowd),
        // or from earlier when it asked for history or resumes a cursor.
        let (seq, start) = match self.presence(session, &log, "join", online, None).await? {
            Some(seq) => (seq, Seq(seq.0 - 1)),
            None => {
                let now = log.head();
                (now, now)
            }
        };
        let floor = match from {
            Floor::History(n) => Seq(start.0.saturating_sub(n)),
            Floor::At(at) => at.min(start),
        };
        session.state().join(room.clone(), log, floor);
        session.wake();
        self.persist(session).await?;
        Ok(Reply::Joined { room: room.to_string(), seq: seq.0, online })
    }

    async fn leave(&self, session: &Arc<Session>, room: &RoomName) -> Result<Reply, Error> {
        let (log, _) = session.state().leave(room).ok_or_else(|| not_joined(room))?;
        self.leave_log(session, &log, None).await?;
        session.wake();
        self.persist(session).await?;
        Ok(Reply::Left { room: room.to_string() })
    }

    /// Takes the client out of the log's readers and announces its `leave`, with a `reason`
    /// when it did not leave by itself (`kicked`).
    async fn leave_log(
        &self,
        session: &Arc<Session>,
        log: &Arc<Log>,
        reason: Option<&str>,
    ) -> Result<(), Error> {
        let here = log.remove_reader(&session.id);
        let online = match &log.id {
            LogId::Room(room) => self.shared.engine.presence(room, &session.id, false).await?.unwrap_or(here),
            LogId::Inbox(_) => here,
        };
        self.presence(session, log, "leave", online, reason).await.map(|_| ())
    }

    /// Announces a join or leave: a presence event with the online count, or, in a room of more
    /// than [`Config::presence_crowd`] clients, a scheduled `count` instead (see
    /// [`PRESENCE_CROWD`]). Returns the seq of the event it published, if it published one.
    async fn presence(
        &self,
        session: &Session,
        log: &Arc<Log>,
        action: &str,
        online: usize,
        reason: Option<&str>,
    ) -> Result<Option<Seq>, Error> {
        let crowd = self.shared.config.presence_crowd;
        if online > crowd || (action == "leave" && online == crowd) {
            self.schedule_count(log);
            return Ok(None);
        }
        let data = presence_data(action, online, reason);
        let draft = Draft::now(
            log.id.clone(),
            presence_event(),
            session.user.clone(),
            session.id.clone(),
            Scope::Room,
            data,
        );
        self.append(log, draft).await.map(Some)
    }

    /// In a crowd, joins and leaves are folded into one `count` event per
    /// [`Config::presence_interval`]: the first change arms a timer, the timer publishes the count
    /// as it is then.
    fn schedule_count(&self, log: &Arc<Log>) {
        if log.count_pending.swap(true, Ordering::AcqRel) {
            return; // already armed
        }
        let (hub, log) = (self.clone(), log.clone());
        tokio::spawn(async move {
            tokio::time::sleep(hub.shared.config.presence_interval).await;
            log.count_pending.store(false, Ordering::Release);
            // The cluster's count when the engine keeps one, else this node's.
            let online = match &log.id {
                LogId::Room(room) => hub.shared.engine.online(room).await.ok().flatten(),
                LogId::Inbox(_) => None,
            };
            let data = presence_data("count", online.unwrap_or_else(|| log.reader_count()), None);
            let mut draft = Draft::now(
                log.id.clone(),
                presence_event(),
                UserName::nobody(),
                ClientId::nobody(),
                Scope::Room,
                data,
            );
            // The next count supersedes it: a reader far behind may skip it.
            draft.droppable = true;
            if let Err(error) = hub.append(&log, draft).await {
                tracing::warn!(%error, room = %log.id, "could not publish the presence count");
            }
        });
    }

    /// Ends a client now: leaves its rooms (publishing presence `leave`), stops its readers.
    pub async fn remove(&self, client: &ClientId) -> Result<(), Error> {
        if self.held(client).is_none() {
            self.session(client).await?; // registered on another node of a cluster
        }
        let session = self.shared.sessions.lock().expect("sessions lock").remove(client);
        let session = session.ok_or_else(Error::unknown_client)?;
        let rooms = session.state().end();
        session.inbox.remove_reader(&session.id);
        session.wake();
        for (log, _) in rooms.values() {
            if let Err(error) = self.leave_log(&session, log, None).await {
                tracing::warn!(%error, room = %log.id, "could not publish presence leave");
            }
        }
        if let Err(error) = self.shared.engine.delete_session(client).await {
            // It comes back at the next start and expires then: nothing is lost, only delayed.
            tracing::warn!(%error, "could not forget a removed session in the store");
        }
        Ok(())
    }

    /// Removes every client silent for longer than the timeout and drops logs nobody read for
    /// [`IDLE_LOG_EVICTION`]. Returns how many clients were removed.
    pub async fn expire_idle(&self) -> usize {
        let now = Instant::now();
        let timeout = self.shared.config.client_timeout();
        let silent: Vec<ClientId> = {
            let sessions = self.shared.sessions.lock().expect("sessions lock");
            sessions
                .values()
                .filter(|s| {
                    let state = s.state();
                    state.streams == 0 && now.duration_since(state.last_seen) > timeout
                })
                .map(|s| s.id.clone())
                .collect()
        };
        let timeout_ms = timeout.as_millis() as u64;
        for client in &silent {
            // In a cluster the client may be alive on another node: ask before removing it.
            match self.shared.engine.last_seen(client).await {
                Ok(Some(seen)) if wall_ms().saturating_sub(seen) <= timeout_ms => {
                    let silent_for = Duration::from_millis(wall_ms().saturating_sub(seen));
                    if let Some(session) = self.held(client) {
                        let mut state = session.state();
                        state.last_seen = now.checked_sub(silent_for).unwrap_or(now);
                        state.persisted_seen = state.last_seen;
                    }
                    continue;
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, client = %client.redacted(), "cannot tell whether a silent client is alive; keeping it");
                    continue;
                }
            }
            match self.shared.engine.claim_expiry(client).await {
                Ok(true) => {
                    if self.remove(client).await.is_ok() {
                        tracing::info!(client = %client.redacted(), "client timed out");
                        self.shared.stats.expired.fetch_add(1, Ordering::Relaxed);
                    }
                }
                // Another node expires it (and announces its leaves): drop this node's copy.
                Ok(false) => self.forget(client),
                Err(error) => {
                    tracing::warn!(%error, client = %client.redacted(), "cannot expire a silent client; will try again")
                }
            }
        }
        // Sessions nobody here holds whose node died with them: silent everywhere, so any node
        // may expire them (one wins the claim) and tell their rooms.
        match self.shared.engine.stale(wall_ms().saturating_sub(timeout_ms)).await {
            Ok(stale) => {
                for client in stale {
                    if self.held(&client).is_some() {
                        continue; // judged above, by its own last sign of life here
                    }
                    if let Ok(true) = self.shared.engine.claim_expiry(&client).await
                        && self.remove(&client).await.is_ok()
                    {
                        tracing::info!(client = %client.redacted(), "client timed out (its node is gone)");
                        self.shared.stats.expired.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "cannot list silent clients of the cluster"),
        }
        self.persist_last_seen(now).await;
        let engine = &self.shared.engine;
        self.shared.logs.lock().expect("logs lock").retain(|_, log| {
            let keep = log.idle_since().is_none_or(|since| now.duration_since(since) < IDLE_LOG_EVICTION);
            if !keep {
                engine.unwatch(&log.id);
            }
            keep
        });
        silent.len()
    }

    /// The session of `client` if this node holds it.
    fn held(&self, client: &ClientId) -> Option<Arc<Session>> {
        self.shared.sessions.lock().expect("sessions lock").get(client).cloned()
    }

    /// Drops this node's copy of a session that ended elsewhere: no presence (the node that
    /// ended it announced it), its readers here stop.
    fn forget(&self, client: &ClientId) {
        let Some(session) = self.shared.sessions.lock().expect("sessions lock").remove(client) else {
            return;
        };
        let rooms = session.state().end();
        for (log, _) in rooms.values() {
            log.remove_reader(&session.id);
        }
        session.inbox.remove_reader(&session.id);
        session.wake();
    }

    /// Follows what other nodes of a cluster do, for as long as the hub lives (spawn it once):
    /// their appends to logs this node holds go into the rings (readers wake as for a local
    /// append), and sessions changed elsewhere are reloaded here. Returns at once for an engine
    /// of one node.
    pub async fn follow(self) {
        let Some(mut announcements) = self.shared.engine.announcements() else {
            return;
        };
        while let Some(announcement) = announcements.recv().await {
            match announcement {
                Announcement::Appended(entry) => {
                    let Some(log) = self.existing_log(&entry.draft.log) else { continue };
                    let seq = entry.seq;
                    let notice = (entry.draft.event.as_str() == "moderation"
                        && matches!(log.id, LogId::Room(_)))
                    .then(|| Notice::parse(&entry.draft.data))
                    .flatten();
                    log.insert(entry);
                    if let Some(notice) = notice {
                        self.apply_notice(&log, &notice, seq).await;
                    }
                    if log.head() < seq {
                        self.fill(&log, seq).await; // an announcement was missed
                    }
                }
                Announcement::SessionChanged(client) => {
                    if let Err(error) = self.refresh(&client).await {
                        tracing::warn!(%error, client = %client.redacted(), "cannot reload a session changed elsewhere");
                    }
                }
                Announcement::Resync => {
                    let logs: Vec<Arc<Log>> =
                        self.shared.logs.lock().expect("logs lock").values().cloned().collect();
                    for log in logs {
                        match self.shared.engine.head(&log.id).await {
                            Ok(head) if head > log.head() => self.fill(&log, head).await,
                            Ok(_) => {}
                            Err(error) => tracing::warn!(%error, log = %log.id, "cannot resync a log"),
                        }
                    }
                }
            }
        }
    }

    /// Reads what `log` misses up to `seq` from the engine.
    async fn fill(&self, log: &Arc<Log>, seq: Seq) {
        while log.head() < seq {
            let head = log.head();
            match self.shared.engine.read(&log.id, head, MAX_EVENTS_PER_BATCH).await {
                Ok(History::Events(events)) if !events.is_empty() => {
                    events.into_iter().for_each(|e| log.insert(e))
                }
                Ok(_) => return,
                Err(error) => {
                    tracing::warn!(%error, log = %log.id, "cannot fill a missed event; the next one will try again");
                    return;
                }
            }
            if log.head() == head {
                return; // no progress: the events are gone from the store
            }
        }
    }

    /// In a cluster, a room missing from this node's copy of the session may have been joined
    /// through another node a moment ago (its announcement still on the way): reload the copy
    /// before answering `not_joined`.
    async fn catch_up(&self, session: &Arc<Session>, room: &RoomName) -> Result<(), Error> {
        if self.shared.engine.clustered() && !session.state().rooms.contains_key(room) {
            self.refresh(&session.id).await?;
        }
        Ok(())
    }

    /// Brings this node's copy of a session in line with the engine's.
    async fn refresh(&self, client: &ClientId) -> Result<(), Error> {
        let Some(session) = self.held(client) else { return Ok(()) };
        let Some(record) = self.shared.engine.load_session(client).await? else {
            self.forget(client);
            return Ok(());
        };
        let wanted: std::collections::BTreeMap<RoomName, Seq> = record.rooms.into_iter().collect();
        let gone: Vec<RoomName> =
            session.state().rooms.keys().filter(|room| !wanted.contains_key(*room)).cloned().collect();
        for room in gone {
            if let Some((log, _)) = session.state().leave(&room) {
                log.remove_reader(&session.id);
            }
        }
        for (room, floor) in wanted {
            if session.state().rooms.contains_key(&room) {
                continue;
            }
            let log = self.log(LogId::Room(room.clone())).await?;
            log.add_reader(session.id.clone(), session.wake_handle());
            session.state().join(room, log, floor);
        }
        session.wake();
        Ok(())
    }

    /// Tells a durable engine the latest sign of life of every session that showed one since the
    /// last time, in one batch, so that after a restart silent clients expire on time and live
    /// ones do not.
    async fn persist_last_seen(&self, now: Instant) {
        if !self.shared.engine.durable() {
            return;
        }
        let wall = wall_ms();
        let seen: Vec<(ClientId, u64)> = {
            let sessions = self.shared.sessions.lock().expect("sessions lock");
            sessions
                .values()
                .filter_map(|s| {
                    let mut state = s.state();
                    // An open stream is life now; otherwise the last request was.
                    let last = if state.streams > 0 { now } else { state.last_seen };
                    (last > state.persisted_seen).then(|| {
                        state.persisted_seen = last;
                        (s.id.clone(), wall.saturating_sub(now.duration_since(last).as_millis() as u64))
                    })
                })
                .collect()
        };
        if !seen.is_empty()
            && let Err(error) = self.shared.engine.touch_sessions(&seen).await
        {
            tracing::warn!(%error, sessions = seen.len(), "could not record last signs of life");
        }
    }

    /// Runs [`Hub::expire_idle`] forever, four times per heartbeat. Spawn it once per hub.
    pub async fn run_reaper(self) {
        let mut tick = tokio::time::interval(self.shared.config.heartbeat / 4);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.expire_idle().await;
        }
    }

    /// Facts about a room for `GET /v1/rooms/{room}`.
    pub async fn room_info(&self, room: &str) -> Result<RoomInfo, Error> {
        let room = RoomName::parse(room)?;
        let id = LogId::Room(room.clone());
        let (here, seq) = match self.existing_log(&id) {
            Some(log) => (log.reader_count(), log.head()),
            None => (0, self.shared.engine.head(&id).await?),
        };
        let online = self.shared.engine.online(&room).await?.unwrap_or(here);
        Ok(RoomInfo { room: room.to_string(), online, seq: seq.0 })
    }

    /// The log `id` if this node holds it.
    fn existing_log(&self, id: &LogId) -> Option<Arc<Log>> {
        self.shared.logs.lock().expect("logs lock").get(id).cloned()
    }

    /// The log `id`, created on first use.
    async fn log(&self, id: LogId) -> Result<Arc<Log>, Error> {
        if let Some(log) = self.shared.logs.lock().expect("logs lock").get(&id) {
            return Ok(log.clone());
        }
        // Announcements first, then the head: an append in between is announced, not missed.
        self.shared.engine.watch(&id).await?;
        let head = self.shared.engine.head(&id).await?;
        let restrictions = match &id {
            LogId::Room(room) => self.shared.engine.restrictions(room, wall_ms()).await?,
            LogId::Inbox(_) => Vec::new(),
        };
        let config = &self.shared.config;
        let mut logs = self.shared.logs.lock().expect("logs lock");
        if logs.len() >= MAX_LOGS && !logs.contains_key(&id) {
            return Err(Error::new(
                ErrorCode::LimitReached,
                format!("the server holds its maximum of {MAX_LOGS} rooms"),
            ));
        }
        let log = logs.entry(id.clone()).or_insert_with(|| {
            let log = Log::new(id, head, config.ring_capacity, config.ring_bytes);
            let now = wall_ms();
            let mut held = log.restrictions.lock().expect("restrictions lock");
            restrictions.iter().for_each(|r| held.set(r, now));
            drop(held);
            Arc::new(log)
        });
        Ok(log.clone())
    }
}

fn presence_event() -> EventName {
    EventName::parse("presence").expect("valid name")
}

/// The `moderation` event carrying `notice` into `log`, from the moderator `by`.
fn moderation_draft(log: &Log, by: &Session, notice: &Notice) -> Draft {
    let event = EventName::parse("moderation").expect("valid name");
    Draft::now(log.id.clone(), event, by.user.clone(), by.id.clone(), Scope::Room, notice.to_data())
}

fn presence_data(action: &str, online: usize, reason: Option<&str>) -> Box<RawValue> {
    let data = match reason {
        None => serde_json::json!({ "action": action, "online": online }),
        Some(reason) => serde_json::json!({ "action": action, "online": online, "reason": reason }),
    };
    RawValue::from_string(data.to_string()).expect("json value is valid JSON")
}

/// Milliseconds before `user` may join the room of `log` again, if kicked from it.
fn banned_for(log: &Log, user: &UserName) -> Option<u64> {
    log.restrictions.lock().expect("restrictions lock").banned_for(user, wall_ms())
}

/// Where a joiner starts reading a room.
enum Floor {
    /// This many events before its join (0: at the join).
    History(u64),
    /// At this position (a resumed cursor's), if not after the join.
    At(Seq),
}

fn may_not_join(room: &RoomName) -> Error {
    Error::new(ErrorCode::Forbidden, format!("this client's token does not allow room {room}"))
}

fn not_joined(room: &RoomName) -> Error {
    Error::new(ErrorCode::NotJoined, format!("join the room {room} first"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::MemoryEngine;

    /// Nothing keeps a removed client's session alive: not its rooms' logs, not its inbox, not
    /// a reader it once had. (Logs hold wake handles, not sessions.)
    #[tokio::test]
    async fn a_removed_clients_session_is_freed() {
        let hub = Hub::new(Arc::new(MemoryEngine::new()), Config::default());
        let bob = hub.register("bob").await.unwrap();
        let bob = ClientId::from_wire(&bob.client).unwrap();
        let alice = hub.register("alice").await.unwrap();
        let alice = ClientId::from_wire(&alice.client).unwrap();
        for room in ["a", "b"] {
            let join = format!(r#"{{"type":"join","room":"{room}"}}"#);
            hub.execute(&alice, join.as_bytes()).await.unwrap();
            hub.execute(&bob, join.as_bytes()).await.unwrap();
        }
        drop(hub.reader(&alice, None).await.unwrap());
        let session = Arc::downgrade(&hub.shared.sessions.lock().unwrap()[&alice]);
        hub.remove(&alice).await.unwrap();
        assert!(session.upgrade().is_none(), "the removed session is still referenced");
        // The logs it read live on for the others, and bob's session with them.
        assert_eq!(hub.room_info("a").await.unwrap().online, 1);
        assert!(hub.shared.sessions.lock().unwrap().contains_key(&bob));
    }
}
