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
