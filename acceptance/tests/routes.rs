//! Weighted label routes (issue 6, must show 5) through the API, with real connectors: a 90/10
//! split between `release=stable` and `release=canary` tunnels, failover when the canary's
//! connector stops, and a weight change that moves the split with no failed request.

use std::collections::BTreeMap;
use std::time::Duration;

use acceptance::fixture::{connector_id, create_tunnel};
use acceptance::load::Report;
use acceptance::visitor::{edge_http_client, http_url};
use acceptance::{ConnectorProcess, EdgeProcess, Load, TestOrigin, eventually};
use nix::sys::signal::Signal;
use postern_schema::api::{HostnameSpec, Route};

const HOST: &str = "split.example.com";

/// 2,000 GETs of `url`, 32 at a time.
fn load(http: &reqwest::Client, url: &str) -> Load {
    Load::get(http, url).requests(2000).concurrency(32)
}

/// Panics unless every request of `report` succeeded, naming the edge's problems.
fn expect_all_ok(report: &Report, edge: &EdgeProcess) {
    assert_eq!(
        report.ok,
        2000,
        "{}\n{:#?}",
        report.describe_failures(),
        problems(edge)
    );
}

fn routes(stable: u32, canary: u32) -> Vec<Route> {
    let route = |release: &str, weight| Route {
        selector: BTreeMap::from([("release".to_string(), release.to_string())]),
        weight,
        max_error_rate: None,
    };
    vec![route("stable", stable), route("canary", canary)]
}

/// The edge's log lines that report a problem, for failure messages.
fn problems(edge: &EdgeProcess) -> Vec<String> {
    edge.log()
        .lines()
        .filter(|l| l.contains("panicked") || l.contains("ERROR") || l.contains("WARN"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn weighted_routes_split_fail_over_and_follow_weight_changes() {
    let edge = EdgeProcess::start();
    let client = edge.client();
    let origin = TestOrigin::start().await;
    let stable = create_tunnel(&client, "stable", &[("release", "stable")]).await;
    let canary = create_tunnel(&client, "canary", &[("release", "canary")]).await;
    let mut spec = HostnameSpec {
        tls_passthrough: None,
        hostname: HOST.into(),
        service: origin.url(),
        tunnel_id: None,
        routes: Some(routes(90, 10)),
        policy_ids: Vec::new(),
        paths: Vec::new(),
        origin: None,
    };
    client
        .create_hostname(&spec)
        .await
        .expect("create hostname");
    let _stable_connector = ConnectorProcess::run(stable.token.as_deref().expect("token"), 2, &[]);
    let mut canary_connector =
        ConnectorProcess::run(canary.token.as_deref().expect("token"), 2, &[]);
    for tunnel in [stable.id, canary.id] {
        eventually(Duration::from_secs(20), "both connectors", || async {
            (client.tunnel_connections(tunnel).await.ok()?.len() == 2).then_some(())
        })
        .await;
    }
    let canary_id = connector_id(&canary_connector);
    let http = edge_http_client(&edge, HOST);
    let url = http_url(&edge, HOST, "/hello");
    let canary_series = format!(
        "postern_edge_route_requests_total{{hostname=\"{HOST}\",route=\"release=canary\",status=\"200\"}}"
    );

    // 90/10: the canary share is 7–13 %, as the test and the edge's route counter both see it.
    let report = load(&http, &url).run().await;
    expect_all_ok(&report, &edge);
    let seen = served(&report, &origin, &canary_id);
    let counted = edge.metric(&canary_series).await;
    assert!((140..=260).contains(&seen), "canary served {seen} of 2000");
    assert_eq!(counted, seen as u64, "the edge's route counter disagrees");

    // The canary's connector stops: every request succeeds via stable.
    canary_connector.signal(Signal::SIGTERM);
    assert!(
        canary_connector
            .wait_exit(Duration::from_secs(30))
            .is_some_and(|s| s.success())
    );
    let report = load(&http, &url).run().await;
    expect_all_ok(&report, &edge);
    assert_eq!(served(&report, &origin, &canary_id), 0);

    // Back, then 50/50 while requests run: none fails, and the split follows.
    let canary_connector = ConnectorProcess::run(canary.token.as_deref().expect("token"), 2, &[]);
    eventually(Duration::from_secs(20), "the canary back", || async {
        (client.tunnel_connections(canary.id).await.ok()?.len() == 2).then_some(())
    })
    .await;
    let canary_id = connector_id(&canary_connector);
    let during = load(&http, &url).start();
    spec.routes = Some(routes(50, 50));
    client.replace_hostname(&spec, None).await.expect("replace");
    let report = during.finish().await;
    assert_eq!(
        report.ok,
        2000,
        "a request failed during the change:\n{}",
        report.describe_failures()
    );
    let report = load(&http, &url).run().await;
    assert_eq!(report.ok, 2000, "{}", report.describe_failures());
    let share = served(&report, &origin, &canary_id);
    assert!(
        (900..=1100).contains(&share),
        "canary served {share} of 2000 at 50/50"
    );
}

/// How many requests of `report` the connector `id` forwarded to `origin`.
fn served(report: &Report, origin: &TestOrigin, id: &str) -> usize {
    report.served_by(origin).get(id).copied().unwrap_or(0)
}
