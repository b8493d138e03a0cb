//! `POST /v1/events`: batches of up to 500 events / 1 MiB (gzip accepted) from game clients, game
//! servers and back-ends. Every event is checked on its own: the answer lists each rejected one
//! with its index and reason, and the valid ones in the same batch are kept. The batch is
//! acknowledged only once every accepted event is durably in the log; after a failure the whole
//! batch may be sent again, since the pipeline counts an event id once per player. Custom events
//! are checked against their registered schemas ([`crate::schemas`]).

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::caller::Sender;
use crate::event::{self, Event, FLOOD, LATE, Stored};
use crate::log::shard_of;
use crate::schemas::Snapshot;
use crate::state::Shared;
use crate::{Error, Result};

/// Events per batch.
pub const MAX_EVENTS: usize = 500;
/// Bytes per batch, after decompression.
pub const MAX_BYTES: usize = 1024 * 1024;

pub fn routes() -> Router<Shared> {
    Router::new().route("/v1/events", post(collect))
}

/// A batch as sent.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    /// The game the events are from (`[a-z0-9-]{1,32}`); the service's default game if absent.
    #[serde(default)]
    pub game: Option<String>,
    /// Each event is checked on its own, so they are taken as any JSON here.
    #[schemars(with = "Vec<Event>")]
    pub events: Vec<Value>,
}

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Collected {
    /// Events durably in the log (excluded ones included).
    pub accepted: usize,
    pub rejected: Vec<Rejected>,
    /// Accepted events kept out of KPIs, by reason (`flood`: past the player's rate limit;
    /// `late`: older than the age limit, quarantined).
    pub excluded: BTreeMap<String, usize>,
}

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Rejected {
    pub index: usize,
    pub reason: String,
}

pub fn valid_game(game: &str) -> bool {
    (1..=32).contains(&game.len())
        && game
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The body, decompressed when sent with `Content-Encoding: gzip`, at most [`MAX_BYTES`].
fn decode(headers: &HeaderMap, body: Bytes) -> Result<Vec<u8>> {
    let too_large = || Error::TooLarge(format!("a batch is at most {MAX_BYTES} bytes"));
    let encoding = headers
        .get(axum::http::header::CONTENT_ENCODING)
        .map(|value| value.to_str().unwrap_or("?").to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("identity") if body.len() > MAX_BYTES => Err(too_large()),
        None | Some("identity") => Ok(body.to_vec()),
        Some("gzip") => {
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(&body[..])
                .take(MAX_BYTES as u64 + 1)
                .read_to_end(&mut plain)
                .map_err(|_| Error::bad("Content-Encoding", "the body is not valid gzip"))?;
            match plain.len() > MAX_BYTES {
                true => Err(too_large()),
                false => Ok(plain),
            }
        }
        Some(_) => Err(Error::bad("Content-Encoding", "send gzip or no Content-Encoding")),
    }
}

async fn collect(
    State(state): State<Shared>,
    sender: Sender,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Json<Collected>> {
    let started = std::time::Instant::now();
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => Error::TooLarge(format!("a batch is at most {MAX_BYTES} bytes")),
        _ => Error::bad("body", rejection.body_text()),
    })?;
    let plain = decode(&headers, body)?;
    let value: Value =
        serde_json::from_slice(&plain).map_err(|_| Error::bad("body", "the body is not valid JSON"))?;
    let batch: Batch = serde_json::from_value(value).map_err(|e| Error::bad("body", e.to_string()))?;
    if batch.events.len() > MAX_EVENTS {
        return Err(Error::TooLarge(format!(
            "a batch has at most {MAX_EVENTS} events"
        )));
    }
    let game = batch.game.unwrap_or_else(|| state.game.clone());
    if !valid_game(&game) {
        return Err(Error::bad("game", "game must be 1-32 of a-z 0-9 -"));
    }

    let custom = batch.events.iter().any(|raw| {
        raw.get("name")
            .and_then(Value::as_str)
            .is_some_and(|name| event::Kind::parse(name).is_none())
    });
    let schemas = match custom {
        true => Some(state.schemas.snapshot(&state).await?),
        false => None,
    };
    let now_ms = flotilla_storage::mongo::now_ms();
    let mut rejected = Vec::new();
    let mut kept: Vec<Stored> = Vec::new();
    for (index, raw) in batch.events.into_iter().enumerate() {
        match admit(raw, &sender, &game, &state.limits, schemas.as_ref(), now_ms) {
            Ok(stored) => kept.push(stored),
            Err(reason) => rejected.push(Rejected { index, reason }),
        }
    }
    flag_floods(&state, &mut kept, now_ms).await?;
    let mut excluded = BTreeMap::new();
    for event in &kept {
        if let Some(reason) = &event.excluded {
            *excluded.entry(reason.clone()).or_default() += 1;
        }
    }

    let mut by_shard: BTreeMap<u32, Vec<Stored>> = BTreeMap::new();
    let accepted = kept.len();
    for event in kept {
        by_shard
            .entry(shard_of(&event.player, state.log.shards()))
            .or_default()
            .push(event);
    }
    let appends = by_shard
        .iter()
        .map(|(shard, events)| state.log.append(*shard, events));
    for appended in futures::future::join_all(appends).await {
        appended?;
    }
    state.metrics.collected(accepted, rejected.len(), &excluded);
    state
        .metrics
        .collect_seconds
        .observe(started.elapsed().as_secs_f64());
    Ok(Json(Collected {
        accepted,
        rejected,
        excluded,
    }))
}

/// One event checked against the envelope and its kind's rules or its registered schema, as it
/// will be stored. `schemas` is there when the batch holds a custom event.
fn admit(
    raw: Value,
    sender: &Sender,
    game: &str,
    limits: &event::Limits,
    schemas: Option<&Snapshot>,
    now_ms: i64,
) -> Result<Stored, String> {
    let event: Event = serde_json::from_value(raw).map_err(|e| e.to_string())?;
    let player = match (sender, &event.player) {
        (Sender::Player(me), Some(named)) if named != me => {
            return Err("a player may send only their own events".into());
        }
        (Sender::Player(me), _) => me.clone(),
        (Sender::Service, Some(named)) => named.clone(),
        (Sender::Service, None) => return Err("player is required".into()),
    };
    let checked = event::check(&event, &player, limits, now_ms)?;
    if event::Kind::parse(&event.name).is_none() {
        let properties = Value::Object(event.properties.clone().into_iter().collect());
        match schemas {
            Some(schemas) => schemas.check(&event.name, &properties)?,
            None => return Err(format!("{} has no registered schema", event.name)),
        }
    }
    Ok(Stored {
        id: event.id,
        game: game.to_owned(),
        name: event.name,
        player,
        session: event.session,
        time_ms: checked.time_ms,
        received_ms: now_ms,
        properties: serde_json::to_string(&event.properties).unwrap_or_else(|_| "{}".into()),
        excluded: checked.quarantined.then(|| LATE.to_owned()),
        currency: checked.currency,
        amount: checked.amount,
    })
}

/// Marks each player's events past the per-minute limit as floods: kept, counted, not in KPIs.
async fn flag_floods(state: &Shared, events: &mut [Stored], now_ms: i64) -> Result<()> {
    let mut counts: HashMap<&str, u64> = HashMap::new();
    for event in events.iter() {
        *counts.entry(event.player.as_str()).or_default() += 1;
    }
    if counts.is_empty() {
        return Ok(());
    }
    let minute = now_ms / 60_000;
    let players: Vec<(String, u64)> = counts.into_iter().map(|(p, n)| (p.to_owned(), n)).collect();
    let mut pipe = redis::pipe();
    for (player, count) in &players {
        let key = state.keys.flood(player, minute);
        pipe.incr(&key, *count).expire(&key, 120).ignore();
    }
    let mut redis = state.log_redis.clone();
    let totals: Vec<u64> = pipe
        .query_async(&mut redis)
        .await
        .map_err(flotilla_storage::Error::from)?;
    let limit = state.max_events_per_minute;
    let mut over: HashMap<&str, u64> = HashMap::new();
    for ((player, count), total) in players.iter().zip(totals) {
        let excess = total.saturating_sub(limit).min(*count);
        if excess > 0 {
            over.insert(player, excess);
        }
    }
    // The player's last events in the batch are the ones past the limit.
    for event in events.iter_mut().rev() {
        if let Some(excess) = over.get_mut(event.player.as_str())
            && *excess > 0
        {
            *excess -= 1;
            if event.excluded.is_none() {
                event.excluded = Some(FLOOD.to_owned());
            }
        }
    }
    Ok(())
}
