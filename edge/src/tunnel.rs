//! The tunnel side of the edge: connectors dial in, enrol, and serve visitor streams.

pub mod registry;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use registry::Registry;

use crate::state::EdgeState;

/// Accepts connectors on the tunnel listener until `cancel`.
pub async fn serve(listener: TcpListener, state: EdgeState, cancel: CancellationToken) {
    let _ = (listener, state);
    cancel.cancelled().await;
}
