//! The one way GameServer statuses are written: a JSON merge patch carrying the whole new
//! status and the resourceVersion it was computed from.
//!
//! A merge patch only removes a field when the patch says `null`, and absent optional fields are
//! skipped when serialised; so every field the old status had and the new one lacks is sent as
//! an explicit `null`. Without that, a cleared allocation or reservation would silently stay.

use flotilla_api::{GameServer, GameServerStatus};
use kube::ResourceExt;
use serde_json::{Value, json};

pub fn status_patch(server: &GameServer, status: &GameServerStatus) -> Value {
    let mut new = serde_json::to_value(status).unwrap_or(Value::Null);
    if let Some(old) = server.status.as_ref().and_then(|s| serde_json::to_value(s).ok()) {
        null_removed(&old, &mut new);
    }
    json!({
        "metadata": {"resourceVersion": server.resource_version()},
        "status": new,
    })
}

/// Sets to `null` every key of `old` missing from `new`, recursing into objects both have.
fn null_removed(old: &Value, new: &mut Value) {
    let (Some(old), Some(new)) = (old.as_object(), new.as_object_mut()) else {
        return;
    };
    for (key, old_value) in old {
        match new.get_mut(key) {
            Some(new_value) => null_removed(old_value, new_value),
            None => {
                new.insert(key.clone(), Value::Null);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_api::{Allocation, GameServerState, PlayerStatus};

    #[test]
    fn cleared_fields_are_sent_as_null_and_kept_ones_as_they_are() {
        let spec = serde_json::from_value(json!({
            "ports": [{"name": "game", "containerPort": 7777}],
            "template": {"spec": {"containers": [{"name": "gs", "image": "flotilla/gameserver"}]}},
        }))
        .expect("spec");
        let mut server = GameServer::new("gs", spec);
        server.metadata.resource_version = Some("7".into());
        let old = GameServerStatus {
            state: GameServerState::Allocated,
            allocation: Some(Allocation {
                id: "a".into(),
                time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
                allocated_by: "mm".into(),
                session_id: None,
                idempotency_key: None,
            }),
            players: Some(PlayerStatus {
                count: 1,
                capacity: 4,
                ids: vec!["p".into()],
            }),
            ..Default::default()
        };
        server.status = Some(old.clone());
        let new = GameServerStatus {
            state: GameServerState::RequestReady,
            players: Some(PlayerStatus {
                count: 0,
                capacity: 4,
                ids: vec![],
            }),
            ..old
        };
        let new = GameServerStatus {
            allocation: None,
            ..new
        };
        let patch = status_patch(&server, &new);
        assert_eq!(patch["metadata"]["resourceVersion"], "7");
        assert_eq!(patch["status"]["allocation"], Value::Null);
        assert!(
            patch["status"]
                .as_object()
                .is_some_and(|s| s.contains_key("allocation"))
        );
        assert_eq!(patch["status"]["state"], "RequestReady");
        assert_eq!(patch["status"]["players"]["count"], 0);
        assert_eq!(
            patch["status"]["players"]["ids"],
            Value::Null,
            "nested fields too"
        );
    }
}
