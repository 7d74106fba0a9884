//! The status page at `/ui`: one HTML page, a script and a style sheet, embedded in the binary,
//! served without a token (they hold no data). The page asks for an API token, keeps it in
//! `sessionStorage` only, and reads `/v1/tunnels`, `/v1/tunnels/{id}/connections`,
//! `/v1/hostnames`, `/v1/policies` and `/v1/status` with it every few seconds. Read-only: every
//! change still goes through the API (Terraform).
//!
//! Every answer carries a Content-Security-Policy that allows only this origin's script, style
//! sheet and API (no inline script or style, no frames, no forms), plus `nosniff` and
//! `no-referrer`.

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use super::state::ApiState;

const PAGE: &str = include_str!("ui/index.html");
const SCRIPT: &str = include_str!("ui/app.js");
const STYLE: &str = include_str!("ui/app.css");

/// What the page may load and do.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; \
     base-uri 'none'; form-action 'none'";

pub(super) fn router() -> Router<ApiState> {
    Router::new()
        .route("/ui", get(page))
        .route("/ui/", get(|| async { Redirect::permanent("/ui") }))
        .route("/ui/app.js", get(script))
        .route("/ui/app.css", get(style))
}

async fn page() -> Response {
    asset("text/html; charset=utf-8", PAGE)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// An embedded file with the page's headers.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    let headers: [(HeaderName, HeaderValue); 7] = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        ),
        // A new binary may bring a new page: always revalidate.
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    (headers, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The policy forbids inline script and style, so the page must have none.
    #[test]
    fn the_page_has_no_inline_script_or_style() {
        let lower = PAGE.to_ascii_lowercase();
        for script in lower.split("<script").skip(1) {
            let tag = script.split('>').next().unwrap_or_default();
            assert!(tag.contains("src=\"/ui/app.js\""), "inline script: {tag}");
            assert!(
                script
                    .split_once('>')
                    .is_some_and(|(_, rest)| rest.starts_with("</script")),
                "a script element with content"
            );
        }
        assert!(!lower.contains("<style"), "inline style element");
        assert!(!lower.contains(" style="), "inline style attribute");
        for tag in lower.split('<').skip(1) {
            let tag = tag.split('>').next().unwrap_or_default();
            let handler = tag
                .split_whitespace()
                .skip(1)
                .any(|attribute| attribute.starts_with("on") && attribute.contains('='));
            assert!(!handler, "inline event handler in <{tag}>");
        }
        assert!(!lower.contains("javascript:"), "javascript: URL");
        assert!(lower.contains("href=\"/ui/app.css\""));
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
    }

    #[test]
    fn the_script_never_writes_html_from_data() {
        for forbidden in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!SCRIPT.contains(forbidden), "app.js uses {forbidden}");
        }
        // The token lives in the session only, never in a cookie, the URL or localStorage.
        for forbidden in [
            "document.cookie",
            "localStorage",
            "location.hash",
            "history.",
        ] {
            assert!(!SCRIPT.contains(forbidden), "app.js uses {forbidden}");
        }
    }
}
