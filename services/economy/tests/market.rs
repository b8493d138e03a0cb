//! The marketplace against the real FerretDB, Redis and OpenSearch: listings in escrow, whole and
//! partial purchases paying the seller less the fee, cancel and expiry returning the rest, search,
//! price history, a race for the last units, and bad input that changes nothing.

mod support;

use std::time::Duration;

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{As, Deployment, Replica, unique};

/// Lists as `seller`; returns the listing's id.
async fn list(economy: &Replica, seller: &str, body: Value) -> String {
    let (status, answer) = economy
        .post("/v1/market/listings", As::Player(seller), &unique("list-"), body)
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["listing"]["state"], "open", "{answer}");
    answer["listing"]["id"].as_str().expect("id").to_owned()
}

async fn buy(economy: &Replica, buyer: &str, listing: &str, key: &str, amount: i64) -> (StatusCode, Value) {
    economy
        .post(
            &format!("/v1/market/listings/{listing}/purchases"),
            As::Player(buyer),
            key,
            json!({"amount": amount}),
        )
        .await
}

async fn listing(economy: &Replica, id: &str, viewer: &str) -> Value {
    let (status, view) = economy
        .get(&format!("/v1/market/listings/{id}"), As::Player(viewer))
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    view
}

async fn browse(economy: &Replica, viewer: &str, query: &str) -> Value {
    economy.state.market.index.refresh().await.expect("refresh");
    let (status, page) = economy
        .get(&format!("/v1/market/listings?{query}"), As::Player(viewer))
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item["id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test]
async fn a_listing_sells_in_parts_and_pays_the_seller_the_price_less_the_fee() {
    let economy = Deployment::new().replica().await;
    let (ann, bob, cat) = (unique("ann"), unique("bob"), unique("cat"));
    economy
        .grant(&ann, json!({"currencies": {"gold": 10}, "items": {"potion": 6}}))
        .await;
    economy.grant(&bob, json!({"currencies": {"gold": 100}})).await;
    economy.grant(&cat, json!({"currencies": {"gold": 100}})).await;

    let id = list(
        &economy,
        &ann,
        json!({"item": "potion", "amount": 5, "currency": "gold", "unitPrice": 10}),
    )
    .await;
    // The potions are in escrow, the listing fee (1) is gone.
    assert_eq!(economy.holding(&ann, "potion").await, (1, 0));
    assert_eq!(economy.holding(&ann, "gold").await, (9, 0));

    let (status, first) = buy(&economy, &bob, &id, "buy-1", 2).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let (status, again) = buy(&economy, &bob, &id, "buy-1", 2).await;
    assert_eq!(
        (status, &again),
        (StatusCode::OK, &first),
        "a retry is answered, not repeated"
    );
    assert_eq!(economy.holding(&bob, "potion").await, (2, 0));
    assert_eq!(economy.holding(&bob, "gold").await, (80, 0));
    assert_eq!(
        economy.holding(&ann, "gold").await,
        (27, 0),
        "20 less the 10% fee"
    );
    assert_eq!(listing(&economy, &id, &bob).await["remaining"], 3);

    let (status, refused) = buy(&economy, &cat, &id, "too-many", 4).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert!(refused.to_string().contains("3 available, 4 needed"), "{refused}");
    let (status, _) = buy(&economy, &cat, &id, "rest", 3).await;
    assert_eq!(status, StatusCode::OK);
    let view = listing(&economy, &id, &cat).await;
    assert_eq!(
        (view["state"].as_str(), view["remaining"].as_i64()),
        (Some("soldOut"), Some(0))
    );
    let (status, gone) = buy(&economy, &bob, &id, "after", 1).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{gone}");

    let (status, history) = economy
        .get("/v1/market/items/potion/prices?limit=10", As::Player(&cat))
        .await;
    assert_eq!(status, StatusCode::OK, "{history}");
    let amounts: Vec<i64> = history["sales"]
        .as_array()
        .expect("sales")
        .iter()
        .map(|sale| sale["amount"].as_i64().expect("amount"))
        .collect();
    assert_eq!(amounts, [3, 2], "committed sales, newest first");
    assert_eq!(history["median"]["gold"], 10);

    let (status, mine) = economy
        .get("/v1/transactions?kind=market-buy", As::Player(&bob))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(mine["items"].as_array().expect("items").len(), 1);
    let report = economy.audit().await;
    assert_eq!(report["drift"], 0, "{report}");
}

#[tokio::test]
async fn cancel_and_expiry_return_what_is_left_to_the_seller() {
    let economy = Deployment::new().replica().await;
    let (ann, bob) = (unique("ann"), unique("bob"));
    economy
        .grant(&ann, json!({"currencies": {"gold": 10}, "items": {"potion": 6}}))
        .await;
    economy.grant(&bob, json!({"currencies": {"gold": 100}})).await;

    let id = list(
        &economy,
        &ann,
        json!({"item": "potion", "amount": 3, "currency": "gold", "unitPrice": 5}),
    )
    .await;
    assert_eq!(buy(&economy, &bob, &id, "one", 1).await.0, StatusCode::OK);
    let (status, _) = economy
        .post(
            &format!("/v1/market/listings/{id}/cancel"),
            As::Player(&bob),
            "x",
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only the seller cancels");
    let (status, cancelled) = economy
        .post(
            &format!("/v1/market/listings/{id}/cancel"),
            As::Player(&ann),
            "x",
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["state"], "cancelled");
    assert_eq!(
        economy.holding(&ann, "potion").await,
        (5, 0),
        "3 listed, 1 sold, 2 back"
    );
    let (status, _) = economy
        .post(
            &format!("/v1/market/listings/{id}/cancel"),
            As::Player(&ann),
            "x",
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "cancelling twice is cancelling once");
    assert_eq!(economy.holding(&ann, "potion").await, (5, 0));
    assert_eq!(
        buy(&economy, &bob, &id, "late", 1).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );

    let short = list(
        &economy,
        &ann,
        json!({"item": "potion", "amount": 2, "currency": "gold", "unitPrice": 5, "durationSeconds": 1}),
    )
    .await;
    assert_eq!(economy.holding(&ann, "potion").await, (3, 0));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let view = listing(&economy, &short, &ann).await;
        if view["state"] == "expired" && economy.holding(&ann, "potion").await == (5, 0) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not returned: {view}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (status, answer) = buy(&economy, &bob, &short, "expired", 1).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    let (_, history) = economy
        .get("/v1/transactions?kind=market-expire", As::Player(&ann))
        .await;
    assert_eq!(history["items"].as_array().expect("items").len(), 1);
    assert_eq!(economy.audit().await["drift"], 0);
}

#[tokio::test]
async fn twenty_buyers_racing_for_five_units_buy_exactly_five() {
    let deployment = Deployment::new();
    let (one, two) = (deployment.replica().await, deployment.replica().await);
    let seller = unique("ann");
    one.grant(
        &seller,
        json!({"currencies": {"gold": 10}, "items": {"potion": 5}}),
    )
    .await;
    let id = list(
        &one,
        &seller,
        json!({"item": "potion", "amount": 5, "currency": "gold", "unitPrice": 3}),
    )
    .await;
    let buyers: Vec<String> = (0..20).map(|n| format!("{seller}b{n}")).collect();
    for buyer in &buyers {
        one.grant(buyer, json!({"currencies": {"gold": 10}})).await;
    }
    let answers = join_all(buyers.iter().enumerate().map(|(n, buyer)| {
        let replica = if n % 2 == 0 { &one } else { &two };
        let id = &id;
        async move { buy(replica, buyer, id, "race", 1).await }
    }))
    .await;
    let sold = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::OK)
        .count();
    assert_eq!(sold, 5, "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|(status, _)| [StatusCode::OK, StatusCode::UNPROCESSABLE_ENTITY].contains(status))
    );
    let mut potions = 0;
    for buyer in &buyers {
        potions += one.holding(buyer, "potion").await.0;
    }
    assert_eq!(potions, 5);
    assert_eq!(
        one.holding(&seller, "gold").await,
        (9 + 5 * 3, 0),
        "fee on 3 rounds down to 0"
    );
    assert_eq!(listing(&one, &id, &seller).await["state"], "soldOut");
    assert_eq!(one.audit().await["drift"], 0);
}

#[tokio::test]
async fn an_instance_is_listed_and_bought_whole_with_its_properties() {
    let economy = Deployment::new().replica().await;
    let (ann, bob) = (unique("ann"), unique("bob"));
    economy
        .grant(
            &ann,
            json!({"currencies": {"gold": 5}, "instances": [{"item": "relic", "properties": {"level": 9}}]}),
        )
        .await;
    economy.grant(&bob, json!({"currencies": {"gold": 500}})).await;
    let (_, wallet) = economy.get("/v1/wallet", As::Player(&ann)).await;
    let relic = wallet["items"][0]["instances"][0]["id"]
        .as_str()
        .expect("instance")
        .to_owned();

    let id = list(
        &economy,
        &ann,
        json!({"instance": relic, "currency": "gold", "unitPrice": 250}),
    )
    .await;
    assert_eq!(economy.holding(&ann, "relic").await, (0, 0));
    let view = listing(&economy, &id, &bob).await;
    assert_eq!(view["properties"]["level"], 9);
    let (status, answer) = buy(&economy, &bob, &id, "relic", 2).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let (status, answer) = buy(&economy, &bob, &id, "relic", 1).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (_, wallet) = economy.get("/v1/wallet", As::Player(&bob)).await;
    let held = &wallet["items"][0];
    assert_eq!(
        (held["id"].as_str(), held["count"].as_i64()),
        (Some("relic"), Some(1))
    );
    assert_eq!(held["instances"][0]["id"], relic.as_str());
    assert_eq!(held["instances"][0]["properties"]["level"], 9);
    assert_eq!(economy.holding(&ann, "gold").await, (4 + 225, 0));
    assert_eq!(economy.audit().await["drift"], 0);
}

#[tokio::test]
async fn browsing_filters_sorts_and_pages_and_survives_a_reindex() {
    let economy = Deployment::new().replica().await;
    let (ann, bob) = (unique("ann"), unique("bob"));
    economy.grant(&ann,
        json!({"currencies": {"gold": 20}, "items": {"potion": 10}, "instances": [{"item": "relic", "properties": {"rarity": "epic"}}, {"item": "relic"}]}),
    )
    .await;
    let mut potions = Vec::new();
    for price in [30, 10, 20] {
        let body = json!({"item": "potion", "amount": 2, "currency": "gold", "unitPrice": price});
        potions.push(list(&economy, &ann, body).await);
    }
    let (_, wallet) = economy.get("/v1/wallet", As::Player(&ann)).await;
    let relics: Vec<Value> = wallet["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|item| item["id"] == "relic")
        .expect("relics")["instances"]
        .as_array()
        .expect("instances")
        .clone();
    let epic = relics
        .iter()
        .find(|r| r["properties"]["rarity"] == "epic")
        .expect("epic")["id"]
        .clone();
    let epic_listing = list(
        &economy,
        &ann,
        json!({"instance": epic, "currency": "gold", "unitPrice": 99}),
    )
    .await;

    let cheapest = browse(&economy, &bob, "item=potion&sort=priceAsc").await;
    assert_eq!(
        ids(&cheapest),
        [potions[1].clone(), potions[2].clone(), potions[0].clone()]
    );
    let first = browse(&economy, &bob, "item=potion&sort=priceAsc&limit=2").await;
    assert_eq!(ids(&first), [potions[1].clone(), potions[2].clone()]);
    let cursor = first["nextCursor"].as_str().expect("a next page");
    let second = browse(
        &economy,
        &bob,
        &format!("item=potion&sort=priceAsc&limit=2&cursor={cursor}"),
    )
    .await;
    assert_eq!(ids(&second), [potions[0].clone()]);
    let ranged = browse(&economy, &bob, "category=potions&minPrice=15&maxPrice=25").await;
    assert_eq!(ids(&ranged), [potions[2].clone()]);
    let epics = browse(&economy, &bob, "properties=rarity%3Depic").await;
    assert_eq!(ids(&epics), vec![epic_listing.clone()]);
    let sellers = browse(&economy, &bob, &format!("seller={ann}&sort=newest")).await;
    assert_eq!(ids(&sellers).len(), 4);
    assert_eq!(ids(&sellers)[0], epic_listing);

    // Sold out: no longer found.
    economy.grant(&bob, json!({"currencies": {"gold": 100}})).await;
    assert_eq!(buy(&economy, &bob, &potions[1], "all", 2).await.0, StatusCode::OK);
    let open = browse(&economy, &bob, "item=potion&sort=priceAsc").await;
    assert_eq!(ids(&open), [potions[2].clone(), potions[0].clone()]);

    let (status, rebuilt) = economy
        .send(
            reqwest::Method::POST,
            "/v1/admin/market/reindex",
            As::Admin,
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rebuilt}");
    assert_eq!(rebuilt["indexed"], 4);
    let after = browse(&economy, &bob, "item=potion&sort=priceAsc").await;
    assert_eq!(
        ids(&after),
        ids(&open),
        "the index rebuilt from the store says the same"
    );

    for query in [
        "limit=0",
        "sort=cheapest",
        "cursor=abc",
        "properties=nonsense",
        "minPrice=-1",
        "seller=a%20b",
    ] {
        let (status, answer) = economy
            .get(&format!("/v1/market/listings?{query}"), As::Player(&bob))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {answer}");
    }
}

#[tokio::test]
async fn bad_listings_and_purchases_get_a_clear_4xx_and_change_nothing() {
    let economy = Deployment::new().replica().await;
    let (ann, bob) = (unique("ann"), unique("bob"));
    economy
        .grant(
            &ann,
            json!({"currencies": {"gold": 10}, "items": {"potion": 2, "sword": 1}}),
        )
        .await;
    let cases = [
        (
            json!({"item": "potion", "amount": 1, "currency": "gems", "unitPrice": 5}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"item": "potion", "amount": 1, "currency": "gold", "unitPrice": 0}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"item": "potion", "amount": -1, "currency": "gold", "unitPrice": 5}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"item": "potion", "amount": 1, "currency": "gold", "unitPrice": 1_000_000_000_000i64, "durationSeconds": 10}),
            StatusCode::OK,
        ),
        (
            json!({"item": "potion", "amount": 2, "currency": "gold", "unitPrice": 600_000_000_000i64}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"item": "sword", "amount": 1, "currency": "gold", "unitPrice": 5}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"item": "relic", "amount": 1, "currency": "gold", "unitPrice": 5}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"item": "ghost", "amount": 1, "currency": "gold", "unitPrice": 5}),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({"item": "potion", "amount": 1, "currency": "gold", "unitPrice": 5, "durationSeconds": 0}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"item": "potion", "amount": 1, "currency": "gold", "unitPrice": 5, "durationSeconds": 86_401}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"item": "potion", "amount": 1, "currency": "gold", "unitPrice": 5, "colour": "red"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"instance": "AAAAAAAAAAAAAAAAAAAAAA", "currency": "gold", "unitPrice": 5}),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({"item": "potion", "instance": "AAAAAAAAAAAAAAAAAAAAAA", "currency": "gold", "unitPrice": 5}),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (n, (body, expected)) in cases.into_iter().enumerate() {
        let (status, answer) = economy
            .post(
                "/v1/market/listings",
                As::Player(&ann),
                &format!("bad-{n}"),
                body.clone(),
            )
            .await;
        assert_eq!(status, expected, "{body}: {answer}");
    }
    // One listing of 1 potion went up (the valid case above); nothing else moved.
    assert_eq!(economy.holding(&ann, "potion").await, (1, 0));
    assert_eq!(economy.holding(&ann, "gold").await, (9, 0));
    // More than she holds: refused by the ledger, and the listing shows it.
    let (status, refused) = economy
        .post(
            "/v1/market/listings",
            As::Player(&ann),
            "too-many",
            json!({"item": "potion", "amount": 5, "currency": "gold", "unitPrice": 5}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(economy.holding(&ann, "potion").await, (1, 0));

    let id = list(
        &economy,
        &ann,
        json!({"item": "potion", "amount": 1, "currency": "gold", "unitPrice": 5}),
    )
    .await;
    let (status, _) = buy(&economy, &ann, &id, "own", 1).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "not from one's own listing");
    let (status, _) = buy(&economy, &bob, &id, "poor", 1).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "bob has no gold");
    for amount in [0, -3] {
        let (status, _) = buy(&economy, &bob, &id, "zero", amount).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
    let (status, _) = buy(&economy, &bob, "AAAAAAAAAAAAAAAAAAAAAA", "ghost", 1).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = buy(&economy, &bob, "..%2F..", "ghost", 1).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = economy
        .post(
            &format!("/v1/market/listings/{id}/purchases"),
            As::Nobody,
            "k",
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(listing(&economy, &id, &bob).await["remaining"], 1);
    assert_eq!(economy.audit().await["drift"], 0);
}

#[tokio::test]
async fn fifty_buyers_racing_for_one_listing_leave_one_buyer_and_nobody_else_charged() {
    let deployment = Deployment::new();
    let (one, two) = (deployment.replica().await, deployment.replica().await);
    let seller = unique("ann");
    one.grant(
        &seller,
        json!({"currencies": {"gold": 10}, "items": {"potion": 1}}),
    )
    .await;
    let id = list(
        &one,
        &seller,
        json!({"item": "potion", "amount": 1, "currency": "gold", "unitPrice": 7}),
    )
    .await;
    let buyers: Vec<String> = (0..50).map(|n| format!("{seller}b{n}")).collect();
    for buyer in &buyers {
        one.grant(buyer, json!({"currencies": {"gold": 10}})).await;
    }
    let answers = join_all(buyers.iter().enumerate().map(|(n, buyer)| {
        let replica = if n % 2 == 0 { &one } else { &two };
        let id = &id;
        async move { buy(replica, buyer, id, "race", 1).await }
    }))
    .await;
    let bought: Vec<usize> = (0..50).filter(|&n| answers[n].0 == StatusCode::OK).collect();
    assert_eq!(bought.len(), 1, "{answers:?}");
    for (n, buyer) in buyers.iter().enumerate() {
        let expected = if n == bought[0] { (3, 1) } else { (10, 0) };
        let held = (
            one.holding(buyer, "gold").await.0,
            one.holding(buyer, "potion").await.0,
        );
        assert_eq!(held, expected, "{buyer}");
    }
    assert_eq!(one.audit().await["drift"], 0);
}
