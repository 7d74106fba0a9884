use serde_json::json;

use super::*;

const TUNNEL: &str = "6f1c1d5e-0d55-4c8e-9a39-1c1e4b0b6a11";

fn pointer_of<T: Contract>(body: serde_json::Value) -> String {
    match validate::<T>(&body) {
        Ok(_) => panic!("accepted {body}"),
        Err(error) => error.first().pointer.clone(),
    }
}

#[test]
fn valid_bodies_come_out_typed() {
    let tunnel: TunnelSpec = validate(
        &json!({"name": "web", "labels": {"release": "stable", "app.kubernetes.io/name": ""}}),
    )
    .expect("valid tunnel");
    assert_eq!(tunnel.labels.len(), 2);

    let policy: PolicySpec = validate(&json!({
        "name": "api",
        "mode": "report",
        "allow_ips": ["10.0.0.0/8", "127.0.0.2"],
        "allow_methods": ["GET"],
        "allow_paths": ["/api/**"],
        "rate_limit": {"requests_per_second": 0.5},
        "jwt": {"issuer": "me", "hs256_secret": "0123456789abcdef"}
    }))
    .expect("valid policy");
    assert_eq!(
        policy.clone().normalized().rate_limit.and_then(|r| r.burst),
        Some(1)
    );

    let hostname: HostnameSpec = validate(&json!({
        "hostname": "split.example.com",
        "service": "http://localhost:4000",
        "routes": [{"selector": {"release": "stable"}, "weight": 90}, {"selector": {"release": "canary"}, "weight": 10}],
        "origin": {"connect_timeout_ms": 500}
    }))
    .expect("valid hostname");
    assert!(matches!(hostname.target(), Some(crate::api::Target::Routes(r)) if r.len() == 2));
}

#[test]
fn invalid_tunnels_are_located() {
    let table = [
        (json!({}), "/name"),
        (json!({"name": 7}), "/name"),
        (json!({"name": "Web"}), "/name"),
        (json!({"name": "web", "color": "red"}), "/color"),
        (json!({"name": "web", "labels": []}), "/labels"),
        (
            json!({"name": "web", "labels": {"release": 1}}),
            "/labels/release",
        ),
        (
            json!({"name": "web", "labels": {"bad key": "x"}}),
            "/labels/bad key",
        ),
        (
            json!({"name": "web", "labels": {"release": "-canary"}}),
            "/labels/release",
        ),
        (
            json!({"name": "web", "labels": {"a/b/c": "x"}}),
            "/labels/a~1b~1c",
        ),
        (json!({"name": "-web"}), "/name"),
        (json!({"name": "x".repeat(64)}), "/name"),
        (json!("web"), ""),
    ];
    for (body, pointer) in table {
        assert_eq!(pointer_of::<TunnelSpec>(body.clone()), pointer, "{body}");
    }
}

#[test]
fn invalid_policies_are_located() {
    let table = [
        (json!({"mode": "enforce"}), "/name"),
        (json!({"name": "p", "mode": "block"}), "/mode"),
        (
            json!({"name": "p", "allow_ips": ["10.0.0.0/33"]}),
            "/allow_ips/0",
        ),
        (
            json!({"name": "p", "deny_ips": ["ok", "1.2.3.4/8"]}),
            "/deny_ips/0",
        ),
        (
            json!({"name": "p", "allow_ips": "10.0.0.0/8"}),
            "/allow_ips",
        ),
        (
            json!({"name": "p", "allow_methods": ["get"]}),
            "/allow_methods/0",
        ),
        (
            json!({"name": "p", "allow_paths": ["/ok", "api/*"]}),
            "/allow_paths/1",
        ),
        (
            json!({"name": "p", "allow_paths": ["/a/**/b"]}),
            "/allow_paths/0",
        ),
        (
            json!({"name": "p", "rate_limit": {"requests_per_second": 0}}),
            "/rate_limit/requests_per_second",
        ),
        (
            json!({"name": "p", "rate_limit": {"burst": 5}}),
            "/rate_limit/requests_per_second",
        ),
        (
            json!({"name": "p", "rate_limit": {"requests_per_second": 5, "per": "user"}}),
            "/rate_limit/per",
        ),
        (json!({"name": "p", "jwt": {"issuer": "me"}}), "/jwt"),
        (
            json!({"name": "p", "jwt": {"hs256_secret": "short"}}),
            "/jwt/hs256_secret",
        ),
        (
            json!({"name": "p", "jwt": {"public_keys_pem": ["nope"]}}),
            "/jwt/public_keys_pem/0",
        ),
        (json!({"name": "p", "extra": true}), "/extra"),
    ];
    for (body, pointer) in table {
        assert_eq!(pointer_of::<PolicySpec>(body.clone()), pointer, "{body}");
    }
}

#[test]
fn invalid_hostnames_are_located() {
    let ok = |extra: serde_json::Value| {
        let mut body = json!({"hostname": "app.example.com", "service": "http://localhost:4000", "tunnel_id": TUNNEL});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                if v.is_null() {
                    body.remove(k);
                } else {
                    body.insert(k.clone(), v.clone());
                }
            }
        }
        body
    };
    let routes = json!([{"selector": {"release": "stable"}, "weight": 50}]);
    let table = [
        (ok(json!({"hostname": null})), "/hostname"),
        (ok(json!({"hostname": "App.Example.com"})), "/hostname"),
        (ok(json!({"hostname": "nodots"})), "/hostname"),
        (ok(json!({"service": "ftp://x"})), "/service"),
        (ok(json!({"service": "http_status:700"})), "/service"),
        (ok(json!({"tunnel_id": "not-a-uuid"})), "/tunnel_id"),
        (ok(json!({"tunnel_id": null})), "/tunnel_id"),
        (ok(json!({"routes": routes})), "/routes"),
        (
            ok(json!({"tunnel_id": null, "routes": [{"selector": {"release": "x"}, "weight": 0}]})),
            "/routes/0/weight",
        ),
        (
            ok(
                json!({"tunnel_id": null, "routes": [{"selector": {"release": "x"}, "weight": 101}]}),
            ),
            "/routes/0/weight",
        ),
        (
            ok(json!({"tunnel_id": null, "routes": [{"selector": {"Bad Key": "x"}, "weight": 1}]})),
            "/routes/0/selector/Bad Key",
        ),
        (ok(json!({"tunnel_id": null, "routes": []})), "/routes"),
        (ok(json!({"policy_ids": [TUNNEL, TUNNEL]})), "/policy_ids/1"),
        (
            ok(json!({"origin": {"connect_timeout_ms": 0}})),
            "/origin/connect_timeout_ms",
        ),
        (ok(json!({"origin": {"sni": "x"}})), "/origin/sni"),
        (ok(json!({"origin": {"http2": true}})), "/origin/http2"),
        (ok(json!({"paths": [{"prefix": "/api"}]})), "/paths/0"),
        (
            ok(json!({"paths": [{"prefix": "api", "service": "http://x"}]})),
            "/paths/0/prefix",
        ),
        (
            ok(json!({"paths": [{"prefix": "/a/../b", "service": "http://x"}]})),
            "/paths/0/prefix",
        ),
        (
            ok(
                json!({"paths": [{"prefix": "/a", "service": "http://x"}, {"prefix": "/a", "service": "http://y"}]}),
            ),
            "/paths/1/prefix",
        ),
        (
            ok(json!({"paths": [{"prefix": "/a", "service": "ftp://x"}]})),
            "/paths/0/service",
        ),
        (
            ok(
                json!({"paths": [{"prefix": "/a", "routes": [{"selector": {"a": "b"}, "weight": 0}]}]}),
            ),
            "/paths/0/routes/0/weight",
        ),
        (
            ok(
                json!({"paths": [{"prefix": "/a", "service": "http://x", "policy_ids": [TUNNEL, TUNNEL]}]}),
            ),
            "/paths/0/policy_ids/1",
        ),
        (
            ok(json!({"paths": [{"prefix": "/a", "service": "http://x", "extra": 1}]})),
            "/paths/0/extra",
        ),
        (
            ok(json!({"origin": {"ca_cert_pem": "not a certificate"}})),
            "/origin/ca_cert_pem",
        ),
        (ok(json!({"addresses": ["1.2.3.4"]})), "/addresses"),
    ];
    for (body, pointer) in table {
        assert_eq!(pointer_of::<HostnameSpec>(body.clone()), pointer, "{body}");
    }
}

#[test]
fn secrets_are_not_echoed_in_messages() {
    let error =
        validate::<PolicySpec>(&json!({"name": "p", "jwt": {"hs256_secret": "tiny-secret"}}))
            .expect_err("too short");
    assert!(!error.to_string().contains("tiny-secret"), "{error}");
}

/// A label key prefix of `len` characters: DNS labels of at most 63, joined by dots.
fn prefix(len: usize) -> String {
    let mut out = String::new();
    while out.len() < len {
        if !out.is_empty() {
            out.push('.');
        }
        let room = (len - out.len()).min(63);
        out.push_str(&"p".repeat(room));
    }
    out
}

#[test]
fn label_rules_are_the_same_in_every_schema() {
    let defs = |file: &str| -> serde_json::Value {
        let text = schema_source(file).expect("embedded");
        serde_json::from_str::<serde_json::Value>(text).expect("JSON")["$defs"].clone()
    };
    let (tunnel, hostname) = (defs("tunnel.schema.json"), defs("hostname.schema.json"));
    for def in ["label_key", "label_value"] {
        assert!(tunnel[def].is_object(), "{def}");
        assert_eq!(tunnel[def], hostname[def], "{def}");
    }
}

/// What a schema's pattern allows, the rule behind it allows too: the edge checks the schema
/// first, so then it accepts exactly what the document allows.
#[test]
fn what_a_schema_pattern_allows_its_rule_allows() {
    type Rule = fn(&str) -> bool;
    /// A schema file, a definition in it, the rule behind it, and strings with the verdict.
    type Case<'a> = (&'a str, &'a str, Rule, Vec<(&'a str, bool)>);
    let host_header: Rule =
        |s| http::HeaderValue::from_str(s).is_ok() && !s.contains(char::is_whitespace);
    let long_key = format!("{}/k", prefix(253));
    let too_long_key = format!("{}/k", prefix(254));
    let long_fqdn = format!("{}.com", prefix(249));
    let too_long_fqdn = format!("{}.com", prefix(250));
    let k63 = "k".repeat(63);
    let k64 = "k".repeat(64);
    let (w63, w64) = ("w".repeat(63), "w".repeat(64));
    let (a20, a21) = ("A".repeat(20), "A".repeat(21));
    let table: Vec<Case> = vec![
        (
            "tunnel.schema.json",
            "label_key",
            |s| rules::check_label_key(s).is_ok(),
            vec![
                ("release", true),
                ("app.kubernetes.io/name", true),
                ("A_b.c-D", true),
                ("x/y", true),
                (&long_key, true),
                (&too_long_key, false),
                (&k63, true),
                (&k64, false),
                ("", false),
                ("-a", false),
                ("a-", false),
                ("Bad/x", false),
                ("a/", false),
                ("/a", false),
                ("a b", false),
                ("a/b/c", false),
                ("ü", false),
            ],
        ),
        (
            "tunnel.schema.json",
            "label_value",
            |s| rules::check_label_value(s).is_ok(),
            vec![
                ("", true),
                ("stable", true),
                ("v1.2_3", true),
                (&k63, true),
                (&k64, false),
                ("-x", false),
                ("x-", false),
                ("has space", false),
            ],
        ),
        (
            "tunnel.schema.json",
            "name",
            |s| rules::check_name(s).is_ok(),
            vec![
                ("web", true),
                ("a", true),
                (&w63, true),
                (&w64, false),
                ("Web", false),
                ("-web", false),
                ("we_b", false),
                ("", false),
            ],
        ),
        (
            "hostname.schema.json",
            "hostname",
            |s| rules::check_hostname(s).is_ok(),
            vec![
                ("app.example.com", true),
                ("*.dev.example.com", true),
                ("*.com", false),
                ("a.*.com", false),
                ("a.b", true),
                ("xn--d1acufc.xn--p1ai", true),
                (&long_fqdn, true),
                (&too_long_fqdn, false),
                ("App.example.com", false),
                ("example", false),
                ("a..b", false),
                ("-a.b", false),
                ("a.b.", false),
                ("a_b.com", false),
                ("", false),
            ],
        ),
        (
            "hostname.schema.json",
            "service",
            |s| rules::parse_service(s).is_ok(),
            vec![
                ("http://localhost:4000", true),
                ("https://10.0.0.5/base/", true),
                ("h2c://127.0.0.1:50051", true),
                ("h2://127.0.0.1:50051", false),
                ("http://[::1]:8080/x", true),
                ("http://[::ffff:10.0.0.1]", true),
                ("http://my_host", true),
                ("http://host:65535", true),
                ("http://host/a%20b", true),
                ("http://host/a@b/c:d", true),
                ("http_status:404", true),
                ("http_status:100", true),
                ("http://[C9433]", false),
                ("http://host:65536", false),
                ("http://host:", false),
                ("http://user@host", false),
                ("http://host/?q=1", false),
                ("http://host/#f", false),
                ("http://host/a%zz", false),
                ("http://host/a b", false),
                ("ftp://x", false),
                ("http://", false),
                ("HTTP://host", false),
                ("localhost:4000", false),
                ("http_status:099", false),
                ("http_status:600", false),
                ("http_status:0404", false),
            ],
        ),
        (
            "hostname.schema.json",
            "host_header",
            host_header,
            vec![
                ("app.example.com:8080", true),
                ("ü.example", true),
                ("a b", false),
                ("a\tb", false),
                ("a\u{a0}b", false),
                ("a\u{85}b", false),
                ("a\u{7f}", false),
                ("", false),
            ],
        ),
        (
            "policy.schema.json",
            "cidr",
            |s| rules::parse_cidr(s).is_ok(),
            vec![
                ("10.0.0.0/8", true),
                ("127.0.0.2", true),
                ("0.0.0.0/0", true),
                ("::1", true),
                ("::", true),
                ("::/0", true),
                ("2001:db8::/32", true),
                ("::ffff:1.2.3.4", true),
                ("1:2:3:4:5:6:7::", true),
                ("::1:2:3:4:5:6:7", true),
                ("1:2:3:4:5:6:7:8/128", true),
                ("1:2:3:4:5:6:1.2.3.4", true),
                ("1:2:3:4:5::1.2.3.4", true),
                ("FE80::1", true),
                ("1::2:3:4:5:6:7:8", false),
                ("1:2:3:4:5:6::1.2.3.4", false),
                ("01.2.3.4", false),
                ("10.0.0.0/33", false),
                ("10.0.0.0/08", false),
                ("::/129", false),
                ("fe80::1%eth0", false),
                ("1.2.3", false),
                ("abc", false),
                ("", false),
            ],
        ),
        (
            "policy.schema.json",
            "method",
            |s| rules::check_method(s).is_ok(),
            vec![
                ("GET", true),
                (&a20, true),
                (&a21, false),
                ("get", false),
                ("", false),
                ("GE T", false),
            ],
        ),
        (
            "policy.schema.json",
            "path_pattern",
            |s| rules::check_path_pattern(s).is_ok(),
            vec![
                ("/", true),
                ("/**", true),
                ("/api/**", true),
                ("/a*/**", true),
                ("/a*b", true),
                ("/v*/ping", true),
                ("//x", true),
                ("/ümlaut", true),
                ("/*", true),
                ("api", false),
                ("/a/**/b", false),
                ("/a**", false),
                ("/***", false),
                ("/a b", false),
                ("/a?x", false),
                ("/a#x", false),
                ("/a\u{a0}", false),
                ("/a\u{85}", false),
                ("/a\u{2028}", false),
                ("", false),
            ],
        ),
        (
            "policy.schema.json",
            "public_key_pem",
            |s| rules::check_public_key_pem(s).is_ok(),
            vec![
                (
                    "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----\n",
                    true,
                ),
                (
                    "  -----BEGIN RSA PUBLIC KEY-----x-----END RSA PUBLIC KEY-----",
                    true,
                ),
                (
                    "-----BEGIN PUBLIC KEY-----x-----END RSA PUBLIC KEY-----",
                    false,
                ),
                ("-----BEGIN PUBLIC KEY-----END PUBLIC KEY-----", false),
                ("nope", false),
            ],
        ),
        (
            "policy.schema.json",
            "identity_url",
            |s| rules::check_identity_url(s).is_ok(),
            vec![
                ("https://login.example.com", true),
                (
                    "https://login.example.com/realms/a/.well-known/jwks.json",
                    true,
                ),
                ("http://127.0.0.1:9000/oidc", true),
                ("http://localhost:8080", true),
                ("http://[::1]:80/jwks", true),
                ("http://login.example.com", false),
                ("https://user:pw@login.example.com", false),
                ("https://login.example.com/#frag", false),
                ("ftp://login.example.com", false),
                ("", false),
            ],
        ),
        (
            "policy.schema.json",
            "password_hash",
            |s| rules::check_password_hash(s).is_ok(),
            vec![
                (
                    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
                    true,
                ),
                (
                    "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
                    true,
                ),
                ("$2b$12$short", false),
                ("hunter2", false),
                ("$argon2id$", false),
            ],
        ),
    ];
    for (file, def, rule, cases) in table {
        let validator = compile_def(file, def);
        for (text, allowed) in cases {
            let value = serde_json::Value::String(text.to_string());
            assert_eq!(validator.is_valid(&value), allowed, "{def} {text:?}");
            if allowed {
                assert!(
                    rule(text),
                    "{def}: the schema allows {text:?} but the rule refuses it"
                );
            }
        }
    }
}

#[test]
fn schema_refusals_are_worded_as_the_rules_word_them() {
    let message = |body: serde_json::Value, spec: &str| -> String {
        let error = match spec {
            "tunnel" => validate::<TunnelSpec>(&body).map(drop),
            "policy" => validate::<PolicySpec>(&body).map(drop),
            _ => validate::<HostnameSpec>(&body).map(drop),
        };
        error.expect_err("refused").first().message.clone()
    };
    let table = [
        (
            json!({"name": "web", "labels": {"bad key": "x"}}),
            "tunnel",
            "label key \"bad key\"",
        ),
        (json!({"name": "Web"}), "tunnel", "is not a valid name"),
        (
            json!({"name": "p", "allow_ips": ["10.0.0.0/33"]}),
            "policy",
            "is not a CIDR block",
        ),
        (
            json!({"name": "p", "allow_paths": ["/a/**/b"]}),
            "policy",
            "only as a trailing",
        ),
        (
            json!({"name": "p", "jwt": {"issuer": "me"}}),
            "policy",
            "set hs256_secret, public_keys_pem or jwks_url",
        ),
        (
            json!({"name": "p", "jwt": {"public_keys_pem": []}}),
            "policy",
            "set hs256_secret, public_keys_pem or jwks_url",
        ),
        (
            json!({"hostname": "a.example.com", "service": "http://x", "tunnel_id": TUNNEL, "routes": [{"selector": {"a": "b"}, "weight": 1}]}),
            "hostname",
            "set exactly one of tunnel_id and routes, not both",
        ),
        (
            json!({"hostname": "a.example.com", "service": "http://x"}),
            "hostname",
            "set exactly one of tunnel_id and routes",
        ),
        (
            json!({"hostname": "a.example.com", "service": "gopher://x", "tunnel_id": TUNNEL}),
            "hostname",
            "must be an origin URL",
        ),
        (
            json!({"hostname": "a.example.com", "service": "http://x", "tunnel_id": TUNNEL, "policy_ids": [TUNNEL, TUNNEL]}),
            "hostname",
            "is listed twice",
        ),
        (
            json!({"hostname": "a.example.com", "service": "http://x", "tunnel_id": TUNNEL, "origin": {"http_host_header": "a b"}}),
            "hostname",
            "http_host_header must be a host name",
        ),
        (
            json!({"hostname": "a.example.com", "service": "https://x", "tunnel_id": TUNNEL, "origin": {"no_tls_verify": true, "insecure_skip_verify": false}}),
            "hostname",
            "no_tls_verify is the deprecated spelling of insecure_skip_verify",
        ),
        (
            json!({"hostname": "a.example.com", "service": "https://x", "tunnel_id": TUNNEL, "origin": {"origin_server_name": "a", "server_name": "b"}}),
            "hostname",
            "set only server_name",
        ),
        (
            json!({"hostname": "a.example.com", "service": "http://x", "tunnel_id": TUNNEL, "origin": {"health_check": {"interval": "10"}}}),
            "hostname",
            "Numbers with a unit",
        ),
        (
            json!({"name": "p", "rules": {"response_headers": {"remove": ["X-Forwarded-For"]}}}),
            "policy",
            "cannot be changed by a rule",
        ),
    ];
    for (body, spec, wanted) in table {
        let got = message(body.clone(), spec);
        assert!(
            got.contains(wanted),
            "{body}: {got:?} does not say {wanted:?}"
        );
    }
    // Where the rule takes what the pattern refuses, the definition's description speaks
    // rather than the regular expression.
    assert!(rules::parse_service("http://host:00080").is_ok());
    let got = message(
        json!({"hostname": "a.example.com", "service": "http://host:00080", "tunnel_id": TUNNEL}),
        "hostname",
    );
    assert!(
        got.starts_with("not a valid service: The origin"),
        "{got:?}"
    );
}

#[test]
fn validation_does_not_use_the_openapi_module() {
    // `openapi` builds on `validate` (the schema files, the violations); never the other way.
    let source = include_str!("../validate.rs");
    assert!(
        !source.contains("openapi::"),
        "validate.rs uses crate::openapi"
    );
}

#[test]
fn every_example_in_the_schemas_is_valid() {
    let mut seen = 0;
    for file in schema_files() {
        let schema: serde_json::Value =
            serde_json::from_str(schema_source(file).expect("embedded")).expect("JSON");
        for (def, body) in schema["$defs"].as_object().into_iter().flatten() {
            let validator = compile_def(file, def);
            for example in body["examples"].as_array().into_iter().flatten() {
                let violations = schema_violations(&validator, example);
                assert!(
                    violations.is_empty(),
                    "{file} {def}: {example}: {violations:?}"
                );
                seen += 1;
            }
        }
    }
    assert!(seen > 0, "no examples found");
}

#[test]
fn tls_passthrough_takes_a_path_less_https_service_and_no_origin_settings() {
    let body = |service: &str| json!({"hostname": "db.example.com", "service": service, "tunnel_id": TUNNEL, "tls_passthrough": true});
    for good in [
        "https://127.0.0.1:8443",
        "https://db.internal",
        "https://[::1]:5000",
    ] {
        let spec: HostnameSpec = validate(&body(good)).expect(good);
        assert!(spec.passes_tls_through(), "{good}");
    }
    for bad in [
        "http://127.0.0.1:8443",
        "https://127.0.0.1:8443/base",
        "http_status:204",
    ] {
        assert_eq!(pointer_of::<HostnameSpec>(body(bad)), "/service", "{bad}");
    }
    let mut with_origin = body("https://127.0.0.1:8443");
    with_origin["origin"] = json!({"no_tls_verify": true});
    assert_eq!(pointer_of::<HostnameSpec>(with_origin), "/origin");
    // Off, the same services are ordinary ones.
    let mut off = body("https://127.0.0.1:8443/base");
    off["tls_passthrough"] = json!(false);
    let spec: HostnameSpec = validate(&off).expect("passthrough off");
    assert!(!spec.passes_tls_through());
}
