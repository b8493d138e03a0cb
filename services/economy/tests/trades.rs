//! Player-to-player trading against the real FerretDB, Redis and player service: goods wait in
//! escrow, a change withdraws both acceptances, both sides move at once, cancel and expiry give
//! everything back, blocks stop trades and gifts, and parties acting at once lose nothing.

mod support;

use std::time::Duration;

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{As, Deployment, Replica, sign_up, unique};

/// A username the player service accepts (3-24 characters).
fn username(prefix: &str) -> String {
    let id = unique("");
    format!("{prefix}{}", &id[id.len().saturating_sub(12)..])
}

struct Setup {
    players: String,
    economy: Replica,
    second: Replica,
    /// Keeps the catalog file for the replicas.
    _deployment: Deployment,
}

async fn setup() -> Setup {
    let deployment = Deployment::new();
    let players = deployment.player_service().await;
    let economy = deployment.replica_with_players(&players).await;
    let second = deployment.replica_with_players(&players).await;
    Setup {
        players,
        economy,
        second,
        _deployment: deployment,
    }
}

async fn open(economy: &Replica, token: &str, with: &str, extra: Value) -> Value {
    let mut body = extra;
    body["with"] = json!(with);
    let (status, trade) = economy
        .post("/v1/trades", As::Token(token), &unique("open-"), body)
        .await;
    assert_eq!(status, StatusCode::OK, "{trade}");
    assert_eq!(trade["state"], "open");
    trade
}

async fn act(
    economy: &Replica,
    token: &str,
    trade: &Value,
    action: &str,
    body: Value,
) -> (StatusCode, Value) {
    let id = trade["id"].as_str().expect("id");
    let method = match action {
        "offer" => reqwest::Method::PUT,
        _ => reqwest::Method::POST,
    };
    economy
        .send(
            method,
            &format!("/v1/trades/{id}/{action}"),
            As::Token(token),
            None,
            Some(&body),
        )
        .await
}

async fn gold(economy: &Replica, player: &str) -> i64 {
    economy.holding(player, "gold").await.0
}

#[tokio::test]
async fn both_sides_move_at_once_when_both_accept_the_same_version() {
    let Setup {
        economy,
        players,
        _deployment: _keep,
        ..
    } = setup().await;
    let (ann, ann_token) = sign_up(&players, &username("ann")).await;
    let (bob, bob_token) = sign_up(&players, &username("bob")).await;
    economy
        .grant(
            &ann,
            json!({"currencies": {"gold": 50}, "instances": [{"item": "relic", "properties": {"level": 5}}]}),
        )
        .await;
    economy.grant(&bob, json!({"items": {"potion": 3}})).await;
    let (_, wallet) = economy.get("/v1/wallet", As::Token(&ann_token)).await;
    let relic = wallet["items"][0]["instances"][0]["id"]
        .as_str()
        .expect("relic")
        .to_owned();

    let trade = open(&economy, &ann_token, &bob, json!({})).await;
    let (status, offered) = act(
        &economy,
        &ann_token,
        &trade,
        "offer",
        json!({"currencies": {"gold": 20}, "instances": [relic]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{offered}");
    assert_eq!(gold(&economy, &ann).await, 30, "the 20 wait in escrow");
    assert_eq!(economy.holding(&ann, "relic").await, (0, 0));
    let (status, offered) = act(
        &economy,
        &bob_token,
        &trade,
        "offer",
        json!({"items": {"potion": 2}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{offered}");
    let version = offered["version"].clone();
    let (_, accepted) = act(
        &economy,
        &ann_token,
        &trade,
        "accept",
        json!({"version": version}),
    )
    .await;
    assert_eq!(accepted["sides"][0]["accepted"], true);

    // Bob changes his side: Ann's acceptance is withdrawn, and her old version no longer counts.
    let (_, changed) = act(
        &economy,
        &bob_token,
        &trade,
        "offer",
        json!({"items": {"potion": 3}}),
    )
    .await;
    assert_eq!(changed["sides"][0]["accepted"], false, "{changed}");
    assert_ne!(changed["version"], version);
    assert_eq!(
        economy.holding(&bob, "potion").await,
        (0, 0),
        "all three in escrow"
    );
    let (status, _) = act(
        &economy,
        &bob_token,
        &trade,
        "accept",
        json!({"version": version}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "an old version");
    let current = changed["version"].clone();
    let (_, first) = act(
        &economy,
        &ann_token,
        &trade,
        "accept",
        json!({"version": current}),
    )
    .await;
    assert_eq!(first["state"], "open");
    let (status, done) = act(
        &economy,
        &bob_token,
        &trade,
        "accept",
        json!({"version": current}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["state"], "completed");

    assert_eq!(economy.holding(&ann, "potion").await, (3, 0));
    assert_eq!((gold(&economy, &ann).await, gold(&economy, &bob).await), (30, 20));
    let (_, wallet) = economy.get("/v1/wallet", As::Token(&bob_token)).await;
    let relics: Vec<&Value> = wallet["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|i| i["id"] == "relic")
        .collect();
    assert_eq!(relics[0]["instances"][0]["id"], relic.as_str());
    assert_eq!(relics[0]["instances"][0]["properties"]["level"], 5);
    let (status, _) = act(
        &economy,
        &ann_token,
        &trade,
        "offer",
        json!({"currencies": {"gold": 1}}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "closed");
    let (_, mine) = economy.get("/v1/trades", As::Token(&bob_token)).await;
    assert_eq!(mine["items"][0]["state"], "completed");
    let (_, history) = economy
        .get("/v1/transactions?kind=trade", As::Token(&ann_token))
        .await;
    assert_eq!(history["items"].as_array().expect("items").len(), 1);
    assert_eq!(economy.audit().await["drift"], 0);
}

#[tokio::test]
async fn cancel_and_expiry_give_everything_back() {
    let Setup {
        economy,
        players,
        _deployment: _keep,
        ..
    } = setup().await;
    let (ann, ann_token) = sign_up(&players, &username("ann")).await;
    let (bob, bob_token) = sign_up(&players, &username("bob")).await;
    economy.grant(&ann, json!({"currencies": {"gold": 50}})).await;
    economy.grant(&bob, json!({"items": {"potion": 3}})).await;

    let trade = open(&economy, &ann_token, &bob, json!({})).await;
    act(
        &economy,
        &ann_token,
        &trade,
        "offer",
        json!({"currencies": {"gold": 40}}),
    )
    .await;
    act(
        &economy,
        &bob_token,
        &trade,
        "offer",
        json!({"items": {"potion": 3}}),
    )
    .await;
    let (status, cancelled) = act(&economy, &bob_token, &trade, "cancel", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(
        (cancelled["state"].as_str(), cancelled["cancelledBy"].as_str()),
        (Some("cancelled"), Some(bob.as_str()))
    );
    assert_eq!(gold(&economy, &ann).await, 50);
    assert_eq!(economy.holding(&bob, "potion").await, (3, 0));
    let (status, again) = act(&economy, &ann_token, &trade, "cancel", json!({})).await;
    assert_eq!(
        (status, &again["state"]),
        (StatusCode::OK, &json!("cancelled")),
        "cancelling twice is once"
    );

    let short = open(&economy, &ann_token, &bob, json!({"durationSeconds": 1})).await;
    act(
        &economy,
        &ann_token,
        &short,
        "offer",
        json!({"currencies": {"gold": 10}}),
    )
    .await;
    assert_eq!(gold(&economy, &ann).await, 40);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let id = short["id"].as_str().expect("id");
        let (_, view) = economy
            .get(&format!("/v1/trades/{id}"), As::Token(&ann_token))
            .await;
        if view["state"] == "expired" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not expired: {view}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(gold(&economy, &ann).await, 50);
    assert_eq!(economy.audit().await["drift"], 0);
}

#[tokio::test]
async fn goods_not_held_are_refused_and_strangers_see_nothing() {
    let Setup {
        economy,
        players,
        _deployment: _keep,
        ..
    } = setup().await;
    let (ann, ann_token) = sign_up(&players, &username("ann")).await;
    let (bob, _) = sign_up(&players, &username("bob")).await;
    let (_, eve_token) = sign_up(&players, &username("eve")).await;
    economy
        .grant(
            &ann,
            json!({"currencies": {"gold": 50, "gems": 5}, "items": {"sword": 1}}),
        )
        .await;
    let trade = open(&economy, &ann_token, &bob, json!({})).await;

    let (status, refused) = act(
        &economy,
        &ann_token,
        &trade,
        "offer",
        json!({"currencies": {"gold": 1000}}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    let id = trade["id"].as_str().expect("id");
    let (_, view) = economy
        .get(&format!("/v1/trades/{id}"), As::Token(&ann_token))
        .await;
    assert_eq!(
        view["sides"][0]["goods"]["currencies"],
        json!({}),
        "the table is unchanged"
    );
    assert_eq!(gold(&economy, &ann).await, 50);

    let bad = [
        (json!({"currencies": {"silver": 1}}), StatusCode::NOT_FOUND),
        (json!({"currencies": {"gems": 1}}), StatusCode::BAD_REQUEST),
        (json!({"currencies": {"gold": 0}}), StatusCode::BAD_REQUEST),
        (json!({"currencies": {"gold": -5}}), StatusCode::BAD_REQUEST),
        (json!({"items": {"sword": 1}}), StatusCode::BAD_REQUEST),
        (json!({"items": {"relic": 1}}), StatusCode::BAD_REQUEST),
        (
            json!({"instances": ["AAAAAAAAAAAAAAAAAAAAAA"]}),
            StatusCode::NOT_FOUND,
        ),
        (json!({"instances": ["../x"]}), StatusCode::BAD_REQUEST),
        (json!({"gold": 5}), StatusCode::BAD_REQUEST),
    ];
    for (body, expected) in bad {
        let (status, answer) = act(&economy, &ann_token, &trade, "offer", body.clone()).await;
        assert_eq!(status, expected, "{body}: {answer}");
    }
    for (action, body) in [
        ("offer", json!({"currencies": {"gold": 1}})),
        ("accept", json!({"version": 1})),
        ("cancel", json!({})),
    ] {
        let (status, _) = act(&economy, &eve_token, &trade, action, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "a stranger's {action}");
    }
    let (status, _) = economy
        .get(&format!("/v1/trades/{id}"), As::Token(&eve_token))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for body in [
        json!({"with": ann}),
        json!({"with": "nobody-here"}),
        json!({"with": bob, "durationSeconds": 0}),
    ] {
        let (status, answer) = economy
            .post("/v1/trades", As::Token(&ann_token), &unique("k"), body.clone())
            .await;
        assert!(
            [StatusCode::BAD_REQUEST, StatusCode::NOT_FOUND].contains(&status),
            "{body}: {status} {answer}"
        );
    }
    let (status, _) = act(&economy, &ann_token, &trade, "accept", json!({"version": 99})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(economy.audit().await["drift"], 0);
}

#[tokio::test]
async fn a_block_stops_trades_and_gifts() {
    let Setup {
        economy,
        players,
        _deployment: _keep,
        ..
    } = setup().await;
    let (ann, ann_token) = sign_up(&players, &username("ann")).await;
    let (bob, bob_token) = sign_up(&players, &username("bob")).await;
    economy.grant(&ann, json!({"currencies": {"gold": 50}})).await;
    let trade = open(&economy, &ann_token, &bob, json!({})).await;
    act(
        &economy,
        &ann_token,
        &trade,
        "offer",
        json!({"currencies": {"gold": 10}}),
    )
    .await;

    let status = reqwest::Client::new()
        .post(format!("{players}/v1/friends/{ann}/block"))
        .bearer_auth(&bob_token)
        .json(&json!({}))
        .send()
        .await
        .expect("block")
        .status();
    assert_eq!(status, StatusCode::NO_CONTENT);

    let (status, _) = economy
        .post(
            "/v1/trades",
            As::Token(&ann_token),
            "blocked",
            json!({"with": bob}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no new trade");
    let (status, _) = act(
        &economy,
        &ann_token,
        &trade,
        "offer",
        json!({"currencies": {"gold": 20}}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no offer");
    let (status, _) = act(
        &economy,
        &bob_token,
        &trade,
        "accept",
        json!({"version": trade["version"]}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no acceptance");
    let (status, _) = act(&economy, &ann_token, &trade, "cancel", json!({})).await;
    assert_eq!(status, StatusCode::OK, "but a cancel gives everything back");
    assert_eq!(gold(&economy, &ann).await, 50);

    let gift = |to: &str| json!({"to": to, "currency": "gold", "amount": 1});
    let (status, _) = economy
        .post("/v1/gifts", As::Token(&ann_token), "g1", gift(&bob))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = economy
        .post("/v1/gifts", As::Token(&ann_token), "g2", gift("nobody-at-all"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no gifts into the void");
    assert_eq!(gold(&economy, &ann).await, 50);
}

#[tokio::test]
async fn a_replica_that_missed_the_latest_offer_still_accepts_it() {
    let Setup {
        economy,
        second,
        players,
        _deployment: _keep,
    } = setup().await;
    let (ann, ann_token) = sign_up(&players, &username("ann")).await;
    let (bob, bob_token) = sign_up(&players, &username("bob")).await;
    economy.grant(&ann, json!({"currencies": {"gold": 100}})).await;
    economy.grant(&bob, json!({"items": {"potion": 10}})).await;
    let trade = open(&economy, &ann_token, &bob, json!({})).await;
    // The second replica sees the trade at this offer, then the first changes it.
    let (status, _) = act(
        &second,
        &bob_token,
        &trade,
        "offer",
        json!({"items": {"potion": 2}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, view) = act(
        &economy,
        &ann_token,
        &trade,
        "offer",
        json!({"currencies": {"gold": 30}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let version = view["version"].clone();
    let (status, _) = act(
        &economy,
        &ann_token,
        &trade,
        "accept",
        json!({"version": version}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // What the second replica remembers is stale; the acceptance names the stored version.
    let (status, done) = act(&second, &bob_token, &trade, "accept", json!({"version": version})).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["state"], "completed", "{done}");
    assert_eq!(gold(&economy, &bob).await, 30);
    assert_eq!(economy.holding(&ann, "potion").await.0, 2);
}

#[tokio::test]
async fn parties_acting_at_once_on_two_replicas_lose_and_double_nothing() {
    let Setup {
        economy,
        second,
        players,
        _deployment: _keep,
    } = setup().await;
    let (ann, ann_token) = sign_up(&players, &username("ann")).await;
    let (bob, bob_token) = sign_up(&players, &username("bob")).await;
    economy.grant(&ann, json!({"currencies": {"gold": 100}})).await;
    economy.grant(&bob, json!({"items": {"potion": 10}})).await;
    let trade = open(&economy, &ann_token, &bob, json!({})).await;
    let id = trade["id"].as_str().expect("id").to_owned();

    for round in 0..8i64 {
        let (_, view) = economy
            .get(&format!("/v1/trades/{id}"), As::Token(&ann_token))
            .await;
        let version = view["version"].clone();
        let calls = vec![
            act(
                &economy,
                &ann_token,
                &trade,
                "offer",
                json!({"currencies": {"gold": 10 + round}}),
            ),
            act(
                &second,
                &bob_token,
                &trade,
                "offer",
                json!({"items": {"potion": 1 + round % 4}}),
            ),
            act(&second, &ann_token, &trade, "accept", json!({"version": version})),
            act(
                &economy,
                &bob_token,
                &trade,
                "accept",
                json!({"version": version}),
            ),
        ];
        for (status, answer) in join_all(calls).await {
            assert!(
                [StatusCode::OK, StatusCode::CONFLICT].contains(&status),
                "{status} {answer}"
            );
        }
    }
    // Settle it: accept whatever is on the table now, on both sides.
    let (_, view) = economy
        .get(&format!("/v1/trades/{id}"), As::Token(&ann_token))
        .await;
    if view["state"] == "open" {
        let version = view["version"].clone();
        act(
            &economy,
            &ann_token,
            &trade,
            "accept",
            json!({"version": version}),
        )
        .await;
        let (_, done) = act(&second, &bob_token, &trade, "accept", json!({"version": version})).await;
        assert_eq!(done["state"], "completed", "{done}");
    }
    let (_, view) = economy
        .get(&format!("/v1/trades/{id}"), As::Token(&ann_token))
        .await;
    let paid = view["sides"][0]["goods"]["currencies"]["gold"]
        .as_i64()
        .unwrap_or(0);
    let given = view["sides"][1]["goods"]["items"]["potion"].as_i64().unwrap_or(0);
    assert_eq!(gold(&economy, &ann).await, 100 - paid);
    assert_eq!(gold(&economy, &bob).await, paid);
    assert_eq!(economy.holding(&ann, "potion").await.0, given);
    assert_eq!(economy.holding(&bob, "potion").await.0, 10 - given);
    let report = economy.audit().await;
    assert_eq!(report["drift"], 0, "{report}");
}

/// The `content.event`s of a player's notifications, once at least `count` have arrived.
async fn events(players: &str, token: &str, count: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let page: Value = reqwest::Client::new()
            .get(format!("{players}/v1/notifications?limit=50"))
            .bearer_auth(token)
            .send()
            .await
            .expect("notifications")
            .json()
            .await
            .expect("page");
        let events: Vec<String> = page["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter(|n| n["kind"] == "economy")
            .map(|n| {
                let content: Value = match &n["content"] {
                    Value::String(text) => serde_json::from_str(text).expect("json"),
                    other => other.clone(),
                };
                content["event"].as_str().expect("event").to_owned()
            })
            .collect();
        if events.len() >= count || std::time::Instant::now() > deadline {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn players_hear_of_sales_outbids_and_trades_through_the_player_service() {
    let Setup {
        economy,
        players,
        _deployment: _keep,
        ..
    } = setup().await;
    let (ann, ann_token) = sign_up(&players, &username("ann")).await;
    let (bob, bob_token) = sign_up(&players, &username("bob")).await;
    let (cat, _) = sign_up(&players, &username("cat")).await;
    economy
        .grant(&ann, json!({"currencies": {"gold": 20}, "items": {"potion": 4}}))
        .await;
    economy.grant(&bob, json!({"currencies": {"gold": 100}})).await;
    economy.grant(&cat, json!({"currencies": {"gold": 100}})).await;

    // The market: Ann's potion sells.
    let (_, listed) = economy
        .post(
            "/v1/market/listings",
            As::Token(&ann_token),
            "list",
            json!({"item": "potion", "amount": 1, "currency": "gold", "unitPrice": 5}),
        )
        .await;
    let listing = listed["listing"]["id"].as_str().expect("listing");
    let (status, _) = economy
        .post(
            &format!("/v1/market/listings/{listing}/purchases"),
            As::Token(&bob_token),
            "buy",
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(events(&players, &ann_token, 1).await, ["sold"]);

    // The auction house: Bob is outbid by Cat.
    let (_, auction) = economy
        .post("/v1/auctions", As::Token(&ann_token), "auction", json!({"item": "potion", "amount": 1, "currency": "gold", "startPrice": 10, "durationSeconds": 60}))
        .await;
    let id = auction["id"].as_str().expect("auction");
    let bid = |amount: i64, version: &Value| json!({"amount": amount, "version": version});
    let (_, first) = economy
        .send(
            reqwest::Method::POST,
            &format!("/v1/auctions/{id}/bids"),
            As::Token(&bob_token),
            None,
            Some(&bid(10, &auction["version"])),
        )
        .await;
    let cat_token = support::token_for(&cat, "s", 900);
    let (status, _) = economy
        .send(
            reqwest::Method::POST,
            &format!("/v1/auctions/{id}/bids"),
            As::Token(&cat_token),
            None,
            Some(&bid(20, &first["version"])),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(events(&players, &bob_token, 1).await, ["outbid"]);

    // A trade: Bob hears it offered, changed and accepted; both hear it completed.
    let trade = open(&economy, &ann_token, &bob, json!({})).await;
    let (_, offered) = act(
        &economy,
        &ann_token,
        &trade,
        "offer",
        json!({"items": {"potion": 1}}),
    )
    .await;
    act(
        &economy,
        &ann_token,
        &trade,
        "accept",
        json!({"version": offered["version"]}),
    )
    .await;
    let (_, done) = act(
        &economy,
        &bob_token,
        &trade,
        "accept",
        json!({"version": offered["version"]}),
    )
    .await;
    assert_eq!(done["state"], "completed");
    let heard = events(&players, &bob_token, 5).await;
    for event in [
        "trade-offered",
        "trade-changed",
        "trade-accepted",
        "trade-completed",
    ] {
        assert!(heard.iter().any(|e| e == event), "bob heard {heard:?}");
    }
    let heard = events(&players, &ann_token, 2).await;
    assert!(
        heard.iter().any(|e| e == "trade-completed"),
        "ann heard {heard:?}"
    );
    assert!(
        !heard.iter().any(|e| e == "trade-changed"),
        "not of her own change: {heard:?}"
    );
}
