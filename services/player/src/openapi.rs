//! The OpenAPI 3.1 document, served at `/v1/openapi.json`. Request and answer schemas are generated
//! from the Rust types, so the document cannot drift from what the handlers accept.

use axum::routing::get;
use axum::{Json, Router};
use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

use crate::rules::{self, Rule};
use crate::state::Shared;

pub fn routes() -> Router<Shared> {
    Router::new().route("/v1/openapi.json", get(|| async { Json(document()) }))
}

/// `T`'s schema for `components.schemas`. The types it uses are referenced as
/// `#/components/schemas/<name>` and registered there themselves: schemars' default `#/$defs/<name>`
/// would resolve against the whole document, where there is no `$defs`.
fn schema<T: schemars::JsonSchema>() -> Value {
    let generator = SchemaSettings::draft2020_12()
        .with(|settings| settings.definitions_path = "/components/schemas".into())
        .into_generator();
    let mut schema = serde_json::to_value(generator.into_root_schema_for::<T>()).unwrap_or_default();
    if let Some(object) = schema.as_object_mut() {
        object.remove("components");
    }
    schema
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
            "503": error("storage is unavailable; retry"),
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

/// `operation` with a second successful answer (`schema` "" for one without a body).
fn also(mut operation: Value, code: &str, description: &str, schema: &str) -> Value {
    operation["responses"][code] = if schema.is_empty() {
        json!({"description": description})
    } else {
        json!({"description": description, "content": {"application/json": {"schema": reference(schema)}}})
    };
    operation
}

/// `operation` with query parameters made by [`query`], [`limit`] and [`cursor`].
fn with_query(mut operation: Value, parameters: &[Value]) -> Value {
    operation["parameters"] = json!(parameters);
    operation
}

fn query(name: &str, required: bool, schema: Value, description: &str) -> Value {
    json!({"name": name, "in": "query", "required": required, "schema": schema, "description": description})
}

fn limit(default: u32, max: u32) -> Value {
    let description = format!("how many to answer; clamped to 1-{max}");
    query(
        "limit",
        false,
        json!({"type": "integer", "default": default, "minimum": 0, "maximum": u32::MAX}),
        &description,
    )
}

fn cursor() -> Value {
    query(
        "cursor",
        false,
        json!({"type": "string"}),
        "the previous page's `nextCursor`",
    )
}

/// `GET /v1/realtime`. OpenAPI describes only the upgrade, so the frames sent each way are named in
/// the description and, as references, in `x-websocket`.
fn websocket() -> Value {
    let mut operation = op(
        "Open the realtime WebSocket (101 Switching Protocols): events, presence status, token renewal",
        "player",
        "",
        ("101", ""),
    );
    operation["description"] = json!(
        "The access token goes in `Authorization: Bearer` or, where headers cannot be set (browsers), \
         in `?token=`. The client sends `ClientFrame`s (status, ping, renew) as JSON text frames; the \
         server sends `Event`s (presence, message, notification, disconnect) and `Reply`s (pong, \
         renewed, error). Close codes: 4000 signed out or banned (the reason says which), 4001 access \
         token expired (renew before it does), 1008 too many refused frames, 1009 a frame over 16 KiB, \
         1013 events not read in time, 1001 no answer to pings."
    );
    operation["responses"]["101"] =
        json!({"description": "Switching Protocols: the connection is a WebSocket"});
    operation["security"] = json!([{"player": []}, {"playerQuery": []}]);
    operation["x-websocket"] = json!({
        "clientFrames": reference("ClientFrame"),
        "serverFrames": {"oneOf": [reference("Event"), reference("Reply")]},
    });
    operation
}

/// A string schema stating `rule`'s pattern and length.
fn text(rule: &Rule) -> Value {
    let mut schema = json!({"type": "string", "minLength": rule.min, "maxLength": rule.max});
    if !rule.pattern.is_empty() {
        schema["pattern"] = json!(rule.pattern);
    }
    schema
}

/// The schema of path parameter `name` of `path`: ids the service looks up are any string (an
/// unknown one is a 404), a match id is a [`rules::TOKEN`].
fn path_parameter(path: &str, name: &str) -> Value {
    match (path, name) {
        ("/v1/matches/{id}/results", "id") => text(&rules::TOKEN),
        _ => json!({"type": "string"}),
    }
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
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Flotilla player service", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths(),
        "components": {
            "securitySchemes": {
                "player": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT (EdDSA)"},
                "service": {"type": "http", "scheme": "bearer", "description": "the deployment's service key"},
                "playerQuery": {"type": "apiKey", "in": "query", "name": "token", "description": "the player's access token, for WebSocket clients that cannot set headers"},
            },
            "schemas": schemas(),
        },
    })
}

// Built apart from `document`: in one `json!`, paths and schemas pass the macro recursion limit.
fn paths() -> Value {
    let mut paths = operations();
    declare_path_parameters(&mut paths);
    paths
}

/// Every `{name}` in a path becomes a required parameter of each of its operations, as OpenAPI
/// requires: written once here instead of by hand on every operation.
fn declare_path_parameters(paths: &mut Value) {
    let Some(paths) = paths.as_object_mut() else {
        return;
    };
    for (path, operations) in paths.iter_mut() {
        let names: Vec<&str> = path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        let Some(operations) = operations.as_object_mut() else {
            continue;
        };
        for operation in operations.values_mut() {
            let mut parameters: Vec<Value> = names
                .iter()
                .map(|name| json!({"name": name, "in": "path", "required": true, "schema": path_parameter(path, name)}))
                .collect();
            if let Some(Value::Array(query)) = operation.get("parameters") {
                parameters.extend(query.iter().cloned());
            }
            if !parameters.is_empty() {
                operation["parameters"] = Value::Array(parameters);
            }
        }
    }
}

fn operations() -> Value {
    json!({
        "/v1/auth/email/register": {"post": op("Create an account with email and password", "none", "EmailRegistration", ("201", "Tokens"))},
        "/v1/auth/email/login": {"post": op("Sign in with email and password", "none", "EmailLogin", ("200", "Tokens"))},
        "/v1/auth/device": {"post": also(
            op("Sign in with a device id, creating the account on first use (201)", "none", "DeviceLogin", ("200", "Tokens")),
            "201", "the account was created", "Tokens",
        )},
        "/v1/auth/custom": {"post": also(
            op("Sign in with a custom id, creating the account on first use (201)", "none", "CustomLogin", ("200", "Tokens")),
            "201", "the account was created", "Tokens",
        )},
        "/v1/auth/keys": {"get": op("The public keys that verify access tokens (for other services)", "none", "", ("200", "TokenKeys"))},
        "/v1/auth/refresh": {"post": op("Exchange a refresh token for new tokens; reuse revokes the session", "none", "RefreshRequest", ("200", "Tokens"))},
        "/v1/auth/logout": {"post": op("Sign out: revoke this session", "player", "", ("204", ""))},
        "/v1/auth/link/email": {"post": op("Link an email and password to your account", "player", "LinkEmail", ("204", ""))},
        "/v1/auth/link/device": {"post": op("Link a device id to your account", "player", "DeviceId", ("204", ""))},
        "/v1/auth/link/custom": {"post": op("Link a custom id to your account", "player", "CustomId", ("204", ""))},
        "/v1/auth/unlink/email": {"post": op("Unlink an email; the last sign-in method stays", "player", "UnlinkEmail", ("204", ""))},
        "/v1/auth/unlink/device": {"post": op("Unlink a device id; the last sign-in method stays", "player", "DeviceId", ("204", ""))},
        "/v1/auth/unlink/custom": {"post": op("Unlink a custom id; the last sign-in method stays", "player", "CustomId", ("204", ""))},
        "/v1/players/me": {
            "get": op("Your profile", "player", "", ("200", "OwnProfile")),
            "patch": op("Update your profile and privacy settings", "player", "ProfileUpdate", ("200", "OwnProfile")),
            "delete": op("Delete your account and personal data", "player", "", ("204", "")),
        },
        "/v1/players/me/export": {"get": op("Everything the service keeps about you, in one document (no password or token hashes); 3 a minute", "player", "", ("200", "AccountExport"))},
        "/v1/players/search": {"get": with_query(
            op("Find players by name (prefix, typo-tolerant), best match first", "player", "", ("200", "PublicProfiles")),
            &[query("q", true, text(&rules::SEARCH_TEXT), "the name or its start"), limit(20, 50)],
        )},
        "/v1/players/{id}": {"get": op("Another player's public profile", "player", "", ("200", "PublicProfile"))},
        "/v1/players/{id}/stats": {"get": op("Matches played and won", "player", "", ("200", "Stats"))},
        "/v1/matches/{id}/results": {"post": also(
            op("Report a match's results (game servers); recorded once", "service", "MatchReport", ("201", "")),
            "200", "reported before with the same results", "",
        )},
        "/v1/admin/players/{id}/ban": {
            "post": op("Ban a player: refuse sign-in, revoke sessions, close connections", "service", "BanRequest", ("204", "")),
            "delete": op("Lift a ban", "service", "", ("204", "")),
        },
        "/v1/admin/players/{id}/notifications": {"post": op("Send a player a notification from another service (kind economy)", "service", "ServiceNotification", ("201", "NotificationView"))},
        "/v1/admin/players/{id}/relations/{other}": {"get": op("Whether two players blocked each other or are friends (404: either does not exist)", "service", "", ("200", "Relation"))},
        "/v1/friends": {"get": with_query(
            op("Your relationships, most recently changed first; without ?state=, all but blocks", "player", "", ("200", "FriendPage")),
            &[query("state", false, json!({"type": "string", "enum": ["mutual", "inviteSent", "inviteReceived", "blocked"]}), "only relationships in this state"), limit(20, 100), cursor()],
        )},
        "/v1/friends/suggestions": {"get": with_query(
            op("Friends of your friends who accept requests, most friends in common first", "player", "", ("200", "Suggestions")),
            &[limit(10, 50)],
        )},
        "/v1/friends/{id}": {
            "post": also(
                op("Ask a player to be friends (201), or accept their standing request (200)", "player", "", ("201", "FriendView")),
                "200", "already asked, or their request accepted: now friends", "FriendView",
            ),
            "delete": op("End a friendship, for both players", "player", "", ("204", "")),
        },
        "/v1/friends/{id}/accept": {"post": op("Accept a player's friend request", "player", "", ("200", "FriendView"))},
        "/v1/friends/{id}/decline": {"post": op("Decline a player's friend request", "player", "", ("204", ""))},
        "/v1/friends/{id}/request": {"delete": op("Take back your friend request to a player", "player", "", ("204", ""))},
        "/v1/friends/{id}/block": {
            "post": op("Block a player, ending any friendship or request between you", "player", "", ("204", "")),
            "delete": op("Lift your block of a player", "player", "", ("204", "")),
        },
        "/v1/friends/{id}/mutual": {"get": with_query(
            op("Your friends who are also this player's friends, and how many there are", "player", "", ("200", "MutualFriends")),
            &[limit(20, 100)],
        )},
        "/v1/blocks": {"get": with_query(
            op("The players you blocked, most recent first", "player", "", ("200", "FriendPage")),
            &[limit(20, 100), cursor()],
        )},
        "/v1/players/{id}/messages": {
            "get": with_query(
                op("Your conversation with a player, newest first, with both read markers and your unread count", "player", "", ("200", "History")),
                &[limit(20, 100), cursor()],
            ),
            "post": op("Send a player a message, as their privacy and blocks allow", "player", "NewMessage", ("201", "MessageView")),
        },
        "/v1/players/{id}/messages/read": {"post": op("Mark your conversation with a player read up to a message; markers only move forward", "player", "MarkMessagesRead", ("200", "ReadState"))},
        "/v1/conversations": {"get": with_query(
            op("Your conversations, the one with the newest message first, each with that message and your unread count", "player", "", ("200", "Conversations")),
            &[limit(20, 100), cursor()],
        )},
        "/v1/notifications": {"get": with_query(
            op("Your notifications, newest first, without those from players you blocked", "player", "", ("200", "NotificationPage")),
            &[query("unread", false, json!({"type": "boolean"}), "true: only unread ones"), limit(20, 100), cursor()],
        )},
        "/v1/notifications/read": {"post": op("Mark notifications read: up to 100 `ids`, or `all: true`", "player", "MarkNotificationsRead", ("200", "MarkedRead"))},
        "/v1/notifications/{id}": {"delete": op("Delete one of your notifications", "player", "", ("204", ""))},
        "/v1/realtime": {"get": websocket()},
        "/v1/presence": {"get": with_query(
            op("Presence of the players in ?ids= who are online and whose presence you may see, in that order", "player", "", ("200", "PresenceList")),
            &[query("ids", true, text(&rules::PRESENCE_IDS), "1-100 player ids, comma-separated")],
        )},
    })
}

/// `schema` (of a body with an `id`) with the id's rule: device and custom ids share a body type
/// but not their lengths.
fn with_id(mut schema: Value, rule: &Rule) -> Value {
    schema["properties"]["id"] = text(rule);
    schema
}

/// The notification body with its content's limits, which schemars cannot state for a map.
fn service_notification() -> Value {
    use crate::notifications::{
        MAX_CONTENT_ENTRIES, MAX_CONTENT_NAME, MAX_CONTENT_TEXT, ServiceNotification,
    };
    let mut schema = schema::<ServiceNotification>();
    schema["properties"]["content"] = json!({
        "type": "object",
        "maxProperties": MAX_CONTENT_ENTRIES,
        "propertyNames": {"minLength": 1, "maxLength": MAX_CONTENT_NAME},
        "additionalProperties": {"anyOf": [
            {"type": "string", "maxLength": MAX_CONTENT_TEXT},
            {"type": "number"}, {"type": "boolean"}, {"type": "null"},
        ]},
    });
    schema
}

/// Either 1-100 `ids`, or `all: true`: a choice JSON Schema states with `oneOf`, which schemars does
/// not derive from the struct's two optional fields.
fn mark_notifications_read() -> Value {
    json!({
        "description": "Either `ids` (1-100 notification ids) or `all: true`.",
        "oneOf": [
            {
                "type": "object",
                "properties": {
                    "ids": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": crate::notifications::MAX_READ_IDS},
                    "all": {"const": false},
                },
                "required": ["ids"],
                "additionalProperties": false,
            },
            {
                "type": "object",
                "properties": {"all": {"const": true}, "ids": {"type": "null"}},
                "required": ["all"],
                "additionalProperties": false,
            },
        ],
    })
}

/// Every named schema. A list rather than one `json!`: that many entries pass the macro's
/// recursion limit.
fn schemas() -> Value {
    use crate::{
        admin, auth, events, export, friends, matches, messages, model, notifications, players, profiles,
        realtime,
    };
    let error = json!({"type": "object", "properties": {"error": {"type": "object", "properties": {
        "code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"}}}}});
    let schemas = [
        ("Error", error),
        ("EmailRegistration", schema::<auth::EmailRegistration>()),
        ("EmailLogin", schema::<auth::EmailLogin>()),
        (
            "DeviceLogin",
            with_id(schema::<auth::IdLogin>(), &rules::DEVICE_ID),
        ),
        (
            "CustomLogin",
            with_id(schema::<auth::IdLogin>(), &rules::CUSTOM_ID),
        ),
        ("RefreshRequest", schema::<auth::RefreshRequest>()),
        ("LinkEmail", schema::<auth::LinkEmail>()),
        ("UnlinkEmail", schema::<auth::UnlinkEmail>()),
        ("DeviceId", with_id(schema::<auth::LinkId>(), &rules::DEVICE_ID)),
        ("CustomId", with_id(schema::<auth::LinkId>(), &rules::CUSTOM_ID)),
        ("Tokens", schema::<auth::Tokens>()),
        ("TokenKeys", schema::<auth::TokenKeysAnswer>()),
        ("OwnProfile", schema::<players::OwnProfile>()),
        ("PublicProfile", schema::<players::PublicProfile>()),
        ("PublicProfiles", schema::<Vec<players::PublicProfile>>()),
        ("ProfileUpdate", schema::<profiles::ProfileUpdate>()),
        ("Stats", schema::<matches::Stats>()),
        ("Relation", schema::<friends::RelationView>()),
        ("ServiceNotification", service_notification()),
        ("MatchReport", schema::<matches::MatchReport>()),
        ("BanRequest", schema::<admin::BanRequest>()),
        ("Privacy", schema::<model::Privacy>()),
        ("Audience", schema::<model::Audience>()),
        ("MessageAudience", schema::<model::MessageAudience>()),
        ("RequestAudience", schema::<model::RequestAudience>()),
        ("MatchPlayer", schema::<model::MatchPlayer>()),
        ("FriendState", schema::<model::FriendState>()),
        ("FriendView", schema::<friends::FriendView>()),
        ("FriendPage", schema::<friends::FriendPage>()),
        ("MutualFriends", schema::<friends::MutualFriends>()),
        ("Suggestion", schema::<friends::Suggestion>()),
        ("Suggestions", schema::<friends::Suggestions>()),
        ("NewMessage", schema::<messages::NewMessage>()),
        ("MarkMessagesRead", schema::<messages::MarkRead>()),
        ("ReadState", schema::<messages::ReadState>()),
        ("History", schema::<messages::History>()),
        ("Conversations", schema::<messages::Conversations>()),
        ("AccountExport", schema::<export::AccountExport>()),
        ("BanExport", schema::<export::BanExport>()),
        ("SignInExport", schema::<export::SignInExport>()),
        ("SessionExport", schema::<export::SessionExport>()),
        ("RelationshipExport", schema::<export::RelationshipExport>()),
        ("ReadMarkerExport", schema::<export::ReadMarkerExport>()),
        ("MatchExport", schema::<export::MatchExport>()),
        ("Method", schema::<model::Method>()),
        ("ConversationView", schema::<messages::ConversationView>()),
        ("MessageView", schema::<events::MessageView>()),
        ("MarkNotificationsRead", mark_notifications_read()),
        ("MarkedRead", schema::<notifications::MarkedRead>()),
        ("NotificationPage", schema::<notifications::NotificationPage>()),
        ("NotificationView", schema::<events::NotificationView>()),
        ("NotificationKind", schema::<model::NotificationKind>()),
        ("PresenceList", schema::<realtime::PresenceList>()),
        ("PlayerPresence", schema::<realtime::PlayerPresence>()),
        ("ClientFrame", schema::<realtime::ClientFrame>()),
        ("Status", schema::<realtime::Status>()),
        ("Reply", schema::<realtime::Reply>()),
        ("Event", schema::<events::Event>()),
    ];
    Value::Object(
        schemas
            .into_iter()
            .map(|(name, schema)| (name.to_owned(), schema))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Every module that adds public routes, but this one and the ops-port `metrics`.
    const SOURCES: [(&str, &str); 9] = [
        ("admin", include_str!("admin.rs")),
        ("export", include_str!("export.rs")),
        ("auth", include_str!("auth.rs")),
        ("friends", include_str!("friends.rs")),
        ("matches", include_str!("matches.rs")),
        ("messages", include_str!("messages.rs")),
        ("notifications", include_str!("notifications.rs")),
        ("profiles", include_str!("profiles.rs")),
        ("realtime", include_str!("realtime.rs")),
    ];
    const METHODS: [&str; 5] = ["get", "post", "patch", "delete", "put"];

    /// `(path, method)` for each `.route("PATH", get(a).post(b))` in `source`.
    fn routes(module: &str, source: &str) -> Vec<(String, String)> {
        let mut found = Vec::new();
        for call in source.split(".route(").skip(1) {
            let (path, router) = call
                .trim_start()
                .strip_prefix('"')
                .and_then(|rest| rest.split_once('"'))
                .unwrap_or_else(|| panic!("{module}.rs: a `.route(` whose path is not a string literal"));
            let router = router
                .trim_start()
                .strip_prefix(',')
                .unwrap_or_else(|| panic!("{module}.rs: `.route(\"{path}\"` is not followed by a router"));
            let before = found.len();
            // The identifiers called at the outermost level, up to the `)` closing `.route(`.
            let (mut depth, mut word, mut in_string) = (0_u32, String::new(), false);
            let mut chars = router.chars();
            while let Some(c) = chars.next() {
                match c {
                    _ if in_string => match c {
                        '\\' => _ = chars.next(),
                        '"' => in_string = false,
                        _ => {}
                    },
                    '"' => in_string = true,
                    '(' if depth == 0 => {
                        assert!(
                            METHODS.contains(&word.as_str()),
                            "{module}.rs: `{path}` routes `{word}(…)`, which this test does not understand"
                        );
                        found.push((path.to_owned(), word.clone()));
                        depth += 1;
                    }
                    '(' => depth += 1,
                    ')' if depth == 0 => break,
                    ')' => depth -= 1,
                    _ if c.is_alphanumeric() || c == '_' => {
                        word.push(c);
                        continue;
                    }
                    _ => {}
                }
                word.clear();
            }
            assert!(found.len() > before, "{module}.rs: no method found for `{path}`");
        }
        found
    }

    #[test]
    fn every_route_is_documented_and_every_documented_route_exists() {
        let lib = include_str!("lib.rs");
        for merged in lib.split(".merge(").skip(1) {
            let module = merged.split("::routes()").next().unwrap_or_default();
            assert!(
                module == "openapi" || SOURCES.iter().any(|(name, _)| *name == module),
                "lib.rs merges {module}::routes(); add {module}.rs to SOURCES"
            );
        }
        let document = document();
        let mut routed = BTreeSet::new();
        for (module, source) in SOURCES {
            for (path, method) in routes(module, source) {
                assert!(
                    document["paths"][&path][&method].is_object(),
                    "{method} {path} ({module}.rs) is missing from the OpenAPI document"
                );
                routed.insert((path, method));
            }
        }
        let paths = document["paths"].as_object().expect("paths is an object");
        for (path, operations) in paths {
            let operations = operations.as_object().expect("a path item is an object");
            for method in operations.keys().filter(|key| METHODS.contains(&key.as_str())) {
                assert!(
                    routed.contains(&(path.clone(), method.clone())),
                    "{method} {path} is documented but not routed"
                );
            }
        }
    }

    /// Every `$ref` under `value`, with where it is.
    fn references(value: &Value, at: &str, found: &mut Vec<(String, String)>) {
        match value {
            Value::Object(object) => {
                for (key, value) in object {
                    match value {
                        Value::String(target) if key == "$ref" => found.push((at.to_owned(), target.clone())),
                        _ => references(value, &format!("{at}/{key}"), found),
                    }
                }
            }
            Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    references(item, &format!("{at}/{index}"), found);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn every_reference_names_a_registered_schema() {
        let document = document();
        let mut found = Vec::new();
        references(&document, "#", &mut found);
        assert!(!found.is_empty(), "the document refers to no schema at all");
        let schemas = &document["components"]["schemas"];
        for (at, target) in found {
            let name = target.strip_prefix("#/components/schemas/");
            assert!(
                name.is_some_and(|name| schemas[name].is_object()),
                "{at} refers to {target}, which is not in components.schemas; register it with schema::<…>()"
            );
        }
    }

    #[test]
    fn path_parameters_are_declared_once_on_every_operation() {
        let document = document();
        let operation = &document["paths"]["/v1/friends/{id}/block"]["delete"];
        let parameters = operation["parameters"].as_array().expect("parameters");
        assert_eq!(parameters.len(), 1, "{parameters:?}");
        assert_eq!(parameters[0]["name"], "id");
        assert_eq!(parameters[0]["in"], "path");
        assert_eq!(parameters[0]["required"], true);
        // Path parameters come first, then the operation's own query parameters.
        let history = document["paths"]["/v1/players/{id}/messages"]["get"]["parameters"]
            .as_array()
            .expect("parameters");
        assert_eq!(history[0]["in"], "path");
        assert!(history[1..].iter().all(|p| p["in"] == "query"), "{history:?}");
        assert!(
            document["paths"]["/v1/friends"]["get"]["parameters"]
                .as_array()
                .expect("parameters")
                .iter()
                .all(|p| p["in"] == "query")
        );
    }
}
