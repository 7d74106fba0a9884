//! Origin health and automatic canary rollback (issue 27, must show 3), with a real edge and
//! real connectors: a 90/10 split between a `release=stable` and a `release=canary` tunnel, a
//! canary whose origin starts answering 500 (`TestOrigin::fail_for`: the origin behind the
//! canary's connector breaks, the stable one's does not). Within the detection interval the
//! canary's share drops to 0 and no request fails afterwards (2,000 requests counted at the
//! origin per connector); `/v1/status` and the metrics name the ejected route; once the origin
//! heals, the canary takes its share again.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use acceptance::fixture::{connector_id, create_tunnel, tf_config};
use acceptance::load::Report;
use acceptance::provider::squash;
use acceptance::visitor::{edge_http_client, http_url};
use acceptance::{ConnectorProcess, EdgeProcess, Load, Terraform, TestOrigin, eventually};
use postern_schema::api::{
    EjectedRoute, ErrorRate, HealthCheck, HostnameSpec, OriginSettings, Route,
};

const HOST: &str = "canary.example.com";

fn routes() -> Vec<Route> {
    let route = |release: &str, weight| Route {
        selector: BTreeMap::from([("release".to_string(), release.to_string())]),
        weight,
        max_error_rate: Some(ErrorRate(0.05)),
    };
    vec![route("stable", 90), route("canary", 10)]
}

/// How many requests of `report` the connector `id` forwarded to `origin`.
fn served(report: &Report, origin: &TestOrigin, id: &str) -> usize {
    report.served_by(origin).get(id).copied().unwrap_or(0)
}

async fn ejected(edge: &EdgeProcess) -> Vec<EjectedRoute> {
    edge.client()
        .status()
        .await
        .expect("GET /v1/status")
        .ejected_routes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_canary_is_ejected_without_failed_requests_and_comes_back_when_healed() {
    let edge = EdgeProcess::start();
    let client = edge.client();
    let origin = TestOrigin::start().await;
    let stable = create_tunnel(&client, "stable", &[("release", "stable")]).await;
    let canary = create_tunnel(&client, "canary", &[("release", "canary")]).await;
    let spec = HostnameSpec {
        tls_passthrough: None,
        hostname: HOST.into(),
        service: origin.url(),
        tunnel_id: None,
        routes: Some(routes()),
        policy_ids: Vec::new(),
        paths: Vec::new(),
        origin: Some(OriginSettings {
            health_check: Some(HealthCheck {
                path: Some("/hello".into()),
                interval: Some("200ms".into()),
                timeout: Some("1s".into()),
                unhealthy_after: Some(2),
            }),
            ..OriginSettings::default()
        }),
    };
    client
        .create_hostname(&spec)
        .await
        .expect("create hostname");
    let stable_connector = ConnectorProcess::run(stable.token.as_deref().expect("token"), 2, &[]);
    let canary_connector = ConnectorProcess::run(canary.token.as_deref().expect("token"), 2, &[]);
    for tunnel in [stable.id, canary.id] {
        eventually(Duration::from_secs(20), "both connectors", || async {
            (client.tunnel_connections(tunnel).await.ok()?.len() == 2).then_some(())
        })
        .await;
    }
    let stable_id = connector_id(&stable_connector);
    let canary_id = connector_id(&canary_connector);
    let http = edge_http_client(&edge, HOST);
    let url = http_url(&edge, HOST, "/hello");
    let load = || Load::get(&http, &url).requests(2000).concurrency(32);

    // Healthy: 90/10, and the connectors' probes reach the origin.
    let report = load().run().await;
    assert_eq!(report.ok, 2000, "{}", report.describe_failures());
    let share = served(&report, &origin, &canary_id);
    assert!(
        (120..=280).contains(&share),
        "canary served {share} of 2000"
    );
    assert!(ejected(&edge).await.is_empty());

    // The canary's origin breaks while requests run: the edge stops sending it traffic
    // within the detection interval (two 200 ms probes, or its 5xx answers).
    let broke = Instant::now();
    origin.fail_for(Some(&canary_id));
    let during = Load::get(&http, &url)
        .requests(2000)
        .concurrency(32)
        .run()
        .await;
    let out = eventually(Duration::from_secs(5), "the canary ejected", || async {
        let out = ejected(&edge).await;
        out.iter()
            .any(|e| e.route == "release=canary")
            .then_some(out)
    })
    .await;
    let detected = broke.elapsed();
    assert!(
        detected < Duration::from_secs(5),
        "detection took {detected:?}"
    );
    assert!(
        out.iter()
            .all(|e| e.hostname == HOST && e.route == "release=canary"),
        "{out:?}"
    );
    assert!(
        during.failures.len() <= 100,
        "{} requests failed while the canary broke (the detection interval is too long):\n{}",
        during.failures.len(),
        during.describe_failures()
    );
    assert_eq!(
        during.ok + during.count(500),
        2000,
        "{}",
        during.describe_failures()
    );

    // Afterwards: 2,000 requests, none failed, all at the stable origin.
    let report = load().run().await;
    assert_eq!(
        report.ok,
        2000,
        "a request failed after the canary was ejected:\n{}",
        report.describe_failures()
    );
    assert_eq!(served(&report, &origin, &canary_id), 0);
    assert_eq!(served(&report, &origin, &stable_id), 2000);
    let metrics = edge.api().get("/metrics").await.text;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("postern_edge_route_ejected{")
                && l.contains("route=\"release=canary\"")
                && l.ends_with(" 1")),
        "no postern_edge_route_ejected series for the canary:\n{metrics}"
    );

    // Still out past the passive ejection (10 s) while its probes fail, now for that reason:
    // no failed request.
    eventually(
        Duration::from_secs(20),
        "the passive ejection over",
        || async {
            let out = ejected(&edge).await;
            out.iter()
                .any(|e| e.route == "release=canary" && e.reason == "origin_unhealthy")
                .then_some(())
        },
    )
    .await;
    let report = load().run().await;
    assert_eq!(report.ok, 2000, "{}", report.describe_failures());
    assert_eq!(served(&report, &origin, &canary_id), 0);

    // `terraform plan` of a configuration that declares the hostname warns while the canary
    // is out (the real terraform, through the provider's plan).
    let tf = Terraform::new(&edge);
    tf.write(
        "main.tf",
        &tf_config(
            &["hostname/split.tf"],
            &[
                ("name", "canary"),
                ("host", HOST),
                ("service", &origin.url()),
            ],
        ),
    );
    tf.init();
    let plan = tf.run(&["plan", "-no-color", "-input=false"]);
    let text = squash(&plan.all());
    assert_eq!(plan.code, 0, "{text}");
    assert!(
        text.contains(&format!(
            "Warning: Route release=canary of {HOST} is ejected"
        )),
        "the plan does not warn about the ejected canary: {text}"
    );

    // The origin heals: the canary takes its share again.
    origin.fail_for(None);
    let back = eventually(Duration::from_secs(30), "the canary back", || async {
        let report = Load::get(&http, &url)
            .requests(400)
            .concurrency(16)
            .run()
            .await;
        assert_eq!(report.ok, 400, "{}", report.describe_failures());
        (served(&report, &origin, &canary_id) > 0 && ejected(&edge).await.is_empty()).then_some(())
    })
    .await;
    let () = back;
    let report = load().run().await;
    assert_eq!(report.ok, 2000, "{}", report.describe_failures());
    let share = served(&report, &origin, &canary_id);
    assert!(
        (120..=280).contains(&share),
        "canary served {share} of 2000 once healed"
    );
}
