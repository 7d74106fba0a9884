//! Single-use enrolment tokens (issue 11, "no secrets in state", the edge half): a token minted
//! through the API enrols one connector once; a second enrolment with it is refused; the
//! enrolled connector keeps its certificate across a restart; an unused token expires.

use std::time::Duration;

use acceptance::fixture::{connections_within, create_tunnel};
use acceptance::{ConnectorOptions, ConnectorProcess, EdgeProcess, eventually};
use postern_schema::api::EnrollmentTokenSpec;
use postern_schema::token::TunnelToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_use_token_enrols_exactly_one_connector() {
    let edge = EdgeProcess::start();
    let client = edge.client();
    let tunnel = create_tunnel(&client, "once", &[]).await;
    let minted = client
        .create_enrollment_token(
            tunnel.id,
            &EnrollmentTokenSpec {
                ttl_seconds: Some(120),
            },
        )
        .await
        .expect("mint");
    let parsed = TunnelToken::parse(&minted.token).expect("a connector token");
    assert_eq!(parsed.tunnel_id, tunnel.id);
    assert_ne!(
        Some(minted.token.as_str()),
        tunnel.token.as_deref(),
        "a single-use token is not the tunnel's long-lived token"
    );
    // The token is not stored in clear anywhere the edge keeps data, nor logged.
    let mut stored = Vec::new();
    for entry in std::fs::read_dir(edge.data_dir()).expect("data dir") {
        stored.extend(std::fs::read(entry.expect("entry").path()).unwrap_or_default());
    }
    let secret = parsed.secret.expose().as_bytes();
    assert!(
        !stored.windows(secret.len()).any(|w| w == secret),
        "the secret is stored in clear"
    );
    assert!(
        !edge.log().contains(parsed.secret.expose()),
        "the secret was logged"
    );

    // First use: enrols and connects.
    let state = tempfile::tempdir().expect("state dir");
    let args = |token: &str| {
        vec![
            "tunnel".to_string(),
            "run".into(),
            "--token".into(),
            token.into(),
            "--connections".into(),
            "1".into(),
            "--hello-world".into(),
        ]
    };
    let mut first = ConnectorProcess::start(ConnectorOptions {
        state_dir: Some(state.path().to_path_buf()),
        args: args(&minted.token),
        env: vec![],
    });
    eventually(Duration::from_secs(20), "the first connector", || async {
        (client.tunnel_connections(tunnel.id).await.ok()?.len() == 1).then_some(())
    })
    .await;

    // Second use, by another connector (its own state dir): refused, and it says why.
    let mut second = ConnectorProcess::run(&minted.token, 1, &["--hello-world"]);
    let status = second.wait_exit(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| !s.success()),
        "a reused token must not enrol:\n{}",
        second.log()
    );
    assert!(second.log().contains("already used"), "{}", second.log());
    assert_eq!(
        client
            .tunnel_connections(tunnel.id)
            .await
            .expect("connections")
            .len(),
        1
    );

    // The first connector restarts with the same state dir: it keeps its certificate.
    first.kill();
    connections_within(&client, tunnel.id, 0, Duration::from_secs(10)).await;
    let _again = ConnectorProcess::start(ConnectorOptions {
        state_dir: Some(state.path().to_path_buf()),
        args: args(&minted.token),
        env: vec![],
    });
    eventually(
        Duration::from_secs(20),
        "the restarted connector",
        || async { (client.tunnel_connections(tunnel.id).await.ok()?.len() == 1).then_some(()) },
    )
    .await;

    // A bad lifetime is refused with a pointer.
    let bad = edge
        .api()
        .post(
            &format!("/v1/tunnels/{}/enrollment-tokens", tunnel.id),
            &serde_json::json!({"ttl_seconds": 5}),
        )
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.error_path(), Some("/ttl_seconds"));
}
