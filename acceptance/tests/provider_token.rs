//! The tunnel token: sensitive everywhere Terraform prints (plan, apply, `show`), yet
//! `terraform output -raw` gives the whole token, which names the tunnel and pins the
//! edge's CA, and with which a real connector enrols and connects.

use std::time::Duration;

use acceptance::fixture::tf_config;
use acceptance::provider::{pem_sha256, string_attr};
use acceptance::{ConnectorProcess, EdgeProcess, Terraform, eventually};
use postern_schema::ids::TunnelId;
use postern_schema::token::TunnelToken;

/// The tunnel "web" (with `labels`) serving a hostname, its token and its connection count
/// as outputs.
fn main_tf(labels: &str) -> String {
    let mut config = tf_config(
        &[
            "tunnel/web_labelled.tf",
            "hostname/app.tf",
            "tunnel/web_token.tf",
        ],
        &[
            ("labels", labels),
            ("host", "app.example.com"),
            ("service", "http_status:204"),
        ],
    );
    config.push_str(
        r#"
data "postern_tunnels" "all" {
  depends_on = [postern_tunnel.web]
}

output "connections" {
  value = data.postern_tunnels.all.tunnels[0].connections
}
"#,
    );
    config
}

#[tokio::test]
async fn token_is_sensitive_and_enrols_a_connector() {
    let edge = EdgeProcess::start();
    let client = edge.client();
    let tf = Terraform::new(&edge);
    tf.write("main.tf", &main_tf("{}"));
    tf.init();
    let apply = tf.apply().success();

    let state = tf.resource("postern_tunnel.web");
    let token = string_attr(&state, "token");
    let tunnel_id: TunnelId = string_attr(&state, "id").parse().expect("tunnel id");
    assert_eq!(
        client
            .tunnel_token(tunnel_id)
            .await
            .expect("token")
            .expose(),
        token,
        "the state holds the edge's token"
    );

    // Never printed: apply, show, plan (also a plan that changes the tunnel).
    assert!(!apply.all().contains(&token), "{}", apply.all());
    let show = tf.run(&["show", "-no-color"]).success();
    assert!(!show.all().contains(&token), "{}", show.all());
    assert!(show.stdout.contains("(sensitive value)"), "{}", show.stdout);
    tf.write("main.tf", &main_tf(r#"{ release = "stable" }"#));
    let plan = tf.plan(&[]);
    assert_eq!(plan.actions("postern_tunnel.web"), ["update"]);
    assert!(!plan.text.contains(&token), "{}", plan.text);
    let show_plan = tf.run(&["show", "-no-color", "tfplan"]).success();
    assert!(!show_plan.all().contains(&token), "{}", show_plan.all());
    let apply = tf.run(&["apply", "-no-color", "tfplan"]).success();
    assert!(!apply.all().contains(&token), "{}", apply.all());
    let outputs = tf.run(&["output", "-no-color"]).success();
    assert!(!outputs.all().contains(&token), "{}", outputs.all());

    // `terraform output -raw` gives the token itself: this tunnel, this edge's CA.
    let raw = tf.output_raw("token");
    assert_eq!(raw, token);
    let parsed = TunnelToken::parse(&raw).expect("a tunnel token");
    assert_eq!(parsed.tunnel_id, tunnel_id);
    let info = client.edge().await.expect("edge info");
    assert_eq!(parsed.ca_sha256, pem_sha256(&info.ca_cert_pem));
    assert_eq!(parsed.edge_addresses, info.tunnel_addresses);

    // A real connector enrols with it and connects.
    let connector = ConnectorProcess::run(&raw, 1, &[]);
    eventually(
        Duration::from_secs(20),
        "the connector's connection",
        || {
            let client = client.clone();
            async move {
                let live = client.tunnel_connections(tunnel_id).await.ok()?;
                (!live.is_empty()).then_some(())
            }
        },
    )
    .await;
    // Discovery sees it too.
    tf.apply().success();
    assert_eq!(
        tf.output_raw("connections"),
        "1",
        "connector log:\n{}",
        connector.log()
    );
}
