//! Postern under test: the release `postern-edge` and `postern` binaries (the acceptance
//! harness's processes), one tunnel with the default two connections, and the hostname
//! `bench.example.com` served by it and pointing at the benchmark's origin. Visitors reach it
//! on the edge's public HTTP listener and on its HTTPS listener (TLS with the edge CA).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use postern_schema::api::{HostnameSpec, TunnelSpec};

use super::load::{self, Endpoint};
use crate::{ConnectorOptions, ConnectorProcess, EdgeOptions, EdgeProcess};

/// The hostname the benchmark declares.
pub const HOSTNAME: &str = "bench.example.com";

/// How many tunnel connections the connector opens (its default).
const CONNECTIONS: usize = 2;

/// A running edge and connector serving [`HOSTNAME`].
pub struct Postern {
    /// The edge.
    pub edge: EdgeProcess,
    /// The connector.
    pub connector: ConnectorProcess,
    /// The edge's public HTTP listener.
    pub http: Endpoint,
    /// The edge's public HTTPS listener.
    pub https: Endpoint,
}

impl Postern {
    /// The edge's and the connector's process ids.
    pub fn pids(&self) -> Vec<u32> {
        vec![self.edge.pid(), self.connector.pid()]
    }
}

/// Starts an edge and a connector for `origin_url`, with `env` added to both processes'
/// environment, and waits until a request goes through.
pub async fn start(origin_url: String, env: Vec<(String, String)>) -> Result<Postern, String> {
    // The harness blocks and panics on failure: run it on a blocking thread and catch that.
    let edge_options = EdgeOptions {
        env: env.clone(),
        ..EdgeOptions::default()
    };
    let edge = tokio::task::spawn_blocking(move || EdgeProcess::start_with(edge_options))
        .await
        .map_err(|e| format!("the edge did not start: {}", panic_text(e)))?;
    let client = edge.client();
    let tunnel = client
        .create_tunnel(&TunnelSpec {
            name: "bench".into(),
            labels: BTreeMap::new(),
        })
        .await
        .map_err(|e| format!("creating the tunnel failed: {e}"))?;
    client
        .create_hostname(&HostnameSpec {
            tls_passthrough: None,
            hostname: HOSTNAME.into(),
            service: origin_url,
            tunnel_id: Some(tunnel.id),
            routes: None,
            policy_ids: Vec::new(),
            paths: Vec::new(),
            origin: None,
        })
        .await
        .map_err(|e| format!("creating the hostname failed: {e}"))?;
    let token = tunnel
        .token
        .clone()
        .ok_or("the new tunnel carries no token")?;
    let connector = tokio::task::spawn_blocking(move || {
        ConnectorProcess::start(ConnectorOptions {
            args: vec![
                "tunnel".into(),
                "run".into(),
                "--token".into(),
                token,
                "--connections".into(),
                CONNECTIONS.to_string(),
            ],
            env,
            ..ConnectorOptions::default()
        })
    })
    .await
    .map_err(|e| format!("the connector did not start: {}", panic_text(e)))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let live = client
            .tunnel_connections(tunnel.id)
            .await
            .map(|c| c.len())
            .unwrap_or(0);
        if live == CONNECTIONS {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the connector registered {live} of {CONNECTIONS} connections in 30 s; its log:\n{}",
                connector.log()
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // What the HTTPS listener serves a hostname without a public certificate with.
    let ca = client
        .edge()
        .await
        .map_err(|e| format!("GET /v1/edge failed: {e}"))?
        .visitor_ca_cert_pem;
    let http = Endpoint {
        addr: edge.addrs.http,
        host: HOSTNAME.into(),
        tls: None,
    };
    let https = Endpoint {
        addr: edge.addrs.https,
        host: HOSTNAME.into(),
        tls: Some(client_config(&ca)?),
    };
    for endpoint in [&http, &https] {
        if !load::wait_ready(endpoint, Duration::from_secs(20)).await {
            return Err(format!(
                "no request went through {:?} within 20 s; edge log:\n{}",
                endpoint.addr,
                edge.log()
            ));
        }
    }
    Ok(Postern {
        edge,
        connector,
        http,
        https,
    })
}

/// A TLS client trusting only the edge CA, speaking HTTP/1.1 (as the generator does).
pub fn client_config(ca_pem: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    let der = pem_to_der(ca_pem).ok_or("the edge CA is not PEM")?;
    roots
        .add(rustls_pki_types::CertificateDer::from(der))
        .map_err(|e| format!("the edge CA is not usable: {e}"))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The DER of the first certificate in `pem`.
fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE-----"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

/// The message of a panic caught from a joined task.
pub fn panic_text(error: tokio::task::JoinError) -> String {
    match error.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panicked".into()),
        Err(error) => error.to_string(),
    }
}
