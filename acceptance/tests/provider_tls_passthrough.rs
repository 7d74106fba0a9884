//! `tls_passthrough` on a `postern_hostname` through the real `terraform`: created with an
//! IP-list policy (the edge stores it, and the plan after apply is empty), and a passthrough
//! hostname whose service is not a path-less `https://` origin refused at plan time on
//! `service`, with the edge's reason.

use acceptance::provider::config;
use acceptance::{EdgeProcess, Terraform};

fn main_tf(service: &str) -> String {
    config(&format!(
        r#"
resource "postern_tunnel" "host" {{
  name = "host"
}}

resource "postern_policy" "office" {{
  name      = "office"
  allow_ips = ["127.0.0.0/8"]
}}

resource "postern_hostname" "secure" {{
  hostname        = "secure.example.com"
  service         = "{service}"
  tunnel_id       = postern_tunnel.host.id
  policy_ids      = [postern_policy.office.id]
  tls_passthrough = true
}}
"#
    ))
}

#[tokio::test]
async fn a_passthrough_hostname_is_applied_and_a_wrong_service_refused_at_plan() {
    let edge = EdgeProcess::start();
    let tf = Terraform::new(&edge);
    tf.write("main.tf", &main_tf("https://127.0.0.1:8443"));
    tf.init();
    let plan = tf.plan(&[]);
    assert_eq!(plan.actions("postern_hostname.secure"), ["create"]);
    tf.run(&["apply", "-no-color", "tfplan"]).success();
    let state = tf.resource("postern_hostname.secure");
    assert_eq!(state["tls_passthrough"], serde_json::json!(true));
    let on_edge = edge
        .client()
        .hostname("secure.example.com")
        .await
        .expect("on the edge");
    assert!(on_edge.spec.passes_tls_through());
    tf.plan(&[]).expect_empty();

    tf.write("main.tf", &main_tf("https://127.0.0.1:8443/base"));
    let refused = tf.run(&["plan", "-no-color"]);
    assert_ne!(refused.code, 0, "{}", refused.all());
    let text = refused.all();
    assert!(text.contains("Invalid service"), "{text}");
    assert!(text.contains("tls_passthrough"), "{text}");
}
