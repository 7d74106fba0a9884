//! The control API against the real `postern-edge` binary on port 0: validation with JSON
//! pointers, round trips, selectors, auth, optimistic concurrency, referential integrity and
//! durability across SIGTERM and SIGKILL. Every answer is checked against openapi.json.

use std::collections::BTreeSet;

use acceptance::{Api, EdgeProcess};
use serde_json::{Value, json};

async fn count(api: &Api, path: &str) -> usize {
    let response = api.get(path).await;
    assert_eq!(response.status, 200, "{}", response.text);
    response.body["items"].as_array().map_or(0, Vec::len)
}

async fn create(api: &Api, path: &str, body: Value) -> Value {
    let response = api.post(path, &body).await;
    assert_eq!(response.status, 201, "{path} {body}: {}", response.text);
    response.body
}

/// Posts each body and expects 400 with exactly that JSON pointer, and nothing stored.
async fn expect_rejected(api: &Api, path: &str, table: &[(Value, &str)]) {
    let before = count(api, path).await;
    for (body, pointer) in table {
        let response = api.post(path, body).await;
        assert_eq!(
            response.status, 400,
            "POST {path} {body} answered {}",
            response.text
        );
        assert_eq!(response.error_code(), Some("invalid"), "{body}");
        assert_eq!(
            response.error_path(),
            Some(*pointer),
            "POST {path} {body}: {}",
            response.text
        );
    }
    assert_eq!(count(api, path).await, before, "a rejected body was stored");
}

#[tokio::test]
async fn invalid_bodies_are_rejected_with_a_pointer_and_nothing_is_stored() {
    let edge = EdgeProcess::start();
    let api = edge.api();
    let tunnel = create(&api, "/v1/tunnels", json!({"name": "web"})).await;
    let tunnel_id = tunnel["id"].as_str().expect("id").to_string();

    expect_rejected(
        &api,
        "/v1/tunnels",
        &[
            (json!({}), "/name"),
            (json!({"name": 42}), "/name"),
            (json!({"name": "Web"}), "/name"),
            (json!({"name": "web-", "labels": {}}), "/name"),
            (json!({"name": "a", "colour": "red"}), "/colour"),
            (json!({"name": "a", "labels": ["x"]}), "/labels"),
            (
                json!({"name": "a", "labels": {"release": 1}}),
                "/labels/release",
            ),
            (
                json!({"name": "a", "labels": {"bad key": "x"}}),
                "/labels/bad key",
            ),
            (
                json!({"name": "a", "labels": {"release": "not ok"}}),
                "/labels/release",
            ),
            (json!({"name": "a", "labels": {"-x": "y"}}), "/labels/-x"),
            (
                json!({"name": "a", "labels": {"UPPER.example/x": "y"}}),
                "/labels/UPPER.example~1x",
            ),
        ],
    )
    .await;

    expect_rejected(
        &api,
        "/v1/policies",
        &[
            (json!({}), "/name"),
            (json!({"name": "p", "mode": "block"}), "/mode"),
            (json!({"name": "p", "allow_ips": ["10.0.0.0/33"]}), "/allow_ips/0"),
            (json!({"name": "p", "deny_ips": ["10.0.0.0/8", "nope"]}), "/deny_ips/1"),
            (json!({"name": "p", "allow_ips": "10.0.0.0/8"}), "/allow_ips"),
            (json!({"name": "p", "allow_methods": ["get"]}), "/allow_methods/0"),
            (json!({"name": "p", "allow_paths": ["api/*"]}), "/allow_paths/0"),
            (json!({"name": "p", "allow_paths": ["/a/**/b"]}), "/allow_paths/0"),
            (json!({"name": "p", "rate_limit": {"requests_per_second": 0}}), "/rate_limit/requests_per_second"),
            (json!({"name": "p", "rate_limit": {"requests_per_second": 5, "per": "user"}}), "/rate_limit/per"),
            (json!({"name": "p", "jwt": {"issuer": "me"}}), "/jwt"),
            (json!({"name": "p", "jwt": {"public_keys_pem": ["-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"]}}), "/jwt/public_keys_pem/0"),
            (json!({"name": "p", "ttl": 5}), "/ttl"),
        ],
    )
    .await;

    let base = |extra: Value| {
        let mut body = json!({"hostname": "app.example.com", "service": "http://localhost:4000", "tunnel_id": tunnel_id});
        for (k, v) in extra.as_object().expect("object") {
            if v.is_null() {
                body.as_object_mut().expect("object").remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        body
    };
    let route = |selector: Value, weight: Value| json!([{"selector": selector, "weight": weight}]);
    expect_rejected(
        &api,
        "/v1/hostnames",
        &[
            (base(json!({"hostname": null})), "/hostname"),
            (base(json!({"hostname": "App.example.com"})), "/hostname"),
            (base(json!({"hostname": "app.example.org"})), "/hostname"),
            (base(json!({"hostname": "under_score.example.com"})), "/hostname"),
            (base(json!({"service": "ftp://files"})), "/service"),
            (base(json!({"service": "http_status:99"})), "/service"),
            (base(json!({"service": 4000})), "/service"),
            (base(json!({"tunnel_id": "nope"})), "/tunnel_id"),
            (base(json!({"tunnel_id": "00000000-0000-4000-8000-000000000000"})), "/tunnel_id"),
            (base(json!({"tunnel_id": null})), "/tunnel_id"),
            (base(json!({"routes": route(json!({"release": "stable"}), json!(50))})), "/routes"),
            (base(json!({"tunnel_id": null, "routes": route(json!({"release": "x"}), json!(0))})), "/routes/0/weight"),
            (base(json!({"tunnel_id": null, "routes": route(json!({"release": "x"}), json!(101))})), "/routes/0/weight"),
            (base(json!({"tunnel_id": null, "routes": route(json!({"bad key": "x"}), json!(5))})), "/routes/0/selector/bad key"),
            (base(json!({"policy_ids": ["00000000-0000-4000-8000-000000000000"]})), "/policy_ids/0"),
            (base(json!({"origin": {"connect_timeout_ms": -1}})), "/origin/connect_timeout_ms"),
            (base(json!({"extra": true})), "/extra"),
        ],
    )
    .await;

    // Malformed JSON and the wrong content type are refused too, and still nothing is stored.
    let garbage = api
        .send_raw(
            reqwest::Method::POST,
            "/v1/tunnels",
            "application/json",
            b"{\"name\":".to_vec(),
        )
        .await;
    assert_eq!(garbage.status, 400, "{}", garbage.text);
    let form = api
        .send_raw(
            reqwest::Method::POST,
            "/v1/tunnels",
            "application/x-www-form-urlencoded",
            b"name=x".to_vec(),
        )
        .await;
    assert_eq!(form.status, 415, "{}", form.text);
    assert_eq!(count(&api, "/v1/tunnels").await, 1);
}

#[tokio::test]
async fn objects_round_trip_and_selectors_filter_tunnels() {
    let edge = EdgeProcess::start();
    let api = edge.api();
    let stable = create(
        &api,
        "/v1/tunnels",
        json!({"name": "stable-a", "labels": {"release": "stable", "app": "web"}}),
    )
    .await;
    let canary = create(
        &api,
        "/v1/tunnels",
        json!({"name": "canary-a", "labels": {"release": "canary", "app": "web"}}),
    )
    .await;
    create(&api, "/v1/tunnels", json!({"name": "other"})).await;
    assert!(
        stable["token"]
            .as_str()
            .is_some_and(|t| t.starts_with("postern1."))
    );
    assert_eq!(stable["version"], 1);

    // Get, and the token again.
    let id = stable["id"].as_str().expect("id");
    let got = api.get(&format!("/v1/tunnels/{id}")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body["labels"]["release"], "stable");
    assert!(
        got.body.get("token").is_none(),
        "GET must not return the token"
    );
    assert_eq!(got.etag().as_deref(), Some("1"));
    let token = api.get(&format!("/v1/tunnels/{id}/token")).await;
    assert_eq!(token.body["token"], stable["token"]);

    // Selectors return exactly the matching tunnels.
    let names = |v: &Value| -> BTreeSet<String> {
        v["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["name"].as_str().map(String::from))
            .collect()
    };
    let by = |s: &str| format!("/v1/tunnels?selector={s}");
    assert_eq!(
        names(&api.get(&by("release=canary")).await.body),
        BTreeSet::from(["canary-a".to_string()])
    );
    assert_eq!(
        names(&api.get(&by("app=web")).await.body),
        BTreeSet::from(["canary-a".to_string(), "stable-a".to_string()])
    );
    assert_eq!(
        names(&api.get(&by("app=web,release=stable")).await.body),
        BTreeSet::from(["stable-a".to_string()])
    );
    assert!(names(&api.get(&by("release=none")).await.body).is_empty());
    assert_eq!(names(&api.get("/v1/tunnels").await.body).len(), 3);
    assert_eq!(api.get(&by("bad%20key=x")).await.status, 400);

    // Replace: labels move, version bumps, the selector follows.
    let replaced = api
        .put(
            &format!("/v1/tunnels/{id}"),
            &json!({"name": "stable-a", "labels": {"release": "canary"}}),
            Some("1"),
        )
        .await;
    assert_eq!(replaced.status, 200, "{}", replaced.text);
    assert_eq!(replaced.body["version"], 2);
    assert_eq!(names(&api.get(&by("release=canary")).await.body).len(), 2);
    // A name another tunnel has is a conflict.
    let clash = api
        .put(
            &format!("/v1/tunnels/{id}"),
            &json!({"name": "other"}),
            None,
        )
        .await;
    assert_eq!(clash.status, 409, "{}", clash.text);

    // Policies and hostnames.
    let policy = create(
        &api,
        "/v1/policies",
        json!({"name": "api", "rate_limit": {"requests_per_second": 2.5}}),
    )
    .await;
    assert_eq!(
        policy["rate_limit"]["burst"], 3,
        "burst defaults to the rate rounded up"
    );
    assert_eq!(policy["rate_limit"]["per"], "client_ip");
    assert_eq!(policy["mode"], "enforce");
    let pid = policy["id"].as_str().expect("id");
    let hostname = create(
        &api,
        "/v1/hostnames",
        json!({"hostname": "app.example.com", "service": "http://localhost:4000", "tunnel_id": id, "policy_ids": [pid]}),
    )
    .await;
    assert_eq!(hostname["addresses"], json!(["127.0.0.1"]));
    let split = create(
        &api,
        "/v1/hostnames",
        json!({"hostname": "split.example.com", "service": "http_status:204",
               "routes": [{"selector": {"release": "stable"}, "weight": 90}, {"selector": {"release": "canary"}, "weight": 10}]}),
    )
    .await;
    assert_eq!(split["routes"][1]["weight"], 10);
    let changed = api
        .put("/v1/hostnames/app.example.com", &json!({"hostname": "app.example.com", "service": "https://localhost:4443", "tunnel_id": canary["id"]}), Some("1"))
        .await;
    assert_eq!(changed.status, 200, "{}", changed.text);
    assert_eq!(changed.body["policy_ids"], json!([]));
    let renamed = api
        .put("/v1/hostnames/app.example.com", &json!({"hostname": "other.example.com", "service": "http_status:200", "tunnel_id": id}), None)
        .await;
    assert_eq!(renamed.status, 400);
    assert_eq!(renamed.error_path(), Some("/hostname"));
    assert_eq!(count(&api, "/v1/hostnames").await, 2);

    // Delete everything; reads then 404.
    for path in [
        "/v1/hostnames/app.example.com",
        "/v1/hostnames/split.example.com",
    ] {
        assert_eq!(api.delete(path, None).await.status, 204);
        assert_eq!(api.get(path).await.status, 404);
    }
    assert_eq!(
        api.delete(&format!("/v1/policies/{pid}"), Some("1"))
            .await
            .status,
        204
    );
    assert_eq!(
        api.delete(&format!("/v1/tunnels/{id}"), Some("2"))
            .await
            .status,
        204
    );
    assert_eq!(api.get(&format!("/v1/tunnels/{id}")).await.status, 404);
    assert_eq!(
        api.get(&format!("/v1/tunnels/{id}/token")).await.status,
        404
    );
    assert_eq!(count(&api, "/v1/policies").await, 0);
    assert_eq!(count(&api, "/v1/tunnels").await, 2);

    // The edge describes itself.
    let info = api.get("/v1/edge").await;
    assert_eq!(info.body["zones"], json!(["example.com"]));
    assert_eq!(
        info.body["tunnel_addresses"],
        json!([edge.addrs.tunnel.to_string()])
    );
    assert!(
        info.body["ca_cert_pem"]
            .as_str()
            .is_some_and(|p| p.contains("BEGIN CERTIFICATE"))
    );
    assert_eq!(api.get("/healthz").await.status, 200);
}

#[tokio::test]
async fn tokens_are_required_and_never_stored_or_logged_in_clear() {
    let edge = EdgeProcess::start();
    let api = edge.api();
    for client in [
        api.with_token(None),
        api.with_token(Some("pst_wrong")),
        api.with_token(Some("")),
    ] {
        for path in ["/v1/tunnels", "/v1/edge", "/metrics", "/v1/policies/x"] {
            let response = client.get(path).await;
            assert_eq!(response.status, 401, "{path}");
            assert_eq!(response.error_code(), Some("unauthorized"));
            assert_eq!(
                response
                    .headers
                    .get("www-authenticate")
                    .map(|v| v.to_str().ok()),
                Some(Some("Bearer"))
            );
        }
        let write = client.post("/v1/tunnels", &json!({"name": "sneaky"})).await;
        assert_eq!(write.status, 401);
    }
    assert_eq!(api.with_token(None).get("/healthz").await.status, 200);
    assert_eq!(
        count(&api, "/v1/tunnels").await,
        0,
        "an unauthenticated write was stored"
    );

    // The token file is private; the store and the log never hold the token in clear.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(edge.data_dir().join("admin-token"))
            .expect("token file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let token = edge.admin_token.clone();
    let mut stored = Vec::new();
    for entry in std::fs::read_dir(edge.data_dir()).expect("data dir") {
        let path = entry.expect("entry").path();
        if path.file_name().is_some_and(|n| n != "admin-token") {
            stored.extend(std::fs::read(&path).unwrap_or_default());
        }
    }
    assert!(!stored.is_empty());
    assert!(
        !contains(&stored, token.as_bytes()),
        "the admin token is stored in clear"
    );
    assert!(!edge.log().contains(&token), "the admin token was logged");

    // POSTERN_ADMIN_TOKEN is accepted instead of a generated one.
    let chosen = "pst_chosen-by-the-operator";
    let edge = EdgeProcess::start_with(acceptance::EdgeOptions {
        env: vec![("POSTERN_ADMIN_TOKEN".into(), chosen.into())],
        ..Default::default()
    });
    assert!(!edge.data_dir().join("admin-token").exists());
    assert_eq!(
        edge.api()
            .with_token(Some(chosen))
            .get("/v1/tunnels")
            .await
            .status,
        200
    );
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn concurrent_replaces_with_the_same_if_match_let_exactly_one_win() {
    let edge = EdgeProcess::start();
    let api = edge.api();
    let tunnel = create(&api, "/v1/tunnels", json!({"name": "web"})).await;
    let path = format!("/v1/tunnels/{}", tunnel["id"].as_str().expect("id"));
    for round in 1..=5u64 {
        let version = round.to_string();
        let writers = (0..8).map(|i| {
            let api = api.clone();
            let path = path.clone();
            let version = version.clone();
            tokio::spawn(async move {
                api.put(
                    &path,
                    &json!({"name": "web", "labels": {"writer": format!("w{i}")}}),
                    Some(&version),
                )
                .await
                .status
            })
        });
        let mut statuses = Vec::new();
        for writer in writers.collect::<Vec<_>>() {
            statuses.push(writer.await.expect("writer"));
        }
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            1,
            "round {round}: {statuses:?}"
        );
        assert_eq!(
            statuses.iter().filter(|s| **s == 412).count(),
            7,
            "round {round}: {statuses:?}"
        );
        assert_eq!(api.get(&path).await.body["version"], round + 1);
    }
    let stale = api.delete(&path, Some("1")).await;
    assert_eq!(stale.status, 412);
    assert_eq!(stale.error_code(), Some("precondition_failed"));
}

#[tokio::test]
async fn objects_in_use_cannot_be_deleted() {
    let edge = EdgeProcess::start();
    let api = edge.api();
    let tunnel = create(&api, "/v1/tunnels", json!({"name": "web"})).await;
    let policy = create(
        &api,
        "/v1/policies",
        json!({"name": "office", "allow_ips": ["10.0.0.0/8"]}),
    )
    .await;
    let (tid, pid) = (
        tunnel["id"].as_str().expect("id"),
        policy["id"].as_str().expect("id"),
    );
    for name in ["b.example.com", "a.example.com"] {
        create(&api, "/v1/hostnames", json!({"hostname": name, "service": "http://localhost:1", "tunnel_id": tid, "policy_ids": [pid]})).await;
    }
    for path in [format!("/v1/tunnels/{tid}"), format!("/v1/policies/{pid}")] {
        let refused = api.delete(&path, None).await;
        assert_eq!(refused.status, 409, "{}", refused.text);
        assert_eq!(refused.error_code(), Some("in_use"));
        assert_eq!(
            refused.body["error"]["hostnames"],
            json!(["a.example.com", "b.example.com"])
        );
        assert!(refused.text.contains("a.example.com"));
        let still = api.get(&path).await;
        assert_eq!(still.status, 200);
        assert_eq!(
            still.body["version"], 1,
            "a refused delete changed the object"
        );
    }
    assert_eq!(count(&api, "/v1/hostnames").await, 2);
}

/// Writes concurrently until stopped; returns the names whose creation was answered 201.
async fn burst(
    api: Api,
    prefix: &'static str,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<String> {
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let api = api.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for i in 0.. {
                if *stop.borrow() {
                    break;
                }
                let name = format!("{prefix}-{worker}-{i}");
                let request = reqwest::Client::new()
                    .post(format!("{}/v1/tunnels", api_base(&api)))
                    .bearer_auth(api_token(&api))
                    .json(&json!({"name": name}))
                    .send()
                    .await;
                match request {
                    Ok(response) if response.status().as_u16() == 201 => acknowledged.push(name),
                    _ => break,
                }
            }
            acknowledged
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("writer"));
    }
    all
}

// The raw client in `burst` must not panic when the edge dies mid-request, so it bypasses
// `Api` (which treats a broken connection as a test failure).
fn api_base(api: &Api) -> String {
    api.base_url().to_string()
}
fn api_token(api: &Api) -> String {
    api.token().unwrap_or_default().to_string()
}

#[tokio::test]
async fn acknowledged_writes_survive_sigterm_and_sigkill() {
    let mut edge = EdgeProcess::start();
    for (prefix, hard) in [("term", false), ("kill", true)] {
        let start = count(&edge.api(), "/v1/tunnels").await;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let writers = tokio::spawn(burst(edge.api(), prefix, stop_rx));
        // Let the burst get going, then stop the edge under it.
        let api = edge.api();
        for _ in 0..200 {
            if count(&api, "/v1/tunnels").await >= start + 40 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        if hard {
            edge.kill();
        } else {
            assert!(edge.terminate().success(), "SIGTERM must exit 0");
        }
        let acknowledged = writers.await.expect("burst");
        let _ = stop_tx.send(true);
        assert!(
            acknowledged.len() >= 10,
            "{prefix}: only {} writes before the stop",
            acknowledged.len()
        );
        edge.restart();
        let stored: BTreeSet<String> = edge.api().get("/v1/tunnels").await.body["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter_map(|t| t["name"].as_str().map(String::from))
            .collect();
        let lost: Vec<_> = acknowledged
            .iter()
            .filter(|n| !stored.contains(*n))
            .collect();
        assert!(
            lost.is_empty(),
            "{prefix}: acknowledged but lost after restart: {lost:?}"
        );
        // The store is healthy: it takes writes again.
        create(
            &edge.api(),
            "/v1/tunnels",
            json!({"name": format!("after-{prefix}")}),
        )
        .await;
    }
}
