//! One tunnel connection: the connector dials the edge, then serves HTTP/2 as the *server* on
//! the socket it dialed. Requests for the control authority under `/.postern/` are the edge's
//! control messages (hello, config, events, drain, certificate); every other stream is a
//! visitor request for the origin side.
//!
//! A connection runs these phases, top-down in this file, each a function:
//!
//! 1. [`dial`]: TCP to one of the token's edge addresses.
//! 2. [`handshake`]: TLS 1.3 with the client certificate; the edge must chain to the pinned CA.
//! 3. [`check_alpn`]: the edge agreed on ALPN `postern/1`.
//! 4. [`serve_http2`]: the HTTP/2 server with the tunnel's settings; every stream the edge
//!    opens goes to [`handle`] ([`control`] or [`visitor`]).
//! 5. [`serve_until_closed`]: streams are served until the connection ends; when the connector
//!    stops or the supervisor moves the connection, it drains first (the edge is told, so no
//!    request is lost).
//! 6. [`outcome`]: how it ended, for the supervisor: an [`Outcome`], or a [`ConnectionError`]
//!    when it never came up.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderName;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use postern_schema::wire::{
    self, ALPN_TUNNEL, CERTIFICATE_PATH, CONFIG_PATH, CONFIG_VERSION_HEADER, CONTROL_AUTHORITY,
    CertificateGrant, ConfigAck, ConfigPush, ConnectorFault, DRAIN_PATH, Drain, DrainReason,
    EVENTS_PATH, Event, HELLO_PATH, Hello, HelloAnswer, TCP_HOSTNAME_HEADER, TCP_PROTOCOL,
    TCP_SERVICE_HEADER, tuning,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::body::{self, BoxBody, ChannelBody};
use crate::connector::{ConnectionKey, Connector};
use crate::egress::Egress;
use crate::origin::{fault, serve_tcp};
use crate::tls::edge_server_name;

/// How long dialing the edge, and then the TLS handshake, may each take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a draining connector waits for the edge to confirm it stopped routing here
/// before it sends GOAWAY anyway.
const DRAIN_ACK_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a visitor request waits for a config push the edge already routed with.
const CONFIG_WAIT: Duration = Duration::from_secs(2);

/// Why a connection failed before it was registered.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectionError {
    /// The edge could not be reached.
    #[error("cannot reach the edge at {address}")]
    Unreachable {
        /// The address.
        address: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// TLS failed: the edge is not the pinned one, or it refused the client certificate.
    #[error("TLS with the edge at {address} failed")]
    Tls {
        /// The address.
        address: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The edge refused this connector's certificate (expired or unknown): enrol again.
    #[error("the edge at {address} refused this connector's certificate")]
    CertificateRejected {
        /// The address.
        address: String,
    },
    /// The edge does not speak the tunnel protocol.
    #[error("the edge at {address} did not agree on ALPN postern/1")]
    Alpn {
        /// The address.
        address: String,
    },
    /// HTTP/2 failed before the connection was registered.
    #[error("the tunnel connection to {address} failed")]
    Http2 {
        /// The address.
        address: String,
        /// Why.
        #[source]
        source: hyper::Error,
    },
}

/// How a connection that did come up ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// The edge registered it (acknowledged config at least once).
    pub(crate) registered: bool,
    /// The edge told it to drain, and why.
    pub(crate) edge_drain: Option<DrainReason>,
}

/// How the supervisor steers one connection.
#[derive(Debug, Clone, Default)]
pub(crate) struct Steering {
    /// Fired by the supervisor: drain this connection (it moves to another edge address).
    pub(crate) leave: CancellationToken,
    /// Fired by the connection once the edge registered it (acknowledged a configuration).
    pub(crate) registered: CancellationToken,
}

/// Dials `address` and serves the connection until it ends (lost, drained by the edge, or
/// drained because the connector is stopping or `steering.leave` fired: the supervisor moves
/// it to another edge address). `key` must be unique among the connector's live connections.
pub(crate) async fn run(
    connector: Arc<Connector>,
    key: ConnectionKey,
    address: &str,
    tls: Arc<rustls::ClientConfig>,
    steering: &Steering,
) -> Result<Outcome, ConnectionError> {
    let tcp = dial(&connector.egress, address).await?;
    let stream = handshake(tcp, tls, address).await?;
    check_alpn(&stream, address)?;
    let connection = Arc::new(Connection::new(connector, key, steering.clone()));
    let http2 = serve_http2(stream, connection.clone());
    let result = serve_until_closed(http2, &connection).await;
    connection.deregister();
    outcome(result, &connection, address)
}

/// Phase 1: TCP to `address`, with Nagle off. Fails with [`ConnectionError::Unreachable`]
/// when the connection is refused or takes longer than [`DIAL_TIMEOUT`].
async fn dial(egress: &Egress, address: &str) -> Result<TcpStream, ConnectionError> {
    let unreachable = |source| ConnectionError::Unreachable {
        address: address.to_string(),
        source,
    };
    let tcp = tokio::time::timeout(DIAL_TIMEOUT, egress.connect(address))
        .await
        .map_err(|_| {
            unreachable(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connect timed out",
            ))
        })?
        .map_err(unreachable)?;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// Phase 2, right after the dial: TLS 1.3 with `tls` (the pinned CA, the client certificate,
/// ALPN `postern/1`). Fails with [`ConnectionError::CertificateRejected`] when the edge
/// refuses the certificate (the supervisor then enrols again), and with
/// [`ConnectionError::Tls`] otherwise (the edge is not the pinned one, a timeout after
/// [`DIAL_TIMEOUT`], the connection lost).
async fn handshake(
    tcp: TcpStream,
    tls: Arc<rustls::ClientConfig>,
    address: &str,
) -> Result<TlsStream<TcpStream>, ConnectionError> {
    let handshake = TlsConnector::from(tls).connect(edge_server_name(), tcp);
    match tokio::time::timeout(DIAL_TIMEOUT, handshake).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(source)) if rejects_certificate(&source) => {
            Err(ConnectionError::CertificateRejected {
                address: address.to_string(),
            })
        }
        Ok(Err(source)) => Err(ConnectionError::Tls {
            address: address.to_string(),
            source,
        }),
        Err(_) => Err(ConnectionError::Tls {
            address: address.to_string(),
            source: std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out"),
        }),
    }
}

/// Phase 3, once the handshake is done: the edge must have agreed on ALPN `postern/1`;
/// otherwise it does not speak the tunnel protocol ([`ConnectionError::Alpn`]).
fn check_alpn(stream: &TlsStream<TcpStream>, address: &str) -> Result<(), ConnectionError> {
    if stream.get_ref().1.alpn_protocol() == Some(ALPN_TUNNEL) {
        Ok(())
    } else {
        Err(ConnectionError::Alpn {
            address: address.to_string(),
        })
    }
}

/// Phase 4: the HTTP/2 server on the TLS stream (the connector is the server on the socket
/// it dialed), with the tunnel's settings from [`tuning`]; every stream the edge opens goes
/// to [`handle`]. Nothing fails here: HTTP/2 errors surface while the connection is served.
fn serve_http2(
    stream: TlsStream<TcpStream>,
    connection: Arc<Connection>,
) -> impl GracefulConnection<Error = hyper::Error> {
    let service = service_fn(move |request| {
        let connection = connection.clone();
        // Boxed: hyper moves the stream's future (and so this one) by value while it spawns
        // it; a pointer is cheaper to move than the whole request state machine.
        Box::pin(async move { Ok::<_, Infallible>(handle(connection, request).await) })
    });
    http2::Builder::new(postern_heap::BoxingExecutor)
        .timer(TokioTimer::new())
        .enable_connect_protocol()
        .keep_alive_interval(tuning::KEEPALIVE_INTERVAL)
        .keep_alive_timeout(tuning::KEEPALIVE_TIMEOUT)
        .max_concurrent_streams(tuning::MAX_CONCURRENT_STREAMS)
        .max_header_list_size(wire::ACCEPTED_HEADER_LIST)
        .initial_stream_window_size(tuning::STREAM_WINDOW)
        .initial_connection_window_size(tuning::CONNECTION_WINDOW)
        .max_frame_size(tuning::MAX_FRAME)
        .max_send_buf_size(tuning::MAX_SEND_BUFFER)
        .serve_connection(TokioIo::new(stream), service)
}

/// Phase 5: serves `http2` until it ends, and drains it first when the connector stops or
/// the supervisor fires `leave`: the edge is told ([`Event::Draining`]) and GOAWAY follows
/// once it confirms, or after [`DRAIN_ACK_TIMEOUT`]. A drain the edge asks for itself
/// (`/.postern/drain`) sends GOAWAY at once. Returns how HTTP/2 ended: an error means the
/// connection was lost (or never got going).
async fn serve_until_closed(
    http2: impl GracefulConnection<Error = hyper::Error>,
    connection: &Connection,
) -> Result<(), hyper::Error> {
    tokio::pin!(http2);
    // Everything below keeps polling `http2`: a branch that awaited would stall the HTTP/2
    // connection (streams, pings, and the edge's drain confirmation).
    let mut shutting_down = false;
    let mut drain_announced = false;
    let mut confirm_deadline: Option<Pin<Box<tokio::time::Sleep>>> = None;
    let leaving = async {
        tokio::select! {
            _ = connection.connector.draining() => {}
            _ = connection.steering.leave.cancelled() => {}
        }
    };
    tokio::pin!(leaving);
    loop {
        let deadline = async {
            match confirm_deadline.as_mut() {
                Some(sleep) => sleep.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = http2.as_mut() => return result,
            _ = &mut leaving, if !drain_announced && !shutting_down => {
                // Tell the edge first, so it stops routing here before the GOAWAY.
                drain_announced = true;
                if connection.try_send_event(&Event::Draining) {
                    confirm_deadline = Some(Box::pin(tokio::time::sleep(DRAIN_ACK_TIMEOUT)));
                } else {
                    connection.close_events();
                    http2.as_mut().graceful_shutdown();
                    shutting_down = true;
                }
            }
            _ = deadline, if !shutting_down => {
                tracing::debug!("the edge did not confirm the drain in time; closing anyway");
                connection.close_events();
                http2.as_mut().graceful_shutdown();
                shutting_down = true;
            }
            _ = connection.drain_requested.cancelled(), if !shutting_down => {
                connection.close_events();
                http2.as_mut().graceful_shutdown();
                shutting_down = true;
            }
        }
    }
}

/// Phase 6, after the connection ended: what the supervisor learns. A connection that was
/// registered, or that the edge drained, ends with an [`Outcome`] whatever HTTP/2 said; one
/// that failed before either is a [`ConnectionError`]: `CertificateRejected` when the edge
/// refused the certificate after the handshake (TLS 1.3 reports that late), `Http2` otherwise.
fn outcome(
    result: Result<(), hyper::Error>,
    connection: &Connection,
    address: &str,
) -> Result<Outcome, ConnectionError> {
    let registered = connection.registered.load(Ordering::SeqCst);
    let edge_drain = *connection
        .edge_drain
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let outcome = Outcome {
        registered,
        edge_drain,
    };
    match result {
        Ok(()) => Ok(outcome),
        Err(error) if !registered && rejects_certificate(&error) => {
            Err(ConnectionError::CertificateRejected {
                address: address.to_string(),
            })
        }
        Err(error) if !registered && edge_drain.is_none() => Err(ConnectionError::Http2 {
            address: address.to_string(),
            source: error,
        }),
        Err(error) => {
            tracing::debug!(%error, "tunnel connection ended with an error");
            Ok(outcome)
        }
    }
}

/// What the streams of one connection share.
struct Connection {
    connector: Arc<Connector>,
    /// The key of this connection's event stream among the connector's connections.
    key: ConnectionKey,
    steering: Steering,
    events: Mutex<Option<mpsc::Sender<Bytes>>>,
    registered: AtomicBool,
    edge_drain: Mutex<Option<DrainReason>>,
    drain_requested: CancellationToken,
}

impl Connection {
    fn new(connector: Arc<Connector>, key: ConnectionKey, steering: Steering) -> Self {
        Self {
            connector,
            key,
            steering,
            events: Mutex::new(None),
            registered: AtomicBool::new(false),
            edge_drain: Mutex::new(None),
            drain_requested: CancellationToken::new(),
        }
    }

    /// The first config acknowledgement registers the connection with the connector.
    fn register(&self) {
        if !self.registered.swap(true, Ordering::SeqCst) {
            self.connector.metrics.connection_up();
            if let Some(events) = self.events_sender() {
                self.connector.add_events(self.key, events);
            }
            tracing::info!("tunnel connection registered with the edge");
            self.steering.registered.cancel();
        }
    }

    fn deregister(&self) {
        self.close_events();
        if self.registered.load(Ordering::SeqCst) {
            self.connector.metrics.connection_down();
            self.connector.remove_events(self.key);
        }
    }

    fn events_sender(&self) -> Option<mpsc::Sender<Bytes>> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Ends the event stream, so a graceful shutdown is not held open by it.
    fn close_events(&self) {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.connector.remove_events(self.key);
    }

    /// Queues `event` on this connection's event stream without waiting.
    fn try_send_event(&self, event: &Event) -> bool {
        let Some(sender) = self.events_sender() else {
            return false;
        };
        let mut line = wire::to_json(event);
        line.push(b'\n');
        sender.try_send(Bytes::from(line)).is_ok()
    }
}

/// One stream opened by the edge.
async fn handle(connection: Arc<Connection>, request: Request<Incoming>) -> Response<BoxBody> {
    let is_control = request
        .uri()
        .authority()
        .is_some_and(|a| a.as_str() == CONTROL_AUTHORITY);
    let is_tcp = request.method() == Method::CONNECT
        && request
            .extensions()
            .get::<hyper::ext::Protocol>()
            .is_some_and(|p| p.as_str() == TCP_PROTOCOL);
    if is_control {
        control(&connection, request).await
    } else if is_tcp {
        tcp(&connection, request).await
    } else {
        visitor(&connection, request).await
    }
}

/// A TCP service's stream, or a passthrough hostname's: to its declared origin, or 404 when
/// this tunnel does not serve it.
async fn tcp(connection: &Connection, request: Request<Incoming>) -> Response<BoxBody> {
    let header = |name: &'static str| {
        request
            .headers()
            .get(HeaderName::from_static(name))
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let service = header(TCP_SERVICE_HEADER).unwrap_or_default();
    let passthrough = header(TCP_HOSTNAME_HEADER);
    let wanted_version = header(CONFIG_VERSION_HEADER)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let span = tracing::debug_span!("tcp_stream", tcp_service_id = %service, hostname = passthrough.as_deref().unwrap_or_default());
    async {
        let routing = connection
            .connector
            .orchestrator
            .routing_at_least(wanted_version, CONFIG_WAIT)
            .await;
        // A visitor's TLS to a passthrough hostname, or a TCP service's connection.
        let ingress = match &passthrough {
            Some(hostname) => routing.passthrough_ingress(hostname),
            None => routing.tcp_ingress(&service),
        };
        let response = match ingress {
            Some(ingress) => serve_tcp(&ingress, request).await,
            None => {
                tracing::debug!("refused a TCP stream not declared for this tunnel");
                fault(
                    ConnectorFault::UnknownHostname,
                    "this connector does not serve that TCP service or passthrough hostname",
                )
            }
        };
        connection.connector.metrics.request(response.status());
        response
    }
    .instrument(span)
    .await
}

/// A visitor request: routed by its authority to a declared hostname, or 404.
async fn visitor(connection: &Connection, request: Request<Incoming>) -> Response<BoxBody> {
    let header = |name: HeaderName| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let request_id = header(HeaderName::from_static("x-request-id")).unwrap_or_default();
    let wanted_version = header(HeaderName::from_static(CONFIG_VERSION_HEADER))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let host = request
        .uri()
        .authority()
        .map(|a| a.host().trim_end_matches('.').to_ascii_lowercase())
        .unwrap_or_default();
    let span = tracing::debug_span!(
        "request",
        request_id = %request_id,
        hostname = %host,
        config_version = tracing::field::Empty,
    );
    async {
        let routing = connection
            .connector
            .orchestrator
            .routing_at_least(wanted_version, CONFIG_WAIT)
            .await;
        tracing::Span::current().record("config_version", routing.version);
        let response = match routing.ingress(&host) {
            Some(ingress) => connection.connector.origins.serve(&ingress, request).await,
            None => {
                tracing::debug!("refused a hostname not declared for this tunnel");
                fault(
                    ConnectorFault::UnknownHostname,
                    "this connector does not serve that hostname",
                )
            }
        };
        connection.connector.metrics.request(response.status());
        tracing::debug!(status = response.status().as_u16(), "answered");
        response
    }
    .instrument(span)
    .await
}

/// A control request from the edge.
async fn control(connection: &Connection, request: Request<Incoming>) -> Response<BoxBody> {
    if request.method() != Method::POST {
        return status(StatusCode::METHOD_NOT_ALLOWED);
    }
    let path = request.uri().path().to_string();
    let connector = &connection.connector;
    match path.as_str() {
        HELLO_PATH => {
            let Some(hello) = read::<Hello>(request).await else {
                return status(StatusCode::BAD_REQUEST);
            };
            tracing::debug!(connection_id = %hello.connection_id, tunnel_name = %hello.tunnel_name, wanted_connections = hello.wanted_connections, "hello from the edge");
            connector.note_wanted_connections(hello.wanted_connections);
            json(&HelloAnswer {
                connector_id: connector.id.clone(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                draining: connector.is_draining(),
                deltas: true,
            })
        }
        EVENTS_PATH => {
            let (sender, body) = ChannelBody::new(16);
            *connection.events.lock().unwrap_or_else(|p| p.into_inner()) = Some(sender.clone());
            if connection.registered.load(Ordering::SeqCst) {
                connector.add_events(connection.key, sender);
            }
            let mut response = Response::new(body.boxed_unsync());
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/x-ndjson"),
            );
            response
        }
        CONFIG_PATH => {
            let Some(push) = read::<ConfigPush>(request).await else {
                return status(StatusCode::BAD_REQUEST);
            };
            let applied_version = connector.orchestrator.apply(push);
            connector.metrics.set_config_version(applied_version);
            connection.register();
            let refused = connector.orchestrator.routing().refused.clone();
            json(&ConfigAck {
                applied_version,
                refused,
            })
        }
        DRAIN_PATH => {
            let Some(drain) = read::<Drain>(request).await else {
                return status(StatusCode::BAD_REQUEST);
            };
            match drain.reason {
                DrainReason::TunnelDeleted => connector.fail_tunnel_deleted(),
                DrainReason::EdgeShutdown => {
                    tracing::info!("the edge is shutting down; this connection will reconnect")
                }
                DrainReason::ConnectorDraining => {
                    tracing::debug!("the edge stopped routing to this connection")
                }
            }
            *connection
                .edge_drain
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(drain.reason);
            connection.drain_requested.cancel();
            json(&serde_json::json!({}))
        }
        CERTIFICATE_PATH => {
            let Some(grant) = read::<CertificateGrant>(request).await else {
                return status(StatusCode::BAD_REQUEST);
            };
            let decoded = wire::decode_der(&grant.cert_der, "cert_der")
                .and_then(|cert| Ok((cert, wire::decode_der(&grant.ca_der, "ca_der")?)));
            match decoded {
                Ok((cert, ca)) => match connector.identity.accept(&cert, &ca) {
                    Ok(()) => json(&serde_json::json!({})),
                    Err(error) => {
                        tracing::warn!(%error, "refused a renewed certificate");
                        status(StatusCode::BAD_REQUEST)
                    }
                },
                Err(_) => status(StatusCode::BAD_REQUEST),
            }
        }
        _ => status(StatusCode::NOT_FOUND),
    }
}

async fn read<T: DeserializeOwned>(request: Request<Incoming>) -> Option<T> {
    let bytes = Limited::new(request.into_body(), wire::MAX_CONTROL_BODY)
        .collect()
        .await
        .ok()?
        .to_bytes();
    match wire::from_json(&bytes) {
        Ok(message) => Some(message),
        Err(error) => {
            tracing::warn!(%error, "malformed control message from the edge");
            None
        }
    }
}

fn json<T: Serialize>(message: &T) -> Response<BoxBody> {
    let mut response = Response::new(body::full(wire::to_json(message)));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn status(status: StatusCode) -> Response<BoxBody> {
    let mut response = Response::new(body::empty());
    *response.status_mut() = status;
    response
}

/// Does this error say the edge refused our client certificate?
fn rejects_certificate(error: &(dyn std::error::Error + 'static)) -> bool {
    use rustls::AlertDescription as Alert;
    let mut current = Some(error);
    while let Some(error) = current {
        let tls = error.downcast_ref::<rustls::Error>().or_else(|| {
            error
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(rustls::Error::AlertReceived(alert)) = tls {
            return matches!(
                alert,
                Alert::BadCertificate
                    | Alert::CertificateExpired
                    | Alert::CertificateRevoked
                    | Alert::CertificateUnknown
                    | Alert::UnknownCA
                    | Alert::AccessDenied
                    | Alert::CertificateRequired
                    | Alert::DecryptError
            );
        }
        current = error.source();
    }
    false
}
