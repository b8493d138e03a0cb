//! `./x bench economy`, second part: the market and the auction house through the HTTP API, and
//! market search over 100,000 listings, against the store's ceiling measured in the same run.
//!
//! 1. The ceiling: unique inserts per second from the driver at 64 writers.
//! 2. Purchases: 64 clients, each buying one unit at a time from its own listing (64 sellers, so
//!    no two clients contend): purchases/s and p50/p99; × the store writes one purchase makes ÷
//!    the ceiling.
//! 3. Bids: 64 clients, each bidding on its own auction as two players in turn (each bid beats the
//!    other's, so each refunds one): bids/s and p50/p99, the same ratio.
//! 4. Search: 100,000 listing documents bulk-indexed into the listings' OpenSearch index; 1, 4
//!    and 16 clients browse (by item, category, property, price range, each sort; half of them a
//!    second page) for `BENCH_SECONDS` each: queries/s, p50/p99 of one query through the API
//!    (target p99 ≤ 50 ms).
//!
//! The service runs in-process in release mode; FerretDB, Redis and OpenSearch on the same 2 cores.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_economy::args::{ServeArgs, StorageArgs};
use flotilla_economy::market::search::ListingDoc;
use flotilla_player::tokens::{AUDIENCE, Claims, ISSUER, TokenKeys};
use flotilla_storage::mongo::now_ms;
use serde_json::{Value, json};

mod support;
use support::{Latencies, ceiling, connect, env_number};

const SERVICE_KEY: &str = "bench-service-key-0123456789";
const CLIENTS: usize = 64;

const CATALOG: &str = r#"
version: 1
currencies:
  - {code: gold, transferable: true}
items:
  - {id: potion, category: potions, maxStack: 1000, tradeable: true}
  - {id: gem, category: gems, maxStack: 1000, tradeable: true}
market: {currencies: [gold], saleFeeBps: 500}
auctions: {currencies: [gold], saleFeeBps: 500, snipingWindowSeconds: 0}
"#;

/// The economy in-process, and a client that keeps its connections.
struct Service {
    base: String,
    http: reqwest::Client,
    keys: TokenKeys,
    state: flotilla_economy::state::Shared,
}

impl Service {
    fn token(&self, player: &str) -> String {
        let now = now_ms() / 1000;
        let claims = Claims {
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            sub: player.into(),
            sid: format!("s-{player}"),
            iat: now,
            exp: now + 3_600,
            created: None,
        };
        self.keys.sign(&claims).expect("sign")
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        auth: &str,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(auth);
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, auth: &str, key: &str, body: Value) -> Value {
        let (status, answer) = self
            .send(reqwest::Method::POST, path, auth, Some(key), Some(&body))
            .await;
        assert_eq!(status, 200, "{path}: {answer}");
        answer
    }

    async fn grant(&self, player: &str, body: Value) {
        let mut body = body;
        body["player"] = json!(player);
        body["reason"] = json!("bench");
        self.post(
            "/v1/grants",
            SERVICE_KEY,
            &format!("fund-{player}-{}", now_ms()),
            body,
        )
        .await;
    }
}

async fn start(database: &str) -> Service {
    let dir = std::env::temp_dir().join(format!("economy-bench-{}", now_ms()));
    std::fs::create_dir_all(&dir).expect("dir");
    let catalog = dir.join("catalog.yaml");
    std::fs::write(&catalog, CATALOG).expect("catalog");
    let keys = TokenKeys::new(&TokenKeys::generate_pkcs8().expect("key"), &[]).expect("keys");
    let env = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} (e2e/storage/up.sh)"));
    let args = ServeArgs {
        storage: StorageArgs {
            mongo_url: env("FLOTILLA_MONGO_URL"),
            database: database.into(),
            mongo_pool: 128,
            replica: "bench".into(),
        },
        redis_url: env("FLOTILLA_REDIS_URL"),
        opensearch_url: env("FLOTILLA_OPENSEARCH_URL"),
        namespace: database.into(),
        addr: "127.0.0.1:0".parse().expect("addr"),
        metrics_addr: "127.0.0.1:0".parse().expect("addr"),
        catalog,
        player_token_keys: keys.public_keys(),
        player_url: None,
        service_key: SERVICE_KEY.into(),
        admin_key: "bench-admin-key-0123456789".into(),
        analytics_url: None,
        recovery_grace_seconds: 30,
        recovery_interval_seconds: 5,
        reversal_policy: flotilla_economy::reversals::Policy::Fail,
        audit_interval_seconds: 0,
    };
    let (state, api, _) = flotilla_economy::build(args).await.expect("economy starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, api).await });
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    Service {
        base: format!("http://{addr}"),
        http,
        keys,
        state,
    }
}

/// Runs `clients` loops of `work` for `seconds`; each call returns its latency when it counted.
async fn run<F, Fut>(clients: usize, seconds: u64, work: F) -> (f64, Latencies)
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Option<Duration>> + Send,
{
    let work = Arc::new(work);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let work = work.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut n = 0;
                while Instant::now() < deadline {
                    n += 1;
                    if let Some(took) = work(client, n).await {
                        latencies.push(took.as_micros() as u64);
                    }
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("client"));
    }
    (all.len() as f64 / started.elapsed().as_secs_f64(), Latencies(all))
}

#[tokio::main]
async fn main() {
    let seconds = env_number("BENCH_SECONDS", 20);
    let listings = env_number("BENCH_LISTINGS", 100_000) as usize;
    let database = format!("benchmarket{}", now_ms());
    let mongo = connect(&database).await;
    let ceiling_64 = ceiling(&mongo, CLIENTS, seconds).await;
    println!("store ceiling: {ceiling_64:.0} unique inserts/s at {CLIENTS} writers");
    let service = Arc::new(start(&database).await);

    // Purchases: seller i lists potions for client i.
    let mut ids = Vec::new();
    for i in 0..CLIENTS {
        let (seller, buyer) = (format!("s{i}"), format!("b{i}"));
        service
            .grant(&seller, json!({"items": {"potion": 1_000_000}}))
            .await;
        service
            .grant(&buyer, json!({"currencies": {"gold": 1_000_000_000}}))
            .await;
        let listing = json!({"item": "potion", "amount": 1_000_000, "currency": "gold", "unitPrice": 3});
        let answer = service
            .post(
                "/v1/market/listings",
                &service.token(&seller),
                &format!("list-{i}"),
                listing,
            )
            .await;
        ids.push(answer["listing"]["id"].as_str().expect("listing").to_owned());
    }
    let tokens: Vec<String> = (0..CLIENTS).map(|i| service.token(&format!("b{i}"))).collect();
    let (ids, tokens) = (Arc::new(ids), Arc::new(tokens));
    let (svc, i2, t2) = (service.clone(), ids.clone(), tokens.clone());
    let (rate, mut latencies) = run(CLIENTS, seconds, move |client, n| {
        let (svc, ids, tokens) = (svc.clone(), i2.clone(), t2.clone());
        async move {
            let sent = Instant::now();
            let path = format!("/v1/market/listings/{}/purchases", ids[client]);
            let key = format!("buy-{n}");
            let (status, answer) = svc
                .send(
                    reqwest::Method::POST,
                    &path,
                    &tokens[client],
                    Some(&key),
                    Some(&json!({"amount": 1})),
                )
                .await;
            assert_eq!(status, 200, "{answer}");
            Some(sent.elapsed())
        }
    })
    .await;
    // The transaction, its outcome and finished record, the sale record, and eleven postings and
    // flows: the escrow's debit and the buyer's credit of the item, the buyer's debit and the
    // seller's credit of the price, the buyer's debit of the fee (open and close each) and the
    // sink's flow.
    const PURCHASE_WRITES: f64 = 15.0;
    println!(
        "market purchases, {CLIENTS} clients: {rate:.0}/s, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; × {PURCHASE_WRITES} writes = {:.0}% of the store ceiling",
        latencies.quantile(0.5),
        latencies.quantile(0.99),
        latencies.quantile(1.0),
        rate * PURCHASE_WRITES / ceiling_64 * 100.0
    );

    // Bids: auction i, bid on by two players in turn.
    let mut auctions = Vec::new();
    for i in 0..CLIENTS {
        let seller = format!("s{i}");
        service.grant(&seller, json!({"items": {"gem": 1}})).await;
        for side in ["x", "y"] {
            service
                .grant(
                    &format!("{side}{i}"),
                    json!({"currencies": {"gold": 1_000_000_000_000i64}}),
                )
                .await;
        }
        let auction =
            json!({"item": "gem", "amount": 1, "currency": "gold", "startPrice": 1, "durationSeconds": 3600});
        let answer = service
            .post(
                "/v1/auctions",
                &service.token(&seller),
                &format!("auction-{i}"),
                auction,
            )
            .await;
        auctions.push(answer);
    }
    let bidders: Vec<[String; 2]> = (0..CLIENTS)
        .map(|i| [service.token(&format!("x{i}")), service.token(&format!("y{i}"))])
        .collect();
    let state: Vec<tokio::sync::Mutex<Value>> = auctions.into_iter().map(tokio::sync::Mutex::new).collect();
    let (svc, state, bidders) = (service.clone(), Arc::new(state), Arc::new(bidders));
    let (rate, mut latencies) = run(CLIENTS, seconds, move |client, n| {
        let (svc, state, bidders) = (svc.clone(), state.clone(), bidders.clone());
        async move {
            let mut auction = state[client].lock().await;
            let id = auction["id"].as_str().expect("id").to_owned();
            let body = json!({"amount": auction["minimumBid"], "version": auction["version"]});
            let sent = Instant::now();
            let (status, answer) = svc
                .send(
                    reqwest::Method::POST,
                    &format!("/v1/auctions/{id}/bids"),
                    &bidders[client][(n % 2) as usize],
                    None,
                    Some(&body),
                )
                .await;
            assert_eq!(status, 200, "{answer}");
            let took = sent.elapsed();
            *auction = answer;
            Some(took)
        }
    })
    .await;
    // The transaction, its outcome and finished record, the step, and eight postings: the
    // bidder's debit and the escrow's credit of the bid, the escrow's debit and the beaten
    // bidder's credit of the refund (open and close each).
    const BID_WRITES: f64 = 12.0;
    println!(
        "auction bids, {CLIENTS} clients: {rate:.0}/s, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; × {BID_WRITES} writes = {:.0}% of the store ceiling",
        latencies.quantile(0.5),
        latencies.quantile(0.99),
        latencies.quantile(1.0),
        rate * BID_WRITES / ceiling_64 * 100.0
    );

    // Search over `listings` documents.
    let indexing = Instant::now();
    let docs = (0..listings).map(|n| {
        let doc = ListingDoc {
            id: format!("bench{n:07}"),
            seller: format!("seller{}", n % 5_000),
            item: ["potion", "gem", "sword", "shield"][n % 4].into(),
            category: Some(["potions", "gems", "weapons", "armour"][n % 4].into()),
            attributes: vec![
                format!("rarity={}", ["common", "rare", "epic"][n % 3]),
                format!("level={}", n % 50),
            ],
            currency: "gold".into(),
            unit_price: 1 + (n as i64 * 7_919) % 10_000,
            remaining: 1 + (n as i64 % 20),
            created_ms: now_ms() - (n as i64) * 1_000,
            expires_ms: now_ms() + 86_400_000,
        };
        (doc, 1)
    });
    let indexed = service
        .state
        .market
        .index
        .rebuild(docs.collect())
        .await
        .expect("index");
    println!(
        "indexed {indexed} listings in {:.1} s",
        indexing.elapsed().as_secs_f64()
    );
    let queries = [
        "item=potion&sort=priceAsc",
        "category=gems&minPrice=100&maxPrice=2000",
        "properties=rarity%3Depic&sort=priceDesc",
        "item=sword&properties=level%3D7,rarity%3Drare",
        "seller=seller42&sort=newest",
        "sort=oldest&limit=50",
        "currency=gold&minPrice=9000&sort=priceAsc",
    ];
    let viewer = Arc::new(service.token("viewer"));
    for clients in [1, 4, 16] {
        let (svc, viewer) = (service.clone(), viewer.clone());
        let (rate, mut latencies) = run(clients, seconds, move |client, n| {
            let (svc, viewer) = (svc.clone(), viewer.clone());
            async move {
                let query = queries[(client + n as usize) % queries.len()];
                // Every other query reads the second page.
                let cursor = match n % 2 {
                    0 => {
                        let (_, first) = svc
                            .send(
                                reqwest::Method::GET,
                                &format!("/v1/market/listings?{query}"),
                                &viewer,
                                None,
                                None,
                            )
                            .await;
                        first["nextCursor"].as_str().map(|c| format!("&cursor={c}"))
                    }
                    _ => None,
                };
                let sent = Instant::now();
                let path = format!("/v1/market/listings?{query}{}", cursor.unwrap_or_default());
                let (status, page) = svc.send(reqwest::Method::GET, &path, &viewer, None, None).await;
                assert_eq!(status, 200, "{page}");
                Some(sent.elapsed())
            }
        })
        .await;
        println!(
            "market search over {indexed} listings, {clients} clients: {rate:.0} queries/s, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (target p99 ≤ 50 ms)",
            latencies.quantile(0.5),
            latencies.quantile(0.99),
            latencies.quantile(1.0),
        );
    }
    mongo.database().drop().await.expect("drop the bench database");
}
