//! The receiving side of the links between edge nodes: connections another node opened on the
//! tunnel port (`postern-peer/1`, accepted and verified by the tunnel listener and handed over
//! here, and moved to a worker), each an HTTP/2 server whose every stream is a request that
//! node forwarded. Each is answered by [`request::handle_forwarded`] from a connection of this
//! node's own.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use postern_schema::wire;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::activity::Splices;
use super::request::{self, Proxy};
use crate::ca::node_of_certificate;
use crate::cluster::{KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT};
use crate::tunnel::PeerConnection;

/// Concurrent forwarded requests on one link.
const MAX_CONCURRENT_STREAMS: u32 = 10_000;

/// How long shutdown waits for forwarded requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Serves the links other nodes open, as the tunnel listener hands them over, until `cancel`,
/// each on one of the `workers` in turn; then lets forwarded requests in flight finish
/// (bounded).
pub(crate) async fn serve_links(
    mut connections: mpsc::Receiver<PeerConnection>,
    proxy: Arc<Proxy>,
    workers: Arc<[Handle]>,
    cancel: CancellationToken,
) {
    let tracker = TaskTracker::new();
    let splices = Splices::new(tracker.clone(), cancel.clone());
    let mut next = 0usize;
    loop {
        let connection = tokio::select! {
            _ = cancel.cancelled() => break,
            connection = connections.recv() => match connection {
                Some(connection) => connection,
                None => break,
            },
        };
        let link = serve_link(connection, proxy.clone(), splices.clone(), cancel.clone());
        match workers.get(next % workers.len().max(1)) {
            Some(worker) => tracker.spawn_on(link, worker),
            None => tracker.spawn(link),
        };
        next = next.wrapping_add(1);
    }
    tracker.close();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait()).await;
}

/// Serves one link until it ends or `cancel`: every stream is a request forwarded by the node
/// its certificate names.
async fn serve_link(
    connection: PeerConnection,
    proxy: Arc<Proxy>,
    splices: Splices,
    cancel: CancellationToken,
) {
    let PeerConnection { mut stream, peer } = connection;
    if let Err(error) = stream.get_mut().0.rehome() {
        tracing::warn!(peer_addr = %peer, %error, "cannot move a link from another node to its worker");
        return;
    }
    let from = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(node_of_certificate);
    let Some(from) = from else {
        tracing::warn!(peer_addr = %peer, "refused a peer connection whose certificate names no edge node");
        return;
    };
    let span = tracing::info_span!("peer_conn", node_id = %from, peer_addr = %peer);
    async move {
        tracing::debug!("an edge node linked to this one");
        let from: Arc<str> = Arc::from(from);
        let service = service_fn(move |incoming| {
            let proxy = proxy.clone();
            let from = from.clone();
            let splices = splices.clone();
            async move {
                Ok::<_, Infallible>(request::handle_forwarded(proxy, from, incoming, splices).await)
            }
        });
        let connection = hyper::server::conn::http2::Builder::new(postern_heap::BoxingExecutor)
            .timer(TokioTimer::new())
            .enable_connect_protocol()
            .keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
            .max_header_list_size(wire::ACCEPTED_HEADER_LIST)
            .serve_connection(TokioIo::new(stream), service);
        tokio::pin!(connection);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "peer connection ended with an error");
                }
            }
            _ = cancel.cancelled() => {
                connection.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(SHUTDOWN_GRACE, connection).await;
            }
        }
    }
    .instrument(span)
    .await;
}
