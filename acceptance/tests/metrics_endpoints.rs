//! Must-show 7: `promtool check metrics` (Debian's `prometheus` package) finds nothing to say
//! about the edge's `/metrics`, scraped without a token from `--metrics-listen`, nor about the
//! connector's, after real traffic filled every kind of series. And `/ready` on the API
//! listener, without a token: 200 once the store and the listeners are up, 503 while the edge
//! drains (a request still in flight) on its way to a stop.

use std::process::Stdio;
use std::time::Duration;

use acceptance::fixture::{connections, token, tunnel_for};
use acceptance::visitor::{edge_http_client, http_url};
use acceptance::{ConnectorProcess, EdgeOptions, EdgeProcess, TestOrigin, eventually};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// `promtool check metrics` on `text`: its exit status and everything it said.
async fn promtool(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "promtool is missing ({e}): install Debian's prometheus package \
                 (scripts/test does)"
            )
        });
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(text.as_bytes()).await.expect("write");
    drop(stdin);
    let output = child.wait_with_output().await.expect("promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), said)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_finds_nothing_in_the_edges_and_the_connectors_metrics() {
    let edge = EdgeProcess::start_with(EdgeOptions {
        args: vec!["--metrics-listen".into(), "127.0.0.1:0".into()],
        ..EdgeOptions::default()
    });
    let metrics = edge
        .addrs
        .metrics
        .expect("the ready line names the metrics listener");
    let client = edge.client();
    let origin = TestOrigin::start().await;
    let host = "app.example.com";
    let tunnel = tunnel_for(&client, "app", host, &origin.url()).await;
    let connector = ConnectorProcess::run(&token(&tunnel), 2, &["--metrics", "127.0.0.1:0"]);
    connections(&client, tunnel.id, 2).await;

    // Traffic of every kind the edge counts: served, not found, and API calls.
    let http = edge_http_client(&edge, host);
    for path in ["/hello", "/hello", "/nope"] {
        let _ = http.get(http_url(&edge, host, path)).send().await;
    }
    let _ = edge_http_client(&edge, "unknown.example.com")
        .get(http_url(&edge, "unknown.example.com", "/"))
        .send()
        .await;

    let plain = reqwest::Client::new();
    let scrape = |url: String| {
        let plain = plain.clone();
        async move {
            let answer = plain.get(url).send().await.expect("scrape");
            assert_eq!(answer.status(), 200, "no token needed");
            answer.text().await.expect("text")
        }
    };
    let edge_text = scrape(format!("http://{metrics}/metrics")).await;
    assert!(
        edge_text.contains("postern_edge_routed_request_duration_seconds_bucket"),
        "{edge_text}"
    );
    assert!(
        edge_text.contains("postern_edge_requests_total{"),
        "{edge_text}"
    );
    let (ok, said) = promtool(&edge_text).await;
    assert!(
        ok && said.trim().is_empty(),
        "promtool on the edge's /metrics:\n{said}\n{edge_text}"
    );

    let connector_metrics = connector.metrics_addr().await;
    let connector_text = scrape(format!("http://{connector_metrics}/metrics")).await;
    assert!(
        connector_text.contains("postern_connector_requests_total"),
        "{connector_text}"
    );
    let (ok, said) = promtool(&connector_text).await;
    assert!(
        ok && said.trim().is_empty(),
        "promtool on the connector's /metrics:\n{said}\n{connector_text}"
    );

    // The metrics listener serves /metrics only: the API is not there.
    let elsewhere = plain
        .get(format!("http://{metrics}/v1/tunnels"))
        .send()
        .await
        .expect("get");
    assert_eq!(elsewhere.status(), 404);
    // On the API listener /metrics still needs a token.
    let unauthorized = plain
        .get(format!("{}/metrics", edge.api_url()))
        .send()
        .await
        .expect("get");
    assert_eq!(unauthorized.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_is_200_when_up_and_503_while_draining() {
    let mut edge = EdgeProcess::start();
    let client = edge.client();
    let origin = TestOrigin::start().await;
    let host = "app.example.com";
    let tunnel = tunnel_for(&client, "app", host, &origin.url()).await;
    let _connector = ConnectorProcess::run(&token(&tunnel), 1, &[]);
    connections(&client, tunnel.id, 1).await;

    let ready = edge.api().with_token(None).get("/ready").await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.body["status"], "ready");

    // A request that takes a while keeps the edge draining once it is told to stop.
    let http = edge_http_client(&edge, host);
    let slow = tokio::spawn({
        let url = http_url(&edge, host, "/slow?ms=4000");
        async move { http.get(url).send().await.map(|a| a.status().as_u16()) }
    });
    let api = edge.api().with_token(None);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = nix::unistd::Pid::from_raw(edge.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let draining = eventually(Duration::from_secs(3), "/ready to say draining", || async {
        let answer = api.get("/ready").await;
        (answer.status == 503).then_some(answer)
    })
    .await;
    assert_eq!(draining.body["status"], "draining");
    assert_eq!(
        slow.await
            .expect("join")
            .expect("the slow request finishes"),
        200,
        "the request in flight was served"
    );
    let status = edge.terminate();
    assert!(status.success(), "{status:?}");
}
