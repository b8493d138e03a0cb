//! Exports in every format hold exactly the events of the range and filter: JSON lines and CSV,
//! each plain and gzip-compressed, and Parquet (zstd) with a row group per committed file, all
//! read back with ordinary decoders (flate2, the parquet crate). Bad export queries are 400s.

mod support;

use std::io::Read;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::*;

/// Six events across two hour partitions (90 minutes apart), four of them `progression`.
fn fixture(player: &str) -> Vec<Value> {
    let event = |id: &str, name: &str, seconds_ago: i64| {
        let properties = match name {
            "progression" => json!({"status": "complete", "level": "1, \"the first\""}),
            _ => json!({"event": "ui:shop:open"}),
        };
        json!({"id": id, "name": name, "player": player, "time": ago(seconds_ago), "properties": properties})
    };
    vec![
        event("e1", "progression", 5400),
        event("e2", "design", 5400),
        event("e3", "progression", 5300),
        event("e4", "progression", 60),
        event("e5", "design", 60),
        event("e6", "progression", 30),
    ]
}

async fn get(url: &str, query: &str) -> (StatusCode, String, Vec<u8>) {
    let answer = reqwest::Client::new()
        .get(format!("{url}/v1/admin/exports?{query}"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("export");
    let status = answer.status();
    let content_type = answer
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, content_type, answer.bytes().await.expect("body").to_vec())
}

fn gunzip(bytes: &[u8]) -> String {
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut text)
        .expect("a whole gzip stream");
    text
}

fn jsonl_ids(text: &str) -> Vec<String> {
    let mut ids: Vec<String> = text
        .lines()
        .map(|line| {
            let event: Value = serde_json::from_str(line).expect("a JSON line");
            event["id"].as_str().expect("id").to_owned()
        })
        .collect();
    ids.sort();
    ids
}

/// The first field of each row (ids have no commas or quotes), after checking the header.
fn csv_ids(text: &str) -> Vec<String> {
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("id,game,name,player,session,time,received,properties,excluded,currency,amount")
    );
    let mut ids: Vec<String> = lines
        .map(|line| line.split(',').next().expect("a field").to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn every_export_format_holds_exactly_the_chosen_events() {
    let deployment = Deployment::new();
    let replica = deployment.replica("r1").await;
    let player = unique("exporter-");
    let (status, answer) = send(&replica.url, SERVICE_KEY, &json!({"events": fixture(&player)})).await;
    assert_eq!(
        (status, answer["accepted"].clone()),
        (StatusCode::OK, json!(6)),
        "{answer}"
    );
    caught_up(&replica.url, Duration::from_secs(30)).await;
    let range = format!("from={}&to={}&name=progression", ago(7200), ago(-60));
    let expected = ["e1", "e3", "e4", "e6"];

    let (status, kind, body) = get(&replica.url, &range).await;
    assert_eq!((status, kind.as_str()), (StatusCode::OK, "application/jsonl"));
    assert_eq!(jsonl_ids(&String::from_utf8(body).expect("utf-8")), expected);

    let (status, kind, body) = get(&replica.url, &format!("{range}&gzip=true")).await;
    assert_eq!((status, kind.as_str()), (StatusCode::OK, "application/gzip"));
    assert_eq!(jsonl_ids(&gunzip(&body)), expected);

    let (status, kind, body) = get(&replica.url, &format!("{range}&format=csv")).await;
    assert_eq!((status, kind.as_str()), (StatusCode::OK, "text/csv"));
    let text = String::from_utf8(body).expect("utf-8");
    assert_eq!(csv_ids(&text), expected);
    // A property with a comma and quotes stays one field, quoted and its quotes doubled.
    assert!(
        text.contains(r#","{""level"":""1, \""the first\"""",""status"":""complete""}","#),
        "{text}"
    );

    let (status, kind, body) = get(&replica.url, &format!("{range}&format=csv&gzip=true")).await;
    assert_eq!((status, kind.as_str()), (StatusCode::OK, "application/gzip"));
    assert_eq!(csv_ids(&gunzip(&body)), expected);

    let (status, kind, body) = get(&replica.url, &format!("{range}&format=parquet")).await;
    assert_eq!(
        (status, kind.as_str()),
        (StatusCode::OK, "application/vnd.apache.parquet")
    );
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(body))
            .expect("a Parquet file");
    let metadata = reader.metadata().clone();
    assert!(
        metadata.num_row_groups() >= 2,
        "a row group per committed file with events, and the events span two hours"
    );
    let column = metadata.row_group(0).column(0);
    assert_eq!(
        column.compression(),
        parquet::basic::Compression::ZSTD(Default::default())
    );
    let mut ids = Vec::new();
    for batch in reader.build().expect("reader") {
        let batch = batch.expect("a record batch");
        let id = batch
            .column_by_name("id")
            .and_then(|c| c.as_any().downcast_ref::<arrow_array::StringArray>())
            .expect("an id column");
        ids.extend(id.iter().map(|v| v.expect("an id").to_owned()));
    }
    ids.sort();
    assert_eq!(ids, expected);

    // An empty range is a valid, empty file in every format.
    let empty = format!("from={}&to={}", ago(86_400), ago(86_000));
    let (status, _, body) = get(&replica.url, &format!("{empty}&format=parquet")).await;
    assert_eq!(status, StatusCode::OK);
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(body))
            .expect("a Parquet file");
    assert_eq!(reader.metadata().file_metadata().num_rows(), 0);
    let (_, _, body) = get(&replica.url, &format!("{empty}&gzip=true")).await;
    assert_eq!(gunzip(&body), "");

    for (query, field) in [
        (format!("{range}&format=parquet&gzip=true"), "gzip"),
        (format!("{range}&format=xml"), "format"),
        (format!("from=yesterday&to={}", ago(0)), "from"),
        (format!("{range}&limit=5"), "query"),
    ] {
        let (status, _, body) = get(&replica.url, &query).await;
        let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {answer}");
        if field != "query" {
            assert_eq!(answer["error"]["field"], field, "{query}: {answer}");
        }
    }
}
