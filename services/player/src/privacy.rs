//! The rules for who may see or reach whom. Every handler that shows a player's data to another or
//! lets one player reach another goes through here, so a block is never forgotten on some path.
//!
//! Blocking is symmetric in effect: once either player blocks the other, neither can send requests,
//! messages or notifications to the other, nor see the other's presence. A block shows nowhere: on
//! every path the blocked player hears exactly what a player refused by the strictest privacy
//! settings hears (the same public profile and search results as anyone, 403 with the same message
//! for a request or a message, no presence), so they cannot tell blocked from "nobody" or "friends
//! only" (`tests/friends.rs`, one check per path).

use mongodb::bson::doc;

use crate::error::{Error, Result};
use crate::model::{Audience, FriendEdge, FriendState, MessageAudience, Player, RequestAudience};
use crate::state::AppState;

/// Both edges between two players.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Relation {
    /// How `a` sees `b`.
    pub forward: Option<FriendState>,
    /// How `b` sees `a`.
    pub backward: Option<FriendState>,
}

impl Relation {
    pub fn blocked(&self) -> bool {
        self.forward == Some(FriendState::Blocked) || self.backward == Some(FriendState::Blocked)
    }

    pub fn friends(&self) -> bool {
        self.forward == Some(FriendState::Mutual) && self.backward == Some(FriendState::Mutual)
    }
}

pub async fn relation(state: &AppState, a: &str, b: &str) -> Result<Relation> {
    let ids = [FriendEdge::id_of(a, b), FriendEdge::id_of(b, a)];
    let edges = state.edges.get_many(&ids).await?;
    let mut relation = Relation::default();
    for edge in edges {
        if edge.owner == a {
            relation.forward = Some(edge.state);
        } else {
            relation.backward = Some(edge.state);
        }
    }
    Ok(relation)
}

/// Whether `viewer` may see `target`'s presence.
pub async fn can_see_presence(state: &AppState, viewer: &str, target: &Player) -> Result<bool> {
    if viewer == target.id {
        return Ok(true);
    }
    let relation = relation(state, viewer, &target.id).await?;
    Ok(presence_visible(target.privacy.presence, relation))
}

pub fn presence_visible(audience: Audience, relation: Relation) -> bool {
    !relation.blocked()
        && match audience {
            Audience::Everyone => true,
            Audience::Friends => relation.friends(),
            Audience::Nobody => false,
        }
}

/// Refuses unless `sender` may message `target`.
pub async fn check_can_message(state: &AppState, sender: &str, target: &Player) -> Result<()> {
    if sender == target.id {
        return Err(Error::Forbidden("cannot message yourself"));
    }
    let relation = relation(state, sender, &target.id).await?;
    let allowed = !relation.blocked()
        && match target.privacy.messages {
            MessageAudience::Everyone => true,
            MessageAudience::Friends => relation.friends(),
        };
    if allowed {
        Ok(())
    } else {
        Err(Error::Forbidden("this player does not accept messages from you"))
    }
}

/// The one answer to a refused friend request, whatever the reason (a block either way, the target's
/// settings), so a blocked player cannot tell that they are blocked.
pub const REQUEST_REFUSED: Error = Error::Forbidden("this player does not accept friend requests from you");

/// Refuses unless `requester` may send `target` a friend request.
pub async fn check_can_request(state: &AppState, requester: &str, target: &Player) -> Result<()> {
    if requester == target.id {
        return Err(Error::Forbidden("cannot befriend yourself"));
    }
    let relation = relation(state, requester, &target.id).await?;
    if relation.blocked() {
        return Err(REQUEST_REFUSED);
    }
    match target.privacy.friend_requests {
        RequestAudience::Everyone => Ok(()),
        RequestAudience::Nobody => Err(REQUEST_REFUSED),
        RequestAudience::FriendsOfFriends => {
            if have_mutual_friend(state, requester, &target.id).await? {
                Ok(())
            } else {
                Err(REQUEST_REFUSED)
            }
        }
    }
}

/// Ids of `player`'s mutual friends (at most `limit`).
pub async fn friend_ids(state: &AppState, player: &str, limit: i64) -> Result<Vec<String>> {
    let edges = state
        .edges
        .find(doc! {"owner": player, "state": "mutual"}, doc! {"_id": 1}, limit)
        .await?;
    Ok(edges.into_iter().map(|e| e.other).collect())
}

async fn have_mutual_friend(state: &AppState, a: &str, b: &str) -> Result<bool> {
    let limit = i64::from(state.config.friend_limit);
    let mine = friend_ids(state, a, limit).await?;
    if mine.is_empty() {
        return Ok(false);
    }
    let shared = state
        .edges
        .count(doc! {"owner": b, "state": "mutual", "other": {"$in": mine}})
        .await?;
    Ok(shared > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relation(forward: Option<FriendState>, backward: Option<FriendState>) -> Relation {
        Relation { forward, backward }
    }

    #[test]
    fn presence_follows_the_audience_and_a_block_overrides_it() {
        let mutual = relation(Some(FriendState::Mutual), Some(FriendState::Mutual));
        let stranger = Relation::default();
        let blocked = relation(None, Some(FriendState::Blocked));
        let blocker = relation(Some(FriendState::Blocked), None);
        assert!(presence_visible(Audience::Everyone, stranger));
        assert!(!presence_visible(Audience::Everyone, blocked));
        assert!(!presence_visible(Audience::Everyone, blocker));
        assert!(presence_visible(Audience::Friends, mutual));
        assert!(!presence_visible(Audience::Friends, stranger));
        assert!(!presence_visible(
            Audience::Friends,
            relation(Some(FriendState::InviteSent), None)
        ));
        assert!(!presence_visible(Audience::Nobody, mutual));
    }
}
