//! Who may serve what (issue 5, must show 2): the edge serves nothing to a connection without
//! its client certificate, with one from another CA, or with tunnel A's certificate for
//! tunnel B's hostname; and a connector never proxies a hostname not declared for its tunnel
//! (shown against a stand-in edge the connector trusts, which asks it for other hostnames).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use acceptance::fixture::{connections, tunnel_for};
use acceptance::tunnel_dial::dial;
use acceptance::visitor::{edge_http_client, get_with_host};
use acceptance::{ConnectorProcess, EdgeProcess, TestOrigin};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use postern_schema::api::OriginSettings;
use postern_schema::ids::TunnelId;
use postern_schema::secret::Secret;
use postern_schema::token::TunnelToken;
use postern_schema::wire::{
    self, ConfigAck, ConfigPush, EnrollAnswer, EnrollRequest, Hello, HostnameConfig,
};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, SanType,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

type Body = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Does the edge refuse this connection? (TLS 1.3 clients learn it on their first read.)
async fn refused(
    addr: SocketAddr,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> bool {
    let Ok(mut stream) = dial(addr, wire::ALPN_TUNNEL, identity).await else {
        return true;
    };
    let mut byte = [0u8; 1];
    match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => false,
        Err(_) => panic!("the edge neither refused nor served within 10 s"),
    }
}

/// A client certificate from a CA that is not the edge's, naming `tunnel`.
fn foreign_identity(tunnel: TunnelId) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let ca_key = KeyPair::generate().expect("key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Postern edge CA");
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.subject_alt_names = vec![SanType::URI(
        format!("urn:postern:tunnel:{tunnel}")
            .try_into()
            .expect("uri"),
    )];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer).expect("leaf");
    (
        vec![cert.der().clone(), ca.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
}

/// What a hand-made connector saw from the edge.
#[derive(Default)]
struct Seen {
    hello: Option<Hello>,
    config: Vec<ConfigPush>,
    events: Option<mpsc::Sender<Bytes>>,
}

/// A hand-made connector on `stream` that answers every visitor request with `impostor`.
async fn impostor(stream: tokio_rustls::client::TlsStream<TcpStream>, seen: Arc<Mutex<Seen>>) {
    let service = service_fn(move |request: Request<Incoming>| {
        let seen = seen.clone();
        async move {
            let path = request.uri().path().to_string();
            let control =
                request.uri().authority().map(|a| a.as_str()) == Some(wire::CONTROL_AUTHORITY);
            let bytes = request
                .into_body()
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            let response: Response<Body> = match (control, path.as_str()) {
                (true, wire::HELLO_PATH) => {
                    seen.lock().expect("lock").hello = wire::from_json(&bytes).ok();
                    Response::new(full(r#"{"connector_id":"impostor","version":"0"}"#))
                }
                (true, wire::EVENTS_PATH) => {
                    let (sender, receiver) = mpsc::channel::<Bytes>(1);
                    seen.lock().expect("lock").events = Some(sender);
                    Response::new(ChannelBody(receiver).boxed_unsync())
                }
                (true, wire::CONFIG_PATH) => {
                    let push: ConfigPush = wire::from_json(&bytes).expect("config push");
                    let ack = ConfigAck {
                        applied_version: push.version,
                        refused: Vec::new(),
                    };
                    seen.lock().expect("lock").config.push(push);
                    Response::new(full(wire::to_json(&ack)))
                }
                (true, _) => Response::new(full("{}")),
                (false, _) => Response::new(full("impostor")),
            };
            Ok::<_, Infallible>(response)
        }
    });
    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// A body fed by a channel: open as long as its sender lives.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        self.get_mut()
            .0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_serves_nothing_without_the_right_certificate() {
    let edge = EdgeProcess::start();
    let client = edge.client();
    let origin = TestOrigin::start().await;
    let alpha = tunnel_for(&client, "alpha", "a.example.com", &origin.url()).await;
    let beta = tunnel_for(&client, "beta", "b.example.com", &origin.url()).await;

    // No client certificate, and one from another CA naming tunnel A: refused.
    assert!(
        refused(edge.addrs.tunnel, None).await,
        "served without a certificate"
    );
    assert!(
        refused(edge.addrs.tunnel, Some(foreign_identity(alpha.id))).await,
        "served with a foreign CA's certificate"
    );
    let http = edge_http_client(&edge, "a.example.com");
    let status = |host| get_with_host(&http, edge.addrs.http, host, "/hello");
    assert_eq!(status("a.example.com").await.0, 503);

    // Tunnel A's own certificate, from a real enrolment.
    let mut real = ConnectorProcess::run(alpha.token.as_deref().expect("token"), 1, &[]);
    connections(&client, alpha.id, 1).await;
    real.kill();
    connections(&client, alpha.id, 0).await;
    let dir = real.state_dir().join("tunnels").join(alpha.id.to_string());
    let cert = std::fs::read(dir.join("cert.pem")).expect("cert.pem");
    let key = std::fs::read(dir.join("key.pem")).expect("key.pem");
    use rustls_pki_types::pem::PemObject;
    let identity = (
        vec![CertificateDer::from_pem_slice(&cert).expect("cert")],
        PrivateKeyDer::from_pem_slice(&key).expect("key"),
    );

    // An impostor with A's certificate is A, and only A: it is never given B's traffic.
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stream = dial(edge.addrs.tunnel, wire::ALPN_TUNNEL, Some(identity))
        .await
        .expect("dial");
    tokio::spawn(impostor(stream, seen.clone()));
    connections(&client, alpha.id, 1).await;
    assert_eq!(status("a.example.com").await, (200, "impostor".to_string()));
    let (code, body) = status("b.example.com").await;
    assert_eq!(code, 503, "{body}");
    assert_ne!(body, "impostor");
    assert_eq!(
        client
            .tunnel_connections(beta.id)
            .await
            .expect("list")
            .len(),
        0
    );
    let seen = seen.lock().expect("lock");
    assert_eq!(seen.hello.as_ref().map(|h| h.tunnel_id), Some(alpha.id));
    let pushed: Vec<&str> = seen.config[0]
        .hostnames
        .iter()
        .map(|h| h.hostname.as_str())
        .collect();
    assert_eq!(pushed, ["a.example.com"]);
    assert_eq!(origin.hits(), 0, "the origin was reached");
}

/// A stand-in edge with its own CA: it enrols connectors and hands the test the HTTP/2 client
/// of every tunnel connection, so the test can ask a real connector for any hostname.
async fn stand_in_edge() -> (
    SocketAddr,
    String,
    mpsc::Receiver<hyper::client::conn::http2::SendRequest<Body>>,
) {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let ca_key = KeyPair::generate().expect("key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "stand-in edge CA");
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let ca_der = ca.der().clone();
    let pin: String = Sha256::digest(ca_der.as_ref())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let issuer = Arc::new(Issuer::new(ca_params, ca_key));
    let server_key = KeyPair::generate().expect("key");
    let server_params =
        CertificateParams::new(vec![wire::TUNNEL_SERVER_NAME.to_string()]).expect("params");
    let server_cert = server_params
        .signed_by(&server_key, &issuer)
        .expect("server cert");
    let chain = vec![server_cert.der().clone(), ca_der.clone()];
    let server_key_der =
        || PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));

    let mut enroll = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .with_no_client_auth()
        .with_single_cert(chain.clone(), server_key_der())
        .expect("enroll config");
    enroll.alpn_protocols = vec![wire::ALPN_ENROLL.to_vec()];
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_der.clone()).expect("root");
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .expect("verifier");
    let mut tunnel = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, server_key_der())
        .expect("tunnel config");
    tunnel.alpn_protocols = vec![wire::ALPN_TUNNEL.to_vec()];
    let (enroll, tunnel) = (Arc::new(enroll), Arc::new(tunnel));

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (senders, receiver) = mpsc::channel(8);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (enroll, tunnel, issuer, ca_der, senders) = (
                enroll.clone(),
                tunnel.clone(),
                issuer.clone(),
                ca_der.clone(),
                senders.clone(),
            );
            tokio::spawn(async move {
                let acceptor =
                    tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp);
                let Ok(start) = acceptor.await else { return };
                let wants_tunnel = start
                    .client_hello()
                    .alpn()
                    .is_some_and(|mut offered| offered.any(|p| p == wire::ALPN_TUNNEL));
                if wants_tunnel {
                    let Ok(stream) = start.into_stream(tunnel).await else {
                        return;
                    };
                    let Ok((sender, connection)) =
                        hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                            .timer(TokioTimer::new())
                            .handshake::<_, Body>(TokioIo::new(stream))
                            .await
                    else {
                        return;
                    };
                    tokio::spawn(connection);
                    let _ = senders.send(sender).await;
                } else {
                    let Ok(mut stream) = start.into_stream(enroll).await else {
                        return;
                    };
                    let len = stream.read_u32().await.expect("frame length") as usize;
                    let mut body = vec![0u8; len];
                    stream.read_exact(&mut body).await.expect("frame");
                    let request: EnrollRequest = wire::from_json(&body).expect("enrol request");
                    let csr = wire::decode_der(&request.csr_der, "csr").expect("csr");
                    let mut csr =
                        CertificateSigningRequestParams::from_der(&csr.into()).expect("csr");
                    csr.params.subject_alt_names = vec![SanType::URI(
                        format!("urn:postern:tunnel:{}", request.tunnel_id)
                            .try_into()
                            .expect("uri"),
                    )];
                    csr.params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
                    let cert = csr.signed_by(&issuer).expect("signed");
                    let answer = EnrollAnswer::Granted {
                        cert_der: wire::encode_der(cert.der()),
                        ca_der: wire::encode_der(&ca_der),
                    };
                    let _ = stream.write_all(&wire::encode_frame(&answer)).await;
                    let _ = stream.shutdown().await;
                }
            });
        }
    });
    (addr, pin, receiver)
}

/// A request on a tunnel connection, as the edge sends it.
async fn on_tunnel(
    sender: &mut hyper::client::conn::http2::SendRequest<Body>,
    authority: &str,
    path: &str,
    body: Body,
) -> (u16, http::HeaderMap, Bytes) {
    let method = if authority == wire::CONTROL_AUTHORITY || path.starts_with("/.postern/") {
        http::Method::POST
    } else {
        http::Method::GET
    };
    let request = Request::builder()
        .method(method)
        .uri(format!("https://{authority}{path}"))
        .body(body)
        .expect("request");
    sender.ready().await.expect("ready");
    let response = sender.send_request(request).await.expect("response");
    let (parts, body) = response.into_parts();
    let bytes = if authority == wire::CONTROL_AUTHORITY && path == wire::EVENTS_PATH {
        // The event stream stays open.
        tokio::spawn(async move {
            let _ = body.collect().await;
        });
        Bytes::new()
    } else {
        body.collect().await.expect("body").to_bytes()
    };
    (parts.status.as_u16(), parts.headers, bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_serves_only_the_hostnames_declared_for_its_tunnel() {
    let origin = TestOrigin::start().await;
    let (addr, pin, mut tunnels) = stand_in_edge().await;
    let tunnel_id = TunnelId::new_random();
    let token = TunnelToken {
        edge_addresses: vec![addr.to_string()],
        tunnel_id,
        secret: Secret::new("stand-in"),
        ca_sha256: pin,
    }
    .encode();
    let connector = ConnectorProcess::run(&token, 1, &[]);
    let mut sender = tokio::time::timeout(Duration::from_secs(20), tunnels.recv())
        .await
        .unwrap_or_else(|_| panic!("no tunnel connection; log:\n{}", connector.log()))
        .expect("a tunnel connection");

    let hello = Hello {
        connection_id: "c1".into(),
        tunnel_id,
        tunnel_name: "stand-in".into(),
        edge_version: "0".into(),
        wanted_connections: 0,
    };
    let control = wire::CONTROL_AUTHORITY;
    let (status, _, _) = on_tunnel(
        &mut sender,
        control,
        wire::HELLO_PATH,
        full(wire::to_json(&hello)),
    )
    .await;
    assert_eq!(status, 200);
    on_tunnel(&mut sender, control, wire::EVENTS_PATH, full("{}")).await;
    let push = ConfigPush {
        tcp_services: Vec::new(),
        version: 1,
        hostnames: vec![HostnameConfig {
            hostname: "declared.example.com".into(),
            service: origin.url(),
            origin: OriginSettings::default(),
            tls_passthrough: false,
            paths: Vec::new(),
        }],
        base: None,
        removed: Vec::new(),
    };
    let (status, _, body) = on_tunnel(
        &mut sender,
        control,
        wire::CONFIG_PATH,
        full(wire::to_json(&push)),
    )
    .await;
    assert_eq!(status, 200);
    let ack: ConfigAck = wire::from_json(&body).expect("ack");
    assert_eq!(ack.applied_version, 1);

    // An undeclared hostname: 404 from the connector, the origin never reached.
    let empty = || {
        Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed_unsync()
    };
    let (status, headers, _) =
        on_tunnel(&mut sender, "undeclared.example.com", "/hello", empty()).await;
    assert_eq!(status, 404);
    assert_eq!(
        headers.get(wire::ERROR_HEADER).map(|v| v.as_bytes()),
        Some(&b"unknown_hostname"[..])
    );
    assert_eq!(origin.hits(), 0);

    // The declared one reaches its origin; a visitor's `/.postern/` path is just a path.
    let (status, _, body) = on_tunnel(&mut sender, "declared.example.com", "/hello", empty()).await;
    assert_eq!(
        (status, body.as_ref()),
        (200, &b"hello from the origin"[..])
    );
    let (status, headers, _) = on_tunnel(
        &mut sender,
        "declared.example.com",
        wire::CONFIG_PATH,
        full(wire::to_json(&push)),
    )
    .await;
    assert_eq!(
        status, 404,
        "a visitor request was taken for a control message"
    );
    assert!(headers.get(wire::ERROR_HEADER).is_none());
    assert_eq!(origin.hits(), 2);
}
