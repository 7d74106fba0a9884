//! Zero-error rollouts (issue 11, must show 3): a tunnel declared with the real terraform and
//! served by two connectors is restarted one connector at a time (SIGTERM, wait for it to
//! drain and exit, start it again, wait until it is back; then the other) under a steady 200
//! requests per second for 20 seconds, one in ten of them slow enough to be in flight when a
//! connector is told to stop. Not one request fails.

use std::time::{Duration, Instant};

use acceptance::fixture::{live_connections, tf_config};
use acceptance::provider::tunnel_id;
use acceptance::visitor::{edge_http_client, http_url};
use acceptance::{ConnectorOptions, ConnectorProcess, EdgeProcess, Load, Terraform, TestOrigin};
use nix::sys::signal::Signal;
use postern_schema::client::Client;
use postern_schema::ids::TunnelId;

const HOST: &str = "app.example.com";
const RATE: u64 = 200;
const DURATION: Duration = Duration::from_secs(20);

/// The tunnel "web" serving [`HOST`] from `service`, with its token as an output.
fn main_tf(service: &str) -> String {
    tf_config(
        &["tunnel/web.tf", "hostname/app.tf", "tunnel/web_token.tf"],
        &[("host", HOST), ("service", service)],
    )
}

/// `postern tunnel run` with two connections, keeping its identity in `state_dir` across
/// restarts.
fn connector(token: &str, state_dir: &std::path::Path) -> ConnectorProcess {
    ConnectorProcess::start(ConnectorOptions {
        state_dir: Some(state_dir.to_path_buf()),
        args: ["tunnel", "run", "--token", token, "--connections", "2"]
            .map(String::from)
            .to_vec(),
        env: Vec::new(),
    })
}

/// SIGTERM, wait for a clean exit, start again, wait until all four connections are back.
async fn restart(
    slot: &mut ConnectorProcess,
    token: &str,
    state_dir: &std::path::Path,
    client: &Client,
    tunnel: TunnelId,
    name: &str,
) {
    slot.signal(Signal::SIGTERM);
    let status = tokio::task::block_in_place(|| slot.wait_exit(Duration::from_secs(40)));
    assert!(
        status.is_some_and(|s| s.success()),
        "connector {name} did not drain and exit cleanly ({status:?}):\n{}",
        slot.log()
    );
    *slot = connector(token, state_dir);
    live_connections(client, tunnel, 4, Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_restart_under_steady_load_fails_no_request() {
    let edge = EdgeProcess::start();
    let client = edge.client();
    let origin = TestOrigin::start().await;
    let tf = Terraform::new(&edge);
    tf.write("main.tf", &main_tf(&origin.url()));
    tf.init();
    tf.apply().success();
    let tunnel = tunnel_id(&tf, "postern_tunnel.web");
    let token = tf.output_raw("token");
    let states = [
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    ];
    let mut first = connector(&token, states[0].path());
    let mut second = connector(&token, states[1].path());
    live_connections(&client, tunnel, 4, Duration::from_secs(30)).await;

    // The steady load: one request every 5 ms for 20 s, each on its own task so a slow one
    // never holds the next back; every tenth takes 300 ms at the origin.
    let http = edge_http_client(&edge, HOST);
    let (fast, slow) = (
        http_url(&edge, HOST, "/hello"),
        http_url(&edge, HOST, "/slow?ms=300"),
    );
    let started = Instant::now();
    let load = Load::get_each(&http, move |i| {
        if i % 10 == 0 {
            slow.clone()
        } else {
            fast.clone()
        }
    })
    .per_second(RATE)
    .requests(RATE as usize * DURATION.as_secs() as usize)
    .start();

    // The rolling restart, while the load runs.
    tokio::time::sleep(Duration::from_secs(2)).await;
    restart(&mut first, &token, states[0].path(), &client, tunnel, "one").await;
    tokio::time::sleep((DURATION / 2).saturating_sub(started.elapsed())).await;
    restart(
        &mut second,
        &token,
        states[1].path(),
        &client,
        tunnel,
        "two",
    )
    .await;
    let restarted_at = started.elapsed();
    let report = load.finish().await;

    eprintln!(
        "rolling restart done after {restarted_at:?}; {} requests in {:?}, {} failed, \
         origin saw {}",
        report.sent,
        started.elapsed(),
        report.failures.len(),
        origin.hits()
    );
    assert!(
        restarted_at < DURATION,
        "the restart must happen under load (took {restarted_at:?})"
    );
    assert!(
        report.failures.is_empty(),
        "{} of {} requests failed:\n{}",
        report.failures.len(),
        report.sent,
        report.describe_failures()
    );
    assert_eq!(origin.hits(), report.sent as u64);
}
