//! The allocation API on the local cluster, called the way a matchmaker calls it: with a
//! service-account token that RBAC allows to create `gameserverallocations.flotilla.dev`.

use std::collections::BTreeSet;
use std::time::Duration;

use flotilla_api::allocation::AllocationResponse;
use flotilla_api::{GameServer, GameServerState};
use flotilla_e2e::{
    FleetFixture, Grant, Operator, Result, TestNamespace, Workload, eventually, install_crds, manifest,
    matchmaker_token,
};
use flotilla_gameserver::bots::{self, BotConfig};
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

type TestResult = Result<()>;
const WAIT: Duration = Duration::from_secs(60);

struct Allocations {
    fleet: FleetFixture,
    token: String,
    http: reqwest::Client,
}

impl Allocations {
    async fn start(prefix: &str, replicas: i32, env: &[(&'static str, &str)]) -> Result<Self> {
        let env = env.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        let fleet = FleetFixture::start_with(
            prefix,
            replicas,
            FleetFixture::no_health(),
            Workload::GameServer(env),
        )
        .await?;
        let token = matchmaker_token(&fleet.ns, "matchmaker", Grant::OwnRole).await?;
        Ok(Self {
            fleet,
            token,
            http: reqwest::Client::new(),
        })
    }

    async fn ready(&self, count: usize) -> Result<Vec<GameServer>> {
        eventually(WAIT, &format!("{count} Ready servers"), || async {
            let live = self.fleet.live_servers().await?;
            let ready: Vec<_> = live
                .into_iter()
                .filter(|s| s.status.as_ref().map(|st| st.state) == Some(GameServerState::Ready))
                .filter(|s| s.annotations().contains_key("sdk.flotilla.dev/quic-cert-sha256"))
                .collect();
            Ok((ready.len() >= count).then_some(ready))
        })
        .await
    }

    async fn post(
        &self,
        url: &str,
        token: Option<&str>,
        body: &Value,
    ) -> Result<(u16, reqwest::header::HeaderMap, Value)> {
        let mut request = self.http.post(format!(
            "{url}/allocation/v1/namespaces/{}/allocations",
            self.fleet.ns.name
        ));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.json(body).send().await?;
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        Ok((status, headers, response.json().await.unwrap_or(Value::Null)))
    }

    async fn allocate(&self, body: &Value) -> Result<(u16, reqwest::header::HeaderMap, Value)> {
        self.post(&self.fleet.operator.allocation_url, Some(&self.token), body)
            .await
    }

    /// The first allocation after `ready`, retried on 429 as a matchmaker does: the API said
    /// the server is Ready, but the operator's watch may deliver that a moment later on a
    /// loaded machine.
    async fn allocate_first(&self, body: &Value) -> Result<(u16, reqwest::header::HeaderMap, Value)> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let answer = self.allocate(body).await?;
            if answer.0 != 429 || tokio::time::Instant::now() > deadline {
                return Ok(answer);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn answer(body: &Value) -> AllocationResponse {
    serde_json::from_value(body.clone()).unwrap_or_else(|e| panic!("not an allocation answer ({e}): {body}"))
}

#[tokio::test]
async fn a_matchmaker_allocates_with_selectors_and_metadata_and_its_players_join_with_the_tokens()
-> TestResult {
    let test = Allocations::start(
        "alloc-match",
        3,
        &[
            ("FLOTILLA_MIN_PLAYERS", "2"),
            ("FLOTILLA_MATCH_SECONDS", "3"),
            ("FLOTILLA_ARENA_METRES", "30"),
        ],
    )
    .await?;
    test.ready(3).await?;
    let request = json!({
        "fleet": "arena",
        "selector": {"matchLabels": {"game": "arena"}},
        "preferred": [{"matchLabels": {"no-such": "label"}}, {"matchExpressions": [{"key": "game", "operator": "In", "values": ["arena"]}]}],
        "metadata": {"labels": {"mode": "ranked"}, "annotations": {"example.com/map": "docks"}},
        "sessionId": "match-42",
        "players": ["ann", "ben"],
        "idempotencyKey": "director-request-1",
    });
    let (status, _, body) = test.allocate(&request).await?;
    assert_eq!(status, 201, "{body}");
    let allocated = answer(&body);
    assert_eq!(allocated.session_id.as_deref(), Some("match-42"));
    assert_eq!(allocated.tokens.len(), 2);
    assert!(!allocated.address.is_empty() && !allocated.node_name.is_empty());
    assert_eq!(allocated.ports[0].port, 7777);

    let server = test.fleet.servers.get(&allocated.game_server).await?;
    let st = server.status.clone().unwrap_or_default();
    assert_eq!(st.state, GameServerState::Allocated);
    assert_eq!(
        st.allocation.as_ref().and_then(|a| a.session_id.as_deref()),
        Some("match-42")
    );
    assert!(
        st.allocation
            .as_ref()
            .is_some_and(|a| a.allocated_by.ends_with(":matchmaker")),
        "{st:?}"
    );
    assert_eq!(server.labels().get("mode").map(String::as_str), Some("ranked"));
    assert_eq!(
        server.annotations().get("example.com/map").map(String::as_str),
        Some("docks")
    );

    // A retried request (the director timed out, say) gets the same server, not a second one.
    let (status, _, again) = test.allocate(&request).await?;
    assert_eq!(status, 200, "{again}");
    assert_eq!(answer(&again).game_server, allocated.game_server);

    // The players join with their tokens and play the match through.
    eventually(WAIT, "the session to start", || async {
        let s = test.fleet.servers.get(&allocated.game_server).await?;
        Ok((s
            .annotations()
            .get("sdk.flotilla.dev/match-session")
            .map(String::as_str)
            == Some("match-42"))
        .then_some(()))
    })
    .await?;
    let report = bots::run(BotConfig {
        addr: format!("{}:{}", allocated.address, allocated.ports[0].port)
            .parse()
            .map_err(|e| flotilla_e2e::Error::Manifest("addr".into(), format!("{e}")))?,
        fingerprint: allocated.certificate_sha256.clone().unwrap_or_default(),
        tokens: allocated.tokens.values().cloned().collect(),
        duration: Duration::from_secs(30),
        input_rate_hz: 30,
        bots_per_endpoint: 2,
    })
    .await?;
    assert_eq!(report.joined, 2, "{:?}", report.refused);
    assert!(
        report.bots.iter().all(|b| b.results.is_some()),
        "{}",
        report.summary()
    );

    // The bots binary does the same from the command line, as a load test would.
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let token_file = std::env::temp_dir().join(format!("flotilla-e2e-token-{}", test.fleet.ns.name));
    std::fs::write(&token_file, &test.token)
        .map_err(|e| flotilla_e2e::Error::Manifest("token".into(), e.to_string()))?;
    let output = tokio::process::Command::new(format!("{target}/debug/flotilla-bots"))
        .args([
            "--allocation-url",
            &test.fleet.operator.allocation_url,
            "--namespace",
            &test.fleet.ns.name,
        ])
        .args(["--fleet", "arena", "--players", "2", "--seconds", "30"])
        .arg("--token-file")
        .arg(&token_file)
        .output()
        .await
        .map_err(|e| flotilla_e2e::Error::Manifest("flotilla-bots".into(), e.to_string()))?;
    let _ = std::fs::remove_file(&token_file);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "flotilla-bots failed: {stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("bots joined=2") && stdout.contains("inconsistent=0"),
        "{stdout}"
    );
    test.fleet.ns.delete().await
}

#[tokio::test]
async fn backfill_an_exhausted_fleet_and_bad_requests() -> TestResult {
    let test = Allocations::start("alloc-edge", 1, &[("FLOTILLA_MAX_PLAYERS", "4")]).await?;
    test.ready(1).await?;
    let (status, _, body) = test
        .allocate_first(&json!({"fleet": "arena", "players": ["a"]}))
        .await?;
    assert_eq!(status, 201, "{body}");
    let first = answer(&body);

    // Exhausted: 429 with Retry-After.
    let (status, headers, body) = test.allocate(&json!({"fleet": "arena"})).await?;
    assert_eq!(status, 429, "{body}");
    assert_eq!(
        headers.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("1")
    );

    // Backfill: the allocated server with free slots takes more players.
    let (status, _, body) = test
        .allocate(&json!({"fleet": "arena", "state": "Allocated", "minFreeSlots": 1, "players": ["b", "c"]}))
        .await?;
    assert_eq!(status, 201, "{body}");
    assert_eq!(answer(&body).game_server, first.game_server);
    assert_eq!(answer(&body).tokens.len(), 2);
    let (status, _, body) = test
        .allocate(&json!({"fleet": "arena", "state": "Allocated", "players": ["d", "e", "f", "g"]}))
        .await?;
    assert_eq!(status, 429, "no server has 4 free slots left: {body}");

    // Bad input, unknown fleets, bad credentials.
    let (status, _, body) = test.allocate(&json!({"fleet": "arena", "players": [""]})).await?;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("players[0]")),
        "{body}"
    );
    let (status, _, body) = test
        .allocate(&json!({"fleet": "arena", "colour": "blue"}))
        .await?;
    assert_eq!((status, body["field"].as_str()), (400, Some("body")), "{body}");
    let (status, _, body) = test.allocate(&json!({"fleet": "nope"})).await?;
    assert_eq!(status, 404, "{body}");
    let url = test.fleet.operator.allocation_url.clone();
    let (status, _, _) = test.post(&url, None, &json!({"fleet": "arena"})).await?;
    assert_eq!(status, 401);
    let (status, _, _) = test
        .post(&url, Some("not-a-token"), &json!({"fleet": "arena"}))
        .await?;
    assert_eq!(status, 401);
    let doc: Value = reqwest::get(format!("{url}/allocation/v1/openapi.json"))
        .await?
        .json()
        .await?;
    assert_eq!(doc["openapi"], "3.1.0", "the OpenAPI document is served");
    let outsider = matchmaker_token(&test.fleet.ns, "outsider", Grant::Nothing).await?;
    let (status, _, body) = test
        .post(&url, Some(&outsider), &json!({"fleet": "arena"}))
        .await?;
    assert_eq!(status, 403, "{body}");
    test.fleet.ns.delete().await
}

#[tokio::test]
async fn two_hundred_concurrent_clients_against_two_allocators_take_every_ready_server_exactly_once()
-> TestResult {
    let test = Allocations::start("alloc-race", 24, &[]).await?;
    let second = Operator::start(&test.fleet.ns.name)?;
    let ready: BTreeSet<String> = test.ready(24).await?.iter().map(ResourceExt::name_any).collect();
    assert_eq!(ready.len(), 24);
    let urls = [
        test.fleet.operator.allocation_url.clone(),
        second.allocation_url.clone(),
    ];
    let mut clients = Vec::new();
    for i in 0..200 {
        let (http, token, url, ns) = (
            test.http.clone(),
            test.token.clone(),
            urls[i % 2].clone(),
            test.fleet.ns.name.clone(),
        );
        clients.push(tokio::spawn(async move {
            let started = std::time::Instant::now();
            let response = http
                .post(format!("{url}/allocation/v1/namespaces/{ns}/allocations"))
                .bearer_auth(token)
                .json(&json!({"fleet": "arena", "sessionId": format!("s-{i}")}))
                .send()
                .await?;
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            Ok::<_, reqwest::Error>((status, body, started.elapsed()))
        }));
    }
    let mut won = Vec::new();
    let mut refused = 0;
    let mut latencies = Vec::new();
    for client in clients {
        match client
            .await
            .map_err(|e| flotilla_e2e::Error::Manifest("client".into(), e.to_string()))??
        {
            (201, body, took) => {
                won.push(answer(&body));
                latencies.push(took);
            }
            (429, _, _) => refused += 1,
            (status, body, _) => panic!("unexpected answer {status}: {body}"),
        }
    }
    let names: BTreeSet<String> = won.iter().map(|a| a.game_server.clone()).collect();
    assert_eq!(won.len(), 24, "every Ready server allocated ({refused} refused)");
    assert_eq!(names.len(), won.len(), "no server handed out twice");
    assert_eq!(names, ready, "no server lost");
    // The API's final state agrees: each server carries the allocation its client was told of.
    for allocation in &won {
        let server = test.fleet.servers.get(&allocation.game_server).await?;
        let st = server.status.unwrap_or_default();
        assert_eq!(st.state, GameServerState::Allocated);
        assert_eq!(
            st.allocation.map(|a| a.id),
            Some(allocation.allocation_id.clone())
        );
    }
    let metrics = |url: String| async move { reqwest::get(format!("{url}/metrics")).await?.text().await };
    let conflicts: f64 = [
        test.fleet.operator.metrics_url.clone(),
        second.metrics_url.clone(),
    ]
    .into_iter()
    .map(metrics)
    .collect::<futures::future::JoinAll<_>>()
    .await
    .into_iter()
    .filter_map(|text| text.ok())
    .flat_map(|text| {
        text.lines()
            .filter(|l| l.starts_with("flotilla_allocation_conflicts_total"))
            .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
            .collect::<Vec<_>>()
    })
    .sum();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize].as_secs_f64() * 1000.0;
    println!(
        "200 clients, 2 allocators, 24 servers: 24 allocated, {refused} refused, {conflicts} conflicts; \
         allocation latency under this burst p50 {:.0} ms, p99 {:.0} ms",
        pct(0.5),
        pct(0.99)
    );
    test.fleet.ns.delete().await
}

/// Allocation conflicts seen by two allocators, partitioned or not, when 20 concurrent requests
/// (10 to each) meet a fleet of 24 Ready servers.
async fn conflicts_between_two_allocators(partitions: bool) -> Result<(f64, usize)> {
    let ns = TestNamespace::create(if partitions { "alloc-part" } else { "alloc-nopart" }).await?;
    install_crds(&ns.client).await?;
    let flag = partitions.to_string();
    let operators = [
        Operator::start_with(&ns.name, &["--allocation-partitions", &flag])?,
        Operator::start_with(&ns.name, &["--allocation-partitions", &flag])?,
    ];
    let mut fleet: flotilla_api::GameServerFleet = manifest("manifests/examples/fleet.yaml")?;
    fleet.spec.replicas = 24;
    fleet.spec.template.spec.health = FleetFixture::no_health();
    ns.api::<flotilla_api::GameServerFleet>()
        .create(&PostParams::default(), &fleet)
        .await?;
    let servers: Api<GameServer> = ns.api();
    eventually(WAIT, "24 Ready servers", || async {
        let ready = servers
            .list(&Default::default())
            .await?
            .items
            .iter()
            .filter(|s| s.status.as_ref().map(|st| st.state) == Some(GameServerState::Ready))
            .count();
        Ok((ready == 24).then_some(()))
    })
    .await?;
    // Both allocators have seen each other's lease (renewed every 2 s).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let token = matchmaker_token(&ns, "matchmaker", Grant::OwnRole).await?;
    let http = reqwest::Client::new();
    let requests = (0..20).map(|i| {
        let url = format!(
            "{}/allocation/v1/namespaces/{}/allocations",
            operators[i % 2].allocation_url,
            ns.name
        );
        let (http, token) = (http.clone(), token.clone());
        async move {
            let response = http
                .post(url)
                .bearer_auth(token)
                .json(&json!({"fleet": "arena"}))
                .send()
                .await?;
            Ok::<_, reqwest::Error>(response.status().as_u16())
        }
    });
    let statuses = futures::future::join_all(requests).await;
    let allocated = statuses.iter().filter(|s| matches!(s, Ok(201))).count();
    let mut conflicts = 0.0;
    for operator in &operators {
        let text = reqwest::get(format!("{}/metrics", operator.metrics_url))
            .await?
            .text()
            .await?;
        conflicts += text
            .lines()
            .filter(|l| l.starts_with("flotilla_allocation_conflicts_total"))
            .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
            .sum::<f64>();
    }
    ns.delete().await?;
    Ok((conflicts, allocated))
}

#[tokio::test]
async fn partitioned_allocators_under_load_do_not_fight_over_the_same_servers() -> TestResult {
    let (partitioned, allocated) = conflicts_between_two_allocators(true).await?;
    assert_eq!(allocated, 20);
    let (unpartitioned, allocated_without) = conflicts_between_two_allocators(false).await?;
    assert_eq!(allocated_without, 20);
    println!(
        "20 concurrent allocations over 2 allocators: {partitioned} conflicts partitioned, {unpartitioned} without partitions"
    );
    assert!(
        partitioned <= 3.0,
        "partitioned allocators met {partitioned} conflicts"
    );
    Ok(())
}
