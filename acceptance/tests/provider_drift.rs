//! Drift: objects changed through the API show as updates in the next plan, an object
//! deleted through the API is planned for creation again, and `-refresh-only` reports
//! both; applying restores what the configuration says.

use acceptance::fixture::tf_config;
use acceptance::provider::Inventory;
use acceptance::{EdgeProcess, Terraform};

/// The tunnel "web" serving two hostnames, one behind a rate-limiting policy.
fn main_tf() -> String {
    let mut config = tf_config(
        &["tunnel/web_labelled.tf", "hostname/app_guarded.tf"],
        &[
            ("labels", r#"{ release = "stable" }"#),
            ("host", "app.example.com"),
            ("service", "http://127.0.0.1:4000"),
        ],
    );
    config.push_str(
        r#"
resource "postern_policy" "api" {
  name       = "api"
  rate_limit = { requests_per_second = 10 }
}

resource "postern_hostname" "docs" {
  hostname  = "docs.example.com"
  service   = "http://127.0.0.1:4001"
  tunnel_id = postern_tunnel.web.id
}
"#,
    );
    config
}

#[tokio::test]
async fn changes_made_outside_terraform_are_detected_and_undone() {
    let edge = EdgeProcess::start();
    let client = edge.client();
    let tf = Terraform::new(&edge);
    tf.write("main.tf", &main_tf());
    tf.init();
    tf.apply().success();

    // Someone changes the tunnel's labels and the rate limit, and deletes a hostname.
    let before = Inventory::read(&client).await;
    let tunnel = before.tunnel("web");
    let mut spec = tunnel.spec.clone();
    spec.labels.insert("release".into(), "canary".into());
    client
        .replace_tunnel(tunnel.id, &spec, Some(tunnel.version))
        .await
        .expect("change tunnel");
    let policy = before.policy("api");
    let mut spec = policy.spec.clone();
    if let Some(rate) = spec.rate_limit.as_mut() {
        rate.requests_per_second = 50.0;
        rate.burst = Some(50);
    }
    client
        .replace_policy(policy.id, &spec, Some(policy.version))
        .await
        .expect("change policy");
    client
        .delete_hostname("docs.example.com", None)
        .await
        .expect("delete hostname");

    // -refresh-only reports what changed outside Terraform and plans nothing else.
    let refresh = tf.plan(&["-refresh-only"]);
    let drift: Vec<(String, Vec<String>)> = refresh.json["resource_drift"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            (
                d["address"].as_str().unwrap_or_default().to_owned(),
                d["change"]["actions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a.as_str().map(str::to_owned))
                    .collect(),
            )
        })
        .collect();
    for (address, action) in [
        ("postern_tunnel.web", "update"),
        ("postern_policy.api", "update"),
        ("postern_hostname.docs", "delete"),
    ] {
        assert!(
            drift
                .iter()
                .any(|(a, actions)| a == address && actions == &[action]),
            "{address} should have drifted ({action}): {drift:?}\n{}",
            refresh.text
        );
    }
    assert!(
        refresh
            .text
            .contains("Objects have changed outside of Terraform"),
        "{}",
        refresh.text
    );
    assert!(
        refresh.text.contains("has been deleted"),
        "{}",
        refresh.text
    );

    // A normal plan undoes the changes and re-creates the deleted hostname.
    let plan = tf.plan(&[]);
    assert_eq!(plan.actions("postern_tunnel.web"), ["update"]);
    assert_eq!(plan.actions("postern_policy.api"), ["update"]);
    assert_eq!(plan.actions("postern_hostname.docs"), ["create"]);
    assert_eq!(plan.changes().len(), 3, "{}", plan.text);
    tf.run(&["apply", "-no-color", "tfplan"]).success();

    let after = Inventory::read(&client).await;
    assert_eq!(after.tunnel("web").spec.labels["release"], "stable");
    let rate = after.policy("api").spec.rate_limit.clone().expect("rate");
    assert_eq!((rate.requests_per_second, rate.burst), (10.0, Some(10)));
    assert_eq!(
        after.hostname("docs.example.com").spec.tunnel_id,
        Some(after.tunnel("web").id)
    );
    let clean = tf.plan_exit_code();
    assert_eq!(clean.code, 0, "{}", clean.all());
}
