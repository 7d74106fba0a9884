//! Spreading connections over the edge nodes a token names. Connection `i` belongs to address
//! `i mod n` (its *home*; tokens list addresses sorted, so every connector spreads the same
//! way). When its home cannot be reached it serves from the next address instead, and probes
//! home about once a second; once home accepts connections again, a connection to home is
//! dialed, and [`HANDOVER`] after the edge registered it, the one away drains (the edge stops
//! routing to it first), so the tunnel is never without a registered connection, every node
//! knows where it is, and no request fails.
//!
//! The probe is a TCP connection and a TLS ClientHello offering only ALPN `postern-probe/1`,
//! which the edge closes without answering or counting it as a failed handshake.

use std::sync::Arc;
use std::time::Duration;

use postern_schema::wire::ALPN_PROBE;
use rand::RngExt;
use tokio_rustls::TlsConnector;

use crate::egress::Egress;
use crate::tls::{TlsConfigError, edge_server_name};

/// About how often a connection away from home probes it (jittered by a quarter).
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// How long a connection back home serves before the one away from home drains: edge nodes
/// announce the tunnels they hold at once and renew their leases every second, so by then every
/// node knows where to forward the tunnel's requests.
pub(crate) const HANDOVER: Duration = Duration::from_secs(1);

/// Bound on one probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The home address of connection `index` among `count` addresses.
pub(crate) fn home_of(index: usize, count: usize) -> usize {
    index % count.max(1)
}

/// The address connection `index` dials after `attempt` failed or ended connections: home
/// first, then each other address in turn.
pub(crate) fn slot_of(index: usize, attempt: usize, count: usize) -> usize {
    (home_of(index, count) + attempt) % count.max(1)
}

/// TLS for probes: the pinned CA, no client certificate, ALPN `postern-probe/1` only.
pub(crate) fn probe_config(pin: &str) -> Result<Arc<rustls::ClientConfig>, TlsConfigError> {
    let mut config = (*crate::tls::enrol_config(pin)?).clone();
    config.alpn_protocols = vec![ALPN_PROBE.to_vec()];
    Ok(Arc::new(config))
}

/// Does `address` accept connections? True once TCP connects; the ClientHello that follows is
/// only so the edge can tell a probe from a broken client.
pub(crate) async fn is_reachable(
    egress: &Egress,
    address: &str,
    tls: &Arc<rustls::ClientConfig>,
) -> bool {
    let Ok(Ok(tcp)) = tokio::time::timeout(PROBE_TIMEOUT, egress.connect(address)).await else {
        return false;
    };
    let hello = TlsConnector::from(tls.clone()).connect(edge_server_name(), tcp);
    // The edge closes the connection after the hello: the handshake fails, as expected.
    let _ = tokio::time::timeout(PROBE_TIMEOUT, hello).await;
    true
}

/// Probes `home` about every [`PROBE_EVERY`] until it is reachable.
pub(crate) async fn wait_until_reachable(
    egress: &Egress,
    home: &str,
    tls: &Arc<rustls::ClientConfig>,
) {
    loop {
        let pause = PROBE_EVERY.mul_f64(rand::rng().random_range(0.75..1.25));
        tokio::time::sleep(pause).await;
        if is_reachable(egress, home, tls).await {
            tracing::info!(edge = %home, "this connection's own edge node is reachable again; moving back to it");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_spread_over_the_addresses_and_fall_back_to_the_next() {
        // Two connections, two nodes: one each.
        assert_eq!(slot_of(0, 0, 2), 0);
        assert_eq!(slot_of(1, 0, 2), 1);
        // Node 0 down: connection 0 tries node 1, then node 0 again.
        assert_eq!(slot_of(0, 1, 2), 1);
        assert_eq!(slot_of(0, 2, 2), 0);
        // More connections than nodes wrap around; one address means always it.
        assert_eq!(home_of(2, 2), 0);
        assert_eq!(home_of(5, 3), 2);
        assert_eq!(slot_of(3, 7, 1), 0);
        assert_eq!(slot_of(0, 0, 0), 0);
    }

    #[tokio::test]
    async fn an_address_that_accepts_is_reachable_and_a_closed_one_is_not() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let open = listener.local_addr().expect("address").to_string();
        tokio::spawn(async move {
            // Accept and close at once, as the edge does after a probe's ClientHello.
            while let Ok((stream, _)) = listener.accept().await {
                drop(stream);
            }
        });
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("address").to_string()
        };
        let tls = probe_config(&"0".repeat(64)).expect("probe config");
        assert!(is_reachable(&Egress::direct(), &open, &tls).await);
        assert!(!is_reachable(&Egress::direct(), &closed, &tls).await);
    }
}
