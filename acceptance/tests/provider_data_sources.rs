//! The data sources against a real edge: `postern_tunnel` by id and by name (no token),
//! `postern_tunnels` by label selector (ordered by name; empty selects all) and
//! `postern_edge`.

use std::collections::BTreeMap;

use acceptance::fixture::create_tunnel;
use acceptance::provider::config;
use acceptance::{EdgeProcess, Terraform};
use serde_json::{Value, json};

const MAIN_TF: &str = r#"
data "postern_tunnel" "by_name" {
  name = "b-canary"
}

data "postern_tunnel" "by_id" {
  id = data.postern_tunnel.by_name.id
}

data "postern_tunnels" "canary" {
  selector = { release = "canary" }
}

data "postern_tunnels" "all" {}

data "postern_edge" "this" {}

output "by_name" { value = data.postern_tunnel.by_name }
output "by_id" { value = data.postern_tunnel.by_id }
output "canary" { value = data.postern_tunnels.canary.tunnels }
output "all" { value = data.postern_tunnels.all.tunnels[*].name }
output "edge" { value = data.postern_edge.this }
"#;

#[tokio::test]
async fn data_sources_look_up_tunnels_and_the_edge() {
    let edge = EdgeProcess::start();
    let client = edge.client();
    let mut ids = BTreeMap::new();
    for (name, release) in [
        ("c-stable", "stable"),
        ("b-canary", "canary"),
        ("a-canary", "canary"),
    ] {
        let tunnel = create_tunnel(&client, name, &[("release", release)]).await;
        ids.insert(name, tunnel);
    }
    let tf = Terraform::new(&edge);
    tf.write("main.tf", &config(MAIN_TF));
    tf.init();
    tf.apply().success();
    let output = |name: &str| -> Value {
        serde_json::from_str(&tf.run(&["output", "-json", name]).success().stdout)
            .expect("output JSON")
    };

    let canary = &ids["b-canary"];
    let expected = json!({
        "id": canary.id.to_string(),
        "name": "b-canary",
        "labels": {"release": "canary"},
        "created_at": canary.created_at,
    });
    assert_eq!(output("by_name"), expected);
    assert_eq!(output("by_id"), expected);
    let found = output("canary");
    let names: Vec<&str> = found
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["a-canary", "b-canary"]);
    assert_eq!(found[0]["connections"], json!(0));
    assert_eq!(output("all"), json!(["a-canary", "b-canary", "c-stable"]));

    let info = client.edge().await.expect("edge info");
    let edge_out = output("edge");
    assert_eq!(edge_out["zones"], json!(info.zones));
    assert_eq!(edge_out["public_addresses"], json!(info.public_addresses));
    assert_eq!(edge_out["tunnel_addresses"], json!(info.tunnel_addresses));
    assert_eq!(edge_out["ca_cert_pem"], json!(info.ca_cert_pem));

    // A tunnel that does not exist is an error, not an empty result.
    tf.write(
        "main.tf",
        &config(r#"data "postern_tunnel" "x" { name = "nope" }"#),
    );
    let run = tf.run(&["plan", "-no-color"]);
    assert_ne!(run.code, 0);
    assert!(run.all().contains("No such tunnel"), "{}", run.all());
}
