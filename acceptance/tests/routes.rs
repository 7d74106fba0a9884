//! Weighted label routes (issue 6, must show 5) through the API, with real connectors: a 90/10
//! split between `release=stable` and `release=canary` tunnels, failover when the canary's
//! connector stops, and a weight change that moves the split with no failed request.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use acceptance::visitor::{edge_http_client, http_url};
use acceptance::{ConnectorProcess, EdgeProcess, TestOrigin, eventually};
use nix::sys::signal::Signal;
use postern_schema::api::{HostnameSpec, Route, Tunnel, TunnelSpec};
use postern_schema::client::Client;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

const HOST: &str = "split.example.com";

async fn labelled(client: &Client, name: &str, release: &str) -> Tunnel {
    client
        .create_tunnel(&TunnelSpec {
            name: name.into(),
            labels: BTreeMap::from([("release".to_string(), release.to_string())]),
        })
        .await
        .expect("create tunnel")
}

fn routes(stable: u32, canary: u32) -> Vec<Route> {
    let route = |release: &str, weight| Route {
        selector: BTreeMap::from([("release".to_string(), release.to_string())]),
        weight,
    };
    vec![route("stable", stable), route("canary", canary)]
}

/// Sends `count` GETs, 32 at a time; returns how many answered 200.
async fn load(http: &reqwest::Client, url: &str, count: usize) -> usize {
    let permits = Arc::new(Semaphore::new(32));
    let mut requests = JoinSet::new();
    for _ in 0..count {
        let permit = permits.clone().acquire_owned().await.expect("semaphore");
        let (http, url) = (http.clone(), url.to_string());
        requests.spawn(async move {
            let outcome = http.get(&url).send().await;
            drop(permit);
            match outcome {
                Ok(r) if r.status() == 200 => true,
                Ok(r) => {
                    eprintln!(
                        "status {}: {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    );
                    false
                }
                Err(error) => {
                    eprintln!("request failed: {error:?}");
                    false
                }
            }
        });
    }
    let mut ok = 0;
    while let Some(result) = requests.join_next().await {
        ok += usize::from(result.expect("task"));
    }
    ok
}

/// One counter of the edge's `/metrics`.
async fn metric(edge: &EdgeProcess, series: &str) -> u64 {
    let text = reqwest::Client::new()
        .get(format!("{}/metrics", edge.api_url()))
        .bearer_auth(&edge.admin_token)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// The edge's log lines that report a problem, for failure messages.
fn problems(edge: &EdgeProcess) -> Vec<String> {
    edge.log()
        .lines()
        .filter(|l| l.contains("panicked") || l.contains("ERROR") || l.contains("WARN"))
        .map(str::to_owned)
        .collect()
}

fn connector_id(connector: &ConnectorProcess) -> String {
    connector
        .log()
        .lines()
        .find_map(|line| {
            let (_, rest) = line.split_once("connector_id=")?;
            Some(rest.split_whitespace().next()?.to_string())
        })
        .expect("the connector logs its id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn weighted_routes_split_fail_over_and_follow_weight_changes() {
    let edge = EdgeProcess::start();
    let client = edge.client();
    let origin = TestOrigin::start().await;
    let stable = labelled(&client, "stable", "stable").await;
    let canary = labelled(&client, "canary", "canary").await;
    let mut spec = HostnameSpec {
        hostname: HOST.into(),
        service: origin.url(),
        tunnel_id: None,
        routes: Some(routes(90, 10)),
        policy_ids: Vec::new(),
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
    let canary_hits = || {
        origin
            .hits_by_connector()
            .get(&canary_id)
            .copied()
            .unwrap_or(0)
    };
    let canary_series = format!(
        "postern_edge_route_requests_total{{hostname=\"{HOST}\",route=\"release=canary\",status=\"200\"}}"
    );

    // 90/10: the canary share is 7–13 %, as the test and the edge's route counter both see it.
    let ok = load(&http, &url, 2000).await;
    assert_eq!(ok, 2000, "{:#?}", problems(&edge));
    let seen = canary_hits();
    let counted = metric(&edge, &canary_series).await;
    assert!((140..=260).contains(&seen), "canary served {seen} of 2000");
    assert_eq!(counted, seen, "the edge's route counter disagrees");

    // The canary's connector stops: every request succeeds via stable.
    canary_connector.signal(Signal::SIGTERM);
    assert!(
        canary_connector
            .wait_exit(Duration::from_secs(30))
            .is_some_and(|s| s.success())
    );
    let ok = load(&http, &url, 2000).await;
    assert_eq!(ok, 2000, "{:#?}", problems(&edge));
    assert_eq!(canary_hits(), seen);

    // Back, then 50/50 while requests run: none fails, and the split follows.
    let canary_connector = ConnectorProcess::run(canary.token.as_deref().expect("token"), 2, &[]);
    eventually(Duration::from_secs(20), "the canary back", || async {
        (client.tunnel_connections(canary.id).await.ok()?.len() == 2).then_some(())
    })
    .await;
    let canary_id = connector_id(&canary_connector);
    let during = {
        let (http, url) = (http.clone(), url.clone());
        tokio::spawn(async move { load(&http, &url, 2000).await })
    };
    spec.routes = Some(routes(50, 50));
    client.replace_hostname(&spec, None).await.expect("replace");
    assert_eq!(
        during.await.expect("load"),
        2000,
        "a request failed during the change"
    );
    let before = origin
        .hits_by_connector()
        .get(&canary_id)
        .copied()
        .unwrap_or(0);
    assert_eq!(load(&http, &url, 2000).await, 2000);
    let share = origin
        .hits_by_connector()
        .get(&canary_id)
        .copied()
        .unwrap_or(0)
        - before;
    assert!(
        (900..=1100).contains(&share),
        "canary served {share} of 2000 at 50/50"
    );
}
