//! Realtime events and how they reach a player on whichever replica holds their WebSocket.
//!
//! Every event for a player is published on the Redis bus under `player.<id>`; each replica runs one
//! [`dispatch`] task that receives them all and hands each to the [`crate::hub::Hub`], which writes
//! it to that player's local connections, if any. The sender never needs to know where the receiver
//! is connected.

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::model::{Message, Notification, NotificationKind, new_sortable_id};
use crate::state::Shared;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Event {
    /// A friend's presence changed; `status` is absent when they went offline.
    #[serde(rename_all = "camelCase")]
    Presence {
        player: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        status: Option<String>,
        #[serde(default)]
        payload: serde_json::Value,
    },
    Message(MessageView),
    Notification(NotificationView),
    /// The server is closing connections: a ban, a deleted account, or (with `session`) a sign-out.
    #[serde(rename_all = "camelCase")]
    Disconnect {
        #[serde(skip_serializing_if = "Option::is_none")]
        session: Option<String>,
        reason: String,
    },
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageView {
    pub id: String,
    pub from: String,
    pub to: String,
    pub body: String,
    pub sent_ms: i64,
}

impl From<Message> for MessageView {
    fn from(m: Message) -> Self {
        Self {
            id: m.id,
            from: m.from,
            to: m.to,
            body: m.body,
            sent_ms: m.sent_ms,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationView {
    pub id: String,
    pub kind: NotificationKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub content: serde_json::Value,
    pub read: bool,
    pub created_ms: i64,
}

impl From<Notification> for NotificationView {
    fn from(n: Notification) -> Self {
        let content = serde_json::from_str(&n.content).unwrap_or(serde_json::Value::Null);
        Self {
            id: n.id,
            kind: n.kind,
            subject: n.subject,
            content,
            read: n.read,
            created_ms: n.created_ms,
        }
    }
}

const TOPIC_PREFIX: &str = "player.";

/// Sends `event` to every connection of `player`, on any replica.
pub async fn publish(state: &Shared, player: &str, event: &Event) -> Result<()> {
    let payload = serde_json::to_vec(event).map_err(flotilla_storage::Error::from)?;
    state
        .bus
        .publish(&format!("{TOPIC_PREFIX}{player}"), &payload)
        .await?;
    Ok(())
}

/// Stores a notification for `player` and pushes it live.
pub async fn notify(
    state: &Shared,
    player: &str,
    kind: NotificationKind,
    subject: Option<&str>,
    content: serde_json::Value,
) -> Result<NotificationView> {
    let now = flotilla_storage::mongo::now_ms();
    let notification = Notification {
        id: new_sortable_id(now)?,
        player: player.to_owned(),
        kind,
        subject: subject.map(str::to_owned),
        content: content.to_string(),
        read: false,
        created_ms: now,
    };
    state.notifications.insert(&notification).await?;
    let view = NotificationView::from(notification);
    publish(state, player, &Event::Notification(view.clone())).await?;
    Ok(view)
}

/// Delivers bus events to this replica's connections until the process ends.
pub async fn dispatch(state: Shared, events: impl futures::Stream<Item = flotilla_storage::pubsub::Message>) {
    let mut events = std::pin::pin!(events);
    while let Some(message) = events.next().await {
        let Some(player) = message.topic.strip_prefix(TOPIC_PREFIX) else {
            continue;
        };
        match serde_json::from_slice::<Event>(&message.payload) {
            Ok(event) => state.hub.deliver(player, &event),
            Err(error) => tracing::warn!(%error, "dropping an undecodable bus event"),
        }
    }
}
