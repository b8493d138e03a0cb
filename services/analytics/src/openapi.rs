//! The OpenAPI 3.1 document, served at `/v1/openapi.json`. Request and answer schemas are generated
//! from the Rust types; a test checks that every route is documented and every documented route
//! exists.

use axum::routing::get;
use axum::{Json, Router};
use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

use crate::admin::PipelineStatus;
use crate::collector::{Batch, Collected};
use crate::event::Event;
use crate::export::ExportQuery;
use crate::kpi::KpiQuery;
use crate::kpi::custom::{CountQuery, Counts};
use crate::kpi::daily::Report;
use crate::kpi::funnel::{Funnel, FunnelQuery};
use crate::kpi::sessions::SessionReport;
use crate::live::Live;
use crate::schemas::Schemas;
use crate::state::Shared;

pub fn routes() -> Router<Shared> {
    Router::new().route("/v1/openapi.json", get(|| async { Json(document()) }))
}

/// `T`'s schema, its own types referenced under `#/components/schemas/`.
fn schema<T: schemars::JsonSchema>() -> Value {
    let generator = SchemaSettings::draft2020_12()
        .with(|settings| settings.definitions_path = "/components/schemas".into())
        .into_generator();
    let mut schema = serde_json::to_value(generator.into_root_schema_for::<T>()).unwrap_or_default();
    if let Some(object) = schema.as_object_mut() {
        object.remove("components");
        object.remove("$schema");
    }
    schema
}

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn error(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": reference("Error")}}})
}

/// One operation: `auth` names security schemes; `body` a schema name or "".
fn op(summary: &str, auth: &[&str], body: &str, answer: Value) -> Value {
    let mut operation = json!({
        "summary": summary,
        "security": auth.iter().map(|scheme| json!({*scheme: []})).collect::<Vec<_>>(),
        "responses": {
            "200": {"description": "success", "content": answer},
            "400": error("bad input; `field` names it"),
            "401": error("missing, invalid, expired or revoked credential"),
            "503": error("storage is unavailable; send again"),
        },
    });
    if !body.is_empty() {
        operation["requestBody"] =
            json!({"required": true, "content": {"application/json": {"schema": reference(body)}}});
    }
    operation
}

fn json_answer(name: &str) -> Value {
    json!({"application/json": {"schema": reference(name)}})
}

/// The query parameters of `T`, one per property.
fn query_parameters<T: schemars::JsonSchema>() -> Value {
    let schema = schema::<T>();
    let required: Vec<String> = serde_json::from_value(schema["required"].clone()).unwrap_or_default();
    let parameters: Vec<Value> = schema["properties"]
        .as_object()
        .map(|properties| {
            properties
                .iter()
                .map(|(name, property)| {
                    json!({"name": name, "in": "query", "required": required.contains(name), "schema": property})
                })
                .collect()
        })
        .unwrap_or_default();
    Value::Array(parameters)
}

pub fn document() -> Value {
    let mut collect = op(
        "Collect a batch of up to 500 events / 1 MiB (Content-Encoding: gzip accepted); each \
         rejected event is reported with its index and reason, the valid ones are kept",
        &["player", "service"],
        "Batch",
        json_answer("Collected"),
    );
    collect["responses"]["413"] = error("more than 500 events or 1 MiB");
    let mut export = op(
        "Stream the events of a time range, as JSON lines or CSV (gzip on request) or Parquet (zstd)",
        &["admin"],
        "",
        json!({"application/jsonl": {"schema": {"type": "string"}}, "text/csv": {"schema": {"type": "string"}},
               "application/gzip": {"schema": {"type": "string", "contentEncoding": "binary"}},
               "application/vnd.apache.parquet": {"schema": {"type": "string", "contentEncoding": "binary"}}}),
    );
    export["parameters"] = query_parameters::<ExportQuery>();
    let mut kpis = op(
        "KPIs of a range of local days in a time zone: active players, new players, revenue, \
         ARPDAU, ARPPU, paying share, conversion, retention by install cohort",
        &["admin"],
        "",
        json_answer("Report"),
    );
    kpis["parameters"] = query_parameters::<KpiQuery>();
    let mut sessions = op(
        "Sessions per local day of their start, and their length: explicit (session_start to the \
         session's last event) or cut by 30 minutes of inactivity, at most 24 hours",
        &["admin"],
        "",
        json_answer("SessionReport"),
    );
    sessions["parameters"] = query_parameters::<KpiQuery>();
    let mut funnel = op(
        "Players through an ordered list of events within a window, entering on a day of the range",
        &["admin"],
        "",
        json_answer("Funnel"),
    );
    funnel["parameters"] = query_parameters::<FunnelQuery>();
    let mut counts = op(
        "An event's counts, players and sums per local day, grouped by a property",
        &["admin"],
        "",
        json_answer("Counts"),
    );
    counts["parameters"] = query_parameters::<CountQuery>();
    let name = json!([{"name": "name", "in": "path", "required": true,
        "schema": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,63}$"}}]);
    let mut show = op(
        "A custom event's JSON Schema",
        &["admin"],
        "",
        json!({"application/json": {"schema": {"type": "object"}}}),
    );
    show["responses"]["404"] = error("no schema of that name");
    let mut put = op(
        "Register or replace a custom event's JSON Schema (draft 2020-12, type object, no external \
         references); 201 when new. Events of that name are checked against it from the next batch",
        &["admin"],
        "",
        json!({}),
    );
    put["requestBody"] =
        json!({"required": true, "content": {"application/json": {"schema": {"type": "object"}}}});
    put["responses"]["201"] = json!({"description": "registered"});
    put["responses"]["413"] = error("a schema over 64 KiB");
    let mut delete = op(
        "Remove a custom event's schema: its events are refused from then on",
        &["admin"],
        "",
        json!({}),
    );
    delete["responses"] = json!({"204": {"description": "removed"}, "404": error("no schema of that name"),
        "401": error("missing or invalid admin key"), "400": error("not a custom event name")});
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Flotilla analytics service", "version": env!("CARGO_PKG_VERSION")},
        "paths": {
            "/v1/events": {"post": collect},
            "/v1/admin/pipeline": {"get": op("Where each log shard's processing stands", &["admin"], "", json_answer("PipelineStatus"))},
            "/v1/admin/live": {"get": op("The live counters", &["admin"], "", json_answer("Live"))},
            "/v1/admin/live/stream": {"get": op(
                "The live counters as Server-Sent Events: a `live` event (data: Live) every second; \
                 an `error` event when a read fails, and the stream goes on",
                &["admin"], "", json!({"text/event-stream": {"schema": reference("Live")}}))},
            "/dashboard": {"get": {"summary": "The dashboard: a web page that asks for the admin key and \
                draws the KPIs, retention, funnels and the live counters",
                "responses": {"200": {"description": "HTML", "content": {"text/html": {}}}}}},
            "/v1/admin/exports": {"get": export},
            "/v1/admin/kpis": {"get": kpis},
            "/v1/admin/kpis/sessions": {"get": sessions},
            "/v1/admin/kpis/funnel": {"get": funnel},
            "/v1/admin/kpis/events": {"get": counts},
            "/v1/admin/schemas": {"get": op("Every custom event's JSON Schema", &["admin"], "", json_answer("Schemas"))},
            "/v1/admin/schemas/{name}": {"parameters": name, "get": show, "put": put, "delete": delete},
            "/v1/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3.1"}}}},
        },
        "components": {
            "securitySchemes": {
                "player": {"type": "http", "scheme": "bearer", "bearerFormat": "player service access token"},
                "service": {"type": "http", "scheme": "bearer", "description": "the service key"},
                "admin": {"type": "http", "scheme": "bearer", "description": "the admin key"},
            },
            "schemas": schemas(),
        },
    })
}

/// Adds `T`'s schema as `name`, and the schemas of the types it refers to.
fn register<T: schemars::JsonSchema>(schemas: &mut serde_json::Map<String, Value>, name: &str) {
    let generator = SchemaSettings::draft2020_12()
        .with(|settings| settings.definitions_path = "/components/schemas".into())
        .into_generator();
    let mut root = serde_json::to_value(generator.into_root_schema_for::<T>()).unwrap_or_default();
    if let Some(object) = root.as_object_mut() {
        if let Some(Value::Object(mut components)) = object.remove("components")
            && let Some(Value::Object(nested)) = components.remove("schemas")
        {
            schemas.extend(nested);
        }
        object.remove("$schema");
    }
    schemas.insert(name.into(), root);
}

fn schemas() -> Value {
    let mut schemas = serde_json::Map::new();
    register::<Batch>(&mut schemas, "Batch");
    register::<Event>(&mut schemas, "Event");
    register::<Collected>(&mut schemas, "Collected");
    register::<PipelineStatus>(&mut schemas, "PipelineStatus");
    register::<Live>(&mut schemas, "Live");
    register::<Report>(&mut schemas, "Report");
    register::<SessionReport>(&mut schemas, "SessionReport");
    register::<Funnel>(&mut schemas, "Funnel");
    register::<Counts>(&mut schemas, "Counts");
    register::<Schemas>(&mut schemas, "Schemas");
    schemas.insert(
        "Error".into(),
        json!({"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"}},
        }}}),
    );
    Value::Object(schemas)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCES: [&str; 8] = [
        include_str!("collector.rs"),
        include_str!("export.rs"),
        include_str!("schemas.rs"),
        include_str!("admin.rs"),
        include_str!("live.rs"),
        include_str!("dashboard/mod.rs"),
        include_str!("openapi.rs"),
        include_str!("lib.rs"),
    ];

    #[test]
    fn every_route_is_documented_and_every_documented_route_exists() {
        let document = document();
        let mut routed = Vec::new();
        for source in SOURCES {
            for route in source.split(".route(\"").skip(1) {
                let path = route.split('"').next().unwrap_or_default().to_owned();
                let handlers = route.lines().next().unwrap_or_default();
                let methods = handlers
                    .split(['.', ' '])
                    .filter_map(|call| call.split_once('(').map(|(method, _)| method))
                    .filter(|method| ["get", "post", "put", "patch", "delete"].contains(method));
                for method in methods {
                    assert!(
                        document["paths"][&path][method].is_object(),
                        "{method} {path} is not documented"
                    );
                }
                routed.push(path);
            }
        }
        for path in document["paths"].as_object().expect("paths").keys() {
            assert!(routed.contains(path), "{path} is documented but not routed");
        }
    }

    #[test]
    fn every_reference_names_a_registered_schema() {
        let document = document();
        let text = document.to_string();
        for target in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = target.split('"').next().unwrap_or_default();
            assert!(
                document["components"]["schemas"][name].is_object(),
                "{name} is referenced but not registered"
            );
        }
    }
}
