//! What every connection on the tunnel listener reads: the catalog it serves from, the CA that
//! signs connectors' certificates, the registry sessions join, and the settings of the
//! listener.

use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;

use crate::ca::EdgeCa;
use crate::catalog::Catalog;
use crate::metrics::Metrics;
use crate::store::Store;

use super::registry::Registry;

/// Settings of the tunnel listener.
#[derive(Debug, Clone)]
pub(crate) struct TunnelSettings {
    /// How long an enrolled or renewed client certificate is valid (connectors renew at two
    /// thirds of it).
    pub(crate) client_cert_lifetime: Duration,
    /// Live connections one tunnel may hold on this node (`--max-connections-per-tunnel`).
    pub(crate) max_connections_per_tunnel: u32,
}

impl Default for TunnelSettings {
    fn default() -> Self {
        Self {
            client_cert_lifetime: Duration::from_secs(12 * 3600),
            max_connections_per_tunnel: 32,
        }
    }
}

impl TunnelSettings {
    /// The defaults, with `POSTERN_EDGE_CLIENT_CERT_LIFETIME_SECS` (an operations and test
    /// knob, at least 10) applied when set.
    pub(crate) fn from_env() -> Self {
        let mut settings = Self::default();
        if let Some(secs) = std::env::var("POSTERN_EDGE_CLIENT_CERT_LIFETIME_SECS")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            settings.client_cert_lifetime = Duration::from_secs(secs.max(10));
        }
        settings
    }
}

/// The handles the tunnel side shares; cheap to clone.
#[derive(Clone)]
pub(crate) struct TunnelContext {
    /// Tunnel secrets and single-use enrolment tokens.
    pub(crate) store: Arc<dyn Store>,
    /// The snapshot sessions push configurations from.
    pub(crate) catalog: Catalog,
    /// Signs connectors' client certificates.
    pub(crate) ca: Arc<EdgeCa>,
    /// Live sessions, where the proxy finds them.
    pub(crate) registry: Arc<Registry>,
    /// Session and enrolment counters.
    pub(crate) metrics: Arc<Metrics>,
    /// Settings of the listener.
    pub(crate) settings: Arc<TunnelSettings>,
    /// The workers' runtimes: each session runs on one of them.
    pub(crate) workers: Arc<[Handle]>,
}
