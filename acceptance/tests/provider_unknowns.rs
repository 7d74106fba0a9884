//! Values not known until apply: a hostname's `tunnel_id` from a tunnel created in the
//! same apply, a label value from another resource's id, a name built from one (a
//! refined unknown with a known prefix) and a rate computed from one. They plan as
//! unknown and apply to the right values.

use acceptance::provider::{Inventory, config, string_attr};
use acceptance::{EdgeProcess, Terraform};
use serde_json::Value;

const MAIN_TF: &str = r#"
resource "postern_tunnel" "x" {
  name   = "x"
  labels = { release = "stable" }
}

resource "postern_tunnel" "y" {
  name   = "y-${substr(postern_tunnel.x.id, 0, 8)}"
  labels = { release = "canary", owner = postern_tunnel.x.id }
}

resource "postern_policy" "p" {
  name       = "p"
  rate_limit = { requests_per_second = length(postern_tunnel.x.id) }
}

resource "postern_hostname" "app" {
  hostname   = "app.example.com"
  service    = "http://127.0.0.1:4000"
  tunnel_id  = postern_tunnel.x.id
  policy_ids = [postern_policy.p.id]
}
"#;

#[tokio::test]
async fn references_to_unknown_values_plan_and_apply() {
    let edge = EdgeProcess::start();
    let tf = Terraform::new(&edge);
    tf.write("main.tf", &config(MAIN_TF));
    tf.init();

    let plan = tf.plan(&[]);
    let unknown = |address: &str| -> Value {
        plan.json["resource_changes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["address"] == address)
            .map(|c| c["change"]["after_unknown"].clone())
            .unwrap_or_default()
    };
    let app = unknown("postern_hostname.app");
    assert_eq!(app["tunnel_id"], true, "{app}");
    assert_eq!(app["policy_ids"], serde_json::json!([true]), "{app}");
    assert_eq!(app["addresses"], true, "{app}");
    let y = unknown("postern_tunnel.y");
    assert_eq!(y["name"], true, "{y}");
    assert_eq!(y["labels"]["owner"], true, "{y}");
    let p = unknown("postern_policy.p");
    assert_eq!(p["rate_limit"]["requests_per_second"], true, "{p}");
    assert_eq!(p["rate_limit"]["burst"], true, "{p}");

    tf.run(&["apply", "-no-color", "tfplan"]).success();

    let edge_now = Inventory::read(&edge.client()).await;
    let x = edge_now.tunnel("x");
    let x_id = x.id.to_string();
    let y = edge_now.tunnel(&format!("y-{}", &x_id[..8]));
    assert_eq!(y.spec.labels["owner"], x_id);
    assert_eq!(
        edge_now.hostname("app.example.com").spec.tunnel_id,
        Some(x.id)
    );
    assert_eq!(
        edge_now.hostname("app.example.com").spec.policy_ids,
        [edge_now.policy("p").id]
    );
    let rate = edge_now.policy("p").spec.rate_limit.clone().expect("rate");
    assert_eq!((rate.requests_per_second, rate.burst), (36.0, Some(36)));
    assert_eq!(
        string_attr(&tf.resource("postern_hostname.app"), "tunnel_id"),
        x_id
    );

    let clean = tf.plan_exit_code();
    assert_eq!(clean.code, 0, "{}", clean.all());
}
