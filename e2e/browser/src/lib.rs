//! Headless Chromium for the tests of Flotilla's web pages (the ops console, the analytics
//! dashboard), driven over the W3C WebDriver protocol by chromedriver.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian's `chromium` and
//! `chromium-driver`; `.ci/run` installs them). Failures panic with the driver's answer: these
//! are test helpers, and the panic message is the most useful report.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::Method;
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The page's size in CSS pixels, which is also the screenshot's size.
pub const WIDTH: u32 = 1280;
pub const HEIGHT: u32 = 900;

/// A chromedriver on a free loopback port with one headless Chromium session. Dropping it
/// ends the session (Chromium exits) and kills chromedriver, also when a test panics.
pub struct Browser {
    driver: tokio::process::Child,
    http: reqwest::Client,
    port: u16,
    session: String,
}

impl Browser {
    /// Starts chromedriver and a session whose page is [`WIDTH`] × [`HEIGHT`].
    pub async fn start() -> Self {
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
            .build()
            .expect("an HTTP client");
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        loop {
            let ready = match http.get(format!("{base}/status")).send().await {
                Ok(r) => r
                    .json::<Value>()
                    .await
                    .ok()
                    .and_then(|v| v["value"]["ready"].as_bool()),
                Err(_) => None,
            };
            if ready == Some(true) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver did not listen"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
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
            Method::POST,
            &format!("{base}/session"),
            Some(&capabilities),
        )
        .await;
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
            .await;
        let extra = |i: usize| frame[i].as_u64().expect("a frame size");
        let rect = json!({"width": u64::from(WIDTH) + extra(0), "height": u64::from(HEIGHT) + extra(1)});
        browser.command(Method::POST, "/window/rect", Some(&rect)).await;
        browser
    }

    /// One command of this session (`path` after `/session/{id}`): its `value`.
    pub async fn command(&self, method: Method, path: &str, body: Option<&Value>) -> Value {
        let url = format!("http://127.0.0.1:{}/session/{}{path}", self.port, self.session);
        send(&self.http, method, &url, body).await
    }

    pub async fn open(&self, url: &str) {
        self.command(Method::POST, "/url", Some(&json!({ "url": url })))
            .await;
    }

    /// Runs `body` as a function of `args` in the page and returns what it returns.
    pub async fn eval(&self, body: &str, args: Value) -> Value {
        self.command(
            Method::POST,
            "/execute/sync",
            Some(&json!({"script": body, "args": args})),
        )
        .await
    }

    /// Runs `source` in every page opened from now on, before the page's own scripts.
    pub async fn before_each_page(&self, source: &str) {
        let body = json!({
            "cmd": "Page.addScriptToEvaluateOnNewDocument",
            "params": {"source": source},
        });
        self.command(Method::POST, "/goog/cdp/execute", Some(&body)).await;
    }

    /// A PNG of the page, also written to `$CARGO_TARGET_DIR/e2e-artifacts/{name}.png` for
    /// people to look at; panics unless it is exactly [`WIDTH`] × [`HEIGHT`].
    pub async fn screenshot(&self, name: &str) -> Vec<u8> {
        let encoded = self.command(Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().expect("a screenshot is a base64 string"))
            .expect("a screenshot is valid base64");
        let artifacts = target_dir().join("e2e-artifacts");
        std::fs::create_dir_all(&artifacts).expect("the e2e-artifacts directory");
        let path = artifacts.join(format!("{name}.png"));
        std::fs::write(&path, &png).expect("the screenshot is written");
        let viewport = self
            .eval(
                "return [innerWidth * devicePixelRatio, innerHeight * devicePixelRatio];",
                json!([]),
            )
            .await;
        assert_eq!(
            png_size(&png),
            (WIDTH, HEIGHT),
            "screenshot {} of a {viewport} viewport",
            path.display()
        );
        png
    }

    /// The page's console messages since the last call (chromedriver's log extension).
    pub async fn console_log(&self) -> Vec<Value> {
        let log = self
            .command(Method::POST, "/se/log", Some(&json!({"type": "browser"})))
            .await;
        log.as_array().cloned().unwrap_or_default()
    }

    /// Panics if the page logged an error since the last look at the console.
    pub async fn assert_no_errors(&self) {
        let errors: Vec<Value> = self
            .console_log()
            .await
            .into_iter()
            .filter(|entry| entry["level"] == "SEVERE")
            .collect();
        assert!(errors.is_empty(), "the page logged errors: {errors:?}");
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
async fn send(http: &reqwest::Client, method: Method, url: &str, body: Option<&Value>) -> Value {
    let mut request = http.request(method.clone(), url);
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("webdriver {method} {url}: {e}"));
    let status = response.status();
    let mut answer: Value = response
        .json()
        .await
        .unwrap_or_else(|e| panic!("webdriver {method} {url}: {status}, not JSON: {e}"));
    assert!(status.is_success(), "webdriver {method} {url}: {status} {answer}");
    answer["value"].take()
}

fn target_dir() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()))
}

/// A PNG's width and height from its IHDR chunk, which the format puts first.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert_eq!(png.get(12..16), Some(&b"IHDR"[..]), "no IHDR chunk first");
    let number = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().expect("four bytes"));
    (number(16), number(20))
}
