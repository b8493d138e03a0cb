//! `GET /dashboard`: the analytics dashboard, one page with its script, style and charting
//! library (uPlot, vendored in `vendor/`) inlined under a policy that allows exactly those
//! ([`flotilla_service::page`]). The page itself is public — it holds no data; it asks for the
//! admin key and calls the admin API with it.

use std::sync::LazyLock;

use axum::Router;
use axum::response::Response;
use axum::routing::get;
use flotilla_service::page::Page;

use crate::state::Shared;

pub fn routes() -> Router<Shared> {
    Router::new().route("/dashboard", get(page))
}

// uPlot sizes and places its parts through the style property (CSSOM), which a policy does not
// restrict, so no 'unsafe-inline' is needed for styles either.
static PAGE: LazyLock<Page> = LazyLock::new(|| {
    Page::inline(
        include_str!("index.html"),
        &[
            ("/*CHART_SCRIPT*/", include_str!("vendor/uPlot.iife.min.js")),
            ("/*SCRIPT*/", include_str!("dashboard.js")),
        ],
        &[
            ("/*CHART_STYLE*/", include_str!("vendor/uPlot.min.css")),
            ("/*STYLE*/", include_str!("dashboard.css")),
        ],
    )
});

async fn page() -> Response {
    PAGE.response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_inlines_its_scripts_and_styles_and_allows_only_them() {
        let html = PAGE.html();
        assert!(!html.contains("/*SCRIPT*/") && !html.contains("/*CHART_SCRIPT*/"));
        assert!(!html.contains("/*STYLE*/") && !html.contains("/*CHART_STYLE*/"));
        assert!(html.contains("uPlot") && html.contains("v1/admin/live/stream"));
        assert_eq!(PAGE.policy().matches("'sha256-").count(), 4, "{}", PAGE.policy());
        // Nothing loaded from elsewhere: no src attributes, links only to data.
        assert!(!html.contains(" src="));
        assert!(html.matches("href=\"").count() == html.matches("href=\"data:").count());
    }
}
