//! `GrpcOrigin`: a real tonic gRPC server on `127.0.0.1:0` speaking HTTP/2 in cleartext
//! (`h2c://`), for the tests of HTTP/2 origins, and a client that reaches it through the edge's
//! HTTPS listener trusting the edge's visitors' CA. The service (`proto/echo.proto`):
//!
//! - `Say` answers the message;
//! - `Count` streams `count` numbered replies;
//! - `Fail` fails with `NOT_FOUND` and the message as the status message.

use std::net::SocketAddr;
use std::pin::Pin;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_stream::Stream;
use tonic::transport::{
    Certificate, Channel, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig,
};
use tonic::{Request, Response, Status};

use crate::edge::EdgeProcess;
use crate::pki::ServerCert;

/// The generated messages, client and server of `proto/echo.proto`.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod echo {
    tonic::include_proto!("echo");
}

use echo::echo_server::{Echo, EchoServer};
use echo::{CountReply, CountRequest, SayReply, SayRequest};

/// The most replies one `Count` call streams.
const MAX_COUNT: u32 = 10_000;

/// A running gRPC origin; stops when dropped.
pub struct GrpcOrigin {
    /// Where it listens.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl GrpcOrigin {
    /// Starts the server in cleartext (HTTP/2 with prior knowledge) on a fresh loopback port.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// Starts the server over TLS (ALPN `h2`) presenting `cert`.
    pub async fn start_tls(cert: &ServerCert) -> Self {
        let identity = Identity::from_pem(&cert.cert_pem, &cert.key_pem);
        Self::start_with(Some(ServerTlsConfig::new().identity(identity))).await
    }

    async fn start_with(tls: Option<ServerTlsConfig>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = tls {
            builder = builder.tls_config(tls).expect("server TLS");
        }
        let task = tokio::spawn(async move {
            let served = builder
                .add_service(EchoServer::new(EchoService))
                .serve_with_incoming(incoming)
                .await;
            if let Err(error) = served {
                eprintln!("the gRPC origin stopped: {error}");
            }
        });
        Self { addr, task }
    }

    /// `h2c://127.0.0.1:PORT`: the service to declare for a cleartext one.
    pub fn service(&self) -> String {
        format!("h2c://{}", self.addr)
    }

    /// `https://127.0.0.1:PORT`: the service to declare for one started with TLS.
    pub fn https_service(&self) -> String {
        format!("https://{}", self.addr)
    }
}

impl Drop for GrpcOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct EchoService;

type CountStream = Pin<Box<dyn Stream<Item = Result<CountReply, Status>> + Send>>;

#[tonic::async_trait]
impl Echo for EchoService {
    async fn say(&self, request: Request<SayRequest>) -> Result<Response<SayReply>, Status> {
        Ok(Response::new(SayReply {
            message: request.into_inner().message,
        }))
    }

    type CountStream = CountStream;

    async fn count(
        &self,
        request: Request<CountRequest>,
    ) -> Result<Response<Self::CountStream>, Status> {
        let count = request.into_inner().count.min(MAX_COUNT);
        let replies = (1..=count).map(|number| Ok(CountReply { number }));
        Ok(Response::new(Box::pin(tokio_stream::iter(replies))))
    }

    async fn fail(&self, request: Request<SayRequest>) -> Result<Response<SayReply>, Status> {
        Err(Status::not_found(request.into_inner().message))
    }
}

/// A gRPC channel to `https://hostname` through the edge's HTTPS listener (HTTP/2 by ALPN),
/// trusting the edge's visitors' CA.
pub async fn channel_through_edge(edge: &EdgeProcess, hostname: &str) -> Channel {
    let info = edge.client().edge().await.expect("GET /v1/edge");
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(info.visitor_ca_cert_pem.as_bytes()))
        .domain_name(hostname);
    let https = edge.addrs.https;
    let endpoint = Endpoint::from_shared(format!("https://{hostname}:{}", https.port()))
        .expect("endpoint")
        .tls_config(tls)
        .expect("TLS configuration");
    // The name is the hostname's; the socket goes to the edge on loopback.
    endpoint
        .connect_with_connector(ConnectTo(https))
        .await
        .expect("connect to the edge over HTTPS")
}

/// Connects every channel connection to `addr`, whatever its URI names.
#[derive(Clone)]
struct ConnectTo(SocketAddr);

impl tonic::codegen::Service<http::Uri> for ConnectTo {
    type Response = hyper_util::rt::TokioIo<TcpStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: http::Uri) -> Self::Future {
        let addr = self.0;
        Box::pin(async move {
            Ok(hyper_util::rt::TokioIo::new(
                TcpStream::connect(addr).await?,
            ))
        })
    }
}
