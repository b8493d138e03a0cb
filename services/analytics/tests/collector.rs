//! The collector on real servers: each bad event is refused with its index and reason while the
//! valid ones in the batch are kept; bad batches and credentials get a clear 4xx; floods and late
//! events are kept but kept out of KPIs, and counted.

mod support;

use std::io::Write;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::*;

fn purchase(id: &str, player: &str) -> Value {
    json!({"id": id, "name": "purchase", "player": player, "time": ago(60),
           "properties": {"currency": "USD", "amount": 499, "item": "gems-100"}})
}

#[tokio::test]
async fn bad_events_are_refused_one_by_one_and_the_valid_ones_are_kept() {
    let deployment = Deployment::new();
    let replica = deployment.replica("r1").await;
    let ann = unique("ann-");
    let token = token_for(&ann);
    let mut unknown_field = purchase("e3", &ann);
    unknown_field["colour"] = json!("red");
    let mut future = purchase("e4", &ann);
    future["time"] = json!("2999-01-01T00:00:00Z");
    let batch = json!({"events": [
        purchase("e1", &ann),
        json!({"id": "e2", "name": "session_start", "session": "s1", "time": ago(30)}),
        unknown_field,
        future,
        json!({"id": "e5", "name": "purchase", "time": ago(5), "properties": {"currency": "usd", "amount": 5}}),
        json!({"id": "e6", "name": "level_up", "time": ago(5)}),
        purchase("e7", "somebody-else"),
        json!("not an event"),
    ]});
    let (status, answer) = send(&replica.url, &token, &batch).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["accepted"], 2, "{answer}");
    let rejected: Vec<(u64, String)> = answer["rejected"]
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
    let indexes: Vec<u64> = rejected.iter().map(|(index, _)| *index).collect();
    assert_eq!(indexes, [2, 3, 4, 5, 6, 7], "{answer}");
    assert!(rejected[0].1.contains("colour"), "{rejected:?}");
    assert!(rejected[1].1.contains("future"), "{rejected:?}");
    assert!(rejected[2].1.contains("ISO 4217"), "{rejected:?}");
    assert!(rejected[3].1.contains("level_up"), "{rejected:?}");
    assert!(rejected[4].1.contains("own events"), "{rejected:?}");

    caught_up(&replica.url, Duration::from_secs(30)).await;
    let exported = export(&replica.url, &format!("from={}&to={}", ago(3600), ago(-60))).await;
    let mut ids: Vec<&str> = exported.iter().map(|e| e["id"].as_str().expect("id")).collect();
    ids.sort();
    assert_eq!(ids, ["e1", "e2"]);
    assert!(
        exported
            .iter()
            .all(|e| e["player"] == ann.as_str() && e["game"] == "test")
    );
    let bought = exported.iter().find(|e| e["id"] == "e1").expect("e1");
    assert_eq!(
        (bought["currency"].clone(), bought["amount"].clone()),
        (json!("USD"), json!(499))
    );
    assert_eq!(bought["properties"]["item"], "gems-100");
}

#[tokio::test]
async fn bad_batches_and_credentials_get_a_clear_4xx_and_gzip_is_accepted() {
    let deployment = Deployment::new();
    let replica = deployment.replica("r1").await;
    let url = format!("{}/v1/events", replica.url);
    let http = reqwest::Client::new();
    let player = unique("p-");

    let too_many: Vec<Value> = (0..501).map(|n| purchase(&format!("e{n}"), &player)).collect();
    let (status, answer) = send(&replica.url, SERVICE_KEY, &json!({"events": too_many})).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    let huge = json!({"events": [], "game": "x".repeat(1_100_000)});
    let (status, _) = send(&replica.url, SERVICE_KEY, &huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, answer) = send(&replica.url, SERVICE_KEY, &json!({"events": [], "extra": 1})).await;
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("bad_request"))
    );
    let (status, _) = send(
        &replica.url,
        SERVICE_KEY,
        &json!({"game": "Bad/Game", "events": []}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let answer = http
        .post(&url)
        .bearer_auth(SERVICE_KEY)
        .body("{not json")
        .send()
        .await
        .expect("send");
    assert_eq!(answer.status(), StatusCode::BAD_REQUEST);

    for forged in ["not-the-service-key-at-all", "a.b.c", &token_for(&player)[..40]] {
        let (status, answer) = send(&replica.url, forged, &json!({"events": []})).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{forged}: {answer}");
    }
    let answer = http
        .post(&url)
        .json(&json!({"events": []}))
        .send()
        .await
        .expect("send");
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);

    // A service may send any player's events; a gzip body counts after decompression.
    let body = serde_json::to_vec(&json!({"events": [purchase("g1", &player)]})).expect("json");
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(&body).expect("gzip");
    let answer = http
        .post(&url)
        .bearer_auth(SERVICE_KEY)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(gzip.finish().expect("gzip"))
        .send()
        .await
        .expect("send");
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.json::<Value>().await.expect("json")["accepted"], 1);
    let answer = http
        .post(&url)
        .bearer_auth(SERVICE_KEY)
        .header("content-encoding", "gzip")
        .body(body)
        .send()
        .await
        .expect("send");
    assert_eq!(
        answer.status(),
        StatusCode::BAD_REQUEST,
        "a plain body sent as gzip"
    );
    let (status, answer) = send(
        &replica.url,
        SERVICE_KEY,
        &json!({"events": [{"id": "x", "name": "design", "time": ago(1), "properties": {"event": "a"}}]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["rejected"][0]["reason"], "player is required");
}

#[tokio::test]
async fn floods_and_late_events_are_kept_out_of_kpis_and_counted() {
    let deployment = Deployment::new();
    let mut args = deployment.serve_args("r1");
    args.max_events_per_minute = 5;
    let replica = deployment.replica_with(args).await;
    let flooder = unique("flooder-");
    let events: Vec<Value> = (0..8)
        .map(|n| {
            json!({"id": format!("d{n}"), "name": "design", "player": flooder, "time": ago(10),
                         "properties": {"event": "ui:click"}})
        })
        .collect();
    let (status, answer) = send(&replica.url, SERVICE_KEY, &json!({"events": events})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (answer["accepted"].clone(), answer["excluded"]["flood"].clone()),
        (json!(8), json!(3))
    );
    let late = json!({"id": "old", "name": "design", "player": unique("p-"), "time": ago(8 * 86_400),
                      "properties": {"event": "ui:click"}});
    let (_, answer) = send(&replica.url, SERVICE_KEY, &json!({"events": [late]})).await;
    assert_eq!(answer["excluded"]["late"], 1, "{answer}");

    caught_up(&replica.url, Duration::from_secs(30)).await;
    let live = admin_get(&replica.url, "/v1/admin/live").await;
    assert_eq!(live["totals"]["design"], 5, "{live}");
    assert_eq!(
        (
            live["excluded"]["flood"].clone(),
            live["excluded"]["late"].clone()
        ),
        (json!(3), json!(1))
    );
    assert_eq!(live["playersToday"], 1, "{live}");
    assert_eq!(live["concurrentPlayers"], 1, "{live}");
    let kept = export(&replica.url, &format!("from={}&to={}", ago(3600), ago(-60))).await;
    assert_eq!(kept.len(), 5);
    let all = export(
        &replica.url,
        &format!("from={}&to={}&excluded=true", ago(3600), ago(-60)),
    )
    .await;
    assert_eq!(all.len(), 8);
    assert_eq!(all.iter().filter(|e| e["excluded"] == "flood").count(), 3);
}
