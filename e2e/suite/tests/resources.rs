//! Flotilla's resources on the real API server: the committed CRDs install, valid fleets are
//! stored with their defaults, invalid ones are refused at admission with a message naming the
//! field, `kubectl get` shows useful columns, and the scale subresource works.

use flotilla_api::{GameServerFleet, StrategyType};
use flotilla_e2e::{TestNamespace, install_crds, manifest};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api,
    api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams},
};
use serde_json::json;

type TestResult = flotilla_e2e::Result<()>;

async fn namespace_with_crds(prefix: &str) -> flotilla_e2e::Result<TestNamespace> {
    let ns = TestNamespace::create(prefix).await?;
    install_crds(&ns.client).await?;
    Ok(ns)
}

/// The sample fleet with a JSON merge patch applied to it, untyped so it can hold values the
/// Rust types would refuse (the API server must refuse them too).
fn sample_fleet_with(patch: serde_json::Value) -> DynamicObject {
    let fleet: GameServerFleet = manifest("manifests/examples/fleet.yaml").expect("sample fleet parses");
    let mut value = serde_json::to_value(fleet).expect("serializes");
    merge(&mut value, patch);
    serde_json::from_value(value).expect("an object")
}

fn untyped_fleets(ns: &TestNamespace) -> Api<DynamicObject> {
    Api::namespaced_with(
        ns.client.clone(),
        &ns.name,
        &ApiResource::erase::<GameServerFleet>(&()),
    )
}

fn merge(target: &mut serde_json::Value, patch: serde_json::Value) {
    match (target, patch) {
        (serde_json::Value::Object(t), serde_json::Value::Object(p)) => {
            for (k, v) in p {
                merge(t.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (t, p) => *t = p,
    }
}

#[tokio::test]
async fn sample_fleet_is_stored_with_its_defaults() -> TestResult {
    let ns = namespace_with_crds("crd-valid").await?;
    let fleets: Api<GameServerFleet> = ns.api();
    // Defaults come from the schema: leave the optional parts out and read them back.
    let mut minimal = sample_fleet_with(json!({}));
    if let Some(spec) = minimal.data["spec"].as_object_mut() {
        spec.remove("strategy");
        spec.remove("scheduling");
    }
    if let Some(spec) = minimal.data["spec"]["template"]["spec"].as_object_mut() {
        spec.remove("health");
    }
    untyped_fleets(&ns)
        .create(&PostParams::default(), &minimal)
        .await?;
    let created = fleets.get("arena").await?;
    let stored = serde_json::to_value(&created.spec).expect("serializes");
    assert_eq!(stored["strategy"]["type"], "RollingUpdate");
    assert_eq!(stored["strategy"]["rollingUpdate"]["maxSurge"], "25%");
    assert_eq!(stored["scheduling"], "Packed");
    assert_eq!(stored["template"]["spec"]["health"]["periodSeconds"], 5);
    assert_eq!(stored["template"]["spec"]["ports"][0]["protocol"], "UDP");

    // Recreate needs no rollingUpdate, and none is defaulted into it.
    let mut recreate = sample_fleet_with(json!({"metadata": {"name": "recreate"}}));
    recreate.data["spec"]["strategy"] = json!({"type": "Recreate"});
    untyped_fleets(&ns)
        .create(&PostParams::default(), &recreate)
        .await?;
    let stored = fleets.get("recreate").await?.spec.strategy;
    assert_eq!(
        (stored.type_, stored.rolling_update),
        (StrategyType::Recreate, None)
    );
    ns.delete().await
}

#[tokio::test]
async fn invalid_fleets_are_rejected_with_a_message_naming_the_field() -> TestResult {
    let ns = namespace_with_crds("crd-invalid").await?;
    let fleets = untyped_fleets(&ns);
    let cases = [
        (json!({"spec": {"replicas": -1}}), "spec.replicas"),
        (
            json!({"spec": {"template": {"spec": {"ports": [{"name": "game", "containerPort": 70000}]}}}}),
            "spec.template.spec.ports[0].containerPort",
        ),
        (
            json!({"spec": {"template": {"spec": {"ports": [
                {"name": "game", "containerPort": 7777},
                {"name": "game", "containerPort": 7778},
            ]}}}}),
            "port names must be unique",
        ),
        (
            json!({"spec": {"template": {"spec": {"ports": [{"name": "Game_Port", "containerPort": 7777}]}}}}),
            "spec.template.spec.ports[0].name",
        ),
        (
            json!({"spec": {"strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}}}),
            "maxSurge and maxUnavailable cannot both be 0",
        ),
        (
            json!({"spec": {"strategy": {"rollingUpdate": {"maxSurge": "lots"}}}}),
            "spec.strategy.rollingUpdate.maxSurge",
        ),
        (
            json!({"spec": {"strategy": {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}}}),
            "rollingUpdate may be set only when type is RollingUpdate",
        ),
        (json!({"spec": {"scheduling": "Everywhere"}}), "spec.scheduling"),
        (
            json!({"spec": {"template": {"spec": {"health": {"periodSeconds": 0}}}}}),
            "spec.template.spec.health.periodSeconds",
        ),
    ];
    for (i, (patch, expected)) in cases.into_iter().enumerate() {
        let mut fleet = sample_fleet_with(patch.clone());
        fleet.metadata.name = Some(format!("bad-{i}"));
        match fleets.create(&PostParams::default(), &fleet).await {
            Ok(_) => panic!("fleet with {patch} was accepted"),
            Err(kube::Error::Api(e)) => {
                assert_eq!(e.code, 422, "{patch}: {}", e.message);
                assert!(
                    e.message.contains(expected),
                    "{patch}: message {:?} names {expected:?}",
                    e.message
                );
            }
            Err(other) => return Err(other.into()),
        }
    }
    ns.delete().await
}

#[tokio::test]
async fn scale_subresource_sets_replicas() -> TestResult {
    let ns = namespace_with_crds("crd-scale").await?;
    let fleets: Api<GameServerFleet> = ns.api();
    untyped_fleets(&ns)
        .create(&PostParams::default(), &sample_fleet_with(json!({})))
        .await?;
    let scale = fleets.get_scale("arena").await?;
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(3));
    fleets
        .patch_scale(
            "arena",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 7}})),
        )
        .await?;
    assert_eq!(fleets.get("arena").await?.spec.replicas, 7);
    ns.delete().await
}

#[tokio::test]
async fn kubectl_get_shows_state_and_replica_columns() -> TestResult {
    let ns = namespace_with_crds("crd-columns").await?;
    let columns = |plural: &str| {
        let client = ns.client.clone();
        let url = format!("/apis/flotilla.dev/v1alpha1/namespaces/{}/{plural}", ns.name);
        async move {
            let request = http::Request::get(url)
                .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
                .body(Vec::<u8>::new())
                .expect("request");
            let table: serde_json::Value = client.request(request).await?;
            let names: Vec<String> = table["columnDefinitions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["name"].as_str().map(str::to_owned))
                .collect();
            Ok::<_, flotilla_e2e::Error>(names)
        }
    };
    let fleet = columns("gameserverfleets").await?;
    for expected in ["Name", "Desired", "Current", "Ready", "Allocated", "Age"] {
        assert!(
            fleet.iter().any(|c| c == expected),
            "gsf columns {fleet:?} include {expected}"
        );
    }
    let servers = columns("gameservers").await?;
    for expected in ["Name", "State", "Address", "Port", "Node", "Age"] {
        assert!(
            servers.iter().any(|c| c == expected),
            "gs columns {servers:?} include {expected}"
        );
    }
    // `kubectl get gsf,gs` resolves the short names the CRDs declare.
    let crds: Api<CustomResourceDefinition> = Api::all(ns.client.clone());
    for (crd, short) in [
        ("gameserverfleets.flotilla.dev", "gsf"),
        ("gameservers.flotilla.dev", "gs"),
    ] {
        let names = crds.get(crd).await?.spec.names.short_names.unwrap_or_default();
        assert!(
            names.iter().any(|n| n == short),
            "{crd} has short name {short}: {names:?}"
        );
    }
    ns.delete().await
}
