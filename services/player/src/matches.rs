//! The game-server link: game servers report match results here with the service key (never a
//! player's token), and players read their statistics, which are counted from those reports.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use mongodb::bson::doc;
use serde::{Deserialize, Serialize};
use serde_json::json;

use flotilla_storage::mongo::now_ms;

use crate::error::{Error, Result};
use crate::events;
use crate::model::{MatchPlayer, MatchResult, NotificationKind};
use crate::rules;
use crate::session::{ServiceCaller, Session};
use crate::state::Shared;
use flotilla_service::extract::JsonBody;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/matches/{id}/results", post(report))
        .route("/v1/players/{id}/stats", get(stats))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MatchReport {
    /// The GameServer that ran the match.
    #[schemars(pattern(rules::TOKEN.pattern), length(min = rules::TOKEN.min, max = rules::TOKEN.max))]
    pub server: String,
    /// 1-1000 players, each id once.
    #[schemars(length(min = 1, max = 1000))]
    pub players: Vec<MatchPlayer>,
}

#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub matches: u64,
    pub wins: u64,
}

/// Records a match once: the match id is the document id, so a game server that retries after a
/// lost answer gets 200 instead of a second record. Players are notified only by the first report.
async fn report(
    State(state): State<Shared>,
    _caller: ServiceCaller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<MatchReport>,
) -> Result<StatusCode> {
    validate(&id, &body)?;
    let winners = body
        .players
        .iter()
        .filter(|p| p.placement == 1)
        .map(|p| p.id.clone())
        .collect();
    let result = MatchResult {
        id: id.clone(),
        server: body.server,
        players: body.players,
        winners,
        reported_ms: now_ms(),
    };
    match state.match_results.insert(&result).await {
        Ok(()) => {}
        Err(flotilla_storage::Error::Duplicate { .. }) => {
            let stored = state
                .match_results
                .get(&id)
                .await?
                .ok_or(Error::NotFound("match"))?;
            return if stored.players == result.players {
                Ok(StatusCode::OK)
            } else {
                Err(Error::Conflict(
                    "match was already reported with different results".into(),
                ))
            };
        }
        Err(error) => return Err(error.into()),
    }
    for player in &result.players {
        let content = json!({"match": id, "score": player.score, "placement": player.placement});
        events::notify(&state, &player.id, NotificationKind::MatchResult, None, content).await?;
    }
    Ok(StatusCode::CREATED)
}

fn validate(id: &str, body: &MatchReport) -> Result<()> {
    let token_like = |s: &str| rules::TOKEN.allows(s);
    if !token_like(id) {
        return Err(Error::bad(
            "id",
            "match id must be 1-128 printable ASCII characters",
        ));
    }
    if !token_like(&body.server) {
        return Err(Error::bad(
            "server",
            "server must be 1-128 printable ASCII characters",
        ));
    }
    if body.players.is_empty() || body.players.len() > 1000 {
        return Err(Error::bad("players", "a match has 1-1000 players"));
    }
    let mut ids: Vec<&str> = body.players.iter().map(|p| p.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.len() != body.players.len() || !ids.iter().all(|id| token_like(id)) {
        return Err(Error::bad(
            "players",
            "player ids must be distinct, 1-128 printable ASCII characters",
        ));
    }
    Ok(())
}

/// Matches played and won, counted from the reports: a retried report can never count twice.
async fn stats(
    State(state): State<Shared>,
    _session: Session,
    Path(id): Path<String>,
) -> Result<Json<Stats>> {
    crate::players::load_visible(&state, &id).await?;
    let matches = state.match_results.count(doc! {"players.id": &id}).await?;
    let wins = state.match_results.count(doc! {"winners": &id}).await?;
    Ok(Json(Stats { matches, wins }))
}
