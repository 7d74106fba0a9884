//! The pure core of policy enforcement: request facts and one compiled policy in, an outcome
//! out. No I/O and no clock: the caller passes the time in [`RequestFacts::now`]. The only state
//! touched is the policy's in-memory token buckets.
//!
//! Checks run in the order the design lists them, and the first that fails decides: client IP
//! (deny wins over allow), method, path, JWT, basic credentials, login, rate limit. So a request refused for any other
//! reason never spends a token.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use postern_schema::rules;

use super::compile::CompiledPolicy;
use super::jwt::JwtRejection;
use super::path::canonical_path;
use super::session::Session;
use crate::client::ClientKey;

/// What the policy engine needs to know about one request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestFacts<'a> {
    /// The visitor's address (the TCP peer; IPv4-mapped IPv6 addresses count as IPv4).
    pub(crate) client_ip: IpAddr,
    /// The method, e.g. `GET`.
    pub(crate) method: &'a str,
    /// The request path without the query string, e.g. `/api/users`.
    pub(crate) path: &'a str,
    /// The raw `Authorization` header, if any.
    pub(crate) authorization: Option<&'a [u8]>,
    /// The person the request's session cookie says it is from (already decrypted and bound
    /// to the hostname), if any.
    pub(crate) session: Option<&'a Session>,
    /// When the request arrived.
    pub(crate) now: Now,
}

impl RequestFacts<'static> {
    /// One connection from `client_ip`, accepted now (a TCP service's or a TLS passthrough
    /// hostname's): no method, path, credentials or session; one connection is one request.
    pub(crate) fn connection(client_ip: IpAddr) -> Self {
        Self {
            client_ip,
            method: "",
            path: "/",
            authorization: None,
            session: None,
            now: Now::read(),
        }
    }
}

/// A moment, on both clocks the checks need.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Now {
    /// For token buckets.
    pub(crate) monotonic: Instant,
    /// Since the Unix epoch, for JWT `exp` and `nbf`.
    pub(crate) unix: Duration,
}

impl Now {
    /// Reads both clocks.
    pub(crate) fn read() -> Self {
        Self {
            monotonic: Instant::now(),
            unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default(),
        }
    }
}

/// Why a policy refuses a request. The `reason` label of `postern_edge_policy_decisions_total`
/// is [`Reason::as_str`], or `allow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Reason {
    /// The client address is denied, or not allowed (403).
    Ip,
    /// The method is not allowed (403).
    Method,
    /// The path matches no allowed pattern (403).
    Path,
    /// No `Authorization: Bearer` token (401).
    JwtMissing,
    /// The bearer token is not valid (401).
    JwtInvalid,
    /// Over the rate limit (429).
    RateLimit,
    /// No valid HTTP Basic credentials (401).
    BasicAuth,
    /// No login session (a browser is sent to log in; others get 401).
    Login,
    /// Logged in, but not one of the people let in (403).
    Person,
}

impl Reason {
    /// Every reason, in metric-label order.
    pub(crate) const ALL: [Reason; 9] = [
        Reason::Ip,
        Reason::Method,
        Reason::Path,
        Reason::JwtMissing,
        Reason::JwtInvalid,
        Reason::RateLimit,
        Reason::BasicAuth,
        Reason::Login,
        Reason::Person,
    ];

    /// The metric label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Ip => "ip",
            Self::Method => "method",
            Self::Path => "path",
            Self::JwtMissing => "jwt_missing",
            Self::JwtInvalid => "jwt_invalid",
            Self::RateLimit => "rate_limit",
            Self::BasicAuth => "basic_auth",
            Self::Login => "login",
            Self::Person => "person",
        }
    }

    /// The HTTP status a request refused for this reason gets.
    pub(crate) fn status(self) -> http::StatusCode {
        match self {
            Self::Ip | Self::Method | Self::Path | Self::Person => http::StatusCode::FORBIDDEN,
            Self::JwtMissing | Self::JwtInvalid | Self::BasicAuth | Self::Login => {
                http::StatusCode::UNAUTHORIZED
            }
            Self::RateLimit => http::StatusCode::TOO_MANY_REQUESTS,
        }
    }
}

/// What one policy says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Pass,
    Block(Block),
}

/// A refusal, with what the response and the logs need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Block {
    pub(crate) reason: Reason,
    /// For [`Reason::RateLimit`]: whole seconds, at least 1.
    pub(crate) retry_after_secs: Option<u64>,
    /// For [`Reason::JwtInvalid`]: what was wrong with the token.
    pub(crate) jwt: Option<JwtRejection>,
}

impl Block {
    fn new(reason: Reason) -> Self {
        Self {
            reason,
            retry_after_secs: None,
            jwt: None,
        }
    }
}

/// Checks one request against one policy, for a request to `hostname`.
pub(crate) fn evaluate(
    policy: &CompiledPolicy,
    hostname: &str,
    facts: &RequestFacts<'_>,
) -> Outcome {
    match check(policy, hostname, facts) {
        Ok(()) => Outcome::Pass,
        Err(block) => Outcome::Block(block),
    }
}

fn check(policy: &CompiledPolicy, hostname: &str, facts: &RequestFacts<'_>) -> Result<(), Block> {
    let client_ip = facts.client_ip.to_canonical();
    if !ip_allowed(policy, client_ip) {
        return Err(Block::new(Reason::Ip));
    }
    if let Some(methods) = &policy.allow_methods
        && !methods.iter().any(|m| m == facts.method)
    {
        return Err(Block::new(Reason::Method));
    }
    if let Some(patterns) = &policy.allow_paths {
        // The proxy refuses ambiguous paths (400) and forwards the canonical form before it
        // asks; a caller that did not gets a refusal rather than a guess.
        let path = canonical_path(facts.path).map_err(|_| Block::new(Reason::Path))?;
        if !patterns.iter().any(|p| rules::path_matches(p, &path)) {
            return Err(Block::new(Reason::Path));
        }
    }
    if let Some(jwt) = &policy.jwt {
        let token = bearer_token(facts.authorization).ok_or(Block::new(Reason::JwtMissing))?;
        let token = token.map_err(|rejection| Block {
            jwt: Some(rejection),
            ..Block::new(Reason::JwtInvalid)
        })?;
        jwt.verify(token, facts.now.unix.as_secs_f64())
            .map_err(|rejection| Block {
                jwt: Some(rejection),
                ..Block::new(Reason::JwtInvalid)
            })?;
    }
    if let Some(basic) = &policy.basic
        && basic.verify(facts.authorization).is_none()
    {
        return Err(Block::new(Reason::BasicAuth));
    }
    if let Some(oidc) = &policy.oidc {
        let session = facts
            .session
            .filter(|s| oidc.recognises(s, hostname, facts.now.unix.as_secs()))
            .ok_or(Block::new(Reason::Login))?;
        if !oidc.allows(session) {
            return Err(Block::new(Reason::Person));
        }
    }
    if let Some(limiter) = &policy.rate_limit {
        limiter
            .take(hostname, ClientKey::of(client_ip), facts.now.monotonic)
            .map_err(|exceeded| Block {
                retry_after_secs: Some(exceeded.retry_after_secs),
                ..Block::new(Reason::RateLimit)
            })?;
    }
    Ok(())
}

/// Deny wins; an empty allow list allows every address.
fn ip_allowed(policy: &CompiledPolicy, ip: IpAddr) -> bool {
    if policy.deny_ips.iter().any(|net| net.contains(&ip)) {
        return false;
    }
    match &policy.allow_ips {
        Some(allowed) => allowed.iter().any(|net| net.contains(&ip)),
        None => true,
    }
}

/// The bearer token of an `Authorization` header: `None` when there is none (no header, or
/// another scheme), `Some(Err)` when the header says `Bearer` but what follows cannot be a token.
fn bearer_token(header: Option<&[u8]>) -> Option<Result<&str, JwtRejection>> {
    let header = header?;
    let Ok(text) = std::str::from_utf8(header) else {
        return Some(Err(JwtRejection::Malformed));
    };
    let text = text.trim();
    let (scheme, rest) = text.split_once(' ').unwrap_or((text, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim();
    if token.is_empty() || token.contains(char::is_whitespace) {
        return Some(Err(JwtRejection::Malformed));
    }
    Some(Ok(token))
}

#[cfg(test)]
mod tests;
