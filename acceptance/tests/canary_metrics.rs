//! Per-route, per-release metrics (issue 11, must show 5): the canary example applied with the
//! real terraform (90/10 between `release=stable` and `release=canary`), a connector per
//! release, 2,000 requests; then the edge's `/metrics` shows the split by route and release
//! label (requests, errors and the latency histogram), so the canary can be judged from it.
//! Then (issue 6, must show 5) `terraform apply` moves the weights to 50/50 while requests keep
//! coming: none fails during the change, and the next 2,000 split 45–55%.

use std::time::Duration;

use acceptance::binaries::workspace_root;
use acceptance::visitor::{edge_http_client, http_url};
use acceptance::{ConnectorProcess, EdgeProcess, Load, Terraform, TestOrigin, eventually};

const HOST: &str = "shop.example.com";
const REQUESTS: usize = 2000;
/// The two releases of the canary example, in the order [`routed`] answers them.
const RELEASES: [&str; 2] = ["stable", "canary"];

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
    let requests = || Load::get(&http, &url).requests(REQUESTS).concurrency(32);
    requests().run().await.expect_all_ok();

    let text = edge.api().get("/metrics").await.text;
    let shown: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("postern_edge_routed_") && !l.contains("_bucket"))
        .collect();
    eprintln!("/metrics after {REQUESTS} requests:\n{}", shown.join("\n"));
    let mut served = 0.0;
    let mut canary_share = 0.0;
    for (release, requests) in RELEASES.into_iter().zip(routed(&text)) {
        let route = format!("app=shop,release={release}");
        let at = [("hostname", HOST), ("route", &route), ("release", release)];
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

    // Promote the canary to 50/50 with terraform while a steady load runs (eight clients back
    // to back): the apply returns once both connectors serve the new weights, and no request
    // fails on the way.
    let steady = Load::get(&http, &url).concurrency(8).start();
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::block_in_place(|| {
        tf.run(&[
            "apply",
            "-auto-approve",
            "-no-color",
            "-var",
            &service,
            "-var",
            "canary_weight=50",
        ])
        .success();
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let steady = steady.stop().await;
    eprintln!("during the 90/10 -> 50/50 apply: {steady}");
    assert!(steady.sent > 0, "the steady load sent nothing");
    assert_eq!(
        steady.failures.len(),
        0,
        "requests failed while the weights changed:\n{}",
        steady.describe_failures()
    );

    let before = routed(&edge.api().get("/metrics").await.text);
    requests().run().await.expect_all_ok();
    let after = routed(&edge.api().get("/metrics").await.text);
    let stable = after[0] - before[0];
    let canary = after[1] - before[1];
    assert_eq!(
        stable + canary,
        REQUESTS as f64,
        "every request is counted once"
    );
    let share = canary / REQUESTS as f64;
    eprintln!("after the apply at 50/50: canary {:.1}%", share * 100.0);
    assert!(
        (0.45..=0.55).contains(&share),
        "the canary served {:.1}% at 50/50",
        share * 100.0
    );
}

/// Requests answered 200 so far by the stable and the canary route.
fn routed(text: &str) -> [f64; 2] {
    RELEASES.map(|release| {
        let route = format!("app=shop,release={release}");
        sample(
            text,
            "postern_edge_routed_requests_total",
            &[
                ("hostname", HOST),
                ("route", &route),
                ("release", release),
                ("status", "200"),
            ],
        )
    })
}
