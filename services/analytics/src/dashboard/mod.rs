//! `GET /dashboard`: the analytics dashboard, one page with its script, style and charting
//! library (uPlot, vendored in `vendor/`) inlined, and a Content-Security-Policy that allows
//! exactly those and requests back to this origin. The page itself is public — it holds no
//! data; it asks for the admin key and calls the admin API with it.

use std::sync::LazyLock;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;

use crate::state::Shared;

pub fn routes() -> Router<Shared> {
    Router::new().route("/dashboard", get(page))
}

/// The page and its policy, assembled once.
struct Page {
    html: String,
    policy: HeaderValue,
}

static PAGE: LazyLock<Page> = LazyLock::new(|| {
    let chart_script = include_str!("vendor/uPlot.iife.min.js");
    let chart_style = include_str!("vendor/uPlot.min.css");
    let script = include_str!("dashboard.js");
    let style = include_str!("dashboard.css");
    let hash = |text: &str| {
        let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
        format!(
            "'sha256-{}'",
            base64::engine::general_purpose::STANDARD.encode(digest)
        )
    };
    // uPlot sizes and places its parts through the style property (CSSOM), which a policy
    // does not restrict, so no 'unsafe-inline' is needed for styles either.
    let policy = format!(
        "default-src 'none'; script-src {} {}; style-src {} {}; connect-src 'self'; img-src data:; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        hash(chart_script),
        hash(script),
        hash(chart_style),
        hash(style),
    );
    let html = include_str!("index.html")
        .replace("/*CHART_STYLE*/", chart_style)
        .replace("/*STYLE*/", style)
        .replace("/*CHART_SCRIPT*/", chart_script)
        .replace("/*SCRIPT*/", script);
    Page {
        html,
        policy: HeaderValue::from_str(&policy).expect("the policy is ASCII: base64 and literals"),
    }
});

async fn page() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CONTENT_SECURITY_POLICY, PAGE.policy.clone()),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        PAGE.html.as_str(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_inlines_its_scripts_and_styles_and_allows_only_them() {
        let page = &*PAGE;
        assert!(!page.html.contains("/*SCRIPT*/") && !page.html.contains("/*CHART_SCRIPT*/"));
        assert!(!page.html.contains("/*STYLE*/") && !page.html.contains("/*CHART_STYLE*/"));
        assert!(page.html.contains("uPlot") && page.html.contains("v1/admin/live/stream"));
        let policy = page.policy.to_str().expect("ascii");
        assert_eq!(policy.matches("'sha256-").count(), 4, "{policy}");
        assert!(!policy.contains("unsafe"), "{policy}");
        // Nothing loaded from elsewhere: no src attributes, links only to data.
        assert!(!page.html.contains(" src="));
        assert!(page.html.matches("href=\"").count() == page.html.matches("href=\"data:").count());
    }
}
