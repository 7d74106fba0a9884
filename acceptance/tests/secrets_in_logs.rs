//! Secrets never reach a log, at any level (issue 9, security properties): a real edge and a
//! real connector both log at `trace` (every crate, hyper, h2 and rustls included) through a
//! whole flow (API calls, a tunnel and its token, a single-use enrolment token, enrolment,
//! proxied requests with valid and invalid JWTs, deletion), and then every line of both logs is
//! searched for every secret the flow used.
//!
//! API tokens are compared in constant time: `edge/src/auth.rs` hashes both sides and compares
//! with `subtle` (unit-tested there); this file shows they are not logged.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use acceptance::fixture::{connections, create_tunnel};
use acceptance::visitor::edge_http_client;
use acceptance::{ConnectorOptions, ConnectorProcess, EdgeOptions, EdgeProcess, TestOrigin};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use postern_schema::api::{EnrollmentTokenSpec, HostnameSpec, Policy};
use postern_schema::token::TunnelToken;
use serde_json::json;

const HOST: &str = "secret.example.com";

/// Starts `postern tunnel run --token TOKEN` logging at trace.
fn connector_at_trace(token: &str) -> ConnectorProcess {
    ConnectorProcess::start(ConnectorOptions {
        args: ["tunnel", "run", "--token", token, "--connections", "1"]
            .iter()
            .map(|a| a.to_string())
            .collect(),
        env: vec![("POSTERN_LOG".into(), "trace".into())],
        ..ConnectorOptions::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_appears_in_any_log_at_trace_level() {
    let edge = EdgeProcess::start_with(EdgeOptions {
        env: vec![("POSTERN_LOG".into(), "trace".into())],
        ..EdgeOptions::default()
    });
    let client = edge.client();
    let api = edge.api();
    let origin = TestOrigin::start().await;

    // A JWT policy, a tunnel, its hostname.
    let hs256 = "hs256-secret-never-to-be-logged-5b1e";
    let response = api
        .post(
            "/v1/policies",
            &json!({"name": "signed-in", "jwt": {"issuer": "https://id.example.com/", "audiences": ["api"], "hs256_secret": hs256}}),
        )
        .await;
    assert_eq!(response.status, 201, "{}", response.text);
    let policy: Policy = serde_json::from_value(response.body).expect("policy");
    let tunnel = create_tunnel(&client, "secretive", &[]).await;
    client
        .create_hostname(&HostnameSpec {
            tls_passthrough: None,
            hostname: HOST.into(),
            service: origin.url(),
            tunnel_id: Some(tunnel.id),
            routes: None,
            policy_ids: vec![policy.id],
            paths: Vec::new(),
            origin: None,
        })
        .await
        .expect("hostname");
    let tunnel_token = tunnel.token.clone().expect("token");
    let again = api.get(&format!("/v1/tunnels/{}/token", tunnel.id)).await;
    assert_eq!(again.status, 200);
    let enrolment_secret = TunnelToken::parse(&tunnel_token)
        .expect("token")
        .secret
        .expose()
        .to_string();
    let one_time = client
        .create_enrollment_token(tunnel.id, &EnrollmentTokenSpec::default())
        .await
        .expect("enrolment token")
        .token;
    let one_time_secret = TunnelToken::parse(&one_time)
        .expect("token")
        .secret
        .expose()
        .to_string();
    // A wrong API token is refused, and not logged either.
    let wrong_token = "pst_wrong-token-never-to-be-logged-91c4";
    assert_eq!(
        api.with_token(Some(wrong_token))
            .get("/v1/tunnels")
            .await
            .status,
        401
    );

    // Two connectors enrol: one with the tunnel token, one with the single-use token.
    let mut first = connector_at_trace(&tunnel_token);
    let mut second = connector_at_trace(&one_time);
    connections(&client, tunnel.id, 2).await;

    // Visitors: a valid JWT, a forged one, none.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims =
        json!({"sub": "ada", "iss": "https://id.example.com/", "aud": "api", "exp": now + 600});
    let jwt = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(hs256.as_bytes()),
    )
    .expect("jwt");
    let forged = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(b"forged-key-never-to-be-logged-0d2a"),
    )
    .expect("jwt");
    let http = edge_http_client(&edge, HOST);
    let url = format!("http://{HOST}:{}/headers", edge.addrs.http.port());
    let mut statuses = Vec::new();
    for bearer in [Some(&jwt), Some(&forged), None, Some(&jwt)] {
        let mut request = http.get(&url);
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        statuses.push(request.send().await.expect("request").status().as_u16());
    }
    assert_eq!(statuses, [200, 401, 401, 200]);

    // Deletion: the connectors are told and stop.
    client
        .delete_hostname(HOST, None)
        .await
        .expect("delete hostname");
    client
        .delete_tunnel(tunnel.id, None)
        .await
        .expect("delete tunnel");
    for connector in [&mut first, &mut second] {
        connector
            .wait_exit(Duration::from_secs(10))
            .expect("the connector stops once its tunnel is deleted");
    }
    let key_pem = std::fs::read_to_string(
        first
            .state_dir()
            .join("tunnels")
            .join(tunnel.id.to_string())
            .join("key.pem"),
    )
    .unwrap_or_default();
    let key_body: String = key_pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();

    let logs = [
        ("edge", edge.log()),
        ("first connector", first.log()),
        ("second connector", second.log()),
    ];
    let jwt_signature = jwt.rsplit('.').next().unwrap_or_default().to_string();
    let secrets = [
        ("the admin API token", edge.admin_token.clone()),
        ("a wrong API token", wrong_token.to_string()),
        ("the tunnel token", tunnel_token.clone()),
        ("the enrolment secret", enrolment_secret),
        ("the single-use enrolment token", one_time.clone()),
        ("the single-use enrolment secret", one_time_secret),
        ("the visitor's JWT", jwt.clone()),
        ("the JWT's signature", jwt_signature),
        ("the forged JWT", forged.clone()),
        ("the HS256 secret", hs256.to_string()),
        ("the connector's private key", key_body),
    ];
    let mut found = Vec::new();
    for (what, secret) in &secrets {
        assert!(secret.len() >= 16, "{what} is too short to search for");
        for (name, log) in &logs {
            let hits = log.matches(secret.as_str()).count();
            if hits > 0 {
                found.push(format!("{what} appears {hits} times in the {name}'s log"));
            }
        }
    }
    let sizes: Vec<String> = logs
        .iter()
        .map(|(name, log)| format!("{name} {} lines", log.lines().count()))
        .collect();
    println!(
        "secrets in logs at trace: {} secrets searched in {} ({} occurrences found)",
        secrets.len(),
        sizes.join(", "),
        found.len()
    );
    // The logs really are at trace and about this flow, or the search proves little.
    for (name, log) in &logs {
        assert!(log.contains(&tunnel.id.to_string()), "{name}: no tunnel id");
    }
    assert!(logs[0].1.contains("TRACE"), "the edge did not log at trace");
    assert!(
        logs[1].1.contains("TRACE"),
        "the connector did not log at trace"
    );
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// The provider's own log at `TF_LOG_PROVIDER=trace` during an apply that makes API tokens, a
/// tunnel (with its token in state) and a policy with an HS256 secret (write-only), then plans
/// again: none of those secrets, nor the API token the provider was configured with, is in
/// it.
#[tokio::test]
async fn the_providers_trace_log_holds_no_secret() {
    let edge = EdgeProcess::start();
    let hs256 = "hs256-secret-never-in-the-provider-log-91d2";
    let mut tf = acceptance::Terraform::new(&edge);
    tf.write(
        "main.tf",
        &acceptance::provider::config(&format!(
            r#"
resource "postern_api_token" "ci" {{
  name = "ci"
  role = "editor"
}}

resource "postern_api_token" "dashboard" {{
  name = "dashboard"
  role = "viewer"
}}

resource "postern_tunnel" "web" {{
  name = "web"
}}

resource "postern_policy" "signed_in" {{
  name = "signed-in"
  jwt = {{
    issuer               = "https://id.example.com/"
    hs256_secret         = "{hs256}"
    hs256_secret_version = 1
  }}
}}
"#
        )),
    );
    tf.init();
    tf.set_env("TF_LOG_PROVIDER", "trace");
    let apply = tf.apply().success();
    let plan = tf.run(&["plan", "-no-color"]).success();
    let log = format!("{}\n{}", apply.stderr, plan.stderr);
    let provider_lines = log
        .lines()
        .filter(|l| l.contains("provider.terraform-provider-postern"))
        .count();
    assert!(provider_lines > 20, "the provider logged little:\n{log}");
    assert!(log.contains("[TRACE]"), "not at trace:\n{log}");

    let attr =
        |address: &str, name: &str| acceptance::provider::string_attr(&tf.resource(address), name);
    let tunnel_token = attr("postern_tunnel.web", "token");
    let enrolment_secret = TunnelToken::parse(&tunnel_token)
        .expect("token")
        .secret
        .expose()
        .to_string();
    let secrets = [
        ("the configured admin API token", edge.admin_token.clone()),
        (
            "the editor token made",
            attr("postern_api_token.ci", "secret"),
        ),
        (
            "the viewer token made",
            attr("postern_api_token.dashboard", "secret"),
        ),
        ("the tunnel token", tunnel_token),
        ("the tunnel's enrolment secret", enrolment_secret),
        ("the HS256 secret", hs256.to_string()),
    ];
    let found: Vec<String> = secrets
        .iter()
        .filter(|(_, secret)| {
            assert!(secret.len() >= 16);
            log.contains(secret.as_str())
        })
        .map(|(what, _)| format!("{what} is in the provider's trace log"))
        .collect();
    println!(
        "provider log at trace: {} lines, {} secrets searched, {} found",
        log.lines().count(),
        secrets.len(),
        found.len()
    );
    assert!(found.is_empty(), "{}", found.join("\n"));
    // Write-only: the HS256 secret is not in the state either.
    assert!(!tf.read("terraform.tfstate").contains(hs256));
}

/// What `ps` shows of a process: its command line, NUL-separated.
fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " "))
        .expect("/proc/<pid>/cmdline")
}

/// The edge started with `--admin-token-file` and `--store-file`, and a connector with
/// `postern tunnel run --token-file`: no secret is on either command line, and both work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_given_in_files_are_not_on_any_command_line() {
    let postgres = acceptance::PostgresServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let admin_token = "pst_admin-token-only-in-a-file-3c9a";
    let admin_file = dir.path().join("admin-token");
    std::fs::write(&admin_file, format!("{admin_token}\n")).expect("token file");
    // The store URL with a password: the test server trusts loopback, so any password does.
    let store_url = format!(
        "postgres://{}:db-password-only-in-a-file-77e1@127.0.0.1:{}/postgres",
        acceptance::postgres::SUPERUSER,
        postgres.port()
    );
    let store_file = dir.path().join("store-url");
    std::fs::write(&store_file, &store_url).expect("store file");
    let edge = EdgeProcess::start_with(EdgeOptions {
        args: vec![
            "--admin-token-file".into(),
            admin_file.display().to_string(),
            "--store-file".into(),
            store_file.display().to_string(),
        ],
        ..EdgeOptions::default()
    });
    assert_eq!(edge.admin_token, admin_token);
    let client = edge.client_with(admin_token);
    let tunnel = create_tunnel(&client, "from-files", &[]).await;
    let tunnel_token = tunnel.token.clone().expect("token");
    let token_file = dir.path().join("tunnel-token");
    std::fs::write(&token_file, &tunnel_token).expect("tunnel token file");
    let connector = ConnectorProcess::start(ConnectorOptions {
        args: vec![
            "tunnel".into(),
            "run".into(),
            "--token-file".into(),
            token_file.display().to_string(),
            "--connections".into(),
            "1".into(),
        ],
        ..ConnectorOptions::default()
    });
    connections(&client, tunnel.id, 1).await;

    let enrolment_secret = TunnelToken::parse(&tunnel_token)
        .expect("token")
        .secret
        .expose()
        .to_string();
    let secrets = [
        admin_token.to_string(),
        "db-password-only-in-a-file-77e1".to_string(),
        tunnel_token.clone(),
        enrolment_secret,
    ];
    for (name, pid) in [("edge", edge.pid()), ("connector", connector.pid())] {
        let line = cmdline(pid);
        assert!(line.contains("-file"), "{name}: {line}");
        for secret in &secrets {
            assert!(
                !line.contains(secret.as_str()),
                "{name}'s command line holds a secret: {line}"
            );
        }
        println!("{name}'s command line: {line}");
    }
}
