//! exploratory
use std::time::Duration;

use acceptance::fixture::{add_hostname, tunnel_for};
use acceptance::pebble::handshake;
use acceptance::{EdgeProcess, Pebble, PebbleOptions, eventually};
use postern_schema::api::CertificateSpec;

async fn run(challenge: &str, host: &str) {
    let mut edge = EdgeProcess::start();
    let pebble = Pebble::start(&edge.addrs, PebbleOptions::default());
    edge.restart_with_args(&pebble.edge_args(challenge));
    let client = edge.client();
    let _tunnel = tunnel_for(&client, "web", host, "http_status:204").await;
    let root = pebble.root_pem();
    let started = std::time::Instant::now();
    let served = eventually(Duration::from_secs(30), "a pebble certificate", || async {
        handshake(edge.addrs.https, host, &root).await.ok()
    })
    .await;
    eprintln!(
        "{challenge} served after {:?}: {:?}",
        started.elapsed(),
        served.names
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explore_http() {
    run("http-01", "web.example.com").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explore_dns() {
    run("dns-01", "dns.example.com").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explore_wildcard() {
    let mut edge = EdgeProcess::start();
    let pebble = Pebble::start(&edge.addrs, PebbleOptions::default());
    edge.restart_with_args(&pebble.edge_args("dns-01"));
    let client = edge.client();
    client
        .create_certificate(&CertificateSpec {
            names: Some(vec!["*.apps.example.com".into()]),
            ..Default::default()
        })
        .await
        .expect("wildcard");
    let tunnel = tunnel_for(&client, "web", "a.apps.example.com", "http_status:204").await;
    add_hostname(&client, &tunnel, "b.apps.example.com", "http_status:204").await;
    let root = pebble.root_pem();
    for host in ["a.apps.example.com", "b.apps.example.com"] {
        let served = eventually(Duration::from_secs(30), "a wildcard", || async {
            handshake(edge.addrs.https, host, &root)
                .await
                .ok()
                .filter(|s| s.names.contains(&"*.apps.example.com".to_string()))
        })
        .await;
        eprintln!("{host}: {:?} {}", served.names, served.serial);
    }
    eprintln!("{}", edge.log());
    eprintln!("{:?}", client.list_certificates().await);
}
