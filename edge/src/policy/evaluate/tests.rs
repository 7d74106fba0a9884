//! Table-driven tests of the pure evaluation: one compiled policy, one request, one outcome.

use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use serde_json::json;

use super::*;
use crate::policy::compile::compile;
use crate::policy::jwt::JwtRejection;
use crate::policy::test_fixtures::*;

const HOST: &str = "app.example.com";

fn compiled(spec: serde_json::Value) -> CompiledPolicy {
    compile(&policy(spec), None)
}

fn reason(outcome: Outcome) -> Option<Reason> {
    match outcome {
        Outcome::Pass => None,
        Outcome::Block(block) => Some(block.reason),
    }
}

/// Allowed CIDRs, denied CIDRs, client address, expected refusal.
type IpCase<'a> = (&'a [&'a str], &'a [&'a str], &'a str, Option<Reason>);

#[test]
fn ip_allow_and_deny_lists() {
    let table: &[IpCase<'_>] = &[
        (&[], &[], "127.0.0.3", None),
        (&["127.0.0.2/32"], &[], "127.0.0.2", None),
        (&["127.0.0.2/32"], &[], "127.0.0.3", Some(Reason::Ip)),
        (&["127.0.0.2"], &[], "127.0.0.2", None),
        (&[], &["127.0.0.3"], "127.0.0.3", Some(Reason::Ip)),
        (&[], &["127.0.0.3"], "127.0.0.2", None),
        // Deny wins over allow.
        (
            &["10.0.0.0/8"],
            &["10.1.0.0/16"],
            "10.1.2.3",
            Some(Reason::Ip),
        ),
        (&["10.0.0.0/8"], &["10.1.0.0/16"], "10.2.0.1", None),
        (
            &["10.0.0.1/32"],
            &["10.0.0.1/32"],
            "10.0.0.1",
            Some(Reason::Ip),
        ),
        // Host bits in a CIDR do not matter.
        (&["10.1.2.3/16"], &[], "10.1.200.200", None),
        // IPv6.
        (&["2001:db8::/32"], &[], "2001:db8::1", None),
        (&["2001:db8::/32"], &[], "2001:db9::1", Some(Reason::Ip)),
        (&[], &["2001:db8:1::/48"], "2001:db8:1::5", Some(Reason::Ip)),
        (&["::1/128"], &[], "127.0.0.1", Some(Reason::Ip)),
        (&["0.0.0.0/0"], &["::/0"], "127.0.0.1", None),
        (&["0.0.0.0/0"], &["::/0"], "::1", Some(Reason::Ip)),
        // An IPv4-mapped IPv6 peer (dual-stack listener) is its IPv4 address.
        (&["127.0.0.0/8"], &[], "::ffff:127.0.0.5", None),
        (&[], &["127.0.0.5/32"], "::ffff:127.0.0.5", Some(Reason::Ip)),
    ];
    let base = Instant::now();
    for (allow, deny, client, want) in table {
        let policy = compiled(json!({"name": "ips", "allow_ips": allow, "deny_ips": deny}));
        let got = reason(evaluate(
            &policy,
            HOST,
            &facts(client, now_plus(base, Duration::ZERO)),
        ));
        assert_eq!(got, *want, "allow {allow:?} deny {deny:?} client {client}");
    }
}

#[test]
fn methods_must_be_listed_when_the_list_is_not_empty() {
    let table: &[(&[&str], &str, Option<Reason>)] = &[
        (&[], "DELETE", None),
        (&["GET", "HEAD"], "GET", None),
        (&["GET", "HEAD"], "HEAD", None),
        (&["GET", "HEAD"], "POST", Some(Reason::Method)),
        (&["GET"], "get", Some(Reason::Method)),
        (&["GET"], "", Some(Reason::Method)),
    ];
    let now = now_plus(Instant::now(), Duration::ZERO);
    for (allow, method, want) in table {
        let policy = compiled(json!({"name": "methods", "allow_methods": allow}));
        let request = RequestFacts {
            method,
            ..facts("127.0.0.1", now)
        };
        assert_eq!(
            reason(evaluate(&policy, HOST, &request)),
            *want,
            "{allow:?} {method}"
        );
    }
}

#[test]
fn paths_match_patterns_after_normalisation() {
    let allow = ["/api/**", "/health", "/public/*.css"];
    let table: &[(&str, Option<Reason>)] = &[
        ("/api", None),
        ("/api/users/1", None),
        ("/health", None),
        ("/health?probe=1", None),
        ("/public/site.css", None),
        ("/healthz", Some(Reason::Path)),
        ("/admin", Some(Reason::Path)),
        ("/", Some(Reason::Path)),
        ("", Some(Reason::Path)),
        ("*", Some(Reason::Path)),
        ("/public/site.js", Some(Reason::Path)),
        // Dot segments and encoded unreserved characters resolve before matching.
        ("/api/../admin", Some(Reason::Path)),
        ("/api/./users", None),
        ("/public/../api/x", None),
        ("/api/%2e%2e/admin", Some(Reason::Path)),
        ("/%61pi/users", None),
        ("/%41pi/users", Some(Reason::Path)),
        ("/api%2F..%2Fadmin", Some(Reason::Path)),
        ("/api/%zz", None),
        ("/api/%", None),
        ("/api/é/%C3%A9", None),
        ("/api/..", Some(Reason::Path)),
        // Repeated slashes merge (as nginx reads them); the proxy forwards the merged form.
        ("//api/x", None),
        ("/public//../admin", Some(Reason::Path)),
        ("/api/..;/admin", Some(Reason::Path)),
    ];
    let policy = compiled(json!({"name": "paths", "allow_paths": allow}));
    let now = now_plus(Instant::now(), Duration::ZERO);
    for (path, want) in table {
        let request = RequestFacts {
            path,
            ..facts("127.0.0.1", now)
        };
        assert_eq!(reason(evaluate(&policy, HOST, &request)), *want, "{path}");
    }
}

/// What a token case expects.
#[derive(Debug, PartialEq)]
enum Want {
    Pass,
    Missing,
    Invalid(JwtRejection),
}

fn jwt_outcome(policy: &CompiledPolicy, authorization: Option<&str>, now: Now) -> Want {
    let request = RequestFacts {
        authorization: authorization.map(str::as_bytes),
        ..facts("127.0.0.1", now)
    };
    match evaluate(policy, HOST, &request) {
        Outcome::Pass => Want::Pass,
        Outcome::Block(Block {
            reason: Reason::JwtMissing,
            ..
        }) => Want::Missing,
        Outcome::Block(Block {
            reason: Reason::JwtInvalid,
            jwt: Some(rejection),
            ..
        }) => Want::Invalid(rejection),
        Outcome::Block(other) => panic!("unexpected {other:?}"),
    }
}

fn with(claims: &[(&str, serde_json::Value)]) -> serde_json::Value {
    let mut value = good_claims();
    for (key, claim) in claims {
        if claim.is_null() {
            value.as_object_mut().map(|o| o.remove(*key));
        } else {
            value[*key] = claim.clone();
        }
    }
    value
}

#[test]
fn jwt_tokens_are_checked_for_signature_time_issuer_and_audience() {
    use JwtRejection as R;
    let policy = compiled(json!({"name": "jwt", "jwt": jwt_settings()}));
    let now = now_plus(Instant::now(), Duration::ZERO);
    let hs = |claims| {
        format!(
            "Bearer {}",
            token(Algorithm::HS256, &hs256_key(SECRET), claims)
        )
    };
    let rs = |claims| {
        format!(
            "Bearer {}",
            token(Algorithm::RS256, &rsa_key(rsa()), claims)
        )
    };
    let es = |claims| format!("Bearer {}", token(Algorithm::ES256, &ec_key(ec()), claims));
    let n = NOW_UNIX as i64;

    let good_hs = token(Algorithm::HS256, &hs256_key(SECRET), good_claims());
    let tampered = {
        let mut parts: Vec<String> = good_hs.split('.').map(String::from).collect();
        let other = token(
            Algorithm::HS256,
            &hs256_key(SECRET),
            with(&[("sub", json!("admin"))]),
        );
        parts[1] = other.split('.').nth(1).unwrap_or_default().to_string();
        format!("Bearer {}", parts.join("."))
    };
    // `alg: none`, with and without a signature part.
    let none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
    let payload = good_hs.split('.').nth(1).unwrap_or_default().to_string();
    // An ES256 signature presented as RS256.
    let es_as_rs = {
        let es_token = token(Algorithm::ES256, &ec_key(ec()), good_claims());
        let rs_token = token(Algorithm::RS256, &rsa_key(rsa()), good_claims());
        let rs_header = rs_token.split('.').next().unwrap_or_default().to_string();
        let parts: Vec<&str> = es_token.split('.').collect();
        format!("Bearer {rs_header}.{}.{}", parts[1], parts[2])
    };

    let table: Vec<(&str, Option<String>, Want)> = vec![
        ("no header", None, Want::Missing),
        (
            "another scheme",
            Some("Basic dXNlcjpwYXNz".into()),
            Want::Missing,
        ),
        (
            "bearer without token",
            Some("Bearer".into()),
            Want::Invalid(R::Malformed),
        ),
        (
            "bearer with blanks",
            Some("Bearer   ".into()),
            Want::Invalid(R::Malformed),
        ),
        ("valid HS256", Some(hs(good_claims())), Want::Pass),
        ("valid RS256", Some(rs(good_claims())), Want::Pass),
        ("valid ES256", Some(es(good_claims())), Want::Pass),
        (
            "scheme is case-insensitive",
            Some(format!("bearer {good_hs}")),
            Want::Pass,
        ),
        (
            "audience list",
            Some(hs(with(&[("aud", json!(["x", "other"]))]))),
            Want::Pass,
        ),
        (
            "wrong HS256 secret",
            Some(format!(
                "Bearer {}",
                token(
                    Algorithm::HS256,
                    &hs256_key("another-secret"),
                    good_claims()
                )
            )),
            Want::Invalid(R::Signature),
        ),
        (
            "untrusted RSA key",
            Some(format!(
                "Bearer {}",
                token(Algorithm::RS256, &rsa_key(other_rsa()), good_claims())
            )),
            Want::Invalid(R::Signature),
        ),
        (
            "untrusted EC key",
            Some(format!(
                "Bearer {}",
                token(Algorithm::ES256, &ec_key(other_ec()), good_claims())
            )),
            Want::Invalid(R::Signature),
        ),
        (
            "tampered claims",
            Some(tampered),
            Want::Invalid(R::Signature),
        ),
        (
            "ES256 signature labelled RS256",
            Some(es_as_rs),
            Want::Invalid(R::Signature),
        ),
        (
            "expired 61 s ago",
            Some(hs(with(&[("exp", json!(n - 61))]))),
            Want::Invalid(R::Expired),
        ),
        (
            "expired 59 s ago (skew)",
            Some(hs(with(&[("exp", json!(n - 59))]))),
            Want::Pass,
        ),
        (
            "expired long ago",
            Some(rs(with(&[("exp", json!(n - 86_400))]))),
            Want::Invalid(R::Expired),
        ),
        (
            "valid from in 59 s (skew)",
            Some(hs(with(&[("nbf", json!(n + 59))]))),
            Want::Pass,
        ),
        (
            "valid from in 61 s",
            Some(hs(with(&[("nbf", json!(n + 61))]))),
            Want::Invalid(R::NotYetValid),
        ),
        (
            "fractional exp",
            Some(hs(with(&[("exp", json!(NOW_UNIX as f64 + 0.5))]))),
            Want::Pass,
        ),
        (
            "no exp",
            Some(hs(with(&[("exp", json!(null))]))),
            Want::Invalid(R::MissingExpiry),
        ),
        (
            "exp as a string",
            Some(hs(with(&[("exp", json!("tomorrow"))]))),
            Want::Invalid(R::Malformed),
        ),
        (
            "wrong issuer",
            Some(hs(with(&[("iss", json!("https://evil.example"))]))),
            Want::Invalid(R::Issuer),
        ),
        (
            "no issuer",
            Some(es(with(&[("iss", json!(null))]))),
            Want::Invalid(R::Issuer),
        ),
        (
            "wrong audience",
            Some(hs(with(&[("aud", json!("someone-else"))]))),
            Want::Invalid(R::Audience),
        ),
        (
            "no audience",
            Some(rs(with(&[("aud", json!(null))]))),
            Want::Invalid(R::Audience),
        ),
        (
            "empty audience list",
            Some(hs(with(&[("aud", json!([]))]))),
            Want::Invalid(R::Audience),
        ),
        (
            "alg none without signature",
            Some(format!("Bearer {none_header}.{payload}.")),
            Want::Invalid(R::Malformed),
        ),
        (
            "alg none with signature",
            Some(format!("Bearer {none_header}.{payload}.c2ln")),
            Want::Invalid(R::Malformed),
        ),
        (
            "HS384 is not accepted",
            Some(format!(
                "Bearer {}",
                token(Algorithm::HS384, &hs256_key(SECRET), good_claims())
            )),
            Want::Invalid(R::Algorithm),
        ),
        (
            "garbage",
            Some("Bearer abc.def.ghi".into()),
            Want::Invalid(R::Malformed),
        ),
        (
            "two parts",
            Some("Bearer abc.def".into()),
            Want::Invalid(R::Malformed),
        ),
        (
            "four parts",
            Some(format!("Bearer {good_hs}.x")),
            Want::Invalid(R::Malformed),
        ),
        (
            "blank inside",
            Some("Bearer abc def".into()),
            Want::Invalid(R::Malformed),
        ),
        (
            "huge",
            Some(format!("Bearer {}", "a".repeat(20_000))),
            Want::Invalid(R::Malformed),
        ),
    ];
    for (name, header, want) in table {
        assert_eq!(jwt_outcome(&policy, header.as_deref(), now), want, "{name}");
    }
    // Not UTF-8 at all.
    let request = RequestFacts {
        authorization: Some(b"Bearer \xff\xfe"),
        ..facts("127.0.0.1", now)
    };
    assert_eq!(
        reason(evaluate(&policy, HOST, &request)),
        Some(Reason::JwtInvalid)
    );
}

#[test]
fn jwt_alg_must_match_the_kind_of_key() {
    // A policy that trusts only public keys: an HS256 token whose HMAC key is the public key's
    // PEM (the classic confusion attack) must be refused, as must every other HS256 token.
    let public_only = compiled(json!({"name": "keys", "jwt": {
        "public_keys_pem": [rsa().public_pem, ec().public_pem]
    }}));
    let now = now_plus(Instant::now(), Duration::ZERO);
    for public_pem in [&rsa().public_pem, &ec().public_pem] {
        let forged = token(Algorithm::HS256, &hs256_key(public_pem), good_claims());
        assert_eq!(
            jwt_outcome(&public_only, Some(&format!("Bearer {forged}")), now),
            Want::Invalid(JwtRejection::Algorithm)
        );
    }
    // With a secret configured too, the forged token is checked against the secret only.
    let both = compiled(json!({"name": "both", "jwt": {
        "hs256_secret": SECRET,
        "public_keys_pem": [rsa().public_pem]
    }}));
    let forged = token(
        Algorithm::HS256,
        &hs256_key(&rsa().public_pem),
        good_claims(),
    );
    assert_eq!(
        jwt_outcome(&both, Some(&format!("Bearer {forged}")), now),
        Want::Invalid(JwtRejection::Signature)
    );
    // A secret-only policy refuses RS256 and ES256 tokens.
    let secret_only = compiled(json!({"name": "secret", "jwt": {"hs256_secret": SECRET}}));
    for header in [
        token(Algorithm::RS256, &rsa_key(rsa()), good_claims()),
        token(Algorithm::ES256, &ec_key(ec()), good_claims()),
    ] {
        assert_eq!(
            jwt_outcome(&secret_only, Some(&format!("Bearer {header}")), now),
            Want::Invalid(JwtRejection::Algorithm)
        );
    }
    // No issuer or audiences configured: any iss and aud (or none) will do.
    let bare = token(
        Algorithm::HS256,
        &hs256_key(SECRET),
        json!({"exp": NOW_UNIX + 60}),
    );
    assert_eq!(
        jwt_outcome(&secret_only, Some(&format!("Bearer {bare}")), now),
        Want::Pass
    );
}

#[test]
fn a_key_that_does_not_parse_verifies_nothing() {
    let policy = compiled(json!({"name": "broken", "jwt": {
        "public_keys_pem": ["-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"]
    }}));
    let now = now_plus(Instant::now(), Duration::ZERO);
    let valid = token(Algorithm::RS256, &rsa_key(rsa()), good_claims());
    assert_eq!(
        jwt_outcome(&policy, Some(&format!("Bearer {valid}")), now),
        Want::Invalid(JwtRejection::Algorithm)
    );
}

#[test]
fn rate_limit_allows_the_burst_per_client_then_refills() {
    let policy = compiled(json!({"name": "rl", "rate_limit": {
        "requests_per_second": 50, "burst": 50
    }}));
    let base = Instant::now();
    let at = |ms: u64| now_plus(base, Duration::from_millis(ms));
    let mut passed = 0;
    let mut retry_after = Vec::new();
    for i in 0..200u64 {
        // 200 requests within 100 ms: the burst plus about 5 refilled tokens.
        match evaluate(&policy, HOST, &facts("127.0.0.2", at(i / 2))) {
            Outcome::Pass => passed += 1,
            Outcome::Block(block) => {
                assert_eq!(block.reason, Reason::RateLimit);
                retry_after.push(block.retry_after_secs);
            }
        }
    }
    assert!((50..=55).contains(&passed), "{passed} passed");
    assert!(retry_after.iter().all(|r| *r == Some(1)));
    // Another client is not affected.
    assert_eq!(
        evaluate(&policy, HOST, &facts("127.0.0.3", at(100))),
        Outcome::Pass
    );
    // A second later the bucket is full again.
    let again = (0..60)
        .filter(|_| evaluate(&policy, HOST, &facts("127.0.0.2", at(1_200))) == Outcome::Pass)
        .count();
    assert_eq!(again, 50);
}

#[test]
fn per_hostname_limit_is_shared_by_clients() {
    let policy = compiled(json!({"name": "rl", "rate_limit": {
        "requests_per_second": 2, "per": "hostname"
    }}));
    let now = now_plus(Instant::now(), Duration::ZERO);
    assert_eq!(
        evaluate(&policy, HOST, &facts("127.0.0.2", now)),
        Outcome::Pass
    );
    assert_eq!(
        evaluate(&policy, HOST, &facts("127.0.0.3", now)),
        Outcome::Pass
    );
    assert_eq!(
        reason(evaluate(&policy, HOST, &facts("127.0.0.4", now))),
        Some(Reason::RateLimit)
    );
    assert_eq!(
        evaluate(&policy, "other.example.com", &facts("127.0.0.4", now)),
        Outcome::Pass
    );
}

#[test]
fn the_first_failing_check_decides_and_refused_requests_spend_no_tokens() {
    let policy = compiled(json!({
        "name": "all",
        "allow_ips": ["127.0.0.2/32"],
        "allow_methods": ["GET"],
        "allow_paths": ["/ok"],
        "jwt": {"hs256_secret": SECRET},
        "rate_limit": {"requests_per_second": 1, "burst": 1},
    }));
    let now = now_plus(Instant::now(), Duration::ZERO);
    let good = format!(
        "Bearer {}",
        token(Algorithm::HS256, &hs256_key(SECRET), good_claims())
    );
    let bad = "Bearer x.y.z".to_string();
    let request =
        |ip: &'static str, method: &'static str, path: &'static str, auth: Option<&str>| {
            let auth: Option<String> = auth.map(String::from);
            let facts = RequestFacts {
                method,
                path,
                authorization: auth.as_deref().map(str::as_bytes),
                ..facts(ip, now)
            };
            reason(evaluate(&policy, HOST, &facts))
        };
    assert_eq!(request("127.0.0.3", "POST", "/no", None), Some(Reason::Ip));
    assert_eq!(
        request("127.0.0.2", "POST", "/no", None),
        Some(Reason::Method)
    );
    assert_eq!(request("127.0.0.2", "GET", "/no", None), Some(Reason::Path));
    assert_eq!(
        request("127.0.0.2", "GET", "/ok", None),
        Some(Reason::JwtMissing)
    );
    for _ in 0..5 {
        assert_eq!(
            request("127.0.0.2", "GET", "/ok", Some(&bad)),
            Some(Reason::JwtInvalid)
        );
    }
    assert_eq!(request("127.0.0.2", "GET", "/ok", Some(&good)), None);
    assert_eq!(
        request("127.0.0.2", "GET", "/ok", Some(&good)),
        Some(Reason::RateLimit)
    );
}
