//! The OpenAPI 3.1 document, served at `/v1/openapi.json`. Request and answer schemas are generated
//! from the Rust types, so the document cannot drift from what the handlers accept.

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::state::Shared;

pub fn routes() -> Router<Shared> {
    Router::new().route("/v1/openapi.json", get(|| async { Json(document()) }))
}

fn schema<T: schemars::JsonSchema>() -> Value {
    serde_json::to_value(schemars::schema_for!(T)).unwrap_or_default()
}

/// One operation: `auth` is "player", "service" or "none"; `body` a schema name or "".
fn op(summary: &str, auth: &str, body: &str, ok: (&str, &str)) -> Value {
    let mut operation = json!({
        "summary": summary,
        "responses": {
            ok.0: {"description": "success", "content": {"application/json": {"schema": reference(ok.1)}}},
            "400": error("bad input; `field` names it"),
            "401": error("missing, invalid, expired or revoked credential"),
            "403": error("not allowed (privacy, block, ban)"),
            "404": error("not found, or hidden from the caller"),
            "409": error("conflicts with existing state"),
            "429": error("rate limited; see Retry-After"),
        },
    });
    if ok.1.is_empty() {
        operation["responses"][ok.0] = json!({"description": "success"});
    }
    match auth {
        "player" => operation["security"] = json!([{"player": []}]),
        "service" => operation["security"] = json!([{"service": []}]),
        _ => {}
    }
    if !body.is_empty() {
        operation["requestBody"] =
            json!({"required": true, "content": {"application/json": {"schema": reference(body)}}});
    }
    operation
}

fn reference(name: &str) -> Value {
    if name.is_empty() {
        json!({})
    } else {
        json!({"$ref": format!("#/components/schemas/{name}")})
    }
}

fn error(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

pub fn document() -> Value {
    use crate::{admin, auth, events, matches, players, profiles};
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Flotilla player service", "version": env!("CARGO_PKG_VERSION")},
        "paths": {
            "/v1/auth/email/register": {"post": op("Create an account with email and password", "none", "EmailRegistration", ("201", "Tokens"))},
            "/v1/auth/email/login": {"post": op("Sign in with email and password", "none", "EmailLogin", ("200", "Tokens"))},
            "/v1/auth/device": {"post": op("Sign in with a device id, creating the account on first use", "none", "IdLogin", ("200", "Tokens"))},
            "/v1/auth/custom": {"post": op("Sign in with a custom id, creating the account on first use", "none", "IdLogin", ("200", "Tokens"))},
            "/v1/auth/refresh": {"post": op("Exchange a refresh token for new tokens; reuse revokes the session", "none", "RefreshRequest", ("200", "Tokens"))},
            "/v1/auth/logout": {"post": op("Sign out: revoke this session", "player", "", ("204", ""))},
            "/v1/auth/link/{method}": {"post": op("Link another sign-in method (email, device, custom)", "player", "LinkRequest", ("204", ""))},
            "/v1/auth/unlink/{method}": {"post": op("Unlink a sign-in method; the last one stays", "player", "LinkRequest", ("204", ""))},
            "/v1/players/me": {
                "get": op("Your profile", "player", "", ("200", "OwnProfile")),
                "patch": op("Update your profile and privacy settings", "player", "ProfileUpdate", ("200", "OwnProfile")),
                "delete": op("Delete your account and personal data", "player", "", ("204", "")),
            },
            "/v1/players/search": {"get": op("Find players by name (prefix, typo-tolerant): ?q=", "player", "", ("200", "PublicProfile"))},
            "/v1/players/{id}": {"get": op("Another player's public profile", "player", "", ("200", "PublicProfile"))},
            "/v1/players/{id}/stats": {"get": op("Matches played and won", "player", "", ("200", "Stats"))},
            "/v1/matches/{id}/results": {"post": op("Report a match's results (game servers)", "service", "MatchReport", ("201", ""))},
            "/v1/admin/players/{id}/ban": {
                "post": op("Ban a player: refuse sign-in, revoke sessions, close connections", "service", "BanRequest", ("204", "")),
                "delete": op("Lift a ban", "service", "", ("204", "")),
            },
        },
        "components": {
            "securitySchemes": {
                "player": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT (EdDSA)"},
                "service": {"type": "http", "scheme": "bearer", "description": "the deployment's service key"},
            },
            "schemas": {
                "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
                    "code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"}}}}},
                "EmailRegistration": schema::<auth::EmailRegistration>(),
                "EmailLogin": schema::<auth::EmailLogin>(),
                "IdLogin": schema::<auth::IdLogin>(),
                "RefreshRequest": schema::<auth::RefreshRequest>(),
                "LinkRequest": schema::<auth::LinkRequest>(),
                "Tokens": schema::<auth::Tokens>(),
                "OwnProfile": schema::<players::OwnProfile>(),
                "PublicProfile": schema::<players::PublicProfile>(),
                "ProfileUpdate": schema::<profiles::ProfileUpdate>(),
                "Stats": schema::<matches::Stats>(),
                "MatchReport": schema::<matches::MatchReport>(),
                "BanRequest": schema::<admin::BanRequest>(),
                "Event": schema::<events::Event>(),
            },
        },
    })
}
