//! The provider's whole lifecycle with the real `terraform` against a real edge: offline
//! `init`, create (checked through the API), an empty `plan -detailed-exitcode`, updates
//! in place (labels, a rate limit, a service), replacement when `hostname` changes, and
//! `destroy` leaving the edge empty.

use acceptance::fixture::tf_config;
use acceptance::provider::{Inventory, string_attr};
use acceptance::{EdgeProcess, Terraform};

/// What the steps change.
struct Settings {
    stable_labels: &'static str,
    rps: &'static str,
    service: &'static str,
    app_host: &'static str,
}

fn main_tf(s: &Settings) -> String {
    let split = tf_config(
        &["hostname/split.tf"],
        &[
            ("name", "canary"),
            ("host", "canary.example.com"),
            ("service", "http://127.0.0.1:4001"),
        ],
    );
    format!(
        r#"{split}
resource "postern_policy" "api" {{
  name          = "api"
  allow_ips     = ["10.0.0.0/8"]
  allow_methods = ["GET", "POST"]
  rate_limit    = {{ requests_per_second = {rps} }}
}}

resource "postern_tunnel" "stable" {{
  name   = "web-stable"
  labels = {labels}
}}

resource "postern_tunnel" "canary" {{
  name   = "web-canary"
  labels = {{ release = "canary" }}
}}

resource "postern_hostname" "app" {{
  hostname   = "{host}"
  service    = "{service}"
  tunnel_id  = postern_tunnel.stable.id
  policy_ids = [postern_policy.api.id]
}}
"#,
        rps = s.rps,
        labels = s.stable_labels,
        host = s.app_host,
        service = s.service,
    )
}

const ALL: [&str; 5] = [
    "postern_policy.api",
    "postern_tunnel.stable",
    "postern_tunnel.canary",
    "postern_hostname.app",
    "postern_hostname.canary",
];

#[tokio::test]
async fn resources_are_created_updated_replaced_and_destroyed() {
    let edge = EdgeProcess::start();
    let client = edge.client();
    let tf = Terraform::new(&edge);
    let mut settings = Settings {
        stable_labels: r#"{ release = "stable" }"#,
        rps: "2.5",
        service: "http://127.0.0.1:4000",
        app_host: "app.example.com",
    };
    tf.write("main.tf", &main_tf(&settings));

    // Offline init: the provider comes from the implied local mirror.
    let init = tf.init();
    assert!(
        init.stdout.contains(&format!(
            "Installed postern/postern v{}",
            acceptance::terraform::PROVIDER_VERSION
        )),
        "{}",
        init.all()
    );

    // Create: every resource planned for creation, then applied.
    let plan = tf.plan(&[]);
    for address in ALL {
        assert_eq!(plan.actions(address), ["create"], "{address}");
    }
    tf.apply().success();

    // Checked through the API.
    let edge_now = Inventory::read(&client).await;
    let stable = edge_now.tunnel("web-stable");
    let canary = edge_now.tunnel("web-canary");
    assert_eq!(stable.spec.labels["release"], "stable");
    assert_eq!(canary.spec.labels["release"], "canary");
    let policy = edge_now.policy("api");
    assert_eq!(policy.spec.allow_ips, ["10.0.0.0/8"]);
    let mut methods = policy.spec.allow_methods.clone();
    methods.sort();
    assert_eq!(methods, ["GET", "POST"]);
    let rate = policy.spec.rate_limit.as_ref().expect("rate limit");
    assert_eq!((rate.requests_per_second, rate.burst), (2.5, Some(3)));
    let app = edge_now.hostname("app.example.com");
    assert_eq!(app.spec.tunnel_id, Some(stable.id));
    assert_eq!(app.spec.policy_ids, [policy.id]);
    assert_eq!(app.spec.service, "http://127.0.0.1:4000");
    let routes = edge_now
        .hostname("canary.example.com")
        .spec
        .routes
        .clone()
        .expect("routes");
    assert_eq!(
        routes
            .iter()
            .map(|r| (r.selector["release"].as_str(), r.weight))
            .collect::<Vec<_>>(),
        [("stable", 90), ("canary", 10)]
    );
    // The state agrees with the edge.
    let state = tf.resource("postern_tunnel.stable");
    assert_eq!(string_attr(&state, "id"), stable.id.to_string());
    assert_eq!(string_attr(&state, "created_at"), stable.created_at);
    let state = tf.resource("postern_hostname.app");
    assert_eq!(state["addresses"], serde_json::json!(app.addresses));
    assert_eq!(
        tf.resource("postern_policy.api")["rate_limit"]["burst"],
        serde_json::json!(3)
    );

    // An immediate plan has nothing to do.
    let again = tf.plan_exit_code();
    assert_eq!(again.code, 0, "{}", again.all());

    // Labels, a rate limit and a service change in place.
    settings.stable_labels = r#"{ release = "stable", tier = "web" }"#;
    settings.rps = "5";
    settings.service = "http://127.0.0.1:4100";
    tf.write("main.tf", &main_tf(&settings));
    let plan = tf.plan(&[]);
    assert_eq!(
        plan.changes(),
        [
            ("postern_hostname.app".to_owned(), vec!["update".to_owned()]),
            ("postern_policy.api".to_owned(), vec!["update".to_owned()]),
            (
                "postern_tunnel.stable".to_owned(),
                vec!["update".to_owned()]
            ),
        ],
        "{}",
        plan.text
    );
    // Stable computed values stay known; the burst follows the new rate at plan time.
    let change = |address: &str| {
        plan.json["resource_changes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["address"] == address)
            .map(|c| c["change"].clone())
            .unwrap_or_default()
    };
    let tunnel = change("postern_tunnel.stable");
    assert_eq!(tunnel["after_unknown"]["token"], serde_json::Value::Null);
    assert_eq!(tunnel["after_unknown"]["id"], serde_json::Value::Null);
    assert!(!plan.text.contains("known after apply"), "{}", plan.text);
    assert_eq!(
        change("postern_policy.api")["after"]["rate_limit"]["burst"],
        serde_json::json!(5)
    );
    tf.apply().success();
    let edge_now = Inventory::read(&client).await;
    assert_eq!(edge_now.tunnel("web-stable").spec.labels["tier"], "web");
    let rate = edge_now
        .policy("api")
        .spec
        .rate_limit
        .clone()
        .expect("rate");
    assert_eq!((rate.requests_per_second, rate.burst), (5.0, Some(5)));
    assert_eq!(
        edge_now.hostname("app.example.com").spec.service,
        "http://127.0.0.1:4100"
    );
    assert_eq!(tf.plan_exit_code().code, 0);

    // A new hostname replaces the object.
    settings.app_host = "www.example.com";
    tf.write("main.tf", &main_tf(&settings));
    let plan = tf.plan(&[]);
    assert_eq!(plan.actions("postern_hostname.app"), ["delete", "create"]);
    assert_eq!(plan.changes().len(), 1, "{}", plan.text);
    tf.apply().success();
    let edge_now = Inventory::read(&client).await;
    assert!(
        edge_now
            .hostnames
            .iter()
            .all(|h| h.spec.hostname != "app.example.com")
    );
    assert_eq!(
        edge_now.hostname("www.example.com").spec.tunnel_id,
        Some(edge_now.tunnel("web-stable").id)
    );
    assert_eq!(tf.plan_exit_code().code, 0);

    // Destroy leaves the edge empty.
    tf.run(&["destroy", "-auto-approve", "-no-color"]).success();
    let edge_now = Inventory::read(&client).await;
    assert!(edge_now.is_empty(), "{edge_now:#?}");
}
