//! What the player service stores. Each type owns its collection and indexes ([`Model`]); the rest of
//! the service reads and writes them through `flotilla_storage::model::Store`.
//!
//! Timestamps are milliseconds since the epoch (`*_ms`). Ids are random, unguessable strings
//! ([`new_id`]); where two documents must never coexist (an email used twice, a username taken twice)
//! a unique index says so, because FerretDB has no transactions to check-then-insert safely.

use mongodb::IndexModel;
use mongodb::bson::doc;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

use flotilla_storage::model::{Model, index, unique_index};
use flotilla_storage::sequence::{Entry, sequence_index};

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
/// Tokens of one sign-in form a family, numbered by `generation`; using token `n` inserts token
/// `n + 1`, and the unique index on `(family, generation)` lets only one use of a token succeed:
/// presenting it again (it was stolen, or replayed) collides there and revokes the whole family. An
/// insert against a unique index is atomic on every store, unlike marking the token used.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RefreshToken {
    #[serde(rename = "_id")]
    pub hash: String,
    pub family: String,
    pub player: String,
    #[serde(default)]
    pub generation: i64,
    pub expires_ms: i64,
    pub created_ms: i64,
}

impl Model for RefreshToken {
    const COLLECTION: &'static str = "refresh_tokens";

    fn indexes() -> Vec<IndexModel> {
        vec![
            unique_index("family_generation", doc! {"family": 1, "generation": 1}),
            index("player", doc! {"player": 1}),
        ]
    }
}

/// A sign-in that was ended (sign-out, a reused refresh token, a ban): `_id` is its refresh-token
/// family (the `sid` of its access tokens). Ending a sign-in inserts this first and then deletes the
/// family's tokens; a refresh stores the next token first and then looks for this. So a refresh racing
/// a sign-out either sees it here or has its new token deleted by it. Kept until the family's tokens
/// would have expired anyway (`expires_ms`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RevokedSession {
    #[serde(rename = "_id")]
    pub family: String,
    pub player: String,
    pub expires_ms: i64,
}

impl Model for RevokedSession {
    const COLLECTION: &'static str = "revoked_sessions";

    fn indexes() -> Vec<IndexModel> {
        vec![index("player", doc! {"player": 1})]
    }
}

/// A ban, by player id. Kept apart from the player document, which its owner updates: on FerretDB a
/// profile update landing just after the ban would write the document back without it. The player
/// document's `banned` field is a copy that [`crate::players::settle_ban`] keeps in step.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct BanRecord {
    #[serde(rename = "_id")]
    pub player: String,
    pub reason: String,
    pub since_ms: i64,
}

impl Model for BanRecord {
    const COLLECTION: &'static str = "bans";
}

/// One side of a relationship, as its `owner` sees it (Nakama's model): what friend lists, limits and
/// privacy checks query. The `_id` is `owner:other`. Edges are a projection of the pair's
/// [`RelationshipStep`]s, written after each step; `seq` is the step they show.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct FriendEdge {
    #[serde(rename = "_id")]
    pub id: String,
    pub owner: String,
    pub other: String,
    pub state: FriendState,
    pub updated_ms: i64,
    /// 0 for edges written before relationships were sequences (migration 5).
    #[serde(default)]
    pub seq: i64,
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

/// The relationship between two players after one operation: entry `seq` of the pair's sequence
/// (`key` is both ids sorted and joined by ':'). Both sides change in one insert, so no crash or race
/// can leave half a friendship, and the entries are the relationship's history.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RelationshipStep {
    #[serde(rename = "_id")]
    pub id: String,
    pub key: String,
    pub seq: i64,
    /// The player whose id sorts first, and how they see the other.
    pub low: String,
    pub low_state: Option<FriendState>,
    pub high: String,
    pub high_state: Option<FriendState>,
    /// Who made this step, and with which operation (`request`, `accept`, `decline`, `cancel`,
    /// `remove`, `block`, `unblock`).
    pub by: String,
    pub op: String,
    pub at_ms: i64,
}

impl RelationshipStep {
    pub fn key_of(a: &str, b: &str) -> String {
        if a < b {
            format!("{a}:{b}")
        } else {
            format!("{b}:{a}")
        }
    }
}

impl Model for RelationshipStep {
    const COLLECTION: &'static str = "relationships";

    fn indexes() -> Vec<IndexModel> {
        vec![
            sequence_index(),
            // Account deletion removes both sides' history.
            index("low", doc! {"low": 1}),
            index("high", doc! {"high": 1}),
        ]
    }
}

impl Entry for RelationshipStep {
    fn key(&self) -> &str {
        &self.key
    }

    fn seq(&self) -> i64 {
        self.seq
    }
}

/// Where a pointer into a conversation stands after one move: a reader's read marker (key
/// `read/{conversation}/{reader}`) or a player's entry in their conversation list (key
/// `list/{conversation}/{player}`). Pointers only move forward, to newer message ids; each move is the
/// next entry of the pointer's sequence, so two moves at once never leave the older one in place.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PointerStep {
    #[serde(rename = "_id")]
    pub id: String,
    pub key: String,
    pub seq: i64,
    pub message: String,
}

impl Model for PointerStep {
    const COLLECTION: &'static str = "message_pointers";

    fn indexes() -> Vec<IndexModel> {
        vec![sequence_index()]
    }
}

impl Entry for PointerStep {
    fn key(&self) -> &str {
        &self.key
    }

    fn seq(&self) -> i64 {
        self.seq
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
    /// The pointer step shown (0: written before markers were sequences).
    #[serde(default)]
    pub seq: i64,
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
    /// The pointer step shown (0: written before entries were sequences).
    #[serde(default)]
    pub seq: i64,
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
    /// Sent by the economy service (`content.event`: `sold`, `outbid`, `won`, `trade-offered`, …).
    Economy,
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
    #[schemars(pattern(crate::rules::TOKEN.pattern), length(min = crate::rules::TOKEN.min, max = crate::rules::TOKEN.max))]
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
pub fn new_id() -> Result<String> {
    use base64::Engine;
    let bytes: [u8; 16] = random()?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// An id that sorts by creation time: 13 hex digits of milliseconds, then 64 random bits.
pub fn new_sortable_id(now_ms: i64) -> Result<String> {
    let bytes: [u8; 8] = random()?;
    Ok(format!("{now_ms:013x}{:016x}", u64::from_be_bytes(bytes)))
}

/// `N` bytes from the operating system's random source. It fails only when the OS has none; then
/// there is no safe id or token to hand out, and the request fails rather than use a constant.
pub fn random<const N: usize>() -> Result<[u8; N]> {
    use ring::rand::SecureRandom;
    let mut bytes = [0_u8; N];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::NoRandomness)?;
    Ok(bytes)
}
