//! `TF_LOG_PROVIDER=debug` shows the provider's own log lines in Terraform's log, each at
//! its level: a debug line per API call (method, path, status), info for lifecycle, warn
//! for a handled problem; never a token.

use acceptance::fixture::create_tunnel;
use acceptance::provider::{config, string_attr};
use acceptance::{EdgeProcess, Terraform};

const PROVIDER: &str = concat!(
    "provider.terraform-provider-postern_v",
    env!("CARGO_PKG_VERSION"),
    ":"
);

#[tokio::test]
async fn provider_log_lines_appear_at_their_levels() {
    let edge = EdgeProcess::start();
    // A leftover tunnel, so adoption logs a warning.
    create_tunnel(&edge.client(), "old", &[]).await;
    let mut tf = Terraform::new(&edge);
    tf.write(
        "main.tf",
        &config(
            r#"
resource "postern_tunnel" "old" {
  name = "old"
}
resource "postern_tunnel" "web" {
  name = "web"
}
"#,
        ),
    );
    tf.init();
    tf.set_env("TF_LOG_PROVIDER", "debug");
    let run = tf.apply().success();
    let log = run.stderr.clone();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(PROVIDER)).collect();

    let has = |level: &str, needles: &[&str]| {
        lines
            .iter()
            .any(|l| l.contains(level) && needles.iter().all(|n| l.contains(n)))
    };
    assert!(
        has(
            "[DEBUG]",
            &[
                "edge API call",
                "method=POST",
                "path=/v1/tunnels",
                "status=201"
            ]
        ),
        "no debug line for the create call:\n{log}"
    );
    assert!(
        has("[DEBUG]", &["edge API call", "method=GET", "status=200"]),
        "{log}"
    );
    assert!(has("[INFO]", &["tunnel created"]), "{log}");
    assert!(has("[WARN]", &["adopted an existing tunnel"]), "{log}");
    // Only the provider's lines: TF_LOG_PROVIDER leaves Terraform core quiet.
    assert!(
        log.lines()
            .filter(|l| l.contains("[DEBUG]") || l.contains("[TRACE]"))
            .all(|l| l.contains("provider")),
        "{log}"
    );

    // No secret in the log.
    let token = string_attr(&tf.resource("postern_tunnel.web"), "token");
    assert!(!log.contains(&token), "the tunnel token was logged");
    assert!(!log.contains(&edge.admin_token), "the API token was logged");
}
