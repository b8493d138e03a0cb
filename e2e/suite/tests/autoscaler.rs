//! FleetAutoscalers on the local cluster: a buffer refills the fleet within a second of an
//! allocation and an exhausted fleet recovers; a webhook decides, and its failures are
//! reported without touching the fleet; chains and schedules pick the policy; bad specs are
//! refused at admission.

use std::time::{Duration, Instant};

use axum::Json;
use axum::routing::post;
use flotilla_api::FleetAutoscaler;
use flotilla_e2e::{FleetFixture, Result, Workload, eventually, manifest};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

type TestResult = Result<()>;
const WAIT: Duration = Duration::from_secs(60);

async fn fleet(prefix: &str, replicas: i32) -> Result<FleetFixture> {
    FleetFixture::start_with(
        prefix,
        replicas,
        FleetFixture::no_health(),
        Workload::GameServer(vec![]),
    )
    .await
}

async fn replicas(test: &FleetFixture) -> Result<i32> {
    Ok(test.fleets.get("arena").await?.spec.replicas)
}

async fn apply_autoscaler(test: &FleetFixture, autoscaler: Value) -> Result<FleetAutoscaler> {
    let api: Api<FleetAutoscaler> = test.ns.api();
    let autoscaler: FleetAutoscaler = serde_json::from_value(autoscaler)
        .map_err(|e| flotilla_e2e::Error::Manifest("fas".into(), e.to_string()))?;
    Ok(api.create(&PostParams::default(), &autoscaler).await?)
}

/// A token allowed to allocate in the test's namespace.
async fn allocator_token(test: &FleetFixture) -> Result<String> {
    let meta = |n: &str| ObjectMeta {
        name: Some(n.into()),
        ..Default::default()
    };
    test.ns
        .api::<ServiceAccount>()
        .create(
            &PostParams::default(),
            &ServiceAccount {
                metadata: meta("mm"),
                ..Default::default()
            },
        )
        .await?;
    let rule = PolicyRule {
        api_groups: Some(vec!["flotilla.dev".into()]),
        resources: Some(vec!["gameserverallocations".into()]),
        verbs: vec!["create".into()],
        ..Default::default()
    };
    test.ns
        .api::<Role>()
        .create(
            &PostParams::default(),
            &Role {
                metadata: meta("mm"),
                rules: Some(vec![rule]),
            },
        )
        .await?;
    let binding = RoleBinding {
        metadata: meta("mm"),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: "mm".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: "mm".into(),
            namespace: Some(test.ns.name.clone()),
            ..Default::default()
        }]),
    };
    test.ns
        .api::<RoleBinding>()
        .create(&PostParams::default(), &binding)
        .await?;
    let request = k8s_openapi::api::authentication::v1::TokenRequest {
        spec: Some(k8s_openapi::api::authentication::v1::TokenRequestSpec {
            audiences: Some(vec!["flotilla.dev/allocation".into()]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let issued = test
        .ns
        .api::<ServiceAccount>()
        .create_token_request("mm", &PostParams::default(), &request)
        .await?;
    Ok(issued.status.and_then(|s| s.token).unwrap_or_default())
}

async fn allocate(test: &FleetFixture, token: &str) -> Result<u16> {
    let url = format!(
        "{}/allocation/v1/namespaces/{}/allocations",
        test.operator.allocation_url, test.ns.name
    );
    let response = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .json(&json!({"fleet": "arena"}))
        .send()
        .await?;
    Ok(response.status().as_u16())
}

async fn ready_count(test: &FleetFixture) -> Result<i32> {
    Ok(test
        .fleets
        .get("arena")
        .await?
        .status
        .map_or(0, |s| s.ready_replicas))
}

#[tokio::test]
async fn a_buffer_refills_the_fleet_within_a_second_of_an_allocation_and_an_exhausted_fleet_recovers()
-> TestResult {
    let test = fleet("fas-buffer", 2).await?;
    let mut sample: FleetAutoscaler = manifest("manifests/examples/autoscaler.yaml")?;
    sample.metadata.namespace = None;
    let sample = serde_json::to_value(&sample)
        .map_err(|e| flotilla_e2e::Error::Manifest("fas".into(), e.to_string()))?;
    apply_autoscaler(&test, sample).await?;
    eventually(WAIT, "2 Ready servers", || async {
        Ok((ready_count(&test).await? == 2).then_some(()))
    })
    .await?;
    let token = allocator_token(&test).await?;

    assert_eq!(allocate(&test, &token).await?, 201);
    let allocated_at = Instant::now();
    eventually(
        Duration::from_secs(5),
        "the buffer to grow the fleet to 3",
        || async { Ok((replicas(&test).await? == 3).then_some(())) },
    )
    .await?;
    let reaction = allocated_at.elapsed();
    println!("allocation to fleet scaled: {} ms", reaction.as_millis());
    assert!(
        reaction < Duration::from_secs(1),
        "scaled {} ms after the allocation",
        reaction.as_millis()
    );

    // Drain faster than servers start: some requests meet an empty fleet and get 429, and
    // the buffer brings capacity back.
    let mut refused = 0;
    for _ in 0..4 {
        if allocate(&test, &token).await? == 429 {
            refused += 1;
        }
    }
    let recovered = eventually(WAIT, "an allocation to succeed again", || async {
        Ok((allocate(&test, &token).await? == 201).then_some(()))
    })
    .await;
    assert!(
        recovered.is_ok(),
        "the fleet recovered ({refused} refused while it grew)"
    );
    let status = eventually(WAIT, "the autoscaler's status to record the scaling", || async {
        let status = test.ns.api::<FleetAutoscaler>().get("arena").await?.status;
        Ok(status.filter(|s| s.last_scale_time.is_some()))
    })
    .await?;
    assert!(
        status.able_to_scale && status.last_scale_time.is_some(),
        "{status:?}"
    );
    test.ns.delete().await
}

#[tokio::test]
async fn a_webhook_decides_and_its_failures_leave_the_fleet_alone() -> TestResult {
    // The webhook: answers 3 replicas until told to answer garbage.
    let broken = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = broken.clone();
    let app = axum::Router::new().route(
        "/scale",
        post(move |Json(review): Json<Value>| {
            let broken = flag.load(std::sync::atomic::Ordering::Relaxed);
            async move {
                if broken {
                    return Json(json!({"nonsense": true}));
                }
                let uid = review["request"]["uid"].clone();
                Json(json!({"response": {"uid": uid, "scale": true, "replicas": 3}}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| flotilla_e2e::Error::Manifest("listen".into(), e.to_string()))?;
    let url = format!(
        "http://{}/scale",
        listener
            .local_addr()
            .map_err(|e| flotilla_e2e::Error::Manifest("addr".into(), e.to_string()))?
    );
    tokio::spawn(async move { axum::serve(listener, app).await });

    let test = fleet("fas-webhook", 1).await?;
    apply_autoscaler(
        &test,
        json!({"apiVersion": "flotilla.dev/v1alpha1", "kind": "FleetAutoscaler", "metadata": {"name": "hook"},
               "spec": {"fleetName": "arena", "sync": {"intervalSeconds": 1},
                        "policy": {"type": "Webhook", "webhook": {"url": url, "timeoutSeconds": 1}}}}),
    )
    .await?;
    eventually(WAIT, "the webhook's 3 replicas", || async {
        Ok((replicas(&test).await? == 3).then_some(()))
    })
    .await?;

    broken.store(true, std::sync::atomic::Ordering::Relaxed);
    let status = eventually(WAIT, "the failure in the status", || async {
        let status = test.ns.api::<FleetAutoscaler>().get("hook").await?.status;
        Ok(status.filter(|s| !s.able_to_scale && s.message.is_some()))
    })
    .await?;
    assert!(
        status
            .message
            .as_deref()
            .is_some_and(|m| m.contains("without a response")),
        "{status:?}"
    );
    assert_eq!(replicas(&test).await?, 3, "a failing webhook changes nothing");
    test.ns.delete().await
}

#[tokio::test]
async fn the_first_chain_entry_that_applies_decides() -> TestResult {
    let test = fleet("fas-chain", 1).await?;
    // A schedule that is active now (every minute, for an hour) wins over the default...
    apply_autoscaler(
        &test,
        json!({"apiVersion": "flotilla.dev/v1alpha1", "kind": "FleetAutoscaler", "metadata": {"name": "chain"},
               "spec": {"fleetName": "arena", "policy": {"type": "Chain", "chain": [
                   {"id": "closed", "type": "Schedule", "schedule": {
                       "between": {"end": "2020-01-01T00:00:00Z"},
                       "policy": {"type": "Buffer", "buffer": {"bufferSize": 9, "maxReplicas": 20}}}},
                   {"id": "busy-hour", "type": "Schedule", "schedule": {
                       "activePeriod": {"timezone": "Asia/Tokyo", "startCron": "* * * * *", "duration": "1h"},
                       "policy": {"type": "Buffer", "buffer": {"bufferSize": 4, "maxReplicas": 20}}}},
                   {"id": "default", "type": "Buffer", "buffer": {"bufferSize": 1, "maxReplicas": 20}}]}}}),
    )
    .await?;
    let status = eventually(WAIT, "the busy-hour entry to decide", || async {
        let status = test
            .ns
            .api::<FleetAutoscaler>()
            .get("chain")
            .await?
            .status
            .unwrap_or_default();
        Ok((status.active_policy.as_deref() == Some("busy-hour")).then_some(status))
    })
    .await?;
    assert_eq!(status.desired_replicas, 4);
    eventually(WAIT, "4 replicas", || async {
        Ok((replicas(&test).await? == 4).then_some(()))
    })
    .await?;
    // ...and when the schedule goes away, the default applies.
    let patch = json!({"spec": {"policy": {"type": "Buffer", "chain": null, "buffer": {"bufferSize": 1, "maxReplicas": 20}}}});
    test.ns
        .api::<FleetAutoscaler>()
        .patch("chain", &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    eventually(WAIT, "1 replica", || async {
        Ok((replicas(&test).await? == 1).then_some(()))
    })
    .await?;
    test.ns.delete().await
}

#[tokio::test]
async fn invalid_autoscalers_are_refused_with_the_reason() -> TestResult {
    let test = fleet("fas-invalid", 0).await?;
    let api: Api<FleetAutoscaler> = test.ns.api();
    let cases = [
        (json!({"type": "Buffer"}), "set exactly the policy field"),
        (
            json!({"type": "Buffer", "buffer": {"bufferSize": 2, "minReplicas": 5, "maxReplicas": 3}}),
            "maxReplicas must be at least minReplicas",
        ),
        (
            json!({"type": "Buffer", "buffer": {"bufferSize": "0%", "minReplicas": 1, "maxReplicas": 3}}),
            "percentage from 1% to 99%",
        ),
        (
            json!({"type": "Buffer", "buffer": {"bufferSize": "10%", "maxReplicas": 3}}),
            "minReplicas of at least 1",
        ),
        (
            json!({"type": "Webhook", "webhook": {"url": "ftp://x"}}),
            "http:// or https://",
        ),
        (
            json!({"type": "Schedule", "schedule": {"activePeriod": {"startCron": "* *", "duration": "1h"},
                "policy": {"type": "Buffer", "buffer": {"bufferSize": 1, "maxReplicas": 3}}}}),
            "five fields",
        ),
        (
            json!({"type": "Chain", "chain": [{"id": "x", "type": "Chain"}]}),
            "a chain entry is a Buffer, Webhook or Schedule",
        ),
    ];
    for (i, (policy, message)) in cases.into_iter().enumerate() {
        let body = json!({"apiVersion": "flotilla.dev/v1alpha1", "kind": "FleetAutoscaler",
                          "metadata": {"name": format!("bad-{i}")}, "spec": {"fleetName": "arena", "policy": policy}});
        let autoscaler: FleetAutoscaler = serde_json::from_value(body)
            .map_err(|e| flotilla_e2e::Error::Manifest("fas".into(), e.to_string()))?;
        match api.create(&PostParams::default(), &autoscaler).await {
            Err(kube::Error::Api(e)) => assert!(e.message.contains(message), "case {i}: {}", e.message),
            other => panic!("case {i} was not refused: {other:?}"),
        }
    }
    let missing = json!({"apiVersion": "flotilla.dev/v1alpha1", "kind": "FleetAutoscaler", "metadata": {"name": "orphan"},
                         "spec": {"fleetName": "no-such-fleet", "policy": {"type": "Buffer", "buffer": {"bufferSize": 1, "maxReplicas": 3}}}});
    apply_autoscaler(&test, missing).await?;
    let status = eventually(WAIT, "the missing fleet in the status", || async {
        Ok(api.get("orphan").await?.status.filter(|s| !s.able_to_scale))
    })
    .await?;
    assert!(
        status.message.as_deref().is_some_and(|m| m.contains("not found")),
        "{status:?}"
    );
    assert!(api.get("orphan").await?.name_any() == "orphan");
    test.ns.delete().await
}
