//! A web page served whole by the process that owns it (the operator's ops console, the analytics
//! dashboard): scripts and styles inlined, so the page needs nothing but that process, and a
//! Content-Security-Policy that allows exactly those (by hash) and requests back to the same
//! origin — no other script can run even if a name in the data shown were hostile.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

pub struct Page {
    html: String,
    policy: HeaderValue,
}

impl Page {
    /// `template` with each `(marker, text)` of `scripts` and `styles` in place of its marker.
    pub fn inline(template: &str, scripts: &[(&str, &str)], styles: &[(&str, &str)]) -> Self {
        let hashes = |parts: &[(&str, &str)]| {
            parts
                .iter()
                .map(|(_, text)| {
                    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
                    format!(
                        "'sha256-{}'",
                        base64::engine::general_purpose::STANDARD.encode(digest)
                    )
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        let policy = format!(
            "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src data:; \
             base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            hashes(scripts),
            hashes(styles)
        );
        let mut html = template.to_owned();
        for (marker, text) in scripts.iter().chain(styles) {
            html = html.replace(marker, text);
        }
        Page {
            html,
            policy: HeaderValue::from_str(&policy).expect("the policy is ASCII: base64 and literals"),
        }
    }

    pub fn html(&self) -> &str {
        &self.html
    }

    pub fn policy(&self) -> &str {
        self.policy.to_str().unwrap_or_default()
    }

    /// The page with its policy; never cached, so a new version shows on the next load.
    pub fn response(&self) -> Response {
        (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                ),
                (header::CONTENT_SECURITY_POLICY, self.policy.clone()),
                (
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ),
                (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
            self.html.clone(),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_inlines_its_parts_and_its_policy_allows_only_them() {
        let page = Page::inline(
            "<style>/*S*/</style><script>/*A*/</script><script>/*B*/</script>",
            &[("/*A*/", "let a = 1;"), ("/*B*/", "let b = 2;")],
            &[("/*S*/", "body { margin: 0 }")],
        );
        assert_eq!(
            page.html(),
            "<style>body { margin: 0 }</style><script>let a = 1;</script><script>let b = 2;</script>"
        );
        assert_eq!(page.policy().matches("'sha256-").count(), 3, "{}", page.policy());
        assert!(!page.policy().contains("unsafe"));
        // The hash of "let a = 1;", as a browser computes it.
        let digest = ring::digest::digest(&ring::digest::SHA256, b"let a = 1;");
        let expected = base64::engine::general_purpose::STANDARD.encode(digest);
        assert!(
            page.policy()
                .contains(&format!("script-src 'sha256-{expected}' "))
        );
    }
}
