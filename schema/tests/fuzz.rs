//! Fuzz targets for the parsers of the contract that take outside input: API bodies
//! (`validate`), the semantic rules, the tunnel token and the tunnel protocol's messages. Each
//! replays its corpus under `tests/fuzz-corpus/<target>/`, then runs for `POSTERN_FUZZ_SECONDS`
//! (see `postern-fuzzing`).

use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use postern_fuzzing::json::{JsonGen, Shape, perturb};
use postern_fuzzing::{Fuzz, Rng, read_corpus};
use postern_schema::api::{HostnameSpec, PolicySpec, TunnelSpec};
use postern_schema::secret::Secret;
use postern_schema::token::TunnelToken;
use postern_schema::validate::{Contract, validate};
use postern_schema::{ContractError, rules, wire};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn corpus(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-corpus")
        .join(target)
}

// === API bodies ===

const NAMES: &[&str] = &[
    "web",
    "a",
    "web-2",
    "abcdefghij-abcdefghij-abcdefghij-abcdefghij-abcdefghij-abcdefgh",
    "Web",
    "-a",
    "a-",
];
const LABEL_KEYS: &[&str] = &[
    "release",
    "app.kubernetes.io/name",
    "a/b",
    "A_b.c-D",
    "bad key",
    "/x",
    "x/",
    "UPPER.example/x",
];
const LABEL_VALUES: &[&str] = &["stable", "canary", "", "v1.2_3", "-x", "has space"];
const CIDRS: &[&str] = &[
    "10.0.0.0/8",
    "127.0.0.2",
    "::1",
    "2001:db8::/32",
    "10.0.0.0/33",
];
const METHODS: &[&str] = &["GET", "POST", "get", "PATCH", ""];
const PATHS: &[&str] = &[
    "/", "/api/*", "/api/**", "/a/**/b", "api", "/v*/ping", "/a?x",
];
const UUIDS: &[&str] = &[
    "00000000-0000-4000-8000-000000000000",
    "6f9619ff-8b86-d011-b42d-00c04fc964ff",
    "6F9619FF-8B86-D011-B42D-00C04FC964FF",
    "6f9619ff8b86d011b42d00c04fc964ff",
    "{6f9619ff-8b86-d011-b42d-00c04fc964ff}",
    "urn:uuid:6f9619ff-8b86-d011-b42d-00c04fc964ff",
    "nope",
];
const HOSTNAMES: &[&str] = &[
    "app.example.com",
    "a.b.example.com",
    "App.example.com",
    "example",
    "a..b",
];
const SERVICES: &[&str] = &[
    "http://localhost:4000",
    "https://10.0.0.5/base/",
    "h2c://127.0.0.1:50051",
    "http_status:404",
    "http_status:0404",
    "ftp://x",
    "http://user@host",
    "http://host/?q=1",
    "http://[::1]:8080",
    "https://host#frag",
];
/// The HS256 secret the generator writes: no error message may repeat it.
const HS256_SECRET: &str = "fuzz-hs256-secret-0123456789";
const PEM: &str =
    "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----";

fn labels() -> Shape {
    Shape::map(LABEL_KEYS, Shape::Str(LABEL_VALUES))
}

fn tunnel_shape() -> Shape {
    Shape::Object(vec![("name", Shape::Str(NAMES)), ("labels", labels())])
}

fn policy_shape() -> Shape {
    Shape::Object(vec![
        ("name", Shape::Str(NAMES)),
        ("mode", Shape::Str(&["enforce", "report", "block"])),
        ("allow_ips", Shape::array(Shape::Str(CIDRS))),
        ("deny_ips", Shape::array(Shape::Str(CIDRS))),
        ("allow_methods", Shape::array(Shape::Str(METHODS))),
        ("allow_paths", Shape::array(Shape::Str(PATHS))),
        (
            "rate_limit",
            Shape::Object(vec![
                ("requests_per_second", Shape::Int(-1, 1_000_001)),
                ("burst", Shape::Int(0, 1_000_001)),
                ("per", Shape::Str(&["client_ip", "hostname", "user"])),
            ]),
        ),
        (
            "jwt",
            Shape::Object(vec![
                ("issuer", Shape::Str(&["me", ""])),
                ("audiences", Shape::array(Shape::Str(&["api", ""]))),
                ("hs256_secret", Shape::Str(&[HS256_SECRET, "short"])),
                ("public_keys_pem", Shape::array(Shape::Str(&[PEM, "AAAA"]))),
            ]),
        ),
    ])
}

fn hostname_shape() -> Shape {
    Shape::Object(vec![
        ("hostname", Shape::Str(HOSTNAMES)),
        ("service", Shape::Str(SERVICES)),
        ("tunnel_id", Shape::Str(UUIDS)),
        (
            "routes",
            Shape::array(Shape::Object(vec![
                ("selector", labels()),
                ("weight", Shape::Int(0, 101)),
            ])),
        ),
        ("policy_ids", Shape::array(Shape::Str(UUIDS))),
        (
            "origin",
            Shape::Object(vec![
                ("no_tls_verify", Shape::Bool),
                (
                    "http_host_header",
                    Shape::Str(&["example.com:8080", "a b", "a\tb", "\r\n"]),
                ),
                ("origin_server_name", Shape::Str(&["origin.internal", ""])),
                ("connect_timeout_ms", Shape::Int(-1, 600_001)),
                ("http2", Shape::Bool),
                (
                    "ca_cert_pem",
                    Shape::Str(&[
                        "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----",
                        "x",
                    ]),
                ),
            ]),
        ),
    ])
}

/// Every field name of the three specs, for keys and for the mutator's dictionary.
const FIELDS: &[&str] = &[
    "name",
    "labels",
    "mode",
    "allow_ips",
    "deny_ips",
    "allow_methods",
    "allow_paths",
    "rate_limit",
    "requests_per_second",
    "burst",
    "per",
    "jwt",
    "issuer",
    "audiences",
    "hs256_secret",
    "public_keys_pem",
    "hostname",
    "service",
    "tunnel_id",
    "routes",
    "selector",
    "weight",
    "policy_ids",
    "origin",
    "no_tls_verify",
    "http_host_header",
    "origin_server_name",
    "connect_timeout_ms",
    "http2",
    "ca_cert_pem",
];

/// Is `pointer` in `document`, or a missing member of an object that is?
fn pointer_is_located(document: &Value, pointer: &str) -> bool {
    if document.pointer(pointer).is_some() {
        return true;
    }
    match pointer.rsplit_once('/') {
        Some((parent, _)) => document.pointer(parent).is_some_and(Value::is_object),
        None => false,
    }
}

/// The documented behaviour of `validate`: the typed value, which survives a round trip, or
/// an error whose every violation is located in the document and repeats no secret.
fn check_contract<T>(document: &Value, text: &str)
where
    T: Contract + Serialize + PartialEq + std::fmt::Debug,
{
    match validate::<T>(document) {
        Ok(typed) => {
            let written = serde_json::to_value(&typed).expect("a valid spec serializes");
            let again = validate::<T>(&written);
            assert_eq!(
                again.as_ref(),
                Ok(&typed),
                "the spec changed in a round trip"
            );
        }
        Err(error) => check_violations(&error, document, text),
    }
    // What JSON Schema accepts, the typed decoding accepts too: a document that passes the
    // schema never fails later with an error that points at no field.
    if T::validator().is_valid(document)
        && let Err(error) = validate::<T>(document)
    {
        assert!(
            error.violations().iter().all(|v| !v.pointer.is_empty()),
            "the schema accepts the document, yet the error points at no field: {error}"
        );
    }
}

fn check_violations(error: &ContractError, document: &Value, text: &str) {
    assert!(!error.violations().is_empty());
    // The secret is only a secret where it is the policy's HS256 key; elsewhere (an IP, a path)
    // it is a value like any other, which a message may quote.
    let secret_once = text.matches(HS256_SECRET).count() == 1
        && document.pointer("/jwt/hs256_secret") == Some(&Value::from(HS256_SECRET));
    for violation in error.violations() {
        assert!(
            pointer_is_located(document, &violation.pointer),
            "violation at {:?} ({}) is not in the document",
            violation.pointer,
            violation.message
        );
        assert!(!violation.message.is_empty());
        if secret_once {
            assert!(
                !violation.message.contains(HS256_SECRET),
                "the message repeats the secret: {}",
                violation.message
            );
        }
    }
}

/// API bodies: JSON text, as the edge reads it, validated as each of the three specs.
#[test]
fn api_body() {
    let generator = JsonGen::new(
        FIELDS.iter().copied(),
        [NAMES, LABEL_KEYS, CIDRS, UUIDS, SERVICES].concat(),
    );
    let shapes = [tunnel_shape(), policy_shape(), hostname_shape()];
    // The corpus documents that parse: perturbing them explores the edge of what is valid.
    let documents: Vec<Value> = read_corpus(&corpus("api_body"))
        .iter()
        .filter_map(|(_, bytes)| serde_json::from_slice(bytes).ok())
        .collect();
    Fuzz::new("api_body", corpus("api_body"))
        .generated_percent(70)
        .dictionary(FIELDS.iter().map(|f| format!("\"{f}\"")))
        .dictionary([
            "null", "{}", "[]", "\"\"", "1e999", "-0", "\\u0000", "\\ud800",
        ])
        .run(
            |rng| {
                if rng.one_in(50) {
                    let levels = rng.between(100, 300);
                    return JsonGen::deep(levels, if rng.one_in(2) { '[' } else { '{' })
                        .into_bytes();
                }
                if rng.one_in(2) {
                    let mut document = rng.pick(&documents).clone();
                    for _ in 0..rng.between(1, 3) {
                        document = perturb(rng, &document, &generator);
                    }
                    return serde_json::to_vec(&document).unwrap_or_default();
                }
                let shape = rng.pick(&shapes);
                generator.document(rng, shape).into_bytes()
            },
            |bytes| {
                let Ok(document) = serde_json::from_slice::<Value>(bytes) else {
                    return;
                };
                let text = String::from_utf8_lossy(bytes);
                check_contract::<TunnelSpec>(&document, &text);
                check_contract::<PolicySpec>(&document, &text);
                check_contract::<HostnameSpec>(&document, &text);
                if let Ok(spec) = validate::<HostnameSpec>(&document)
                    && let Some(header) = spec.origin.and_then(|o| o.http_host_header)
                {
                    assert!(
                        !header.contains(|c: char| c.is_whitespace() || c.is_control()),
                        "host header {header:?} accepted"
                    );
                }
            },
        );
}

// === rules ===

const RULE_WORDS: &[&str] = &[
    "release",
    "app.kubernetes.io/name",
    "10.0.0.0/8",
    "::ffff:127.0.0.1/128",
    "/api/**",
    "/api/*/items",
    "/a*b*c",
    "/**",
    "*",
    "app.example.com",
    "example.com",
    "http://localhost:4000",
    "https://10.0.0.5/base/",
    "http_status:404",
    "release=canary,app=web",
    "k=v=w",
    "GET",
    PEM,
];

/// The semantic rules on arbitrary text: no panic, and the answers agree with each other.
#[test]
fn rules() {
    Fuzz::new("rules", corpus("rules"))
        .dictionary(RULE_WORDS)
        .dictionary(["/", "*", "**", "=", ",", ".", "-", "%", "[", "]", ":", "\n"])
        .max_len(4 * 1024)
        .run(
            |rng| {
                let parts: Vec<String> = (0..rng.between(1, 3)).map(|_| rule_word(rng)).collect();
                parts.join("\n").into_bytes()
            },
            |bytes| {
                let text = String::from_utf8_lossy(bytes);
                let (first, second) = text.split_once('\n').unwrap_or((&text, ""));
                check_rules(first);
                check_rules(second);
                check_pair(first, second);
            },
        );
}

fn rule_word(rng: &mut Rng) -> String {
    let base = (*rng.pick(RULE_WORDS)).to_string();
    match rng.below(4) {
        0 => base,
        1 => {
            let mut chars: Vec<char> = base.chars().collect();
            if !chars.is_empty() {
                let at = rng.below(chars.len());
                chars[at] = *rng.pick(&['/', '*', '.', '-', 'A', '%', ' ', 'é', '\0', ':']);
            }
            chars.into_iter().collect()
        }
        2 => format!("{base}{}", rule_word(rng)),
        _ => {
            let len = rng.short_len(40);
            (0..len)
                .map(|_| *rng.pick(&['a', '/', '*', '.', '-', '0', ':', '=', ',', 'Z']))
                .collect()
        }
    }
}

fn check_rules(text: &str) {
    if rules::check_name(text).is_ok() {
        assert!(rules::check_label_value(text).is_ok(), "{text:?}");
        assert!(rules::check_label_key(text).is_ok(), "{text:?}");
    }
    let _ = rules::check_label_key(text);
    let _ = rules::check_label_value(text);
    if let Ok(net) = rules::parse_cidr(text) {
        assert_eq!(rules::parse_cidr(&net.to_string()), Ok(net), "{text:?}");
    }
    if rules::check_path_pattern(text).is_ok() {
        assert!(text.starts_with('/'));
        if !text.contains('*') {
            assert!(
                rules::path_matches(text, text),
                "{text:?} must match itself"
            );
        }
    }
    if rules::check_fqdn(text).is_ok() {
        assert!(
            text.split('.')
                .all(|label| rules::check_name(label).is_ok())
        );
        assert!(rules::in_zone(text, text));
    }
    match rules::parse_service(text) {
        Ok(rules::Service::Status(code)) => assert!((100..=599).contains(&code)),
        Ok(rules::Service::Origin {
            authority,
            path_prefix,
            ..
        }) => {
            assert!(!authority.is_empty(), "{text:?}");
            // What the connector will dial: a host and, when written, a port that fits in 16 bits.
            let authority: http::uri::Authority = authority.parse().expect("an authority");
            if authority.as_str().len() > authority.host().len() {
                assert!(authority.port_u16().is_some(), "{text:?} has a bad port");
            }
            assert!(
                path_prefix.is_empty() || path_prefix.starts_with('/'),
                "{text:?}"
            );
            assert!(!path_prefix.ends_with('/'), "{text:?}");
        }
        Err(message) => assert!(!message.is_empty()),
    }
    let _ = rules::check_method(text);
    let _ = rules::check_public_key_pem(text);
    if let Ok(selector) = rules::parse_selector(text) {
        let written = rules::format_selector(&selector);
        assert_eq!(rules::parse_selector(&written), Ok(selector), "{text:?}");
    }
}

fn check_pair(first: &str, second: &str) {
    if rules::check_path_pattern(first).is_ok() {
        let _ = rules::path_matches(first, second);
    }
    let _ = rules::in_zone(first, second);
    if let (Ok(selector), Ok(labels)) =
        (rules::parse_selector(first), rules::parse_selector(second))
        && rules::selector_matches(&selector, &labels)
    {
        assert!(selector.iter().all(|(k, v)| labels.get(k) == Some(v)));
    }
}

// === tunnel token ===

/// Tunnel tokens: whatever `parse` accepts encodes back to an equal token, and `Debug` hides
/// the secret.
#[test]
fn token() {
    let generator = JsonGen::new(["a", "t", "s", "c"], ["127.0.0.1:7844", "s3cret-s3cret"]);
    let shape = Shape::Object(vec![
        (
            "a",
            Shape::array(Shape::Str(&["127.0.0.1:7844", "[::1]:7844", ""])),
        ),
        ("t", Shape::Str(UUIDS)),
        ("s", Shape::Str(&["enrolment-secret-abcdefgh"])),
        (
            "c",
            Shape::Str(&[
                "abababababababababababababababababababababababababababababababab",
                "ABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABAB",
                "zz",
            ]),
        ),
    ]);
    Fuzz::new("token", corpus("token"))
        .dictionary(["postern1.", "=", "+", "/", "-", "_", " ", "\n"])
        .max_len(8 * 1024)
        .run(
            |rng| {
                let json = generator.document(rng, &shape);
                let body = match rng.below(4) {
                    0 => STANDARD.encode(&json),
                    _ => URL_SAFE_NO_PAD.encode(&json),
                };
                let prefix = if rng.one_in(10) {
                    "postern2."
                } else {
                    "postern1."
                };
                format!("{prefix}{body}").into_bytes()
            },
            |bytes| {
                let text = String::from_utf8_lossy(bytes);
                let Ok(token) = TunnelToken::parse(&text) else {
                    return;
                };
                assert!(!token.edge_addresses.is_empty());
                assert_eq!(TunnelToken::parse(&token.encode()).as_ref(), Ok(&token));
                let secret = token.secret.expose();
                if secret.len() >= 8 {
                    let shown = format!("{token:?}");
                    // The other fields may hold the secret's text too (as `Debug` prints them,
                    // quotes and escapes included): what matters is that the secret field adds
                    // nothing to what is shown.
                    let without = TunnelToken {
                        secret: Secret::new(String::new()),
                        ..token.clone()
                    };
                    let elsewhere = format!("{without:?}").contains(secret);
                    assert!(
                        elsewhere || !shown.contains(secret),
                        "Debug shows the secret"
                    );
                }
            },
        );
}

// === tunnel protocol messages ===

/// The control messages and enrolment frames: every message that decodes encodes back to an
/// equal one; an announced frame length is never over the limit; nothing panics.
#[test]
fn wire() {
    let generator = JsonGen::new(WIRE_FIELDS.iter().copied(), ["c1", "web", "0.1.0", "AAEC"]);
    let shapes = wire_shapes();
    Fuzz::new("wire", corpus("wire"))
        .generated_percent(60)
        .dictionary(WIRE_FIELDS.iter().map(|f| format!("\"{f}\"")))
        .dictionary([
            "\"granted\"",
            "\"refused\"",
            "\"draining\"",
            "\"renew\"",
            "\n",
        ])
        .run(
            |rng| {
                let shape = rng.pick(&shapes);
                let json = generator.document(rng, shape);
                if rng.one_in(3) {
                    // An enrolment frame: length (sometimes wrong), then the JSON.
                    let len = if rng.one_in(4) {
                        rng.next_u64() as u32
                    } else {
                        json.len() as u32
                    };
                    let mut frame = len.to_be_bytes().to_vec();
                    frame.extend_from_slice(json.as_bytes());
                    frame
                } else {
                    json.into_bytes()
                }
            },
            check_wire,
        );
}

const WIRE_FIELDS: &[&str] = &[
    "tunnel_id",
    "secret",
    "csr_der",
    "result",
    "cert_der",
    "ca_der",
    "reason",
    "message",
    "connection_id",
    "tunnel_name",
    "edge_version",
    "connector_id",
    "version",
    "draining",
    "hostnames",
    "hostname",
    "service",
    "origin",
    "applied_version",
    "event",
];

fn wire_shapes() -> Vec<Shape> {
    let b64 = || Shape::Str(&["AAEC", "", "!!", "AAE=", "AA=="]);
    let origin = Shape::Object(vec![
        ("no_tls_verify", Shape::Bool),
        ("connect_timeout_ms", Shape::Int(-1, 5_000_000_000)),
    ]);
    [
        Shape::Object(vec![
            ("tunnel_id", Shape::Str(UUIDS)),
            ("secret", Shape::Str(&["s"])),
            ("csr_der", b64()),
        ]),
        Shape::Object(vec![
            ("result", Shape::Str(&["granted", "refused", "other"])),
            ("cert_der", b64()),
            ("ca_der", b64()),
            (
                "reason",
                Shape::Str(&[
                    "unknown_tunnel",
                    "bad_secret",
                    "rate_limited",
                    "bad_request",
                ]),
            ),
            ("message", Shape::Str(&["gone"])),
        ]),
        Shape::Object(vec![
            ("connection_id", Shape::Str(&["c1"])),
            ("tunnel_id", Shape::Str(UUIDS)),
            ("tunnel_name", Shape::Str(NAMES)),
            ("edge_version", Shape::Str(&["0.1.0"])),
        ]),
        Shape::Object(vec![
            ("connector_id", Shape::Str(&["k"])),
            ("version", Shape::Str(&["0.1.0"])),
            ("draining", Shape::Bool),
        ]),
        Shape::Object(vec![
            ("version", Shape::Int(-1, i64::MAX)),
            (
                "hostnames",
                Shape::array(Shape::Object(vec![
                    ("hostname", Shape::Str(HOSTNAMES)),
                    ("service", Shape::Str(SERVICES)),
                    ("origin", origin),
                ])),
            ),
        ]),
        Shape::Object(vec![("applied_version", Shape::Int(0, i64::MAX))]),
        Shape::Object(vec![
            ("event", Shape::Str(&["draining", "renew", "other"])),
            ("csr_der", b64()),
        ]),
        Shape::Object(vec![(
            "reason",
            Shape::Str(&["tunnel_deleted", "edge_shutdown", "connector_draining"]),
        )]),
    ]
    .into()
}

fn check_wire(bytes: &[u8]) {
    round_trips::<wire::EnrollRequest>(bytes);
    round_trips::<wire::EnrollAnswer>(bytes);
    round_trips::<wire::Hello>(bytes);
    round_trips::<wire::HelloAnswer>(bytes);
    round_trips::<wire::ConfigPush>(bytes);
    round_trips::<wire::ConfigAck>(bytes);
    round_trips::<wire::Event>(bytes);
    round_trips::<wire::Drain>(bytes);
    round_trips::<wire::CertificateGrant>(bytes);
    // The edge reads the event stream line by line.
    for line in bytes.split(|b| *b == b'\n') {
        round_trips::<wire::Event>(line);
    }
    if let Some((header, body)) = bytes.split_first_chunk::<4>() {
        if let Ok(len) = wire::frame_len(*header) {
            assert!(len <= wire::MAX_ENROLL_FRAME);
            let body = &body[..len.min(body.len())];
            if let Ok(request) = wire::from_json::<wire::EnrollRequest>(body) {
                let _ = wire::decode_der(&request.csr_der, "csr_der");
            }
        } else {
            assert!(u32::from_be_bytes(*header) as usize > wire::MAX_ENROLL_FRAME);
        }
    }
    if let Ok(wire::EnrollAnswer::Granted { cert_der, ca_der }) = wire::from_json(bytes) {
        let _ = wire::decode_der(&cert_der, "cert_der");
        let _ = wire::decode_der(&ca_der, "ca_der");
    }
    if let Ok(text) = std::str::from_utf8(bytes)
        && let Some(fault) = wire::ConnectorFault::parse(text)
    {
        assert_eq!(fault.as_str(), text);
    }
}

fn round_trips<T>(bytes: &[u8])
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    if let Ok(message) = wire::from_json::<T>(bytes) {
        let written = wire::to_json(&message);
        let again: T = wire::from_json(&written).expect("an encoded message decodes");
        assert_eq!(again, message, "the message changed in a round trip");
    }
}
