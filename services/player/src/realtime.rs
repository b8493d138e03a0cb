//! The realtime connection (`GET /v1/realtime`, a WebSocket) and presence (`GET /v1/presence`).
//!
//! A connection receives the player's [`Event`]s as JSON text frames, wherever they were published
//! ([`crate::events`]), and may send:
//! - `{"type":"status","status":"online"|"away"|"inMatch","payload":{…}}` to change its presence
//!   (payload at most 1 KiB);
//! - `{"type":"ping"}`, answered `{"type":"pong"}`;
//! - `{"type":"renew","token":"<access token>"}`, answered `{"type":"renewed","expiresAt":<unix s>}`.
//!
//! Anything else is answered `{"type":"error","code","message"}`; a connection that keeps sending
//! refused frames (bad ones, or status changes past [`MAX_STATUS_CHANGES`]) is closed (1008). Frames over [`MAX_FRAME`] get an error frame; frames over
//! [`HARD_LIMIT`] end the connection (1009), since the socket cannot be read past them.
//!
//! A connection lives no longer than its access token: it closes with 4001 when the token expires,
//! unless the client renews it first with a token of the same sign-in (what `/v1/auth/refresh`
//! returns). Without the limit, a connection would outlive a ban or sign-out whose `Disconnect` event
//! was lost (the bus delivers at most once); renewing in place spares friends an offline/online
//! flicker on every refresh. Other closes: 4000 with the `Disconnect` event's reason (sign-out, ban),
//! 1013 when the client reads its events too slowly ([`hub::QUEUE`]), 1001 when it stops answering.
//!
//! Presence is one entry per connection in Redis ([`flotilla_storage::presence`]), refreshed every
//! third of [`PRESENCE_TTL`], in batches with the replica's other connections
//! ([`crate::presence_refresh`]). When the player's effective presence (their newest connection's status
//! and payload, or offline) changes, each mutual friend allowed to see it gets an `Event::Presence`.
//! Events are hints: a replica that dies sends no "offline" (its entries simply lapse), so clients
//! read `GET /v1/presence` after connecting and when they need the truth.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{FromRequestParts, Query, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::StreamExt;
use mongodb::bson::doc;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior, sleep_until, timeout};

use flotilla_storage::mongo::now_ms;
use flotilla_storage::presence::PresenceEntry;

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::events::{self, Event};
use crate::hub::{self, Connection};
use crate::model::{Audience, FriendEdge, FriendState, new_id};
use crate::players;
use crate::privacy::{self, Relation};
use crate::rules;
use crate::session::{self, Session};
use crate::state::{PRESENCE_TTL, Shared};
use flotilla_service::extract::QueryParams;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/realtime", get(connect))
        .route("/v1/presence", get(presence))
}

/// Client frames up to this size are read; larger ones get an error frame.
pub const MAX_FRAME: usize = 4 * 1024;
/// The socket refuses messages over this size outright, ending the connection.
pub const HARD_LIMIT: usize = 16 * 1024;
/// A status payload's serialised size limit.
pub const MAX_PAYLOAD: usize = 1024;
/// Players per `GET /v1/presence`.
pub const MAX_PRESENCE_IDS: usize = 100;
/// Bad frames tolerated per [`STRIKE_SPAN`] before the connection is closed: enough for a client
/// newer than the server to be told what it got wrong, too few for a flood.
const MAX_STRIKES: u32 = 10;
const STRIKE_SPAN: Duration = Duration::from_secs(60);
/// Status changes per [`STATUS_SPAN`]: each one may reach hundreds of friends.
pub const MAX_STATUS_CHANGES: u32 = 10;
pub const STATUS_SPAN: Duration = Duration::from_secs(10);
/// A socket that accepts no write for this long belongs to a client that stopped reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closing connection waits for the client's half of the close handshake.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// Friends told of a presence change at once.
const FAN_OUT_CONCURRENCY: usize = 16;

/// Close codes of the application range (4000–4999), so clients can tell why without parsing text.
pub const CLOSE_DISCONNECTED: u16 = 4000;
pub const CLOSE_TOKEN_EXPIRED: u16 = 4001;

/// A player's own status, as a connection sets it.
#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Status {
    Online,
    Away,
    InMatch,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Online => "online",
            Status::Away => "away",
            Status::InMatch => "inMatch",
        }
    }
}

/// What a client may send.
#[derive(Deserialize, Debug, PartialEq, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
pub enum ClientFrame {
    Status {
        status: Status,
        #[serde(default)]
        payload: Option<serde_json::Value>,
    },
    // Braces, not a unit variant: serde lets a unit variant carry unknown fields.
    Ping {},
    Renew {
        token: String,
    },
}

/// What the server sends besides [`Event`]s.
#[derive(Serialize, Debug, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Reply {
    Pong,
    #[serde(rename_all = "camelCase")]
    Renewed {
        /// Unix seconds: the connection now closes then, unless renewed again.
        expires_at: i64,
    },
    Error {
        code: String,
        message: String,
    },
}

/// A verified caller of `/v1/realtime`, with when their token expires.
struct Caller {
    session: Session,
    expires_at: i64,
}

impl FromRequestParts<Shared> for Caller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .map(str::to_owned);
        // Browsers cannot set headers on a WebSocket, hence the query parameter. Tokens in URLs may
        // land in proxy logs; they are short-lived, and the header is preferred when both are sent.
        let query = Query::<TokenQuery>::try_from_uri(&parts.uri)
            .ok()
            .and_then(|Query(q)| q.token);
        let token = header.or(query).ok_or(Error::Unauthenticated(
            "send Authorization: Bearer <access token> or ?token=",
        ))?;
        authorize(state, &token).await
    }
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

async fn authorize(state: &Shared, token: &str) -> Result<Caller> {
    let session = session::authenticate(state, token).await?;
    // `authenticate` does not say when the token expires; checking the signature again costs
    // microseconds, once per connection.
    let claims = state.tokens.verify(token, state.clock.now_secs())?;
    Ok(Caller {
        session,
        expires_at: claims.exp,
    })
}

async fn connect(State(state): State<Shared>, caller: Caller, upgrade: WebSocketUpgrade) -> Response {
    let connection = match new_id() {
        Ok(connection) => connection,
        Err(error) => return error.into_response(),
    };
    // Buffers sized for small JSON events rather than tungstenite's 128 KiB defaults: most sockets sit
    // idle, and their buffers are most of what an idle socket costs. A larger frame still reads (the
    // buffer grows to it); writes go out at once, and a client that stops reading is cut off by the
    // event queue long before the write buffer's cap.
    upgrade
        .max_message_size(HARD_LIMIT)
        .max_frame_size(HARD_LIMIT)
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(HARD_LIMIT * 4)
        .on_upgrade(move |socket| serve(state, caller, connection, socket))
}

async fn serve(state: Shared, caller: Caller, connection: String, socket: WebSocket) {
    let (sender, events) = mpsc::channel(hub::QUEUE);
    let registration = Registration::open(&state, &caller.session, connection, sender);
    let mut link = Link {
        state: state.clone(),
        socket,
        events,
        player: caller.session.player,
        session: caller.session.session,
        connection: registration.connection.clone(),
        expires_at: caller.expires_at,
        last_heard: Instant::now(),
        entry: entry(Status::Online, empty_payload()),
        strikes: Window::new(MAX_STRIKES, STRIKE_SPAN),
        status_changes: Window::new(MAX_STATUS_CHANGES, STATUS_SPAN),
    };
    let exit = link.run().await;
    if let Exit::Close(code, reason) = exit {
        link.close(code, &reason).await;
    }
    // Only now: the player is online until the close handshake is over.
    drop(registration);
}

/// This connection's place in the hub, the gauge and presence. Dropping it undoes all three, on
/// every way out of [`serve`] — a return, a panic, or the task being cancelled.
struct Registration {
    state: Shared,
    player: String,
    connection: String,
}

impl Registration {
    fn open(state: &Shared, session: &Session, connection: String, sender: mpsc::Sender<Event>) -> Self {
        let hub_entry = Connection {
            id: connection.clone(),
            session: session.session.clone(),
            sender,
        };
        state.hub.add(&session.player, hub_entry);
        state.metrics.websockets.inc();
        Self {
            state: state.clone(),
            player: session.player.clone(),
            connection,
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.state.hub.remove(&self.player, &self.connection);
        self.state.metrics.websockets.dec();
        // Presence lives in Redis, which needs an await; without a runtime (shutting down) the entry
        // simply lapses after PRESENCE_TTL.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (state, player, connection) =
                (self.state.clone(), self.player.clone(), self.connection.clone());
            runtime.spawn(async move {
                let removed = state.presence.remove(&player, &connection);
                if let Err(error) = change_presence(&state, &player, removed).await {
                    tracing::warn!(%error, "presence cleanup failed; the entry will lapse");
                }
            });
        }
    }
}

/// Why [`Link::run`] ended.
enum Exit {
    /// The client left, or the socket failed: nothing more can be sent.
    Gone,
    /// Close with this code and reason.
    Close(u16, String),
}

/// One open connection: its socket, its event queue, and what it has said about its player.
struct Link {
    state: Shared,
    socket: WebSocket,
    events: mpsc::Receiver<Event>,
    player: String,
    session: String,
    connection: String,
    /// Unix seconds.
    expires_at: i64,
    last_heard: Instant,
    entry: PresenceEntry,
    strikes: Window,
    status_changes: Window,
}

enum Step {
    Frame(Option<std::result::Result<Message, axum::Error>>),
    Event(Option<Event>),
    Heartbeat,
    Expired,
}

impl Link {
    async fn run(&mut self) -> Exit {
        if let Err(error) = self.publish_entry().await {
            tracing::warn!(%error, "presence unavailable; refusing the connection");
            return Exit::Close(close_code::AGAIN, "presence is unavailable; retry".into());
        }
        let heartbeat_every = PRESENCE_TTL / 3;
        let mut heartbeat = tokio::time::interval_at(Instant::now() + heartbeat_every, heartbeat_every);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let expiry = Instant::now() + until(&self.state.clock, self.expires_at);
            let step = tokio::select! {
                frame = self.socket.recv() => Step::Frame(frame),
                event = self.events.recv() => Step::Event(event),
                _ = heartbeat.tick() => Step::Heartbeat,
                () = sleep_until(expiry) => Step::Expired,
            };
            let outcome = match step {
                Step::Frame(None) => Err(Exit::Gone),
                // The only read error that leaves the socket writable is a message over the limit;
                // after any other, sending the close fails quietly.
                Step::Frame(Some(Err(_))) => Err(Exit::Close(
                    close_code::SIZE,
                    format!("frames are limited to {HARD_LIMIT} bytes"),
                )),
                Step::Frame(Some(Ok(message))) => {
                    self.last_heard = Instant::now();
                    self.receive(message).await
                }
                Step::Event(None) => Err(Exit::Close(
                    close_code::AGAIN,
                    "events were not read in time".into(),
                )),
                Step::Event(Some(event)) => self.deliver(event).await,
                Step::Heartbeat => self.heartbeat().await,
                Step::Expired => Err(Exit::Close(CLOSE_TOKEN_EXPIRED, "access token expired".into())),
            };
            if let Err(exit) = outcome {
                return exit;
            }
        }
    }

    /// Handles one frame from the client.
    async fn receive(&mut self, message: Message) -> Result<(), Exit> {
        let text = match message {
            Message::Text(text) => text,
            Message::Binary(_) => return self.refuse("bad_frame", "send JSON text frames").await,
            // The socket answers pings itself; a pong only shows the client is alive.
            Message::Ping(_) | Message::Pong(_) => return Ok(()),
            Message::Close(_) => return Err(Exit::Gone),
        };
        if text.len() > MAX_FRAME {
            return self
                .refuse("too_large", &format!("frames are limited to {MAX_FRAME} bytes"))
                .await;
        }
        let frame = match serde_json::from_str::<ClientFrame>(text.as_str()) {
            Ok(frame) => frame,
            Err(error) => return self.refuse("bad_frame", &frame_error(&error)).await,
        };
        match frame {
            ClientFrame::Ping {} => self.send_json(&Reply::Pong).await,
            ClientFrame::Status { status, payload } => self.set_status(status, payload).await,
            ClientFrame::Renew { token } => self.renew(&token).await,
        }
    }

    async fn set_status(&mut self, status: Status, payload: Option<serde_json::Value>) -> Result<(), Exit> {
        let payload = payload.unwrap_or_else(empty_payload);
        if let Err(message) = check_payload(&payload) {
            return self.refuse("bad_frame", message).await;
        }
        if !self.status_changes.admit(Instant::now()) {
            return self
                .refuse("rate_limited", "too many status changes; slow down")
                .await;
        }
        self.entry = entry(status, payload);
        if let Err(error) = self.publish_entry().await {
            tracing::warn!(%error, "status change failed");
            return self
                .send_json(&error_reply("unavailable", "status could not be saved; retry"))
                .await;
        }
        Ok(())
    }

    async fn renew(&mut self, token: &str) -> Result<(), Exit> {
        match authorize(&self.state, token).await {
            Ok(caller) if caller.session.player == self.player && caller.session.session == self.session => {
                self.expires_at = self.expires_at.max(caller.expires_at);
                self.send_json(&Reply::Renewed {
                    expires_at: self.expires_at,
                })
                .await
            }
            Ok(_) => {
                self.refuse("bad_token", "the token belongs to another sign-in")
                    .await
            }
            Err(Error::Unauthenticated(message)) => self.refuse("bad_token", message).await,
            Err(error) => {
                tracing::warn!(%error, "token renewal failed");
                self.send_json(&error_reply(
                    "unavailable",
                    "the token could not be checked; retry",
                ))
                .await
            }
        }
    }

    /// Passes an event from the hub to the client; a `Disconnect` for this sign-in (or all of the
    /// player's) ends the connection.
    async fn deliver(&mut self, event: Event) -> Result<(), Exit> {
        let ends_this = match &event {
            Event::Disconnect { session, reason } => match session {
                None => Some(reason.clone()),
                Some(session) if *session == self.session => Some(reason.clone()),
                // Another sign-in of the same player is being closed.
                Some(_) => return Ok(()),
            },
            _ => None,
        };
        self.send_json(&event).await?;
        match ends_this {
            Some(reason) => Err(Exit::Close(CLOSE_DISCONNECTED, reason)),
            None => Ok(()),
        }
    }

    /// Keeps presence alive and checks that the client still answers. A socket whose peer vanished
    /// without closing would otherwise keep the player "online" until TCP gave up, which can take
    /// hours.
    async fn heartbeat(&mut self) -> Result<(), Exit> {
        if self.last_heard.elapsed() > PRESENCE_TTL {
            return Err(Exit::Close(close_code::AWAY, "no answer to pings".into()));
        }
        self.send(Message::Ping(Bytes::new())).await?;
        let refreshed = self
            .state
            .presence_refresher
            .refresh(&self.player, &self.connection)
            .await;
        // The entry lapsed (a Redis outage, a long pause): friends may have seen the player
        // leave, so announce it again. (A failed refresh was logged by the refresher.)
        if refreshed == Some(false)
            && let Err(error) = self.publish_entry().await
        {
            tracing::warn!(%error, "presence could not be restored");
        }
        Ok(())
    }

    /// Saves this connection's entry and tells friends if the player's presence changed.
    async fn publish_entry(&mut self) -> Result<()> {
        self.entry.updated_ms = now_ms();
        let set = self
            .state
            .presence
            .set(&self.player, &self.connection, &self.entry);
        change_presence(&self.state, &self.player, set).await
    }

    /// Answers a bad frame; too many of them close the connection.
    async fn refuse(&mut self, code: &str, message: &str) -> Result<(), Exit> {
        self.send_json(&error_reply(code, message)).await?;
        if self.strikes.admit(Instant::now()) {
            Ok(())
        } else {
            Err(Exit::Close(close_code::POLICY, "too many invalid frames".into()))
        }
    }

    async fn send_json<T: Serialize>(&mut self, value: &T) -> Result<(), Exit> {
        match serde_json::to_string(value) {
            Ok(text) => self.send(Message::Text(text.into())).await,
            Err(error) => {
                tracing::error!(%error, "an outgoing frame could not be encoded");
                Ok(())
            }
        }
    }

    async fn send(&mut self, message: Message) -> Result<(), Exit> {
        match timeout(WRITE_TIMEOUT, self.socket.send(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) | Err(_) => Err(Exit::Gone),
        }
    }

    /// Sends a close frame and waits briefly for the client's, so the close reason reaches it.
    async fn close(&mut self, code: u16, reason: &str) {
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from(close_reason(reason)),
        };
        if self.send(Message::Close(Some(frame))).await.is_ok() {
            let _ = timeout(CLOSE_WAIT, async {
                while let Some(Ok(_)) = self.socket.recv().await {}
            })
            .await;
        }
    }
}

/// Applies `change` to `player`'s presence entries and, when that changes what friends see (the
/// newest entry's status and payload, or offline), tells them. Two connections changing at once may
/// both tell, or neither see the other's change: events are hints, `GET /v1/presence` is the truth.
async fn change_presence(
    state: &Shared,
    player: &str,
    change: impl Future<Output = flotilla_storage::Result<()>>,
) -> Result<()> {
    let before = state.presence.get(player).await?;
    change.await?;
    let after = state.presence.get(player).await?;
    if visible_part(before.as_ref()) != visible_part(after.as_ref()) {
        fan_out(state, player, after.as_ref()).await?;
    }
    Ok(())
}

fn visible_part(entry: Option<&PresenceEntry>) -> Option<(&str, &serde_json::Value)> {
    entry.map(|entry| (entry.status.as_str(), &entry.payload))
}

/// Sends `player`'s presence (`None`: offline) to each mutual friend allowed to see it. Strangers
/// allowed by `everyone` are not pushed to: they may ask `GET /v1/presence`.
async fn fan_out(state: &Shared, player: &str, entry: Option<&PresenceEntry>) -> Result<()> {
    let Some(profile) = players::load(state, player).await? else {
        return Ok(());
    };
    let audience = profile.privacy.presence;
    if audience == Audience::Nobody {
        return Ok(());
    }
    let friends = privacy::friend_ids(state, player, i64::from(state.config.friend_limit)).await?;
    if friends.is_empty() {
        return Ok(());
    }
    // The friends' own edges: a friendship half undone, or turned into a block, shows here.
    let their_edges: Vec<String> = friends
        .iter()
        .map(|friend| FriendEdge::id_of(friend, player))
        .collect();
    let theirs: HashMap<String, FriendState> = state
        .edges
        .get_many(&their_edges)
        .await?
        .into_iter()
        .map(|edge| (edge.owner, edge.state))
        .collect();
    let event = Event::Presence {
        player: player.to_owned(),
        status: entry.map(|entry| entry.status.clone()),
        payload: entry.map_or(serde_json::Value::Null, |entry| entry.payload.clone()),
    };
    let viewers = friends.into_iter().filter(|friend| {
        let relation = Relation {
            forward: theirs.get(friend).copied(),
            backward: Some(FriendState::Mutual),
        };
        privacy::presence_visible(audience, relation)
    });
    futures::stream::iter(viewers)
        .for_each_concurrent(FAN_OUT_CONCURRENCY, |friend| {
            let event = &event;
            async move {
                if let Err(error) = events::publish(state, &friend, event).await {
                    tracing::warn!(%error, "a presence event was not published");
                }
            }
        })
        .await;
    Ok(())
}

#[derive(Deserialize)]
pub struct PresenceQuery {
    #[serde(default)]
    ids: Option<String>,
}

#[derive(Serialize, Debug, schemars::JsonSchema)]
pub struct PresenceList {
    /// The online players among those asked for whose presence the caller may see, in the order
    /// asked. Offline and hidden players are both simply absent.
    pub items: Vec<PlayerPresence>,
}

#[derive(Serialize, Debug, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlayerPresence {
    pub player: String,
    pub status: String,
    pub payload: serde_json::Value,
    pub updated_ms: i64,
}

/// `GET /v1/presence?ids=a,b,c`.
async fn presence(
    State(state): State<Shared>,
    session: Session,
    QueryParams(query): QueryParams<PresenceQuery>,
) -> Result<Json<PresenceList>> {
    let ids = parse_ids(query.ids.as_deref().unwrap_or_default())?;
    let me = session.player.as_str();
    // Over-long ids match no player; leaving them out keeps them out of the queries.
    let wanted: Vec<&str> = ids
        .iter()
        .map(String::as_str)
        .filter(|id| id.len() <= 64)
        .collect();
    let mut players = state.players.get_many(&wanted).await?;
    players.retain(|player| player.banned.is_none());
    let edge_ids: Vec<String> = wanted
        .iter()
        .flat_map(|other| [FriendEdge::id_of(me, other), FriendEdge::id_of(other, me)])
        .collect();
    let edges = state.edges.get_many(&edge_ids).await?;
    let mut relations: HashMap<&str, Relation> = HashMap::new();
    for edge in &edges {
        if edge.owner == me {
            relations.entry(edge.other.as_str()).or_default().forward = Some(edge.state);
        } else {
            relations.entry(edge.owner.as_str()).or_default().backward = Some(edge.state);
        }
    }
    let visible: Vec<String> = players
        .iter()
        .filter(|player| {
            let relation = relations.get(player.id.as_str()).copied().unwrap_or_default();
            player.id == me || privacy::presence_visible(player.privacy.presence, relation)
        })
        .map(|player| player.id.clone())
        .collect();
    let mut online = state.presence.get_many(&visible).await?;
    let items = ids
        .iter()
        .filter_map(|id| {
            online.remove(id).map(|entry| PlayerPresence {
                player: id.clone(),
                status: entry.status,
                payload: entry.payload,
                updated_ms: entry.updated_ms,
            })
        })
        .collect();
    Ok(Json(PresenceList { items }))
}

/// Comma-separated ids ([`rules::PRESENCE_IDS`]): 1 to [`MAX_PRESENCE_IDS`] of them, none empty,
/// duplicates ignored.
fn parse_ids(ids: &str) -> Result<Vec<String>> {
    if !rules::PRESENCE_IDS.allows(ids) {
        return Err(Error::bad(
            "ids",
            format!("ids must list 1-{MAX_PRESENCE_IDS} player ids, comma-separated"),
        ));
    }
    let mut seen = HashSet::new();
    let ids: Vec<String> = ids
        .split(',')
        .map(str::trim)
        .filter(|id| seen.insert(*id))
        .map(str::to_owned)
        .collect();
    Ok(ids)
}

/// At most `max` events per `span`, counted in fixed windows.
#[derive(Debug)]
struct Window {
    max: u32,
    span: Duration,
    start: Instant,
    count: u32,
}

impl Window {
    fn new(max: u32, span: Duration) -> Self {
        Self {
            max,
            span,
            start: Instant::now(),
            count: 0,
        }
    }

    /// Counts one event at `now`; false once the window holds more than `max`.
    fn admit(&mut self, now: Instant) -> bool {
        if now.duration_since(self.start) >= self.span {
            self.start = now;
            self.count = 0;
        }
        self.count = self.count.saturating_add(1);
        self.count <= self.max
    }
}

/// Time left until `expires_at` (Unix seconds) by `clock`, zero if past.
fn until(clock: &Clock, expires_at: i64) -> Duration {
    let left_ms = expires_at.saturating_mul(1000).saturating_sub(clock.now_ms());
    Duration::from_millis(u64::try_from(left_ms).unwrap_or(0))
}

fn entry(status: Status, payload: serde_json::Value) -> PresenceEntry {
    PresenceEntry {
        status: status.as_str().to_owned(),
        payload,
        updated_ms: now_ms(),
    }
}

fn empty_payload() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

fn check_payload(payload: &serde_json::Value) -> Result<(), &'static str> {
    if !payload.is_object() {
        return Err("payload must be a JSON object");
    }
    if payload.to_string().len() > MAX_PAYLOAD {
        return Err("payload must be at most 1 KiB");
    }
    Ok(())
}

fn error_reply(code: &str, message: &str) -> Reply {
    Reply::Error {
        code: code.to_owned(),
        message: message.to_owned(),
    }
}

/// serde's explanation, which may quote the client's own input, shortened.
fn frame_error(error: &serde_json::Error) -> String {
    let mut message: String = error.to_string().chars().take(200).collect();
    message.insert_str(0, "frame not understood: ");
    message
}

/// A close reason fits in 123 bytes (a control frame's 125, less the code).
fn close_reason(reason: &str) -> String {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_frames_parse_and_anything_else_is_refused() {
        assert_eq!(
            serde_json::from_str::<ClientFrame>(r#"{"type":"ping"}"#).ok(),
            Some(ClientFrame::Ping {})
        );
        assert_eq!(
            serde_json::from_str::<ClientFrame>(
                r#"{"type":"status","status":"inMatch","payload":{"map":"x"}}"#
            )
            .ok(),
            Some(ClientFrame::Status {
                status: Status::InMatch,
                payload: Some(serde_json::json!({"map": "x"}))
            })
        );
        for bad in [
            "",
            "null",
            "{}",
            r#"{"type":"pong"}"#,
            r#"{"type":"status"}"#,
            r#"{"type":"status","status":"busy"}"#,
            r#"{"type":"status","status":"away","extra":1}"#,
            r#"{"type":"ping","x":1}"#,
            r#"{"type":"renew"}"#,
        ] {
            assert!(serde_json::from_str::<ClientFrame>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn payloads_are_small_objects() {
        assert!(check_payload(&serde_json::json!({"match": "m1"})).is_ok());
        assert!(check_payload(&serde_json::json!([1])).is_err());
        assert!(check_payload(&serde_json::json!({"x": "y".repeat(MAX_PAYLOAD)})).is_err());
    }

    #[test]
    fn a_window_admits_its_maximum_then_refuses_until_it_rolls_over() {
        let start = Instant::now();
        let mut window = Window {
            max: 2,
            span: Duration::from_secs(10),
            start,
            count: 0,
        };
        assert!(window.admit(start));
        assert!(window.admit(start + Duration::from_secs(1)));
        assert!(!window.admit(start + Duration::from_secs(2)));
        assert!(window.admit(start + Duration::from_secs(10)));
    }

    #[test]
    fn presence_ids_are_bounded_and_deduplicated() {
        assert_eq!(
            parse_ids("a, b,a,c").ok(),
            Some(vec!["a".to_owned(), "b".to_owned(), "c".to_owned()])
        );
        assert!(parse_ids("a,,c").is_err(), "an empty id");
        assert!(parse_ids("").is_err());
        assert!(parse_ids(" , ").is_err());
        let many: Vec<String> = (0..=MAX_PRESENCE_IDS).map(|i| i.to_string()).collect();
        assert!(parse_ids(&many.join(",")).is_err());
    }

    #[test]
    fn close_reasons_are_cut_at_a_character_boundary() {
        assert_eq!(close_reason("signed out"), "signed out");
        let long = "é".repeat(100);
        let cut = close_reason(&long);
        assert!(cut.len() <= 123 && long.starts_with(&cut), "{cut}");
    }

    #[test]
    fn only_status_and_payload_count_as_a_presence_change() {
        let a = entry(Status::Away, empty_payload());
        let mut b = a.clone();
        b.updated_ms += 1000;
        assert_eq!(visible_part(Some(&a)), visible_part(Some(&b)));
        assert_ne!(visible_part(Some(&a)), visible_part(None));
        assert_ne!(
            visible_part(Some(&a)),
            visible_part(Some(&entry(Status::Online, empty_payload())))
        );
    }
}
