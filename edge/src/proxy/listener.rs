//! The public listeners: accepting visitors' connections on HTTP and HTTPS (TLS with SNI),
//! holding each to the limits of `limits.rs`, and serving HTTP/1.1 and HTTP/2 on it, every
//! request through [`request::handle`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::forward::Visitor;
use super::framing::FramingGuard;
use super::limits::{self, FirstByteDeadline};
use super::request::{self, Context, Proxy};
use super::tls::ACME_TLS_ALPN;

/// How long a visitor may take to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long shutdown waits for in-flight visitor requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Serves visitors on a public listener (HTTPS when `tls` is given) until `cancel`.
pub(super) async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    tls: Option<TlsAcceptor>,
    cancel: CancellationToken,
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
                proxy.clone(),
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

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    proxy: Arc<Proxy>,
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
            serve_visitor(io, context, proxy, cancel).await;
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
            };
            // Only HTTP/1.1 needs the framing guard; HTTP/2 frames its own messages.
            let http1 = stream.get_ref().1.alpn_protocol() != Some(b"h2");
            let io = FirstByteDeadline::new(FramingGuard::new(stream, http1));
            serve_visitor(io, context, proxy, cancel).await;
        }
    }
}

/// Serves HTTP/1.1 or HTTP/2 (with upgrades and extended CONNECT) on one visitor connection.
async fn serve_visitor<I>(io: I, context: Context, proxy: Arc<Proxy>, cancel: CancellationToken)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let context = Arc::new(context);
    let service = service_fn(move |incoming| {
        let proxy = proxy.clone();
        let context = context.clone();
        async move { Ok::<_, Infallible>(request::handle(proxy, context, incoming).await) }
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
