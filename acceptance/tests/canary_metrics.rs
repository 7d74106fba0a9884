//! Per-route, per-release metrics (issue 11, must show 5): the canary example applied with the
//! real terraform (90/10 between `release=stable` and `release=canary`), a connector per
//! release, 2,000 requests; then the edge's `/metrics` shows the split by route and release
//! label (requests, errors and the latency histogram), so the canary can be judged from it.

use std::sync::Arc;
use std::time::Duration;

use acceptance::binaries::workspace_root;
use acceptance::visitor::{edge_http_client, http_url};
use acceptance::{ConnectorProcess, EdgeProcess, Terraform, TestOrigin, eventually};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

const HOST: &str = "shop.example.com";
const REQUESTS: usize = 2000;

/// The value of the sample `name{labels}` in a Prometheus text exposition (labels in the order
/// the edge writes them); 0 when absent.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let rendered: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    let series = format!("{name}{{{}}} ", rendered.join(","));
    text.lines()
        .find_map(|line| line.strip_prefix(&series)?.trim().parse::<f64>().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_show_the_canary_split_by_route_and_release() {
    let edge = EdgeProcess::start();
    let client = edge.client();
    let origin = TestOrigin::start().await;
    let tf = Terraform::new(&edge);
    let example = workspace_root().join("examples/canary");
    for entry in std::fs::read_dir(&example).expect("examples/canary") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "tf") {
            let name = path.file_name().expect("file name");
            std::fs::copy(&path, tf.dir().join(name)).expect("copy");
        }
    }
    tf.init();
    let service = format!("service={}", origin.url());
    tf.run(&["apply", "-auto-approve", "-no-color", "-var", &service])
        .success();
    let _stable = ConnectorProcess::run(&tf.output_raw("stable_token"), 2, &[]);
    let _canary = ConnectorProcess::run(&tf.output_raw("canary_token"), 2, &[]);
    eventually(
        Duration::from_secs(20),
        "both releases connected",
        || async {
            let tunnels = client.list_tunnels(None).await.ok()?;
            tunnels.iter().all(|t| t.connections == 2).then_some(())
        },
    )
    .await;

    // The canary run.
    let http = edge_http_client(&edge, HOST);
    let url = http_url(&edge, HOST, "/hello");
    let permits = Arc::new(Semaphore::new(32));
    let mut requests = JoinSet::new();
    for _ in 0..REQUESTS {
        let permit = permits.clone().acquire_owned().await.expect("semaphore");
        let (http, url) = (http.clone(), url.clone());
        requests.spawn(async move {
            let status = http.get(&url).send().await.map(|r| r.status().as_u16());
            drop(permit);
            status
        });
    }
    while let Some(status) = requests.join_next().await {
        assert_eq!(status.expect("task").expect("request"), 200);
    }

    let text = reqwest::Client::new()
        .get(format!("{}/metrics", edge.api_url()))
        .bearer_auth(&edge.admin_token)
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    let shown: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("postern_edge_routed_") && !l.contains("_bucket"))
        .collect();
    eprintln!("/metrics after {REQUESTS} requests:\n{}", shown.join("\n"));
    let mut served = 0.0;
    let mut canary_share = 0.0;
    for release in ["stable", "canary"] {
        let route = format!("app=shop,release={release}");
        let at = [("hostname", HOST), ("route", &route), ("release", release)];
        let requests = sample(
            &text,
            "postern_edge_routed_requests_total",
            &[
                ("hostname", HOST),
                ("route", &route),
                ("release", release),
                ("status", "200"),
            ],
        );
        let timed = sample(
            &text,
            "postern_edge_routed_request_duration_seconds_count",
            &at,
        );
        let within_30s = sample(
            &text,
            "postern_edge_routed_request_duration_seconds_bucket",
            &[
                ("hostname", HOST),
                ("route", &route),
                ("release", release),
                ("le", "30"),
            ],
        );
        let errors = sample(&text, "postern_edge_routed_errors_total", &at);
        assert!(requests > 0.0, "no {release} requests counted:\n{text}");
        assert_eq!(timed, requests, "{release}: histogram count vs requests");
        assert_eq!(
            within_30s, requests,
            "{release}: every request well under 30 s"
        );
        assert_eq!(errors, 0.0, "{release}: no errors");
        served += requests;
        if release == "canary" {
            canary_share = requests / REQUESTS as f64;
        }
    }
    assert_eq!(served, REQUESTS as f64, "every request is counted once");
    assert!(
        (0.07..=0.13).contains(&canary_share),
        "the canary served {:.1}% at 90/10",
        canary_share * 100.0
    );
}
