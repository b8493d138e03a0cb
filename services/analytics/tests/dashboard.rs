//! The dashboard in a real browser: headless Chromium opens `/dashboard`, is refused with a wrong
//! admin key, signs in with the right one, and reads what a person would read — the KPI tiles,
//! the charts (drawn by uPlot), the retention triangle and the funnel — against the events sent;
//! then more events arrive and the live view counts them over Server-Sent Events without a
//! reload. Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (`.ci/run` installs them).
//!
//! Three players, days counted back from today (UTC), D = today:
//!
//! | player | installs | active on     | buys            | funnel today                        |
//! |--------|----------|---------------|-----------------|-------------------------------------|
//! | A      | D-3      | D-3, D-1, D   | USD 4.99 on D   | session_start, progression, purchase |
//! | B      | D-2      | D-2, D        | USD 1.00 on D-2 | session_start, progression           |
//! | C      | D        | D             |                 | session_start                        |
//!
//! DAU on D is 3, revenue in the range USD 5.99, the funnel 3 → 2 → 1; the D-3 cohort (A) is
//! back on exactly days 2 and 3, the D-2 cohort (B) on day 2.

mod support;

use std::time::Duration;

use flotilla_browser::Browser;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::*;

const WAIT: Duration = Duration::from_secs(30);

/// Today's first second (UTC), and the date `days` before it.
struct Days {
    start: jiff::Timestamp,
}

impl Days {
    /// Waits out the first seconds of a UTC day, so "today" holds events already in the past.
    async fn now() -> Self {
        let now = jiff::Timestamp::now();
        let start = now
            .to_zoned(jiff::tz::TimeZone::UTC)
            .start_of_day()
            .expect("start of day")
            .timestamp();
        if now.duration_since(start) < jiff::SignedDuration::from_secs(10) {
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
        Days { start }
    }

    /// `days` before today, plus `seconds`, as RFC 3339.
    fn at(&self, days: i64, seconds: i64) -> String {
        self.start
            .checked_sub(jiff::SignedDuration::from_hours(24 * days))
            .and_then(|t| t.checked_add(jiff::SignedDuration::from_secs(seconds)))
            .expect("a time")
            .to_string()
    }

    fn date(&self, days: i64) -> String {
        self.at(days, 0)[..10].to_owned()
    }
}

fn event(id: &str, name: &str, player: &str, time: String, properties: Value) -> Value {
    json!({"id": id, "name": name, "player": player, "session": format!("s-{player}"), "time": time,
           "properties": properties})
}

fn fixture(days: &Days, prefix: &str) -> Vec<Value> {
    let (a, b, c) = (format!("{prefix}a"), format!("{prefix}b"), format!("{prefix}c"));
    let play = || json!({"status": "complete", "level": "1"});
    let none = || json!({});
    vec![
        event("a1", "progression", &a, days.at(3, 43_200), play()),
        event("a2", "progression", &a, days.at(1, 43_200), play()),
        event("a3", "session_start", &a, days.at(0, 1), none()),
        event("a4", "progression", &a, days.at(0, 2), play()),
        event(
            "a5",
            "purchase",
            &a,
            days.at(0, 3),
            json!({"currency": "USD", "amount": 499}),
        ),
        event(
            "b1",
            "purchase",
            &b,
            days.at(2, 43_200),
            json!({"currency": "USD", "amount": 100}),
        ),
        event("b2", "session_start", &b, days.at(0, 1), none()),
        event("b3", "progression", &b, days.at(0, 2), play()),
        event("c1", "session_start", &c, days.at(0, 1), none()),
    ]
}

/// What the page shows, read from its DOM: tiles by name (their exact values), the chart
/// containers' point counts, the retention cells with a figure (blank past the range's end and
/// for days without installs), the funnel rows and the live figures.
const READ_PAGE: &str = r#"
const value = (node) => (node && node.dataset.value !== undefined ? Number(node.dataset.value) : null);
const tiles = {};
for (const tile of document.querySelectorAll('#kpi-tiles .tile')) tiles[tile.dataset.kpi] = value(tile);
const retention = {};
for (const row of document.querySelectorAll('#retention tbody tr')) {
  retention[row.dataset.cohort] = [...row.querySelectorAll('td[data-players]')]
    .map((cell) => Number(cell.dataset.players));
}
const funnel = [...document.querySelectorAll('#funnel-table tbody tr')]
  .map((row) => [row.dataset.step, value(row.cells[1])]);
const points = (id) => {
  const chart = document.getElementById(id);
  return chart.querySelector('canvas') ? Number(chart.dataset.points) : null;
};
return {
  login: !document.getElementById('login').hidden,
  loginError: document.getElementById('login-error').textContent,
  board: !document.getElementById('board').hidden,
  tiles,
  retention,
  funnel,
  charts: {actives: points('actives-chart'), revenue: points('revenue-chart'),
           funnel: points('funnel-chart'), live: points('live-chart')},
  live: {mode: document.getElementById('live').dataset.mode,
         total: value(document.getElementById('live-total')),
         today: value(document.getElementById('live-today'))},
  marker: window.dashboardTestMarker || null,
};
"#;

/// Reads the page until `done` holds for what it shows, and returns that.
async fn until(browser: &Browser, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = std::time::Instant::now();
    loop {
        let page = browser.eval(READ_PAGE, json!([])).await;
        if done(&page) {
            return page;
        }
        assert!(started.elapsed() < WAIT, "timed out waiting for {what}: {page}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Signs in through the form, as a person types a key.
const SIGN_IN: &str = r#"
document.getElementById('key').value = arguments[0];
document.getElementById('login-form').requestSubmit();
return null;
"#;

#[tokio::test]
async fn the_dashboard_draws_the_reports_and_follows_the_live_counters() {
    let deployment = Deployment::new();
    let replica = deployment.replica("r1").await;
    let days = Days::now().await;
    let prefix = unique("dash-");
    let events = fixture(&days, &prefix);
    let (status, answer) = send(&replica.url, SERVICE_KEY, &json!({"events": events})).await;
    assert_eq!(
        (status, answer["accepted"].clone()),
        (StatusCode::OK, json!(9)),
        "{answer}"
    );
    caught_up(&replica.url, WAIT).await;

    let browser = Browser::start().await;
    let (from, to) = (days.date(6), days.date(0));
    browser
        .open(&format!("{}/dashboard?tz=UTC&from={from}&to={to}", replica.url))
        .await;

    // A wrong key is refused with the service's reason, and the board stays hidden.
    browser.eval(SIGN_IN, json!(["not-the-admin-key"])).await;
    let refused = until(&browser, "the refusal", |page| page["loginError"] != "").await;
    let reason = refused["loginError"].as_str().unwrap_or_default();
    assert!(reason.ends_with("admin key is invalid"), "{refused}");
    assert_eq!(refused["board"], false);
    // The browser logs the refused request; that, and nothing else, is expected so far.
    for entry in browser.console_log().await {
        let message = entry["message"].as_str().unwrap_or_default();
        assert!(
            entry["level"] != "SEVERE"
                || message.contains(
                    "/v1/admin/live - Failed to load resource: the server responded with a status of 401"
                ),
            "{entry}"
        );
    }

    browser.eval(SIGN_IN, json!([ADMIN_KEY])).await;
    let page = until(&browser, "the reports", |page| {
        page["tiles"]["DAU"] == 3 && page["funnel"].as_array().is_some_and(|f| !f.is_empty())
    })
    .await;
    assert_eq!(page["login"], false, "{page}");
    assert_eq!(page["tiles"]["revenue USD"], 599, "{page}");
    assert_eq!(page["tiles"]["new players"], 3, "{page}");
    assert_eq!(page["tiles"]["MAU"], 3, "{page}");
    // One point a day for the seven days of the range; one bar a funnel step.
    assert_eq!(page["charts"]["actives"], 7, "{page}");
    assert_eq!(page["charts"]["revenue"], 7, "{page}");
    assert_eq!(page["charts"]["funnel"], 3, "{page}");
    assert_eq!(
        page["funnel"],
        json!([["session_start", 3], ["progression", 2], ["purchase", 1]])
    );
    // Strict retention: on exactly day N; null past the range's end.
    assert_eq!(page["retention"][days.date(3)], json!([1, 0, 1, 1]), "{page}");
    assert_eq!(page["retention"][days.date(2)], json!([1, 0, 1]), "{page}");
    assert_eq!(page["retention"][days.date(0)], json!([1]), "{page}");
    assert_eq!(page["retention"][days.date(1)], json!([]), "no installs: {page}");
    browser
        .eval(
            "document.querySelector('input[value=\"onOrAfter\"]').click(); return null;",
            json!([]),
        )
        .await;
    let page = until(&browser, "on-or-after retention", |page| {
        page["retention"][days.date(2)] == json!([1, 1, 1])
    })
    .await;
    assert_eq!(page["retention"][days.date(3)], json!([1, 1, 1, 1]), "{page}");

    // The live view: the stream is open, and new events show up without a reload.
    let page = until(&browser, "the live stream", |page| {
        page["live"]["mode"] == "stream"
    })
    .await;
    assert_eq!(page["live"]["total"], 9, "every event counted once: {page}");
    browser
        .eval(
            "window.dashboardTestMarker = 'first load'; return null;",
            json!([]),
        )
        .await;
    let more: Vec<Value> = (0..5)
        .map(|n| {
            event(
                &format!("d{n}"),
                "progression",
                &format!("{prefix}d{n}"),
                ago(1),
                json!({"status": "start", "level": "2"}),
            )
        })
        .collect();
    let (status, answer) = send(&replica.url, SERVICE_KEY, &json!({"events": more})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let page = until(&browser, "the live view to count the new events", |page| {
        page["live"]["total"] == 14
    })
    .await;
    assert_eq!(page["marker"], "first load", "the page was reloaded: {page}");
    assert_eq!(page["live"]["mode"], "stream", "{page}");
    assert!(page["live"]["today"].as_u64() >= Some(8), "{page}");
    assert!(page["charts"]["live"].as_u64() >= Some(2), "{page}");

    browser.screenshot("analytics-dashboard").await;
    browser.assert_no_errors().await;

    // Signing out forgets the key: a reload asks for it again.
    browser
        .eval(
            "document.getElementById('sign-out').click(); return null;",
            json!([]),
        )
        .await;
    browser.open(&format!("{}/dashboard", replica.url)).await;
    let page = until(&browser, "the sign-in form", |page| page["login"] == true).await;
    assert_eq!(
        (page["login"].clone(), page["board"].clone()),
        (json!(true), json!(false))
    );
}
