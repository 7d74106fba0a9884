//! `postern_api_token` (must-show 3): a token made by one configuration's `terraform apply`
//! works as another configuration's `api_token` (an editor token writes tunnels, and may not
//! make tokens); once the first configuration destroys it, the second one's next plan fails
//! with the edge's 401. Plus: the token plans clean, its secret is sensitive, and an import
//! has no secret.

use acceptance::provider::{config, string_attr};
use acceptance::{EdgeProcess, Terraform};

const TOKEN: &str = r#"
resource "postern_api_token" "ci" {
  name = "ci-deploy"
  role = "editor"
}

output "ci_token" {
  value     = postern_api_token.ci.secret
  sensitive = true
}
"#;

const TUNNEL: &str = r#"
resource "postern_tunnel" "web" {
  name = "web"
}
"#;

#[tokio::test]
async fn a_token_made_by_one_configuration_drives_another_until_it_is_destroyed() {
    let edge = EdgeProcess::start();
    let admin_tf = Terraform::new(&edge);
    admin_tf.write("main.tf", &config(TOKEN));
    admin_tf.init();
    let applied = admin_tf.apply().success();
    let secret = admin_tf.output_raw("ci_token");
    assert!(secret.starts_with("pst_"), "{secret}");
    assert!(
        !applied.all().contains(&secret),
        "the secret is sensitive in the output"
    );
    admin_tf.plan(&[]).expect_empty();
    let state = admin_tf.resource("postern_api_token.ci");
    let id = string_attr(&state, "id");
    let tokens = edge.client().list_api_tokens().await.expect("tokens");
    assert!(
        tokens
            .iter()
            .any(|t| t.id == id && t.role.as_str() == "editor" && t.secret.is_none())
    );

    // The second configuration runs with the editor token only.
    let mut ci_tf = Terraform::new(&edge);
    ci_tf.set_env("POSTERN_API_TOKEN", &secret);
    ci_tf.write("main.tf", &config(TUNNEL));
    ci_tf.init();
    ci_tf.apply().success();
    ci_tf.plan(&[]).expect_empty();
    assert_eq!(
        edge.client()
            .list_tunnels(None)
            .await
            .expect("tunnels")
            .len(),
        1
    );

    // An editor may not make tokens: the diagnostic says which role would.
    ci_tf.write("main.tf", &config(&format!("{TUNNEL}\n{TOKEN}")));
    let refused = ci_tf.run(&["apply", "-auto-approve", "-no-color"]);
    assert_ne!(refused.code, 0);
    let text = refused.all().replace('\n', " ");
    assert!(
        text.contains("403") && text.contains("admin token"),
        "{text}"
    );
    ci_tf.write("main.tf", &config(TUNNEL));

    // Destroyed by the first configuration: revoked, and the second one's plan fails.
    admin_tf
        .run(&["destroy", "-auto-approve", "-no-color"])
        .success();
    let after = ci_tf.run(&["plan", "-no-color"]);
    assert_ne!(after.code, 0, "{}", after.all());
    let text = after.all().replace('\n', " ");
    assert!(
        text.contains("rejected the API token") && text.contains("401"),
        "{text}"
    );
}

#[tokio::test]
async fn an_imported_token_has_no_secret() {
    let edge = EdgeProcess::start();
    let made = edge
        .client()
        .create_api_token(&postern_schema::api::ApiTokenSpec {
            name: "dashboard".into(),
            role: postern_schema::api::Role::Viewer,
            expires_at: Some("2099-01-01T00:00:00Z".into()),
        })
        .await
        .expect("token");
    let tf = Terraform::new(&edge);
    tf.write(
        "main.tf",
        &config(&format!(
            r#"
import {{
  to = postern_api_token.dashboard
  id = "{}"
}}

resource "postern_api_token" "dashboard" {{
  name       = "dashboard"
  role       = "viewer"
  expires_at = "2099-01-01T00:00:00Z"
}}
"#,
            made.id
        )),
    );
    tf.init();
    tf.apply().success();
    let state = tf.resource("postern_api_token.dashboard");
    assert_eq!(state["secret"], serde_json::Value::Null);
    assert_eq!(string_attr(&state, "role"), "viewer");
    tf.plan(&[]).expect_empty();
}
