//! TLS passthrough by SNI (issue 30, must-show 4): a hostname with `tls_passthrough = true` is
//! served on the edge's HTTPS port without terminating TLS. A real TLS origin with a
//! certificate of its own CA sits behind a real connector; a visitor's rustls handshake to the
//! edge's HTTPS port naming that hostname completes with the origin's certificate (not the
//! edge's) and talks to the origin end to end, while on the same port a terminated hostname
//! still answers with the edge's certificate. The hostname's IP lists refuse a client before
//! anything reaches the origin; HTTP-only policies are refused by the API.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use acceptance::fixture::create_tunnel;
use acceptance::pki::TestCa;
use acceptance::visitor::{connect_from, get_with_host, http_client, https_client, https_url};
use acceptance::{ConnectorProcess, EdgeProcess, eventually};
use postern_schema::api::Tunnel;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::{TlsAcceptor, TlsConnector};

const PASSTHROUGH: &str = "secure.example.com";
const TERMINATED: &str = "app.example.com";

/// A TLS origin with a certificate of its own CA for [`PASSTHROUGH`]: after the handshake it
/// answers each line with `origin: <line>`. Counts the TCP connections it accepts.
struct TlsOrigin {
    addr: SocketAddr,
    ca_pem: String,
    cert_der: Vec<u8>,
    accepted: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsOrigin {
    async fn start() -> Self {
        let ca = TestCa::new("the origin's own CA");
        let cert = ca.server_cert(&[PASSTHROUGH]);
        let chain = vec![CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).expect("cert")];
        let cert_der = chain[0].to_vec();
        let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).expect("key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicU64::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let mut buf = vec![0u8; 4096];
                    loop {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                let line = String::from_utf8_lossy(&buf[..n]).into_owned();
                                let answer = format!("origin: {line}");
                                if tls.write_all(answer.as_bytes()).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        Self {
            addr,
            ca_pem: ca.cert_pem,
            cert_der,
            accepted,
            task,
        }
    }

    fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for TlsOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A rustls client trusting only `ca_pem`.
fn connector(ca_pem: &str) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("CA PEM"))
        .expect("CA");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// A TLS handshake from `from` to the edge's HTTPS port naming `name`, trusting `ca_pem`:
/// the stream and the certificate the server presented (DER).
async fn handshake(
    edge: &EdgeProcess,
    from: IpAddr,
    name: &str,
    ca_pem: &str,
) -> std::io::Result<(
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    Vec<u8>,
)> {
    let tcp = connect_from(from, edge.addrs.https).await?;
    let server = ServerName::try_from(name.to_string()).expect("name");
    let tls = tokio::time::timeout(
        Duration::from_secs(15),
        connector(ca_pem).connect(server, tcp),
    )
    .await
    .map_err(|_| std::io::Error::other("the handshake timed out"))??;
    let presented = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|c| c.to_vec())
        .unwrap_or_default();
    Ok((tls, presented))
}

struct Stage {
    edge: EdgeProcess,
    tunnel: Tunnel,
    _connector: ConnectorProcess,
    origin: TlsOrigin,
    edge_ca_pem: String,
}

impl Stage {
    async fn start() -> Self {
        let edge = EdgeProcess::start();
        let client = edge.client();
        let tunnel = create_tunnel(&client, "origin-host", &[]).await;
        let connector = ConnectorProcess::run(tunnel.token.as_deref().expect("token"), 1, &[]);
        eventually(Duration::from_secs(20), "the connector", || async {
            (!client.tunnel_connections(tunnel.id).await.ok()?.is_empty()).then_some(())
        })
        .await;
        let origin = TlsOrigin::start().await;
        let edge_ca_pem = client
            .edge()
            .await
            .expect("GET /v1/edge")
            .visitor_ca_cert_pem;
        Self {
            edge,
            tunnel,
            _connector: connector,
            origin,
            edge_ca_pem,
        }
    }

    async fn create(&self, path: &str, body: Value) -> Value {
        let made = self.edge.api().post(path, &body).await;
        assert_eq!(made.status, 201, "{}", made.text);
        made.body
    }
}

#[tokio::test]
async fn a_passthrough_hostname_shows_the_origins_certificate_beside_a_terminated_one() {
    let stage = Stage::start().await;
    let local: IpAddr = "127.0.0.1".parse().expect("ip");
    let created = stage
        .create(
            "/v1/hostnames",
            json!({
                "hostname": PASSTHROUGH,
                "service": format!("https://{}", stage.origin.addr),
                "tunnel_id": stage.tunnel.id,
                "tls_passthrough": true,
            }),
        )
        .await;
    assert_eq!(created["tls_passthrough"], json!(true), "{created}");
    stage
        .create(
            "/v1/hostnames",
            json!({"hostname": TERMINATED, "service": "http_status:204", "tunnel_id": stage.tunnel.id}),
        )
        .await;

    // The passthrough hostname: the origin's own certificate, end to end.
    let (mut tls, presented) = handshake(&stage.edge, local, PASSTHROUGH, &stage.origin.ca_pem)
        .await
        .expect("a handshake with the origin through the edge");
    assert_eq!(
        presented, stage.origin.cert_der,
        "the visitor sees the origin's certificate"
    );
    tls.write_all(b"ping").await.expect("write");
    let mut answer = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut answer))
        .await
        .expect("an answer in time")
        .expect("read");
    assert_eq!(&answer[..n], b"origin: ping");
    println!("passthrough: the handshake through the edge presented the origin's certificate");

    // The edge cannot answer for it: a visitor trusting only the edge's CA fails.
    assert!(
        handshake(&stage.edge, local, PASSTHROUGH, &stage.edge_ca_pem)
            .await
            .is_err(),
        "the edge's CA must not verify what a passthrough hostname presents"
    );

    // On the same port, a terminated hostname: the edge's certificate, and HTTP served.
    let (_, presented) = handshake(&stage.edge, local, TERMINATED, &stage.edge_ca_pem)
        .await
        .expect("a handshake with the edge");
    assert!(!presented.is_empty());
    assert_ne!(presented, stage.origin.cert_der);
    let https = https_client(&stage.edge, TERMINATED).await;
    let response = https
        .get(https_url(&stage.edge, TERMINATED, "/"))
        .send()
        .await
        .expect("GET over HTTPS");
    assert_eq!(response.status().as_u16(), 204);

    // Plain HTTP for the passthrough hostname is not served (its origin speaks TLS).
    let (status, _) = get_with_host(&http_client(), stage.edge.addrs.http, PASSTHROUGH, "/").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_passthrough_hostnames_ip_list_refuses_at_the_edge_and_http_rules_are_refused() {
    let stage = Stage::start().await;
    let only_local = stage
        .create(
            "/v1/policies",
            json!({"name": "only-local", "allow_ips": ["127.0.0.1/32"]}),
        )
        .await;
    let http_rules = stage
        .create(
            "/v1/policies",
            json!({"name": "paths", "allow_paths": ["/api/**"]}),
        )
        .await;
    let mut body = json!({
        "hostname": PASSTHROUGH,
        "service": format!("https://{}", stage.origin.addr),
        "tunnel_id": stage.tunnel.id,
        "tls_passthrough": true,
        "policy_ids": [http_rules["id"]],
    });
    let refused = stage.edge.api().post("/v1/hostnames", &body).await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert_eq!(refused.error_path(), Some("/policy_ids/0"));
    assert!(refused.text.contains("allow_paths"), "{}", refused.text);

    body["policy_ids"] = json!([only_local["id"]]);
    stage.create("/v1/hostnames", body).await;
    // Nor may its policy gain them later.
    let gains = stage
        .edge
        .api()
        .put(
            &format!("/v1/policies/{}", only_local["id"].as_str().expect("id")),
            &json!({"name": "only-local", "allow_ips": ["127.0.0.1/32"], "allow_methods": ["GET"]}),
            None,
        )
        .await;
    assert_eq!(gains.status, 400, "{}", gains.text);
    assert_eq!(gains.error_path(), Some("/allow_methods"));
    assert!(gains.text.contains(PASSTHROUGH), "{}", gains.text);

    // From 127.0.0.1 the handshake completes; from 127.0.0.2 the edge closes the connection
    // and the origin never hears of it.
    let local: IpAddr = "127.0.0.1".parse().expect("ip");
    let (_, presented) = handshake(&stage.edge, local, PASSTHROUGH, &stage.origin.ca_pem)
        .await
        .expect("an allowed client's handshake");
    assert_eq!(presented, stage.origin.cert_der);
    let before = stage.origin.accepted();
    assert_eq!(before, 1);
    let outsider: IpAddr = "127.0.0.2".parse().expect("ip");
    let refused = handshake(&stage.edge, outsider, PASSTHROUGH, &stage.origin.ca_pem).await;
    assert!(refused.is_err(), "a client outside allow_ips got through");
    assert_eq!(
        stage.origin.accepted(),
        before,
        "a refused client reached the origin"
    );
    assert_eq!(
        stage
            .edge
            .metric(&format!(
                "postern_edge_tcp_connections_total{{service=\"{PASSTHROUGH}\",outcome=\"ip\"}}"
            ))
            .await,
        1
    );
}

#[tokio::test]
async fn a_passthrough_hostnames_connection_rate_limit_refuses_the_excess() {
    let stage = Stage::start().await;
    let limited = stage
        .create(
            "/v1/policies",
            json!({"name": "two-at-once", "rate_limit": {"requests_per_second": 0.01, "burst": 2}}),
        )
        .await;
    stage
        .create(
            "/v1/hostnames",
            json!({
                "hostname": PASSTHROUGH,
                "service": format!("https://{}", stage.origin.addr),
                "tunnel_id": stage.tunnel.id,
                "tls_passthrough": true,
                "policy_ids": [limited["id"]],
            }),
        )
        .await;
    let local: IpAddr = "127.0.0.1".parse().expect("ip");
    let mut outcomes = Vec::new();
    for _ in 0..4 {
        outcomes.push(
            handshake(&stage.edge, local, PASSTHROUGH, &stage.origin.ca_pem)
                .await
                .is_ok(),
        );
    }
    assert_eq!(
        outcomes,
        [true, true, false, false],
        "burst 2, then refused"
    );
    assert_eq!(
        stage.origin.accepted(),
        2,
        "refused connections reached the origin"
    );
    // Another client has its own allowance.
    let other: IpAddr = "127.0.0.3".parse().expect("ip");
    assert!(
        handshake(&stage.edge, other, PASSTHROUGH, &stage.origin.ca_pem)
            .await
            .is_ok()
    );
}
