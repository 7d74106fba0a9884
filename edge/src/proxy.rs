//! The public reverse proxy: visitors' HTTP and HTTPS traffic, routed by `Host`/SNI through
//! policies and label routes to a connector's tunnel.

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::state::EdgeState;

/// Serves visitors on the public HTTP listener until `cancel`.
pub async fn serve_http(listener: TcpListener, state: EdgeState, cancel: CancellationToken) {
    let _ = (listener, state);
    cancel.cancelled().await;
}

/// Serves visitors on the public HTTPS listener until `cancel`.
pub async fn serve_https(listener: TcpListener, state: EdgeState, cancel: CancellationToken) {
    let _ = (listener, state);
    cancel.cancelled().await;
}
