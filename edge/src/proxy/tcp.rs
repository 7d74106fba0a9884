//! TCP services: a listener per service port on every worker, kept in step with the catalog;
//! each accepted connection runs these phases, top-down in this file:
//!
//! 1. [`admit`]: the client's share of connections and the service's policies (IP lists,
//!    connections per second per client); a refused connection is closed before anything
//!    is sent down a tunnel.
//! 2. [`open_stream`]: a healthy connection of the service's tunnel (or routes), and on it an
//!    extended CONNECT stream with `:protocol` `postern-tcp` naming the service; the
//!    connector dials the origin and answers 200, or an error status when it cannot.
//! 3. [`splice`]: bytes both ways until both sides are done; an end of stream on one side
//!    is passed on as a half-close (FIN, or END_STREAM) on the other. A tunnel that breaks
//!    closes the visitor's connection at once; deleting the service or stopping the edge
//!    closes it too.
//!
//! Counted: `postern_edge_tcp_connections_total{service,outcome}`,
//! `postern_edge_tcp_bytes_total{service,direction}` and
//! `postern_edge_tcp_connection_duration_seconds{service}`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{Method, Request, StatusCode};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use postern_schema::api::Target;
use postern_schema::ids::TcpServiceId;
use postern_schema::wire::{TCP_AUTHORITY, TCP_HOSTNAME_HEADER, TCP_PROTOCOL, TCP_SERVICE_HEADER};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::forward;
use super::request::Proxy;
use super::route;
use super::shares::Share;
use crate::body;
use crate::catalog::Snapshot;
use crate::policy::Verdict;
use crate::tcp_ports::TcpPorts;
use crate::tunnel::StreamGuard;

/// How long a connection waits for its tunnel connection to have the configuration that
/// declares the service (one created a moment ago).
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(1);

/// The listeners of one service on this node.
struct Running {
    port: u16,
    stop: CancellationToken,
}

/// Keeps one listener per TCP service port on every worker, as the catalog declares them,
/// until `cancel`: a new service is bound, a deleted one (or one whose port changed) is
/// stopped and its connections closed.
pub(crate) async fn serve_tcp_services(
    proxy: Arc<Proxy>,
    ports: Arc<TcpPorts>,
    workers: Arc<[Handle]>,
    cancel: CancellationToken,
) {
    let mut snapshots = proxy.catalog.subscribe();
    let mut running: HashMap<TcpServiceId, Running> = HashMap::new();
    loop {
        let snapshot = snapshots.borrow_and_update().clone();
        running.retain(|id, listeners| {
            let keep = snapshot
                .tcp_services
                .get(id)
                .is_some_and(|s| s.spec.listen_port == Some(listeners.port));
            if !keep {
                listeners.stop.cancel();
                ports.release(listeners.port);
            }
            keep
        });
        for service in snapshot.tcp_services.values() {
            if running.contains_key(&service.id) {
                continue;
            }
            let Some(port) = service.spec.listen_port else {
                continue;
            };
            match ports.bind(port) {
                Ok(listeners) => {
                    let stop = cancel.child_token();
                    for (index, listener) in listeners.into_iter().enumerate() {
                        let Some(worker) = workers.get(index % workers.len().max(1)) else {
                            break;
                        };
                        let span =
                            tracing::info_span!("tcp_service", service = %service.spec.name, port);
                        worker.spawn(
                            accept(listener, service.id, proxy.clone(), stop.clone())
                                .instrument(span),
                        );
                    }
                    tracing::info!(service = %service.spec.name, listen = %ports.listen(port), "TCP service listening");
                    running.insert(service.id, Running { port, stop });
                }
                Err(error) => {
                    // Tried again at the next catalog change (or resync).
                    tracing::error!(service = %service.spec.name, port, error = %postern_schema::error_chain(&error), "cannot listen for a TCP service");
                }
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            changed = snapshots.changed() => if changed.is_err() { break },
        }
    }
    for listeners in running.values() {
        listeners.stop.cancel();
    }
}

/// Accepts on one worker's socket of a service's port until `stop`.
async fn accept(
    listener: std::net::TcpListener,
    id: TcpServiceId,
    proxy: Arc<Proxy>,
    stop: CancellationToken,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, "a worker cannot take its TCP service listener");
            return;
        }
    };
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accepting a TCP connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let span =
            tracing::debug_span!("tcp_conn", peer_addr = %peer, tunnel_id = tracing::field::Empty);
        tokio::spawn(connection(stream, peer, id, proxy.clone(), stop.clone()).instrument(span));
    }
}

/// Why a connection was not carried: the `outcome` label of its count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    ClientShare,
    Policy(&'static str),
    Stale,
    NoConnector,
    NoStreamSlot,
    Tunnel,
    Origin,
}

impl Refusal {
    fn as_str(self) -> &'static str {
        match self {
            Refusal::ClientShare => "client_share",
            Refusal::Policy(reason) => reason,
            Refusal::Stale => "stale",
            Refusal::NoConnector => "no_connector",
            Refusal::NoStreamSlot => "no_stream_slot",
            Refusal::Tunnel => "tunnel_error",
            Refusal::Origin => "origin_unreachable",
        }
    }
}

/// One visitor connection, start to finish.
async fn connection(
    visitor: TcpStream,
    peer: SocketAddr,
    id: TcpServiceId,
    proxy: Arc<Proxy>,
    stop: CancellationToken,
) {
    let started = Instant::now();
    let snapshot = proxy.catalog.snapshot();
    let Some(service) = snapshot.tcp_services.get(&id) else {
        return; // deleted a moment ago
    };
    let name = service.spec.name.as_str();
    let _ = visitor.set_nodelay(true);
    let carried = async {
        let share = admit(&proxy, peer)?;
        allowed(proxy.policies.check_connection(
            &snapshot,
            name,
            &service.spec.policy_ids,
            peer.ip(),
        ))?;
        let stream = Stream {
            target: service.spec.target(),
            header: (TCP_SERVICE_HEADER, service.id.to_string()),
        };
        let (tunnel, guard) = open_stream(&proxy, &snapshot, stream, peer).await?;
        Ok::<_, Refusal>(splice(visitor, tunnel, &stop, (share, guard)).await)
    }
    .await;
    count(&proxy, name, started, carried);
}

/// A visitor's TLS connection to a hostname with `tls_passthrough`, its ClientHello already
/// read (and given back first by `visitor`): the hostname's policies (IP lists, connections per
/// second per client), then a stream down its tunnel to its `https://` origin, spliced with
/// the visitor's bytes as they are. `hold` (the listener's slot) is kept until the end.
pub(super) async fn passthrough<V, H>(
    visitor: V,
    peer: SocketAddr,
    hostname: &str,
    proxy: Arc<Proxy>,
    hold: H,
    stop: CancellationToken,
) where
    V: AsyncRead + AsyncWrite + Unpin,
{
    let started = Instant::now();
    let snapshot = proxy.catalog.snapshot();
    let Some(declared) = snapshot
        .hostnames
        .get(hostname)
        .filter(|h| h.spec.passes_tls_through())
    else {
        return; // changed a moment ago
    };
    let carried = async {
        if proxy
            .catalog
            .stale_for(proxy.settings.max_staleness)
            .is_some()
        {
            return Err(Refusal::Stale);
        }
        allowed(proxy.policies.check_passthrough(
            &snapshot,
            hostname,
            &declared.spec.policy_ids,
            peer.ip(),
        ))?;
        let stream = Stream {
            target: declared.spec.target(),
            header: (TCP_HOSTNAME_HEADER, hostname.to_string()),
        };
        let (tunnel, guard) = open_stream(&proxy, &snapshot, stream, peer).await?;
        Ok::<_, Refusal>(splice(visitor, tunnel, &stop, (hold, guard)).await)
    }
    .await;
    count(&proxy, hostname, started, carried);
}

/// Counts and logs how a connection to `name` (a TCP service, or a passthrough hostname)
/// ended.
fn count(proxy: &Proxy, name: &str, started: Instant, carried: Result<Bytes, Refusal>) {
    let metrics = &proxy.metrics;
    match carried {
        Ok(bytes) => {
            metrics.inc(
                "postern_edge_tcp_connections_total",
                &[("service", name), ("outcome", "carried")],
            );
            metrics.add(
                "postern_edge_tcp_bytes_total",
                &[("service", name), ("direction", "to_origin")],
                bytes.to_origin,
            );
            metrics.add(
                "postern_edge_tcp_bytes_total",
                &[("service", name), ("direction", "to_visitor")],
                bytes.to_visitor,
            );
            metrics
                .histogram(
                    "postern_edge_tcp_connection_duration_seconds",
                    &[("service", name)],
                )
                .observe(started.elapsed());
            tracing::debug!(
                to_origin = bytes.to_origin,
                to_visitor = bytes.to_visitor,
                broken = bytes.broken,
                "TCP connection ended"
            );
        }
        Err(refusal) => {
            metrics.inc(
                "postern_edge_tcp_connections_total",
                &[("service", name), ("outcome", refusal.as_str())],
            );
            tracing::debug!(outcome = refusal.as_str(), "TCP connection refused: closed");
        }
    }
}

// === the phases ===

/// Phase 1: a catalog fresh enough to trust, and the client's share of the edge's
/// connections (`--max-connections-per-ip`).
fn admit(proxy: &Proxy, peer: SocketAddr) -> Result<Share, Refusal> {
    if proxy
        .catalog
        .stale_for(proxy.settings.max_staleness)
        .is_some()
    {
        return Err(Refusal::Stale);
    }
    proxy.shares.claim(peer.ip()).ok_or(Refusal::ClientShare)
}

/// Phase 1, then: the policies' verdict, applied in order (the first deny wins; `report`
/// policies only count).
fn allowed(verdict: Verdict) -> Result<(), Refusal> {
    match verdict {
        Verdict::Allow => Ok(()),
        Verdict::Deny(denial) => Err(Refusal::Policy(denial.reason.as_str())),
    }
}

/// What a stream is for: the tunnels that may carry it, and the header that tells the
/// connector where it goes.
struct Stream<'a> {
    target: Option<Target<'a>>,
    header: (&'static str, String),
}

/// Phase 2: a stream to the origin through a connector of the service's tunnels: its
/// answer's upgraded byte stream, and the guard that counts the stream on its connection.
async fn open_stream(
    proxy: &Proxy,
    snapshot: &Snapshot,
    stream: Stream<'_>,
    peer: SocketAddr,
) -> Result<(Upgraded, StreamGuard), Refusal> {
    let target = stream.target.ok_or(Refusal::NoConnector)?;
    let pick =
        route::pick_target(snapshot, target, &proxy.registry, &[]).ok_or(Refusal::NoConnector)?;
    let session = pick.session;
    tracing::Span::current().record("tunnel_id", tracing::field::display(session.tunnel));
    session.catch_up(snapshot.revision, CATCH_UP_TIMEOUT).await;
    let mut request = Request::builder()
        .method(Method::CONNECT)
        .uri(format!("https://{TCP_AUTHORITY}/"))
        .header(stream.header.0, stream.header.1)
        .header("x-forwarded-for", peer.ip().to_string())
        .body(body::empty())
        .map_err(|_| Refusal::Tunnel)?;
    request
        .extensions_mut()
        .insert(hyper::ext::Protocol::from_static(TCP_PROTOCOL));
    forward::set_config_version(&mut request, session.pushed_version());
    let guard = session
        .begin_stream(proxy.settings.stream_slot_timeout)
        .await
        .ok_or(Refusal::NoStreamSlot)?;
    let mut response =
        tokio::time::timeout(proxy.settings.response_head_timeout, session.send(request))
            .await
            .map_err(|_| Refusal::Origin)?
            .map_err(|_| Refusal::Tunnel)?;
    if response.status() != StatusCode::OK {
        return Err(Refusal::Origin);
    }
    let upgraded = hyper::upgrade::on(&mut response)
        .await
        .map_err(|_| Refusal::Tunnel)?;
    Ok((upgraded, guard))
}

/// What a carried connection moved.
struct Bytes {
    to_origin: u64,
    to_visitor: u64,
    /// The tunnel or the visitor broke off (or the service went away) before both were done.
    broken: bool,
}

/// Phase 3: bytes both ways until both directions ended, holding `hold` meanwhile. An end of
/// stream is passed on as a half-close; an error on either side, or `stop`, closes both.
async fn splice<V, H>(visitor: V, tunnel: Upgraded, stop: &CancellationToken, hold: H) -> Bytes
where
    V: AsyncRead + AsyncWrite + Unpin,
{
    let mut visitor = Counted {
        inner: visitor,
        read: 0,
        written: 0,
    };
    let mut tunnel = TokioIo::new(tunnel);
    let copied = tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut visitor, &mut tunnel) => copied.map(|_| ()),
        _ = stop.cancelled() => Err(std::io::Error::other("the TCP service stopped")),
    };
    drop(hold);
    if let Err(error) = &copied {
        tracing::debug!(%error, "TCP connection broke off");
    }
    Bytes {
        to_origin: visitor.read,
        to_visitor: visitor.written,
        broken: copied.is_err(),
    }
}

/// The visitor's socket, counting the bytes read from it and written to it.
struct Counted<V> {
    inner: V,
    read: u64,
    written: u64,
}

impl<V: AsyncRead + Unpin> AsyncRead for Counted<V> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.read += (buf.filled().len() - before) as u64;
        polled
    }
}

impl<V: AsyncWrite + Unpin> AsyncWrite for Counted<V> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = &polled {
            self.written += *n as u64;
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
