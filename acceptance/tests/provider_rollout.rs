//! Applied means in effect (issue 11, must show 1): with two connectors connected, an apply that
//! changes a hostname's `service` returns only once both acknowledged it, so the very next
//! request goes to the new service, through either connector. With one connector frozen
//! (SIGSTOP), the apply fails within `rollout_timeout` and the diagnostic names that connector.
//! When the tunnel's only connector is frozen long enough for the edge to declare it dead
//! during the wait, the apply succeeds with a warning naming it (issue 29).

use std::time::{Duration, Instant};

use acceptance::fixture::web_hostname_tf;
use acceptance::provider::{expect_clean_failure, squash, tunnel_id};
use acceptance::visitor::{edge_http_client, http_url};
use acceptance::{ConnectorProcess, EdgeProcess, Terraform, TestOrigin, eventually};
use nix::sys::signal::Signal;
use postern_schema::api::RolloutScope;
use postern_schema::ids::TunnelId;

const HOST: &str = "app.example.com";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn apply_returns_once_every_connector_serves_the_change_and_names_a_frozen_one() {
    let edge = EdgeProcess::start();
    let client = edge.client();
    let old = TestOrigin::start().await;
    let new = TestOrigin::start().await;
    let tf = Terraform::new(&edge);
    tf.write("main.tf", &web_hostname_tf(HOST, &old.url(), "30s"));
    tf.init();
    tf.apply().success();
    let tunnel = tunnel_id(&tf, "postern_tunnel.web");
    let token = tf.output_raw("token");

    let first = ConnectorProcess::run(&token, 2, &[]);
    let second = ConnectorProcess::run(&token, 2, &[]);
    eventually(
        Duration::from_secs(20),
        "two connectors, four connections",
        || async { (client.tunnel_connections(tunnel).await.ok()?.len() == 4).then_some(()) },
    )
    .await;
    let ids = [first.connector_id().await, second.connector_id().await];
    let http = edge_http_client(&edge, HOST);
    let url = http_url(&edge, HOST, "/hello");
    let answer = http.get(&url).send().await.expect("request");
    assert_eq!(answer.status(), 200);
    assert_eq!(old.hits(), 1);

    // The service changes: when apply returns, both connectors already serve the new one.
    tf.write("main.tf", &web_hostname_tf(HOST, &new.url(), "30s"));
    tf.apply().success();
    let mut sent = 0u64;
    while sent < 500 {
        let answer = http.get(&url).send().await.expect("request");
        sent += 1;
        assert_eq!(answer.status(), 200, "request {sent} after apply");
        assert_eq!(
            old.hits(),
            1,
            "request {sent} after apply went to the old service"
        );
        let by_connector = new.hits_by_connector();
        if ids.iter().all(|id| by_connector.contains_key(id)) {
            break;
        }
    }
    assert_eq!(new.hits(), sent);
    let by_connector = new.hits_by_connector();
    assert!(
        ids.iter().all(|id| by_connector.contains_key(id)),
        "both connectors serve the new service: {by_connector:?} after {sent} requests"
    );
    let rollout = client
        .rollout(None, &RolloutScope::All)
        .await
        .expect("GET /v1/rollout");
    assert!(
        rollout.complete && rollout.pending.is_empty(),
        "{rollout:?}"
    );

    // One connector frozen: the apply fails within rollout_timeout and names it, not the other.
    // The edge drops a connection whose pings go unanswered after about 5 s (and then the
    // rollout is rightly complete: a connector that reconnects gets the new configuration
    // before any request), so the timeout here is shorter, and the plan is saved beforehand
    // so the apply reaches the edge at once.
    tf.write("main.tf", &web_hostname_tf(HOST, &old.url(), "1s"));
    tf.plan(&[]);
    first.signal(Signal::SIGSTOP);
    let started = Instant::now();
    let apply = tf.run(&["apply", "-no-color", "tfplan"]);
    let took = started.elapsed();
    first.signal(Signal::SIGCONT);
    expect_clean_failure(&apply);
    eprintln!(
        "apply with a frozen connector, after {took:?}:\n{}",
        apply.stderr
    );
    let text = squash(&apply.all());
    assert!(
        text.contains("Connectors did not apply the change within 1s"),
        "{text}"
    );
    assert!(text.contains(&format!("connector {}", ids[0])), "{text}");
    assert!(text.contains(r#"(tunnel "web""#), "{text}");
    assert!(
        !text.contains(&ids[1]),
        "the live connector is not blamed: {text}"
    );
    assert!(
        took < Duration::from_secs(1 + 8),
        "the apply took {took:?} with rollout_timeout 1s"
    );
    // The edge holds the change; the frozen connector gets it once it is back.
    eventually(
        Duration::from_secs(30),
        "the thawed connector caught up",
        || async {
            let rollout = client.rollout(None, &RolloutScope::All).await.ok()?;
            let connections = client.tunnel_connections(tunnel).await.ok()?;
            (rollout.complete && connections.len() == 4).then_some(())
        },
    )
    .await;
}

/// The store revision a write answered with.
fn revision(response: &acceptance::ApiResponse) -> u64 {
    response
        .headers
        .get("postern-revision")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Postern-Revision on {response:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_carry_their_revision_and_rollout_names_what_is_pending() {
    let edge = EdgeProcess::start();
    let api = edge.api();
    let created = api
        .post("/v1/tunnels", &serde_json::json!({"name": "web"}))
        .await;
    assert_eq!(created.status, 201);
    let first = revision(&created);
    let tunnel = created.body["id"].as_str().expect("id").to_string();
    let token = created.body["token"].as_str().expect("token").to_string();
    let other = api
        .post("/v1/tunnels", &serde_json::json!({"name": "idle"}))
        .await;
    let policy = api
        .post("/v1/policies", &serde_json::json!({"name": "all"}))
        .await;
    let policy_id = policy.body["id"].as_str().expect("id").to_string();
    let body = |service: &str| {
        serde_json::json!({
            "hostname": HOST,
            "service": service,
            "tunnel_id": tunnel,
            "policy_ids": [policy_id],
        })
    };
    let hostname = api.post("/v1/hostnames", &body("http_status:200")).await;
    assert_eq!(hostname.status, 201);
    let written = revision(&hostname);
    assert!(written > first, "revisions grow: {first} then {written}");

    // Nothing connected: complete at once; a revision the edge has not reached is not.
    let now = api.get(&format!("/v1/rollout?revision={written}")).await;
    assert_eq!(now.status, 200);
    assert_eq!(now.body["complete"], true, "{}", now.text);
    let ahead = api
        .get(&format!("/v1/rollout?revision={}", written + 1000))
        .await;
    assert_eq!(ahead.body["complete"], false, "{}", ahead.text);
    for bad in [
        "/v1/rollout?revision=soon",
        "/v1/rollout?tunnel=not-a-tunnel",
        &format!("/v1/rollout?tunnel={tunnel}&hostname={HOST}"),
    ] {
        assert_eq!(api.get(bad).await.status, 400, "{bad}");
    }

    // A frozen connector is pending for what it serves, and only for that.
    let connector = ConnectorProcess::run(&token, 1, &["--hello-world"]);
    let id = connector.connector_id().await;
    let client = edge.client();
    let tunnel_id: TunnelId = tunnel.parse().expect("uuid");
    eventually(Duration::from_secs(20), "the connector", || async {
        (client.tunnel_connections(tunnel_id).await.ok()?.len() == 1).then_some(())
    })
    .await;
    connector.signal(Signal::SIGSTOP);
    let changed = api
        .put(
            &format!("/v1/hostnames/{HOST}"),
            &body("http_status:204"),
            None,
        )
        .await;
    assert_eq!(changed.status, 200);
    let at = revision(&changed);
    for scope in [
        String::new(),
        format!("&hostname={HOST}"),
        format!("&tunnel={tunnel}"),
        format!("&policy={policy_id}"),
    ] {
        let rollout = api.get(&format!("/v1/rollout?revision={at}{scope}")).await;
        assert_eq!(rollout.body["complete"], false, "{scope}: {}", rollout.text);
        assert_eq!(
            rollout.body["pending"][0]["connector_id"], id,
            "{scope}: {}",
            rollout.text
        );
        assert_eq!(rollout.body["pending"][0]["tunnel_name"], "web");
    }
    let idle = other.body["id"].as_str().expect("id");
    let unaffected = api
        .get(&format!("/v1/rollout?revision={at}&tunnel={idle}"))
        .await;
    assert_eq!(unaffected.body["complete"], true, "{}", unaffected.text);
    let unrelated = api
        .get(&format!(
            "/v1/rollout?revision={at}&hostname=other.example.com"
        ))
        .await;
    assert_eq!(unrelated.body["complete"], true, "{}", unrelated.text);
    connector.signal(Signal::SIGCONT);
    eventually(
        Duration::from_secs(30),
        "the thawed connector caught up",
        || async {
            let rollout = api.get(&format!("/v1/rollout?revision={at}")).await;
            (rollout.body["complete"] == true).then_some(())
        },
    )
    .await;
    let deleted = api.delete(&format!("/v1/hostnames/{HOST}"), None).await;
    assert_eq!(deleted.status, 204);
    assert!(revision(&deleted) > at);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_dropped_during_the_wait_is_named_in_a_warning() {
    let edge = EdgeProcess::start();
    let client = edge.client();
    let old = TestOrigin::start().await;
    let new = TestOrigin::start().await;
    let tf = Terraform::new(&edge);
    // Longer than the edge takes to declare a frozen connection dead (about 5 s), so the
    // connector leaves during the wait rather than outlasting it.
    let timeout = "12s";
    tf.write("main.tf", &web_hostname_tf(HOST, &old.url(), timeout));
    tf.init();
    tf.apply().success();
    let tunnel = tunnel_id(&tf, "postern_tunnel.web");
    let only = ConnectorProcess::run(&tf.output_raw("token"), 1, &[]);
    eventually(Duration::from_secs(20), "the connector", || async {
        (client.tunnel_connections(tunnel).await.ok()?.len() == 1).then_some(())
    })
    .await;
    let id = only.connector_id().await;

    tf.write("main.tf", &web_hostname_tf(HOST, &new.url(), timeout));
    tf.plan(&[]);
    only.signal(Signal::SIGSTOP);
    let started = Instant::now();
    let apply = tf.run(&["apply", "-no-color", "tfplan"]);
    let took = started.elapsed();
    only.signal(Signal::SIGCONT);
    let text = squash(&apply.all());
    eprintln!(
        "apply with the only connector frozen, after {took:?}:\n{}",
        apply.all()
    );
    assert_eq!(apply.code, 0, "{text}");
    assert!(
        text.contains("Connectors left before applying the change"),
        "{text}"
    );
    assert!(text.contains(&format!("connector {id}")), "{text}");
    assert!(text.contains(r#"(tunnel "web""#), "{text}");
    // The edge's answer carries it too, for a client other than Terraform.
    let rollout = client
        .rollout(None, &RolloutScope::All)
        .await
        .expect("GET /v1/rollout");
    let named = rollout.departed.iter().any(|d| d.connector_id == id)
        || client
            .tunnel_connections(tunnel)
            .await
            .is_ok_and(|c| c.iter().any(|c| c.connector_id == id));
    assert!(named, "departed, or back and up to date: {rollout:?}");
    assert!(
        took < Duration::from_secs(12),
        "the apply returned once the connector was dropped, not at the timeout: {took:?}"
    );
}
