//! Fleets and game servers for the console's tests, built from JSON as the API server sends them.

use std::sync::Arc;

use flotilla_api::{GameServer, GameServerFleet, labels};

pub(super) fn fleet(namespace: &str, name: &str, replicas: i32) -> Arc<GameServerFleet> {
    let fleet: GameServerFleet = serde_json::from_value(serde_json::json!({
        "apiVersion": "flotilla.dev/v1alpha1",
        "kind": "GameServerFleet",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "template": {"spec": {
                "ports": [{"name": "game", "containerPort": 7777}],
                "template": {"spec": {"containers": [{"name": "game", "image": "game"}]}},
            }},
        },
    }))
    .expect("a valid fleet");
    Arc::new(fleet)
}

pub(super) fn server(
    namespace: &str,
    fleet: Option<&str>,
    state: &str,
    players: Option<(i32, i32)>,
) -> Arc<GameServer> {
    let mut value = serde_json::json!({
        "apiVersion": "flotilla.dev/v1alpha1",
        "kind": "GameServer",
        "metadata": {"name": format!("s-{state}"), "namespace": namespace, "labels": {}},
        "spec": {
            "ports": [{"name": "game", "containerPort": 7777}],
            "players": {"capacity": 8},
            "template": {"spec": {"containers": [{"name": "game", "image": "game"}]}},
        },
        "status": {"state": state},
    });
    if let Some(fleet) = fleet {
        value["metadata"]["labels"][labels::FLEET] = fleet.into();
    }
    if let Some((count, capacity)) = players {
        value["status"]["players"] = serde_json::json!({"count": count, "capacity": capacity});
    }
    Arc::new(serde_json::from_value(value).expect("a valid game server"))
}
