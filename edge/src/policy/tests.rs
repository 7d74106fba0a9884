//! Tests of the engine: order of a hostname's policies, report mode, metrics, response headers,
//! and compiled policies and buckets across catalog snapshots.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use postern_schema::api::{Hostname, HostnameSpec, Policy};
use postern_schema::ids::{PolicyId, TunnelId};
use serde_json::json;

use super::test_fixtures::*;
use super::*;

const HOST: &str = "app.example.com";

fn hostname(name: &str, policies: &[&Policy]) -> Hostname {
    Hostname {
        spec: HostnameSpec {
            tls_passthrough: None,
            hostname: name.into(),
            service: "http://localhost:4000".into(),
            tunnel_id: Some(TunnelId::new_random()),
            routes: None,
            policy_ids: policies.iter().map(|p| p.id).collect(),
            paths: Vec::new(),
            origin: None,
        },
        addresses: vec!["127.0.0.1".into()],
        version: 1,
        created_at: "2026-01-01T00:00:00Z".into(),
        certificate: None,
    }
}

fn snapshot(revision: u64, policies: &[&Policy], hostnames: &[&Hostname]) -> Snapshot {
    Snapshot {
        revision,
        tunnels: BTreeMap::new(),
        hostnames: hostnames
            .iter()
            .map(|h| (h.spec.hostname.clone(), (*h).clone()))
            .collect(),
        policies: policies.iter().map(|p| (p.id, (*p).clone())).collect(),
        tcp_services: BTreeMap::new(),
        passthrough: false,
    }
}

fn decisions(metrics: &Metrics, policy: &str, decision: &str, reason: &str) -> u64 {
    metrics.value(
        DECISIONS,
        &[
            ("policy", policy),
            ("hostname", HOST),
            ("decision", decision),
            ("reason", reason),
        ],
    )
}

fn engine() -> (PolicyEngine, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::default());
    (PolicyEngine::new(metrics.clone()), metrics)
}

fn now() -> Now {
    now_plus(Instant::now(), Duration::ZERO)
}

#[test]
fn a_hostname_without_policies_allows_everything() {
    let (engine, _) = engine();
    let host = hostname(HOST, &[]);
    let snap = snapshot(1, &[], &[&host]);
    assert_eq!(
        engine.check(&snap, &host, &facts("10.9.9.9", now())),
        Verdict::Allow
    );
}

#[test]
fn policies_run_in_order_and_the_first_deny_wins() {
    let (engine, metrics) = engine();
    let open = policy(json!({"name": "open"}));
    let ips = policy(json!({"name": "ips", "allow_ips": ["127.0.0.2/32"]}));
    let jwt = policy(json!({"name": "jwt", "jwt": {"hs256_secret": SECRET}}));
    let host = hostname(HOST, &[&open, &ips, &jwt]);
    let snap = snapshot(1, &[&open, &ips, &jwt], &[&host]);

    let verdict = engine.check(&snap, &host, &facts("127.0.0.3", now()));
    let Verdict::Deny(denial) = verdict else {
        panic!("expected a denial, got {verdict:?}");
    };
    assert_eq!(denial.reason, Reason::Ip);
    assert_eq!(&*denial.policy, "ips");
    assert_eq!(denial.status(), StatusCode::FORBIDDEN);
    assert_eq!(decisions(&metrics, "open", "allow", "allow"), 1);
    assert_eq!(decisions(&metrics, "ips", "deny", "ip"), 1);
    // The policy after the denying one never ran.
    assert_eq!(decisions(&metrics, "jwt", "deny", "jwt_missing"), 0);

    // From the allowed address the JWT policy decides.
    let verdict = engine.check(&snap, &host, &facts("127.0.0.2", now()));
    assert!(
        matches!(&verdict, Verdict::Deny(d) if d.reason == Reason::JwtMissing && &*d.policy == "jwt"),
        "{verdict:?}"
    );
    let token = format!(
        "Bearer {}",
        token(Algorithm::HS256, &hs256_key(SECRET), good_claims())
    );
    let request = RequestFacts {
        authorization: Some(token.as_bytes()),
        ..facts("127.0.0.2", now())
    };
    assert_eq!(engine.check(&snap, &host, &request), Verdict::Allow);
    assert_eq!(decisions(&metrics, "jwt", "allow", "allow"), 1);
    assert_eq!(decisions(&metrics, "open", "allow", "allow"), 3);
}

#[test]
fn report_mode_counts_what_it_would_block_and_blocks_nothing() {
    let (engine, metrics) = engine();
    let watch = policy(json!({
        "name": "watch",
        "mode": "report",
        "allow_ips": ["127.0.0.2/32"],
        "allow_methods": ["GET"],
        "rate_limit": {"requests_per_second": 1, "burst": 2},
    }));
    let host = hostname(HOST, &[&watch]);
    let snap = snapshot(1, &[&watch], &[&host]);
    let at = now();

    assert_eq!(
        engine.check(&snap, &host, &facts("127.0.0.3", at)),
        Verdict::Allow
    );
    let post = RequestFacts {
        method: "POST",
        ..facts("127.0.0.2", at)
    };
    assert_eq!(engine.check(&snap, &host, &post), Verdict::Allow);
    for _ in 0..5 {
        assert_eq!(
            engine.check(&snap, &host, &facts("127.0.0.2", at)),
            Verdict::Allow
        );
    }
    assert_eq!(decisions(&metrics, "watch", "report", "ip"), 1);
    assert_eq!(decisions(&metrics, "watch", "report", "method"), 1);
    assert_eq!(decisions(&metrics, "watch", "allow", "allow"), 2);
    assert_eq!(decisions(&metrics, "watch", "report", "rate_limit"), 3);
    assert_eq!(decisions(&metrics, "watch", "deny", "ip"), 0);
}

#[test]
fn a_report_policy_before_an_enforcing_one_does_not_stop_it() {
    let (engine, metrics) = engine();
    let watch = policy(json!({"name": "watch", "mode": "report", "deny_ips": ["127.0.0.0/8"]}));
    let guard = policy(json!({"name": "guard", "allow_methods": ["GET"]}));
    let host = hostname(HOST, &[&watch, &guard]);
    let snap = snapshot(1, &[&watch, &guard], &[&host]);
    let request = RequestFacts {
        method: "DELETE",
        ..facts("127.0.0.1", now())
    };
    let verdict = engine.check(&snap, &host, &request);
    assert!(
        matches!(&verdict, Verdict::Deny(d) if d.reason == Reason::Method && &*d.policy == "guard"),
        "{verdict:?}"
    );
    assert_eq!(decisions(&metrics, "watch", "report", "ip"), 1);
    assert_eq!(decisions(&metrics, "guard", "deny", "method"), 1);
}

#[test]
fn denials_carry_their_status_and_headers() {
    let table = [
        (Reason::Ip, None, 403, None, None),
        (Reason::Method, None, 403, None, None),
        (Reason::Path, None, 403, None, None),
        (Reason::JwtMissing, None, 401, Some("Bearer"), None),
        (
            Reason::JwtInvalid,
            None,
            401,
            Some("Bearer error=\"invalid_token\""),
            None,
        ),
        (Reason::RateLimit, Some(3), 429, None, Some("3")),
        (Reason::RateLimit, Some(0), 429, None, Some("1")),
    ];
    for (reason, retry_after_secs, status, authenticate, retry_after) in table {
        let denial = Denial {
            reason,
            policy: Arc::from("p"),
            retry_after_secs,
        };
        assert_eq!(denial.status().as_u16(), status, "{reason:?}");
        let mut headers = HeaderMap::new();
        denial.add_headers(&mut headers);
        let text = |name| {
            headers
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
        };
        assert_eq!(text(header::WWW_AUTHENTICATE), authenticate, "{reason:?}");
        assert_eq!(text(header::RETRY_AFTER), retry_after, "{reason:?}");
    }
}

#[test]
fn rate_limit_denials_say_when_to_retry() {
    let (engine, metrics) = engine();
    let limited =
        policy(json!({"name": "limited", "rate_limit": {"requests_per_second": 0.25, "burst": 1}}));
    let host = hostname(HOST, &[&limited]);
    let snap = snapshot(1, &[&limited], &[&host]);
    let at = now();
    assert_eq!(
        engine.check(&snap, &host, &facts("127.0.0.2", at)),
        Verdict::Allow
    );
    let verdict = engine.check(&snap, &host, &facts("127.0.0.2", at));
    let Verdict::Deny(denial) = verdict else {
        panic!("expected 429, got {verdict:?}");
    };
    assert_eq!(denial.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(denial.retry_after_secs, Some(4));
    assert_eq!(decisions(&metrics, "limited", "deny", "rate_limit"), 1);
}

#[test]
fn buckets_survive_new_snapshots_while_the_limit_is_unchanged() {
    let (engine, _) = engine();
    let id = PolicyId::new_random();
    let limited = policy_version(
        id,
        1,
        json!({"name": "limited", "rate_limit": {"requests_per_second": 1, "burst": 1}}),
    );
    let host = hostname(HOST, &[&limited]);
    let at = now();
    let first = snapshot(1, &[&limited], &[&host]);
    assert_eq!(
        engine.check(&first, &host, &facts("127.0.0.2", at)),
        Verdict::Allow
    );
    assert!(matches!(
        engine.check(&first, &host, &facts("127.0.0.2", at)),
        Verdict::Deny(_)
    ));

    // Another write elsewhere: a new snapshot, the same policy.
    let unrelated = policy(json!({"name": "unrelated"}));
    let second = snapshot(2, &[&limited, &unrelated], &[&host]);
    assert!(matches!(
        engine.check(&second, &host, &facts("127.0.0.2", at)),
        Verdict::Deny(_)
    ));

    // The policy changes, but not its limit: the buckets carry over.
    let renamed = policy_version(
        id,
        2,
        json!({"name": "limited", "allow_methods": ["GET"], "rate_limit": {"requests_per_second": 1, "burst": 1}}),
    );
    let third = snapshot(3, &[&renamed], &[&host]);
    assert!(matches!(
        engine.check(&third, &host, &facts("127.0.0.2", at)),
        Verdict::Deny(_)
    ));

    // A request still holding the older snapshot does not bring the old version back.
    assert!(matches!(
        engine.check(&second, &host, &facts("127.0.0.2", at)),
        Verdict::Deny(_)
    ));

    // The limit itself changes: fresh buckets.
    let raised = policy_version(
        id,
        3,
        json!({"name": "limited", "rate_limit": {"requests_per_second": 1, "burst": 5}}),
    );
    let fourth = snapshot(4, &[&raised], &[&host]);
    assert_eq!(
        engine.check(&fourth, &host, &facts("127.0.0.2", at)),
        Verdict::Allow
    );
}

#[test]
fn policies_compile_once_per_version_and_deleted_ones_are_forgotten() {
    let (engine, _) = engine();
    let id = PolicyId::new_random();
    let v1 = policy_version(id, 1, json!({"name": "p", "allow_ips": ["127.0.0.2/32"]}));
    let host = hostname(HOST, &[&v1]);
    let first = snapshot(1, &[&v1], &[&host]);
    let cached = |engine: &PolicyEngine| {
        engine
            .compiled
            .read()
            .map(|c| c.get(&id).map(|e| Arc::as_ptr(e) as usize))
            .unwrap_or_default()
    };
    engine.check(&first, &host, &facts("127.0.0.2", now()));
    let compiled_once = cached(&engine);
    engine.check(&first, &host, &facts("127.0.0.2", now()));
    assert_eq!(cached(&engine), compiled_once);

    let v2 = policy_version(id, 2, json!({"name": "p", "allow_ips": ["127.0.0.3/32"]}));
    let second = snapshot(2, &[&v2], &[&host]);
    assert!(matches!(
        engine.check(&second, &host, &facts("127.0.0.2", now())),
        Verdict::Deny(_)
    ));
    assert_eq!(
        engine.check(&second, &host, &facts("127.0.0.3", now())),
        Verdict::Allow
    );
    assert_ne!(cached(&engine), compiled_once);

    let bare = hostname(HOST, &[]);
    let other = policy(json!({"name": "other"}));
    let with_other = hostname("other.example.com", &[&other]);
    let third = snapshot(3, &[&other], &[&bare, &with_other]);
    engine.check(&third, &with_other, &facts("127.0.0.2", now()));
    assert_eq!(cached(&engine), None);
}

#[test]
fn the_engine_can_be_shared_between_threads() {
    let (engine, metrics) = engine();
    let limited = policy(
        json!({"name": "limited", "rate_limit": {"requests_per_second": 0.001, "burst": 100}}),
    );
    let host = hostname(HOST, &[&limited]);
    let snap = snapshot(1, &[&limited], &[&host]);
    let at = now();
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..50 {
                    engine.check(&snap, &host, &facts("127.0.0.2", at));
                }
            });
        }
    });
    assert_eq!(decisions(&metrics, "limited", "allow", "allow"), 100);
    assert_eq!(decisions(&metrics, "limited", "deny", "rate_limit"), 100);
}
