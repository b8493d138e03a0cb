//! Reading players (through the profile cache), what other players may see of them, and the
//! validation of what players may set.

use futures::StreamExt;
use mongodb::bson::doc;
use serde::Serialize;

use flotilla_storage::search::PlayerDoc;

use crate::error::{Error, Result};
use crate::model::{Ban, Player, Privacy};
use crate::rules;
use crate::state::{AppState, Storage};

/// A player by id, read through the cache. Writers call [`invalidate`] after every change.
pub async fn load(state: &AppState, id: &str) -> Result<Option<Player>> {
    if id.is_empty() || id.len() > 64 {
        return Ok(None);
    }
    if state.config.profile_cache_ttl.is_zero() {
        return Ok(state.players.get(id).await?);
    }
    let players = state.players.clone();
    let owned = id.to_owned();
    Ok(state
        .profiles
        .get_or_load(id, || async move { players.get(&owned).await })
        .await?)
}

/// Like [`load`], but a missing (or banned: they are hidden from others) player is a 404.
pub async fn load_visible(state: &AppState, id: &str) -> Result<Player> {
    match load(state, id).await? {
        Some(player) if player.banned.is_none() => Ok(player),
        _ => Err(Error::NotFound("player")),
    }
}

pub async fn invalidate(state: &AppState, id: &str) -> Result<()> {
    Ok(state.profiles.invalidate(id).await?)
}

/// Makes the player document's copy of the ban match the ban record, then drops the cached profile.
/// Called by every writer of the player document after its write: on FerretDB a write lands by
/// reading the whole document and writing it back, so a profile update that read the document just
/// before a ban was copied in can write it back without it. Whichever write lands last, its writer
/// then reads the record and repairs the copy, so a ban is never lost to a concurrent profile edit.
///
/// It goes round until a reading finds the two agreeing, since its own repair may rest on a record
/// that a ban or unban changed meanwhile. Each reading takes the document before the record, never
/// both at once: a copy found in the document was written after its record, so the record read next
/// is at least as new (reading both at once lost bans in `tests/concurrency.rs`).
pub async fn settle_ban(state: &AppState, id: &str) -> Result<()> {
    while let Some(player) = state.players.get(id).await? {
        let copy = state.bans.get(id).await?.map(|record| Ban {
            reason: record.reason,
            since_ms: record.since_ms,
        });
        if player.banned == copy {
            break;
        }
        let copy = mongodb::bson::to_bson(&copy).map_err(flotilla_storage::Error::from)?;
        state.players.set(id, doc! {"banned": copy}).await?;
    }
    invalidate(state, id).await
}

/// Keeps the search index in step with a player's names. Search is secondary: a failure here is
/// logged, not returned, and `flotilla-player search-rebuild` repairs any drift.
pub async fn index(state: &AppState, player: &Player) {
    let doc = PlayerDoc {
        id: player.id.clone(),
        username: player.username.clone(),
        display_name: player.display_name.clone(),
    };
    if let Err(error) = state.search.upsert(&doc).await {
        tracing::warn!(%error, "search index update failed");
    }
}

/// Rebuilds the search index from every player in the database.
pub async fn rebuild_search(storage: &Storage) -> Result<u64> {
    let players = storage
        .mongo
        .database()
        .collection::<Player>(<Player as flotilla_storage::model::Model>::COLLECTION);
    let cursor = players
        .find(doc! {"banned": null})
        .await
        .map_err(flotilla_storage::Error::from)?;
    let docs = cursor.map(|player| {
        let player = player.map_err(flotilla_storage::Error::from)?;
        Ok(PlayerDoc {
            id: player.id,
            username: player.username,
            display_name: player.display_name,
        })
    });
    Ok(storage.search.rebuild(docs).await?)
}

/// What any other player sees: names, avatar and language. Metadata and privacy settings stay private.
#[derive(Serialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublicProfile {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub avatar_url: String,
    pub language: String,
}

impl From<&Player> for PublicProfile {
    fn from(p: &Player) -> Self {
        Self {
            id: p.id.clone(),
            username: p.username.clone(),
            display_name: p.display_name.clone(),
            avatar_url: p.avatar_url.clone(),
            language: p.language.clone(),
        }
    }
}

/// The profile as its owner sees it: the public profile and what only the owner sees.
#[derive(Serialize, Clone, Debug, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OwnProfile {
    #[serde(flatten)]
    pub public: PublicProfile,
    pub metadata: serde_json::Value,
    pub privacy: Privacy,
    pub created_ms: i64,
}

impl From<&Player> for OwnProfile {
    fn from(p: &Player) -> Self {
        Self {
            public: PublicProfile::from(p),
            metadata: serde_json::from_str(&p.metadata).unwrap_or(serde_json::Value::Null),
            privacy: p.privacy,
            created_ms: p.created_ms,
        }
    }
}

pub fn validate_username(username: &str) -> Result<()> {
    if !rules::USERNAME.allows(username) {
        return Err(Error::bad(
            "username",
            "username must be 3-24 characters of letters, digits, '_', '.' or '-', starting with a letter or digit",
        ));
    }
    Ok(())
}

pub fn validate_display_name(name: &str) -> Result<()> {
    if !rules::DISPLAY_NAME.allows(name) {
        return Err(Error::bad(
            "displayName",
            "display name must be 1-48 characters, no control characters or outer spaces",
        ));
    }
    Ok(())
}

pub fn validate_avatar_url(url: &str) -> Result<()> {
    if !rules::AVATAR_URL.allows(url) {
        return Err(Error::bad(
            "avatarUrl",
            "avatar URL must be an https:// URL of at most 512 characters",
        ));
    }
    Ok(())
}

pub fn validate_language(language: &str) -> Result<()> {
    if !rules::LANGUAGE.allows(language) {
        return Err(Error::bad(
            "language",
            "language must be a language tag such as \"en\" or \"pt-BR\"",
        ));
    }
    Ok(())
}

/// Metadata is a JSON object of at most 16 KiB once serialised.
pub fn validate_metadata(metadata: &serde_json::Value) -> Result<String> {
    if !metadata.is_object() {
        return Err(Error::bad("metadata", "metadata must be a JSON object"));
    }
    let text = metadata.to_string();
    if text.len() > 16 * 1024 {
        return Err(Error::bad("metadata", "metadata must be at most 16 KiB"));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_checked_for_length_and_characters() {
        for good in ["ann", "Ann_99", "a.b-c", &"x".repeat(24)] {
            assert!(validate_username(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "ab",
            "_ann",
            "ann smith",
            "ännä",
            "a/b",
            &"x".repeat(25),
            "ann\n",
        ] {
            assert!(validate_username(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn profile_fields_are_checked() {
        assert!(validate_display_name("Ann Smith").is_ok());
        assert!(validate_display_name(" Ann").is_err());
        assert!(validate_display_name("a\u{0}b").is_err());
        assert!(validate_avatar_url("https://cdn.example/a.png").is_ok());
        assert!(validate_avatar_url("javascript:alert(1)").is_err());
        assert!(validate_language("pt-BR").is_ok());
        assert!(validate_language("en_US!").is_err());
        assert!(validate_metadata(&serde_json::json!({"level": 3})).is_ok());
        assert!(validate_metadata(&serde_json::json!([1])).is_err());
        assert!(validate_metadata(&serde_json::json!({"x": "y".repeat(20_000)})).is_err());
    }
}
