//! `GET /console`: the page, with its script and style inlined and a Content-Security-Policy
//! that allows only those two.

use std::sync::LazyLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

/// The page, assembled once: the script and style are inlined so the page needs nothing but
/// this replica, and a Content-Security-Policy allows exactly those two (by hash) and requests
/// back to this origin — no other script can run even if a name in the data were hostile.
struct Page {
    html: String,
    policy: HeaderValue,
}

static PAGE: LazyLock<Page> = LazyLock::new(|| {
    let script = include_str!("console.js");
    let style = include_str!("console.css");
    let hash = |text: &str| {
        let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
        format!(
            "'sha256-{}'",
            base64::engine::general_purpose::STANDARD.encode(digest)
        )
    };
    let policy = format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src data:; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        hash(script),
        hash(style)
    );
    let html = include_str!("index.html")
        .replace("/*STYLE*/", style)
        .replace("/*SCRIPT*/", script);
    Page {
        html,
        policy: HeaderValue::from_str(&policy).expect("the policy is ASCII: base64 and literals"),
    }
});

pub(super) async fn page() -> Response {
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
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        PAGE.html.as_str(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_inlines_its_script_and_style_and_allows_only_them() {
        let page = &*PAGE;
        assert!(!page.html.contains("/*SCRIPT*/") && !page.html.contains("/*STYLE*/"));
        assert!(page.html.contains("EventSource"));
        let policy = page.policy.to_str().expect("ascii");
        assert_eq!(policy.matches("'sha256-").count(), 2, "{policy}");
        assert!(!policy.contains("unsafe"), "{policy}");
        // Nothing loaded from elsewhere: no src attributes, no CSS urls, links only to data.
        assert!(!page.html.contains("src=") && !page.html.contains("url("));
        assert!(page.html.matches("href=\"").count() == page.html.matches("href=\"data:").count());
    }
}
