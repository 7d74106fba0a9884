//! Validation of request bodies: the embedded JSON Schema files (`schemas/v1`), the schema of
//! each object (compiled once), then the semantic rules of [`crate::rules`]. Parse, don't
//! validate: what passes comes out typed. (`crate::openapi` builds on this module, never the
//! reverse.)

use std::collections::BTreeSet;
use std::sync::LazyLock;

use jsonschema::Validator;
use jsonschema::error::ValidationErrorKind;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::api::{
    ApiTokenSpec, CertificateSpec, EnrollmentTokenSpec, HostnameSpec, Labels, OriginSettings,
    PolicySpec, Route, TcpServiceSpec, TunnelSpec,
};
use crate::error::push_pointer;
use crate::ids::PolicyId;
use crate::rules;
use crate::{ContractError, Violation};

/// The schema files under `schemas/v1`, by file name.
pub(crate) const SCHEMAS: &[(&str, &str)] = &[
    (
        "tunnel.schema.json",
        include_str!("../schemas/v1/tunnel.schema.json"),
    ),
    (
        "policy.schema.json",
        include_str!("../schemas/v1/policy.schema.json"),
    ),
    (
        "hostname.schema.json",
        include_str!("../schemas/v1/hostname.schema.json"),
    ),
    (
        "error.schema.json",
        include_str!("../schemas/v1/error.schema.json"),
    ),
    (
        "edge.schema.json",
        include_str!("../schemas/v1/edge.schema.json"),
    ),
    (
        "enrollment.schema.json",
        include_str!("../schemas/v1/enrollment.schema.json"),
    ),
    (
        "connection.schema.json",
        include_str!("../schemas/v1/connection.schema.json"),
    ),
    (
        "rollout.schema.json",
        include_str!("../schemas/v1/rollout.schema.json"),
    ),
    (
        "status.schema.json",
        include_str!("../schemas/v1/status.schema.json"),
    ),
    (
        "certificate.schema.json",
        include_str!("../schemas/v1/certificate.schema.json"),
    ),
    (
        "api_token.schema.json",
        include_str!("../schemas/v1/api_token.schema.json"),
    ),
    (
        "tcp_service.schema.json",
        include_str!("../schemas/v1/tcp_service.schema.json"),
    ),
];

/// The text of an embedded schema file such as `tunnel.schema.json`.
pub fn schema_source(file: &str) -> Option<&'static str> {
    SCHEMAS
        .iter()
        .find(|(name, _)| *name == file)
        .map(|(_, text)| *text)
}

/// The names of every embedded schema file.
pub fn schema_files() -> impl Iterator<Item = &'static str> {
    SCHEMAS.iter().map(|(name, _)| *name)
}

/// A writable API object: a JSON Schema and the rules it cannot say.
pub trait Contract: DeserializeOwned {
    /// The schema file under `schemas/v1`, whose `$defs/spec` describes the writable form.
    const SCHEMA_FILE: &'static str;

    /// The compiled validator of `$defs/spec`.
    fn validator() -> &'static Validator;

    /// Appends the semantic rules this value breaks.
    fn check(&self, violations: &mut Vec<Violation>);
}

/// Checks `value` against `T`'s schema and rules and returns it typed.
pub fn validate<T: Contract>(value: &Value) -> Result<T, ContractError> {
    let violations = schema_violations(T::validator(), value);
    if let Some(error) = ContractError::from_violations(violations) {
        return Err(error);
    }
    let mut value = value.clone();
    integral_floats_as_integers(&mut value);
    let typed: T = serde_json::from_value(value)
        .map_err(|e| ContractError::single("", format!("body does not match the schema: {e}")))?;
    let mut violations = Vec::new();
    typed.check(&mut violations);
    match ContractError::from_violations(violations) {
        Some(error) => Err(error),
        None => Ok(typed),
    }
}

/// JSON Schema counts `5.0` as an integer and serde does not: such numbers are written as
/// integers before the typed decoding, so that what the schema accepts decodes.
fn integral_floats_as_integers(value: &mut Value) {
    match value {
        Value::Number(number) => {
            if let Some(float) = number.as_f64().filter(|_| number.is_f64())
                && float.fract() == 0.0
                && float >= i64::MIN as f64
                && float < i64::MAX as f64
            {
                *value = Value::from(float as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_floats_as_integers),
        Value::Object(members) => members.values_mut().for_each(integral_floats_as_integers),
        Value::Null | Value::Bool(_) | Value::String(_) => {}
    }
}

/// The JSON Schema violations of `value`, each located at the field it is about and, where a
/// rule of [`crate::rules`] says the same thing, worded as that rule words it.
pub fn schema_violations(validator: &Validator, value: &Value) -> Vec<Violation> {
    validator
        .iter_errors(value)
        .map(|error| {
            let at = error.instance_path().as_str().to_string();
            match error.kind() {
                // The error of a property name is about the name: point at its member.
                ValidationErrorKind::PropertyNames { error: inner } => {
                    let name = inner.instance().as_str().unwrap_or_default();
                    let message = rule_message(inner.schema_path().as_str(), inner.instance())
                        .unwrap_or_else(|| inner.masked().to_string());
                    Violation::new(push_pointer(&at, name), message)
                }
                ValidationErrorKind::Required { property } => {
                    let name = property.as_str().unwrap_or_default();
                    let message = rule_message(error.schema_path().as_str(), error.instance())
                        .unwrap_or_else(|| format!("missing required field {name:?}"));
                    Violation::new(push_pointer(&at, name), message)
                }
                ValidationErrorKind::AdditionalProperties { unexpected } => {
                    let name = unexpected.first().map(String::as_str).unwrap_or_default();
                    Violation::new(push_pointer(&at, name), format!("unknown field {name:?}"))
                }
                // Point at the first item that repeats an earlier one.
                ValidationErrorKind::UniqueItems => {
                    let items = error
                        .instance()
                        .as_array()
                        .map(Vec::as_slice)
                        .unwrap_or_default();
                    let repeated = (1..items.len()).find(|&i| items[..i].contains(&items[i]));
                    match repeated {
                        Some(i) => Violation::new(
                            push_pointer(&at, &i.to_string()),
                            format!("{} is listed twice", items[i]),
                        ),
                        None => Violation::new(at, error.masked().to_string()),
                    }
                }
                _ => {
                    let message = rule_message(error.schema_path().as_str(), error.instance())
                        .or_else(|| described_pattern(&error))
                        .unwrap_or_else(|| error.masked().to_string());
                    Violation::new(at, message)
                }
            }
        })
        .collect()
}

/// For a `pattern` that a named definition (`$defs/<def>`) holds and no rule words: the
/// definition's description, in place of a message that quotes the regular expression.
fn described_pattern(error: &jsonschema::ValidationError<'_>) -> Option<String> {
    if !matches!(error.kind(), ValidationErrorKind::Pattern { .. }) {
        return None;
    }
    let location = error.absolute_keyword_location()?.as_str();
    let (uri, fragment) = location.split_once('#')?;
    let file = uri.rsplit('/').next()?;
    let def = fragment.strip_prefix("/$defs/")?.split('/').next()?;
    let schema: Value = serde_json::from_str(schema_source(file)?).ok()?;
    let description = schema["$defs"][def]["description"].as_str()?;
    Some(format!(
        "not a valid {}: {description}",
        def.replace('_', " ")
    ))
}

/// The message of the rule that a schema keyword at `keyword_path` (its canonical location,
/// `/$defs/<def>/<keyword>…`) stands for, when that rule refuses `instance` too: the rules word
/// their refusals for people, the schema's own messages quote regular expressions.
fn rule_message(keyword_path: &str, instance: &Value) -> Option<String> {
    let (def, keyword) = keyword_path.strip_prefix("/$defs/")?.split_once('/')?;
    let text = instance.as_str();
    let verdict = match (def, keyword) {
        ("name", _) => rules::check_name(text?),
        ("label_key", _) => rules::check_label_key(text?),
        ("label_value", _) => rules::check_label_value(text?),
        ("hostname", _) => rules::check_hostname(text?),
        ("service", _) => rules::parse_service(text?).map(drop),
        ("cidr", _) => rules::parse_cidr(text?).map(drop),
        ("method", _) => rules::check_method(text?),
        ("path_pattern", _) => rules::check_path_pattern(text?),
        ("public_key_pem", _) => rules::check_public_key_pem(text?),
        ("ca_cert_pem", _) => rules::check_ca_cert_pem(text?),
        ("path_prefix", _) => rules::check_path_prefix(text?),
        ("path_route", "anyOf") => Err("set service or routes (or both) for a path route".into()),
        ("identity_url", _) => rules::check_identity_url(text?),
        ("password_hash", _) => rules::check_password_hash(text?),
        ("host_header", _) => {
            Err("http_host_header must be a host name, optionally with a port".to_string())
        }
        ("jwt", "anyOf") => Err(NO_JWT_KEY.into()),
        ("spec", "dependentSchemas/tunnel_id/properties/routes") => {
            Err("set exactly one of tunnel_id and routes, not both".into())
        }
        ("spec", "then/required") => Err("set exactly one of tunnel_id and routes".into()),
        ("spec", "anyOf") => Err("set names (to obtain a certificate by ACME), or \
             certificate_pem and private_key_pem (to upload one)"
            .into()),
        ("spec", "dependentSchemas/names/properties/certificate_pem")
        | ("spec", "dependentSchemas/names/properties/private_key_pem") => {
            Err("set names, or certificate_pem and private_key_pem, not both".into())
        }
        _ => return None,
    };
    verdict.err()
}

/// Compiles the validator of `$defs/<def>` of one embedded schema file.
pub fn compile_def(file: &str, def: &str) -> Validator {
    let source = schema_source(file).unwrap_or_else(|| panic!("no embedded schema {file}"));
    let schema: Value =
        serde_json::from_str(source).unwrap_or_else(|e| panic!("embedded {file} is not JSON: {e}"));
    let root = json!({
        "$schema": schema["$schema"],
        "$id": schema["$id"],
        "$defs": schema["$defs"],
        "$ref": format!("#/$defs/{def}"),
    });
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|e| panic!("embedded {file} does not compile: {e}"))
}

/// Compiles the validator of a whole embedded schema file (the read form of an object).
pub fn compile_file(file: &str) -> Validator {
    let source = schema_source(file).unwrap_or_else(|| panic!("no embedded schema {file}"));
    let schema: Value =
        serde_json::from_str(source).unwrap_or_else(|e| panic!("embedded {file} is not JSON: {e}"));
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("embedded {file} does not compile: {e}"))
}

// The embedded schemas are part of the binary and covered by tests; failing to compile them is a
// build defect, not an input error, so panicking on first use is right.
static TUNNEL_SPEC: LazyLock<Validator> =
    LazyLock::new(|| compile_def("tunnel.schema.json", "spec"));
static POLICY_SPEC: LazyLock<Validator> =
    LazyLock::new(|| compile_def("policy.schema.json", "spec"));
static HOSTNAME_SPEC: LazyLock<Validator> =
    LazyLock::new(|| compile_def("hostname.schema.json", "spec"));

static ENROLLMENT_SPEC: LazyLock<Validator> =
    LazyLock::new(|| compile_def("enrollment.schema.json", "spec"));
static CERTIFICATE_SPEC: LazyLock<Validator> =
    LazyLock::new(|| compile_def("certificate.schema.json", "spec"));

impl Contract for CertificateSpec {
    const SCHEMA_FILE: &'static str = "certificate.schema.json";

    fn validator() -> &'static Validator {
        &CERTIFICATE_SPEC
    }

    /// The names are checked by the schema; that they lie in the edge's zones, and that the
    /// PEM is a good certificate and its key, only the edge can say.
    fn check(&self, _violations: &mut Vec<Violation>) {}
}

static API_TOKEN_SPEC: LazyLock<Validator> =
    LazyLock::new(|| compile_def("api_token.schema.json", "spec"));

impl Contract for ApiTokenSpec {
    const SCHEMA_FILE: &'static str = "api_token.schema.json";

    fn validator() -> &'static Validator {
        &API_TOKEN_SPEC
    }

    /// The name's rule, and an `expires_at` that reads as a moment (that it lies in the
    /// future is for the edge to say: it knows the time).
    fn check(&self, violations: &mut Vec<Violation>) {
        if let Err(message) = rules::check_name(&self.name) {
            violations.push(Violation::new("/name", message));
        }
        if let Some(Err(message)) = self.expires_at.as_deref().map(rules::parse_timestamp) {
            violations.push(Violation::new("/expires_at", message));
        }
    }
}

impl Contract for EnrollmentTokenSpec {
    const SCHEMA_FILE: &'static str = "enrollment.schema.json";

    fn validator() -> &'static Validator {
        &ENROLLMENT_SPEC
    }

    fn check(&self, _violations: &mut Vec<Violation>) {}
}

/// Checks label keys and values, reporting each at `<pointer>/<key>`.
pub fn check_labels(labels: &Labels, pointer: &str, violations: &mut Vec<Violation>) {
    for (key, value) in labels {
        let at = push_pointer(pointer, key);
        if let Err(message) = rules::check_label_key(key) {
            violations.push(Violation::new(at, message));
        } else if let Err(message) = rules::check_label_value(value) {
            violations.push(Violation::new(at, message));
        }
    }
}

impl Contract for TunnelSpec {
    const SCHEMA_FILE: &'static str = "tunnel.schema.json";

    fn validator() -> &'static Validator {
        &TUNNEL_SPEC
    }

    fn check(&self, violations: &mut Vec<Violation>) {
        if let Err(message) = rules::check_name(&self.name) {
            violations.push(Violation::new("/name", message));
        }
        check_labels(&self.labels, "/labels", violations);
    }
}

/// What a `jwt` block without any key is told.
const NO_JWT_KEY: &str =
    "set hs256_secret, public_keys_pem or jwks_url: without a key no token can be verified";

/// Bounds of `oidc.session_duration`.
const MIN_SESSION: std::time::Duration = std::time::Duration::from_secs(10);
const MAX_SESSION: std::time::Duration = std::time::Duration::from_secs(720 * 3600);

impl Contract for PolicySpec {
    const SCHEMA_FILE: &'static str = "policy.schema.json";

    fn validator() -> &'static Validator {
        &POLICY_SPEC
    }

    fn check(&self, violations: &mut Vec<Violation>) {
        if let Err(message) = rules::check_name(&self.name) {
            violations.push(Violation::new("/name", message));
        }
        for (field, list) in [("allow_ips", &self.allow_ips), ("deny_ips", &self.deny_ips)] {
            for (i, cidr) in list.iter().enumerate() {
                if let Err(message) = rules::parse_cidr(cidr) {
                    violations.push(Violation::new(format!("/{field}/{i}"), message));
                }
            }
        }
        for (i, method) in self.allow_methods.iter().enumerate() {
            if let Err(message) = rules::check_method(method) {
                violations.push(Violation::new(format!("/allow_methods/{i}"), message));
            }
        }
        for (i, pattern) in self.allow_paths.iter().enumerate() {
            if let Err(message) = rules::check_path_pattern(pattern) {
                violations.push(Violation::new(format!("/allow_paths/{i}"), message));
            }
        }
        if let Some(jwt) = &self.jwt {
            let keys = jwt.public_keys_pem.as_deref().unwrap_or_default();
            if jwt.hs256_secret.is_none() && keys.is_empty() && jwt.jwks_url.is_none() {
                violations.push(Violation::new("/jwt", NO_JWT_KEY));
            }
            if let Some(url) = &jwt.jwks_url
                && let Err(message) = rules::check_identity_url(url)
            {
                violations.push(Violation::new("/jwt/jwks_url", message));
            }
            for (i, pem) in keys.iter().enumerate() {
                if let Err(message) = rules::check_public_key_pem(pem) {
                    violations.push(Violation::new(format!("/jwt/public_keys_pem/{i}"), message));
                }
            }
        }
        if let Some(header_rules) = &self.rules {
            for (field, edits) in [
                ("request_headers", &header_rules.request_headers),
                ("response_headers", &header_rules.response_headers),
            ] {
                let Some(edits) = edits else { continue };
                let at = format!("/rules/{field}");
                for (i, name) in edits.remove.iter().flatten().enumerate() {
                    if let Err(message) = rules::check_rule_header(name) {
                        violations.push(Violation::new(format!("{at}/remove/{i}"), message));
                    }
                }
                for (kind, map) in [("set", &edits.set), ("add", &edits.add)] {
                    for (name, value) in map.iter().flatten() {
                        let pointer = format!("{at}/{kind}/{}", pointer_escape(name));
                        if let Err(message) = rules::check_rule_header(name) {
                            violations.push(Violation::new(pointer.clone(), message));
                        }
                        if http::HeaderValue::from_str(value).is_err() {
                            violations.push(Violation::new(
                                pointer,
                                "a header value must be visible ASCII, spaces and tabs",
                            ));
                        }
                    }
                }
            }
        }
        if let Some(basic) = &self.basic_auth {
            for (user, hash) in &basic.users {
                if user.is_empty() || user.contains(':') || user.chars().any(char::is_control) {
                    violations.push(Violation::new(
                        "/basic_auth/users",
                        format!("user name {user:?} must be non-empty, without ':' or control characters"),
                    ));
                }
                if let Err(message) = rules::check_password_hash(hash) {
                    let token = user.replace('~', "~0").replace('/', "~1");
                    violations.push(Violation::new(
                        format!("/basic_auth/users/{token}"),
                        message,
                    ));
                }
            }
        }
        if let Some(oidc) = &self.oidc {
            if let Err(message) = rules::check_identity_url(&oidc.issuer) {
                violations.push(Violation::new("/oidc/issuer", message));
            }
            if let Some(text) = &oidc.session_duration {
                match crate::duration::parse(text) {
                    Ok(d) if d >= MIN_SESSION && d <= MAX_SESSION => {}
                    Ok(_) => violations.push(Violation::new(
                        "/oidc/session_duration",
                        format!("session_duration {text:?} must be from 10s to 720h"),
                    )),
                    Err(error) => {
                        violations.push(Violation::new("/oidc/session_duration", error.to_string()))
                    }
                }
            }
        }
    }
}

static TCP_SERVICE_SPEC: LazyLock<Validator> =
    LazyLock::new(|| compile_def("tcp_service.schema.json", "spec"));

impl Contract for TcpServiceSpec {
    const SCHEMA_FILE: &'static str = "tcp_service.schema.json";

    fn validator() -> &'static Validator {
        &TCP_SERVICE_SPEC
    }

    /// The name, the `tcp://` service, exactly one of `tunnel_id` and `routes`, routes and
    /// policies as on a hostname. That the port lies in the edge's range and is free, and that
    /// the policies use only what applies to TCP, only the edge can say.
    fn check(&self, violations: &mut Vec<Violation>) {
        if let Err(message) = rules::check_name(&self.name) {
            violations.push(Violation::new("/name", message));
        }
        if let Err(message) = rules::parse_tcp_service(&self.service) {
            violations.push(Violation::new("/service", message));
        }
        check_target(self.tunnel_id.is_some(), self.routes.as_deref(), violations);
        check_policy_ids(&self.policy_ids, "", violations);
        if self.listen_port == Some(0) {
            violations.push(Violation::new(
                "/listen_port",
                "listen_port must be between 1 and 65535; leave it out to let the edge pick one",
            ));
        }
    }
}

/// Exactly one of `tunnel_id` and `routes`; each route's selector and weight.
fn check_target(
    has_tunnel: bool,
    routes: Option<&[crate::api::Route]>,
    violations: &mut Vec<Violation>,
) {
    match (has_tunnel, routes) {
        (true, Some(_)) => violations.push(Violation::new(
            "/routes",
            "set exactly one of tunnel_id and routes, not both",
        )),
        (false, None) => violations.push(Violation::new(
            "/tunnel_id",
            "set exactly one of tunnel_id and routes",
        )),
        _ => {}
    }
    for (i, route) in routes.into_iter().flatten().enumerate() {
        check_labels(
            &route.selector,
            &format!("/routes/{i}/selector"),
            violations,
        );
        if let Err(message) = rules::check_weight(i64::from(route.weight)) {
            violations.push(Violation::new(format!("/routes/{i}/weight"), message));
        }
    }
}

impl Contract for HostnameSpec {
    const SCHEMA_FILE: &'static str = "hostname.schema.json";

    fn validator() -> &'static Validator {
        &HOSTNAME_SPEC
    }

    fn check(&self, violations: &mut Vec<Violation>) {
        if let Err(message) = rules::check_hostname(&self.hostname) {
            violations.push(Violation::new("/hostname", message));
        }
        let http2 = self.origin.as_ref().and_then(|o| o.http2) == Some(true);
        check_service(&self.service, "/service", http2, violations);
        if self.passes_tls_through() {
            if let Ok(service) = rules::parse_service(&self.service)
                && rules::passthrough_address(&service).is_none()
            {
                violations.push(Violation::new(
                    "/service",
                    format!(
                        "with tls_passthrough the service must be https://host[:port] \
                         without a path (the origin speaks TLS itself), not {:?}",
                        self.service
                    ),
                ));
            }
            if self.origin.is_some() {
                violations.push(Violation::new(
                    "/origin",
                    "origin settings do not apply with tls_passthrough: the edge and the \
                     connector carry the visitor's TLS bytes as they are",
                ));
            }
            if !self.paths.is_empty() {
                violations.push(Violation::new(
                    "/paths",
                    "path routes do not apply with tls_passthrough: the edge never sees a path",
                ));
            }
        }
        if let Some(pem) = self.origin.as_ref().and_then(|o| o.ca_cert_pem.as_deref())
            && let Err(message) = rules::check_ca_cert_pem(pem)
        {
            violations.push(Violation::new("/origin/ca_cert_pem", message));
        }
        match (&self.tunnel_id, &self.routes) {
            (Some(_), Some(_)) => violations.push(Violation::new(
                "/routes",
                "set exactly one of tunnel_id and routes, not both",
            )),
            (None, None) => violations.push(Violation::new(
                "/tunnel_id",
                "set exactly one of tunnel_id and routes",
            )),
            _ => {}
        }
        check_routes(self.routes.as_deref().unwrap_or_default(), "", violations);
        check_policy_ids(&self.policy_ids, "", violations);
        let mut prefixes = BTreeSet::new();
        for (i, path) in self.paths.iter().enumerate() {
            let at = format!("/paths/{i}");
            if let Err(message) = rules::check_path_prefix(&path.prefix) {
                violations.push(Violation::new(format!("{at}/prefix"), message));
            } else if !prefixes.insert(path.prefix.as_str()) {
                violations.push(Violation::new(
                    format!("{at}/prefix"),
                    format!("prefix {:?} is listed twice", path.prefix),
                ));
            }
            if path.service.is_none() && path.routes.is_none() {
                violations.push(Violation::new(
                    at.clone(),
                    "set service or routes (or both) for a path route",
                ));
            }
            if let Some(service) = &path.service {
                check_service(service, &format!("{at}/service"), http2, violations);
            }
            check_routes(path.routes.as_deref().unwrap_or_default(), &at, violations);
            check_policy_ids(
                path.policy_ids.as_deref().unwrap_or_default(),
                &at,
                violations,
            );
        }
        if let Some(origin) = &self.origin {
            check_origin(origin, violations);
        }
    }
}

/// A JSON Pointer token for `text` (RFC 6901: `~` and `/` escaped).
fn pointer_escape(text: &str) -> String {
    text.replace('~', "~0").replace('/', "~1")
}

/// `origin`: its host headers, the old and new spellings of each setting (one value when
/// both are given), and its health check.
fn check_origin(origin: &OriginSettings, violations: &mut Vec<Violation>) {
    for (name, header) in [
        ("http_host_header", &origin.http_host_header),
        ("host_header", &origin.host_header),
    ] {
        if let Some(header) = header
            && (http::HeaderValue::from_str(header).is_err()
                || header.contains(char::is_whitespace))
        {
            violations.push(Violation::new(
                format!("/origin/{name}"),
                format!("{name} must be a host name, optionally with a port"),
            ));
        }
    }
    let pairs = [
        (
            "insecure_skip_verify",
            "no_tls_verify",
            origin.insecure_skip_verify.is_some() && origin.no_tls_verify.is_some(),
            origin.insecure_skip_verify == origin.no_tls_verify,
        ),
        (
            "host_header",
            "http_host_header",
            origin.host_header.is_some() && origin.http_host_header.is_some(),
            origin.host_header == origin.http_host_header,
        ),
        (
            "server_name",
            "origin_server_name",
            origin.server_name.is_some() && origin.origin_server_name.is_some(),
            origin.server_name == origin.origin_server_name,
        ),
    ];
    for (new, old, both, same) in pairs {
        if both && !same {
            violations.push(Violation::new(
                format!("/origin/{old}"),
                format!(
                    "{old} is the deprecated spelling of {new} and says something else; \
                     set only {new}"
                ),
            ));
        }
    }
    if let Some(check) = &origin.health_check {
        if let Some(path) = &check.path
            && (!path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            violations.push(Violation::new(
                "/origin/health_check/path",
                "health_check.path must start with '/' and hold no spaces or control characters",
            ));
        }
        for (name, text) in [("interval", &check.interval), ("timeout", &check.timeout)] {
            if let Some(text) = text
                && let Err(e) = crate::duration::parse(text)
            {
                violations.push(Violation::new(
                    format!("/origin/health_check/{name}"),
                    format!("health_check.{name}: {e}"),
                ));
            }
        }
        if let Some(n) = check.unhealthy_after
            && !(1..=100).contains(&n)
        {
            violations.push(Violation::new(
                "/origin/health_check/unhealthy_after",
                "health_check.unhealthy_after must be 1 to 100",
            ));
        }
    }
}

/// A service, and `origin.http2` with it.
fn check_service(service: &str, pointer: &str, http2: bool, violations: &mut Vec<Violation>) {
    match rules::parse_service(service) {
        Err(message) => violations.push(Violation::new(pointer, message)),
        Ok(service) => {
            if let Err(message) = rules::check_http2(&service, http2) {
                violations.push(Violation::new("/origin/http2", message));
            }
        }
    }
}

/// Weighted routes under `<base>/routes`.
fn check_routes(routes: &[Route], base: &str, violations: &mut Vec<Violation>) {
    for (i, route) in routes.iter().enumerate() {
        check_labels(
            &route.selector,
            &format!("{base}/routes/{i}/selector"),
            violations,
        );
        if let Err(message) = rules::check_weight(i64::from(route.weight)) {
            violations.push(Violation::new(format!("{base}/routes/{i}/weight"), message));
        }
        if let Some(rate) = route.max_error_rate
            && !(rate.0.is_finite() && (0.0..=1.0).contains(&rate.0))
        {
            violations.push(Violation::new(
                format!("{base}/routes/{i}/max_error_rate"),
                "max_error_rate must be a share between 0 and 1",
            ));
        }
    }
}

/// Policy ids under `<base>/policy_ids`: none twice.
fn check_policy_ids(ids: &[PolicyId], base: &str, violations: &mut Vec<Violation>) {
    let mut seen = BTreeSet::new();
    for (i, id) in ids.iter().enumerate() {
        if !seen.insert(id) {
            violations.push(Violation::new(
                format!("{base}/policy_ids/{i}"),
                format!("policy {id} is listed twice"),
            ));
        }
    }
}

#[cfg(test)]
mod tests;
