//! `GET /console`: the page, with its script and style inlined under a policy that allows only
//! those two ([`flotilla_service::page`]).

use std::sync::LazyLock;

use axum::response::Response;
use flotilla_service::page::Page;

static PAGE: LazyLock<Page> = LazyLock::new(|| {
    Page::inline(
        include_str!("index.html"),
        &[("/*SCRIPT*/", include_str!("console.js"))],
        &[("/*STYLE*/", include_str!("console.css"))],
    )
});

pub(super) async fn page() -> Response {
    PAGE.response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_inlines_its_script_and_style_and_allows_only_them() {
        let html = PAGE.html();
        assert!(!html.contains("/*SCRIPT*/") && !html.contains("/*STYLE*/"));
        assert!(html.contains("EventSource"));
        assert_eq!(PAGE.policy().matches("'sha256-").count(), 2, "{}", PAGE.policy());
        // Nothing loaded from elsewhere: no src attributes, no CSS urls, links only to data.
        assert!(!html.contains("src=") && !html.contains("url("));
        assert!(html.matches("href=\"").count() == html.matches("href=\"data:").count());
    }
}
