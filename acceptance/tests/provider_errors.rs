//! Failures the provider must report, never crash on: an unreachable edge, a wrong API
//! token, a conflicting change between plan and apply (412), an edge refusal in the
//! middle of an apply (what was created is kept), a leftover of an interrupted apply
//! (adopted when identical, otherwise "import it"), and the binary run by hand (also
//! covered in `provider/tests/handshake.rs`, `run_by_hand_explains_and_exits_1`).

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::Command;

use acceptance::fixture::{create_tunnel, tf_config};
use acceptance::provider::{Inventory, expect_clean_failure, squash, string_attr};
use acceptance::{EdgeProcess, Terraform, binary};
use postern_schema::api::{PolicyMode, PolicySpec};

/// The tunnel "web" labelled `release = <release>`.
fn tunnel_tf(release: &str) -> String {
    tf_config(
        &["tunnel/web_labelled.tf"],
        &[("labels", &format!(r#"{{ release = "{release}" }}"#))],
    )
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[test]
fn unreachable_edge_and_wrong_token_are_diagnostics() {
    let edge = EdgeProcess::start();
    let mut tf = Terraform::new(&edge);
    tf.write("main.tf", &tunnel_tf("stable"));
    tf.init();

    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    tf.set_env("POSTERN_ENDPOINT", &endpoint);
    let run = tf.apply();
    expect_clean_failure(&run);
    let text = squash(&run.all());
    assert!(text.contains("Cannot reach the Postern edge"), "{text}");
    assert!(text.contains(&endpoint), "the endpoint is named: {text}");
    assert!(
        text.contains("Check that postern-edge is running"),
        "{text}"
    );

    tf.set_env("POSTERN_ENDPOINT", &edge.api_url());
    tf.set_env("POSTERN_API_TOKEN", "not-the-token");
    let run = tf.apply();
    expect_clean_failure(&run);
    let text = squash(&run.all());
    assert!(
        text.contains("rejected the API token") && text.contains("POSTERN_API_TOKEN"),
        "{text}"
    );
}

#[tokio::test]
async fn a_change_between_plan_and_apply_is_refused_with_advice() {
    let edge = EdgeProcess::start();
    let client = edge.client();
    let tf = Terraform::new(&edge);
    tf.write("main.tf", &tunnel_tf("stable"));
    tf.init();
    tf.apply().success();

    // Plan a label change and save the plan.
    tf.write("main.tf", &tunnel_tf("canary"));
    let plan = tf.plan(&[]);
    assert_eq!(plan.actions("postern_tunnel.web"), ["update"]);

    // Someone else changes the tunnel before the saved plan is applied.
    let tunnel = Inventory::read(&client).await.tunnel("web").clone();
    let mut spec = tunnel.spec.clone();
    spec.labels.insert("owner".into(), "someone-else".into());
    client
        .replace_tunnel(tunnel.id, &spec, Some(tunnel.version))
        .await
        .expect("concurrent change");

    let run = tf.run(&["apply", "-no-color", "tfplan"]);
    expect_clean_failure(&run);
    let text = squash(&run.all());
    assert!(text.contains("changed outside Terraform"), "{text}");
    assert!(text.contains("terraform refresh"), "{text}");
    assert!(text.contains("re-plan"), "{text}");
    // Nothing was overwritten.
    let now = Inventory::read(&client).await;
    assert_eq!(now.tunnel("web").spec, spec);

    // Planning again sees the change and applies cleanly.
    let plan = tf.plan(&[]);
    assert_eq!(plan.actions("postern_tunnel.web"), ["update"]);
    tf.run(&["apply", "-no-color", "tfplan"]).success();
    let now = Inventory::read(&client).await;
    assert_eq!(
        now.tunnel("web").spec.labels,
        BTreeMap::from([("release".to_owned(), "canary".to_owned())])
    );
    assert_eq!(tf.plan_exit_code().code, 0);
}

#[tokio::test]
async fn a_failed_apply_keeps_what_it_created() {
    let edge = EdgeProcess::start();
    let client = edge.client();
    let tf = Terraform::new(&edge);
    // Valid offline, refused by the edge: the hostname lies outside its zones.
    let main_tf = |host: &str| {
        tf_config(
            &["tunnel/web_labelled.tf", "hostname/app.tf"],
            &[
                ("labels", r#"{ release = "stable" }"#),
                ("host", host),
                ("service", "http://127.0.0.1:4000"),
            ],
        )
    };
    tf.write("main.tf", &main_tf("app.elsewhere.test"));
    tf.init();
    let run = tf.apply();
    expect_clean_failure(&run);
    let text = squash(&run.all());
    assert!(text.contains("The edge rejected the hostname"), "{text}");
    assert!(text.contains("(attribute hostname)"), "{text}");
    assert!(
        text.contains(r#"hostname = "app.elsewhere.test""#),
        "{text}"
    );

    // The tunnel was created and Terraform knows it.
    let state = tf.run(&["state", "list"]).success();
    assert_eq!(state.stdout.trim(), "postern_tunnel.web", "{}", state.all());
    let now = Inventory::read(&client).await;
    assert_eq!(
        string_attr(&tf.resource("postern_tunnel.web"), "id"),
        now.tunnel("web").id.to_string()
    );
    assert!(now.hostnames.is_empty());

    // Fixed, the next apply creates only the hostname.
    tf.write("main.tf", &main_tf("app.example.com"));
    let plan = tf.plan(&[]);
    assert_eq!(
        plan.changes(),
        [("postern_hostname.app".to_owned(), vec!["create".to_owned()])]
    );
    tf.run(&["apply", "-no-color", "tfplan"]).success();
    assert_eq!(Inventory::read(&client).await.tunnels.len(), 1);
}

#[tokio::test]
async fn leftovers_are_adopted_only_when_identical() {
    let edge = EdgeProcess::start();
    let client = edge.client();
    // What an interrupted apply left behind: exactly the planned tunnel.
    let leftover = create_tunnel(&client, "web", &[("release", "stable")]).await;
    // And a policy of the same name as the configuration's, but different.
    let other = client
        .create_policy(&PolicySpec {
            name: "api".into(),
            mode: PolicyMode::Report,
            allow_ips: vec![],
            deny_ips: vec![],
            allow_methods: vec![],
            allow_paths: vec![],
            rate_limit: None,
            jwt: None,
            rules: None,
            basic_auth: None,
            oidc: None,
        })
        .await
        .expect("policy");

    let tf = Terraform::new(&edge);
    tf.write("main.tf", &tunnel_tf("stable"));
    tf.init();
    let run = tf.apply().success();
    let text = squash(&run.all());
    assert!(text.contains("Adopted an existing tunnel"), "{text}");
    let state = tf.resource("postern_tunnel.web");
    assert_eq!(string_attr(&state, "id"), leftover.id.to_string());
    assert_eq!(
        Some(string_attr(&state, "token")),
        leftover.token,
        "the adopted tunnel's token"
    );
    assert_eq!(Inventory::read(&client).await.tunnels.len(), 1);
    assert_eq!(tf.plan_exit_code().code, 0);

    tf.write(
        "main.tf",
        &format!(
            "{}\nresource \"postern_policy\" \"api\" {{\n  name = \"api\"\n}}\n",
            tunnel_tf("stable")
        ),
    );
    let run = tf.apply();
    expect_clean_failure(&run);
    let text = squash(&run.all());
    assert!(
        text.contains("A policy with this name already exists"),
        "{text}"
    );
    assert!(
        text.contains(&format!("terraform import <address> {}", other.id)),
        "{text}"
    );
}

#[test]
fn the_binary_run_by_hand_explains_itself_and_exits_1() {
    let output = Command::new(binary("terraform-provider-postern"))
        .env_remove("TF_PLUGIN_MAGIC_COOKIE")
        .output()
        .expect("run the provider");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("This binary is a plugin. These are not meant to be executed directly."),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
}
