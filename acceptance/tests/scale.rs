//! How the cost grows, at a scale CI can afford (issue 29, must show 4): with 2,000 hostnames
//! on one tunnel, a change to one of them sends its connector at most 4 KiB (a delta, not the
//! tunnel's whole configuration), and `terraform plan` reads each resource at most once.

use std::time::Duration;

use acceptance::fixture::create_tunnel;
use acceptance::provider::config;
use acceptance::{ConnectorProcess, EdgeProcess, Terraform, eventually};
use postern_schema::api::{HostnameSpec, RolloutScope};
use postern_schema::client::Client;
use postern_schema::ids::TunnelId;

/// Hostnames on the tunnel.
const HOSTNAMES: usize = 2_000;

/// The most a change to one hostname may send the connector.
const ONE_CHANGE_BUDGET: u64 = 4 * 1024;

/// Writers creating the hostnames at once.
const WRITERS: usize = 8;

fn spec(i: usize, tunnel: TunnelId, service: &str) -> HostnameSpec {
    HostnameSpec {
        paths: Vec::new(),
        tls_passthrough: None,
        hostname: format!("h{i:05}.example.com"),
        service: service.into(),
        tunnel_id: Some(tunnel),
        routes: None,
        policy_ids: Vec::new(),
        origin: None,
    }
}

/// Creates `count` hostnames on `tunnel` from [`WRITERS`] clients at once, in batches of 500,
/// printing the create rate of each (the curve issue 29 is about: it should stay flat).
async fn create_many(client: &Client, tunnel: TunnelId, count: usize) {
    const BATCH: usize = 500;
    for start in (0..count).step_by(BATCH) {
        let end = (start + BATCH).min(count);
        let started = std::time::Instant::now();
        create_range(client, tunnel, start, end).await;
        println!(
            "hostnames {start}..{end}: {:.0} created/s from {WRITERS} clients",
            (end - start) as f64 / started.elapsed().as_secs_f64()
        );
    }
}

/// Creates the hostnames `start..end` from [`WRITERS`] clients at once.
async fn create_range(client: &Client, tunnel: TunnelId, start: usize, end: usize) {
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..WRITERS {
        let client = client.clone();
        writers.spawn(async move {
            for i in (start + writer..end).step_by(WRITERS) {
                client
                    .create_hostname(&spec(i, tunnel, "http_status:204"))
                    .await
                    .unwrap_or_else(|e| panic!("create hostname {i}: {e}"));
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.expect("a writer");
    }
}

/// Bytes of configuration sent to connectors so far, by kind.
async fn pushed(edge: &EdgeProcess, kind: &str) -> u64 {
    edge.metric(&format!(
        "postern_edge_config_push_bytes_total{{kind=\"{kind}\"}}"
    ))
    .await
}

/// Waits until every connector acknowledged what the edge serves now.
async fn rolled_out(client: &Client) {
    eventually(Duration::from_secs(30), "the rollout complete", || async {
        let rollout = client.rollout(None, &RolloutScope::All).await.ok()?;
        rollout.complete.then_some(rollout.catalog_revision)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_to_one_of_two_thousand_hostnames_sends_the_connector_at_most_4_kib() {
    let edge = EdgeProcess::start();
    let client = edge.client();
    let web = create_tunnel(&client, "web", &[]).await;
    create_many(&client, web.id, HOSTNAMES).await;
    let connector =
        ConnectorProcess::run(web.token.as_deref().expect("token"), 1, &["--hello-world"]);
    eventually(Duration::from_secs(20), "the connection", || async {
        let connections = client.tunnel_connections(web.id).await.ok()?;
        (connections.len() == 1).then_some(())
    })
    .await;
    rolled_out(&client).await;
    let snapshot = pushed(&edge, "snapshot").await;
    // The measure measures: the whole configuration is far more than the budget.
    assert!(
        snapshot > 10 * ONE_CHANGE_BUDGET,
        "the first push of {HOSTNAMES} hostnames took {snapshot} bytes"
    );

    let before = pushed(&edge, "snapshot").await + pushed(&edge, "delta").await;
    client
        .replace_hostname(&spec(HOSTNAMES / 2, web.id, "http_status:202"), None)
        .await
        .expect("replace one hostname");
    // The write's answer comes once the edge serves it: complete now means acknowledged.
    rolled_out(&client).await;
    let after = pushed(&edge, "snapshot").await + pushed(&edge, "delta").await;
    let sent = after - before;
    println!(
        "{HOSTNAMES} hostnames on one tunnel: the first configuration took {snapshot} bytes, a \
         change to one hostname {sent} bytes"
    );
    assert!(sent > 0, "the change was pushed");
    assert!(
        sent <= ONE_CHANGE_BUDGET,
        "a change to one of {HOSTNAMES} hostnames sent the connector {sent} bytes"
    );
    drop(connector);
}

/// `terraform` files: the tunnel "web" and `count` hostnames on it.
fn many_tf(count: usize) -> String {
    config(&format!(
        r#"
resource "postern_tunnel" "web" {{
  name = "web"
}}

resource "postern_hostname" "many" {{
  count     = {count}
  hostname  = "h${{count.index}}.example.com"
  service   = "http_status:204"
  tunnel_id = postern_tunnel.web.id
}}
"#
    ))
}

/// Every `GET` the control API answered so far, whatever its status.
async fn api_reads(edge: &EdgeProcess) -> u64 {
    let text = edge.api().get("/metrics").await.text;
    text.lines()
        .filter(|line| line.starts_with("postern_edge_api_requests_total{method=\"GET\""))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_reads_each_resource_at_most_once() {
    const COUNT: usize = 100;
    let edge = EdgeProcess::start();
    let tf = Terraform::new(&edge);
    tf.write("main.tf", &many_tf(COUNT));
    tf.init();
    tf.apply().success();
    let resources = COUNT as u64 + 1;

    let before = api_reads(&edge).await;
    tf.plan(&[]).expect_empty();
    // The second `GET /metrics` counts the first.
    let reads = api_reads(&edge).await - before - 1;
    println!("terraform plan of {resources} resources: {reads} API reads");
    assert!(
        reads <= resources,
        "terraform plan of {resources} resources made {reads} API reads"
    );
}
