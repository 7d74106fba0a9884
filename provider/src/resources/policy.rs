//! `postern_policy`: who may reach a hostname, how and how often (IP lists, methods,
//! paths, a token-bucket rate limit, JWT, HTTP Basic users, people's login at an OpenID
//! provider). Defaults the edge fills in (`mode`, empty
//! lists, the rate limit's `burst` and `per`) are planned exactly, so plans never show
//! them as "known after apply".

use std::collections::BTreeMap;

use postern_schema::api::{
    BasicAuthSettings, HeaderEdits, HeaderRules, Hsts, JwtSettings, OidcSettings, Policy,
    PolicyMode, PolicySpec, RateLimit, RateLimitKey, RolloutScope,
};
use postern_schema::client::{Client, ClientError};
use postern_schema::ids::PolicyId;
use postern_schema::rules;
use postern_schema::secret::Secret;
use serde::{Deserialize, Serialize};

use crate::framework::{
    Attribute, AttributePath, Attributes, Diagnostic, Diagnostics, Number, Plan, PlanRequest,
    Schema, Type, Value, async_trait,
};
use crate::postern::api_error::Operation;
use crate::postern::contract::{Findings, known_elements, known_str};
use crate::postern::lifecycle::EdgeObject;
use crate::postern::provider_data::ProviderData;

/// Terraform state of a `postern_policy` (no `Debug`: it may hold the HS256 secret).
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct PolicyModel {
    /// The policy's UUID; `None` until created.
    pub(crate) id: Option<String>,
    /// Unique name.
    pub(crate) name: String,
    /// `enforce` or `report`.
    pub(crate) mode: Option<String>,
    /// CIDR blocks allowed.
    pub(crate) allow_ips: Option<Vec<String>>,
    /// CIDR blocks denied.
    pub(crate) deny_ips: Option<Vec<String>>,
    /// HTTP methods allowed (a set).
    pub(crate) allow_methods: Option<Vec<String>>,
    /// Path patterns allowed.
    pub(crate) allow_paths: Option<Vec<String>>,
    /// The token bucket.
    pub(crate) rate_limit: Option<RateLimitModel>,
    /// JWT requirements, exactly as written.
    pub(crate) jwt: Option<JwtModel>,
    /// Header rules, the HTTPS redirect and HSTS.
    pub(crate) rules: Option<RulesModel>,
    /// HTTP Basic users and their password hashes.
    pub(crate) basic_auth: Option<BasicAuthModel>,
    /// Login at an OpenID provider.
    pub(crate) oidc: Option<OidcModel>,
}

/// `rules = { ... }`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct RulesModel {
    /// Edits of requests.
    pub(crate) request_headers: Option<EditsModel>,
    /// Edits of responses.
    pub(crate) response_headers: Option<EditsModel>,
    /// 308 from http to https.
    pub(crate) redirect_https: Option<bool>,
    /// Strict-Transport-Security.
    pub(crate) hsts: Option<HstsModel>,
}

/// `request_headers` / `response_headers`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct EditsModel {
    /// Headers removed.
    pub(crate) remove: Option<Vec<String>>,
    /// Headers set.
    pub(crate) set: Option<BTreeMap<String, String>>,
    /// Header values added.
    pub(crate) add: Option<BTreeMap<String, String>>,
}

/// `hsts = { ... }`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct HstsModel {
    /// Seconds.
    pub(crate) max_age: Number,
    /// Subdomains too.
    pub(crate) include_subdomains: Option<bool>,
}

impl RulesModel {
    fn spec(&self) -> Result<HeaderRules, Diagnostic> {
        let edits = |e: &EditsModel| HeaderEdits {
            remove: e.remove.clone(),
            set: e.set.clone(),
            add: e.add.clone(),
        };
        Ok(HeaderRules {
            request_headers: self.request_headers.as_ref().map(edits),
            response_headers: self.response_headers.as_ref().map(edits),
            redirect_https: self.redirect_https,
            hsts: match &self.hsts {
                None => None,
                Some(h) => Some(Hsts {
                    max_age: h.max_age.to_u64().ok_or_else(|| {
                        invalid(
                            AttributePath::root("rules")
                                .attribute("hsts")
                                .attribute("max_age"),
                            format!("max_age {} must be a whole number of seconds", h.max_age),
                        )
                    })?,
                    include_subdomains: h.include_subdomains,
                }),
            },
        })
    }

    fn from_rules(rules: &HeaderRules) -> Self {
        let edits = |e: &HeaderEdits| EditsModel {
            remove: e.remove.clone(),
            set: e.set.clone(),
            add: e.add.clone(),
        };
        Self {
            request_headers: rules.request_headers.as_ref().map(edits),
            response_headers: rules.response_headers.as_ref().map(edits),
            redirect_https: rules.redirect_https,
            hsts: rules.hsts.as_ref().map(|h| HstsModel {
                max_age: Number::from(h.max_age),
                include_subdomains: h.include_subdomains,
            }),
        }
    }
}

/// `basic_auth = { users = { name = hash } }`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct BasicAuthModel {
    /// User name to PHC hash.
    pub(crate) users: BTreeMap<String, String>,
}

/// `oidc = { ... }` (no `Debug`: it may hold the client secret).
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct OidcModel {
    pub(crate) issuer: String,
    pub(crate) client_id: String,
    /// Write-only: only ever set from the configuration, never in state.
    pub(crate) client_secret: Option<String>,
    /// Changed by the user to send a new `client_secret`.
    pub(crate) client_secret_version: Option<Number>,
    pub(crate) scopes: Option<Vec<String>>,
    pub(crate) allowed_emails: Option<Vec<String>>,
    pub(crate) allowed_email_domains: Option<Vec<String>>,
    pub(crate) allowed_groups: Option<Vec<String>>,
    pub(crate) groups_claim: Option<String>,
    pub(crate) session_duration: Option<String>,
}

/// `rate_limit = { ... }`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct RateLimitModel {
    /// Refill rate (an exact decimal, as written).
    pub(crate) requests_per_second: Number,
    /// Bucket capacity.
    pub(crate) burst: Option<Number>,
    /// `client_ip` or `hostname`.
    pub(crate) per: Option<String>,
}

/// `jwt = { ... }`.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct JwtModel {
    /// Required `iss`.
    pub(crate) issuer: Option<String>,
    /// Accepted `aud` values.
    pub(crate) audiences: Option<Vec<String>>,
    /// The HS256 secret: write-only, so only ever set from the configuration, never in
    /// state.
    pub(crate) hs256_secret: Option<String>,
    /// Changed by the user to send a new `hs256_secret`.
    pub(crate) hs256_secret_version: Option<Number>,
    /// RS256/ES256 public keys.
    pub(crate) public_keys_pem: Option<Vec<String>>,
    /// A JWKS to fetch keys from.
    pub(crate) jwks_url: Option<String>,
}

impl PolicyModel {
    /// What the provider writes to the edge; a value the edge could not take becomes a
    /// diagnostic on its attribute (validation normally catches it first).
    fn spec(&self) -> Result<PolicySpec, Diagnostic> {
        let mode = match self.mode.as_deref() {
            None | Some("enforce") => PolicyMode::Enforce,
            Some("report") => PolicyMode::Report,
            Some(other) => {
                return Err(invalid(
                    AttributePath::root("mode"),
                    format!("mode {other:?} must be \"enforce\" or \"report\""),
                ));
            }
        };
        let rate_limit = match &self.rate_limit {
            None => None,
            Some(r) => Some(RateLimit {
                requests_per_second: r.requests_per_second.to_f64(),
                burst: match &r.burst {
                    None => None,
                    Some(burst) => Some(
                        burst
                            .to_u64()
                            .and_then(|b| u32::try_from(b).ok())
                            .ok_or_else(|| {
                                invalid(
                                    AttributePath::root("rate_limit").attribute("burst"),
                                    format!("burst {burst} must be a whole number from 1"),
                                )
                            })?,
                    ),
                },
                per: match r.per.as_deref() {
                    None | Some("client_ip") => Some(RateLimitKey::ClientIp),
                    Some("hostname") => Some(RateLimitKey::Hostname),
                    Some(other) => {
                        return Err(invalid(
                            AttributePath::root("rate_limit").attribute("per"),
                            format!("per {other:?} must be \"client_ip\" or \"hostname\""),
                        ));
                    }
                },
            }),
        };
        Ok(PolicySpec {
            name: self.name.clone(),
            mode,
            allow_ips: self.allow_ips.clone().unwrap_or_default(),
            deny_ips: self.deny_ips.clone().unwrap_or_default(),
            allow_methods: self.allow_methods.clone().unwrap_or_default(),
            allow_paths: self.allow_paths.clone().unwrap_or_default(),
            rate_limit,
            jwt: self.jwt.as_ref().map(|j| JwtSettings {
                issuer: j.issuer.clone(),
                audiences: j.audiences.clone(),
                hs256_secret: j.hs256_secret.clone().map(Secret::new),
                public_keys_pem: j.public_keys_pem.clone(),
                jwks_url: j.jwks_url.clone(),
            }),
            basic_auth: self.basic_auth.as_ref().map(|b| BasicAuthSettings {
                users: b.users.clone(),
            }),
            oidc: self.oidc.as_ref().map(|o| OidcSettings {
                issuer: o.issuer.clone(),
                client_id: o.client_id.clone(),
                client_secret: o.client_secret.clone().map(Secret::new),
                scopes: o.scopes.clone(),
                allowed_emails: o.allowed_emails.clone(),
                allowed_email_domains: o.allowed_email_domains.clone(),
                allowed_groups: o.allowed_groups.clone(),
                groups_claim: o.groups_claim.clone(),
                session_duration: o.session_duration.clone(),
            }),
            rules: match &self.rules {
                None => None,
                Some(r) => Some(r.spec()?),
            },
        })
    }

    /// The state for a policy as the edge returned it. `known` is what Terraform had
    /// (plan or prior state): its exact `requests_per_second` is kept when the edge's
    /// binary float stands for the same number.
    fn from_policy(policy: &Policy, known: Option<&PolicyModel>) -> Self {
        let spec = &policy.spec;
        let known_rps = known
            .and_then(|k| k.rate_limit.as_ref())
            .map(|r| &r.requests_per_second);
        // The edge keeps no version of the write-only secret: it is Terraform's.
        let secret_version = known
            .and_then(|k| k.jwt.as_ref())
            .and_then(|j| j.hs256_secret_version.clone());
        let client_secret_version = known
            .and_then(|k| k.oidc.as_ref())
            .and_then(|o| o.client_secret_version.clone());
        Self {
            id: Some(policy.id.to_string()),
            name: spec.name.clone(),
            mode: Some(
                match spec.mode {
                    PolicyMode::Enforce => "enforce",
                    PolicyMode::Report => "report",
                }
                .to_owned(),
            ),
            allow_ips: Some(spec.allow_ips.clone()),
            deny_ips: Some(spec.deny_ips.clone()),
            allow_methods: Some(spec.allow_methods.clone()),
            allow_paths: Some(spec.allow_paths.clone()),
            rate_limit: spec.rate_limit.as_ref().map(|r| RateLimitModel {
                requests_per_second: match known_rps {
                    Some(n) if n.to_f64() == r.requests_per_second => n.clone(),
                    _ => Number::from_f64_shortest(r.requests_per_second).unwrap_or_default(),
                },
                burst: r.burst.map(Number::from),
                per: r.per.map(|per| {
                    match per {
                        RateLimitKey::ClientIp => "client_ip",
                        RateLimitKey::Hostname => "hostname",
                    }
                    .to_owned()
                }),
            }),
            jwt: spec.jwt.as_ref().map(|j| JwtModel {
                issuer: j.issuer.clone(),
                audiences: j.audiences.clone(),
                hs256_secret: None,
                hs256_secret_version: secret_version.clone(),
                public_keys_pem: j.public_keys_pem.clone(),
                jwks_url: j.jwks_url.clone(),
            }),
            basic_auth: spec.basic_auth.as_ref().map(|b| BasicAuthModel {
                users: b.users.clone(),
            }),
            oidc: spec.oidc.as_ref().map(|o| OidcModel {
                issuer: o.issuer.clone(),
                client_id: o.client_id.clone(),
                client_secret: None,
                client_secret_version: client_secret_version.clone(),
                scopes: o.scopes.clone(),
                allowed_emails: o.allowed_emails.clone(),
                allowed_email_domains: o.allowed_email_domains.clone(),
                allowed_groups: o.allowed_groups.clone(),
                groups_claim: o.groups_claim.clone(),
                session_duration: o.session_duration.clone(),
            }),
            rules: spec.rules.as_ref().map(RulesModel::from_rules),
        }
    }
}

/// The `postern_policy` resource.
pub(crate) struct PolicyResource;

#[async_trait]
impl EdgeObject for PolicyResource {
    type Model = PolicyModel;
    type Spec = PolicySpec;
    type Object = Policy;
    type Id = PolicyId;

    const KIND: &'static str = "policy";
    const NAME_ATTRIBUTE: &'static str = "name";

    fn type_name(&self) -> &'static str {
        "postern_policy"
    }

    fn schema(&self) -> Schema {
        let list = |description: &str| {
            Attribute::list(Type::String, description)
                .optional()
                .computed()
                .default(Value::List(Vec::new()))
        };
        Schema::new(
            "An edge policy: who may reach a hostname, how and how often. Hostnames apply \
             their policies in order (`policy_ids`); the first deny wins. Traffic a policy \
             drops never reaches the tunnel.",
        )
        .attribute(
            "id",
            Attribute::string("The policy's UUID, assigned by the edge.")
                .computed()
                .stable(),
        )
        .attribute(
            "name",
            Attribute::string(
                "Unique name among policies: 1 to 63 lowercase letters, digits and `-`, \
                 starting and ending with a letter or digit.",
            )
            .required(),
        )
        .attribute(
            "mode",
            Attribute::string(
                "`enforce` (the default) blocks what the policy denies; `report` blocks \
                 nothing and only logs and counts what would have been blocked.",
            )
            .optional()
            .computed()
            .default("enforce"),
        )
        .attribute(
            "allow_ips",
            list(
                "CIDR blocks that may connect (a bare address is one host); empty (the \
                 default) allows every address.",
            ),
        )
        .attribute(
            "deny_ips",
            list("CIDR blocks that may not connect; deny wins over allow. Defaults to `[]`."),
        )
        .attribute(
            "allow_methods",
            Attribute::set(
                Type::String,
                "HTTP methods allowed, in upper case (`GET`, `POST`, …); empty (the default) \
                 allows every method.",
            )
            .optional()
            .computed()
            .default(Value::Set(Vec::new())),
        )
        .attribute(
            "allow_paths",
            list(
                "Path patterns allowed, starting with `/`: `*` matches within one segment, a \
                 trailing `/**` matches the rest. Empty (the default) allows every path.",
            ),
        )
        .attribute(
            "rate_limit",
            Attribute::single_nested(
                Attributes::new()
                    .with(
                        "requests_per_second",
                        Attribute::number(
                            "Refill rate of the token bucket, in requests per second \
                             (more than 0, at most 1000000).",
                        )
                        .required(),
                    )
                    .with(
                        "burst",
                        Attribute::number(
                            "Bucket capacity: how many requests may arrive at once. Defaults \
                             to `requests_per_second` rounded up.",
                        )
                        .optional()
                        .computed(),
                    )
                    .with(
                        "per",
                        Attribute::string(
                            "What one bucket counts: `client_ip` (the default) or `hostname`.",
                        )
                        .optional()
                        .computed()
                        .default("client_ip"),
                    ),
                "A token-bucket rate limit; requests over it get 429 with `Retry-After`.",
            )
            .optional(),
        )
        .attribute(
            "jwt",
            Attribute::single_nested(
                Attributes::new()
                    .with(
                        "issuer",
                        Attribute::string("Required `iss` claim, when set.").optional(),
                    )
                    .with(
                        "audiences",
                        Attribute::list(
                            Type::String,
                            "Accepted `aud` values; unset or empty accepts any audience.",
                        )
                        .optional(),
                    )
                    .with(
                        "hs256_secret",
                        Attribute::string(
                            "Shared secret for HS256 tokens (at least 16 characters). \
                             Write-only (Terraform 1.11 and later): sent to the edge on create \
                             and update, never stored in state or plan, and never returned by \
                             the edge. Terraform cannot see it change: change \
                             `hs256_secret_version` to send a new one.",
                        )
                        .optional()
                        .sensitive()
                        .write_only(),
                    )
                    .with(
                        "hs256_secret_version",
                        Attribute::number(
                            "Any number; change it (e.g. increment it) whenever \
                             `hs256_secret` changes, so that the policy is updated and the new \
                             secret sent.",
                        )
                        .optional(),
                    )
                    .with(
                        "public_keys_pem",
                        Attribute::list(
                            Type::String,
                            "PEM public keys (`-----BEGIN PUBLIC KEY-----`) for RS256 and \
                             ES256 tokens.",
                        )
                        .optional(),
                    )
                    .with(
                        "jwks_url",
                        Attribute::string(
                            "A JWKS (`https://`, or `http://` on a loopback address) the edge \
                             fetches RS256 and ES256 keys from, caches, and fetches again when a \
                             token names an unknown `kid`: key rotation needs no apply.",
                        )
                        .optional(),
                    ),
                "Require `Authorization: Bearer <JWT>` valid for signature, `exp`, `nbf`, and \
                 `iss`/`aud` when set; set `hs256_secret`, `public_keys_pem` or `jwks_url`. \
                 Missing or invalid tokens get 401.",
            )
            .optional(),
        )
        .attribute(
            "basic_auth",
            Attribute::single_nested(
                Attributes::new().with(
                    "users",
                    Attribute::map(
                        Type::String,
                        "User name to the hash of its password in PHC form: argon2 \
                         (`$argon2id$v=19$...`) or bcrypt (`$2b$12$...`). Never the password.",
                    )
                    .required(),
                ),
                "Require HTTP Basic credentials of one of `users`; others get 401 with \
                 `WWW-Authenticate: Basic`. The origin receives the user in `X-Postern-User`.",
            )
            .optional(),
        )
        .attribute(
            "oidc",
            Attribute::single_nested(
                Attributes::new()
                    .with(
                        "issuer",
                        Attribute::string(
                            "The OpenID provider's issuer URL (`https://`, or `http://` on a \
                             loopback address); endpoints come from its \
                             `/.well-known/openid-configuration`.",
                        )
                        .required(),
                    )
                    .with(
                        "client_id",
                        Attribute::string("The client id registered at the provider.").required(),
                    )
                    .with(
                        "client_secret",
                        Attribute::string(
                            "The client secret. Write-only (Terraform 1.11 and later): sent to \
                             the edge on create and update, never stored in state or plan, and \
                             never returned by the edge. Change `client_secret_version` to send \
                             a new one.",
                        )
                        .optional()
                        .sensitive()
                        .write_only(),
                    )
                    .with(
                        "client_secret_version",
                        Attribute::number(
                            "Any number; change it whenever `client_secret` changes, so that \
                             the policy is updated and the new secret sent.",
                        )
                        .optional(),
                    )
                    .with(
                        "scopes",
                        Attribute::list(
                            Type::String,
                            "Scopes asked for (`openid` always is); default `email`, `profile`.",
                        )
                        .optional(),
                    )
                    .with(
                        "allowed_emails",
                        Attribute::list(Type::String, "Verified emails let in.").optional(),
                    )
                    .with(
                        "allowed_email_domains",
                        Attribute::list(
                            Type::String,
                            "Domains of verified emails let in (`example.com`).",
                        )
                        .optional(),
                    )
                    .with(
                        "allowed_groups",
                        Attribute::list(
                            Type::String,
                            "Groups let in, read from the ID token claim `groups_claim`.",
                        )
                        .optional(),
                    )
                    .with(
                        "groups_claim",
                        Attribute::string("The claim that lists groups; default `groups`.")
                            .optional(),
                    )
                    .with(
                        "session_duration",
                        Attribute::string(
                            "How long a login lasts (`30m`, `12h`; 10s to 720h); default `12h`.",
                        )
                        .optional(),
                    ),
                "People log in at an OpenID Connect provider (authorization code flow with \
                 PKCE). Browsers without a session are sent there; other clients get 401. \
                 Someone logged in but not in `allowed_emails`, `allowed_email_domains` or \
                 `allowed_groups` (all empty lets everyone in) gets 403. The origin receives \
                 `X-Postern-User`, `X-Postern-Email` and `X-Postern-Jwt` (verify it with \
                 `/.postern/jwks.json`).",
            )
            .optional(),
        )
        .attribute(
            "rules",
            Attribute::single_nested(
                Attributes::new()
                    .with(
                        "request_headers",
                        header_edits("Edits of the request before it goes to the origin."),
                    )
                    .with(
                        "response_headers",
                        header_edits("Edits of the origin's response before the visitor gets it."),
                    )
                    .with(
                        "redirect_https",
                        Attribute::bool(
                            "Answer every plain-HTTP request with `308 Permanent Redirect` to \
                             the same host, path and query on `https://` (port 443), before \
                             any policy checks it.",
                        )
                        .optional(),
                    )
                    .with(
                        "hsts",
                        Attribute::single_nested(
                            Attributes::new()
                                .with(
                                    "max_age",
                                    Attribute::number(
                                        "Seconds browsers remember to use HTTPS only (at \
                                         most 315360000, ten years).",
                                    )
                                    .required(),
                                )
                                .with(
                                    "include_subdomains",
                                    Attribute::bool("Cover every subdomain too.").optional(),
                                ),
                            "`Strict-Transport-Security: max-age=N[; includeSubDomains]` on \
                             every HTTPS response (never on plain HTTP, as RFC 6797 asks).",
                        )
                        .optional(),
                    ),
                "What the edge changes on the requests this policy lets through and on their \
                 responses; in `report` mode too (rules block nothing). With several policies \
                 on a hostname, each one's rules apply after the previous one's.",
            )
            .optional(),
        )
    }

    fn validate(&self, config: &Value, diagnostics: &mut Diagnostics) {
        let mut findings = Findings::new();
        if let Some(name) = known_str(config, "name") {
            findings.rule(AttributePath::root("name"), rules::check_name(name));
        }
        for field in ["allow_ips", "deny_ips"] {
            for (i, cidr) in known_elements(config, field) {
                if let Some(cidr) = cidr.as_str() {
                    let at = AttributePath::root(field).index(i as i64);
                    findings.rule(at, rules::parse_cidr(cidr));
                }
            }
        }
        for (_, method) in known_elements(config, "allow_methods") {
            if let Some(method) = method.as_str() {
                findings.rule(
                    AttributePath::root("allow_methods"),
                    rules::check_method(method),
                );
            }
        }
        for (i, pattern) in known_elements(config, "allow_paths") {
            if let Some(pattern) = pattern.as_str() {
                let at = AttributePath::root("allow_paths").index(i as i64);
                findings.rule(at, rules::check_path_pattern(pattern));
            }
        }
        if let Some(jwt) = config
            .get("jwt")
            .filter(|j| !j.is_null() && !j.is_unknown())
        {
            let secret = jwt.get("hs256_secret").unwrap_or(&Value::Null);
            let keys = jwt.get("public_keys_pem").unwrap_or(&Value::Null);
            let no_keys = keys.is_null() || keys.as_elements().is_some_and(<[Value]>::is_empty);
            let url = jwt.get("jwks_url").unwrap_or(&Value::Null);
            if secret.is_null() && no_keys && url.is_null() {
                findings.add(
                    AttributePath::root("jwt"),
                    "set hs256_secret, public_keys_pem or jwks_url: without a key no token can be verified",
                );
            }
            if let Some(url) = url.as_str() {
                findings.rule(
                    AttributePath::root("jwt").attribute("jwks_url"),
                    rules::check_identity_url(url),
                );
            }
            for (i, pem) in known_elements(jwt, "public_keys_pem") {
                if let Some(pem) = pem.as_str() {
                    let at = AttributePath::root("jwt")
                        .attribute("public_keys_pem")
                        .index(i as i64);
                    findings.rule(at, rules::check_public_key_pem(pem));
                }
            }
        }
        if let Some(header_rules) = config
            .get("rules")
            .filter(|r| !r.is_null() && !r.is_unknown())
        {
            for field in ["request_headers", "response_headers"] {
                let Some(edits) = header_rules.get(field).filter(|e| !e.is_null()) else {
                    continue;
                };
                let at = AttributePath::root("rules").attribute(field);
                for (i, name) in known_elements(edits, "remove") {
                    if let Some(name) = name.as_str() {
                        findings.rule(
                            at.clone().attribute("remove").index(i as i64),
                            rules::check_rule_header(name),
                        );
                    }
                }
                for kind in ["set", "add"] {
                    if let Some(Value::Map(map)) = edits.get(kind) {
                        for name in map.keys() {
                            findings.rule(
                                at.clone().attribute(kind).key(name),
                                rules::check_rule_header(name),
                            );
                        }
                    }
                }
            }
        }
        if let Some(oidc) = config
            .get("oidc")
            .filter(|o| !o.is_null() && !o.is_unknown())
            && let Some(issuer) = oidc.get("issuer").and_then(Value::as_str)
        {
            findings.rule(
                AttributePath::root("oidc").attribute("issuer"),
                rules::check_identity_url(issuer),
            );
        }
        // The body the provider sends has no hs256_secret_version or client_secret_version:
        // they are Terraform's own.
        let mut body = config.clone();
        if let Some(jwt) = body
            .get_mut("jwt")
            .filter(|j| !j.is_null() && !j.is_unknown())
        {
            jwt.set_attribute("hs256_secret_version", Value::Null);
        }
        if let Some(oidc) = body
            .get_mut("oidc")
            .filter(|o| !o.is_null() && !o.is_unknown())
        {
            oidc.set_attribute("client_secret_version", Value::Null);
        }
        findings.schema::<PolicySpec>(&body, &self.schema().value_type());
        findings.report(diagnostics);
    }

    /// `jwt.hs256_secret` and `oidc.client_secret` are write-only: Terraform leaves them out
    /// of the plan, so they come from the configuration.
    fn fill_write_only(&self, config: &Value, model: &mut PolicyModel) {
        let secret = config
            .get("jwt")
            .and_then(|jwt| jwt.get("hs256_secret"))
            .and_then(Value::as_str);
        if let Some(jwt) = model.jwt.as_mut() {
            jwt.hs256_secret = secret.map(str::to_owned);
        }
        let client_secret = config
            .get("oidc")
            .and_then(|oidc| oidc.get("client_secret"))
            .and_then(Value::as_str);
        if let Some(oidc) = model.oidc.as_mut() {
            oidc.client_secret = client_secret.map(str::to_owned);
        }
    }

    /// Plans `rate_limit.burst` exactly when the configuration leaves it unset: the
    /// edge's default, `requests_per_second` rounded up (at least 1).
    async fn plan(&self, _data: &ProviderData, req: &PlanRequest, plan: &mut Plan) {
        let burst_configured = req
            .config
            .get("rate_limit")
            .and_then(|r| r.get("burst"))
            .is_some_and(|b| !b.is_null());
        if burst_configured {
            return;
        }
        let Some(rate_limit) = plan.planned.get_mut("rate_limit") else {
            return;
        };
        let Some(rps) = rate_limit
            .get("requests_per_second")
            .and_then(Value::as_number)
        else {
            return;
        };
        let burst = RateLimit {
            requests_per_second: rps.to_f64(),
            burst: None,
            per: None,
        }
        .default_burst();
        rate_limit.set_attribute("burst", Value::number(burst));
    }

    fn spec(&self, model: &PolicyModel) -> Result<PolicySpec, Diagnostic> {
        model.spec()
    }

    fn spec_name(spec: &PolicySpec) -> &str {
        &spec.name
    }

    fn state_id(model: &PolicyModel) -> Option<&str> {
        model.id.as_deref()
    }

    fn parse_import_id(&self, text: &str) -> Result<PolicyId, Diagnostic> {
        text.trim().parse().map_err(|_| {
            Diagnostic::error(
                "Invalid policy id",
                format!(
                    "{text:?} is not a policy id. Import a postern_policy by its UUID, e.g. \
                     `terraform import postern_policy.api 3f2c…`; list policies with \
                     GET /v1/policies."
                ),
            )
        })
    }

    fn id(policy: &Policy) -> PolicyId {
        policy.id
    }

    fn version(policy: &Policy) -> u64 {
        policy.version
    }

    fn describe(policy: &Policy) -> String {
        format!("a policy named {:?} (id {})", policy.spec.name, policy.id)
    }

    /// Compared with the edge's defaults filled in and the method set in a fixed order.
    fn matches(policy: &Policy, spec: &PolicySpec) -> bool {
        comparable(policy.spec.clone()) == comparable(spec.clone())
    }

    /// The hostnames that use the policy.
    fn scope(id: &PolicyId) -> RolloutScope {
        RolloutScope::Policy(*id)
    }

    async fn create_object(
        &self,
        client: &Client,
        spec: &PolicySpec,
    ) -> Result<Policy, ClientError> {
        client.create_policy(spec).await
    }

    async fn read_object(&self, client: &Client, id: &PolicyId) -> Result<Policy, ClientError> {
        client.policy(*id).await
    }

    async fn replace_object(
        &self,
        client: &Client,
        id: &PolicyId,
        spec: &PolicySpec,
        if_match: Option<u64>,
    ) -> Result<Policy, ClientError> {
        client.replace_policy(*id, spec, if_match).await
    }

    async fn delete_object(
        &self,
        client: &Client,
        id: &PolicyId,
        if_match: Option<u64>,
    ) -> Result<(), ClientError> {
        client.delete_policy(*id, if_match).await
    }

    async fn find_object(
        &self,
        client: &Client,
        spec: &PolicySpec,
    ) -> Result<Option<Policy>, ClientError> {
        let policies = client.list_policies().await?;
        Ok(policies.into_iter().find(|p| p.spec.name == spec.name))
    }

    async fn state(
        &self,
        _data: &ProviderData,
        policy: &Policy,
        known: Option<&PolicyModel>,
        _op: Operation<'_>,
        _diagnostics: &mut Diagnostics,
    ) -> PolicyModel {
        PolicyModel::from_policy(policy, known)
    }
}

/// A spec with defaults filled and the method set in a fixed order, for comparison; the
/// write-only HS256 and client secrets left out (the edge never shows them).
fn comparable(spec: PolicySpec) -> PolicySpec {
    let mut spec = spec.normalized();
    spec.allow_methods.sort();
    if let Some(jwt) = spec.jwt.as_mut() {
        jwt.hs256_secret = None;
    }
    if let Some(oidc) = spec.oidc.as_mut() {
        oidc.client_secret = None;
    }
    spec
}

/// `request_headers` / `response_headers`.
fn header_edits(description: &str) -> Attribute {
    Attribute::single_nested(
        Attributes::new()
            .with(
                "remove",
                Attribute::list(Type::String, "Header names removed (every value).").optional(),
            )
            .with(
                "set",
                Attribute::map(
                    Type::String,
                    "Headers set to one value, replacing any the message has.",
                )
                .optional(),
            )
            .with(
                "add",
                Attribute::map(Type::String, "Header values added beside any it has.").optional(),
            ),
        format!(
            "{description} Applied in the order remove, set, add. Host, the framing \
             headers, `Strict-Transport-Security` (see `hsts`) and the edge's own \
             (`X-Postern-*`, `X-Forwarded-*`, `X-Request-Id`) cannot be changed."
        ),
    )
    .optional()
}

fn invalid(path: AttributePath, message: String) -> Diagnostic {
    Diagnostic::error(
        "Invalid policy",
        format!("{message}. Fix the configuration and apply again."),
    )
    .at(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rps(text: &str) -> Number {
        Number::parse(text).unwrap_or_default()
    }

    #[test]
    fn exact_rates_survive_the_edge_float() {
        let model = PolicyModel {
            id: None,
            name: "api".into(),
            mode: None,
            allow_ips: None,
            deny_ips: None,
            allow_methods: None,
            allow_paths: None,
            rate_limit: Some(RateLimitModel {
                requests_per_second: rps("0.1"),
                burst: None,
                per: None,
            }),
            jwt: None,
            rules: None,
            basic_auth: None,
            oidc: None,
        };
        let spec = model.spec().unwrap_or_else(|d| panic!("{d}")).normalized();
        let policy = Policy {
            id: PolicyId::new_random(),
            spec,
            version: 1,
            created_at: "2025-01-01T00:00:00Z".into(),
        };
        let back = PolicyModel::from_policy(&policy, Some(&model));
        let rate = back.rate_limit.unwrap_or_else(|| panic!("rate limit"));
        assert_eq!(rate.requests_per_second, rps("0.1"));
        assert_eq!(rate.burst, Some(Number::from(1u32)));
        assert_eq!(rate.per.as_deref(), Some("client_ip"));
        assert_eq!(back.mode.as_deref(), Some("enforce"));
    }
}
