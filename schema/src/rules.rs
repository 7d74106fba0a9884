//! The rules of the contract as functions. The schemas under `schemas/v1` say most of them again
//! as patterns (what a pattern allows, its rule allows: `validate`'s tests hold them together);
//! the functions word each refusal for people and parse what the edge needs (CIDRs, services,
//! selectors). Each check is a pure function of one value and returns a lowercase message on
//! failure, so the edge, the provider's offline validation and the connector share exactly the
//! same rules.

use std::net::IpAddr;

use ipnet::IpNet;

/// Longest fully qualified domain name, in characters, without a trailing dot.
const MAX_FQDN: usize = 253;

/// A tunnel or policy name: `[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?`.
pub fn check_name(name: &str) -> Result<(), String> {
    if is_dns_label(name) {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid name: use 1 to 63 lowercase letters, digits and '-', starting and ending with a letter or digit"
        ))
    }
}

/// A Kubernetes label key: an optional DNS-subdomain prefix and `/`, then a name of at most 63
/// characters of `[A-Za-z0-9._-]` that starts and ends alphanumeric.
pub fn check_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && (prefix.is_empty() || prefix.len() > MAX_FQDN || !prefix.split('.').all(is_dns_label))
    {
        return Err(format!(
            "label key {key:?} has an invalid prefix: it must be a lowercase DNS subdomain of at most 253 characters"
        ));
    }
    if !is_label_name(name) {
        return Err(format!(
            "label key {key:?} is invalid: the name part must be 1 to 63 characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// A Kubernetes label value: empty, or what a label key's name part may be.
pub fn check_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() || is_label_name(value) {
        Ok(())
    } else {
        Err(format!(
            "label value {value:?} is invalid: use at most 63 characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
        ))
    }
}

/// An IP network in CIDR notation; a bare address means that single host.
pub fn parse_cidr(text: &str) -> Result<IpNet, String> {
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net);
    }
    if let Ok(addr) = text.parse::<IpAddr>() {
        return Ok(IpNet::from(addr));
    }
    Err(format!(
        "{text:?} is not a CIDR block such as 10.0.0.0/8, 2001:db8::/32 or a single address"
    ))
}

/// A path pattern: starts with `/`; `*` matches within one segment; `**` only as a trailing `/**`.
pub fn check_path_pattern(pattern: &str) -> Result<(), String> {
    if !pattern.starts_with('/') {
        return Err(format!("path pattern {pattern:?} must start with '/'"));
    }
    if pattern
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '?' || c == '#')
    {
        return Err(format!(
            "path pattern {pattern:?} may not contain spaces, control characters, '?' or '#'"
        ));
    }
    let body = pattern.strip_suffix("/**").unwrap_or(pattern);
    if body.contains("**") {
        return Err(format!(
            "path pattern {pattern:?} may use '**' only as a trailing '/**'"
        ));
    }
    Ok(())
}

/// Does `path` match `pattern` (already checked by [`check_path_pattern`])?
pub fn path_matches(pattern: &str, path: &str) -> bool {
    if let Some(prefix) = pattern.strip_suffix("/**") {
        // `/api/**` matches `/api` itself and everything below it.
        if segments_match(prefix, path) {
            return true;
        }
        let pattern_segments = prefix.split('/').count();
        let mut cut = path.match_indices('/').map(|(i, _)| i);
        // Keep as many segments of `path` as the prefix has, then require more to follow.
        return match cut.nth(pattern_segments - 1) {
            Some(end) => segments_match(prefix, &path[..end]),
            None => false,
        };
    }
    segments_match(pattern, path)
}

fn segments_match(pattern: &str, path: &str) -> bool {
    let mut pattern_parts = pattern.split('/');
    let mut path_parts = path.split('/');
    loop {
        match (pattern_parts.next(), path_parts.next()) {
            (None, None) => return true,
            (Some(p), Some(s)) if glob_segment(p, s) => {}
            _ => return false,
        }
    }
}

/// `*` matches any run of characters inside one segment.
fn glob_segment(pattern: &str, segment: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = segment.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// A path route's prefix: a literal path starting with `/`; no `*`, `?`, `#`, whitespace,
/// control characters, empty (`//`), `.` or `..` segments. It covers itself and everything
/// below it ([`prefix_covers`]).
pub fn check_path_prefix(prefix: &str) -> Result<(), String> {
    if !prefix.starts_with('/') {
        return Err(format!("path prefix {prefix:?} must start with '/'"));
    }
    if prefix.len() > 1024 {
        return Err(format!(
            "path prefix {prefix:?} is longer than 1024 characters"
        ));
    }
    if prefix
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || matches!(c, '?' | '#' | '*'))
    {
        return Err(format!(
            "path prefix {prefix:?} is a literal path: no '*', '?', '#', spaces or control characters (/api covers /api and everything below it)"
        ));
    }
    let inner = prefix[1..].strip_suffix('/').unwrap_or(&prefix[1..]);
    if !inner.is_empty()
        && inner
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(format!(
            "path prefix {prefix:?} may not have empty, '.' or '..' segments"
        ));
    }
    Ok(())
}

/// Does the path route `prefix` cover `path`? `/api` covers `/api` and `/api/…`, not
/// `/apiary`; `/api/` covers `/api/…` only; `/` covers everything.
pub fn prefix_covers(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        None => false,
        Some(rest) => rest.is_empty() || prefix.ends_with('/') || rest.starts_with('/'),
    }
}

/// A hostname: a lowercase fully qualified domain name of at least two labels, no trailing dot.
pub fn check_fqdn(hostname: &str) -> Result<(), String> {
    let ok = hostname.len() <= MAX_FQDN
        && hostname.split('.').count() >= 2
        && hostname.split('.').all(is_dns_label);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{hostname:?} is not a lowercase fully qualified domain name such as app.example.com"
        ))
    }
}

/// A hostname as declared: a fully qualified domain name ([`check_fqdn`]), or a wildcard
/// `*.` followed by one (`*.dev.example.com`), which serves every name one label below it.
pub fn check_hostname(hostname: &str) -> Result<(), String> {
    match hostname.strip_prefix("*.") {
        Some(parent) if check_fqdn(parent).is_ok() && hostname.len() <= MAX_FQDN => Ok(()),
        _ if check_fqdn(hostname).is_ok() => Ok(()),
        _ => Err(format!(
            "{hostname:?} is not a lowercase fully qualified domain name such as app.example.com, or a wildcard such as *.dev.example.com"
        )),
    }
}

/// The wildcard hostname that covers `name` (`*.dev.example.com` for `a.dev.example.com`):
/// one label replaced, so a wildcard covers the names exactly one label below it, as a
/// wildcard certificate does. `None` for a name of fewer than three labels or a wildcard.
pub fn wildcard_of(name: &str) -> Option<String> {
    let (first, parent) = name.split_once('.')?;
    if first == "*" || first.is_empty() || !parent.contains('.') {
        return None;
    }
    Some(format!("*.{parent}"))
}

/// Is `hostname` inside `zone` (equal to it or a subdomain of it)?
pub fn in_zone(hostname: &str, zone: &str) -> bool {
    hostname == zone
        || hostname
            .strip_suffix(zone)
            .is_some_and(|rest| rest.ends_with('.'))
}

/// Headers a policy's `rules` may not add, set or remove: those that frame the message or the
/// connection (changing them would break or smuggle requests), and the edge's own.
const RULE_FORBIDDEN_HEADERS: [&str; 10] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
    "strict-transport-security",
];

/// A header name in a policy's `rules`: a valid HTTP field name, none of the framing headers,
/// not `Strict-Transport-Security` (that is `hsts`), nothing of the edge's own (`x-postern-…`,
/// `x-forwarded-…`, `x-request-id`).
pub fn check_rule_header(name: &str) -> Result<(), String> {
    if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err(format!("{name:?} is not a valid header name"));
    }
    let lower = name.to_ascii_lowercase();
    if RULE_FORBIDDEN_HEADERS.contains(&lower.as_str())
        || lower.starts_with("x-postern-")
        || lower.starts_with("x-forwarded-")
        || lower == "x-request-id"
    {
        return Err(format!(
            "header {name:?} cannot be changed by a rule: it frames the message or is the edge's \
             own (use hsts for Strict-Transport-Security)"
        ));
    }
    Ok(())
}

/// How the connector speaks to an origin, from the service's scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OriginScheme {
    /// `http://`: HTTP/1.1 in cleartext.
    Http,
    /// `https://`: TLS, then HTTP/1.1 (or HTTP/2 by ALPN when the origin settings say
    /// `http2`).
    Https,
    /// `h2c://`: HTTP/2 in cleartext with prior knowledge (gRPC servers without TLS).
    H2c,
}

impl OriginScheme {
    /// Is the connection to the origin TLS?
    pub fn is_tls(self) -> bool {
        self == OriginScheme::Https
    }
}

/// What a hostname's `service` says the connector should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Service {
    /// Forward to an origin over HTTP/1.1, HTTPS or HTTP/2; `authority` is where to connect
    /// and `path_prefix` a prefix (without trailing `/`) put before every request path.
    Origin {
        /// `http`, `https` or `h2c`.
        scheme: OriginScheme,
        /// The authority, `host[:port]`.
        authority: String,
        /// A path prefix, empty or starting with `/` and not ending with one.
        path_prefix: String,
    },
    /// Answer every request with this status and an empty body.
    Status(u16),
}

/// The `host:port` a TLS passthrough hostname's `service` names: an `https://` origin without
/// a path (port 443 when left out); `None` for any other service.
pub fn passthrough_address(service: &Service) -> Option<String> {
    match service {
        Service::Origin {
            scheme: OriginScheme::Https,
            authority,
            path_prefix,
        } if path_prefix.is_empty() => {
            let authority: http::uri::Authority = authority.parse().ok()?;
            let port = authority.port_u16().unwrap_or(443);
            Some(format!("{}:{port}", authority.host()))
        }
        _ => None,
    }
}

/// Parses a `service`: `http://host[:port][/path]`, `https://…`, `h2c://…` or
/// `http_status:NNN`.
pub fn parse_service(service: &str) -> Result<Service, String> {
    if let Some(text) = service.strip_prefix("http_status:") {
        return match text.parse::<u16>() {
            Ok(code) if (100..=599).contains(&code) && code.to_string() == text => {
                Ok(Service::Status(code))
            }
            _ => Err(format!(
                "service {service:?} must be http_status: followed by a status code from 100 to 599"
            )),
        };
    }
    let bad = || {
        format!(
            "service {service:?} must be an origin URL such as http://localhost:4000, https://10.0.0.5 or h2c://localhost:50051, or http_status:NNN"
        )
    };
    let uri: http::Uri = service.parse().map_err(|_| bad())?;
    let scheme = match uri.scheme_str() {
        Some("http") => OriginScheme::Http,
        Some("https") => OriginScheme::Https,
        Some("h2c") => OriginScheme::H2c,
        _ => return Err(bad()),
    };
    let authority = uri.authority().ok_or_else(bad)?;
    if authority.as_str().contains('@') || authority.host().is_empty() {
        return Err(bad());
    }
    // `http` keeps a port it cannot read (`:99999`, or an empty one) in the authority.
    if authority.as_str().len() > authority.host().len() && authority.port_u16().is_none() {
        return Err(bad());
    }
    if uri.query().is_some() || service.contains('#') {
        return Err(format!(
            "service {service:?} may not carry a query or a fragment"
        ));
    }
    let path_prefix = uri.path().trim_end_matches('/').to_string();
    Ok(Service::Origin {
        scheme,
        authority: authority.as_str().to_string(),
        path_prefix,
    })
}

/// A TCP service's origin, `tcp://host:port`, as the connector dials it: `host:port` (an IPv6
/// host keeps its brackets).
pub fn parse_tcp_service(service: &str) -> Result<String, String> {
    let bad = || {
        format!(
            "service {service:?} must be tcp://host:port, such as tcp://127.0.0.1:22 or tcp://[::1]:5432"
        )
    };
    let rest = service.strip_prefix("tcp://").ok_or_else(bad)?;
    if rest.contains('@') {
        return Err(bad());
    }
    let authority: http::uri::Authority = rest.parse().map_err(|_| bad())?;
    let host = authority.host();
    let port_given = rest.len() > host.len() + 1;
    let host_ok = if let Some(inner) = host.strip_prefix('[') {
        inner
            .strip_suffix(']')
            .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok())
    } else {
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'))
    };
    match authority.port_u16() {
        Some(port) if port > 0 && host_ok && port_given && authority.as_str() == rest => {
            Ok(rest.to_string())
        }
        _ => Err(bad()),
    }
}

/// A route weight: 1 to 100.
pub fn check_weight(weight: i64) -> Result<(), String> {
    if (1..=100).contains(&weight) {
        Ok(())
    } else {
        Err(format!("weight {weight} must be between 1 and 100"))
    }
}

/// An HTTP method name in upper case, such as `GET`.
pub fn check_method(method: &str) -> Result<(), String> {
    if !method.is_empty() && method.len() <= 20 && method.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(format!(
            "{method:?} is not an HTTP method in upper case, such as GET or POST"
        ))
    }
}

/// A PEM public key for RS256 or ES256 (its contents are checked by the edge).
pub fn check_public_key_pem(pem: &str) -> Result<(), String> {
    let trimmed = pem.trim();
    let framed = ["PUBLIC KEY", "RSA PUBLIC KEY"].iter().any(|label| {
        trimmed.starts_with(&format!("-----BEGIN {label}-----"))
            && trimmed.ends_with(&format!("-----END {label}-----"))
    });
    if framed {
        Ok(())
    } else {
        Err(
            "not a PEM public key: expected -----BEGIN PUBLIC KEY----- … -----END PUBLIC KEY-----"
                .into(),
        )
    }
}

/// `origin.ca_cert_pem`: one or more PEM certificates (their contents are checked by the
/// connector, which uses them).
pub fn check_ca_cert_pem(pem: &str) -> Result<(), String> {
    let trimmed = pem.trim();
    if trimmed.starts_with("-----BEGIN CERTIFICATE-----")
        && trimmed.ends_with("-----END CERTIFICATE-----")
    {
        Ok(())
    } else {
        Err("not PEM certificates: expected -----BEGIN CERTIFICATE----- … -----END CERTIFICATE----- (one or more)".into())
    }
}

/// `origin.http2` with a service: HTTP/2 by ALPN needs TLS; cleartext HTTP/2 is `h2c://`.
pub fn check_http2(service: &Service, http2: bool) -> Result<(), String> {
    match service {
        Service::Origin {
            scheme: OriginScheme::Http,
            ..
        } if http2 => Err("http2 needs an https:// service (HTTP/2 by ALPN); for HTTP/2 without TLS write the service as h2c://host:port".into()),
        _ => Ok(()),
    }
}

/// The URL of an identity provider or of a JWKS: `https://`, or `http://` only on a loopback
/// host (`localhost`, `127.x.y.z`, `[::1]`) for development and tests; no credentials, no
/// fragment.
pub fn check_identity_url(url: &str) -> Result<(), String> {
    let bad = |why: &str| format!("{url:?} is not a usable identity URL: {why}");
    let uri: http::Uri = url.parse().map_err(|_| bad("it does not parse as a URL"))?;
    let authority = uri.authority().ok_or_else(|| bad("it has no host"))?;
    if authority.as_str().contains('@') {
        return Err(bad("it may not carry credentials"));
    }
    if url.contains('#') || url.contains(char::is_whitespace) {
        return Err(bad("it may not carry a fragment or blanks"));
    }
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if is_loopback_host(authority.host()) => Ok(()),
        Some("http") => Err(bad(
            "use https:// (http:// is accepted only on a loopback address)",
        )),
        _ => Err(bad("use an https:// URL")),
    }
}

/// `localhost`, an address in 127.0.0.0/8, or `[::1]`.
pub fn is_loopback_host(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A password hash in PHC form, as `basic_auth` takes it: argon2 (`$argon2id$…`, `$argon2i$…`,
/// `$argon2d$…`) or bcrypt (`$2a$`, `$2b$`, `$2y$` with a two-digit cost and 53 characters).
/// That the hash inside is well formed is checked by the edge.
pub fn check_password_hash(hash: &str) -> Result<(), String> {
    let argon2 = ["$argon2id$", "$argon2i$", "$argon2d$"]
        .iter()
        .any(|prefix| hash.starts_with(prefix) && hash.len() > prefix.len())
        && !hash.contains(char::is_whitespace);
    let bcrypt = ["$2a$", "$2b$", "$2y$"].iter().any(|prefix| {
        hash.strip_prefix(prefix).is_some_and(|rest| {
            let bytes = rest.as_bytes();
            bytes.len() == 56
                && bytes[..2].iter().all(u8::is_ascii_digit)
                && bytes[2] == b'$'
                && bytes[3..]
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'.' || *b == b'/')
        })
    });
    if argon2 || bcrypt {
        Ok(())
    } else {
        Err(
            "not a password hash in PHC form: give an argon2 ($argon2id$...) or bcrypt ($2b$...) \
             hash, never the password"
                .into(),
        )
    }
}

/// An RFC 3339 date-time such as `2027-01-31T12:00:00Z` (an offset instead of `Z` is taken
/// too), as Unix seconds.
pub fn parse_timestamp(text: &str) -> Result<i64, String> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(time::OffsetDateTime::unix_timestamp)
        .map_err(|_| format!("{text:?} is not an RFC 3339 date-time such as 2027-01-31T12:00:00Z"))
}

/// Unix seconds as an RFC 3339 date-time in UTC, such as `2027-01-31T12:00:00Z`; `None` out
/// of the representable years.
pub fn format_timestamp(unix: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// Parses a label selector written `k=v,k2=v2` (as in `?selector=`): terms separated by commas,
/// each a label key, `=` and a label value (which may be empty), nothing else; the empty
/// selector matches every tunnel. A key given twice keeps its last value.
pub fn parse_selector(text: &str) -> Result<std::collections::BTreeMap<String, String>, String> {
    let mut selector = std::collections::BTreeMap::new();
    if text.is_empty() {
        return Ok(selector);
    }
    for term in text.split(',') {
        let (key, value) = term
            .split_once('=')
            .ok_or_else(|| format!("selector term {term:?} must be key=value"))?;
        check_label_key(key)?;
        check_label_value(value)?;
        selector.insert(key.to_string(), value.to_string());
    }
    Ok(selector)
}

/// Writes a selector as `k=v,k2=v2`, keys sorted.
pub fn format_selector(selector: &std::collections::BTreeMap<String, String>) -> String {
    selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Do `labels` carry every key and value of `selector`?
pub fn selector_matches(
    selector: &std::collections::BTreeMap<String, String>,
    labels: &std::collections::BTreeMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn is_dns_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

fn is_label_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_passthrough_address_is_an_https_origins_host_and_port() {
        let address = |service: &str| passthrough_address(&parse_service(service).ok()?);
        assert_eq!(
            address("https://db.internal").as_deref(),
            Some("db.internal:443")
        );
        assert_eq!(
            address("https://127.0.0.1:8443").as_deref(),
            Some("127.0.0.1:8443")
        );
        assert_eq!(address("https://[::1]:5000").as_deref(), Some("[::1]:5000"));
        assert_eq!(address("https://127.0.0.1:8443/base"), None);
        assert_eq!(address("http://127.0.0.1:8443"), None);
        assert_eq!(address("http_status:204"), None);
    }

    #[test]
    fn label_keys_follow_kubernetes_syntax() {
        for good in ["release", "app.kubernetes.io/name", "a", "A_b.c-D", "x/y"] {
            assert!(check_label_key(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "Bad/x",
            "a/",
            "/a",
            "a b",
            &"k".repeat(64),
            "a/b/c",
            "ü",
        ] {
            assert!(check_label_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn label_values_may_be_empty() {
        assert!(check_label_value("").is_ok());
        assert!(check_label_value("stable").is_ok());
        assert!(check_label_value("v1.2_3").is_ok());
        assert!(check_label_value("-x").is_err());
        assert!(check_label_value("has space").is_err());
        assert!(check_label_value(&"v".repeat(64)).is_err());
    }

    #[test]
    fn cidrs_accept_networks_and_single_addresses() {
        assert_eq!(parse_cidr("10.0.0.0/8").map(|n| n.prefix_len()), Ok(8));
        assert_eq!(parse_cidr("127.0.0.2").map(|n| n.prefix_len()), Ok(32));
        assert_eq!(parse_cidr("::1").map(|n| n.prefix_len()), Ok(128));
        for bad in ["10.0.0.0/33", "300.0.0.1/8", "abc", "", "10.0.0.0/"] {
            assert!(parse_cidr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn path_patterns_glob_within_segments() {
        let table = [
            ("/", "/", true),
            ("/api/*", "/api/users", true),
            ("/api/*", "/api/users/1", false),
            ("/api/**", "/api", true),
            ("/api/**", "/api/users/1", true),
            ("/api/**", "/apiary", false),
            ("/api/*/items", "/api/7/items", true),
            ("/v*/ping", "/v2/ping", true),
            ("/v*/ping", "/x2/ping", false),
            ("/a*b", "/ab", true),
            ("/a*b", "/axxb", true),
            ("/a*b", "/axxbc", false),
            ("/health", "/health", true),
            ("/health", "/healthz", false),
            ("/**", "/anything/at/all", true),
        ];
        for (pattern, path, want) in table {
            assert!(check_path_pattern(pattern).is_ok(), "{pattern}");
            assert_eq!(path_matches(pattern, path), want, "{pattern} vs {path}");
        }
        for bad in ["api", "/a/**/b", "/a**", "/a b", "/a?x"] {
            assert!(check_path_pattern(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn path_prefixes_cover_themselves_and_what_is_below() {
        let table = [
            ("/", "/", true),
            ("/", "/anything/at/all", true),
            ("/api", "/api", true),
            ("/api", "/api/users/1", true),
            ("/api", "/apiary", false),
            ("/api", "/", false),
            ("/api/", "/api/users", true),
            ("/api/", "/api", false),
            ("/a/b", "/a/b/c", true),
            ("/a/b", "/a", false),
        ];
        for (prefix, path, want) in table {
            assert!(check_path_prefix(prefix).is_ok(), "{prefix}");
            assert_eq!(prefix_covers(prefix, path), want, "{prefix} vs {path}");
        }
        for bad in [
            "api", "/api/*", "/a b", "/a?x", "/a//b", "/a/../b", "/./a", "", "/a#b",
        ] {
            assert!(check_path_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fqdns_are_lowercase_with_two_labels() {
        assert!(check_fqdn("app.example.com").is_ok());
        for bad in [
            "App.example.com",
            "example",
            "a..b",
            "-a.b",
            "a.b.",
            "a_b.com",
            "",
        ] {
            assert!(check_fqdn(bad).is_err(), "{bad}");
        }
        assert!(in_zone("app.example.com", "example.com"));
        assert!(in_zone("*.dev.example.com", "example.com"));
        for good in ["*.dev.example.com", "*.example.com", "app.example.com"] {
            assert!(check_hostname(good).is_ok(), "{good}");
        }
        for bad in [
            "*.com",
            "*",
            "a.*.example.com",
            "**.example.com",
            "*example.com",
            "*.Example.com",
        ] {
            assert!(check_hostname(bad).is_err(), "{bad}");
        }
        assert_eq!(
            wildcard_of("a.dev.example.com").as_deref(),
            Some("*.dev.example.com")
        );
        assert_eq!(
            wildcard_of("a.example.com").as_deref(),
            Some("*.example.com")
        );
        assert_eq!(wildcard_of("example.com"), None);
        assert_eq!(wildcard_of("*.dev.example.com"), None);
        assert!(in_zone("example.com", "example.com"));
        assert!(!in_zone("badexample.com", "example.com"));
    }

    #[test]
    fn services_are_origins_or_status_codes() {
        assert_eq!(
            parse_service("http://localhost:4000"),
            Ok(Service::Origin {
                scheme: OriginScheme::Http,
                authority: "localhost:4000".into(),
                path_prefix: String::new()
            })
        );
        assert_eq!(
            parse_service("https://10.0.0.5/base/"),
            Ok(Service::Origin {
                scheme: OriginScheme::Https,
                authority: "10.0.0.5".into(),
                path_prefix: "/base".into()
            })
        );
        assert_eq!(
            parse_service("h2c://127.0.0.1:50051"),
            Ok(Service::Origin {
                scheme: OriginScheme::H2c,
                authority: "127.0.0.1:50051".into(),
                path_prefix: String::new()
            })
        );
        assert_eq!(parse_service("http_status:404"), Ok(Service::Status(404)));
        for bad in [
            "ftp://x",
            "h2://x",
            "localhost:4000",
            "http_status:99",
            "http_status:600",
            "http_status:abc",
            "http_status:0404",
            "http://user@host",
            "http://host/?q=1",
            "http://host:99999",
            "http://host:",
            "",
        ] {
            assert!(parse_service(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tcp_services_are_host_and_port() {
        assert_eq!(
            parse_tcp_service("tcp://127.0.0.1:22").as_deref(),
            Ok("127.0.0.1:22")
        );
        assert_eq!(
            parse_tcp_service("tcp://[::1]:5432").as_deref(),
            Ok("[::1]:5432")
        );
        assert_eq!(
            parse_tcp_service("tcp://db.internal:6379").as_deref(),
            Ok("db.internal:6379")
        );
        for bad in [
            "tcp://host",
            "tcp://host:",
            "tcp://host:0",
            "tcp://host:65536",
            "tcp://user@host:22",
            "tcp://host:22/path",
            "tcp://[zz]:22",
            "http://host:22",
            "tcp://:22",
            "",
        ] {
            assert!(parse_tcp_service(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn selectors_round_trip() {
        let selector = parse_selector("release=canary,app=web").expect("valid");
        assert_eq!(format_selector(&selector), "app=web,release=canary");
        assert_eq!(parse_selector("").map(|s| s.len()), Ok(0));
        assert_eq!(
            parse_selector("x.io/tier=").map(|s| s["x.io/tier"].clone()),
            Ok(String::new())
        );
        for bad in [
            "release",
            "Bad Key=x",
            "release=canary, app=web",
            " release=canary",
            "a=b,",
            ",a=b",
            "a=b,,c=d",
            "a=b=c",
            "=b",
        ] {
            assert!(parse_selector(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn timestamps_read_rfc_3339_and_write_utc() {
        assert_eq!(parse_timestamp("2027-01-31T12:00:00Z"), Ok(1_801_396_800));
        assert_eq!(
            parse_timestamp("2027-01-31T13:00:00+01:00"),
            Ok(1_801_396_800)
        );
        assert_eq!(
            format_timestamp(1_801_396_800).as_deref(),
            Some("2027-01-31T12:00:00Z")
        );
        for bad in ["", "tomorrow", "2027-01-31", "2027-01-31 12:00:00"] {
            assert!(parse_timestamp(bad).is_err(), "{bad}");
        }
    }
}
