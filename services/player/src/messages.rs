//! Direct messages between two players: sending (as the recipient's privacy and blocks allow),
//! history, read markers, and each player's list of conversations.
//!
//! A message is stored first and then pushed live to both players' connections and left as a
//! notification for the recipient. Once stored it counts as sent: a failure to push is logged, not
//! returned, so a client retrying after an error cannot send the same message twice.
//!
//! History belongs to its two participants: the conversation is always the caller's with `{id}`, so
//! nobody can name a conversation that is not theirs. It stays readable after a block, since it is
//! the reader's own.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use mongodb::bson::doc;
use serde::{Deserialize, Serialize};

use flotilla_storage::model::Store;
use flotilla_storage::mongo::now_ms;
use flotilla_storage::page::{PageRequest, SortKey};
use flotilla_storage::rate_limit::Limit;
use flotilla_storage::sequence::{Sequence, entry_id};

use crate::error::{Error, Result};
use crate::events::{self, Event, MessageView};
use crate::model::{ConversationEntry, Message, NotificationKind, PointerStep, ReadMarker, new_sortable_id};
use crate::players;
use crate::privacy;
use crate::rules;
use crate::session::Session;
use crate::state::Shared;
use flotilla_service::extract::{JsonBody, QueryParams};

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/players/{id}/messages", get(history).post(send))
        .route("/v1/players/{id}/messages/read", post(mark_read))
        .route("/v1/conversations", get(conversations))
}

/// A message body's length limit, in characters.
pub const MAX_BODY_CHARS: usize = 2000;
/// Messages a player may send, across all conversations and replicas: a chat pace, not a script's.
pub const SEND_LIMIT: Limit = Limit {
    max: 30,
    window: std::time::Duration::from_secs(10),
};
/// Characters of a message repeated in its notification.
const PREVIEW_CHARS: usize = 100;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewMessage {
    /// 1–2000 characters, not only whitespace; no control characters but newlines.
    #[schemars(pattern(rules::MESSAGE_BODY.pattern), length(min = rules::MESSAGE_BODY.min, max = rules::MESSAGE_BODY.max))]
    pub body: String,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MarkRead {
    /// A message of the conversation: it and everything before it count as read.
    pub up_to: String,
}

/// `?limit=&cursor=` of a paged list.
#[derive(Deserialize)]
pub struct HistoryQuery {
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    cursor: Option<String>,
}

/// How far each side has read, and how many of the other's messages the caller has not.
#[derive(Serialize, Debug, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadState {
    pub my_read_up_to: Option<String>,
    pub their_read_up_to: Option<String>,
    /// Messages from the other player after `myReadUpTo`.
    pub unread: u64,
}

/// A page of a conversation, newest first.
#[derive(Serialize, Debug, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct History {
    pub items: Vec<MessageView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    #[serde(flatten)]
    pub read: ReadState,
}

/// One of the caller's conversations.
#[derive(Serialize, Debug, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConversationView {
    /// The other player's id.
    pub with: String,
    /// Absent only if the message was deleted meanwhile (with an account).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_message: Option<MessageView>,
    #[serde(flatten)]
    pub read: ReadState,
}

/// The caller's conversations, the one with the newest message first.
#[derive(Serialize, Debug, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Conversations {
    pub items: Vec<ConversationView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `POST /v1/players/{id}/messages`.
async fn send(
    State(state): State<Shared>,
    session: Session,
    Path(id): Path<String>,
    JsonBody(new): JsonBody<NewMessage>,
) -> Result<(StatusCode, Json<MessageView>)> {
    validate_body(&new.body)?;
    let me = session.player.as_str();
    // Before the lookups, so refused attempts (probing who accepts messages) are counted too.
    state.limit_player("messages", me, SEND_LIMIT).await?;
    let target = players::load_visible(&state, &id).await?;
    privacy::check_can_message(&state, me, &target).await?;
    let now = now_ms();
    let message = Message {
        id: new_sortable_id(now)?,
        conversation: Message::conversation_of(me, &target.id),
        from: me.to_owned(),
        to: target.id.clone(),
        body: new.body,
        sent_ms: now,
    };
    state.messages.insert(&message).await?;
    // The message counts as sent from here on (see the module's comment): a list that missed it
    // catches up with the next message.
    if let Err(error) = record_in_conversations(&state.pointers, &state.conversations, &message).await {
        tracing::warn!(%error, "a message was not recorded in the conversation list");
    }
    let view = MessageView::from(message);
    deliver(&state, &view).await;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Pushes a stored message to both players' connections and notifies the recipient.
async fn deliver(state: &Shared, view: &MessageView) {
    let event = Event::Message(view.clone());
    for player in [&view.to, &view.from] {
        if let Err(error) = events::publish(state, player, &event).await {
            tracing::warn!(%error, "a message event was not published");
        }
    }
    let preview: String = view.body.chars().take(PREVIEW_CHARS).collect();
    let content = serde_json::json!({"messageId": view.id, "preview": preview});
    if let Err(error) = events::notify(
        state,
        &view.to,
        NotificationKind::Message,
        Some(&view.from),
        content,
    )
    .await
    {
        tracing::warn!(%error, "a message notification was not stored");
    }
}

/// `GET /v1/players/{id}/messages?limit=&cursor=`.
async fn history(
    State(state): State<Shared>,
    session: Session,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<HistoryQuery>,
) -> Result<Json<History>> {
    let conversation = conversation(&session, &id)?;
    let request = PageRequest::new(query.limit, query.cursor);
    let page = state
        .messages
        .page(
            doc! {"conversation": &conversation},
            SortKey::descending("_id"),
            &request,
        )
        .await?;
    let read = read_state(&state, &conversation, &session.player, &id).await?;
    Ok(Json(History {
        items: page.items.into_iter().map(MessageView::from).collect(),
        next_cursor: page.next_cursor,
        read,
    }))
}

/// Moves both participants' entries in their conversation lists to `message`, unless a newer
/// message is there already. Each entry is a pointer (see [`advance_pointer`]) shown by a
/// [`ConversationEntry`], which the list queries.
pub async fn record_in_conversations(
    pointers: &Sequence<PointerStep>,
    entries: &Store<ConversationEntry>,
    message: &Message,
) -> flotilla_storage::Result<()> {
    for (player, with) in [(&message.from, &message.to), (&message.to, &message.from)] {
        let id = marker_id(&message.conversation, player);
        let shown = entries.get(&id).await?;
        let (hint, base) = shown
            .as_ref()
            .map_or((0, None), |e| (e.seq, Some(e.last.as_str())));
        let Some(head) = advance_pointer(pointers, &format!("list/{id}"), hint, base, &message.id).await?
        else {
            continue;
        };
        if shown.is_some_and(|shown| shown.seq == head.seq) {
            continue;
        }
        pointers
            .settle(&head.key.clone(), head, |step| {
                let entry = ConversationEntry {
                    id: id.clone(),
                    player: player.clone(),
                    with: with.clone(),
                    conversation: message.conversation.clone(),
                    last: step.message.clone(),
                    seq: step.seq,
                };
                async move { entries.replace(&entry.id, &entry).await }
            })
            .await?;
    }
    Ok(())
}

/// Moves the pointer `key` forward to `message` (ids sort by time) unless it already stands there or
/// further, and returns the step it stands at: `None` when it has no steps and `base` (where a
/// pointer written before pointers were sequences stands) is at or past `message`. Moves are
/// appended to the pointer's sequence, so of two moves at once the newer message wins whatever the
/// order they land in.
async fn advance_pointer(
    pointers: &Sequence<PointerStep>,
    key: &str,
    hint: i64,
    base: Option<&str>,
    message: &str,
) -> flotilla_storage::Result<Option<PointerStep>> {
    let advanced = pointers
        .advance(key, hint, |head| {
            let current = head.map(|head| head.message.as_str()).or(base);
            if current.is_some_and(|current| current >= message) {
                return Ok(None);
            }
            let seq = head.map_or(1, |head| head.seq + 1);
            Ok(Some(PointerStep {
                id: entry_id(key, seq),
                key: key.to_owned(),
                seq,
                message: message.to_owned(),
            }))
        })
        .await?;
    Ok(advanced.head)
}

/// `GET /v1/conversations?limit=&cursor=`: the caller's conversations, newest message first, each
/// with that message and the read state.
async fn conversations(
    State(state): State<Shared>,
    session: Session,
    QueryParams(query): QueryParams<HistoryQuery>,
) -> Result<Json<Conversations>> {
    let me = session.player.as_str();
    let request = PageRequest::new(query.limit, query.cursor);
    let page = state
        .conversations
        .page(doc! {"player": me}, SortKey::descending("last"), &request)
        .await?;
    let last: Vec<String> = page.items.iter().map(|entry| entry.last.clone()).collect();
    let messages = state.messages.get_many(&last).await?;
    let views = page.items.into_iter().map(|entry| {
        let message = messages.iter().find(|m| m.id == entry.last).cloned();
        let state = &state;
        async move {
            let read = read_state(state, &entry.conversation, me, &entry.with).await?;
            Ok::<_, Error>(ConversationView {
                with: entry.with,
                last_message: message.map(MessageView::from),
                read,
            })
        }
    });
    Ok(Json(Conversations {
        items: futures::future::try_join_all(views).await?,
        next_cursor: page.next_cursor,
    }))
}

/// `POST /v1/players/{id}/messages/read`: moves the caller's marker forward to `upTo`, never back.
async fn mark_read(
    State(state): State<Shared>,
    session: Session,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<MarkRead>,
) -> Result<Json<ReadState>> {
    let conversation = conversation(&session, &id)?;
    let message = match state.messages.get(&body.up_to).await? {
        Some(message) if message.conversation == conversation => message,
        _ => return Err(Error::NotFound("message")),
    };
    advance_marker(&state, &conversation, &session.player, &message.id).await?;
    Ok(Json(
        read_state(&state, &conversation, &session.player, &id).await?,
    ))
}

/// Moves the reader's marker forward to `up_to`, never back (see [`advance_pointer`]).
async fn advance_marker(state: &Shared, conversation: &str, reader: &str, up_to: &str) -> Result<()> {
    let id = marker_id(conversation, reader);
    let shown = state.read_markers.get(&id).await?;
    let (hint, base) = shown
        .as_ref()
        .map_or((0, None), |m| (m.seq, Some(m.up_to.as_str())));
    let Some(head) = advance_pointer(&state.pointers, &format!("read/{id}"), hint, base, up_to).await? else {
        return Ok(());
    };
    if shown.is_some_and(|shown| shown.seq == head.seq) {
        return Ok(());
    }
    state
        .pointers
        .settle(&head.key.clone(), head, |step| {
            let marker = ReadMarker {
                id: id.clone(),
                conversation: conversation.to_owned(),
                reader: reader.to_owned(),
                up_to: step.message.clone(),
                updated_ms: now_ms(),
                seq: step.seq,
            };
            async move { state.read_markers.replace(&marker.id, &marker).await }
        })
        .await?;
    Ok(())
}

async fn read_state(state: &Shared, conversation: &str, me: &str, them: &str) -> Result<ReadState> {
    let ids = vec![marker_id(conversation, me), marker_id(conversation, them)];
    let markers = state.read_markers.get_many(&ids).await?;
    let marker_of = |reader: &str| {
        markers
            .iter()
            .find(|m| m.reader == reader)
            .map(|m| m.up_to.clone())
    };
    let (mine, theirs) = (marker_of(me), marker_of(them));
    let mut unread = doc! {"conversation": conversation, "from": them};
    if let Some(mine) = &mine {
        unread.insert("_id", doc! {"$gt": mine});
    }
    let unread = state.messages.count(unread).await?;
    Ok(ReadState {
        my_read_up_to: mine,
        their_read_up_to: theirs,
        unread,
    })
}

/// The caller's conversation with `other`.
fn conversation(session: &Session, other: &str) -> Result<String> {
    if other == session.player {
        return Err(Error::Forbidden("that is your own id"));
    }
    if other.is_empty() || other.len() > 64 {
        return Err(Error::NotFound("player"));
    }
    Ok(Message::conversation_of(&session.player, other))
}

fn marker_id(conversation: &str, reader: &str) -> String {
    format!("{conversation}/{reader}")
}

pub fn validate_body(body: &str) -> Result<()> {
    if !rules::MESSAGE_BODY.allows(body) {
        return Err(Error::bad(
            "body",
            format!(
                "message must be 1-{MAX_BODY_CHARS} characters, not only spaces, and no control characters but newlines"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_bodies_are_checked_for_length_and_characters() {
        for good in [
            "hi",
            "two\nlines",
            "ünïcödé 🎮",
            &"x".repeat(MAX_BODY_CHARS),
            &"é".repeat(MAX_BODY_CHARS),
        ] {
            assert!(validate_body(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "   ",
            "\n",
            "tab\there",
            "bell\u{7}",
            "cr\r\n",
            &"x".repeat(MAX_BODY_CHARS + 1),
        ] {
            assert!(validate_body(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_player_has_no_conversation_with_themself() {
        let session = Session {
            player: "ann".into(),
            session: "s".into(),
        };
        assert!(conversation(&session, "ann").is_err());
        assert!(conversation(&session, "").is_err());
        assert_eq!(
            conversation(&session, "bob").ok(),
            Some(Message::conversation_of("bob", "ann"))
        );
    }
}
