//! Policies and hostname origins are kept exactly as written: `jwt` lists left unset stay
//! null and empty ones stay `[]`, the HS256 secret is sensitive, fractional rates and
//! their default burst are planned exactly, and `origin = {}` is not `null`. Each plans
//! clean after apply.

use acceptance::provider::{Inventory, config};
use acceptance::{EdgeProcess, Terraform};
use serde_json::json;

const SECRET: &str = "0123456789abcdef-secret";

fn main_tf() -> String {
    config(&format!(
        r#"
resource "postern_policy" "jwt_empty" {{
  name = "jwt-empty"
  jwt = {{
    hs256_secret = "{SECRET}"
    audiences    = []
  }}
}}

resource "postern_policy" "jwt_unset" {{
  name = "jwt-unset"
  mode = "report"
  jwt = {{
    hs256_secret = "{SECRET}"
    issuer       = "https://issuer.example.com"
  }}
  rate_limit = {{ requests_per_second = 0.1 }}
}}

resource "postern_policy" "explicit" {{
  name          = "explicit"
  deny_ips      = ["192.0.2.0/24"]
  allow_methods = ["POST", "GET", "DELETE"]
  allow_paths   = ["/api/*/items", "/static/**"]
  rate_limit    = {{ requests_per_second = 7.5, burst = 20, per = "hostname" }}
}}

resource "postern_tunnel" "web" {{
  name = "web"
}}

resource "postern_hostname" "bare_origin" {{
  hostname  = "bare.example.com"
  service   = "https://127.0.0.1:8443"
  tunnel_id = postern_tunnel.web.id
  origin    = {{}}
}}

resource "postern_hostname" "origin" {{
  hostname  = "origin.example.com"
  service   = "https://127.0.0.1:8443"
  tunnel_id = postern_tunnel.web.id
  policy_ids = [
    postern_policy.explicit.id,
    postern_policy.jwt_unset.id,
    postern_policy.jwt_empty.id,
  ]
  origin = {{
    no_tls_verify      = true
    origin_server_name = "internal.test"
    http_host_header   = "internal.test:8443"
  }}
}}
"#
    ))
}

#[tokio::test]
async fn policies_and_origins_are_kept_exactly_as_written() {
    let edge = EdgeProcess::start();
    let tf = Terraform::new(&edge);
    tf.write("main.tf", &main_tf());
    tf.init();

    let plan = tf.plan(&[]);
    assert!(!plan.text.contains(SECRET), "{}", plan.text);
    // The first spellings of the origin settings still work, with a warning naming the new.
    assert!(
        plan.text.contains("Warning: Deprecated attribute")
            && plan.text.contains("is deprecated: use origin."),
        "{}",
        plan.text
    );
    let unset = plan.json["planned_values"]["root_module"]["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["address"] == "postern_policy.jwt_unset")
        .map(|r| r["values"].clone())
        .unwrap_or_default();
    // The default burst is planned, not left unknown.
    assert_eq!(
        unset["rate_limit"],
        json!({"requests_per_second": 0.1, "burst": 1, "per": "client_ip"})
    );
    let apply = tf.run(&["apply", "-no-color", "tfplan"]).success();
    assert!(!apply.all().contains(SECRET));

    let state = |address: &str| tf.resource(address);
    assert_eq!(
        state("postern_policy.jwt_empty")["jwt"]["audiences"],
        json!([])
    );
    assert_eq!(
        state("postern_policy.jwt_empty")["jwt"]["public_keys_pem"],
        json!(null)
    );
    assert_eq!(
        state("postern_policy.jwt_unset")["jwt"]["audiences"],
        json!(null)
    );
    assert_eq!(
        state("postern_hostname.bare_origin")["origin"],
        json!({
            "no_tls_verify": null,
            "http_host_header": null,
            "origin_server_name": null,
            "insecure_skip_verify": null,
            "host_header": null,
            "server_name": null,
            "health_check": null,
            "connect_timeout_ms": null,
            "http2": null,
            "ca_cert_pem": null,
        })
    );
    let show = tf.run(&["show", "-no-color"]).success();
    assert!(!show.stdout.contains(SECRET), "{}", show.stdout);

    let edge_now = Inventory::read(&edge.client()).await;
    let explicit = edge_now.policy("explicit");
    let rate = explicit.spec.rate_limit.clone().expect("rate");
    assert_eq!(rate.burst, Some(20));
    assert_eq!(
        edge_now.hostname("origin.example.com").spec.policy_ids,
        [
            explicit.id,
            edge_now.policy("jwt-unset").id,
            edge_now.policy("jwt-empty").id
        ]
    );
    let origin = edge_now
        .hostname("origin.example.com")
        .spec
        .origin
        .clone()
        .expect("origin");
    assert_eq!(origin.no_tls_verify, Some(true));
    assert_eq!(
        origin.http_host_header.as_deref(),
        Some("internal.test:8443")
    );

    let clean = tf.plan_exit_code();
    assert_eq!(clean.code, 0, "{}", clean.all());
}

fn jwt_tf(secret: &str, version: u32) -> String {
    config(&format!(
        r#"
resource "postern_policy" "signed" {{
  name = "signed"
  jwt = {{
    issuer               = "https://issuer.example.com"
    hs256_secret         = "{secret}"
    hs256_secret_version = {version}
  }}
}}
"#
    ))
}

/// `jwt.hs256_secret` is write-only: sent to the edge, never in state or plan, never read back;
/// changing it alone plans nothing, and changing `hs256_secret_version` sends the new one.
#[tokio::test]
async fn the_hs256_secret_is_write_only_and_its_version_sends_a_new_one() {
    let edge = EdgeProcess::start();
    let tf = Terraform::new(&edge);
    let (first, second) = (
        "first-secret-of-enough-length",
        "second-secret-of-enough-length",
    );
    tf.write("main.tf", &jwt_tf(first, 1));
    tf.init();
    tf.apply().success();
    let state = tf.read("terraform.tfstate");
    assert!(
        !state.contains(first),
        "the secret is in the state:\n{state}"
    );
    let values = tf.resource("postern_policy.signed");
    assert_eq!(values["jwt"]["hs256_secret"], serde_json::Value::Null);
    assert_eq!(values["jwt"]["hs256_secret_version"], json!(1));
    tf.plan(&[]).expect_empty();
    let policy = edge.api().get("/v1/policies").await;
    assert!(!policy.text.contains(first), "{}", policy.text);

    // Terraform cannot see a write-only value change: the secret alone plans nothing.
    tf.write("main.tf", &jwt_tf(second, 1));
    tf.plan(&[]).expect_empty();
    // Its version can be seen: an update in place that sends the new secret.
    tf.write("main.tf", &jwt_tf(second, 2));
    let plan = tf.plan(&[]);
    assert_eq!(plan.actions("postern_policy.signed"), ["update"]);
    assert!(!plan.text.contains(second));
    tf.apply().success();
    assert!(!tf.read("terraform.tfstate").contains(second));
    tf.plan(&[]).expect_empty();
}
