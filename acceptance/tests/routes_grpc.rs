//! What real applications need from a route (issue 27, must show 1 and 2): a gRPC server behind
//! the connector over HTTP/2 (`h2c://`, and `https://` with `origin.http2`), called through the
//! edge over HTTPS with its trailers intact.

use std::sync::Arc;
use std::time::Duration;

use acceptance::fixture::{connections, token, tunnel_for};
use acceptance::grpc::echo::echo_client::EchoClient;
use acceptance::grpc::echo::{CountRequest, SayRequest};
use acceptance::grpc::{GrpcOrigin, channel_through_edge};
use acceptance::pki::TestCa;
use acceptance::{ConnectorProcess, EdgeProcess};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use postern_schema::api::{HostnameSpec, OriginSettings};
use prost::Message;
use rustls_pki_types::pem::PemObject;

/// One gRPC call's HTTP/2 exchange, as a visitor's client sees it through the edge.
struct RawCall {
    status: http::StatusCode,
    headers: http::HeaderMap,
    trailers: Option<http::HeaderMap>,
    body: Bytes,
}

/// Calls `path` (`/echo.Echo/Say`) with `message` over HTTP/2 on the edge's HTTPS listener,
/// without a gRPC library: what arrives is exactly what the edge sent.
async fn raw_call(edge: &EdgeProcess, hostname: &str, path: &str, message: &[u8]) -> RawCall {
    let info = edge.client().edge().await.expect("GET /v1/edge");
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(info.ca_cert_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("CA");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(edge.addrs.https)
        .await
        .expect("connect");
    let name = rustls_pki_types::ServerName::try_from(hostname.to_string()).expect("name");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(tls))
        .await
        .expect("h2 handshake");
    tokio::spawn(connection);
    let mut framed = vec![0u8];
    framed.extend_from_slice(&u32::try_from(message.len()).expect("small").to_be_bytes());
    framed.extend_from_slice(message);
    let request = http::Request::post(format!(
        "https://{hostname}:{}{path}",
        edge.addrs.https.port()
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .body(Full::new(Bytes::from(framed)))
    .expect("request");
    let response = sender.send_request(request).await.expect("response");
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.expect("body");
    RawCall {
        status: parts.status,
        headers: parts.headers,
        trailers: collected.trailers().cloned(),
        body: collected.to_bytes(),
    }
}

/// The edge, a tunnel `grpc` serving `hostname` with `service` (and `origin` settings), and
/// its connector, connected twice.
async fn serve(
    hostname: &str,
    service: &str,
    origin: Option<OriginSettings>,
) -> (EdgeProcess, ConnectorProcess) {
    let edge = EdgeProcess::start();
    let client = edge.client();
    let tunnel = tunnel_for(&client, "grpc", hostname, service).await;
    if origin.is_some() {
        let mut spec: HostnameSpec = client.hostname(hostname).await.expect("hostname").spec;
        spec.origin = origin;
        client
            .replace_hostname(&spec, None)
            .await
            .expect("origin settings");
    }
    let connector = ConnectorProcess::run(&token(&tunnel), 2, &[]);
    connections(&client, tunnel.id, 2).await;
    (edge, connector)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grpc_over_h2c_passes_through_the_edge_with_its_trailers() {
    const HOST: &str = "grpc.example.com";
    let origin = GrpcOrigin::start().await;
    let (edge, _connector) = serve(HOST, &origin.service(), None).await;
    let mut echo = EchoClient::new(channel_through_edge(&edge, HOST).await);

    // Unary.
    let reply = echo
        .say(SayRequest {
            message: "hello through the tunnel".into(),
        })
        .await
        .expect("unary call");
    assert_eq!(reply.get_ref().message, "hello through the tunnel");

    // Server streaming: every message, in order, then the status.
    let mut stream = echo
        .count(CountRequest { count: 500 })
        .await
        .expect("streaming call")
        .into_inner();
    let mut numbers = Vec::new();
    while let Some(reply) = tokio::time::timeout(Duration::from_secs(20), stream.message())
        .await
        .expect("the stream moves")
        .expect("a message or the end")
    {
        numbers.push(reply.number);
    }
    assert_eq!(numbers, (1..=500).collect::<Vec<_>>());

    // An error status reaches the client as such.
    let status = echo
        .fail(SayRequest {
            message: "no such thing".into(),
        })
        .await
        .expect_err("the origin fails the call");
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
    assert_eq!(status.message(), "no such thing");

    // On the wire: HTTP/2 with the grpc-status trailer after the message.
    let request = SayRequest {
        message: "raw".into(),
    }
    .encode_to_vec();
    let call = raw_call(&edge, HOST, "/echo.Echo/Say", &request).await;
    assert_eq!(call.status, http::StatusCode::OK);
    assert_eq!(call.headers["content-type"], "application/grpc");
    let trailers = call.trailers.expect("trailers after the body");
    assert_eq!(trailers["grpc-status"], "0");
    assert!(call.body.len() > 5, "a framed message: {:?}", call.body);
    assert_eq!(
        acceptance::grpc::echo::SayReply::decode(&call.body[5..])
            .expect("a SayReply")
            .message,
        "raw"
    );
    // A failed call is "trailers only": the status in the one header block.
    let failed = raw_call(&edge, HOST, "/echo.Echo/Fail", &request).await;
    let status = failed
        .trailers
        .as_ref()
        .and_then(|t| t.get("grpc-status"))
        .or_else(|| failed.headers.get("grpc-status"))
        .expect("a grpc-status");
    assert_eq!(status, "5", "NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grpc_over_https_speaks_http2_by_alpn_with_the_hostnames_own_ca() {
    const HOST: &str = "grpcs.example.com";
    let ca = TestCa::new("origin CA");
    let cert = ca.server_cert(&["grpc.internal"]);
    let origin = GrpcOrigin::start_tls(&cert).await;
    let settings = OriginSettings {
        http2: Some(true),
        ca_cert_pem: Some(ca.cert_pem.clone()),
        origin_server_name: Some("grpc.internal".into()),
        ..OriginSettings::default()
    };
    let (edge, _connector) = serve(HOST, &origin.https_service(), Some(settings)).await;
    let mut echo = EchoClient::new(channel_through_edge(&edge, HOST).await);
    let reply = echo
        .say(SayRequest {
            message: "over TLS".into(),
        })
        .await
        .expect("unary call over an https origin");
    assert_eq!(reply.get_ref().message, "over TLS");
    let mut stream = echo
        .count(CountRequest { count: 3 })
        .await
        .expect("streaming call")
        .into_inner();
    let mut numbers = Vec::new();
    while let Some(reply) = stream.message().await.expect("a message or the end") {
        numbers.push(reply.number);
    }
    assert_eq!(numbers, [1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_https_origin_whose_ca_is_not_trusted_is_a_502() {
    const HOST: &str = "untrusted.example.com";
    let ca = TestCa::new("origin CA");
    let other = TestCa::new("another CA");
    let origin = GrpcOrigin::start_tls(&ca.server_cert(&["grpc.internal"])).await;
    let settings = OriginSettings {
        http2: Some(true),
        ca_cert_pem: Some(other.cert_pem.clone()),
        origin_server_name: Some("grpc.internal".into()),
        ..OriginSettings::default()
    };
    let (edge, _connector) = serve(HOST, &origin.https_service(), Some(settings)).await;
    let request = SayRequest {
        message: "refused".into(),
    }
    .encode_to_vec();
    let call = raw_call(&edge, HOST, "/echo.Echo/Say", &request).await;
    assert_eq!(call.status, http::StatusCode::BAD_GATEWAY);
}
