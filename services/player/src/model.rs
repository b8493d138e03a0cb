//! What the player service stores. Each type owns its collection and indexes ([`Model`]); the rest of
//! the service reads and writes them through `flotilla_storage::model::Store`.
//!
//! Timestamps are milliseconds since the epoch (`*_ms`). Ids are random, unguessable strings
//! ([`new_id`]); where two documents must never coexist (an email used twice, a username taken twice)
//! a unique index says so, because FerretDB has no transactions to check-then-insert safely.

use mongodb::IndexModel;
use mongodb::bson::doc;
use serde::{Deserialize, Serialize};

use flotilla_storage::model::{Model, index, unique_index};

/// A player's account and public profile.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Player {
    #[serde(rename = "_id")]
    pub id: String,
    pub username: String,
    /// `username` lowercased: the unique index that makes usernames case-insensitive.
    pub username_key: String,
    pub display_name: String,
    #[serde(default)]
    pub avatar_url: String,
    #[serde(default)]
    pub language: String,
    /// Free-form JSON the game keeps about the player, stored as a string so any shape round-trips.
    #[serde(default)]
    pub metadata: String,
    #[serde(default)]
    pub privacy: Privacy,
    #[serde(default)]
    pub banned: Option<Ban>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

impl Model for Player {
    const COLLECTION: &'static str = "players";

    fn indexes() -> Vec<IndexModel> {
        vec![unique_index("username", doc! {"username_key": 1})]
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Ban {
    pub reason: String,
    pub since_ms: i64,
}

/// Who may do what to a player. Blocking overrides all of these.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Privacy {
    #[serde(default)]
    pub presence: Audience,
    #[serde(default)]
    pub messages: MessageAudience,
    #[serde(default)]
    pub friend_requests: RequestAudience,
}

/// Who sees a player's presence.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Audience {
    Everyone,
    #[default]
    Friends,
    Nobody,
}

/// Who may message a player.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum MessageAudience {
    Everyone,
    #[default]
    Friends,
}

/// Who may send a player a friend request.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RequestAudience {
    #[default]
    Everyone,
    FriendsOfFriends,
    Nobody,
}

/// One way of signing in to an account. The `_id` is the method and its identifier
/// (`email:ann@example.com`, `device:…`, `custom:…`), so the unique `_id` index makes each identifier
/// belong to at most one account without a transaction.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Identity {
    #[serde(rename = "_id")]
    pub id: String,
    pub player: String,
    pub method: Method,
    /// Argon2id PHC string for email logins; empty for device and custom ids.
    #[serde(default)]
    pub secret_hash: String,
    pub created_ms: i64,
}

impl Model for Identity {
    const COLLECTION: &'static str = "identities";

    fn indexes() -> Vec<IndexModel> {
        vec![index("player", doc! {"player": 1})]
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Method {
    Email,
    Device,
    Custom,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Email => "email",
            Method::Device => "device",
            Method::Custom => "custom",
        }
    }

    pub fn identity_id(self, identifier: &str) -> String {
        format!("{}:{identifier}", self.as_str())
    }
}

/// A refresh token, stored by the SHA-256 of its value so a database leak yields no usable token.
/// Tokens of one sign-in form a family; each use marks the token used and issues the next. Presenting
/// a used token means it was stolen (or replayed), and revokes the whole family.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RefreshToken {
    #[serde(rename = "_id")]
    pub hash: String,
    pub family: String,
    pub player: String,
    pub used: bool,
    pub expires_ms: i64,
    pub created_ms: i64,
}

impl Model for RefreshToken {
    const COLLECTION: &'static str = "refresh_tokens";

    fn indexes() -> Vec<IndexModel> {
        vec![
            index("family", doc! {"family": 1}),
            index("player", doc! {"player": 1}),
        ]
    }
}

/// One side of a relationship, as its `owner` sees it (Nakama's model): a friendship is two edges.
/// The `_id` is `owner:other`, so there is at most one edge each way.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct FriendEdge {
    #[serde(rename = "_id")]
    pub id: String,
    pub owner: String,
    pub other: String,
    pub state: FriendState,
    pub updated_ms: i64,
}

impl FriendEdge {
    pub fn id_of(owner: &str, other: &str) -> String {
        format!("{owner}:{other}")
    }
}

impl Model for FriendEdge {
    const COLLECTION: &'static str = "friend_edges";

    fn indexes() -> Vec<IndexModel> {
        vec![
            index("owner_state", doc! {"owner": 1, "state": 1, "updated_ms": -1}),
            index("other", doc! {"other": 1}),
        ]
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum FriendState {
    /// Both accepted.
    Mutual,
    /// The owner asked the other.
    InviteSent,
    /// The other asked the owner.
    InviteReceived,
    /// The owner blocked the other.
    Blocked,
}

/// A direct message. `_id` is [`new_sortable_id`], so ids order by send time and a read marker is
/// just the last id read.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Message {
    #[serde(rename = "_id")]
    pub id: String,
    /// Both player ids, sorted and joined by ':', so either side finds the conversation.
    pub conversation: String,
    pub from: String,
    pub to: String,
    pub body: String,
    pub sent_ms: i64,
}

impl Message {
    pub fn conversation_of(a: &str, b: &str) -> String {
        if a < b {
            format!("{a}:{b}")
        } else {
            format!("{b}:{a}")
        }
    }
}

impl Model for Message {
    const COLLECTION: &'static str = "messages";

    fn indexes() -> Vec<IndexModel> {
        vec![
            index("conversation", doc! {"conversation": 1, "_id": -1}),
            index("from", doc! {"from": 1}),
        ]
    }
}

/// How far a reader has read a conversation: `_id` is `conversation/reader`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ReadMarker {
    #[serde(rename = "_id")]
    pub id: String,
    pub conversation: String,
    pub reader: String,
    pub up_to: String,
    pub updated_ms: i64,
}

impl Model for ReadMarker {
    const COLLECTION: &'static str = "read_markers";

    fn indexes() -> Vec<IndexModel> {
        vec![index("reader", doc! {"reader": 1})]
    }
}

/// One player's side of a conversation, for their list of conversations: `_id` is
/// `conversation/player`, like a read marker. It keeps the newest message's id, not its text, so
/// deleting messages (with an account) leaves no copy of them here.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ConversationEntry {
    #[serde(rename = "_id")]
    pub id: String,
    pub player: String,
    /// The other participant.
    pub with: String,
    pub conversation: String,
    /// The newest message's id; ids sort by time.
    pub last: String,
}

impl Model for ConversationEntry {
    const COLLECTION: &'static str = "conversations";

    fn indexes() -> Vec<IndexModel> {
        vec![
            index("player_last", doc! {"player": 1, "last": -1}),
            // Account deletion removes the other side's entries too.
            index("with", doc! {"with": 1}),
        ]
    }
}

/// A persistent notification; also pushed live to the player's connections.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Notification {
    #[serde(rename = "_id")]
    pub id: String,
    pub player: String,
    pub kind: NotificationKind,
    /// The player who caused it, if any (the requester, the sender).
    #[serde(default)]
    pub subject: Option<String>,
    /// Kind-specific JSON, stored as a string.
    #[serde(default)]
    pub content: String,
    pub read: bool,
    pub created_ms: i64,
}

impl Model for Notification {
    const COLLECTION: &'static str = "notifications";

    fn indexes() -> Vec<IndexModel> {
        vec![
            index("player", doc! {"player": 1, "_id": -1}),
            index("subject", doc! {"subject": 1}),
        ]
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum NotificationKind {
    FriendRequest,
    FriendAccepted,
    Message,
    MatchResult,
}

/// A match's results as its game server reported them. `_id` is the match (session) id, so a repeated
/// report is recognised; per-player statistics are counted from these documents rather than kept as
/// counters, so a retried report can never count twice.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct MatchResult {
    #[serde(rename = "_id")]
    pub id: String,
    pub server: String,
    pub players: Vec<MatchPlayer>,
    /// Ids of the players placed first. Kept beside `players` because FerretDB cannot match two
    /// fields of one array element (`$elemMatch` with several conditions).
    pub winners: Vec<String>,
    pub reported_ms: i64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MatchPlayer {
    pub id: String,
    pub score: i64,
    /// 1 for the winner.
    pub placement: u32,
}

impl Model for MatchResult {
    const COLLECTION: &'static str = "match_results";

    fn indexes() -> Vec<IndexModel> {
        vec![
            index("players", doc! {"players.id": 1}),
            index("winners", doc! {"winners": 1}),
        ]
    }
}

/// A random id: 128 bits, base64url. Unguessable, so an id alone grants nothing.
pub fn new_id() -> String {
    use base64::Engine;
    use ring::rand::SecureRandom;
    let mut bytes = [0_u8; 16];
    // SystemRandom only fails if the OS has no entropy source; there is no id to give then.
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An id that sorts by creation time: 13 hex digits of milliseconds, then 64 random bits.
pub fn new_sortable_id(now_ms: i64) -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0_u8; 8];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .unwrap_or_default();
    format!("{now_ms:013x}{:016x}", u64::from_be_bytes(bytes))
}
