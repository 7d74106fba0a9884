//! Serving a router on a listener: plain HTTP or TLS, HTTP/1.1 and HTTP/2, the client's
//! address in each request (`ConnectInfo`, for the throttle), and bounds that hold against
//! one client: at most [`MAX_CONNECTIONS`] connections, [`HANDSHAKE_TIMEOUT`] for the TLS
//! handshake and [`HEADER_TIMEOUT`] for an HTTP/1.1 request head.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 1024;

/// How long a client may take over the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client may take to send its first byte, and an HTTP/1.1 request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long connections may take to finish their requests once `stop` fired.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` (over TLS with `tls`) until `stop`, then lets the requests in
/// flight finish (at most [`DRAIN_TIMEOUT`]). `what` names the listener in logs.
pub(crate) async fn serve(
    what: &'static str,
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    stop: CancellationToken,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = stop.cancelled() => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!(listener = what, %error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let service = TowerToHyperService::new(router.clone().map_request(
            move |mut request: axum::extract::Request<_>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            },
        ));
        let builder = builder.clone();
        let tls = tls.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => {
                    // Until a first byte comes, hyper has not picked HTTP/1.1 or HTTP/2 and
                    // no timer of its own runs.
                    if !matches!(
                        tokio::time::timeout(HEADER_TIMEOUT, stream.readable()).await,
                        Ok(Ok(()))
                    ) {
                        return;
                    }
                    let connection =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    finish(what, peer, watcher.watch(connection.into_owned()).await);
                }
                Some(tls) => {
                    let Some(stream) = handshake(what, &tls, stream, peer).await else {
                        return;
                    };
                    let connection =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    finish(what, peer, watcher.watch(connection.into_owned()).await);
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            listener = what,
            "connections still open {DRAIN_TIMEOUT:?} after the stop; closing them"
        );
    }
}

/// The TLS handshake, bounded in time; `None` (logged at debug) when it fails.
async fn handshake(
    what: &'static str,
    tls: &TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(error)) => {
            tracing::debug!(listener = what, peer_addr = %peer, %error, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(listener = what, peer_addr = %peer, "TLS handshake timed out");
            None
        }
    }
}

fn finish(
    what: &'static str,
    peer: SocketAddr,
    outcome: Result<(), Box<dyn std::error::Error + Send + Sync>>,
) {
    if let Err(error) = outcome {
        tracing::debug!(listener = what, peer_addr = %peer, error = %postern_schema::error_chain(error.as_ref()), "connection ended with an error");
    }
}
