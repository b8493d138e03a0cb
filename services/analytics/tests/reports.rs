//! Sessions, funnels and custom events against a fixture worked out by hand below, in three time
//! zones; and the schema registry through the admin API, across replicas.
//!
//! Sessions (2026-03-08; US daylight saving starts at 10:00Z, Los Angeles goes from UTC-8 to -7):
//!
//! | player | events (UTC)                                  | session                   | UTC   | LA    | Shanghai |
//! |--------|-----------------------------------------------|---------------------------|-------|-------|----------|
//! | E      | session_start s1 07:50, 08:40 (idle 50 min), session_end 08:50 | explicit, 3600 s | 03-08 | 03-07 | 03-08 |
//! | Q      | 09:30, 09:55                                  | inactivity, 1500 s        | 03-08 | 03-08 (01:30 PST) | 03-08 |
//! | Q      | 10:26 (31 min after 09:55)                    | inactivity, 0 s           | 03-08 | 03-08 (03:26 PDT) | 03-08 |
//! | Q      | 15:50, 16:10                                  | inactivity, 1200 s        | 03-08 | 03-08 | 03-08 (23:50, across midnight) |
//!
//! Funnel session_start → progression → purchase within 60 minutes (2026-03-10):
//!
//! | player | events (UTC)                                     | reaches | entered (UTC / Shanghai) |
//! |--------|--------------------------------------------------|---------|--------------------------|
//! | F1     | start 10:00, progression 10:20, purchase 10:50   | 3       | 03-10 / 03-10 |
//! | F2     | start 10:00, progression 10:20, purchase 11:30   | 2 (purchase after the window) | 03-10 / 03-10 |
//! | F3     | progression 09:00, start 10:00, purchase 10:10   | 1 (no progression after the start) | 03-10 / 03-10 |
//! | F4     | start 23:30, progression 00:10, purchase 00:20 (03-11) | 3 | 03-10 / 03-11 |
//!
//! Custom `level_up` (2026-03-09 12:00Z): C1 mage level 3, C1 mage level 7, C2 rogue level 5 (and
//! so two sessions of no length that day).

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::*;

const LEVEL_UP: &str = r#"{
    "type": "object",
    "properties": {
        "level": {"type": "integer", "minimum": 1},
        "class": {"enum": ["mage", "rogue"]}
    },
    "required": ["level", "class"],
    "additionalProperties": false
}"#;

fn event(player: &str, id: &str, name: &str, time: &str, session: Option<&str>, properties: Value) -> Value {
    json!({"id": id, "name": name, "player": player, "time": time, "session": session,
           "properties": properties})
}

fn design(player: &str, id: &str, time: &str) -> Value {
    event(player, id, "design", time, None, json!({"event": "play"}))
}

fn fixture(p: &str) -> Vec<Value> {
    let e = format!("{p}e");
    let q = format!("{p}q");
    let start =
        |player: &str, id: &str, time: &str| event(player, id, "session_start", time, Some("s"), json!({}));
    let progression = |player: &str, id: &str, time: &str| {
        event(
            player,
            id,
            "progression",
            time,
            None,
            json!({"status": "complete", "level": "1"}),
        )
    };
    let purchase = |player: &str, id: &str, time: &str| {
        event(
            player,
            id,
            "purchase",
            time,
            None,
            json!({"currency": "USD", "amount": 100}),
        )
    };
    let level_up = |player: &str, id: &str, class: &str, level: u32| {
        event(
            player,
            id,
            "level_up",
            "2026-03-09T12:00:00Z",
            None,
            json!({"class": class, "level": level}),
        )
    };
    let f = |n: u32| format!("{p}f{n}");
    vec![
        event(
            &e,
            "e1",
            "session_start",
            "2026-03-08T07:50:00Z",
            Some("s1"),
            json!({}),
        ),
        event(
            &e,
            "e2",
            "design",
            "2026-03-08T08:40:00Z",
            Some("s1"),
            json!({"event": "idle"}),
        ),
        event(
            &e,
            "e3",
            "session_end",
            "2026-03-08T08:50:00Z",
            Some("s1"),
            json!({}),
        ),
        design(&q, "q1", "2026-03-08T09:30:00Z"),
        design(&q, "q2", "2026-03-08T09:55:00Z"),
        design(&q, "q3", "2026-03-08T10:26:00Z"),
        design(&q, "q4", "2026-03-08T15:50:00Z"),
        design(&q, "q5", "2026-03-08T16:10:00Z"),
        start(&f(1), "a", "2026-03-10T10:00:00Z"),
        progression(&f(1), "b", "2026-03-10T10:20:00Z"),
        purchase(&f(1), "c", "2026-03-10T10:50:00Z"),
        start(&f(2), "a", "2026-03-10T10:00:00Z"),
        progression(&f(2), "b", "2026-03-10T10:20:00Z"),
        purchase(&f(2), "c", "2026-03-10T11:30:00Z"),
        progression(&f(3), "b", "2026-03-10T09:00:00Z"),
        start(&f(3), "a", "2026-03-10T10:00:00Z"),
        purchase(&f(3), "c", "2026-03-10T10:10:00Z"),
        start(&f(4), "a", "2026-03-10T23:30:00Z"),
        progression(&f(4), "b", "2026-03-11T00:10:00Z"),
        purchase(&f(4), "c", "2026-03-11T00:20:00Z"),
        level_up(&format!("{p}c1"), "l1", "mage", 3),
        level_up(&format!("{p}c1"), "l2", "mage", 7),
        level_up(&format!("{p}c2"), "l3", "rogue", 5),
    ]
}

async fn admin(
    method: reqwest::Method,
    url: &str,
    path: &str,
    key: &str,
    body: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{url}{path}"))
        .bearer_auth(key);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_owned());
    }
    let answer = request.send().await.expect("request");
    let status = answer.status();
    (status, answer.json().await.unwrap_or(Value::Null))
}

/// (sessions, players, totalSeconds, medianSeconds) of each day with a session.
/// A day's sessions, players, total seconds and median seconds.
type SessionDay = (u64, u64, u64, u64);

fn session_days(report: &Value) -> BTreeMap<String, SessionDay> {
    report["days"]
        .as_array()
        .expect("days")
        .iter()
        .filter(|day| day["sessions"].as_u64().expect("sessions") > 0)
        .map(|day| {
            let n = |field: &str| day[field].as_u64().expect(field);
            (
                day["date"].as_str().expect("date")[5..].to_owned(),
                (n("sessions"), n("players"), n("totalSeconds"), n("medianSeconds")),
            )
        })
        .collect()
}

fn funnel_players(funnel: &Value) -> Vec<u64> {
    funnel["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|step| step["players"].as_u64().expect("players"))
        .collect()
}

#[tokio::test]
async fn sessions_funnels_and_custom_events_match_the_hand_worked_fixture() {
    let deployment = Deployment::new();
    let mut args = deployment.serve_args("r1");
    args.max_event_age_days = 3650;
    let replica = deployment.replica_with(args).await;
    let (status, _) = admin(
        reqwest::Method::PUT,
        &replica.url,
        "/v1/admin/schemas/level_up",
        ADMIN_KEY,
        Some(LEVEL_UP),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let events = fixture(&unique("rep-"));
    for _ in 0..2 {
        let (status, answer) = send(&replica.url, SERVICE_KEY, &json!({"events": events})).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["accepted"], events.len(), "{answer}");
    }
    caught_up(&replica.url, Duration::from_secs(30)).await;

    let sessions = |tz: &'static str| {
        let url = replica.url.clone();
        async move {
            session_days(
                &admin_get(
                    &url,
                    &format!("/v1/admin/kpis/sessions?from=2026-03-07&to=2026-03-09&tz={tz}"),
                )
                .await,
            )
        }
    };
    let expected = |days: &[(&str, SessionDay)]| -> BTreeMap<String, SessionDay> {
        days.iter().map(|(day, row)| ((*day).to_owned(), *row)).collect()
    };
    // The level_up events are two more sessions of no length on the 9th in every zone.
    let ninth = ("03-09", (2, 2, 0, 0));
    assert_eq!(
        sessions("UTC").await,
        expected(&[("03-08", (4, 2, 6300, 1200)), ninth])
    );
    assert_eq!(
        sessions("America/Los_Angeles").await,
        expected(&[
            ("03-07", (1, 1, 3600, 3600)),
            ("03-08", (3, 1, 2700, 1200)),
            ninth
        ])
    );
    assert_eq!(
        sessions("Asia/Shanghai").await,
        expected(&[("03-08", (4, 2, 6300, 1200)), ninth])
    );
    let utc = admin_get(
        &replica.url,
        "/v1/admin/kpis/sessions?from=2026-03-08&to=2026-03-08",
    )
    .await;
    assert_eq!(utc["days"][0]["averageSeconds"], json!(1575.0));

    let funnel = |tz: &'static str, window: u32| {
        let url = replica.url.clone();
        async move {
            admin_get(
                &url,
                &format!(
                    "/v1/admin/kpis/funnel?steps=session_start,progression,purchase&windowMinutes={window}\
                     &from=2026-03-10&to=2026-03-10&tz={tz}"
                ),
            )
            .await
        }
    };
    let utc = funnel("UTC", 60).await;
    assert_eq!(funnel_players(&utc), [4, 3, 2]);
    assert_eq!(utc["steps"][2]["fromFirst"], json!(0.5));
    assert_eq!(utc["steps"][2]["fromPrevious"], json!(2.0 / 3.0));
    assert_eq!(funnel_players(&funnel("Asia/Shanghai", 60).await), [3, 2, 1]);
    assert_eq!(
        funnel_players(&funnel("America/Los_Angeles", 60).await),
        [4, 3, 2]
    );
    assert_eq!(
        funnel_players(&funnel("UTC", 90).await),
        [4, 3, 3],
        "F2's purchase is 90 minutes in"
    );

    let counts = admin_get(
        &replica.url,
        "/v1/admin/kpis/events?name=level_up&by=class&sum=level&from=2026-03-09&to=2026-03-09",
    )
    .await;
    assert_eq!(
        counts["days"][0]["groups"],
        json!({"mage": {"events": 2, "players": 1, "sum": 10.0}, "rogue": {"events": 1, "players": 1, "sum": 5.0}})
    );
    let purchases = admin_get(
        &replica.url,
        "/v1/admin/kpis/events?name=purchase&sum=amount&from=2026-03-10&to=2026-03-11&tz=Asia/Shanghai",
    )
    .await;
    assert_eq!(
        purchases["days"][0]["groups"],
        json!({"": {"events": 3, "players": 3, "sum": 300.0}})
    );
    assert_eq!(
        purchases["days"][1]["groups"],
        json!({"": {"events": 1, "players": 1, "sum": 100.0}})
    );
}

#[tokio::test]
async fn custom_events_are_collected_only_as_their_registered_schema_allows() {
    let deployment = Deployment::new();
    let (first, second) = (deployment.replica("r1").await, deployment.replica("r2").await);
    let put = |url: String, key: &'static str, name: &'static str, body: &'static str| async move {
        admin(
            reqwest::Method::PUT,
            &url,
            &format!("/v1/admin/schemas/{name}"),
            key,
            Some(body),
        )
        .await
    };
    // Bad registrations: a clear 4xx, nothing stored.
    assert_eq!(
        put(first.url.clone(), SERVICE_KEY, "level_up", LEVEL_UP).await.0,
        StatusCode::UNAUTHORIZED
    );
    for (name, body, field) in [
        ("purchase", LEVEL_UP, "name"),
        ("Level-Up", LEVEL_UP, "name"),
        ("level_up", r#"{"type": "string"}"#, "schema"),
        (
            "level_up",
            r#"{"type": "object", "properties": {"a": {"type": "colour"}}}"#,
            "schema",
        ),
        (
            "level_up",
            r#"{"type": "object", "properties": {"a": {"$ref": "http://127.0.0.1:1/x.json"}}}"#,
            "schema",
        ),
    ] {
        let (status, answer) = put(first.url.clone(), ADMIN_KEY, name, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name} {body}: {answer}");
        assert_eq!(answer["error"]["field"], field, "{answer}");
    }
    let (status, answer) = put(first.url.clone(), ADMIN_KEY, "level_up", "{not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(
        admin_get(&first.url, "/v1/admin/schemas").await,
        json!({"schemas": {}})
    );

    let player = unique("hero-");
    let level_up = |id: &str, properties: Value| json!({"id": id, "name": "level_up", "player": player, "time": ago(10), "properties": properties});
    let batch = json!({"events": [level_up("e1", json!({"level": 2, "class": "mage"}))]});
    let (_, answer) = send(&second.url, SERVICE_KEY, &batch).await;
    assert_eq!(answer["accepted"], 0, "no schema yet: {answer}");
    assert!(
        answer["rejected"][0]["reason"]
            .as_str()
            .expect("reason")
            .contains("no registered schema")
    );

    assert_eq!(
        put(first.url.clone(), ADMIN_KEY, "level_up", LEVEL_UP).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        put(first.url.clone(), ADMIN_KEY, "level_up", LEVEL_UP).await.0,
        StatusCode::OK,
        "replaced"
    );
    let stored = admin_get(&second.url, "/v1/admin/schemas/level_up").await;
    assert_eq!(stored["required"], json!(["level", "class"]));

    // Registered on one replica, it holds on the other from the next batch.
    let batch = json!({"events": [
        level_up("e1", json!({"level": 2, "class": "mage"})),
        level_up("e2", json!({"level": 0, "class": "mage"})),
        level_up("e3", json!({"level": 2, "class": "mage", "extra": true})),
        level_up("e4", json!({"level": 2})),
        json!({"id": "e5", "name": "boss_killed", "player": player, "time": ago(10)}),
        level_up("e6", json!({"level": 9, "class": "rogue"})),
    ]});
    let (status, answer) = send(&second.url, SERVICE_KEY, &batch).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["accepted"], 2, "{answer}");
    let reasons: Vec<(u64, String)> = answer["rejected"]
        .as_array()
        .expect("rejected")
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().expect("index"),
                r["reason"].as_str().expect("reason").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        reasons.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        [1, 2, 3, 4],
        "{answer}"
    );
    assert!(reasons[0].1.starts_with("properties/level"), "{reasons:?}");
    assert!(reasons[3].1.contains("boss_killed"), "{reasons:?}");

    let (status, _) = admin(
        reqwest::Method::DELETE,
        &first.url,
        "/v1/admin/schemas/level_up",
        ADMIN_KEY,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = admin(
        reqwest::Method::DELETE,
        &first.url,
        "/v1/admin/schemas/level_up",
        ADMIN_KEY,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let batch = json!({"events": [level_up("e7", json!({"level": 3, "class": "mage"}))]});
    let (_, answer) = send(&second.url, SERVICE_KEY, &batch).await;
    assert_eq!(answer["accepted"], 0, "removed: {answer}");

    caught_up(&first.url, Duration::from_secs(30)).await;
    let today = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).date();
    let counts = admin_get(
        &first.url,
        &format!("/v1/admin/kpis/events?name=level_up&by=class&from={today}&to={today}"),
    )
    .await;
    let groups = &counts["days"][0]["groups"];
    assert_eq!(
        (
            groups["mage"]["events"].clone(),
            groups["rogue"]["events"].clone()
        ),
        (json!(1), json!(1)),
        "{counts}"
    );
}

#[tokio::test]
async fn bad_report_queries_get_a_clear_400() {
    let deployment = Deployment::new();
    let replica = deployment.replica("r1").await;
    for (path, field) in [
        (
            "/v1/admin/kpis/funnel?steps=a&from=2026-03-01&to=2026-03-02",
            "steps",
        ),
        (
            "/v1/admin/kpis/funnel?steps=a,B&from=2026-03-01&to=2026-03-02",
            "steps",
        ),
        (
            "/v1/admin/kpis/funnel?steps=a,b,c,d,e,f,g,h,i,j,k&from=2026-03-01&to=2026-03-02",
            "steps",
        ),
        (
            "/v1/admin/kpis/funnel?steps=a,b&windowMinutes=0&from=2026-03-01&to=2026-03-02",
            "windowMinutes",
        ),
        (
            "/v1/admin/kpis/funnel?steps=a,b&from=2026-03-01&to=2026-03-02&tz=Nowhere",
            "tz",
        ),
        (
            "/v1/admin/kpis/events?name=x'--&from=2026-03-01&to=2026-03-02",
            "name",
        ),
        ("/v1/admin/kpis/sessions?from=2026-03-02&to=2026-03-01", "to"),
    ] {
        let (status, answer) = admin(reqwest::Method::GET, &replica.url, path, ADMIN_KEY, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {answer}");
        assert_eq!(answer["error"]["field"], field, "{path}: {answer}");
    }
    let (status, _) = admin(
        reqwest::Method::GET,
        &replica.url,
        "/v1/admin/kpis/sessions?from=2026-03-01&to=2026-03-02",
        SERVICE_KEY,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
