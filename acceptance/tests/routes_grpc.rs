//! What real applications need from a route (issue 27, must show 1 and 2): a gRPC server behind
//! the connector over HTTP/2 (`h2c://`, and `https://` with `origin.http2`), called through the
//! edge over HTTPS with its trailers intact; and, set up with `terraform apply`, path routes
//! (`/api/**` and `/` to two origins, a path with policies of its own) and a wildcard hostname
//! serving two names that DNS answers, with an exact hostname under it winning.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use acceptance::fixture::{connections, token, tunnel_for};
use acceptance::grpc::echo::echo_client::EchoClient;
use acceptance::grpc::echo::{CountRequest, SayRequest};
use acceptance::grpc::{GrpcOrigin, channel_through_edge};
use acceptance::pki::TestCa;
use acceptance::provider::config;
use acceptance::visitor::{edge_http_client, http_url, https_client, https_url};
use acceptance::{ConnectorProcess, EdgeProcess, Terraform, TestOrigin};
use bytes::Bytes;
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use postern_schema::api::{HostnameSpec, OriginSettings};
use prost::Message as _;
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
    for cert in
        rustls_pki_types::CertificateDer::pem_slice_iter(info.visitor_ca_cert_pem.as_bytes())
    {
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

/// The configuration of the path and wildcard test: one tunnel; `shop.example.com` with
/// `/api` to the api origin and `/admin` behind a policy that refuses loopback clients;
/// `*.dev.example.com` to the web origin, and `special.dev.example.com` to the api origin.
fn routes_tf(web: &str, api: &str) -> String {
    config(&format!(
        r#"
resource "postern_tunnel" "web" {{
  name = "web"
}}

resource "postern_policy" "office_only" {{
  name      = "office-only"
  allow_ips = ["10.0.0.0/8"]
}}

resource "postern_hostname" "shop" {{
  hostname  = "shop.example.com"
  service   = "{web}"
  tunnel_id = postern_tunnel.web.id
  paths = [
    {{ prefix = "/api", service = "{api}" }},
    {{ prefix = "/admin", service = "{web}", policy_ids = [postern_policy.office_only.id] }},
  ]
}}

resource "postern_hostname" "dev" {{
  hostname  = "*.dev.example.com"
  service   = "{web}"
  tunnel_id = postern_tunnel.web.id
}}

resource "postern_hostname" "special" {{
  hostname  = "special.dev.example.com"
  service   = "{api}"
  tunnel_id = postern_tunnel.web.id
}}

output "token" {{
  value     = postern_tunnel.web.token
  sensitive = true
}}
"#
    ))
}

/// GET `https://host/path` through the edge; the status.
async fn get(edge: &EdgeProcess, host: &str, path: &str) -> reqwest::StatusCode {
    https_client(edge, host)
        .await
        .get(https_url(edge, host, path))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET https://{host}{path}: {e}"))
        .status()
}

/// One DNS question over UDP, asked again every 250 ms for at most 5 s.
async fn ask(server: SocketAddr, name: &str) -> Message {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("socket");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buffer = vec![0u8; 65_535];
    while Instant::now() < deadline {
        let mut question = Message::query();
        question.add_query(Query::query(
            Name::from_ascii(name).expect("name"),
            RecordType::A,
        ));
        socket
            .send_to(&question.to_vec().expect("encode"), server)
            .await
            .expect("send");
        if let Ok(Ok((len, _))) =
            tokio::time::timeout(Duration::from_millis(250), socket.recv_from(&mut buffer)).await
            && let Ok(answer) = Message::from_vec(&buffer[..len])
            && answer.metadata.id == question.metadata.id
        {
            return answer;
        }
    }
    panic!("no DNS answer for {name}");
}

/// The A records of an answer, and that each is owned by the name asked.
fn addresses(answer: &Message, name: &str) -> Vec<IpAddr> {
    answer
        .answers
        .iter()
        .filter_map(|record| {
            assert_eq!(record.name.to_ascii(), format!("{name}."));
            match &record.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                _ => None,
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn path_routes_and_wildcard_hostnames_route_as_declared_in_terraform() {
    let edge = EdgeProcess::start();
    let web = TestOrigin::start().await;
    let api = TestOrigin::start().await;
    let tf = Terraform::new(&edge);
    tf.write("main.tf", &routes_tf(&web.url(), &api.url()));
    tf.init();
    tf.apply().success();
    let clean = tf.plan_exit_code();
    assert_eq!(
        clean.code,
        0,
        "a plan right after apply is empty: {}",
        clean.all()
    );
    let _connector = ConnectorProcess::run(&tf.output_raw("token"), 2, &[]);
    let tunnel = edge.client().list_tunnels(None).await.expect("tunnels")[0].id;
    connections(&edge.client(), tunnel, 2).await;

    // Paths: `/api` and below to the api origin, everything else to the web origin.
    let hits = |web: &TestOrigin, api: &TestOrigin| (web.hits(), api.hits());
    assert_eq!(get(&edge, "shop.example.com", "/hello").await, 200);
    assert_eq!(hits(&web, &api), (1, 0));
    assert_eq!(get(&edge, "shop.example.com", "/api/hello").await, 404);
    assert_eq!(get(&edge, "shop.example.com", "/api").await, 404);
    assert_eq!(hits(&web, &api), (1, 2), "/api/** went to the api origin");
    get(&edge, "shop.example.com", "/apiary").await;
    get(&edge, "shop.example.com", "/").await;
    assert_eq!(
        hits(&web, &api),
        (3, 2),
        "/apiary and / went to the web origin"
    );
    let seen = api.requests();
    assert_eq!(
        seen[0].path, "/api/hello",
        "the path reaches the origin whole"
    );

    // A path's own policies: /admin refuses loopback clients, the rest of the hostname not.
    assert_eq!(get(&edge, "shop.example.com", "/admin").await, 403);
    assert_eq!(get(&edge, "shop.example.com", "/admin/users").await, 403);
    assert_eq!(get(&edge, "shop.example.com", "/%61dmin/users").await, 403);
    assert_eq!(hits(&web, &api), (3, 2), "refused requests reach no origin");
    get(&edge, "shop.example.com", "/administrator").await;
    assert_eq!(hits(&web, &api), (4, 2));

    // A wildcard serves every name one label below it, on HTTPS with a certificate for the
    // name; the exact hostname under it wins.
    assert_eq!(get(&edge, "a.dev.example.com", "/hello").await, 200);
    assert_eq!(get(&edge, "b.dev.example.com", "/hello").await, 200);
    assert_eq!(hits(&web, &api), (6, 2));
    assert_eq!(get(&edge, "special.dev.example.com", "/hello").await, 200);
    assert_eq!(
        hits(&web, &api),
        (6, 3),
        "special.dev went to its own (api) origin"
    );
    // (Over plain HTTP: the edge has no certificate for a name it does not serve.)
    let deeper = edge_http_client(&edge, "x.y.dev.example.com")
        .get(http_url(&edge, "x.y.dev.example.com", "/hello"))
        .send()
        .await
        .expect("GET http://x.y.dev.example.com/hello");
    assert_eq!(deeper.status(), 404);
    assert_eq!(hits(&web, &api), (6, 3), "a wildcard covers one label only");

    // DNS answers both names below the wildcard, the exact one, and nothing deeper.
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    for name in [
        "a.dev.example.com",
        "b.dev.example.com",
        "special.dev.example.com",
    ] {
        let answer = ask(edge.addrs.dns, name).await;
        assert_eq!(
            answer.metadata.response_code,
            ResponseCode::NoError,
            "{name}"
        );
        assert_eq!(addresses(&answer, name), [localhost], "{name}");
    }
    let deeper = ask(edge.addrs.dns, "x.y.dev.example.com").await;
    assert_eq!(deeper.metadata.response_code, ResponseCode::NXDomain);
}
