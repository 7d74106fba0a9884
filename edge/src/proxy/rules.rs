//! Header rules of the policies a request passed (`rules` on a policy): the HTTPS redirect,
//! request and response header edits, and HSTS. Each policy's rules apply in the order the
//! hostname (or path route) lists its policies. Names and values were validated when the
//! policy was written; one that would not parse is skipped.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode, request};
use postern_schema::api::{HeaderEdits, HeaderRules};
use postern_schema::ids::PolicyId;

use crate::body::{self, BoxBody};
use crate::catalog::Snapshot;

/// The rules of `policy_ids`, in order (policies without rules left out).
pub(super) fn of<'s>(snapshot: &'s Snapshot, policy_ids: &[PolicyId]) -> Vec<&'s HeaderRules> {
    policy_ids
        .iter()
        .filter_map(|id| snapshot.policies.get(id))
        .filter_map(|policy| policy.spec.rules.as_ref())
        .collect()
}

/// For a plain-HTTP request under a rule with `redirect_https`: 308 to the same host, path and
/// query on https (the default port).
pub(super) fn redirect(
    rules: &[&HeaderRules],
    scheme: &str,
    host: &str,
    parts: &request::Parts,
) -> Option<Response<BoxBody>> {
    if scheme != "http" || !rules.iter().any(|r| r.redirect_https == Some(true)) {
        return None;
    }
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let location = HeaderValue::from_str(&format!("https://{host}{path}")).ok()?;
    let mut response = Response::new(body::empty());
    *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
    response.headers_mut().insert(header::LOCATION, location);
    Some(response)
}

/// Applies the request header edits to the headers going to the origin.
pub(super) fn edit_request(rules: &[&HeaderRules], headers: &mut HeaderMap) {
    for edits in rules.iter().filter_map(|r| r.request_headers.as_ref()) {
        edit(edits, headers);
    }
}

/// Applies the response header edits, and on HTTPS the HSTS header, to the visitor's response.
pub(super) fn edit_response(rules: &[&HeaderRules], scheme: &str, headers: &mut HeaderMap) {
    for edits in rules.iter().filter_map(|r| r.response_headers.as_ref()) {
        edit(edits, headers);
    }
    if scheme == "https"
        && let Some(hsts) = rules.iter().rev().find_map(|r| r.hsts.as_ref())
        && let Ok(value) = HeaderValue::from_str(&hsts.header_value())
    {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, value);
    }
}

/// Remove, then set, then add.
fn edit(edits: &HeaderEdits, headers: &mut HeaderMap) {
    for name in edits.remove.iter().flatten() {
        if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
            headers.remove(name);
        }
    }
    let parsed = |map: &Option<std::collections::BTreeMap<String, String>>| {
        map.iter()
            .flatten()
            .filter_map(|(name, value)| {
                Some((
                    HeaderName::from_bytes(name.as_bytes()).ok()?,
                    HeaderValue::from_str(value).ok()?,
                ))
            })
            .collect::<Vec<_>>()
    };
    for (name, value) in parsed(&edits.set) {
        headers.insert(name, value);
    }
    for (name, value) in parsed(&edits.add) {
        headers.append(name, value);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use postern_schema::api::Hsts;

    use super::*;

    fn rules() -> HeaderRules {
        HeaderRules {
            request_headers: Some(HeaderEdits {
                remove: Some(vec!["X-Debug".into()]),
                set: Some(BTreeMap::from([("X-Env".into(), "prod".into())])),
                add: Some(BTreeMap::from([("Via-Rule".into(), "b".into())])),
            }),
            response_headers: Some(HeaderEdits {
                remove: Some(vec!["server".into()]),
                set: None,
                add: None,
            }),
            redirect_https: Some(true),
            hsts: Some(Hsts {
                max_age: 600,
                include_subdomains: Some(true),
            }),
        }
    }

    #[test]
    fn request_edits_remove_then_set_then_add() {
        let rules = rules();
        let mut headers = HeaderMap::new();
        headers.insert("x-debug", HeaderValue::from_static("1"));
        headers.insert("x-env", HeaderValue::from_static("dev"));
        headers.insert("via-rule", HeaderValue::from_static("a"));
        edit_request(&[&rules], &mut headers);
        assert!(headers.get("x-debug").is_none());
        assert_eq!(headers["x-env"], "prod");
        let via: Vec<_> = headers.get_all("via-rule").iter().collect();
        assert_eq!(via, ["a", "b"]);
    }

    #[test]
    fn hsts_only_on_https_and_redirect_only_on_http() {
        let rules = rules();
        let mut headers = HeaderMap::new();
        headers.insert("server", HeaderValue::from_static("origin/1"));
        edit_response(&[&rules], "http", &mut headers);
        assert!(headers.get("server").is_none());
        assert!(headers.get(header::STRICT_TRANSPORT_SECURITY).is_none());
        edit_response(&[&rules], "https", &mut headers);
        assert_eq!(
            headers[header::STRICT_TRANSPORT_SECURITY],
            "max-age=600; includeSubDomains"
        );
        let (parts, ()) = http::Request::get("/a/b?c=d")
            .body(())
            .expect("request")
            .into_parts();
        let answer = redirect(&[&rules], "http", "app.example.com", &parts).expect("308");
        assert_eq!(answer.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(
            answer.headers()[header::LOCATION],
            "https://app.example.com/a/b?c=d"
        );
        assert!(redirect(&[&rules], "https", "app.example.com", &parts).is_none());
    }
}
