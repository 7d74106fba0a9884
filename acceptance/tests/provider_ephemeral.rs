//! No secrets in state (issue 11, must show 2): a `postern_tunnel` with `store_token = false`
//! and a `postern_enrollment_token` ephemeral resource whose token a `local-exec` provisioner
//! hands to the connector's host. A connector enrols with it; neither `terraform.tfstate` nor
//! `terraform show -json` of a plan (made while the ephemeral resource was open) holds any
//! connector token; a second enrolment with the same token is refused.

use std::time::Duration;

use acceptance::provider::{config, tunnel_id};
use acceptance::{ConnectorProcess, EdgeProcess, Terraform, eventually};
use postern_schema::token::TunnelToken;

/// Every connector token starts with this.
const TOKEN_PREFIX: &str = "postern1.";

fn main_tf(round: u32) -> String {
    config(&format!(
        r#"
resource "postern_tunnel" "web" {{
  name        = "web"
  store_token = false
}}

ephemeral "postern_enrollment_token" "web" {{
  tunnel_id = postern_tunnel.web.id
  ttl       = "5m"
}}

resource "terraform_data" "enrolment" {{
  triggers_replace = [postern_tunnel.web.id, {round}]

  provisioner "local-exec" {{
    command = "umask 077 && printf '%s' \"$POSTERN_TOKEN\" > enrolment-token"
    environment = {{
      POSTERN_TOKEN = ephemeral.postern_enrollment_token.web.token
    }}
  }}
}}
"#
    ))
}

/// Panics if `text` (named `what`) holds `token`, its secret, or any connector token.
fn assert_no_token(what: &str, text: &str, token: &str) {
    let secret = TunnelToken::parse(token).expect("a connector token");
    assert!(!text.contains(token), "{what} holds the enrolment token");
    assert!(
        !text.contains(secret.secret.expose()),
        "{what} holds the enrolment secret"
    );
    assert!(
        !text.contains(TOKEN_PREFIX),
        "{what} holds a connector token:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ephemeral_token_enrols_once_and_is_never_written_down() {
    let edge = EdgeProcess::start();
    let client = edge.client();
    let tf = Terraform::new(&edge);
    tf.write("main.tf", &main_tf(1));
    tf.init();
    let apply = tf.apply().success();
    let first_token = tf.read("enrolment-token");
    assert!(first_token.starts_with(TOKEN_PREFIX), "{}", apply.all());
    let tunnel = tunnel_id(&tf, "postern_tunnel.web");
    let parsed = TunnelToken::parse(&first_token).expect("a connector token");
    assert_eq!(parsed.tunnel_id, tunnel);
    assert!(
        tf.resource("postern_tunnel.web")["token"].is_null(),
        "store_token = false keeps the long-lived token out of state"
    );

    // A plan made with the tunnel in place opens the ephemeral resource (it mints a token at
    // plan time too) and replaces the hand-over; applying it hands over a fresh token.
    tf.write("main.tf", &main_tf(2));
    let plan = tf.plan(&[]);
    assert_eq!(
        plan.actions("terraform_data.enrolment"),
        ["delete", "create"]
    );
    let plan_json = tf.run(&["show", "-json", "tfplan"]).success().stdout;
    let apply = tf.run(&["apply", "-no-color", "tfplan"]).success();
    let token = tf.read("enrolment-token");
    assert!(token.starts_with(TOKEN_PREFIX), "{}", apply.all());
    assert_ne!(token, first_token, "every run mints a new token");

    // Not in the state file, nor in the saved plan, nor in anything terraform printed.
    let state = tf.read("terraform.tfstate");
    assert!(state.contains(&tunnel.to_string()), "{state}");
    for (what, text) in [
        ("terraform.tfstate", state.as_str()),
        ("terraform show -json tfplan", plan_json.as_str()),
        ("terraform plan", plan.text.as_str()),
        ("terraform apply", &apply.all()),
    ] {
        assert_no_token(what, text, &token);
        assert_no_token(what, text, &first_token);
    }
    let show = tf.run(&["show", "-json"]).success();
    assert_no_token("terraform show -json", &show.stdout, &token);
    let minted = edge
        .log()
        .matches("single-use enrolment token minted")
        .count();
    assert_eq!(
        minted, 3,
        "the first apply, the plan and the second apply each opened the ephemeral resource"
    );

    // The token enrols a connector, once.
    let _connector = ConnectorProcess::run(&token, 1, &["--hello-world"]);
    eventually(
        Duration::from_secs(20),
        "the enrolled connector",
        || async { (client.tunnel_connections(tunnel).await.ok()?.len() == 1).then_some(()) },
    )
    .await;
    let mut again = ConnectorProcess::run(&token, 1, &["--hello-world"]);
    let status = again.wait_exit(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| !s.success()),
        "a used token must not enrol a second connector:\n{}",
        again.log()
    );
    assert!(again.log().contains("already used"), "{}", again.log());
    assert_eq!(
        client
            .tunnel_connections(tunnel)
            .await
            .expect("connections")
            .len(),
        1
    );
}
