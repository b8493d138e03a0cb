//! The economy's HTTP API against the real FerretDB and Redis: what players, game servers and
//! admins see, and that bad input changes nothing.

mod support;

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::json;
use support::{As, Deployment, unique};

#[tokio::test]
async fn a_purchase_moves_its_cost_out_and_its_reward_in_and_history_shows_it() {
    let economy = Deployment::new().replica().await;
    let ann = unique("ann");
    economy.grant_gold(&ann, 25).await;

    let (status, answer) = economy
        .post(
            "/v1/purchases",
            As::Player(&ann),
            "buy-1",
            json!({"offer": "potion"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["state"], "committed");
    assert_eq!(economy.holding(&ann, "gold").await, (15, 0));
    assert_eq!(economy.holding(&ann, "potion").await, (1, 0));

    let (status, history) = economy.get("/v1/transactions", As::Player(&ann)).await;
    assert_eq!(status, StatusCode::OK, "{history}");
    let kinds: Vec<&str> = history["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|t| t["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(kinds, ["purchase", "grant"], "newest first");
    let (_, grants) = economy.get("/v1/transactions?kind=grant", As::Player(&ann)).await;
    assert_eq!(grants["items"].as_array().expect("items").len(), 1);
    let (_, page) = economy.get("/v1/transactions?limit=1", As::Player(&ann)).await;
    let cursor = page["nextCursor"].as_str().expect("a second page");
    let (_, rest) = economy
        .get(
            &format!("/v1/transactions?limit=1&cursor={cursor}"),
            As::Player(&ann),
        )
        .await;
    assert_eq!(rest["items"][0]["kind"], "grant");
    assert!(rest.get("nextCursor").is_none());
    assert!(economy.audit().await["drift"] == 0);
}

#[tokio::test]
async fn a_retried_request_answers_the_stored_result_and_another_body_under_its_key_is_409() {
    let economy = Deployment::new().replica().await;
    let (ann, bob) = (unique("ann"), unique("bob"));
    economy.grant_gold(&ann, 100).await;
    let gift = json!({"to": bob, "currency": "gold", "amount": 30});
    let (status, first) = economy
        .post("/v1/gifts", As::Player(&ann), "gift-1", gift.clone())
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let (status, again) = economy.post("/v1/gifts", As::Player(&ann), "gift-1", gift).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first, again, "the identical stored answer");
    assert_eq!(economy.holding(&ann, "gold").await, (70, 0));
    assert_eq!(economy.holding(&bob, "gold").await, (30, 0));

    let other = json!({"to": bob, "currency": "gold", "amount": 31});
    let (status, answer) = economy.post("/v1/gifts", As::Player(&ann), "gift-1", other).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["error"]["code"], "idempotency_key_reused");
    // Keys are the caller's own: another player may use the same one.
    economy.grant_gold(&bob, 1).await;
    let (status, _) = economy
        .post(
            "/v1/gifts",
            As::Player(&bob),
            "gift-1",
            json!({"to": ann, "currency": "gold", "amount": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(economy.holding(&ann, "gold").await, (71, 0));
}

#[tokio::test]
async fn thirty_two_identical_requests_at_once_have_exactly_one_effect() {
    let deployment = Deployment::new();
    let (one, two) = (deployment.replica().await, deployment.replica().await);
    let (ann, bob) = (unique("ann"), unique("bob"));
    one.grant_gold(&ann, 1000).await;
    let gift = json!({"to": bob, "currency": "gold", "amount": 7});
    let requests = (0..32).map(|i| {
        let replica = if i % 2 == 0 { &one } else { &two };
        replica.post("/v1/gifts", As::Player(&ann), "the-one-gift", gift.clone())
    });
    let answers = join_all(requests).await;
    let ids: Vec<_> = answers
        .iter()
        .map(|(status, answer)| (*status, answer["id"].clone()))
        .collect();
    assert!(
        ids.iter()
            .all(|(status, id)| *status == StatusCode::OK && *id == ids[0].1),
        "{ids:?}"
    );
    assert_eq!(one.holding(&ann, "gold").await, (993, 0));
    assert_eq!(two.holding(&bob, "gold").await, (7, 0));
    assert_eq!(one.audit().await["drift"], 0);
}

#[tokio::test]
async fn a_refused_transaction_changes_nothing_and_answers_the_same_every_time() {
    let economy = Deployment::new().replica().await;
    let ann = unique("ann");
    economy.grant_gold(&ann, 5).await;
    for _ in 0..2 {
        let (status, answer) = economy
            .post(
                "/v1/purchases",
                As::Player(&ann),
                "too-dear",
                json!({"offer": "potion"}),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        assert_eq!(answer["error"]["code"], "refused");
        assert_eq!(
            answer["error"]["message"],
            "not enough c:gold: 5 available, 10 needed"
        );
    }
    assert_eq!(economy.holding(&ann, "gold").await, (5, 0));
    assert_eq!(economy.holding(&ann, "potion").await, (0, 0));
    let (_, history) = economy
        .get("/v1/transactions?kind=purchase", As::Player(&ann))
        .await;
    assert_eq!(history["items"][0]["state"], "voided");
}

#[tokio::test]
async fn limits_hold_under_concurrent_purchases() {
    let deployment = Deployment::new();
    let (one, two) = (deployment.replica().await, deployment.replica().await);
    let ann = unique("ann");
    one.grant_gold(&ann, 10_000).await;
    // `starter` may be bought 3 times; `potion` stops at the item's maximum count of 10.
    let keys: Vec<String> = (0..24).map(|i| format!("buy-{i}")).collect();
    let purchases = keys.iter().enumerate().map(|(i, key)| {
        let replica = if i % 2 == 0 { &one } else { &two };
        let offer = if i % 3 == 0 { "starter" } else { "potion" };
        replica.post("/v1/purchases", As::Player(&ann), key, json!({"offer": offer}))
    });
    let answers = join_all(purchases).await;
    let bought = |offer_every_third: bool| {
        answers
            .iter()
            .enumerate()
            .filter(|(i, (status, _))| (i % 3 == 0) == offer_every_third && *status == StatusCode::OK)
            .count()
    };
    assert_eq!(bought(true), 3, "starter bought exactly its limit: {answers:?}");
    assert_eq!(one.holding(&ann, "gems").await, (15, 0));
    let (potions, _) = one.holding(&ann, "potion").await;
    assert_eq!(potions as usize, bought(false).min(10));
    assert_eq!(potions, 10, "16 tries for 10 potions");
    assert_eq!(one.holding(&ann, "gold").await, (10_000 - 3 - 100, 0));
    assert_eq!(one.audit().await["drift"], 0);
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_changes_nothing() {
    let economy = Deployment::new().replica().await;
    let (ann, bob) = (unique("ann"), unique("bob"));
    economy.grant_gold(&ann, 50).await;
    let huge = "x".repeat(64 * 1024);
    let cases = [
        (
            "/v1/gifts",
            json!({"to": bob, "currency": "gold", "amount": 0}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/gifts",
            json!({"to": bob, "currency": "gold", "amount": -5}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/gifts",
            json!({"to": bob, "currency": "gold", "amount": i64::MAX}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/gifts",
            json!({"to": bob, "currency": "gold", "amount": 1e30}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/gifts",
            json!({"to": bob, "currency": "silver", "amount": 1}),
            StatusCode::NOT_FOUND,
        ),
        (
            "/v1/gifts",
            json!({"to": bob, "currency": "gems", "amount": 1}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/gifts",
            json!({"to": ann, "currency": "gold", "amount": 1}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/gifts",
            json!({"to": "../x", "currency": "gold", "amount": 1}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/gifts",
            json!({"to": bob, "currency": "gold", "item": "potion", "amount": 1}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/gifts",
            json!({"to": bob, "currency": "gold", "amount": 1, "extra": true}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/gifts",
            json!({"to": bob, "currency": huge, "amount": 1}),
            StatusCode::BAD_REQUEST,
        ),
        ("/v1/purchases", json!({"offer": "nope"}), StatusCode::NOT_FOUND),
        (
            "/v1/consumptions",
            json!({"item": "sword", "amount": 1}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/consumptions",
            json!({"item": "potion", "amount": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ];
    for (index, (path, body, expected)) in cases.into_iter().enumerate() {
        let (status, answer) = economy
            .post(path, As::Player(&ann), &format!("bad-{index}"), body.clone())
            .await;
        assert_eq!(status, expected, "{path} {body}: {answer}");
        assert!(answer["error"]["message"].is_string(), "{answer}");
    }
    let (status, _) = economy
        .send(
            reqwest::Method::POST,
            "/v1/gifts",
            As::Player(&ann),
            None,
            Some(&json!({"to": bob, "currency": "gold", "amount": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "no idempotency key");
    let (status, _) = economy
        .post(
            "/v1/gifts",
            As::Player(&ann),
            &"k".repeat(65),
            json!({"to": bob, "currency": "gold", "amount": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a key too long");

    // Credentials: forged, expired, none, a player where a service is needed.
    let expired = support::token_for(&ann, "s", -10);
    // Ann's claims under a signature made for Bob's.
    let (mine, theirs) = (
        support::token_for(&ann, "s", 900),
        support::token_for(&bob, "s", 900),
    );
    let forged = format!(
        "{}.{}",
        mine.rsplit_once('.').expect("jwt").0,
        theirs.rsplit_once('.').expect("jwt").1
    );
    for who in [
        As::Token(&expired),
        As::Token(&forged),
        As::Token("not-a-token"),
        As::Nobody,
        As::Service,
    ] {
        let (status, answer) = economy
            .post(
                "/v1/gifts",
                who,
                "creds",
                json!({"to": bob, "currency": "gold", "amount": 1}),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    }
    for (path, who) in [
        (format!("/v1/players/{ann}/wallet"), As::Player(&bob)),
        (format!("/v1/players/{ann}/transactions"), As::Player(&ann)),
        ("/v1/grants".into(), As::Player(&ann)),
    ] {
        let (status, _) = economy.send(reqwest::Method::GET, &path, who, None, None).await;
        assert!(
            status == StatusCode::UNAUTHORIZED || status == StatusCode::METHOD_NOT_ALLOWED,
            "{path}: {status}"
        );
    }
    let (status, _) = economy
        .post(
            "/v1/grants",
            As::Player(&ann),
            "self-grant",
            json!({"player": ann, "currencies": {"gold": 5}, "reason": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A revoked session (signed out, banned) is refused as the player service refuses it.
    let token = support::token_for(&ann, "revoked-session", 900);
    let mut redis = economy.state.redis.clone();
    let _: () = redis::AsyncCommands::set_ex(
        &mut redis,
        format!("{}:revoked:revoked-session", economy.state.namespace),
        1,
        60,
    )
    .await
    .expect("revoke");
    let (status, _) = economy.get("/v1/wallet", As::Token(&token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    assert_eq!(economy.holding(&ann, "gold").await, (50, 0));
    assert_eq!(economy.holding(&bob, "gold").await, (0, 0));
    let report = economy.audit().await;
    assert_eq!(report["drift"], 0, "{report}");
}

#[tokio::test]
async fn a_catalog_that_fails_validation_is_refused_and_the_running_one_stays() {
    let deployment = Deployment::new();
    let economy = deployment.replica().await;
    std::fs::write(
        &deployment.catalog,
        support::CATALOG.replace("{gold: 10}", "{silver: 10}"),
    )
    .expect("write");
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    let (_, catalog) = economy.get("/v1/catalog", As::Nobody).await;
    assert_eq!(catalog["version"], 1);
    assert_eq!(catalog["offers"][0]["cost"]["currencies"]["gold"], 10);
    std::fs::write(
        &deployment.catalog,
        support::CATALOG.replace("version: 1", "version: 2"),
    )
    .expect("write");
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    let (_, catalog) = economy.get("/v1/catalog", As::Nobody).await;
    assert_eq!(catalog["version"], 2);
}

#[tokio::test]
async fn a_reversal_undoes_a_transaction_once_and_cannot_itself_be_reversed() {
    let economy = Deployment::new().replica().await;
    let ann = unique("ann");
    economy.grant_gold(&ann, 25).await;
    let (_, bought) = economy
        .post(
            "/v1/purchases",
            As::Player(&ann),
            "buy",
            json!({"offer": "potion"}),
        )
        .await;
    let reversal = json!({"transaction": bought["id"], "reason": "refund", "by": "support-7"});
    let (status, reversed) = economy
        .send(
            reqwest::Method::POST,
            "/v1/admin/reversals",
            As::Admin,
            None,
            Some(&reversal),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reversed}");
    assert_eq!(reversed["kind"], "reversal");
    assert!(
        reversed["memo"]
            .as_str()
            .is_some_and(|m| m.contains("by support-7: refund")),
        "{reversed}"
    );
    assert_eq!(economy.holding(&ann, "gold").await, (25, 0));
    assert_eq!(economy.holding(&ann, "potion").await, (0, 0));

    let (status, again) = economy
        .send(
            reqwest::Method::POST,
            "/v1/admin/reversals",
            As::Admin,
            None,
            Some(&reversal),
        )
        .await;
    assert_eq!(
        (status, &again["id"]),
        (StatusCode::OK, &reversed["id"]),
        "reversing is idempotent"
    );
    assert_eq!(economy.holding(&ann, "gold").await, (25, 0));
    let twice = json!({"transaction": reversed["id"], "reason": "undo", "by": "support-7"});
    let (status, _) = economy
        .send(
            reqwest::Method::POST,
            "/v1/admin/reversals",
            As::Admin,
            None,
            Some(&twice),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = economy
        .send(
            reqwest::Method::POST,
            "/v1/admin/reversals",
            As::Service,
            None,
            Some(&reversal),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "admins only");
    assert_eq!(economy.audit().await["drift"], 0);
}

#[tokio::test]
async fn reversing_spent_proceeds_fails_claws_back_or_leaves_a_debt_as_the_policy_says() {
    let economy = Deployment::new().replica().await;
    let (ann, bob) = (unique("ann"), unique("bob"));
    economy.grant_gold(&ann, 100).await;
    let gift = |key: &'static str| {
        economy.post(
            "/v1/gifts",
            As::Player(&ann),
            key,
            json!({"to": bob, "currency": "gold", "amount": 30}),
        )
    };
    let (_, first) = gift("gift-1").await;
    let (_, second) = gift("gift-2").await;
    // Bob spends 50 of the 60.
    for i in 0..5 {
        let (status, _) = economy
            .post(
                "/v1/purchases",
                As::Player(&bob),
                &format!("spend-{i}"),
                json!({"offer": "potion"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(economy.holding(&bob, "gold").await, (10, 0));
    let reverse = |tx: &serde_json::Value, policy: &str| json!({"transaction": tx["id"], "reason": "chargeback", "by": "ops", "policy": policy});

    let (status, answer) = economy
        .send(
            reqwest::Method::POST,
            "/v1/admin/reversals",
            As::Admin,
            None,
            Some(&reverse(&first, "fail")),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(economy.holding(&bob, "gold").await, (10, 0));

    let (status, clawed) = economy
        .send(
            reqwest::Method::POST,
            "/v1/admin/reversals",
            As::Admin,
            None,
            Some(&reverse(&first, "clawback")),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{clawed}");
    assert_eq!(clawed["legs"][0]["amount"], 10);
    assert!(
        clawed["memo"]
            .as_str()
            .is_some_and(|m| m.contains("shortfall: 20 c:gold")),
        "{clawed}"
    );
    assert_eq!(economy.holding(&bob, "gold").await, (0, 0));
    assert_eq!(economy.holding(&ann, "gold").await, (50, 0));

    let (status, debt) = economy
        .send(
            reqwest::Method::POST,
            "/v1/admin/reversals",
            As::Admin,
            None,
            Some(&reverse(&second, "debt")),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{debt}");
    assert_eq!(economy.holding(&bob, "gold").await, (-30, 0));
    let (_, wallet) = economy.get("/v1/wallet", As::Player(&bob)).await;
    assert_eq!(wallet["currencies"][0]["debt"], 30);
    // A debtor cannot spend, and income repays the debt first.
    let (status, _) = economy
        .post(
            "/v1/gifts",
            As::Player(&bob),
            "from-debt",
            json!({"to": ann, "currency": "gold", "amount": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    economy.grant_gold(&bob, 50).await;
    assert_eq!(economy.holding(&bob, "gold").await, (20, 0));
    let report = economy.audit().await;
    assert_eq!(report["drift"], 0, "{report}");
}
