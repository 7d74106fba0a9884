//! Turns a stored [`Policy`] into the form requests are checked against: CIDRs parsed, methods
//! and path patterns listed, JWT keys and password hashes decoded, rate-limit buckets attached. Done once per policy
//! version, never per request.

use std::sync::Arc;

use ipnet::IpNet;
use postern_schema::api::{Policy, PolicyMode};
use postern_schema::rules;

use super::basic::BasicVerifier;
use super::jwt::JwtVerifier;
use super::oidc::OidcPolicy;
use super::rate_limit::RateLimiter;

/// A policy ready for evaluation.
#[derive(Debug)]
pub(crate) struct CompiledPolicy {
    pub(crate) version: u64,
    /// The policy's name: the `policy` label of its metrics.
    pub(crate) name: Arc<str>,
    pub(crate) mode: PolicyMode,
    /// `None` allows every address.
    pub(crate) allow_ips: Option<Vec<IpNet>>,
    pub(crate) deny_ips: Vec<IpNet>,
    /// `None` allows every method.
    pub(crate) allow_methods: Option<Vec<String>>,
    /// `None` allows every path.
    pub(crate) allow_paths: Option<Vec<String>>,
    pub(crate) jwt: Option<JwtVerifier>,
    pub(crate) basic: Option<BasicVerifier>,
    pub(crate) oidc: Option<Arc<OidcPolicy>>,
    pub(crate) rate_limit: Option<Arc<RateLimiter>>,
}

/// Compiles `policy`. `previous` is the compiled form of an earlier version of the same policy:
/// its rate-limit buckets carry over when the limit itself did not change.
///
/// Entries the contract would have rejected (the API validates every write, so only a store
/// edited by hand has them) are logged and left out in the direction that blocks more: a bad
/// `allow_ips` entry allows nothing, a bad public key verifies nothing.
pub(crate) fn compile(policy: &Policy, previous: Option<&CompiledPolicy>) -> CompiledPolicy {
    let spec = &policy.spec;
    let name: Arc<str> = Arc::from(spec.name.as_str());
    let allow_ips =
        (!spec.allow_ips.is_empty()).then(|| parse_cidrs(&name, "allow_ips", &spec.allow_ips));
    let deny_ips = parse_cidrs(&name, "deny_ips", &spec.deny_ips);
    let allow_methods = (!spec.allow_methods.is_empty()).then(|| spec.allow_methods.clone());
    let allow_paths = (!spec.allow_paths.is_empty()).then(|| spec.allow_paths.clone());
    let jwt = spec.jwt.as_ref().map(|settings| {
        let (verifier, errors) = JwtVerifier::compile(settings);
        for error in errors {
            tracing::error!(policy = %name, %error, "ignoring a JWT public key that does not parse");
        }
        verifier
    });
    let basic = spec.basic_auth.as_ref().map(|settings| {
        let (verifier, errors) = BasicVerifier::compile(settings);
        for error in errors {
            tracing::error!(policy = %name, %error, "ignoring a basic_auth user whose hash does not parse");
        }
        verifier
    });
    let oidc = spec
        .oidc
        .as_ref()
        .map(|settings| Arc::new(OidcPolicy::compile(settings)));
    let rate_limit = spec.rate_limit.as_ref().map(|limit| {
        previous
            .and_then(|p| p.rate_limit.as_ref())
            .filter(|old| old.implements(limit))
            .cloned()
            .unwrap_or_else(|| Arc::new(RateLimiter::new(limit)))
    });
    CompiledPolicy {
        version: policy.version,
        name,
        mode: spec.mode,
        allow_ips,
        deny_ips,
        allow_methods,
        allow_paths,
        jwt,
        basic,
        oidc,
        rate_limit,
    }
}

fn parse_cidrs(policy: &str, field: &str, texts: &[String]) -> Vec<IpNet> {
    texts
        .iter()
        .filter_map(|text| match rules::parse_cidr(text) {
            Ok(net) => Some(net.trunc()),
            Err(error) => {
                tracing::error!(%policy, field, %error, "ignoring an entry that is not a CIDR block");
                None
            }
        })
        .collect()
}
