//! Plan-time truth (issue 11, must show 4): `terraform plan` asks the edge about the connectors
//! that will serve a hostname and warns a reviewer: a plan that routes 10% to a selector with no
//! connected connector names that route and shows the split that results; once the canary has
//! a connector the split is the declared 90/10; a tunnel label change that would strand a route
//! says so; with the edge down, plan still works and says the check was skipped.

use std::time::Duration;

use acceptance::fixture::{create_tunnel, tf_config};
use acceptance::provider::squash;
use acceptance::{ConnectorProcess, EdgeProcess, Terraform, eventually};

/// The hostname "shop", 90/10 between `release=stable` and `release=canary`.
fn main_tf() -> String {
    tf_config(
        &["hostname/split.tf"],
        &[
            ("name", "shop"),
            ("host", "shop.example.com"),
            ("service", "http_status:204"),
        ],
    )
}

/// `terraform plan`, which must succeed; its output with whitespace squashed.
fn plan(tf: &Terraform) -> String {
    let run = tf.run(&["plan", "-no-color"]);
    assert_eq!(run.code, 0, "plan failed:\n{}", run.all());
    squash(&run.all())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_warns_about_routes_without_connectors_and_survives_a_dead_edge() {
    let mut edge = EdgeProcess::start();
    let client = edge.client();
    let stable = create_tunnel(&client, "stable", &[("release", "stable")]).await;
    let canary = create_tunnel(&client, "canary", &[("release", "canary")]).await;
    let _stable_connector = ConnectorProcess::run(
        stable.token.as_deref().expect("token"),
        1,
        &["--hello-world"],
    );
    eventually(Duration::from_secs(20), "the stable connector", || async {
        (client.tunnel_connections(stable.id).await.ok()?.len() == 1).then_some(())
    })
    .await;
    let tf = Terraform::new(&edge);
    tf.write("main.tf", &main_tf());
    tf.init();

    // 10% to a selector whose tunnel has no connector: that route is named, and its share
    // fails over to stable.
    let text = plan(&tf);
    eprintln!("plan with no canary connector:\n{text}");
    assert!(
        text.contains("Warning: Route has no connected connector"),
        "{text}"
    );
    assert!(
        text.contains("routes[1] (release=canary, weight 10) of shop.example.com"),
        "{text}"
    );
    assert!(text.contains("its 10% of requests fail over"), "{text}");
    assert!(
        text.contains("Warning: Traffic split for shop.example.com"),
        "{text}"
    );
    assert!(
        text.contains("routes[0] release=stable (weight 90): 100% of requests"),
        "{text}"
    );
    assert!(
        text.contains(
            "routes[1] release=canary (weight 10): 0% of requests, no connected connector"
        ),
        "{text}"
    );

    // With a canary connector the split is the declared one, and no route is flagged.
    let _canary_connector = ConnectorProcess::run(
        canary.token.as_deref().expect("token"),
        1,
        &["--hello-world"],
    );
    eventually(Duration::from_secs(20), "the canary connector", || async {
        (client.tunnel_connections(canary.id).await.ok()?.len() == 1).then_some(())
    })
    .await;
    let text = plan(&tf);
    assert!(!text.contains("Route has no connected connector"), "{text}");
    assert!(
        text.contains("routes[0] release=stable (weight 90): 90% of requests"),
        "{text}"
    );
    assert!(
        text.contains("routes[1] release=canary (weight 10): 10% of requests, 1 connection on tunnel \"canary\""),
        "{text}"
    );

    // Once the hostname exists, relabelling the canary tunnel (imported into the
    // configuration) would strand its route: the tunnel's plan says so, with the split that
    // would result.
    tf.apply().success();
    tf.write(
        "main.tf",
        &format!(
            r#"{}
import {{
  to = postern_tunnel.canary
  id = "{}"
}}

resource "postern_tunnel" "canary" {{
  name   = "canary"
  labels = {{ release = "beta" }}
}}
"#,
            main_tf(),
            canary.id
        ),
    );
    let text = plan(&tf);
    assert!(
        text.contains(
            "Warning: Label change leaves routes[1] (release=canary) of shop.example.com \
             without a connected connector"
        ),
        "{text}"
    );
    assert!(
        text.contains("routes[0] release=stable (weight 90): 100% of requests"),
        "{text}"
    );

    // The edge is down: plan (of a fresh workspace: nothing to refresh) still works, and says
    // the check was skipped.
    let fresh = Terraform::new(&edge);
    fresh.write("main.tf", &main_tf());
    fresh.init();
    edge.kill();
    let text = plan(&fresh);
    eprintln!("plan with the edge down:\n{text}");
    assert!(
        text.contains("Warning: Live check skipped: the edge is unreachable"),
        "{text}"
    );
    assert!(text.contains("Plan: 1 to add"), "{text}");
}
