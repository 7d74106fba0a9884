//! The public reverse proxy: visitors' HTTP and HTTPS traffic (HTTP/1.1 and HTTP/2), routed
//! by `Host`/SNI through policies and label routes to a connector's tunnel.
//!
//! Every request runs these phases, top-down in this file, each a function:
//!
//! 1. [`find_hostname`]: the declared hostname named by `Host` (and, on HTTPS, the SNI).
//! 2. [`apply_policies`]: the hostname's policies; refused traffic stops here.
//! 3. [`pick_connector`]: a route by weight, then the least busy healthy connection; with
//!    several edge nodes and none here, the request goes to a node that holds one instead
//!    (`proxy/peer.rs`), which runs phases 3 to 6 for it.
//! 4. [`open_stream`]: the visitor's request as an HTTP/2 stream on that tunnel connection.
//! 5. [`forward`]: the response body streamed back, or the upgraded connection spliced.
//! 6. [`respond`]: connector faults turned into the edge's statuses; headers cleaned.
//!
//! Failures are [`ProxyError`]s, turned into statuses in one place (`proxy/error.rs`).

pub mod certs;
mod error;
mod forward;
mod framing;
mod limits;
mod peer;
mod route;
mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, request};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use postern_schema::api::Hostname;
use postern_schema::wire::{ConnectorFault, ERROR_HEADER};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

pub use error::{Fault, ProxyError};
pub(crate) use peer::serve_forwarded;

use crate::catalog::Snapshot;
use crate::metrics::{Metrics, PublicRequest};
use crate::policy::{Now, RequestFacts, Verdict};
use crate::state::EdgeState;
use crate::tunnel::registry::{StreamGuard, TunnelBody};
use forward::{Tracked, Upgrade, Visitor};
use framing::FramingGuard;
use limits::FirstByteDeadline;
use route::Pick;

/// The body type of every response the proxy sends.
pub type ProxyBody = TunnelBody;

/// How long a visitor may take to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long shutdown waits for in-flight visitor requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How long a request waits for its connection to push the configuration it was routed with.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(1);

/// How many connections one request may be offered to when they close under it.
const MAX_ATTEMPTS: usize = 3;

/// Serves visitors on the public HTTP listener until `cancel`.
pub async fn serve_http(listener: TcpListener, state: EdgeState, cancel: CancellationToken) {
    serve(listener, state, cancel, None).await;
}

/// Serves visitors on the public HTTPS listener until `cancel`.
pub async fn serve_https(listener: TcpListener, state: EdgeState, cancel: CancellationToken) {
    match tls::acceptor(&state) {
        Ok(acceptor) => serve(listener, state, cancel, Some(acceptor)).await,
        Err(error) => {
            tracing::error!(%error, "the HTTPS listener cannot start");
            cancel.cancelled().await;
        }
    }
}

async fn serve(
    listener: TcpListener,
    state: EdgeState,
    cancel: CancellationToken,
    tls: Option<TlsAcceptor>,
) {
    let tracker = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(limits::MAX_CONNECTIONS));
    loop {
        // At the connection limit, stop accepting until a connection ends.
        let permit = tokio::select! {
            _ = cancel.cancelled() => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accepting a visitor connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let span = tracing::debug_span!("visitor_conn", peer_addr = %peer);
        tracker.spawn(
            serve_connection(
                stream,
                peer,
                state.clone(),
                tls.clone(),
                cancel.clone(),
                permit,
            )
            .instrument(span),
        );
    }
    drop(listener);
    tracker.close();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait()).await;
}

/// What the proxy knows about a visitor's connection.
#[derive(Debug)]
struct Context {
    visitor: Visitor,
    /// The TLS server name, on HTTPS.
    sni: Option<String>,
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    state: EdgeState,
    tls: Option<TlsAcceptor>,
    cancel: CancellationToken,
    _slot: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    match tls {
        None => {
            let context = Context {
                visitor: Visitor::new(peer, "http"),
                sni: None,
            };
            // The deadline sits outside the guard, which holds a request head back until it is
            // complete: a head trickled from the first byte on must still be whole in time.
            let io = FirstByteDeadline::new(FramingGuard::new(stream, true));
            serve_visitor(io, context, state, cancel).await;
        }
        Some(acceptor) => {
            let stream =
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(error)) => {
                        tracing::debug!(%error, "visitor TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
            let sni = stream
                .get_ref()
                .1
                .server_name()
                .map(str::to_ascii_lowercase);
            let context = Context {
                visitor: Visitor::new(peer, "https"),
                sni,
            };
            // Only HTTP/1.1 needs the framing guard; HTTP/2 frames its own messages.
            let http1 = stream.get_ref().1.alpn_protocol() != Some(b"h2");
            let io = FirstByteDeadline::new(FramingGuard::new(stream, http1));
            serve_visitor(io, context, state, cancel).await;
        }
    }
}

/// Serves HTTP/1.1 or HTTP/2 (with upgrades and extended CONNECT) on one visitor connection.
async fn serve_visitor<I>(io: I, context: Context, state: EdgeState, cancel: CancellationToken)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let context = Arc::new(context);
    let service = service_fn(move |request| {
        let state = state.clone();
        let context = context.clone();
        async move { Ok::<_, Infallible>(handle(state, context, request).await) }
    });
    let mut builder = auto::Builder::new(postern_heap::BoxingExecutor);
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits::HEADER_READ_TIMEOUT)
        .max_buf_size(limits::MAX_HTTP1_BUFFER);
    builder
        .http2()
        .timer(TokioTimer::new())
        .enable_connect_protocol()
        .max_concurrent_streams(limits::MAX_CONCURRENT_STREAMS)
        .max_header_list_size(limits::MAX_HEADER_LIST as u32);
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, "visitor connection ended with an error");
            }
        }
        _ = cancel.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, connection).await;
        }
    }
}

/// What the metrics need to know about a request once it is answered. Every label value comes
/// from declared objects (the hostname, its routes, the tunnel's `release` label), never from
/// the request, so cardinality stays bounded.
#[derive(Debug, Default)]
struct Tally {
    hostname: Option<String>,
    route: Option<String>,
    /// The `release` label of the tunnel the request was sent to (empty when it has none);
    /// `None` until a connector is picked.
    release: Option<String>,
}

impl Tally {
    fn count(&self, metrics: &Metrics, status: StatusCode, elapsed: Duration) {
        let request = PublicRequest {
            hostname: self.hostname.as_deref().unwrap_or(""),
            route: self.route.as_deref(),
            release: self.release.as_deref(),
            status,
        };
        metrics.count_request(&request, elapsed);
    }
}

/// One visitor request, start to finish.
async fn handle(
    state: EdgeState,
    context: Arc<Context>,
    request: Request<Incoming>,
) -> Response<ProxyBody> {
    let request_id = new_request_id();
    let span = tracing::debug_span!(
        "request",
        request_id = %request_id,
        peer_addr = %context.visitor.peer,
        hostname = tracing::field::Empty,
        tunnel_id = tracing::field::Empty,
        config_version = tracing::field::Empty,
    );
    async move {
        let started = Instant::now();
        let snapshot = state.catalog.snapshot();
        let mut tally = Tally::default();
        let response = match proxy(
            &state,
            &snapshot,
            &context,
            request,
            &request_id,
            &mut tally,
        )
        .await
        {
            Ok(response) => response,
            Err(error) => error.into_response(&request_id),
        };
        tally.count(&state.metrics, response.status(), started.elapsed());
        tracing::debug!(status = response.status().as_u16(), "answered");
        response
    }
    .instrument(span)
    .await
}

/// A random (version 4) UUID for a request, from the thread's generator: no system call on
/// the request path, unlike `Uuid::new_v4`.
fn new_request_id() -> String {
    uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// The phases, in order.
async fn proxy(
    state: &EdgeState,
    snapshot: &Snapshot,
    context: &Context,
    request: Request<Incoming>,
    request_id: &str,
    tally: &mut Tally,
) -> Result<Response<ProxyBody>, ProxyError> {
    let (mut parts, body) = request.into_parts();
    if limits::header_list_size(&parts.headers) > limits::MAX_HEADER_LIST {
        return Err(ProxyError::HeadersTooLarge);
    }
    let hostname = find_hostname(snapshot, context, &parts)?;
    let host = hostname.spec.hostname.as_str();
    tally.hostname = Some(host.to_string());
    tracing::Span::current().record("hostname", host);

    apply_policies(state, snapshot, hostname, context, &parts)?;

    let pick = match pick_connector(state, snapshot, hostname, &[]) {
        Ok(pick) => pick,
        // No connection here: another edge node that holds one answers (`proxy/peer.rs`).
        Err(ProxyError::NoConnector) if state.cluster.node_id().is_some() => {
            return peer::forward(state, snapshot, hostname, context, parts, body, request_id)
                .await;
        }
        Err(error) => return Err(error),
    };

    let upgrade = forward::upgrade_of(&parts);
    let visitor_upgrade = upgrade.and_then(|_| parts.extensions.remove::<OnUpgrade>());
    let (body, body_failed) = limits::watch(body);
    let body = body.map_err(|e| Box::new(e) as _).boxed_unsync();
    let request = forward::tunnel_request(parts, body, host, &context.visitor, request_id, upgrade);
    let stream = match open_stream(state, snapshot, hostname, pick, request, tally).await {
        Ok(stream) => stream,
        // The visitor's body broke off or was malformed: the visitor's fault, not the tunnel's.
        Err(ProxyError::Tunnel(error)) if body_failed.get() => {
            return Err(ProxyError::VisitorBody(error));
        }
        Err(error) => return Err(error),
    };

    let switching = forward_response(stream, upgrade, visitor_upgrade);
    respond(switching, request_id)
}

/// Phase 1: the declared hostname this request is for, by its `Host` (the URI authority on
/// HTTP/2 and absolute-form requests). On HTTPS the host must be the SNI name the connection
/// was opened for (421 otherwise); an undeclared host is 404.
fn find_hostname<'s>(
    snapshot: &'s Snapshot,
    context: &Context,
    parts: &request::Parts,
) -> Result<&'s Hostname, ProxyError> {
    let host = request_host(parts).ok_or(ProxyError::MissingHost)?;
    if let Some(sni) = &context.sni
        && *sni != host
    {
        return Err(ProxyError::Misdirected {
            sni: sni.clone(),
            host,
        });
    }
    snapshot
        .hostnames
        .get(&host)
        .ok_or(ProxyError::UnknownHostname)
}

/// Phase 2: the hostname's policies, applied in order; the first deny wins. Runs before any
/// connector is picked, so refused traffic never reaches a tunnel. A refusal is
/// [`ProxyError::Rejected`] with its status and headers (`WWW-Authenticate`, `Retry-After`).
/// Policies in `report` mode let the request through; the engine counts and logs them.
fn apply_policies(
    state: &EdgeState,
    snapshot: &Snapshot,
    hostname: &Hostname,
    context: &Context,
    parts: &request::Parts,
) -> Result<(), ProxyError> {
    if hostname.spec.policy_ids.is_empty() {
        return Ok(());
    }
    let facts = RequestFacts {
        client_ip: context.visitor.peer.ip(),
        method: parts.method.as_str(),
        path: parts.uri.path(),
        authorization: parts
            .headers
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes),
        now: Now::read(),
    };
    match state.policies.check(snapshot, hostname, &facts) {
        Verdict::Allow => Ok(()),
        Verdict::Deny(denial) => {
            let mut headers = http::HeaderMap::new();
            denial.add_headers(&mut headers);
            Err(ProxyError::Rejected {
                status: denial.status(),
                headers,
                message: format!(
                    "refused by policy {} ({})",
                    denial.policy,
                    denial.reason.as_str()
                ),
            })
        }
    }
}

/// Phase 3: a healthy connection for the hostname, skipping those already `tried`: its
/// tunnel's, or for weighted routes a route by weight (failing over to the others) and a
/// tunnel whose labels match; the least busy connection wins. None is 503 at once.
fn pick_connector(
    state: &EdgeState,
    snapshot: &Snapshot,
    hostname: &Hostname,
    tried: &[String],
) -> Result<Pick, ProxyError> {
    route::pick(snapshot, &hostname.spec, &state.registry, tried).ok_or(ProxyError::NoConnector)
}

/// A stream opened on a tunnel connection: its response head, and the guard that counts it
/// as outstanding.
struct Stream {
    response: Response<Incoming>,
    guard: StreamGuard,
}

/// Phase 4: sends the rewritten request on the picked connection and waits for the response
/// head. If the connection closed before the request left the edge, it is offered to another
/// connection (at most [`MAX_ATTEMPTS`] in all); any other failure is 502.
async fn open_stream(
    state: &EdgeState,
    snapshot: &Snapshot,
    hostname: &Hostname,
    mut pick: Pick,
    mut request: Request<TunnelBody>,
    tally: &mut Tally,
) -> Result<Stream, ProxyError> {
    let mut tried = Vec::new();
    loop {
        tally.route = pick.route.clone();
        tally.release = Some(release_of(snapshot, pick.session.tunnel));
        let session = pick.session;
        // A hostname changed a moment ago may not have reached this connector yet.
        session.catch_up(snapshot.revision, CATCH_UP_TIMEOUT).await;
        let version = session.pushed_version();
        let span = tracing::Span::current();
        span.record("tunnel_id", tracing::field::display(session.tunnel));
        span.record("config_version", version);
        forward::set_config_version(&mut request, version);
        let guard = session.begin_stream();
        match session.send(request).await {
            Ok(response) => return Ok(Stream { response, guard }),
            Err(failure) => {
                tried.push(session.id.clone());
                match failure.request {
                    Some(returned) if tried.len() < MAX_ATTEMPTS => {
                        tracing::debug!(
                            "the connection closed before the stream opened; trying another"
                        );
                        request = returned;
                        pick = pick_connector(state, snapshot, hostname, &tried)?;
                    }
                    _ => return Err(ProxyError::Tunnel(failure.error)),
                }
            }
        }
    }
}

/// A response ready for the visitor, and whether it switches protocols.
struct Forwarded {
    response: Response<ProxyBody>,
    switching: Option<Upgrade>,
}

/// Phase 5: the connector's response, its body streamed as it arrives (the stream stays
/// counted until the body ends). For an accepted upgrade, the visitor's connection and the
/// tunnel stream are spliced in the background.
fn forward_response(
    stream: Stream,
    upgrade: Option<Upgrade>,
    visitor_upgrade: Option<OnUpgrade>,
) -> Forwarded {
    let Stream {
        mut response,
        guard,
    } = stream;
    match (upgrade, visitor_upgrade) {
        (Some(kind), Some(visitor)) if response.status() == StatusCode::OK => {
            let tunnel = hyper::upgrade::on(&mut response);
            tokio::spawn(splice(visitor, tunnel, guard).in_current_span());
            let (mut parts, _) = response.into_parts();
            if kind == Upgrade::Http1WebSocket {
                parts.status = StatusCode::SWITCHING_PROTOCOLS;
            }
            Forwarded {
                response: Response::from_parts(parts, crate::tunnel::session::full_body("")),
                switching: Some(kind),
            }
        }
        _ => Forwarded {
            response: response.map(|body| Tracked::new(body, guard).boxed()),
            switching: None,
        },
    }
}

/// Copies bytes both ways between an upgraded visitor connection and its tunnel stream.
async fn splice(visitor: OnUpgrade, tunnel: OnUpgrade, guard: StreamGuard) {
    let (visitor, tunnel) = match tokio::try_join!(visitor, tunnel) {
        Ok(pair) => pair,
        Err(error) => {
            tracing::debug!(%error, "upgrade failed");
            return;
        }
    };
    let mut visitor = TokioIo::new(visitor);
    let mut tunnel = TokioIo::new(tunnel);
    if let Err(error) = tokio::io::copy_bidirectional(&mut visitor, &mut tunnel).await {
        tracing::debug!(%error, "upgraded connection ended");
    }
    drop(guard);
}

/// Phase 6: a failure the connector reported (in `x-postern-error`) becomes the edge's own
/// answer (404, 502 or 504); otherwise the response goes out with hop-by-hop and internal
/// headers removed and the request id added.
fn respond(forwarded: Forwarded, request_id: &str) -> Result<Response<ProxyBody>, ProxyError> {
    let Forwarded {
        mut response,
        switching,
    } = forwarded;
    if let Some(fault) = response
        .headers()
        .get(HeaderName::from_static(ERROR_HEADER))
        .and_then(|v| v.to_str().ok())
        .and_then(ConnectorFault::parse)
    {
        return Err(ProxyError::Connector(fault));
    }
    forward::clean_response_headers(response.headers_mut(), request_id);
    if switching == Some(Upgrade::Http1WebSocket) {
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    }
    Ok(response)
}

/// The `release` label of `tunnel` in `snapshot`, empty when it has none.
fn release_of(snapshot: &Snapshot, tunnel: postern_schema::ids::TunnelId) -> String {
    snapshot
        .tunnels
        .get(&tunnel)
        .and_then(|t| t.spec.labels.get("release"))
        .cloned()
        .unwrap_or_default()
}

/// The host a request names, lowercase, without port or trailing dot.
fn request_host(parts: &request::Parts) -> Option<String> {
    let host = match parts.uri.authority() {
        Some(authority) => authority.host().to_string(),
        None => {
            let value = parts.headers.get(header::HOST)?.to_str().ok()?;
            value
                .trim()
                .parse::<http::uri::Authority>()
                .ok()?
                .host()
                .to_string()
        }
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(build: http::request::Builder) -> request::Parts {
        build.body(()).expect("valid").into_parts().0
    }

    #[test]
    fn the_host_comes_from_the_authority_or_the_host_header() {
        assert_eq!(
            request_host(&parts(
                Request::get("/").header("host", "App.Example.com:8080")
            )),
            Some("app.example.com".into())
        );
        assert_eq!(
            request_host(&parts(Request::get("https://a.example.com./x"))),
            Some("a.example.com".into())
        );
        assert_eq!(request_host(&parts(Request::get("/"))), None);
        assert_eq!(
            request_host(&parts(Request::get("/").header("host", "bad host"))),
            None
        );
    }
}
