//! Rewriting between the visitor's HTTP and the tunnel's HTTP/2: hop-by-hop headers out,
//! `X-Forwarded-For`, `X-Forwarded-Proto` and the request id in, and WebSocket upgrades turned
//! into extended CONNECT (RFC 8441).

use std::net::SocketAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Uri, Version, request};
use postern_schema::wire::{CONFIG_VERSION_HEADER, ERROR_HEADER, strip_hop_by_hop};

use crate::body::BoxBody;

/// The request id header, set by the edge on the request and the response.
pub(super) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// How a visitor asked to switch protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Upgrade {
    /// HTTP/1.1 `Upgrade: websocket` (answered with 101).
    Http1WebSocket,
    /// HTTP/2 extended CONNECT with `:protocol` (answered with 200).
    ExtendedConnect,
}

/// Is this request a protocol upgrade the edge carries through the tunnel?
pub(super) fn upgrade_of(parts: &request::Parts) -> Option<Upgrade> {
    if parts.method == Method::CONNECT && parts.extensions.get::<hyper::ext::Protocol>().is_some() {
        return Some(Upgrade::ExtendedConnect);
    }
    let connection_upgrade = parts
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    let websocket = parts
        .headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"));
    (parts.method == Method::GET && connection_upgrade && websocket)
        .then_some(Upgrade::Http1WebSocket)
}

/// Removes every `x-postern-*` header: only the edge and the connector may set them.
pub(super) fn strip_internal(headers: &mut HeaderMap) {
    let internal: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("x-postern-"))
        .cloned()
        .collect();
    for name in internal {
        headers.remove(name);
    }
}

/// What the edge knows about the visitor's connection.
#[derive(Debug, Clone)]
pub(super) struct Visitor {
    /// The visitor's address.
    pub(super) peer: SocketAddr,
    /// `http` or `https`.
    pub(super) scheme: &'static str,
    /// The visitor's IP as `X-Forwarded-For` lists it, formatted once per connection.
    forwarded_ip: HeaderValue,
}

impl Visitor {
    /// A visitor connected from `peer` over `scheme` (`http` or `https`).
    pub(super) fn new(peer: SocketAddr, scheme: &'static str) -> Self {
        let ip = peer.ip().to_canonical().to_string();
        // An IP address is always a valid header value; the fallback is never taken.
        let forwarded_ip =
            HeaderValue::try_from(ip).unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Self {
            peer,
            scheme,
            forwarded_ip,
        }
    }
}

/// Turns the visitor's request head into the head of a tunnel stream for `host`.
pub(super) fn tunnel_request(
    mut parts: request::Parts,
    body: BoxBody,
    host: &str,
    visitor: &Visitor,
    request_id: &str,
    upgrade: Option<Upgrade>,
) -> Request<BoxBody> {
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let uri = Uri::builder()
        .scheme(visitor.scheme)
        .authority(host)
        .path_and_query(path)
        .build()
        .unwrap_or_default();
    strip_hop_by_hop(&mut parts.headers);
    strip_internal(&mut parts.headers);
    append_forwarded_for(&mut parts.headers, visitor);
    parts
        .headers
        .insert(X_FORWARDED_PROTO, HeaderValue::from_static(visitor.scheme));
    if let Ok(mut value) = HeaderValue::from_str(request_id) {
        // Unique to the request: in HPACK's table it would only push out headers that repeat
        // (each request would add one entry and evict another, at both ends), so it is sent
        // as a never-indexed literal.
        value.set_sensitive(true);
        parts.headers.insert(REQUEST_ID, value);
    }
    let mut request = Request::new(body);
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_2;
    *request.headers_mut() = parts.headers;
    match upgrade {
        Some(_) => {
            *request.method_mut() = Method::CONNECT;
            let protocol = parts
                .extensions
                .remove::<hyper::ext::Protocol>()
                .unwrap_or_else(|| hyper::ext::Protocol::from_static("websocket"));
            request.extensions_mut().insert(protocol);
        }
        None => *request.method_mut() = parts.method,
    }
    request
}

/// Sets the config version header of a tunnel request (per connection, so again on retry).
pub(super) fn set_config_version(request: &mut Request<BoxBody>, version: u64) {
    request.headers_mut().insert(
        HeaderName::from_static(CONFIG_VERSION_HEADER),
        HeaderValue::from(version),
    );
}

/// Cleans a response head coming from the tunnel: no hop-by-hop or internal headers, and the
/// request id added.
pub(super) fn clean_response_headers(headers: &mut HeaderMap, request_id: &str) {
    strip_hop_by_hop(headers);
    headers.remove(HeaderName::from_static(ERROR_HEADER));
    strip_internal(headers);
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert(REQUEST_ID, value);
    }
}

fn append_forwarded_for(headers: &mut HeaderMap, visitor: &Visitor) {
    let ip = &visitor.forwarded_ip;
    let previous = headers
        .get(&X_FORWARDED_FOR)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty());
    let value = match previous {
        Some(previous) => {
            let appended = format!("{previous}, {}", ip.to_str().unwrap_or_default());
            match HeaderValue::try_from(appended) {
                Ok(value) => value,
                Err(_) => return,
            }
        }
        None => ip.clone(),
    };
    headers.insert(X_FORWARDED_FOR, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(build: request::Builder) -> request::Parts {
        build.body(()).expect("valid request").into_parts().0
    }

    #[test]
    fn tunnel_requests_carry_forwarding_headers_and_no_internal_ones() {
        let head = parts(
            Request::post("/upload?x=1")
                .header("host", "app.example.com")
                .header("x-forwarded-for", "10.1.1.1")
                .header("x-postern-config-version", "999")
                .header("x-request-id", "visitor-chosen"),
        );
        let visitor = Visitor::new("127.0.0.2:5000".parse().expect("addr"), "https");
        let body = crate::body::empty();
        let request = tunnel_request(head, body, "app.example.com", &visitor, "r-1", None);
        assert_eq!(request.method(), Method::POST);
        assert_eq!(request.uri(), "https://app.example.com/upload?x=1");
        let headers = request.headers();
        assert_eq!(headers["x-forwarded-for"], "10.1.1.1, 127.0.0.2");
        assert_eq!(headers["x-forwarded-proto"], "https");
        assert_eq!(headers["x-request-id"], "r-1");
        assert!(
            headers["x-request-id"].is_sensitive(),
            "the request id must go as a never-indexed HPACK literal"
        );
        assert!(headers.get("x-postern-config-version").is_none());
        assert!(headers.get("host").is_none());
    }

    #[test]
    fn forwarded_for_names_the_visitor_once_per_hop() {
        let visitor = Visitor::new("[::ffff:10.0.0.7]:443".parse().expect("addr"), "http");
        for _ in 0..2 {
            let head = parts(Request::get("/").header("host", "a.example.com"));
            let body = crate::body::empty();
            let request = tunnel_request(head, body, "a.example.com", &visitor, "r", None);
            assert_eq!(request.headers()["x-forwarded-for"], "10.0.0.7");
        }
        let visitor = Visitor::new("[2001:db8::1]:443".parse().expect("addr"), "https");
        let head = parts(
            Request::get("/")
                .header("x-forwarded-for", " ")
                .header("host", "a.example.com"),
        );
        let body = crate::body::empty();
        let request = tunnel_request(head, body, "a.example.com", &visitor, "r", None);
        assert_eq!(request.headers()["x-forwarded-for"], "2001:db8::1");
    }

    #[test]
    fn websocket_upgrades_become_extended_connect() {
        let head = parts(
            Request::get("/ws")
                .header("connection", "keep-alive, Upgrade")
                .header("upgrade", "websocket")
                .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        );
        let upgrade = upgrade_of(&head);
        assert_eq!(upgrade, Some(Upgrade::Http1WebSocket));
        let visitor = Visitor::new("127.0.0.1:1".parse().expect("addr"), "http");
        let body = crate::body::empty();
        let request = tunnel_request(head, body, "a.example.com", &visitor, "r", upgrade);
        assert_eq!(request.method(), Method::CONNECT);
        assert_eq!(
            request
                .extensions()
                .get::<hyper::ext::Protocol>()
                .map(|p| p.as_str()),
            Some("websocket")
        );
        assert!(request.headers().get("upgrade").is_none());
        assert!(request.headers().get("sec-websocket-key").is_some());
        assert_eq!(upgrade_of(&parts(Request::get("/"))), None);
    }
}
