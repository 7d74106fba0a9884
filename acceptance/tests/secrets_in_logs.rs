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
            hostname: HOST.into(),
            service: origin.url(),
            tunnel_id: Some(tunnel.id),
            routes: None,
            policy_ids: vec![policy.id],
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
