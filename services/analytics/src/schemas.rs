//! The schema registry: a JSON Schema (draft 2020-12) per custom event name, managed through the
//! admin API and kept in the durable Redis. An event whose name is not a built-in kind is
//! collected only if a schema is registered for its name and its properties pass it.
//!
//! Every collector replica keeps the schemas compiled; a version number, bumped on each change,
//! tells it when to reload, and it is read once per batch that holds a custom event, so a schema
//! registered on one replica holds on all of them from the next batch on.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use flotilla_service::extract::JsonBody;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::caller::AdminCaller;
use crate::state::{AppState, Shared};
use crate::{Error, Result};

/// A schema document's largest size, in bytes.
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;
/// Registered custom events.
pub const MAX_SCHEMAS: usize = 1000;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/admin/schemas", get(list))
        .route("/v1/admin/schemas/{name}", get(show).put(register).delete(remove))
}

/// The compiled schemas at one version.
#[derive(Default)]
struct Compiled {
    version: u64,
    validators: HashMap<String, Arc<jsonschema::Validator>>,
}

/// What a collector replica knows of the registry.
#[derive(Default)]
pub struct Registry {
    compiled: RwLock<Arc<Compiled>>,
}

/// The validators a batch is checked with.
pub struct Snapshot(Arc<Compiled>);

impl Snapshot {
    /// Checks a custom event's properties; the reason names the first failing property.
    pub fn check(&self, name: &str, properties: &Value) -> Result<(), String> {
        let Some(validator) = self.0.validators.get(name) else {
            return Err(format!(
                "{name} is not a built-in event (session_start, session_end, progression, resource, \
                 purchase, design) and has no registered schema"
            ));
        };
        match validator.iter_errors(properties).next() {
            None => Ok(()),
            Some(error) => {
                let path = error.instance_path().to_string();
                Err(match path.is_empty() {
                    true => format!("properties: {error}"),
                    false => format!("properties{path}: {error}"),
                })
            }
        }
    }
}

/// A schema checked as one the registry can hold: an object schema that compiles on its own.
fn compile(schema: &Value) -> Result<jsonschema::Validator, String> {
    if schema.get("type").and_then(Value::as_str) != Some("object") {
        return Err("the schema describes the properties: its type is \"object\"".into());
    }
    // Without the resolver features, a `$ref` to anything outside the document fails here.
    jsonschema::draft202012::new(schema).map_err(|error| error.to_string())
}

impl Registry {
    /// The current validators, reloaded from Redis if another replica changed them.
    pub async fn snapshot(&self, state: &AppState) -> Result<Snapshot> {
        let mut redis = state.log_redis.clone();
        let version: Option<u64> = redis
            .get(state.keys.schemas_version())
            .await
            .map_err(flotilla_storage::Error::from)?;
        let version = version.unwrap_or(0);
        let current = self.compiled.read().expect("schema lock").clone();
        if current.version == version {
            return Ok(Snapshot(current));
        }
        let stored: HashMap<String, String> = redis
            .hgetall(state.keys.schemas())
            .await
            .map_err(flotilla_storage::Error::from)?;
        let mut validators = HashMap::new();
        for (name, text) in stored {
            // Every stored schema compiled when it was registered; one that no longer does (a
            // newer library) refuses its events rather than the whole registry.
            match serde_json::from_str::<Value>(&text)
                .map_err(|e| e.to_string())
                .and_then(|s| compile(&s))
            {
                Ok(validator) => {
                    validators.insert(name, Arc::new(validator));
                }
                Err(error) => tracing::error!(%name, %error, "a stored schema does not compile"),
            }
        }
        let compiled = Arc::new(Compiled { version, validators });
        *self.compiled.write().expect("schema lock") = compiled.clone();
        Ok(Snapshot(compiled))
    }
}

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub struct Schemas {
    /// Each custom event's JSON Schema, by name.
    pub schemas: BTreeMap<String, Value>,
}

async fn list(State(state): State<Shared>, _: AdminCaller) -> Result<Json<Schemas>> {
    let mut redis = state.log_redis.clone();
    let stored: HashMap<String, String> = redis
        .hgetall(state.keys.schemas())
        .await
        .map_err(flotilla_storage::Error::from)?;
    Ok(Json(Schemas {
        schemas: stored
            .into_iter()
            .map(|(name, text)| (name, serde_json::from_str(&text).unwrap_or(Value::Null)))
            .collect(),
    }))
}

fn custom_name(name: &str) -> Result<()> {
    if !crate::event::valid_name(name) {
        return Err(Error::bad(
            "name",
            "name must be 1-64 of a-z 0-9 _, starting with a letter",
        ));
    }
    if crate::event::Kind::parse(name).is_some() {
        return Err(Error::bad("name", format!("{name} is a built-in event")));
    }
    Ok(())
}

async fn show(State(state): State<Shared>, _: AdminCaller, Path(name): Path<String>) -> Result<Json<Value>> {
    custom_name(&name)?;
    let mut redis = state.log_redis.clone();
    let text: Option<String> = redis
        .hget(state.keys.schemas(), &name)
        .await
        .map_err(flotilla_storage::Error::from)?;
    let text = text.ok_or(Error::NotFound("schema"))?;
    serde_json::from_str(&text)
        .map(Json)
        .map_err(|e| Error::Internal(format!("stored schema: {e}")))
}

async fn register(
    State(state): State<Shared>,
    _: AdminCaller,
    Path(name): Path<String>,
    JsonBody(schema): JsonBody<Value>,
) -> Result<StatusCode> {
    custom_name(&name)?;
    let text = serde_json::to_string(&schema).map_err(|e| Error::Internal(e.to_string()))?;
    if text.len() > MAX_SCHEMA_BYTES {
        return Err(Error::TooLarge(format!(
            "a schema is at most {MAX_SCHEMA_BYTES} bytes"
        )));
    }
    compile(&schema).map_err(|message| Error::bad("schema", message))?;
    let mut redis = state.log_redis.clone();
    let count: usize = redis
        .hlen(state.keys.schemas())
        .await
        .map_err(flotilla_storage::Error::from)?;
    let exists: bool = redis
        .hexists(state.keys.schemas(), &name)
        .await
        .map_err(flotilla_storage::Error::from)?;
    if count >= MAX_SCHEMAS && !exists {
        return Err(Error::bad("name", format!("at most {MAX_SCHEMAS} custom events")));
    }
    let () = redis::pipe()
        .atomic()
        .hset(state.keys.schemas(), &name, text)
        .ignore()
        .incr(state.keys.schemas_version(), 1)
        .ignore()
        .query_async(&mut redis)
        .await
        .map_err(flotilla_storage::Error::from)?;
    tracing::info!(%name, "schema registered");
    Ok(match exists {
        true => StatusCode::OK,
        false => StatusCode::CREATED,
    })
}

async fn remove(State(state): State<Shared>, _: AdminCaller, Path(name): Path<String>) -> Result<StatusCode> {
    custom_name(&name)?;
    let mut redis = state.log_redis.clone();
    let (removed,): (u64,) = redis::pipe()
        .atomic()
        .hdel(state.keys.schemas(), &name)
        .incr(state.keys.schemas_version(), 1)
        .ignore()
        .query_async(&mut redis)
        .await
        .map_err(flotilla_storage::Error::from)?;
    match removed {
        0 => Err(Error::NotFound("schema")),
        _ => {
            tracing::info!(%name, "schema removed");
            Ok(StatusCode::NO_CONTENT)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn snapshot(name: &str, schema: Value) -> Snapshot {
        let validator = compile(&schema).expect("compiles");
        Snapshot(Arc::new(Compiled {
            version: 1,
            validators: [(name.to_owned(), Arc::new(validator))].into_iter().collect(),
        }))
    }

    #[test]
    fn properties_are_checked_against_the_event_schema() {
        let level_up = snapshot(
            "level_up",
            json!({
                "type": "object",
                "properties": {"level": {"type": "integer", "minimum": 1}, "class": {"enum": ["mage", "rogue"]}},
                "required": ["level"],
                "additionalProperties": false,
            }),
        );
        assert!(
            level_up
                .check("level_up", &json!({"level": 3, "class": "mage"}))
                .is_ok()
        );
        let reason = level_up
            .check("level_up", &json!({"level": 0}))
            .expect_err("minimum");
        assert!(reason.starts_with("properties/level: "), "{reason}");
        assert!(
            level_up.check("level_up", &json!({"class": "mage"})).is_err(),
            "required"
        );
        assert!(
            level_up
                .check("level_up", &json!({"level": 2, "extra": 1}))
                .is_err(),
            "unknown field"
        );
        assert!(
            level_up
                .check("level_up", &json!({"level": 2, "class": "bard"}))
                .is_err(),
            "enum"
        );
        let unknown = level_up.check("boss_killed", &json!({})).expect_err("no schema");
        assert!(unknown.contains("no registered schema"), "{unknown}");
    }

    #[test]
    fn only_object_schemas_that_compile_on_their_own_are_registered() {
        assert!(compile(&json!({"type": "string"})).is_err());
        assert!(compile(&json!({"type": "object", "properties": {"a": {"type": "nonsense"}}})).is_err());
        assert!(
            compile(&json!({"type": "object", "properties": {"a": {"$ref": "https://example.com/s.json"}}}))
                .is_err()
        );
        assert!(compile(&json!({"type": "object", "properties": {"a": {"pattern": "("}}})).is_err());
        assert!(compile(&json!({"type": "object"})).is_ok());
    }
}
