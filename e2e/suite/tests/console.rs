//! The ops console in a real browser: headless Chromium, driven over the W3C WebDriver protocol
//! by chromedriver, opens the operator's `/console` and watches it follow the cluster — the
//! fleet coming up, an allocation and the autoscaler's answer to it — without a reload. A
//! screenshot of the final page is kept at `$CARGO_TARGET_DIR/e2e-artifacts/console.png`.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian's `chromium` and
//! `chromium-driver`; `.ci/run` installs them).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use flotilla_api::{FleetAutoscaler, GameServerState};
use flotilla_e2e::{FleetFixture, Grant, Result, Workload, eventually, manifest, matchmaker_token};
use kube::ResourceExt;
use kube::api::PostParams;
use serde_json::{Value, json};

type TestResult = Result<()>;
const WAIT: Duration = Duration::from_secs(60);
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const WIDTH: u32 = 1280;
const HEIGHT: u32 = 900;

/// A chromedriver on a free loopback port with one headless Chromium session. Dropping it
/// ends the session (Chromium exits) and kills chromedriver, also when a test panics.
struct Browser {
    driver: tokio::process::Child,
    http: reqwest::Client,
    port: u16,
    session: String,
}

impl Browser {
    async fn start() -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port");
        let logs = target_dir().join("e2e-logs");
        std::fs::create_dir_all(&logs).expect("the e2e-logs directory");
        let driver = tokio::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", logs.join("chromedriver.log").display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{CHROMEDRIVER} does not start ({e}): install chromium-driver"));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        let base = format!("http://127.0.0.1:{port}");
        eventually(Duration::from_secs(20), "chromedriver to listen", || async {
            Ok(match http.get(format!("{base}/status")).send().await {
                Ok(r) => r.json::<Value>().await?["value"]["ready"]
                    .as_bool()
                    .filter(|r| *r),
                Err(_) => None,
            })
        })
        .await?;
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                // Root in CI, hence no sandbox; no GPU on the test machines.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         format!("--window-size={WIDTH},{HEIGHT}"), "--hide-scrollbars"],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let created = send(
            &http,
            reqwest::Method::POST,
            &format!("{base}/session"),
            Some(&capabilities),
        )
        .await?;
        let session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {created}"))
            .to_owned();
        let browser = Browser {
            driver,
            http,
            port,
            session,
        };
        // --window-size sizes the window, and headless Chromium still takes its (invisible)
        // toolbar out of it: grow the window by that much so the page gets WIDTH x HEIGHT.
        let frame = browser
            .eval(
                "return [outerWidth - innerWidth, outerHeight - innerHeight];",
                json!([]),
            )
            .await?;
        let extra = |i: usize| frame[i].as_u64().expect("a frame size");
        let rect = json!({"width": u64::from(WIDTH) + extra(0), "height": u64::from(HEIGHT) + extra(1)});
        browser
            .command(reqwest::Method::POST, "/window/rect", Some(&rect))
            .await?;
        Ok(browser)
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Result<Value> {
        let url = format!("http://127.0.0.1:{}/session/{}{path}", self.port, self.session);
        send(&self.http, method, &url, body).await
    }

    async fn open(&self, url: &str) -> Result<()> {
        self.command(reqwest::Method::POST, "/url", Some(&json!({ "url": url })))
            .await?;
        Ok(())
    }

    /// Runs `body` as a function of `args` in the page and returns what it returns.
    async fn eval(&self, body: &str, args: Value) -> Result<Value> {
        self.command(
            reqwest::Method::POST,
            "/execute/sync",
            Some(&json!({"script": body, "args": args})),
        )
        .await
    }

    async fn screenshot(&self) -> Result<Vec<u8>> {
        let encoded = self.command(reqwest::Method::GET, "/screenshot", None).await?;
        Ok(base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().expect("a screenshot is a base64 string"))
            .expect("a screenshot is valid base64"))
    }

    /// The page's console messages since the last call (chromedriver's log extension).
    async fn console_log(&self) -> Result<Vec<Value>> {
        let log = self
            .command(
                reqwest::Method::POST,
                "/se/log",
                Some(&json!({"type": "browser"})),
            )
            .await?;
        Ok(log.as_array().cloned().unwrap_or_default())
    }
}

impl Drop for Browser {
    /// Ends the session so chromedriver stops Chromium (killing chromedriver alone would leave
    /// the browser running). Drop cannot await, and a test's runtime may be gone by now, so
    /// this is one plain HTTP/1.1 request on a blocking socket.
    fn drop(&mut self) {
        if let Ok(mut socket) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
            let _ = socket.set_read_timeout(Some(Duration::from_secs(10)));
            let request = format!(
                "DELETE /session/{} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
                self.session, self.port
            );
            if socket.write_all(request.as_bytes()).is_ok() {
                let _ = socket.read_to_end(&mut Vec::new());
            }
        }
        let _ = self.driver.start_kill();
    }
}

/// One WebDriver call: its `value`, or a panic naming the command and the driver's error.
async fn send(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<&Value>,
) -> Result<Value> {
    let mut request = http.request(method.clone(), url);
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await?;
    let status = response.status();
    let mut answer: Value = response.json().await?;
    assert!(status.is_success(), "webdriver {method} {url}: {status} {answer}");
    Ok(answer["value"].take())
}

fn target_dir() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()))
}

/// What the page shows for the fleet `key` (namespace/name), read from its DOM the way a
/// person reads it: the counts in the row's state cells, the allocation figures, the live
/// indicator and the autoscaler entries. Null while the row is not there.
const READ_PAGE: &str = r#"
const key = arguments[0];
const row = [...document.querySelectorAll('#fleet-rows tr')].find((tr) => tr.dataset.fleet === key);
if (!row) return null;
const cell = (state) => Number(row.querySelector(`[data-state="${state}"]`).textContent);
return {
  ready: cell('Ready'),
  allocated: cell('Allocated'),
  desired: row.querySelector('[data-field="desired"]').textContent,
  rate: Number(document.getElementById('alloc-rate').dataset.value),
  total: Number(document.getElementById('alloc-total').dataset.value),
  mode: document.getElementById('live').dataset.mode,
  updated: document.getElementById('updated').textContent,
  decisions: [...document.querySelectorAll('#decisions li')]
    .map((li) => `${li.dataset.autoscaler} ${li.dataset.result} ${li.querySelector('.change').textContent}`),
  marker: window.consoleTestMarker || null,
};
"#;

/// A PNG's width and height from its IHDR chunk, which the format puts first.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert_eq!(png.get(12..16), Some(&b"IHDR"[..]), "no IHDR chunk first");
    let number = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().expect("four bytes"));
    (number(16), number(20))
}

#[tokio::test]
async fn the_console_follows_an_allocation_live_in_a_browser() -> TestResult {
    let test = FleetFixture::start_with(
        "console",
        2,
        FleetFixture::no_health(),
        Workload::GameServer(vec![]),
    )
    .await?;
    let token = matchmaker_token(&test.ns, "console-matchmaker", Grant::OwnRole).await?;
    // The sample autoscaler keeps two Ready servers on top of the allocated ones, so the
    // allocation below also brings a decision (2 → 3) for the console to list.
    let autoscaler: FleetAutoscaler = manifest("manifests/examples/autoscaler.yaml")?;
    test.ns
        .api::<FleetAutoscaler>()
        .create(&PostParams::default(), &autoscaler)
        .await?;
    eventually(WAIT, "2 Ready servers", || async {
        let ready = test
            .live_servers()
            .await?
            .into_iter()
            .filter(|s| s.status.as_ref().map(|st| st.state) == Some(GameServerState::Ready))
            .filter(|s| s.annotations().contains_key("sdk.flotilla.dev/quic-cert-sha256"))
            .count();
        Ok((ready == 2).then_some(()))
    })
    .await?;

    let browser = Browser::start().await?;
    browser
        .open(&format!("{}/console", test.operator.metrics_url))
        .await?;
    let key = format!("{}/arena", test.ns.name);
    let read = || browser.eval(READ_PAGE, json!([key]));
    let before = eventually(WAIT, "the page to show the fleet with 2 Ready", || async {
        let page = read().await?;
        Ok((page["ready"] == 2 && page["allocated"] == 0 && page["mode"] == "stream").then_some(page))
    })
    .await?;
    assert_eq!(before["total"], 0, "{before}");
    // Set on this page only: still there later means the page was never reloaded.
    browser
        .eval("window.consoleTestMarker = 'first load'; return null;", json!([]))
        .await?;

    let response = reqwest::Client::new()
        .post(format!(
            "{}/allocation/v1/namespaces/{}/allocations",
            test.operator.allocation_url, test.ns.name
        ))
        .bearer_auth(&token)
        .json(&json!({"fleet": "arena"}))
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 201, "{:?}", response.text().await);

    let autoscaler_key = format!("{}/arena", test.ns.name);
    let after = eventually(
        WAIT,
        "the page to show the allocation, the rate and the scale-up without a reload",
        || async {
            let page = read().await?;
            let scaled = page["decisions"].as_array().is_some_and(|list| {
                list.iter()
                    .any(|d| d.as_str() == Some(&format!("{autoscaler_key} scaled_up 2 → 3")))
            });
            let settled = page["allocated"] == 1 && page["ready"] == 2 && page["desired"] == "3";
            let counted = page["rate"].as_u64() >= Some(1) && page["total"].as_u64() >= Some(1);
            Ok((settled && counted && scaled).then_some(page))
        },
    )
    .await?;
    assert_eq!(after["marker"], "first load", "the page was reloaded: {after}");
    assert_eq!(after["mode"], "stream", "{after}");

    let png = browser.screenshot().await?;
    let artifacts = target_dir().join("e2e-artifacts");
    std::fs::create_dir_all(&artifacts).expect("the e2e-artifacts directory");
    let path = artifacts.join("console.png");
    std::fs::write(&path, &png).expect("the screenshot is written");
    let viewport = browser
        .eval(
            "return [innerWidth * devicePixelRatio, innerHeight * devicePixelRatio];",
            json!([]),
        )
        .await?;
    assert_eq!(
        png_size(&png),
        (WIDTH, HEIGHT),
        "screenshot {} of a {viewport} viewport",
        path.display()
    );

    let errors: Vec<Value> = browser
        .console_log()
        .await?
        .into_iter()
        .filter(|entry| entry["level"] == "SEVERE")
        .collect();
    assert!(errors.is_empty(), "the page logged errors: {errors:?}");

    // A browser (or a proxy) without EventSource: the page polls the summary instead.
    browser
        .command(
            reqwest::Method::POST,
            "/goog/cdp/execute",
            Some(&json!({
                "cmd": "Page.addScriptToEvaluateOnNewDocument",
                "params": {"source": "delete window.EventSource;"},
            })),
        )
        .await?;
    browser
        .open(&format!("{}/console", test.operator.metrics_url))
        .await?;
    eventually(WAIT, "the page to poll without EventSource", || async {
        let page = read().await?;
        Ok((page["mode"] == "polling" && page["allocated"] == 1 && page["total"] == 1).then_some(()))
    })
    .await?;

    drop(browser);
    test.ns.delete().await
}
