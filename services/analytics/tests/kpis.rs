//! KPIs against a fixture whose answers are worked out by hand below, in three time zones.
//!
//! Four players over 40 days (2026-02-20 to 2026-03-31). US daylight saving starts on 2026-03-08
//! at 02:00 in Los Angeles (UTC-8 before 10:00Z, UTC-7 after); Shanghai is UTC+8 throughout.
//! Every event is sent twice; one more, from 2010, is quarantined and counts nowhere.
//!
//! | player | event (UTC)              | UTC   | Shanghai | Los Angeles | what            |
//! |--------|--------------------------|-------|----------|-------------|-----------------|
//! | P1     | 2026-03-01 15:59         | 03-01 | 03-01 (23:59) | 03-01  | install         |
//! | P1     | 2026-03-01 16:01         | 03-01 | 03-02 (00:01) | 03-01  |                 |
//! | P1     | 2026-03-08 12:00         | 03-08 | 03-08    | 03-08 (05:00 PDT) | buys USD 4.99 |
//! | P1     | 2026-03-31 01:00         | 03-31 | 03-31    | 03-30       |                 |
//! | P2     | 2026-03-08 07:59         | 03-08 | 03-08    | 03-07 (23:59 PST) | install   |
//! | P2     | 2026-03-09 06:30         | 03-09 | 03-09    | 03-08 (23:30 PDT) | buys USD 9.99 |
//! | P2     | 2026-03-14 19:00         | 03-14 | 03-15    | 03-14       |                 |
//! | P3     | 2026-02-20 12:00         | 02-20 | 02-20    | 02-20       | install         |
//! | P3     | 2026-02-21 12:00         | 02-21 | 02-21    | 02-21       | buys USD 1.00   |
//! | P3     | 2026-03-21 12:00         | 03-21 | 03-21    | 03-21       |                 |
//! | P4     | 2026-03-08 00:30         | 03-08 | 03-08    | 03-07       | install         |
//! | P4     | 2026-03-08 01:00         | 03-08 | 03-08    | 03-07       | buys EUR 2.50   |
//! | P4     | 2026-03-09 00:30         | 03-09 | 03-09    | 03-08       |                 |

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::*;

fn design(player: &str, id: &str, time: &str) -> Value {
    json!({"id": id, "name": "design", "player": player, "time": time, "properties": {"event": "play"}})
}

fn purchase(player: &str, id: &str, time: &str, currency: &str, amount: i64) -> Value {
    json!({"id": id, "name": "purchase", "player": player, "time": time,
           "properties": {"currency": currency, "amount": amount}})
}

fn fixture(prefix: &str) -> Vec<Value> {
    let p = |n: u32| format!("{prefix}{n}");
    vec![
        design(&p(1), "1a", "2026-03-01T23:59:00+08:00"),
        design(&p(1), "1b", "2026-03-02T00:01:00+08:00"),
        purchase(&p(1), "1c", "2026-03-08T12:00:00Z", "USD", 499),
        design(&p(1), "1d", "2026-03-31T01:00:00Z"),
        design(&p(2), "2a", "2026-03-07T23:59:00-08:00"),
        purchase(&p(2), "2b", "2026-03-08T23:30:00-07:00", "USD", 999),
        design(&p(2), "2c", "2026-03-14T19:00:00Z"),
        design(&p(3), "3a", "2026-02-20T12:00:00Z"),
        purchase(&p(3), "3b", "2026-02-21T12:00:00Z", "USD", 100),
        design(&p(3), "3c", "2026-03-21T12:00:00Z"),
        design(&p(3), "3q", "2010-01-01T00:00:00Z"),
        design(&p(4), "4a", "2026-03-08T00:30:00Z"),
        purchase(&p(4), "4b", "2026-03-08T01:00:00Z", "EUR", 250),
        design(&p(4), "4c", "2026-03-09T00:30:00Z"),
    ]
}

async fn report(url: &str, tz: &str) -> Value {
    admin_get(
        url,
        &format!("/v1/admin/kpis?from=2026-02-20&to=2026-03-31&tz={tz}"),
    )
    .await
}

/// `field` of every day where it is not zero.
fn nonzero(report: &Value, field: &str) -> BTreeMap<String, u64> {
    report["days"]
        .as_array()
        .expect("days")
        .iter()
        .filter(|day| day[field].as_u64().expect(field) > 0)
        .map(|day| {
            (
                day["date"].as_str().expect("date")[5..].to_owned(),
                day[field].as_u64().expect(field),
            )
        })
        .collect()
}

fn day<'a>(report: &'a Value, date: &str) -> &'a Value {
    report["days"]
        .as_array()
        .expect("days")
        .iter()
        .find(|day| day["date"] == date)
        .expect("day in range")
}

fn cohort<'a>(report: &'a Value, date: &str) -> &'a Value {
    report["cohorts"]
        .as_array()
        .expect("cohorts")
        .iter()
        .find(|cohort| cohort["date"] == date)
        .expect("cohort in range")
}

fn map(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

#[tokio::test]
async fn kpis_match_the_hand_worked_fixture_in_three_time_zones() {
    let deployment = Deployment::new();
    let mut args = deployment.serve_args("r1");
    args.max_event_age_days = 3650;
    let replica = deployment.replica_with(args).await;
    let prefix = unique("kpi-");
    let events = fixture(&prefix);
    for _ in 0..2 {
        let (status, answer) = send(&replica.url, SERVICE_KEY, &json!({"events": events})).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(
            (answer["accepted"].clone(), answer["excluded"]["late"].clone()),
            (json!(14), json!(1))
        );
    }
    caught_up(&replica.url, Duration::from_secs(30)).await;

    let utc = report(&replica.url, "UTC").await;
    let shanghai = report(&replica.url, "Asia/Shanghai").await;
    let la = report(&replica.url, "America/Los_Angeles").await;
    assert_eq!(utc["days"].as_array().expect("days").len(), 40);

    // Daily active players.
    assert_eq!(
        nonzero(&utc, "dau"),
        map(&[
            ("02-20", 1),
            ("02-21", 1),
            ("03-01", 1),
            ("03-08", 3),
            ("03-09", 2),
            ("03-14", 1),
            ("03-21", 1),
            ("03-31", 1)
        ])
    );
    assert_eq!(
        nonzero(&shanghai, "dau"),
        map(&[
            ("02-20", 1),
            ("02-21", 1),
            ("03-01", 1),
            ("03-02", 1),
            ("03-08", 3),
            ("03-09", 2),
            ("03-15", 1),
            ("03-21", 1),
            ("03-31", 1),
        ])
    );
    assert_eq!(
        nonzero(&la, "dau"),
        map(&[
            ("02-20", 1),
            ("02-21", 1),
            ("03-01", 1),
            ("03-07", 2),
            ("03-08", 3),
            ("03-14", 1),
            ("03-21", 1),
            ("03-30", 1)
        ])
    );

    // New players: P2 and P4 installed on the 7th in Los Angeles, the 8th elsewhere.
    assert_eq!(
        nonzero(&utc, "newPlayers"),
        map(&[("02-20", 1), ("03-01", 1), ("03-08", 2)])
    );
    assert_eq!(
        nonzero(&shanghai, "newPlayers"),
        map(&[("02-20", 1), ("03-01", 1), ("03-08", 2)])
    );
    assert_eq!(
        nonzero(&la, "newPlayers"),
        map(&[("02-20", 1), ("03-01", 1), ("03-07", 2)])
    );

    // Rolling and calendar actives.
    assert_eq!(day(&utc, "2026-03-01")["mau"], 2); // P3 (02-20, 02-21) and P1
    assert_eq!(day(&utc, "2026-03-31")["mau"], 4);
    assert_eq!(day(&la, "2026-03-31")["mau"], 4);
    assert_eq!(day(&utc, "2026-03-02")["wau"], 1);
    assert_eq!(day(&utc, "2026-03-14")["wau"], 3); // P1, P2, P4
    assert_eq!(day(&utc, "2026-03-15")["wau"], 2); // P2, P4
    assert_eq!(day(&shanghai, "2026-03-15")["wau"], 2);
    assert_eq!(utc["months"], json!({"2026-02": 1, "2026-03": 4}));
    assert_eq!(
        utc["weeks"],
        json!({"2026-W08": 1, "2026-W09": 1, "2026-W10": 3, "2026-W11": 2, "2026-W12": 1, "2026-W14": 1})
    );
    assert_eq!(
        la["weeks"],
        json!({"2026-W08": 1, "2026-W09": 1, "2026-W10": 3, "2026-W11": 1, "2026-W12": 1, "2026-W14": 1})
    );

    // Revenue, ARPDAU, ARPPU, paying share and conversion.
    assert_eq!(day(&utc, "2026-02-21")["revenue"], json!({"USD": 100}));
    assert_eq!(
        day(&utc, "2026-03-08")["revenue"],
        json!({"USD": 499, "EUR": 250})
    );
    assert_eq!(day(&utc, "2026-03-09")["revenue"], json!({"USD": 999}));
    assert_eq!(
        day(&shanghai, "2026-03-08")["revenue"],
        json!({"USD": 499, "EUR": 250})
    );
    assert_eq!(day(&la, "2026-03-07")["revenue"], json!({"EUR": 250}));
    assert_eq!(day(&la, "2026-03-08")["revenue"], json!({"USD": 1498}));
    assert_eq!(
        nonzero(&utc, "payers"),
        map(&[("02-21", 1), ("03-08", 2), ("03-09", 1)])
    );
    assert_eq!(
        nonzero(&la, "firstTimePayers"),
        map(&[("02-21", 1), ("03-07", 1), ("03-08", 2)])
    );
    let utc_8th = day(&utc, "2026-03-08");
    assert_eq!(utc_8th["arpdau"]["USD"], json!(499.0 / 3.0));
    assert_eq!(utc_8th["arpdau"]["EUR"], json!(250.0 / 3.0));
    assert_eq!(utc_8th["arppu"]["USD"], json!(249.5));
    assert_eq!(utc_8th["payingShare"], json!(2.0 / 3.0));
    assert_eq!(utc_8th["conversion"], json!(2.0 / 3.0));
    let la_8th = day(&la, "2026-03-08");
    assert_eq!(
        (la_8th["arpdau"]["USD"].clone(), la_8th["arppu"]["USD"].clone()),
        (json!(1498.0 / 3.0), json!(749.0))
    );
    assert_eq!(day(&utc, "2026-02-21")["arppu"]["USD"], json!(100.0));

    // Retention: P1 installed a minute before midnight in Shanghai and played a minute after.
    let (p1_utc, p1_shanghai, p1_la) = (
        cohort(&utc, "2026-03-01"),
        cohort(&shanghai, "2026-03-01"),
        cohort(&la, "2026-03-01"),
    );
    assert_eq!(p1_utc["size"], 1);
    assert_eq!(
        (p1_utc["strict"][1].clone(), p1_shanghai["strict"][1].clone()),
        (json!(0), json!(1))
    );
    assert_eq!(
        (p1_utc["strict"][7].clone(), p1_utc["strict"][30].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(
        (p1_la["strict"][29].clone(), p1_la["strict"][30].clone()),
        (json!(1), json!(0))
    );
    assert_eq!(p1_la["onOrAfter"][30], 0);
    assert_eq!(p1_utc["onOrAfter"][8], 1);
    let (pair_utc, pair_la) = (cohort(&utc, "2026-03-08"), cohort(&la, "2026-03-07"));
    assert_eq!(
        (pair_utc["size"].clone(), pair_la["size"].clone()),
        (json!(2), json!(2))
    );
    assert_eq!(
        (pair_utc["strict"][1].clone(), pair_utc["strict"][6].clone()),
        (json!(2), json!(1))
    );
    assert_eq!(pair_utc["onOrAfter"][2], 1);
    assert_eq!(
        (
            pair_la["strict"][1].clone(),
            pair_la["strict"][2].clone(),
            pair_la["strict"][7].clone()
        ),
        (json!(2), json!(0), json!(1))
    );
    let pair_shanghai = cohort(&shanghai, "2026-03-08");
    assert_eq!(
        (
            pair_shanghai["strict"][6].clone(),
            pair_shanghai["strict"][7].clone()
        ),
        (json!(0), json!(1))
    );
    let p3 = cohort(&utc, "2026-02-20");
    assert_eq!(
        (
            p3["strict"][1].clone(),
            p3["strict"][29].clone(),
            p3["strict"][30].clone()
        ),
        (json!(1), json!(1), json!(0))
    );
    assert_eq!(
        cohort(&utc, "2026-03-31")["strict"][1],
        Value::Null,
        "past the range"
    );
}

#[tokio::test]
async fn bad_kpi_queries_get_a_clear_400() {
    let deployment = Deployment::new();
    let replica = deployment.replica("r1").await;
    let http = reqwest::Client::new();
    for query in [
        "from=2026-03-01&to=2026-02-01",
        "from=2026-03-01&to=2027-12-01",
        "from=yesterday&to=2026-03-01",
        "from=2026-03-01&to=2026-03-02&tz=Mars/Olympus",
        "from=2026-03-01&to=2026-03-02&game=Bad/Game",
        "from=2026-03-01&to=2026-03-02&colour=red",
    ] {
        let answer = http
            .get(format!("{}/v1/admin/kpis?{query}", replica.url))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .expect("kpis");
        assert_eq!(answer.status(), StatusCode::BAD_REQUEST, "{query}");
        let body: Value = answer.json().await.expect("json");
        assert_eq!(body["error"]["code"], "bad_request", "{query}: {body}");
    }
    let empty = admin_get(&replica.url, "/v1/admin/kpis?from=2026-03-01&to=2026-03-02").await;
    assert_eq!(empty["days"][0]["dau"], 0);
}
