//! The allocation API's wire types: what a matchmaker asks for and what it gets back
//! (`POST /allocation/v1/namespaces/{namespace}/allocations`, see docs/allocation.md).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::PortStatus;

/// Which servers an allocation may take.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AllocationState {
    /// A Ready server, which becomes Allocated.
    #[default]
    Ready,
    /// Backfill: an already Allocated server with free player slots.
    Allocated,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AllocationRequest {
    /// Only servers of this fleet; 404 when it does not exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<String>,
    /// Servers must match this label selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Tried in order before any other matching server: the first selector with a candidate wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preferred: Vec<LabelSelector>,
    #[serde(default)]
    pub state: AllocationState,
    /// Free player slots the server must have (capacity minus connected players).
    #[serde(default)]
    pub min_free_slots: u32,
    /// Labels and annotations set on the chosen GameServer.
    #[serde(default)]
    pub metadata: AllocationMetadata,
    /// The match this allocation is for; the game server starts (or, after a failover,
    /// restores) this session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Players to issue connection tokens for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub players: Vec<String>,
    /// A retried request with the same key gets the same server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AllocationMetadata {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AllocationResponse {
    pub allocation_id: String,
    pub game_server: String,
    pub namespace: String,
    pub address: String,
    pub ports: Vec<PortStatus>,
    pub node_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// SHA-256 of the server's QUIC certificate, for clients to pin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_sha256: Option<String>,
    /// A signed connection token per requested player.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tokens: BTreeMap<String, String>,
    /// When the tokens expire (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_expire_at: Option<String>,
}

/// The error body of every non-2xx answer.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct AllocationError {
    pub error: String,
    /// The request field at fault, for 400s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// The allocation API as an OpenAPI 3.1 document, its schemas generated from these types (the
/// operator serves it at `/allocation/v1/openapi.json`).
pub fn openapi() -> serde_json::Value {
    let schema = |s: schemars::Schema| serde_json::to_value(s).unwrap_or_default();
    let error = |description: &str| {
        serde_json::json!({"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AllocationError"}}}})
    };
    serde_json::json!({
        "openapi": "3.1.0",
        "info": {"title": "Flotilla allocation API", "version": crate::VERSION},
        "paths": {"/allocation/v1/namespaces/{namespace}/allocations": {"post": {
            "operationId": "allocate",
            "summary": "Allocate a game server and issue connection tokens for its players",
            "security": [{"bearer": []}],
            "parameters": [{"name": "namespace", "in": "path", "required": true, "schema": {"type": "string"}}],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AllocationRequest"}}}},
            "responses": {
                "201": {"description": "allocated", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AllocationResponse"}}}},
                "200": {"description": "an earlier allocation with the same idempotency key", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AllocationResponse"}}}},
                "400": error("a bad field, named in `field`"),
                "401": error("no valid token for audience flotilla.dev/allocation"),
                "403": error("the caller may not create gameserverallocations.flotilla.dev here"),
                "404": error("the fleet does not exist"),
                "429": error("no capacity now; see the Retry-After header"),
                "500": error("internal error"),
            },
        }}},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "AllocationRequest": schema(schemars::schema_for!(AllocationRequest)),
                "AllocationResponse": schema(schemars::schema_for!(AllocationResponse)),
                "AllocationError": schema(schemars::schema_for!(AllocationError)),
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_names_every_answer_and_describes_the_request() {
        let doc = openapi();
        let post = &doc["paths"]["/allocation/v1/namespaces/{namespace}/allocations"]["post"];
        for code in ["200", "201", "400", "401", "403", "404", "429", "500"] {
            assert!(post["responses"][code].is_object(), "{code} documented");
        }
        let request = &doc["components"]["schemas"]["AllocationRequest"];
        for field in [
            "fleet",
            "selector",
            "preferred",
            "state",
            "minFreeSlots",
            "players",
            "idempotencyKey",
        ] {
            assert!(
                request["properties"][field].is_object(),
                "{field} in the request schema"
            );
        }
    }
}
