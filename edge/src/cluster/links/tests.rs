//! Links between nodes over real mutual TLS on loopback.

use std::net::SocketAddr;

use std::convert::Infallible;

use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::*;
use crate::body;
use crate::ca::tunnel_of_certificate;
use crate::store::SqliteStore;

async fn new_ca(dir: &tempfile::TempDir, name: &str) -> Arc<EdgeCa> {
    let store = SqliteStore::open(&dir.path().join(name)).expect("store");
    Arc::new(EdgeCa::load_or_create(&store).await.expect("ca"))
}

fn identity(ca: &Arc<EdgeCa>, node_id: &str) -> Arc<NodeIdentity> {
    Arc::new(NodeIdentity::new(ca.clone(), node_id.into()).expect("identity"))
}

/// A node's peer side that answers every stream with the id of the node that sent it.
async fn echo_node(ca: &Arc<EdgeCa>, node_id: &str) -> SocketAddr {
    let config = server_config(&identity(ca, node_id), ca).expect("server config");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = TlsAcceptor::from(config.clone());
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let from = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .and_then(node_of_certificate)
                    .unwrap_or_else(|| "no node".into());
                let service = service_fn(move |_request: Request<Incoming>| {
                    let from = from.clone();
                    async move { Ok::<_, Infallible>(Response::new(body::full(from))) }
                });
                let _ = hyper::server::conn::http2::Builder::new(postern_heap::BoxingExecutor)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    address
}

fn request() -> Request<BoxBody> {
    let mut request = Request::new(body::full(""));
    *request.uri_mut() = "http://app.example.com/".parse().expect("uri");
    request
}

async fn body_text(response: Response<Incoming>) -> String {
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[tokio::test]
async fn nodes_of_one_ca_link_and_each_knows_which_node_the_other_is() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = new_ca(&dir, "one.db").await;
    let address = echo_node(&ca, "node-b").await;
    let links = PeerLinks::new(client_config(&identity(&ca, "node-a"), &ca).expect("client"));

    let response = links
        .send("node-b", &address.to_string(), request())
        .await
        .expect("forwarded");
    assert_eq!(body_text(response).await, "node-a");
    // The link is kept and reused.
    let again = links
        .send("node-b", &address.to_string(), request())
        .await
        .expect("forwarded again");
    assert_eq!(body_text(again).await, "node-a");
}

#[tokio::test]
async fn a_link_to_an_address_where_another_node_answers_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = new_ca(&dir, "one.db").await;
    let address = echo_node(&ca, "node-b-restarted").await;
    let links = PeerLinks::new(client_config(&identity(&ca, "node-a"), &ca).expect("client"));
    let failure = links
        .send("node-b", &address.to_string(), request())
        .await
        .expect_err("another node");
    assert!(
        matches!(failure.error, PeerError::WrongNode { .. }),
        "{:?}",
        failure.error
    );
    assert!(failure.error.is_unreachable());
    assert!(failure.request.is_some(), "the request never left");
}

#[tokio::test]
async fn a_node_of_another_ca_cannot_link() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ours = new_ca(&dir, "ours.db").await;
    let theirs = new_ca(&dir, "theirs.db").await;
    let address = echo_node(&ours, "node-b").await;
    let links =
        PeerLinks::new(client_config(&identity(&theirs, "node-x"), &theirs).expect("client"));
    let failure = links
        .send("node-b", &address.to_string(), request())
        .await
        .expect_err("foreign CA");
    assert!(
        matches!(failure.error, PeerError::Tls { .. }),
        "{:?}",
        failure.error
    );
}

#[tokio::test]
async fn an_unreachable_node_fails_fast_and_keeps_the_request() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = new_ca(&dir, "one.db").await;
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = closed.local_addr().expect("address");
    drop(closed);
    let links = PeerLinks::new(client_config(&identity(&ca, "node-a"), &ca).expect("client"));
    let started = Instant::now();
    let failure = links
        .send("node-b", &address.to_string(), request())
        .await
        .expect_err("nobody listens");
    assert!(started.elapsed() <= DIAL_TIMEOUT + Duration::from_millis(200));
    assert!(failure.error.is_unreachable(), "{:?}", failure.error);
    assert!(failure.request.is_some());
}

#[tokio::test]
async fn node_and_connector_certificates_cannot_stand_in_for_each_other() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = new_ca(&dir, "one.db").await;
    let (node_cert, _) = ca
        .issue_node_cert("node-a", Duration::from_secs(60))
        .expect("node cert");
    assert_eq!(node_of_certificate(&node_cert).as_deref(), Some("node-a"));
    assert_eq!(tunnel_of_certificate(&node_cert), None);

    let key = rcgen::KeyPair::generate().expect("key");
    let csr = rcgen::CertificateParams::default()
        .serialize_request(&key)
        .expect("csr");
    let tunnel = postern_schema::ids::TunnelId::new_random();
    let connector_cert = ca
        .sign_tunnel_csr(csr.der(), tunnel, Duration::from_secs(60))
        .expect("connector cert");
    assert_eq!(node_of_certificate(&connector_cert), None);
    assert_eq!(tunnel_of_certificate(&connector_cert), Some(tunnel));
}
