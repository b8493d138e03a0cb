//! The ops console in a real browser: headless Chromium ([`flotilla_browser`]) opens the
//! operator's `/console` and watches it follow the cluster — the fleet coming up, an allocation
//! and the autoscaler's answer to it — without a reload. A screenshot of the final page is kept
//! at `$CARGO_TARGET_DIR/e2e-artifacts/console.png`.

use std::time::Duration;

use flotilla_api::{FleetAutoscaler, GameServerState};
use flotilla_browser::Browser;
use flotilla_e2e::{FleetFixture, Grant, Result, Workload, eventually, manifest, matchmaker_token};
use kube::ResourceExt;
use kube::api::PostParams;
use serde_json::json;

type TestResult = Result<()>;
const WAIT: Duration = Duration::from_secs(60);

/// What the page shows for the fleet `key` (namespace/name), read from its DOM the way a
/// person reads it: the counts in the row's state cells, the allocation figures, the live
/// indicator and the autoscaler entries. Null while the row is not there.
const READ_PAGE: &str = r#"
const key = arguments[0];
const row = [...document.querySelectorAll('#fleet-rows tr')].find((tr) => tr.dataset.fleet === key);
if (!row) return null;
const cell = (state) => Number(row.querySelector(`[data-state="${state}"]`).textContent);
return {
  ready: cell('Ready'),
  allocated: cell('Allocated'),
  desired: row.querySelector('[data-field="desired"]').textContent,
  rate: Number(document.getElementById('alloc-rate').dataset.value),
  total: Number(document.getElementById('alloc-total').dataset.value),
  mode: document.getElementById('live').dataset.mode,
  updated: document.getElementById('updated').textContent,
  decisions: [...document.querySelectorAll('#decisions li')]
    .map((li) => `${li.dataset.autoscaler} ${li.dataset.result} ${li.querySelector('.change').textContent}`),
  marker: window.consoleTestMarker || null,
};
"#;

#[tokio::test]
async fn the_console_follows_an_allocation_live_in_a_browser() -> TestResult {
    let test = FleetFixture::start_with(
        "console",
        2,
        FleetFixture::no_health(),
        Workload::GameServer(vec![]),
    )
    .await?;
    let token = matchmaker_token(&test.ns, "console-matchmaker", Grant::OwnRole).await?;
    // The sample autoscaler keeps two Ready servers on top of the allocated ones, so the
    // allocation below also brings a decision (2 → 3) for the console to list.
    let autoscaler: FleetAutoscaler = manifest("manifests/examples/autoscaler.yaml")?;
    test.ns
        .api::<FleetAutoscaler>()
        .create(&PostParams::default(), &autoscaler)
        .await?;
    eventually(WAIT, "2 Ready servers", || async {
        let ready = test
            .live_servers()
            .await?
            .into_iter()
            .filter(|s| s.status.as_ref().map(|st| st.state) == Some(GameServerState::Ready))
            .filter(|s| s.annotations().contains_key("sdk.flotilla.dev/quic-cert-sha256"))
            .count();
        Ok((ready == 2).then_some(()))
    })
    .await?;

    let browser = Browser::start().await;
    browser
        .open(&format!("{}/console", test.operator.metrics_url))
        .await;
    let key = format!("{}/arena", test.ns.name);
    let read = || browser.eval(READ_PAGE, json!([key]));
    let before = eventually(WAIT, "the page to show the fleet with 2 Ready", || async {
        let page = read().await;
        Ok((page["ready"] == 2 && page["allocated"] == 0 && page["mode"] == "stream").then_some(page))
    })
    .await?;
    assert_eq!(before["total"], 0, "{before}");
    // Set on this page only: still there later means the page was never reloaded.
    browser
        .eval("window.consoleTestMarker = 'first load'; return null;", json!([]))
        .await;

    let response = reqwest::Client::new()
        .post(format!(
            "{}/allocation/v1/namespaces/{}/allocations",
            test.operator.allocation_url, test.ns.name
        ))
        .bearer_auth(&token)
        .json(&json!({"fleet": "arena"}))
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 201, "{:?}", response.text().await);

    let autoscaler_key = format!("{}/arena", test.ns.name);
    let after = eventually(
        WAIT,
        "the page to show the allocation, the rate and the scale-up without a reload",
        || async {
            let page = read().await;
            let scaled = page["decisions"].as_array().is_some_and(|list| {
                list.iter()
                    .any(|d| d.as_str() == Some(&format!("{autoscaler_key} scaled_up 2 → 3")))
            });
            let settled = page["allocated"] == 1 && page["ready"] == 2 && page["desired"] == "3";
            let counted = page["rate"].as_u64() >= Some(1) && page["total"].as_u64() >= Some(1);
            Ok((settled && counted && scaled).then_some(page))
        },
    )
    .await?;
    assert_eq!(after["marker"], "first load", "the page was reloaded: {after}");
    assert_eq!(after["mode"], "stream", "{after}");

    browser.screenshot("console").await;
    browser.assert_no_errors().await;

    // A browser (or a proxy) without EventSource: the page polls the summary instead.
    browser.before_each_page("delete window.EventSource;").await;
    browser
        .open(&format!("{}/console", test.operator.metrics_url))
        .await;
    eventually(WAIT, "the page to poll without EventSource", || async {
        let page = read().await;
        Ok((page["mode"] == "polling" && page["allocated"] == 1 && page["total"] == 1).then_some(()))
    })
    .await?;

    drop(browser);
    test.ns.delete().await
}
