//! Fraud rules on FerretDB: a velocity rule holds the transfer past its count for review, a
//! threshold rule denies (rules are checked in order; the first that fires decides), and
//! approving or rejecting a held transfer keeps the books balanced.

mod support;

use reqwest::StatusCode;
use serde_json::json;
use support::{As, Deployment, unique};

const RULES: &str = r#"
fraud:
  rules:
    - {name: big-gift, kind: gift, threshold: {asset: "c:gold", amount: 500}, action: deny}
    - {name: gift-velocity, kind: gift, velocity: {count: 3, windowSeconds: 60}, action: hold}
"#;

#[tokio::test]
async fn a_velocity_rule_holds_the_transfer_past_its_count_and_review_keeps_the_books_balanced() {
    let deployment = Deployment::with_catalog(&format!("{}{RULES}", support::CATALOG));
    let economy = deployment.replica().await;
    let (ann, bob) = (unique("ann"), unique("bob"));
    economy.grant_gold(&ann, 1000).await;
    let gift = |amount: i64| json!({"to": bob, "currency": "gold", "amount": amount});
    for i in 0..3 {
        let (status, answer) = economy
            .post("/v1/gifts", As::Player(&ann), &format!("g{i}"), gift(10))
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    let (status, held) = economy.post("/v1/gifts", As::Player(&ann), "g3", gift(100)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{held}");
    assert_eq!(held["state"], "held");
    assert_eq!(held["reason"], "held by fraud rule gift-velocity");
    assert_eq!(
        economy.holding(&ann, "gold").await,
        (870, 100),
        "the held value is reserved"
    );
    let (status, again) = economy.post("/v1/gifts", As::Player(&ann), "g3", gift(100)).await;
    assert_eq!(
        (status, &again["id"]),
        (StatusCode::ACCEPTED, &held["id"]),
        "a retry is not counted again"
    );

    let (status, queue) = economy.get("/v1/admin/reviews", As::Admin).await;
    assert_eq!(status, StatusCode::OK, "{queue}");
    assert_eq!(queue["items"].as_array().map(Vec::len), Some(1), "{queue}");
    assert_eq!(queue["items"][0]["id"], held["id"]);
    let review = |approve: bool| json!({"approve": approve, "by": "ops", "reason": "checked"});
    let path = format!("/v1/admin/reviews/{}", held["id"].as_str().expect("id"));
    let (status, approved) = economy
        .send(reqwest::Method::POST, &path, As::Admin, None, Some(&review(true)))
        .await;
    assert_eq!(status, StatusCode::OK, "{approved}");
    assert_eq!(approved["state"], "committed");
    assert_eq!(economy.holding(&bob, "gold").await, (130, 0));
    let (status, _) = economy
        .send(
            reqwest::Method::POST,
            &path,
            As::Admin,
            None,
            Some(&review(false)),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "the first review stands");
    let (_, answer) = economy.post("/v1/gifts", As::Player(&ann), "g3", gift(100)).await;
    assert_eq!(answer["state"], "committed", "the key now answers the outcome");

    let (status, held) = economy.post("/v1/gifts", As::Player(&ann), "g4", gift(50)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let path = format!("/v1/admin/reviews/{}", held["id"].as_str().expect("id"));
    let (status, rejected) = economy
        .send(
            reqwest::Method::POST,
            &path,
            As::Admin,
            None,
            Some(&review(false)),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rejected}");
    assert_eq!(rejected["state"], "voided");
    assert_eq!(
        economy.holding(&ann, "gold").await,
        (870, 0),
        "the rejected gift's value came back"
    );
    let (_, queue) = economy.get("/v1/admin/reviews", As::Admin).await;
    assert_eq!(queue["items"].as_array().map(Vec::len), Some(0), "{queue}");

    let (status, denied) = economy.post("/v1/gifts", As::Player(&ann), "g5", gift(600)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{denied}");
    assert_eq!(denied["error"]["message"], "denied by fraud rule big-gift");
    assert_eq!(economy.holding(&ann, "gold").await, (870, 0));
    let report = economy.audit().await;
    assert_eq!(report["drift"], 0, "{report}");
    assert_eq!(report["unfinished"], 0, "{report}");
}

#[test]
fn a_fraud_rule_that_fails_validation_names_its_field() {
    let bad = RULES.replace("count: 3", "count: 0");
    let error = flotilla_economy::catalog::Catalog::parse(&format!("{}{bad}", support::CATALOG))
        .expect_err("refused");
    assert_eq!(
        error.to_string(),
        "catalog: fraud.rules[1].velocity: count must be at least 1 and windowSeconds 1-2592000"
    );
    let unknown = RULES.replace("c:gold", "c:silver");
    let error = flotilla_economy::catalog::Catalog::parse(&format!("{}{unknown}", support::CATALOG))
        .expect_err("refused");
    assert!(
        error.to_string().contains("fraud.rules[0].threshold.asset"),
        "{error}"
    );
}

#[tokio::test]
async fn a_young_account_is_held_by_the_account_age_rule_and_an_old_one_is_not() {
    let rules =
        "\nfraud:\n  rules:\n    - {name: new-account, kind: gift, accountAgeHours: 24, action: hold}\n";
    let economy = Deployment::with_catalog(&format!("{}{rules}", support::CATALOG))
        .replica()
        .await;
    let (young, old, bob) = (unique("young"), unique("old"), unique("bob"));
    economy.grant_gold(&young, 100).await;
    economy.grant_gold(&old, 100).await;
    let now = flotilla_storage::mongo::now_ms() / 1000;
    let gift = json!({"to": bob, "currency": "gold", "amount": 10});
    let token = support::token_created(&young, "s", 900, Some(now - 3600));
    let (status, held) = economy
        .post("/v1/gifts", As::Token(&token), "young-gift", gift.clone())
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{held}");
    assert_eq!(held["reason"], "held by fraud rule new-account");
    let token = support::token_created(&old, "s", 900, Some(now - 3 * 86_400));
    let (status, sent) = economy
        .post("/v1/gifts", As::Token(&token), "old-gift", gift)
        .await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    assert_eq!(economy.holding(&bob, "gold").await, (10, 0));
}
