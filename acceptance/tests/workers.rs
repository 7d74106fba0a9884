//! Shared-nothing workers, seen from outside: the edge asks connectors for one connection per
//! worker and places a tunnel's connections on different workers; a worker that holds no
//! connection of a tunnel still serves its requests, handing them to one that does (counted in
//! `postern_edge_worker_handoffs_total`).

use std::time::Duration;

use acceptance::fixture::{connections, connections_within, token, tunnel_for};
use acceptance::visitor::get_with_host;
use acceptance::{ConnectorOptions, ConnectorProcess, EdgeOptions, EdgeProcess, TestOrigin};

const HOST: &str = "app.example.com";

/// Fresh visitor connections per burst: each lands on whichever worker the kernel deals it to.
const REQUESTS: usize = 64;

fn edge_with_workers(workers: u16) -> EdgeProcess {
    EdgeProcess::start_with(EdgeOptions {
        args: vec!["--workers".into(), workers.to_string()],
        ..EdgeOptions::default()
    })
}

/// `REQUESTS` GETs through the edge, each on a connection of its own; every one must be
/// answered by the origin.
async fn burst(edge: &EdgeProcess) {
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client");
    for i in 0..REQUESTS {
        let (status, body) = get_with_host(&http, edge.addrs.http, HOST, "/hello").await;
        assert_eq!(
            (status, body.as_str()),
            (200, "hello from the origin"),
            "request {i}; edge log:\n{}",
            edge.log()
        );
    }
}

#[tokio::test]
async fn connectors_open_the_connections_the_edge_asks_for() {
    let edge = edge_with_workers(3);
    let client = edge.client();
    let origin = TestOrigin::start().await;
    let tunnel = tunnel_for(&client, "app", HOST, &origin.url()).await;

    // Without --connections, a connector opens as many as the edge asks for: one per worker.
    let asked = ConnectorProcess::start(ConnectorOptions {
        args: vec![
            "tunnel".into(),
            "run".into(),
            "--token".into(),
            token(&tunnel),
        ],
        ..ConnectorOptions::default()
    });
    connections_within(&client, tunnel.id, 3, Duration::from_secs(30)).await;
    burst(&edge).await;
    assert_eq!(
        edge.metric("postern_edge_worker_handoffs_total").await,
        0,
        "each worker holds a connection of the tunnel, so none hands a request over"
    );

    // An explicit --connections is kept as given, whatever the edge asks.
    let fixed = ConnectorProcess::run(&token(&tunnel), 1, &[]);
    let all = connections(&client, tunnel.id, 4).await;
    let mut by_connector = std::collections::BTreeMap::<String, usize>::new();
    for connection in &all {
        *by_connector
            .entry(connection.connector_id.clone())
            .or_default() += 1;
    }
    let mut counts: Vec<usize> = by_connector.into_values().collect();
    counts.sort();
    assert_eq!(counts, [1, 3], "logs:\n{}\n{}", asked.log(), fixed.log());
}

#[tokio::test]
async fn a_worker_without_a_connection_of_the_tunnel_still_serves_its_requests() {
    let edge = edge_with_workers(2);
    let client = edge.client();
    let origin = TestOrigin::start().await;
    let tunnel = tunnel_for(&client, "app", HOST, &origin.url()).await;

    // One connection: it lives on one worker; requests the other worker accepts are handed over.
    let mut first = ConnectorProcess::run(&token(&tunnel), 1, &[]);
    connections(&client, tunnel.id, 1).await;
    burst(&edge).await;
    let handed = edge.metric("postern_edge_worker_handoffs_total").await;
    assert!(
        handed > 0 && handed < REQUESTS as u64,
        "{handed} of {REQUESTS} requests were handed to the other worker; the kernel should \
         deal fresh connections to both"
    );

    // A connector with two connections gets one on each worker, whatever the tunnel has
    // already: once it is alone, no request changes threads.
    let _second = ConnectorProcess::run(&token(&tunnel), 2, &[]);
    connections(&client, tunnel.id, 3).await;
    first.kill();
    connections(&client, tunnel.id, 2).await;
    burst(&edge).await;
    assert_eq!(
        edge.metric("postern_edge_worker_handoffs_total").await,
        handed,
        "with a connection of the connector on each worker no request changes threads"
    );
    assert_eq!(origin.hits(), 2 * REQUESTS as u64);
}
