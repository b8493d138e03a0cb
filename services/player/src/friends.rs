//! Friends and blocks: requests, accepting, declining, cancelling, removing, blocking, the lists, mutual
//! friends and suggestions.
//!
//! A relationship is what each of the two players is to the other (Nakama's model); what they may be
//! together is `(none, none)`, `(inviteSent, inviteReceived)`, `(mutual, mutual)` and a block on either
//! side or both, the blocked side's state removed. `decide` is the whole rulebook: a pure function from
//! an operation and the relationship as it is to the relationship as it must become.
//!
//! The relationship is a sequence ([`flotilla_storage::sequence`]): each operation that changes it
//! appends the next [`RelationshipStep`], holding both sides at once, by inserting it against its
//! unique `_id`. FerretDB makes that insert atomic and nothing else about updates, so:
//! - Of two operations deciding on the same step at once, one appends and the other finds the
//!   position taken, reads the new step and decides again. An operation that then no longer applies
//!   (accepting what was just declined, declining what was just accepted, anything after a block)
//!   answers 409, as does answering a request that the step just before answered or withdrew; two
//!   players asking each other at once end as friends.
//! - No crash can leave half a relationship: a step is one document.
//! - The steps are the relationship's history, deleted with either account.
//!
//! Friend lists, limits and privacy checks query [`FriendEdge`]s, one per side, which the operation
//! writes from the newest step after appending (`project`, via `Sequence::settle`). They lag the step
//! only while that write is under way, or after a crash until the next operation on the pair.
//! `decide` also reads the half-written pairs that edges written before relationships were sequences
//! (migration 5) may hold, each as the operation that was under way, so old data completes too.
//!
//! Notifications (a request, an accept) are sent after the step is appended, and only by the call
//! that appended it. They are best-effort: a failure is logged, not answered, and a crash just before
//! loses the notification, never the relationship, which the lists always show.
//!
//! The friend limit counts `mutual` and `inviteSent` edges. It is checked before writing, so requests
//! made at the same instant may pass it by one or two; nothing depends on it being exact.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use mongodb::bson::{Document, doc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use flotilla_storage::mongo::now_ms;
use flotilla_storage::page::{Page, PageRequest, SortKey};
use flotilla_storage::sequence::{Append, entry_id};

use crate::error::{Error, Result};
use crate::events;
use crate::model::{FriendEdge, FriendState, NotificationKind, Player, RelationshipStep, RequestAudience};
use crate::players::{self, PublicProfile};
use crate::privacy::{self, Relation};
use crate::session::{ServiceCaller, Session};
use crate::state::{AppState, Shared};
use flotilla_service::extract::QueryParams;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/friends", get(list))
        .route("/v1/friends/suggestions", get(suggestions))
        .route("/v1/friends/{id}", post(request).delete(remove))
        .route("/v1/friends/{id}/accept", post(accept))
        .route("/v1/friends/{id}/decline", post(decline))
        .route("/v1/friends/{id}/request", delete(cancel))
        .route("/v1/friends/{id}/block", post(block).delete(unblock))
        .route("/v1/friends/{id}/mutual", get(mutual))
        .route("/v1/blocks", get(blocks))
        .route("/v1/admin/players/{id}/relations/{other}", get(relation_between))
}

/// One of the caller's relationships, as the caller sees it.
#[derive(Serialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FriendView {
    pub player: PublicProfile,
    pub state: FriendState,
    pub updated_ms: i64,
}

/// A page of relationships, most recently changed first.
#[derive(Serialize, Debug, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FriendPage {
    pub items: Vec<FriendView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Friends the caller shares with another player.
#[derive(Serialize, Debug, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MutualFriends {
    /// How many there are in all; `items` holds at most `limit` of them.
    pub total: u64,
    pub items: Vec<PublicProfile>,
}

#[derive(Serialize, Debug, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Suggestion {
    pub player: PublicProfile,
    /// How many of the caller's friends are friends with this player.
    pub mutual_count: u32,
}

#[derive(Serialize, Debug, schemars::JsonSchema)]
pub struct Suggestions {
    pub items: Vec<Suggestion>,
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    cursor: Option<String>,
}

#[derive(Deserialize)]
struct LimitQuery {
    #[serde(default)]
    limit: Option<u32>,
}

/// Edge writes tried per operation before giving up: each retry means the other player changed the
/// relationship in between, which two people cannot keep doing for long.
const ATTEMPTS: usize = 6;
/// The caller's friends whose friends are considered for suggestions, most recent first.
const SUGGESTION_SOURCES: i64 = 100;
/// Friendships of those friends read for suggestions: the bound on a suggestion request's work.
const SUGGESTION_EDGES: i64 = 2_000;
/// Players loaded per query while filtering ranked suggestions.
const SUGGESTION_BATCH: usize = 100;
const MAX_SUGGESTIONS: u32 = 50;

/// What a player does to their relationship with another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Request,
    Accept,
    Decline,
    Cancel,
    Remove,
    Block,
    Unblock,
}

impl Op {
    /// The name a step records.
    fn as_str(self) -> &'static str {
        match self {
            Op::Request => "request",
            Op::Accept => "accept",
            Op::Decline => "decline",
            Op::Cancel => "cancel",
            Op::Remove => "remove",
            Op::Block => "block",
            Op::Unblock => "unblock",
        }
    }
}

/// Why [`decide`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    AlreadyFriends,
    /// The caller blocked the other player.
    YouBlocked,
    /// The other player blocked the caller: answered like any other refused request.
    TheyBlocked,
    NoRequest,
    NotFriends,
    NotBlocked,
}

impl From<Refusal> for Error {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::AlreadyFriends => Error::Conflict("you are already friends".into()),
            Refusal::YouBlocked => Error::Conflict("you blocked this player; unblock them first".into()),
            Refusal::TheyBlocked => privacy::REQUEST_REFUSED,
            Refusal::NoRequest => Error::NotFound("friend request"),
            Refusal::NotFriends => Error::NotFound("friend"),
            Refusal::NotBlocked => Error::NotFound("block"),
        }
    }
}

const SENT: Relation = Relation {
    forward: Some(FriendState::InviteSent),
    backward: Some(FriendState::InviteReceived),
};
const MUTUAL: Relation = Relation {
    forward: Some(FriendState::Mutual),
    backward: Some(FriendState::Mutual),
};

/// The edges `op` leaves between the caller (`forward`, "mine") and the other player (`backward`,
/// "theirs"), given the edges `now`. Besides the consistent pairs it reads the half-written ones a
/// crash can leave, each as the operation that was under way: the caller's own edge is always the
/// one written last, so in `(mine, theirs)` a changed `theirs` is the caller's unfinished operation,
/// and a changed `mine` (written by the other player, who writes it first) is theirs.
///
/// A block is only ever changed by its owner's block and unblock: `theirs == Blocked` is kept as is,
/// and `mine == Blocked` changes only by [`Op::Unblock`].
fn decide(op: Op, now: Relation) -> Result<Relation, Refusal> {
    use FriendState::{Blocked, InviteReceived as Received, InviteSent as Sent, Mutual};
    let Relation {
        forward: mine,
        backward: theirs,
    } = now;
    let their_block = if theirs == Some(Blocked) { theirs } else { None };
    let ended = Relation {
        forward: None,
        backward: their_block,
    };
    // They asked me, and have not taken it back: my edge says received (their request, maybe half
    // written, or my own accept or decline half written), or both edges are past a request of mine
    // (their accept half written: `(mutual, received)`; requests crossing: `(sent, sent)`).
    let they_asked = mine == Some(Received)
        || matches!(
            (mine, theirs),
            (Some(Mutual | Sent), Some(Sent | Mutual)) | (Some(Mutual), Some(Received))
        );
    match op {
        Op::Block => Ok(Relation {
            forward: Some(Blocked),
            backward: their_block,
        }),
        Op::Unblock if mine == Some(Blocked) => Ok(ended),
        Op::Unblock => Err(Refusal::NotBlocked),
        Op::Request if mine == Some(Blocked) => Err(Refusal::YouBlocked),
        Op::Remove if mine == Some(Blocked) => Err(Refusal::NotFriends),
        _ if mine == Some(Blocked) => Err(Refusal::NoRequest),
        Op::Request if theirs == Some(Blocked) => Err(Refusal::TheyBlocked),
        Op::Request if now == MUTUAL => Err(Refusal::AlreadyFriends),
        Op::Request | Op::Accept if (they_asked || now == MUTUAL) && theirs != Some(Blocked) => Ok(MUTUAL),
        // Anything else, including my own half-finished cancel `(sent, none)` or remove
        // `(mutual, none)` and their half-finished cancel `(none, sent)` or remove `(none, mutual)`, is
        // not a standing request from them: a request starts afresh.
        Op::Request => Ok(SENT),
        Op::Accept => Err(Refusal::NoRequest),
        Op::Decline if mine == Some(Received) => Ok(ended),
        Op::Decline => Err(Refusal::NoRequest),
        // My request, or my request half written.
        Op::Cancel if mine == Some(Sent) || (mine.is_none() && theirs == Some(Received)) => Ok(ended),
        Op::Cancel => Err(Refusal::NoRequest),
        // Friends, or an accept or remove by either of us half written.
        Op::Remove if mine == Some(Mutual) || theirs == Some(Mutual) => Ok(ended),
        Op::Remove => Err(Refusal::NotFriends),
    }
}

/// The stored name of a state, as serde writes it, for filters.
fn stored(state: FriendState) -> &'static str {
    match state {
        FriendState::Mutual => "mutual",
        FriendState::InviteSent => "inviteSent",
        FriendState::InviteReceived => "inviteReceived",
        FriendState::Blocked => "blocked",
    }
}

/// Whether an edge in this state counts toward its owner's friend limit.
fn counted(state: Option<FriendState>) -> bool {
    matches!(state, Some(FriendState::Mutual | FriendState::InviteSent))
}

/// The relationship between the caller and another player as a sequence shows it, and the edges
/// (its projection) as they were read.
struct Current {
    key: String,
    head: Option<RelationshipStep>,
    edges: [Option<FriendEdge>; 2],
    relation: Relation,
}

impl Current {
    /// Reads the edges, then the sequence from the step they show. A pair with no steps yet (edges
    /// written before relationships were sequences, or none) stands as its edges say.
    async fn read(state: &AppState, me: &str, them: &str) -> Result<Self> {
        let key = RelationshipStep::key_of(me, them);
        let ids = [FriendEdge::id_of(me, them), FriendEdge::id_of(them, me)];
        let mut edges = [None, None];
        for edge in state.edges.get_many(&ids).await? {
            let side = usize::from(edge.owner != me);
            edges[side] = Some(edge);
        }
        let hint = edges.iter().flatten().map(|edge| edge.seq).max().unwrap_or(0);
        let head = state.relationships.head(&key, hint).await?;
        let relation = match &head {
            Some(step) => step.relation(me),
            None => Relation {
                forward: edges[0].as_ref().map(|edge| edge.state),
                backward: edges[1].as_ref().map(|edge| edge.state),
            },
        };
        Ok(Self {
            key,
            head,
            edges,
            relation,
        })
    }

    /// Whether the newest step, made by someone else or by another operation than `op`, ended a
    /// request between the two (accepted, declined, cancelled, or ended by a block): the step
    /// before it held one.
    async fn answered(&self, state: &AppState, me: &str, op: Op) -> Result<bool> {
        let Some(head) = self
            .head
            .as_ref()
            .filter(|head| head.seq > 1 && !(head.by == me && head.op == op.as_str()))
        else {
            return Ok(false);
        };
        let before = state
            .relationships
            .store()
            .get(&entry_id(&self.key, head.seq - 1))
            .await?;
        let pending =
            |relation: Relation| relation == SENT || relation.forward == Some(FriendState::InviteReceived);
        Ok(before.is_some_and(|step| pending(step.relation(me)) && !pending(head.relation(me))))
    }

    /// When the relationship last changed.
    fn updated_ms(&self) -> i64 {
        match &self.head {
            Some(step) => step.at_ms,
            None => self.edges[0].as_ref().map_or(0, |edge| edge.updated_ms),
        }
    }

    /// Whether the edges show the newest step.
    fn projected(&self) -> bool {
        self.head.as_ref().is_none_or(|head| {
            self.edges.iter().flatten().all(|edge| edge.seq == head.seq)
                && self.edges.iter().flatten().count() == head.states().iter().flatten().count()
        })
    }
}

impl RelationshipStep {
    /// How `me` and the other player see each other in this step.
    fn relation(&self, me: &str) -> Relation {
        if me == self.low {
            Relation {
                forward: self.low_state,
                backward: self.high_state,
            }
        } else {
            Relation {
                forward: self.high_state,
                backward: self.low_state,
            }
        }
    }

    fn states(&self) -> [Option<FriendState>; 2] {
        [self.low_state, self.high_state]
    }
}

/// What [`change`] did.
struct Outcome {
    /// The relationship as this call left it (or found it, when there was nothing to do).
    relation: Relation,
    updated_ms: i64,
    /// The pair this call wrote, if it wrote anything.
    wrote: Option<Relation>,
}

/// Applies `op` by the caller `me` to their relationship with `them` (see the module comment).
/// `target` is the other player, needed when `op` may send a request (to check their privacy).
async fn change(state: &AppState, me: &str, them: &str, op: Op, target: Option<&Player>) -> Result<Outcome> {
    let mut raced = false;
    for _ in 0..ATTEMPTS {
        let current = Current::read(state, me, them).await?;
        let now = current.relation;
        let wanted = match decide(op, now) {
            Ok(wanted) => wanted,
            // A friendship the other player made while we asked for it is what we asked for.
            Err(Refusal::AlreadyFriends) if raced => {
                return Ok(Outcome {
                    relation: now,
                    updated_ms: current.updated_ms(),
                    wrote: None,
                });
            }
            // The other player changed the relationship first (declined what we accept, accepted
            // what we decline, blocked): one of two conflicting operations wins, the other hears so.
            Err(_) if raced => {
                return Err(Error::Conflict(
                    "the relationship changed at the same moment; read it again".into(),
                ));
            }
            // Answering a request that another operation answered or withdrew just before: the two
            // conflicted, even if this call arrived only after the other had finished. (The same
            // answer repeated is just a request that is gone: 404.)
            Err(Refusal::NoRequest)
                if matches!(op, Op::Accept | Op::Decline) && current.answered(state, me, op).await? =>
            {
                return Err(Error::Conflict(
                    "that request was answered or withdrawn already".into(),
                ));
            }
            Err(refusal) => return Err(refusal.into()),
        };
        if wanted == now {
            if let Some(head) = current.head.clone().filter(|_| !current.projected()) {
                project(state, &current.key, head).await?;
            }
            return Ok(Outcome {
                relation: now,
                updated_ms: current.updated_ms(),
                wrote: None,
            });
        }
        admit(state, me, them, target, now, wanted).await?;
        let step = next_step(&current, me, them, op, wanted);
        match state.relationships.append(&step).await? {
            Append::Appended => {
                let updated_ms = step.at_ms;
                project(state, &current.key, step).await?;
                return Ok(Outcome {
                    relation: wanted,
                    updated_ms,
                    wrote: Some(wanted),
                });
            }
            Append::Taken => raced = true,
        }
    }
    Err(Error::Conflict(
        "the relationship changed while it was being updated; retry".into(),
    ))
}

/// The step after `current` that leaves `wanted` between `me` and `them`.
fn next_step(current: &Current, me: &str, them: &str, op: Op, wanted: Relation) -> RelationshipStep {
    let seq = current.head.as_ref().map_or(1, |head| head.seq + 1);
    let (low, low_state, high, high_state) = if me < them {
        (me, wanted.forward, them, wanted.backward)
    } else {
        (them, wanted.backward, me, wanted.forward)
    };
    RelationshipStep {
        id: entry_id(&current.key, seq),
        key: current.key.clone(),
        seq,
        low: low.to_owned(),
        low_state,
        high: high.to_owned(),
        high_state,
        by: me.to_owned(),
        op: op.as_str().to_owned(),
        at_ms: now_ms(),
    }
}

/// Writes the edges `head` implies (an edge per side with a state, none for a side without), and
/// again while newer steps arrive (`Sequence::settle`), so lists and privacy checks see the newest.
async fn project(state: &AppState, key: &str, head: RelationshipStep) -> Result<()> {
    state
        .relationships
        .settle(key, head, |step| {
            let sides = [
                (step.low.clone(), step.high.clone(), step.low_state),
                (step.high.clone(), step.low.clone(), step.high_state),
            ];
            let (seq, at_ms) = (step.seq, step.at_ms);
            async move {
                for (owner, other, side) in sides {
                    let id = FriendEdge::id_of(&owner, &other);
                    match side {
                        Some(friend_state) => {
                            let edge = FriendEdge {
                                id: id.clone(),
                                owner,
                                other,
                                state: friend_state,
                                updated_ms: at_ms,
                                seq,
                            };
                            state.edges.replace(&id, &edge).await?;
                        }
                        None => {
                            state.edges.delete_one(doc! {"_id": &id}).await?;
                        }
                    }
                }
                Ok(())
            }
        })
        .await?;
    Ok(())
}

/// Refuses a change that would break a privacy setting or a friend limit.
async fn admit(
    state: &AppState,
    me: &str,
    them: &str,
    target: Option<&Player>,
    now: Relation,
    wanted: Relation,
) -> Result<()> {
    if wanted == SENT {
        let target = target.ok_or(Error::NotFound("player"))?;
        privacy::check_can_request(state, me, target).await?;
        if at_limit(state, them).await? {
            return Err(Error::Conflict(
                "this player has reached their friend limit".into(),
            ));
        }
    }
    if counted(wanted.forward) && !counted(now.forward) && at_limit(state, me).await? {
        let limit = state.config.friend_limit;
        return Err(Error::Conflict(format!(
            "you have reached the friend limit of {limit}"
        )));
    }
    if counted(wanted.backward) && !counted(now.backward) && at_limit(state, them).await? {
        return Err(Error::Conflict(
            "this player has reached their friend limit".into(),
        ));
    }
    Ok(())
}

async fn at_limit(state: &AppState, player: &str) -> Result<bool> {
    let states = [stored(FriendState::Mutual), stored(FriendState::InviteSent)];
    let filter = doc! {"owner": player, "state": {"$in": states.to_vec()}};
    Ok(state.edges.count(filter).await? >= u64::from(state.config.friend_limit))
}

/// The other player's id from a path: one that cannot exist is answered like an unknown one, and the
/// caller's own is refused.
fn other_id<'a>(session: &Session, id: &'a str) -> Result<&'a str> {
    if id.is_empty() || id.len() > 64 {
        return Err(Error::NotFound("player"));
    }
    if id == session.player {
        return Err(Error::Forbidden("that is your own id"));
    }
    Ok(id)
}

fn view(target: &Player, outcome: &Outcome) -> Result<FriendView> {
    // The other player may have undone it at once (a block right after a request): then there is
    // nothing of ours left to show.
    let state = outcome.relation.forward.ok_or(Refusal::NoRequest)?;
    Ok(FriendView {
        player: PublicProfile::from(target),
        state,
        updated_ms: outcome.updated_ms,
    })
}

/// Notifies `player` of something `subject` did. Best-effort (see the module comment): the
/// relationship has changed whether or not the notification is stored.
async fn tell(state: &Shared, player: &str, kind: NotificationKind, subject: &Player) {
    let content = json!({"username": subject.username, "displayName": subject.display_name});
    if let Err(error) = events::notify(state, player, kind, Some(&subject.id), content).await {
        tracing::warn!(%error, ?kind, "friend notification failed");
    }
}

async fn caller(state: &AppState, session: &Session) -> Result<Player> {
    players::load(state, &session.player)
        .await?
        .ok_or(Error::NotFound("player"))
}

/// `POST /v1/friends/{id}`: asks `id` to be friends, or accepts when they already asked. 201 when a
/// request was sent, 200 when it already had been or the two are now friends.
async fn request(
    State(state): State<Shared>,
    session: Session,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<FriendView>)> {
    let them = other_id(&session, &id)?;
    let target = players::load_visible(&state, them).await?;
    let me = caller(&state, &session).await?;
    let outcome = change(&state, &me.id, them, Op::Request, Some(&target)).await?;
    let status = match outcome.wrote {
        Some(SENT) => {
            tell(&state, them, NotificationKind::FriendRequest, &me).await;
            StatusCode::CREATED
        }
        Some(MUTUAL) => {
            tell(&state, them, NotificationKind::FriendAccepted, &me).await;
            StatusCode::OK
        }
        _ => StatusCode::OK,
    };
    Ok((status, Json(view(&target, &outcome)?)))
}

/// `POST /v1/friends/{id}/accept`: accepts `id`'s request.
async fn accept(
    State(state): State<Shared>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Json<FriendView>> {
    let them = other_id(&session, &id)?;
    let target = players::load_visible(&state, them).await?;
    let me = caller(&state, &session).await?;
    let outcome = change(&state, &me.id, them, Op::Accept, Some(&target)).await?;
    if outcome.wrote == Some(MUTUAL) {
        tell(&state, them, NotificationKind::FriendAccepted, &me).await;
    }
    Ok(Json(view(&target, &outcome)?))
}

/// `POST /v1/friends/{id}/decline`: declines `id`'s request.
async fn decline(
    State(state): State<Shared>,
    session: Session,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let them = other_id(&session, &id)?;
    change(&state, &session.player, them, Op::Decline, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /v1/friends/{id}/request`: takes back the caller's request to `id`.
async fn cancel(State(state): State<Shared>, session: Session, Path(id): Path<String>) -> Result<StatusCode> {
    let them = other_id(&session, &id)?;
    change(&state, &session.player, them, Op::Cancel, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /v1/friends/{id}`: ends a friendship, for both.
async fn remove(State(state): State<Shared>, session: Session, Path(id): Path<String>) -> Result<StatusCode> {
    let them = other_id(&session, &id)?;
    change(&state, &session.player, them, Op::Remove, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/friends/{id}/block`: blocks `id`, ending any friendship or request between the two.
/// Succeeds alike whether or not `id` blocked the caller too.
async fn block(State(state): State<Shared>, session: Session, Path(id): Path<String>) -> Result<StatusCode> {
    let them = other_id(&session, &id)?;
    // Banned players may be blocked too: a ban can be lifted.
    players::load(&state, them)
        .await?
        .ok_or(Error::NotFound("player"))?;
    change(&state, &session.player, them, Op::Block, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /v1/friends/{id}/block`: lifts the caller's block of `id`.
async fn unblock(
    State(state): State<Shared>,
    session: Session,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let them = other_id(&session, &id)?;
    change(&state, &session.player, them, Op::Unblock, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/friends?state=&limit=&cursor=`: the caller's relationships, most recently changed first;
/// without `state`, every one but blocks.
async fn list(
    State(state): State<Shared>,
    session: Session,
    QueryParams(params): QueryParams<ListQuery>,
) -> Result<Json<FriendPage>> {
    let states = match params.state.as_deref() {
        None => vec![
            FriendState::Mutual,
            FriendState::InviteSent,
            FriendState::InviteReceived,
        ],
        Some(name) => {
            let all = [
                FriendState::Mutual,
                FriendState::InviteSent,
                FriendState::InviteReceived,
                FriendState::Blocked,
            ];
            let state = all
                .into_iter()
                .find(|state| stored(*state) == name)
                .ok_or_else(|| {
                    Error::bad(
                        "state",
                        "state must be one of mutual, inviteSent, inviteReceived, blocked",
                    )
                })?;
            vec![state]
        }
    };
    let names: Vec<&str> = states.into_iter().map(stored).collect();
    let filter = doc! {"owner": &session.player, "state": {"$in": names}};
    Ok(Json(page(&state, filter, params.limit, params.cursor).await?))
}

/// `GET /v1/blocks?limit=&cursor=`: the players the caller blocked, most recent first.
async fn blocks(
    State(state): State<Shared>,
    session: Session,
    QueryParams(params): QueryParams<ListQuery>,
) -> Result<Json<FriendPage>> {
    let filter = doc! {"owner": &session.player, "state": stored(FriendState::Blocked)};
    Ok(Json(page(&state, filter, params.limit, params.cursor).await?))
}

/// A page of the caller's edges with the other players' profiles. Banned players are left out, so a
/// page may hold fewer items than asked for; the cursor still leads on.
async fn page(
    state: &AppState,
    filter: Document,
    limit: Option<u32>,
    cursor: Option<String>,
) -> Result<FriendPage> {
    let request = PageRequest::new(limit, cursor);
    let Page { items, next_cursor } = state
        .edges
        .page(filter, SortKey::descending("updated_ms"), &request)
        .await?;
    let ids: Vec<String> = items.iter().map(|edge| edge.other.clone()).collect();
    let profiles = visible_players(state, &ids).await?;
    let items = items
        .into_iter()
        .filter_map(|edge| {
            let player = profiles.get(&edge.other)?;
            Some(FriendView {
                player: PublicProfile::from(player),
                state: edge.state,
                updated_ms: edge.updated_ms,
            })
        })
        .collect();
    Ok(FriendPage { items, next_cursor })
}

/// The players among `ids` that exist and are not banned, by id: one query rather than one cache read
/// each.
async fn visible_players(state: &AppState, ids: &[String]) -> Result<HashMap<String, Player>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let players = state.players.get_many(ids).await?;
    Ok(players
        .into_iter()
        .filter(|p| p.banned.is_none())
        .map(|p| (p.id.clone(), p))
        .collect())
}

/// `GET /v1/friends/{id}/mutual?limit=`: the caller's friends who are also `id`'s friends.
async fn mutual(
    State(state): State<Shared>,
    session: Session,
    Path(id): Path<String>,
    QueryParams(params): QueryParams<LimitQuery>,
) -> Result<Json<MutualFriends>> {
    let them = other_id(&session, &id)?;
    // Answered alike whether or not `them` blocked the caller: a block shows nowhere (privacy.rs).
    players::load_visible(&state, them).await?;
    let mine = privacy::friend_ids(&state, &session.player, i64::from(state.config.friend_limit)).await?;
    if mine.is_empty() {
        return Ok(Json(MutualFriends {
            total: 0,
            items: Vec::new(),
        }));
    }
    let filter = doc! {"owner": them, "state": stored(FriendState::Mutual), "other": {"$in": mine}};
    let total = state.edges.count(filter.clone()).await?;
    let limit = PageRequest::new(params.limit, None).limit;
    let edges = state
        .edges
        .find(filter, doc! {"updated_ms": -1}, i64::from(limit))
        .await?;
    let ids: Vec<String> = edges.into_iter().map(|edge| edge.other).collect();
    let profiles = visible_players(&state, &ids).await?;
    let items = ids
        .iter()
        .filter_map(|id| profiles.get(id))
        .map(PublicProfile::from)
        .collect();
    Ok(Json(MutualFriends { total, items }))
}

/// `GET /v1/friends/suggestions?limit=`: friends of the caller's friends, most shared friends first.
/// Left out: the caller, anyone with an edge either way (friends, requests, blocks by either side),
/// banned players and players who accept no requests. The work is bounded: the friendships of at most
/// [`SUGGESTION_SOURCES`] friends, at most [`SUGGESTION_EDGES`] of them.
async fn suggestions(
    State(state): State<Shared>,
    session: Session,
    QueryParams(params): QueryParams<LimitQuery>,
) -> Result<Json<Suggestions>> {
    let limit = params.limit.unwrap_or(10).clamp(1, MAX_SUGGESTIONS) as usize;
    let me = session.player.as_str();
    let mutual = stored(FriendState::Mutual);
    let friends: Vec<String> = state
        .edges
        .find(
            doc! {"owner": me, "state": mutual},
            doc! {"updated_ms": -1},
            SUGGESTION_SOURCES,
        )
        .await?
        .into_iter()
        .map(|edge| edge.other)
        .collect();
    if friends.is_empty() {
        return Ok(Json(Suggestions { items: Vec::new() }));
    }
    let filter = doc! {"owner": {"$in": &friends}, "state": mutual, "other": {"$ne": me}};
    let mut counts: HashMap<String, u32> = HashMap::new();
    for edge in state
        .edges
        .find(filter, doc! {"updated_ms": -1}, SUGGESTION_EDGES)
        .await?
    {
        *counts.entry(edge.other).or_default() += 1;
    }
    let candidates: Vec<&String> = counts.keys().collect();
    let known = doc! {"$or": [
        {"owner": me, "other": {"$in": &candidates}},
        {"owner": {"$in": &candidates}, "other": me},
    ]};
    let known_limit = i64::try_from(candidates.len() * 2).unwrap_or(i64::MAX);
    for edge in state.edges.find(known, doc! {}, known_limit).await? {
        counts.remove(if edge.owner == me {
            &edge.other
        } else {
            &edge.owner
        });
    }
    let mut ranked: Vec<(String, u32)> = counts.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut items = Vec::with_capacity(limit);
    for batch in ranked.chunks(SUGGESTION_BATCH) {
        let ids: Vec<String> = batch.iter().map(|(id, _)| id.clone()).collect();
        let players = visible_players(&state, &ids).await?;
        let open = batch.iter().filter_map(|(id, count)| {
            let player = players
                .get(id)
                .filter(|p| p.privacy.friend_requests != RequestAudience::Nobody)?;
            Some(Suggestion {
                player: PublicProfile::from(player),
                mutual_count: *count,
            })
        });
        items.extend(open.take(limit - items.len()));
        if items.len() == limit {
            break;
        }
    }
    Ok(Json(Suggestions { items }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use FriendState::{Blocked, InviteReceived as Received, InviteSent as Sent, Mutual};

    const STATES: [Option<FriendState>; 5] = [None, Some(Mutual), Some(Sent), Some(Received), Some(Blocked)];
    const OPS: [Op; 7] = [
        Op::Request,
        Op::Accept,
        Op::Decline,
        Op::Cancel,
        Op::Remove,
        Op::Block,
        Op::Unblock,
    ];

    fn pair(mine: Option<FriendState>, theirs: Option<FriendState>) -> Relation {
        Relation {
            forward: mine,
            backward: theirs,
        }
    }

    fn every_pair() -> impl Iterator<Item = Relation> {
        STATES
            .into_iter()
            .flat_map(|mine| STATES.into_iter().map(move |theirs| pair(mine, theirs)))
    }

    /// The pairs a finished operation leaves.
    fn consistent(relation: Relation) -> bool {
        let blocks_or_none = |s: Option<FriendState>| s.is_none() || s == Some(Blocked);
        relation == SENT
            || relation == MUTUAL
            || relation == pair(Some(Received), Some(Sent))
            || (blocks_or_none(relation.forward) && blocks_or_none(relation.backward))
    }

    #[test]
    fn stored_names_are_what_serde_writes() {
        for state in [Mutual, Sent, Received, Blocked] {
            assert_eq!(
                serde_json::to_value(state).expect("serialises"),
                json!(stored(state))
            );
        }
    }

    #[test]
    fn a_request_is_sent_accepted_or_refused_as_the_edges_stand() {
        assert_eq!(decide(Op::Request, pair(None, None)), Ok(SENT));
        assert_eq!(decide(Op::Request, SENT), Ok(SENT));
        assert_eq!(decide(Op::Request, pair(Some(Received), Some(Sent))), Ok(MUTUAL));
        assert_eq!(decide(Op::Request, MUTUAL), Err(Refusal::AlreadyFriends));
        assert_eq!(
            decide(Op::Request, pair(Some(Blocked), None)),
            Err(Refusal::YouBlocked)
        );
        assert_eq!(
            decide(Op::Request, pair(None, Some(Blocked))),
            Err(Refusal::TheyBlocked)
        );
        assert_eq!(
            decide(Op::Request, pair(Some(Blocked), Some(Blocked))),
            Err(Refusal::YouBlocked)
        );
    }

    #[test]
    fn only_a_standing_request_from_them_can_be_accepted_or_declined() {
        let theirs = pair(Some(Received), Some(Sent));
        assert_eq!(decide(Op::Accept, theirs), Ok(MUTUAL));
        assert_eq!(decide(Op::Accept, MUTUAL), Ok(MUTUAL));
        assert_eq!(decide(Op::Decline, theirs), Ok(pair(None, None)));
        for other in [
            pair(None, None),
            SENT,
            pair(None, Some(Sent)),
            pair(Some(Blocked), None),
        ] {
            assert_eq!(decide(Op::Accept, other), Err(Refusal::NoRequest), "{other:?}");
            assert_eq!(decide(Op::Decline, other), Err(Refusal::NoRequest), "{other:?}");
        }
        assert_eq!(decide(Op::Cancel, SENT), Ok(pair(None, None)));
        assert_eq!(decide(Op::Cancel, theirs), Err(Refusal::NoRequest));
        assert_eq!(decide(Op::Remove, MUTUAL), Ok(pair(None, None)));
        assert_eq!(decide(Op::Remove, SENT), Err(Refusal::NotFriends));
    }

    #[test]
    fn a_block_ends_everything_but_the_other_players_own_block() {
        for now in every_pair().filter(|now| consistent(*now)) {
            let blocked = decide(Op::Block, now).expect("blocking always succeeds");
            assert_eq!(blocked.forward, Some(Blocked));
            let expected = if now.backward == Some(Blocked) {
                Some(Blocked)
            } else {
                None
            };
            assert_eq!(blocked.backward, expected, "{now:?}");
        }
        assert_eq!(
            decide(Op::Unblock, pair(Some(Blocked), Some(Blocked))),
            Ok(pair(None, Some(Blocked)))
        );
        assert_eq!(
            decide(Op::Unblock, pair(None, Some(Blocked))),
            Err(Refusal::NotBlocked)
        );
    }

    #[test]
    fn no_operation_touches_a_block_but_its_owners() {
        for op in OPS {
            for now in every_pair() {
                let Ok(wanted) = decide(op, now) else { continue };
                if now.backward == Some(Blocked) {
                    assert_eq!(wanted.backward, Some(Blocked), "{op:?} on {now:?}");
                }
                if now.forward == Some(Blocked) && op != Op::Unblock {
                    assert_eq!(wanted.forward, Some(Blocked), "{op:?} on {now:?}");
                }
            }
        }
    }

    #[test]
    fn every_operation_ends_in_a_consistent_pair_and_repeating_it_changes_nothing() {
        for op in OPS {
            for now in every_pair() {
                let Ok(wanted) = decide(op, now) else { continue };
                assert!(consistent(wanted), "{op:?} on {now:?} gives {wanted:?}");
                // The change loop stops once a decision is a no-op or a refusal: never another write.
                if let Ok(again) = decide(op, wanted) {
                    assert_eq!(again, wanted, "{op:?} on {now:?}");
                }
            }
        }
    }

    #[test]
    fn a_retry_after_a_crash_between_the_two_writes_finishes_the_operation() {
        for op in OPS {
            for now in every_pair().filter(|now| consistent(*now)) {
                let Ok(wanted) = decide(op, now) else { continue };
                // Their edge written, mine not yet.
                let half = pair(now.forward, wanted.backward);
                assert_eq!(
                    decide(op, half),
                    Ok(wanted),
                    "{op:?} from {now:?} crashed at {half:?}"
                );
            }
        }
    }

    #[test]
    fn requests_crossing_or_meeting_a_half_written_accept_end_as_friends() {
        // Each inserted the other's `inviteReceived`; both of our own inserts then failed.
        assert_eq!(
            decide(Op::Request, pair(Some(Received), Some(Received))),
            Ok(MUTUAL)
        );
        // A filtered update applied in two steps let both requests through.
        assert_eq!(decide(Op::Request, pair(Some(Sent), Some(Sent))), Ok(MUTUAL));
        // They accepted my request and crashed before their own edge.
        assert_eq!(
            decide(Op::Request, pair(Some(Mutual), Some(Received))),
            Ok(MUTUAL)
        );
        // They were removing me, or cancelling their request: no consent stands, so I ask afresh.
        assert_eq!(decide(Op::Request, pair(None, Some(Mutual))), Ok(SENT));
        assert_eq!(decide(Op::Request, pair(None, Some(Sent))), Ok(SENT));
    }
}

/// How two players stand, for other services (the economy refuses trades across a block).
#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RelationView {
    /// Either blocked the other.
    pub blocked: bool,
    pub friends: bool,
}

/// `GET /v1/admin/players/{id}/relations/{other}` (service key): 404 when either player does not
/// exist, so a caller also learns that both accounts are real.
async fn relation_between(
    State(state): State<Shared>,
    _caller: ServiceCaller,
    Path((id, other)): Path<(String, String)>,
) -> Result<Json<RelationView>> {
    let found = state.players.get_many(&[id.as_str(), other.as_str()]).await?;
    let exists = |player: &str| found.iter().any(|p| p.id == player);
    if !exists(&id) || !exists(&other) {
        return Err(Error::NotFound("player"));
    }
    let relation = privacy::relation(&state, &id, &other).await?;
    Ok(Json(RelationView {
        blocked: relation.blocked(),
        friends: relation.friends(),
    }))
}
