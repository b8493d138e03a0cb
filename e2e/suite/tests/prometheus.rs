//! A real Prometheus (the Debian package) scrapes Flotilla: the operator's `/metrics`, and every
//! game server, found through the operator's HTTP service discovery. After an allocation
//! through the API, a PromQL query sees it.

use std::time::Duration;

use flotilla_e2e::{FleetFixture, Grant, Result, Workload, eventually, failure, matchmaker_token};
use serde_json::{Value, json};

type TestResult = Result<()>;
const WAIT: Duration = Duration::from_secs(60);

/// A Prometheus server on a free loopback port with its own storage, stopped when dropped.
struct Prometheus {
    _process: tokio::process::Child,
    url: String,
    http: reqwest::Client,
}

impl Prometheus {
    fn start(dir: &std::path::Path, config: &str) -> Result<Self> {
        let io = |e: std::io::Error| failure("prometheus", e);
        std::fs::create_dir_all(dir.join("data")).map_err(io)?;
        std::fs::write(dir.join("prometheus.yml"), config).map_err(io)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(io)?
            .port();
        let log = std::fs::File::create(dir.join("prometheus.log")).map_err(io)?;
        let process = tokio::process::Command::new(
            std::env::var("FLOTILLA_PROMETHEUS").unwrap_or_else(|_| "/usr/bin/prometheus".into()),
        )
        .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(log.try_clone().map_err(io)?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| failure("/usr/bin/prometheus (Debian package prometheus)", e))?;
        Ok(Self {
            _process: process,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        })
    }

    /// The value of an instant query whose answer is one number; None while it has no result.
    async fn scalar(&self, query: &str) -> Result<Option<f64>> {
        let Ok(response) = self
            .http
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", query)])
            .send()
            .await
        else {
            return Ok(None); // not listening yet
        };
        // Until its storage is open, Prometheus answers 503 with a plain-text body.
        if !response.status().is_success() {
            return Ok(None);
        }
        let body: Value = response.json().await?;
        Ok(body["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok()))
    }

    async fn wait_for(&self, query: &str, satisfied: impl Fn(f64) -> bool) -> Result<f64> {
        eventually(WAIT, &format!("Prometheus: {query}"), || async {
            Ok(self.scalar(query).await?.filter(|v| satisfied(*v)))
        })
        .await
    }
}

#[tokio::test]
async fn prometheus_scrapes_the_operator_and_game_servers_and_counts_an_allocation() -> TestResult {
    let fixture = FleetFixture::start_with(
        "prometheus",
        2,
        FleetFixture::no_health(),
        Workload::GameServer(vec![]),
    )
    .await?;
    fixture.ready(2).await?;

    let operator = fixture.operator.metrics_url.trim_start_matches("http://");
    // Game servers are found through the operator's HTTP service discovery (Debian's
    // Prometheus has no Kubernetes discovery), on their container port named "metrics".
    let config = format!(
        r#"
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
scrape_configs:
  - job_name: flotilla-operator
    honor_labels: true
    static_configs: [{{targets: ["{operator}"]}}]
  - job_name: game-servers
    http_sd_configs: [{{url: "http://{operator}/sd/gameservers", refresh_interval: 1s}}]
"#,
    );
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let dir = std::path::Path::new(&target).join(format!("e2e-prometheus-{}", fixture.ns.name));
    let prometheus = Prometheus::start(&dir, &config)?;

    prometheus
        .wait_for(r#"sum(up{job="flotilla-operator"})"#, |v| v == 1.0)
        .await?;
    prometheus
        .wait_for(r#"sum(up{job="game-servers"})"#, |v| v == 2.0)
        .await?;
    let ready = prometheus
        .wait_for(
            &format!(
                r#"sum(flotilla_game_servers{{namespace="{}",state="Ready"}})"#,
                fixture.ns.name
            ),
            |v| v == 2.0,
        )
        .await?;
    assert_eq!(ready, 2.0);

    let token = matchmaker_token(&fixture.ns, "matchmaker", Grant::OwnRole).await?;
    let response = reqwest::Client::new()
        .post(format!(
            "{}/allocation/v1/namespaces/{}/allocations",
            fixture.operator.allocation_url, fixture.ns.name
        ))
        .bearer_auth(&token)
        .json(&json!({"fleet": "arena", "sessionId": "prometheus", "players": ["ann"]}))
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 201, "{}", response.text().await?);

    let allocations = prometheus
        .wait_for(
            &format!(
                r#"sum(flotilla_allocations_total{{namespace="{}",result="allocated"}})"#,
                fixture.ns.name
            ),
            |v| v > 0.0,
        )
        .await?;
    assert_eq!(allocations, 1.0);
    // The allocated server's own metrics arrive through pod discovery, labelled by fleet.
    prometheus
        .wait_for(r#"count(flotilla_gameserver_players{fleet="arena"})"#, |v| {
            v == 2.0
        })
        .await?;
    fixture.ns.delete().await?;
    Ok(())
}
