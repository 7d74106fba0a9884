//! `postern_tcp_service` through the real `terraform`: created with a port the edge picks
//! (known in state, and the plan after apply is empty), imported by id to the same state,
//! updated in place (service, policies, a port of its own, `listen` following it), and
//! destroyed (gone from the edge).

use acceptance::provider::{config, string_attr};
use acceptance::{EdgeOptions, EdgeProcess, Terraform};
use postern_schema::ids::TcpServiceId;

fn main_tf(service: &str, extra: &str) -> String {
    config(&format!(
        r#"
resource "postern_tunnel" "host" {{
  name = "host"
}}

resource "postern_policy" "office" {{
  name      = "office"
  allow_ips = ["127.0.0.0/8"]
}}

resource "postern_tcp_service" "ssh" {{
  name      = "ssh"
  service   = "{service}"
  tunnel_id = postern_tunnel.host.id
  {extra}
}}
"#
    ))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[tokio::test]
async fn a_tcp_service_is_created_imported_updated_and_destroyed() {
    let edge = EdgeProcess::start_with(EdgeOptions {
        args: vec!["--tcp-ports".into(), "0".into()],
        ..EdgeOptions::default()
    });
    let tf = Terraform::new(&edge);
    tf.write("main.tf", &main_tf("tcp://127.0.0.1:22", ""));
    tf.init();

    // 1. Create.
    let plan = tf.plan(&[]);
    assert_eq!(plan.actions("postern_tcp_service.ssh"), ["create"]);
    tf.run(&["apply", "-no-color", "tfplan"]).success();
    let state = tf.resource("postern_tcp_service.ssh");
    let id: TcpServiceId = string_attr(&state, "id").parse().expect("a UUID");
    let on_edge = edge.client().tcp_service(id).await.expect("on the edge");
    let port = on_edge.spec.listen_port.expect("a port");
    assert_eq!(state["listen_port"], serde_json::json!(port));
    assert_eq!(string_attr(&state, "listen"), format!("127.0.0.1:{port}"));

    // 2. Nothing to do after apply.
    tf.plan(&[]).expect_empty();

    // 3. Import by id gives the same state.
    let tunnel_id = string_attr(&tf.resource("postern_tunnel.host"), "id");
    let imported = Terraform::new(&edge);
    imported.write(
        "main.tf",
        &config(&format!(
            r#"
import {{
  to = postern_tcp_service.ssh
  id = "{id}"
}}

resource "postern_tcp_service" "ssh" {{
  name      = "ssh"
  service   = "tcp://127.0.0.1:22"
  tunnel_id = "{tunnel_id}"
}}
"#
        )),
    );
    imported.init();
    let plan = imported.plan(&[]);
    assert_eq!(plan.actions("postern_tcp_service.ssh"), ["no-op"]);
    imported.run(&["apply", "-no-color", "tfplan"]).success();
    let after_import = imported.resource("postern_tcp_service.ssh");
    for attribute in [
        "id",
        "name",
        "service",
        "listen_port",
        "listen",
        "policy_ids",
    ] {
        assert_eq!(after_import[attribute], state[attribute], "{attribute}");
    }

    // 4. Update in place: another origin, a policy, a port of its own.
    let new_port = free_port();
    tf.write(
        "main.tf",
        &main_tf(
            "tcp://127.0.0.1:2222",
            &format!("policy_ids = [postern_policy.office.id]\n  listen_port = {new_port}"),
        ),
    );
    let plan = tf.plan(&[]);
    assert_eq!(plan.actions("postern_tcp_service.ssh"), ["update"]);
    tf.run(&["apply", "-no-color", "tfplan"]).success();
    let state = tf.resource("postern_tcp_service.ssh");
    assert_eq!(string_attr(&state, "id"), id.to_string());
    assert_eq!(
        string_attr(&state, "listen"),
        format!("127.0.0.1:{new_port}")
    );
    let on_edge = edge.client().tcp_service(id).await.expect("on the edge");
    assert_eq!(on_edge.spec.service, "tcp://127.0.0.1:2222");
    assert_eq!(on_edge.spec.listen_port, Some(new_port));
    assert_eq!(on_edge.spec.policy_ids.len(), 1);
    tf.plan(&[]).expect_empty();

    // 5. Destroy: gone from the edge.
    tf.run(&["destroy", "-auto-approve", "-no-color"]).success();
    let gone = edge.client().tcp_service(id).await;
    assert!(
        gone.as_ref().is_err_and(|e| e.is_not_found()),
        "still there: {gone:?}"
    );
}
