//! `policy.schema.json`: who may reach a hostname, how, and how often.

use serde::{Deserialize, Serialize};

use crate::ids::PolicyId;
use crate::secret::Secret;

/// What a client writes for a policy. Omitted lists are empty and an omitted mode is `enforce`;
/// [`PolicySpec::normalized`] also fills the rate limit's `burst` and `per`, as the edge stores them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicySpec {
    /// Unique among policies.
    pub name: String,
    /// Enforce or only report.
    #[serde(default)]
    pub mode: PolicyMode,
    /// CIDR blocks that may connect; empty allows every address.
    #[serde(default)]
    pub allow_ips: Vec<String>,
    /// CIDR blocks that may not connect; deny wins over allow.
    #[serde(default)]
    pub deny_ips: Vec<String>,
    /// Allowed HTTP methods; empty allows every method.
    #[serde(default)]
    pub allow_methods: Vec<String>,
    /// Allowed path patterns; empty allows every path.
    #[serde(default)]
    pub allow_paths: Vec<String>,
    /// A token-bucket rate limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Require a valid JWT bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtSettings>,
    /// Header rules, the HTTPS redirect and HSTS for the requests the policy lets through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<HeaderRules>,
    /// Require HTTP Basic credentials of one of the listed users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuthSettings>,
    /// Require a person logged in at an OpenID Connect provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcSettings>,
}

/// `rules`: what the edge changes on the requests a policy lets through and on their
/// responses. Policies apply in order, each one's edits after the previous one's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderRules {
    /// Edits of the request before it goes to the origin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_headers: Option<HeaderEdits>,
    /// Edits of the response before it goes to the visitor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_headers: Option<HeaderEdits>,
    /// Answer plain-HTTP requests with 308 to the same URL on https.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_https: Option<bool>,
    /// `Strict-Transport-Security` on HTTPS responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hsts: Option<Hsts>,
}

/// Header edits, applied in the order remove, set, add.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderEdits {
    /// Headers removed (every value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove: Option<Vec<String>>,
    /// Headers set to one value, replacing any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<std::collections::BTreeMap<String, String>>,
    /// Values added beside any the header has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add: Option<std::collections::BTreeMap<String, String>>,
}

/// `hsts`: HTTP Strict Transport Security.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hsts {
    /// Seconds browsers remember to use HTTPS only.
    pub max_age: u64,
    /// The rule covers every subdomain too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_subdomains: Option<bool>,
}

impl Hsts {
    /// The `Strict-Transport-Security` value.
    pub fn header_value(&self) -> String {
        match self.include_subdomains {
            Some(true) => format!("max-age={}; includeSubDomains", self.max_age),
            _ => format!("max-age={}", self.max_age),
        }
    }
}

impl PolicySpec {
    /// The spec with every default filled in, as the edge stores and returns it.
    pub fn normalized(mut self) -> Self {
        if let Some(rate_limit) = &mut self.rate_limit {
            rate_limit.burst.get_or_insert(rate_limit.default_burst());
            rate_limit.per.get_or_insert(RateLimitKey::ClientIp);
        }
        self
    }
}

/// Whether a policy blocks or only reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyMode {
    /// Block what the policy denies.
    #[default]
    Enforce,
    /// Let everything through; count and log what would have been blocked.
    Report,
}

/// A token bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Refill rate.
    pub requests_per_second: f64,
    /// Bucket capacity; defaults to `requests_per_second` rounded up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// What one bucket counts; defaults to `client_ip`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per: Option<RateLimitKey>,
}

impl RateLimit {
    /// `requests_per_second` rounded up, at least 1.
    pub fn default_burst(&self) -> u32 {
        // The schema bounds requests_per_second to (0, 1e6], so the cast cannot overflow.
        (self.requests_per_second.ceil() as u32).max(1)
    }
}

/// What one rate-limit bucket counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitKey {
    /// One bucket per client IP address.
    ClientIp,
    /// One bucket for the whole hostname.
    Hostname,
}

/// JWT requirements.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwtSettings {
    /// Required `iss`, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Accepted `aud` values; empty accepts any audience.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audiences: Option<Vec<String>>,
    /// The HS256 shared secret: write-only, never in an answer of the edge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hs256_secret: Option<Secret>,
    /// RS256/ES256 public keys (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_keys_pem: Option<Vec<String>>,
    /// A JWKS the edge fetches, caches and fetches again on an unknown `kid`: `https://`, or
    /// `http://` on a loopback address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
}

/// HTTP Basic authentication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BasicAuthSettings {
    /// User name to password hash in PHC form (argon2: `$argon2id$...`; bcrypt: `$2b$...`).
    pub users: std::collections::BTreeMap<String, String>,
}

/// Login at an OpenID Connect provider (authorization code flow with PKCE).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OidcSettings {
    /// The provider's issuer URL: `https://`, or `http://` on a loopback address.
    pub issuer: String,
    /// The client id registered at the provider.
    pub client_id: String,
    /// The client secret: write-only, never in an answer of the edge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<Secret>,
    /// Scopes asked for; `openid` is always asked for. Defaults to `openid email profile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// Emails let in; with `allowed_email_domains` and `allowed_groups` all empty, every
    /// person the provider logs in is let in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_emails: Option<Vec<String>>,
    /// Email domains let in (`example.com`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_email_domains: Option<Vec<String>>,
    /// Groups let in, read from the claim `groups_claim`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_groups: Option<Vec<String>>,
    /// The ID token claim that lists the person's groups; defaults to `groups`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups_claim: Option<String>,
    /// How long a login lasts (the duration grammar); defaults to `12h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_duration: Option<String>,
}

/// A policy as the edge returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    /// Assigned by the edge.
    pub id: PolicyId,
    /// What the client wrote, with defaults filled in.
    #[serde(flatten)]
    pub spec: PolicySpec,
    /// Increases with every change.
    pub version: u64,
    /// RFC 3339.
    pub created_at: String,
}
