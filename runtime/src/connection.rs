//! One tunnel connection: dial the edge, TLS 1.3 with the client certificate (ALPN
//! `postern/1`), then serve HTTP/2 as the *server* on it. Requests for the control authority
//! under `/.postern/` are the edge's control messages (hello, config, events, drain,
//! certificate); every other stream is a visitor request for the origin side.

use std::convert::Infallible;
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
use postern_schema::wire::{
    self, ALPN_TUNNEL, CERTIFICATE_PATH, CONFIG_PATH, CONFIG_VERSION_HEADER, CONTROL_AUTHORITY,
    CertificateGrant, ConfigAck, ConfigPush, ConnectorFault, DRAIN_PATH, Drain, DrainReason,
    EVENTS_PATH, Event, HELLO_PATH, Hello, HelloAnswer, tuning,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::body::{self, BoxBody, ChannelBody};
use crate::origin::fault;
use crate::supervisor::Connector;
use crate::tls::edge_server_name;

/// How long dialing the edge may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a draining connector waits for the edge to confirm it stopped routing here
/// before it sends GOAWAY anyway.
const DRAIN_ACK_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a visitor request waits for a config push the edge already routed with.
const CONFIG_WAIT: Duration = Duration::from_secs(2);

/// Why a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
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
pub struct Outcome {
    /// The edge registered it (acknowledged config at least once).
    pub registered: bool,
    /// The edge told it to drain, and why.
    pub edge_drain: Option<DrainReason>,
}

/// How the supervisor steers one connection.
#[derive(Debug, Clone, Default)]
pub struct Steering {
    /// Fired by the supervisor: drain this connection (it moves to another edge address).
    pub leave: CancellationToken,
    /// Fired by the connection once the edge registered it (acknowledged a configuration).
    pub registered: CancellationToken,
}

/// Per-connection state shared by the streams of one connection.
struct Conn {
    connector: Arc<Connector>,
    /// The key of this connection's event stream among the connector's connections.
    index: usize,
    steering: Steering,
    events: Mutex<Option<mpsc::Sender<Bytes>>>,
    registered: AtomicBool,
    edge_drain: Mutex<Option<DrainReason>>,
    drain_requested: CancellationToken,
}

impl Conn {
    /// The first config acknowledgement registers the connection with the connector.
    fn register(&self) {
        if !self.registered.swap(true, Ordering::SeqCst) {
            self.connector.metrics.connection_up();
            if let Some(events) = self.events_sender() {
                self.connector.add_events(self.index, events);
            }
            tracing::info!("tunnel connection registered with the edge");
            self.steering.registered.cancel();
        }
    }

    fn deregister(&self) {
        self.close_events();
        if self.registered.load(Ordering::SeqCst) {
            self.connector.metrics.connection_down();
            self.connector.remove_events(self.index);
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
        self.connector.remove_events(self.index);
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

/// Dials `address` and serves the connection until it ends (lost, drained by the edge, or
/// drained because the connector is stopping or `steering.leave` fired: the supervisor moves
/// it to another edge address). Draining tells the edge first, so no request is lost. `index`
/// must be unique among the connector's live connections.
pub async fn run(
    connector: Arc<Connector>,
    index: usize,
    address: &str,
    tls: Arc<rustls::ClientConfig>,
    steering: &Steering,
) -> Result<Outcome, ConnectionError> {
    let tcp = tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(address))
        .await
        .map_err(|_| ConnectionError::Unreachable {
            address: address.to_string(),
            source: std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"),
        })?
        .map_err(|source| ConnectionError::Unreachable {
            address: address.to_string(),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    let stream = tokio::time::timeout(
        DIAL_TIMEOUT,
        TlsConnector::from(tls).connect(edge_server_name(), tcp),
    )
    .await
    .map_err(|_| ConnectionError::Tls {
        address: address.to_string(),
        source: std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out"),
    })?
    .map_err(|source| {
        if rejects_certificate(&source) {
            ConnectionError::CertificateRejected {
                address: address.to_string(),
            }
        } else {
            ConnectionError::Tls {
                address: address.to_string(),
                source,
            }
        }
    })?;
    if stream.get_ref().1.alpn_protocol() != Some(ALPN_TUNNEL) {
        return Err(ConnectionError::Alpn {
            address: address.to_string(),
        });
    }

    let conn = Arc::new(Conn {
        connector: connector.clone(),
        index,
        steering: steering.clone(),
        events: Mutex::new(None),
        registered: AtomicBool::new(false),
        edge_drain: Mutex::new(None),
        drain_requested: CancellationToken::new(),
    });
    let service = {
        let conn = conn.clone();
        service_fn(move |request| {
            let conn = conn.clone();
            // Boxed: hyper moves the stream's future (and so this one) by value while it
            // spawns it; a pointer is cheaper to move than the whole request state machine.
            Box::pin(async move { Ok::<_, Infallible>(handle(conn, request).await) })
        })
    };
    let connection = http2::Builder::new(postern_heap::BoxingExecutor)
        .timer(TokioTimer::new())
        .enable_connect_protocol()
        .keep_alive_interval(tuning::KEEPALIVE_INTERVAL)
        .keep_alive_timeout(tuning::KEEPALIVE_TIMEOUT)
        .max_header_list_size(wire::ACCEPTED_HEADER_LIST)
        .initial_stream_window_size(tuning::STREAM_WINDOW)
        .initial_connection_window_size(tuning::CONNECTION_WINDOW)
        .max_frame_size(tuning::MAX_FRAME)
        .max_send_buf_size(tuning::MAX_SEND_BUFFER)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);

    // Everything below keeps polling `connection`: a branch that awaited would stall the
    // HTTP/2 connection (streams, pings, and the edge's drain confirmation).
    let mut shutting_down = false;
    let mut drain_announced = false;
    let mut confirm_deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    let leaving = async {
        tokio::select! {
            _ = connector.draining() => {}
            _ = steering.leave.cancelled() => {}
        }
    };
    tokio::pin!(leaving);
    let result = loop {
        let deadline = async {
            match confirm_deadline.as_mut() {
                Some(sleep) => sleep.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = connection.as_mut() => break result,
            _ = &mut leaving, if !drain_announced && !shutting_down => {
                // Tell the edge first, so it stops routing here before the GOAWAY.
                drain_announced = true;
                if conn.try_send_event(&Event::Draining) {
                    confirm_deadline = Some(Box::pin(tokio::time::sleep(DRAIN_ACK_TIMEOUT)));
                } else {
                    conn.close_events();
                    connection.as_mut().graceful_shutdown();
                    shutting_down = true;
                }
            }
            _ = deadline, if !shutting_down => {
                tracing::debug!("the edge did not confirm the drain in time; closing anyway");
                conn.close_events();
                connection.as_mut().graceful_shutdown();
                shutting_down = true;
            }
            _ = conn.drain_requested.cancelled(), if !shutting_down => {
                conn.close_events();
                connection.as_mut().graceful_shutdown();
                shutting_down = true;
            }
        }
    };
    conn.deregister();
    let registered = conn.registered.load(Ordering::SeqCst);
    let edge_drain = *conn.edge_drain.lock().unwrap_or_else(|p| p.into_inner());
    match result {
        Ok(()) => Ok(Outcome {
            registered,
            edge_drain,
        }),
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
            Ok(Outcome {
                registered,
                edge_drain,
            })
        }
    }
}

/// One stream opened by the edge.
async fn handle(conn: Arc<Conn>, request: Request<Incoming>) -> Response<BoxBody> {
    let is_control = request
        .uri()
        .authority()
        .is_some_and(|a| a.as_str() == CONTROL_AUTHORITY);
    if is_control {
        control(&conn, request).await
    } else {
        visitor(&conn, request).await
    }
}

/// A visitor request: routed by its authority to a declared hostname, or 404.
async fn visitor(conn: &Conn, request: Request<Incoming>) -> Response<BoxBody> {
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
        let routing = conn
            .connector
            .orchestrator
            .routing_at_least(wanted_version, CONFIG_WAIT)
            .await;
        tracing::Span::current().record("config_version", routing.version);
        let response = match routing.ingress(&host) {
            Some(ingress) => conn.connector.origins.serve(&ingress, request).await,
            None => {
                tracing::debug!("refused a hostname not declared for this tunnel");
                fault(
                    ConnectorFault::UnknownHostname,
                    "this connector does not serve that hostname",
                )
            }
        };
        conn.connector.metrics.request(response.status());
        tracing::debug!(status = response.status().as_u16(), "answered");
        response
    }
    .instrument(span)
    .await
}

/// A control request from the edge.
async fn control(conn: &Conn, request: Request<Incoming>) -> Response<BoxBody> {
    if request.method() != Method::POST {
        return status(StatusCode::METHOD_NOT_ALLOWED);
    }
    let path = request.uri().path().to_string();
    let connector = &conn.connector;
    match path.as_str() {
        HELLO_PATH => {
            let Some(hello) = read::<Hello>(request).await else {
                return status(StatusCode::BAD_REQUEST);
            };
            tracing::debug!(connection_id = %hello.connection_id, tunnel_name = %hello.tunnel_name, "hello from the edge");
            json(&HelloAnswer {
                connector_id: connector.id.clone(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                draining: connector.is_draining(),
            })
        }
        EVENTS_PATH => {
            let (sender, body) = ChannelBody::new(16);
            *conn.events.lock().unwrap_or_else(|p| p.into_inner()) = Some(sender.clone());
            if conn.registered.load(Ordering::SeqCst) {
                connector.add_events(conn.index, sender);
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
            conn.register();
            json(&ConfigAck { applied_version })
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
            *conn.edge_drain.lock().unwrap_or_else(|p| p.into_inner()) = Some(drain.reason);
            conn.drain_requested.cancel();
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
