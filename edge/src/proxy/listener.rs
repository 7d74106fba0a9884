//! The public listeners: accepting visitors' connections on HTTP and HTTPS (TLS with SNI),
//! holding each to the limits of `limits.rs` (the listener's connection limit, its client's
//! share, idle timeouts), and serving HTTP/1.1 and HTTP/2 on it, every request through
//! [`request::handle`]. On HTTPS, a ClientHello naming a hostname with `tls_passthrough` is
//! not terminated: the connection goes to [`tcp::passthrough`] as it is.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::activity::{Activity, IdleTimeouts, Splices};
use super::forward::Visitor;
use super::framing::FramingGuard;
use super::limits::{self, FirstByteDeadline};
use super::request::{self, Context, Proxy};
use super::shares::ConnectionSlot;
use super::sni::{self, Replayed};
use super::tcp;
use super::tls::ACME_TLS_ALPN;

/// How long a visitor may take to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long shutdown waits for in-flight visitor requests (the edge's own deadline,
/// `--shutdown-timeout`, ends whatever is left).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How long an idle connection told to close (GOAWAY) may take to go.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Serves visitors on a public listener (HTTPS when `tls` is given) until `cancel`.
pub(super) async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    tls: Option<TlsAcceptor>,
    cancel: CancellationToken,
) {
    let tracker = TaskTracker::new();
    let splices = Splices::new(tracker.clone(), cancel.clone());
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
        let Some(share) = proxy.shares.claim(peer.ip()) else {
            // Closed at once: one client may not hold more than its share of the listeners.
            tracing::debug!(peer_addr = %peer, "closed a visitor connection: its client holds its share of connections");
            proxy.metrics.inc(
                "postern_edge_visitor_connections_refused_total",
                &[("reason", "client_share")],
            );
            continue;
        };
        let span = tracing::debug_span!("visitor_conn", peer_addr = %peer);
        let connection = Connection {
            peer,
            slot: ConnectionSlot::new(permit, share),
            splices: splices.clone(),
        };
        tracker.spawn(
            serve_connection(
                stream,
                connection,
                proxy.clone(),
                tls.clone(),
                cancel.clone(),
            )
            .instrument(span),
        );
    }
    drop(listener);
    tracker.close();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait()).await;
}

/// An accepted connection, counted against the listener's limit and its client's share.
struct Connection {
    peer: SocketAddr,
    slot: ConnectionSlot,
    splices: Splices,
}

async fn serve_connection(
    stream: TcpStream,
    connection: Connection,
    proxy: Arc<Proxy>,
    tls: Option<TlsAcceptor>,
    cancel: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let Connection {
        peer,
        slot,
        splices,
    } = connection;
    let activity = Activity::new();
    match tls {
        None => {
            let context = Context {
                visitor: Visitor::new(peer, "http"),
                sni: None,
                splices,
                _slot: slot,
            };
            // The deadline sits outside the guard, which holds a request head back until it is
            // complete: a head trickled from the first byte on must still be whole in time.
            let io = FirstByteDeadline::new(FramingGuard::new(stream, true), activity.clone());
            serve_visitor(io, context, activity, proxy, cancel).await;
        }
        Some(acceptor) => {
            let started = tokio::time::Instant::now();
            let mut stream = stream;
            // With a passthrough hostname declared, the ClientHello is read first; one that
            // names such a hostname goes to its origin untouched, the rest to the acceptor.
            let head = if proxy.catalog.snapshot().passthrough {
                let (head, sni) = sni::read_hello(&mut stream, TLS_HANDSHAKE_TIMEOUT).await;
                if let Some(hostname) = sni.filter(|name| passes_through(&proxy, name)) {
                    let visitor = Replayed::new(head, stream);
                    tcp::passthrough(visitor, peer, &hostname, proxy.clone(), slot, cancel).await;
                    return;
                }
                head
            } else {
                Vec::new()
            };
            let stream = Replayed::new(head, stream);
            let handshake = TLS_HANDSHAKE_TIMEOUT.saturating_sub(started.elapsed());
            let stream = match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    tracing::debug!(%error, "visitor TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            // An ACME server's tls-alpn-01 validation ends with the handshake (RFC 8737).
            if stream.get_ref().1.alpn_protocol() == Some(ACME_TLS_ALPN) {
                return;
            }
            let sni = stream
                .get_ref()
                .1
                .server_name()
                .map(str::to_ascii_lowercase);
            let context = Context {
                visitor: Visitor::new(peer, "https"),
                sni,
                splices,
                _slot: slot,
            };
            // Only HTTP/1.1 needs the framing guard; HTTP/2 frames its own messages.
            let http1 = stream.get_ref().1.alpn_protocol() != Some(b"h2");
            if !http1 {
                activity.set_http2(true);
            }
            let io = FirstByteDeadline::new(FramingGuard::new(stream, http1), activity.clone());
            serve_visitor(io, context, activity, proxy, cancel).await;
        }
    }
}

/// Whether `name` is a hostname whose TLS passes through the edge.
fn passes_through(proxy: &Proxy, name: &str) -> bool {
    proxy
        .catalog
        .snapshot()
        .hostnames
        .get(name)
        .is_some_and(|h| h.spec.passes_tls_through())
}

/// Serves HTTP/1.1 or HTTP/2 (with upgrades and extended CONNECT) on one visitor connection,
/// until it ends, has been idle too long, or the edge shuts down.
async fn serve_visitor<I>(
    io: I,
    context: Context,
    activity: Arc<Activity>,
    proxy: Arc<Proxy>,
    cancel: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let settings = &proxy.settings;
    let timeouts = IdleTimeouts {
        http1: settings.http1_idle_timeout,
        http2: settings.http2_idle_timeout,
    };
    let mut builder = auto::Builder::new(postern_heap::BoxingExecutor);
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits::header_read_timeout(settings))
        .max_buf_size(limits::MAX_HTTP1_BUFFER);
    builder
        .http2()
        .timer(TokioTimer::new())
        .enable_connect_protocol()
        .keep_alive_interval(settings.http2_keepalive_interval)
        .keep_alive_timeout(settings.http2_keepalive_interval)
        .max_concurrent_streams(limits::MAX_CONCURRENT_STREAMS)
        .max_header_list_size(limits::MAX_HEADER_LIST as u32);
    let context = Arc::new(context);
    let service = {
        let activity = activity.clone();
        service_fn(move |incoming: hyper::Request<hyper::body::Incoming>| {
            let proxy = proxy.clone();
            let context = context.clone();
            let active = activity.begin(incoming.version() == http::Version::HTTP_2);
            async move { Ok::<_, Infallible>(request::handle(proxy, context, incoming, active).await) }
        })
    };
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, "visitor connection ended with an error");
            }
        }
        _ = activity.idle(timeouts) => {
            tracing::debug!("closing an idle visitor connection");
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(CLOSE_GRACE, connection).await;
        }
        _ = cancel.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, connection).await;
        }
    }
}
