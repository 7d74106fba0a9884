//! Bringing objects made through the API under Terraform: `terraform import` (tunnel and
//! policy by id, hostname by name), `import {}` blocks, and
//! `terraform plan -generate-config-out`, each followed by a clean plan.

use std::collections::BTreeMap;

use acceptance::fixture::create_tunnel;
use acceptance::provider::{config, string_attr};
use acceptance::{EdgeProcess, Terraform};
use postern_schema::api::{HostnameSpec, OriginSettings, PolicyMode, PolicySpec, RateLimit, Route};
use postern_schema::client::Client;
use postern_schema::ids::{PolicyId, TunnelId};

/// Made through the API: a labelled tunnel, a policy, a hostname on the tunnel and one
/// with weighted routes.
struct Objects {
    tunnel: TunnelId,
    token: String,
    policy: PolicyId,
}

async fn make_objects(client: &Client) -> Objects {
    let tunnel = create_tunnel(client, "web", &[("release", "stable")]).await;
    let policy = client
        .create_policy(&PolicySpec {
            name: "api".into(),
            mode: PolicyMode::Report,
            allow_ips: vec!["10.0.0.0/8".into()],
            deny_ips: vec![],
            allow_methods: vec!["GET".into()],
            allow_paths: vec!["/api/**".into()],
            rate_limit: Some(RateLimit {
                requests_per_second: 0.5,
                burst: None,
                per: None,
            }),
            jwt: None,
            rules: None,
            basic_auth: None,
            oidc: None,
        })
        .await
        .expect("policy");
    client
        .create_hostname(&HostnameSpec {
            tls_passthrough: None,
            hostname: "app.example.com".into(),
            service: "http://127.0.0.1:4000".into(),
            tunnel_id: Some(tunnel.id),
            routes: None,
            policy_ids: vec![policy.id],
            paths: Vec::new(),
            origin: Some(OriginSettings {
                connect_timeout_ms: Some(700),
                ..OriginSettings::default()
            }),
        })
        .await
        .expect("hostname");
    client
        .create_hostname(&HostnameSpec {
            tls_passthrough: None,
            hostname: "canary.example.com".into(),
            service: "http_status:204".into(),
            tunnel_id: None,
            routes: Some(vec![Route {
                selector: BTreeMap::from([("release".into(), "stable".into())]),
                weight: 100,
                max_error_rate: None,
            }]),
            policy_ids: vec![],
            paths: Vec::new(),
            origin: None,
        })
        .await
        .expect("hostname");
    Objects {
        tunnel: tunnel.id,
        token: tunnel.token.expect("token on create"),
        policy: policy.id,
    }
}

/// The configuration that describes [`make_objects`] exactly.
fn resources_tf() -> String {
    config(
        r#"
resource "postern_tunnel" "web" {
  name   = "web"
  labels = { release = "stable" }
}

resource "postern_policy" "api" {
  name          = "api"
  mode          = "report"
  allow_ips     = ["10.0.0.0/8"]
  allow_methods = ["GET"]
  allow_paths   = ["/api/**"]
  rate_limit    = { requests_per_second = 0.5 }
}

resource "postern_hostname" "app" {
  hostname   = "app.example.com"
  service    = "http://127.0.0.1:4000"
  tunnel_id  = postern_tunnel.web.id
  policy_ids = [postern_policy.api.id]
  origin     = { connect_timeout_ms = 700 }
}

resource "postern_hostname" "canary" {
  hostname = "canary.example.com"
  service  = "http_status:204"
  routes   = [{ selector = { release = "stable" }, weight = 100 }]
}
"#,
    )
}

/// Plans the four imports and nothing else, then applies that plan.
fn apply_the_four_imports(tf: &Terraform) {
    let plan = tf.plan(&[]);
    assert!(plan.changes().is_empty(), "{}", plan.text);
    assert!(
        plan.text
            .contains("Plan: 4 to import, 0 to add, 0 to change, 0 to destroy."),
        "{}",
        plan.text
    );
    tf.run(&["apply", "-no-color", "tfplan"]).success();
}

fn import_blocks(objects: &Objects) -> String {
    format!(
        r#"
import {{
  to = postern_tunnel.web
  id = "{tunnel}"
}}
import {{
  to = postern_policy.api
  id = "{policy}"
}}
import {{
  to = postern_hostname.app
  id = "app.example.com"
}}
import {{
  to = postern_hostname.canary
  id = "canary.example.com"
}}
"#,
        tunnel = objects.tunnel,
        policy = objects.policy
    )
}

#[tokio::test]
async fn terraform_import_brings_objects_under_management() {
    let edge = EdgeProcess::start();
    let objects = make_objects(&edge.client()).await;
    let tf = Terraform::new(&edge);
    tf.write("main.tf", &resources_tf());
    tf.init();

    let tunnel = objects.tunnel.to_string();
    let policy = objects.policy.to_string();
    for (address, id) in [
        ("postern_tunnel.web", tunnel.as_str()),
        ("postern_policy.api", policy.as_str()),
        ("postern_hostname.app", "app.example.com"),
        ("postern_hostname.canary", "canary.example.com"),
    ] {
        let run = tf.run(&["import", "-no-color", address, id]);
        assert_eq!(run.code, 0, "import {address} {id}:\n{}", run.all());
        assert!(run.stdout.contains("Import successful"), "{}", run.all());
    }
    // An imported tunnel has its token (fetched with GET /v1/tunnels/{id}/token).
    let state = tf.resource("postern_tunnel.web");
    assert_eq!(string_attr(&state, "token"), objects.token);
    assert_eq!(
        tf.resource("postern_policy.api")["rate_limit"]["burst"],
        serde_json::json!(1)
    );

    let clean = tf.plan_exit_code();
    assert_eq!(clean.code, 0, "{}", clean.all());

    // Importing what does not exist fails cleanly.
    tf.write(
        "extra.tf",
        r#"resource "postern_tunnel" "ghost" { name = "ghost" }"#,
    );
    let run = tf.run(&[
        "import",
        "-no-color",
        "postern_tunnel.ghost",
        "00000000-0000-4000-8000-000000000000",
    ]);
    assert_ne!(run.code, 0);
    assert!(
        run.all()
            .contains("Cannot import non-existent remote object"),
        "{}",
        run.all()
    );
    let run = tf.run(&["import", "-no-color", "postern_tunnel.ghost", "not-a-uuid"]);
    assert_ne!(run.code, 0);
    assert!(run.all().contains("Invalid tunnel id"), "{}", run.all());
}

#[tokio::test]
async fn import_blocks_bring_objects_under_management() {
    let edge = EdgeProcess::start();
    let objects = make_objects(&edge.client()).await;
    let tf = Terraform::new(&edge);
    tf.write("main.tf", &resources_tf());
    tf.write("imports.tf", &import_blocks(&objects));
    tf.init();

    apply_the_four_imports(&tf);
    assert_eq!(
        string_attr(&tf.resource("postern_tunnel.web"), "token"),
        objects.token
    );
    let clean = tf.plan_exit_code();
    assert_eq!(clean.code, 0, "{}", clean.all());
}

#[tokio::test]
async fn generated_configuration_plans_clean() {
    let edge = EdgeProcess::start();
    let objects = make_objects(&edge.client()).await;
    let tf = Terraform::new(&edge);
    tf.write("main.tf", &config(&import_blocks(&objects)));
    tf.init();

    let run = tf.run(&["plan", "-no-color", "-generate-config-out=x.tf"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let generated = tf.read("x.tf");
    for needle in [
        r#"resource "postern_tunnel" "web""#,
        r#"resource "postern_policy" "api""#,
        r#"resource "postern_hostname" "app""#,
        r#"resource "postern_hostname" "canary""#,
    ] {
        assert!(generated.contains(needle), "{needle} missing:\n{generated}");
    }
    // Computed-only attributes are left out; the sensitive token is never written.
    assert!(!generated.contains(&objects.token), "{generated}");
    assert!(!generated.contains("created_at"), "{generated}");

    // The generated configuration plans nothing but the imports, then nothing at all.
    apply_the_four_imports(&tf);
    let clean = tf.plan_exit_code();
    assert_eq!(clean.code, 0, "{}", clean.all());
}
