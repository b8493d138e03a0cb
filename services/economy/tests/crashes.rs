//! Conservation through crashes: the economy binary runs as its own process while 64 writers
//! work against it, and beside them sellers and buyers on the market, auctions with bidders and
//! trades between signed-up players; it is SIGKILLed at 20 random moments and restarted, and
//! FerretDB itself is killed and restarted halfway. Writers retry with their idempotency keys, as
//! clients do. Then recovery, expiry and settlement finish whatever the kills left open: the books
//! must balance exactly with every acknowledgement true, and no escrow may hold anything (no
//! listing, trade or auction stuck).
//!
//! It restarts the shared FerretDB (from `$FLOTILLA_STORAGE_DIR/ferretdb.pid`), so it is the only
//! test in this binary: test binaries run one after another.

mod support;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flotilla_economy::ledger::memory::Rng;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{ADMIN_KEY, Ack, Deployment, SERVICE_KEY, check_books, sign_up, token_for, unique, writer};

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// The economy service as a process of its own.
struct Service {
    child: Child,
    port: u16,
}

impl Service {
    async fn start(deployment: &Deployment, port: u16, keys: &str, player_url: &str) -> Self {
        let args = deployment.serve_args();
        let child = Command::new(env!("CARGO_BIN_EXE_flotilla-economy"))
            .arg("serve")
            .env("FLOTILLA_PLAYER_URL", player_url)
            .env("FLOTILLA_MONGO_URL", &args.storage.mongo_url)
            .env("FLOTILLA_MONGO_DATABASE", &args.storage.database)
            .env("FLOTILLA_REDIS_URL", &args.redis_url)
            .env("FLOTILLA_OPENSEARCH_URL", &args.opensearch_url)
            .env("FLOTILLA_NAMESPACE", &args.namespace)
            .env("FLOTILLA_ECONOMY_ADDR", format!("127.0.0.1:{port}"))
            .env(
                "FLOTILLA_ECONOMY_METRICS_ADDR",
                format!("127.0.0.1:{}", free_port()),
            )
            .env("FLOTILLA_ECONOMY_CATALOG", &args.catalog)
            .env("FLOTILLA_PLAYER_TOKEN_KEYS", keys)
            .env("FLOTILLA_SERVICE_KEY", SERVICE_KEY)
            .env("FLOTILLA_ECONOMY_ADMIN_KEY", ADMIN_KEY)
            .env("FLOTILLA_ECONOMY_RECOVERY_GRACE_SECONDS", "2")
            .env("FLOTILLA_ECONOMY_RECOVERY_INTERVAL_SECONDS", "1")
            // A restarted pod keeps its name, and so takes its own lease back at once.
            .env("POD_NAME", "economy-crash-test")
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .spawn()
            .expect("start the economy binary");
        let service = Self { child, port };
        service.wait_listening().await;
        service
    }

    async fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "the economy did not listen within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }
}

/// Kills FerretDB outright and starts it again with the same command line, waiting until it listens.
async fn restart_ferretdb() {
    let dir = PathBuf::from(
        std::env::var("FLOTILLA_STORAGE_DIR").expect("FLOTILLA_STORAGE_DIR (e2e/storage/up.sh)"),
    );
    let pid_file = dir.join("ferretdb.pid");
    let pid = std::fs::read_to_string(&pid_file)
        .expect("ferretdb.pid")
        .trim()
        .to_owned();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("ferretdb's command line");
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let listen = args
        .iter()
        .find_map(|a| a.strip_prefix("--listen-addr="))
        .expect("--listen-addr")
        .to_owned();
    let killed = Command::new("kill").args(["-KILL", &pid]).status().expect("kill");
    assert!(killed.success());
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("ferretdb.log"))
        .expect("log");
    let child = Command::new("setsid")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("restart ferretdb");
    std::fs::write(&pid_file, child.id().to_string()).expect("pid file");
    // It outlives this test (e2e/storage/down.sh stops it by the pid file); reaped here if not.
    let mut child = child;
    std::thread::spawn(move || child.wait());
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(&listen).await.is_err() {
        assert!(Instant::now() < deadline, "ferretdb did not come back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkills_and_a_store_restart_neither_create_nor_lose_value() {
    let soak = std::env::var("ECONOMY_SOAK_SECONDS").map_or(60, |s| s.parse().expect("a number"));
    let deployment = Deployment::new();
    let keys = deployment.serve_args().player_token_keys.join(",");
    let player_url = deployment.player_service().await;
    let port = free_port();
    let mut service = Service::start(&deployment, port, &keys, &player_url).await;
    let base = format!("http://127.0.0.1:{port}");

    let run = unique("crash");
    // Players the player service knows: gifts and trades are checked with it.
    let mut players = Vec::new();
    for name in support::players(32, &run[run.len() - 10..]) {
        players.push(sign_up(&player_url, &format!("p{name}")).await.0);
    }
    let mut traders = Vec::new();
    for w in 0..4 {
        let ann = sign_up(&player_url, &format!("a{w}{}", &run[run.len() - 10..])).await;
        let bob = sign_up(&player_url, &format!("b{w}{}", &run[run.len() - 10..])).await;
        traders.push((ann, bob));
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(soak);
    let writers: Vec<_> = (0..64)
        .map(|i| tokio::spawn(writer(base.clone(), i, players.clone(), deadline)))
        .collect();
    let mut markets = Vec::new();
    let mut auctions = Vec::new();
    for w in 0..4 {
        let mut ids = Vec::new();
        for role in ["ms", "mb", "ax", "ay"] {
            ids.push(
                sign_up(&player_url, &format!("{role}{w}{}", &run[run.len() - 10..]))
                    .await
                    .0,
            );
        }
        let [seller, buyer, x, y] = <[String; 4]>::try_from(ids).expect("four");
        markets.push(tokio::spawn(market(
            base.clone(),
            seller.clone(),
            buyer,
            w,
            deadline,
        )));
        auctions.push(tokio::spawn(auctions_worker(
            base.clone(),
            seller,
            [x, y],
            deadline,
        )));
    }
    let trades: Vec<_> = traders
        .into_iter()
        .enumerate()
        .map(|(w, (ann, bob))| tokio::spawn(trades(base.clone(), w, ann, bob, deadline)))
        .collect();

    let mut rng = Rng::new(soak);
    let kills = 20;
    let mut kill_times: Vec<u64> = (0..kills).map(|_| rng.below(soak * 1000)).collect();
    kill_times.sort();
    for (index, at_ms) in kill_times.into_iter().enumerate() {
        let at = started + Duration::from_millis(at_ms);
        tokio::time::sleep(at.saturating_duration_since(Instant::now())).await;
        service.kill();
        if index == kills as usize / 2 {
            restart_ferretdb().await;
        }
        service = Service::start(&deployment, port, &keys, &player_url).await;
    }
    let mut acks = Vec::new();
    for writer in writers.into_iter().chain(markets) {
        acks.extend(writer.await.expect("writer"));
    }
    for worker in auctions.into_iter().chain(trades) {
        worker.await.expect("worker");
    }
    service.kill();
    eprintln!("{kills} SIGKILLs and one FerretDB restart in {soak} s");

    // A fresh replica's recovery worker finishes what the kills left open.
    let mut args = deployment.serve_args();
    args.player_url = Some(player_url.clone());
    args.recovery_grace_seconds = 0;
    args.storage.replica = "economy-crash-test".into();
    let replica = deployment.replica_with(args).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let books = replica.state.ledger.store().books().await.expect("books");
        // Finished, and every listing, trade and auction returned, completed or settled.
        if books.finished.len() == books.transactions.len() && escrowed(&books).is_empty() {
            check_books(&books, &acks);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "recovery did not finish everything within 120 s; in escrow: {:?}",
            escrowed(&books)
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Escrow accounts that still hold something, from each one's newest posting.
fn escrowed(books: &flotilla_economy::ledger::audit::Books) -> Vec<String> {
    let mut newest = std::collections::HashMap::new();
    for posting in books.postings.iter().filter(|p| p.player.contains(':')) {
        let entry = newest.entry(posting.key.as_str()).or_insert(posting);
        if posting.seq > entry.seq {
            *entry = posting;
        }
    }
    newest
        .values()
        .filter(|p| p.balance.available + p.balance.reserved + p.balance.incoming != 0)
        .map(|p| p.key.clone())
        .collect()
}

/// Sends until the service answers with anything but unavailability (refused connections while
/// it restarts, 5xx while the store does): its status and body, or `None` a minute past
/// `deadline`. A write is retried with its key, as a client does.
async fn answered(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    auth: &str,
    key: Option<&str>,
    body: &Value,
    deadline: Instant,
) -> Option<(StatusCode, Value)> {
    let give_up = deadline + Duration::from_secs(60);
    while Instant::now() < give_up {
        let mut request = http.request(method.clone(), url).bearer_auth(auth).json(body);
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        if let Ok(response) = request.send().await {
            let status = response.status();
            if !status.is_server_error() {
                return Some((status, response.json().await.unwrap_or(Value::Null)));
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// Grants `body` to `player`, retrying with its key until it is answered.
async fn grant(http: &reqwest::Client, base: &str, player: &str, body: Value, deadline: Instant) {
    let mut body = body;
    body["player"] = json!(player);
    body["reason"] = json!("crash test");
    let key = unique("grant-");
    let answer = answered(
        http,
        Method::POST,
        &format!("{base}/v1/grants"),
        SERVICE_KEY,
        Some(&key),
        &body,
        deadline,
    )
    .await;
    assert!(matches!(answer, Some((StatusCode::OK, _)) | None), "{answer:?}");
}

/// A seller listing ore for a few seconds and a buyer buying some of it, the seller sometimes
/// cancelling: each purchase that went through is an acknowledgement.
async fn market(base: String, seller: String, buyer: String, w: usize, deadline: Instant) -> Vec<Ack> {
    let http = client();
    grant(
        &http,
        &base,
        &seller,
        json!({"currencies": {"gold": 1000}, "items": {"ore": 10_000}}),
        deadline,
    )
    .await;
    grant(
        &http,
        &base,
        &buyer,
        json!({"currencies": {"gold": 1_000_000}}),
        deadline,
    )
    .await;
    let (seller_token, buyer_token) = (
        token_for(&seller, "crash", 3600),
        token_for(&buyer, "crash", 3600),
    );
    let mut rng = Rng::new(w as u64 * 31 + 7);
    let mut acks = Vec::new();
    let mut n = 0;
    while Instant::now() < deadline {
        n += 1;
        let listing = json!({"item": "ore", "amount": 3, "currency": "gold", "unitPrice": 2, "durationSeconds": 1 + rng.below(8)});
        let url = format!("{base}/v1/market/listings");
        let Some((StatusCode::OK, listed)) = answered(
            &http,
            Method::POST,
            &url,
            &seller_token,
            Some(&format!("l{n}")),
            &listing,
            deadline,
        )
        .await
        else {
            continue;
        };
        let id = listed["listing"]["id"].as_str().expect("listing").to_owned();
        let key = format!("buy{n}");
        let url = format!("{base}/v1/market/listings/{id}/purchases");
        let body = json!({"amount": 1 + rng.below(2)});
        // A refusal may come before any transaction (the listing expired, sold out): only what
        // went through is checked against the books.
        let bought = answered(
            &http,
            Method::POST,
            &url,
            &buyer_token,
            Some(&key),
            &body,
            deadline,
        )
        .await;
        if let Some((StatusCode::OK, _)) = bought {
            acks.push(Ack {
                tx: format!("{buyer}:{key}"),
                committed: true,
            });
        }
        if rng.below(3) == 0 {
            let url = format!("{base}/v1/market/listings/{id}/cancel");
            answered(
                &http,
                Method::POST,
                &url,
                &seller_token,
                None,
                &json!({}),
                deadline,
            )
            .await;
        }
    }
    acks
}

/// A seller auctioning ore for two seconds and two bidders bidding the minimum in turn.
async fn auctions_worker(base: String, seller: String, bidders: [String; 2], deadline: Instant) {
    let http = client();
    grant(
        &http,
        &base,
        &seller,
        json!({"currencies": {"gold": 1000}, "items": {"ore": 10_000}}),
        deadline,
    )
    .await;
    for bidder in &bidders {
        grant(
            &http,
            &base,
            bidder,
            json!({"currencies": {"gold": 1_000_000}}),
            deadline,
        )
        .await;
    }
    let seller_token = token_for(&seller, "crash", 3600);
    let tokens = bidders.each_ref().map(|bidder| token_for(bidder, "crash", 3600));
    let mut n = 0;
    while Instant::now() < deadline {
        n += 1;
        let auction =
            json!({"item": "ore", "amount": 1, "currency": "gold", "startPrice": 1, "durationSeconds": 2});
        let url = format!("{base}/v1/auctions");
        let Some((StatusCode::OK, mut view)) = answered(
            &http,
            Method::POST,
            &url,
            &seller_token,
            Some(&format!("a{n}")),
            &auction,
            deadline,
        )
        .await
        else {
            continue;
        };
        let id = view["id"].as_str().expect("auction").to_owned();
        for turn in 0..4 {
            let bid = json!({"amount": view["minimumBid"], "version": view["version"]});
            let url = format!("{base}/v1/auctions/{id}/bids");
            match answered(&http, Method::POST, &url, &tokens[turn % 2], None, &bid, deadline).await {
                Some((StatusCode::OK, after)) => view = after,
                _ => break,
            }
        }
    }
}

/// Two signed-up players trading gold for ore: open, offer both ways, accept both, or cancel.
async fn trades(base: String, w: usize, ann: (String, String), bob: (String, String), deadline: Instant) {
    let http = client();
    grant(
        &http,
        &base,
        &ann.0,
        json!({"currencies": {"gold": 1_000_000}}),
        deadline,
    )
    .await;
    grant(&http, &base, &bob.0, json!({"items": {"ore": 10_000}}), deadline).await;
    let mut rng = Rng::new(w as u64 + 99);
    let mut n = 0;
    while Instant::now() < deadline {
        n += 1;
        let url = format!("{base}/v1/trades");
        let body = json!({"with": bob.0, "durationSeconds": 3});
        let Some((StatusCode::OK, trade)) = answered(
            &http,
            Method::POST,
            &url,
            &ann.1,
            Some(&format!("t{n}")),
            &body,
            deadline,
        )
        .await
        else {
            continue;
        };
        let id = trade["id"].as_str().expect("trade").to_owned();
        let put = |token: &str, goods: Value| {
            let url = format!("{base}/v1/trades/{id}/offer");
            let http = http.clone();
            let token = token.to_owned();
            async move { answered(&http, Method::PUT, &url, &token, None, &goods, deadline).await }
        };
        put(&ann.1, json!({"currencies": {"gold": 1 + rng.below(5)}})).await;
        let Some((_, view)) = put(&bob.1, json!({"items": {"ore": 1 + rng.below(3)}})).await else {
            continue;
        };
        if rng.below(4) == 0 {
            let url = format!("{base}/v1/trades/{id}/cancel");
            answered(&http, Method::POST, &url, &bob.1, None, &json!({}), deadline).await;
            continue;
        }
        for token in [&ann.1, &bob.1] {
            let url = format!("{base}/v1/trades/{id}/accept");
            answered(
                &http,
                Method::POST,
                &url,
                token,
                None,
                &json!({"version": view["version"]}),
                deadline,
            )
            .await;
        }
    }
}
