//! `ApiState`: what the control API reads and writes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use super::throttle::AuthThrottle;
use crate::access_log::AccessLog;
use crate::auth::Auth;
use crate::ca::{EdgeCa, VisitorCa};
use crate::catalog::Catalog;
use crate::certs::Certificates;
use crate::cluster::Cluster;
use crate::config::EdgeSettings;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::tcp_ports::TcpPorts;
use crate::tunnel::Registry;

/// Everything the edge's subsystems share; cheap to clone.
#[derive(Clone)]
pub(crate) struct ApiState {
    /// The durable state.
    pub(crate) store: Arc<dyn Store>,
    /// The snapshot the data plane serves.
    pub(crate) catalog: Catalog,
    /// Accepted API tokens.
    pub(crate) auth: Auth,
    /// The edge CA.
    pub(crate) ca: Arc<EdgeCa>,
    /// The visitors' CA, name-constrained to the zones.
    pub(crate) visitor_ca: Arc<VisitorCa>,
    /// Public certificates: uploaded, ACME, and the visitors' CA's.
    pub(crate) certificates: Certificates,
    /// Live connections.
    pub(crate) registry: Arc<Registry>,
    /// Metrics.
    pub(crate) metrics: Arc<Metrics>,
    /// Zones and addresses.
    pub(crate) settings: Arc<EdgeSettings>,
    /// The other edge nodes on a shared store (none with the embedded store): the public and
    /// tunnel addresses of all of them, and where each tunnel's connections are.
    pub(crate) cluster: Cluster,
    /// Failed authentications per client address.
    pub(crate) throttle: Arc<AuthThrottle>,
    /// What `GET /ready` answers.
    pub(crate) readiness: Readiness,
    /// The visitor requests' lines, for `GET /v1/requests`.
    pub(crate) access_log: Arc<AccessLog>,
    /// The ports of TCP services.
    pub(crate) tcp_ports: Arc<TcpPorts>,
}

/// Where the edge is in its life, as `GET /ready` tells it; shared by clones.
#[derive(Debug, Clone, Default)]
pub(crate) struct Readiness(Arc<AtomicU8>);

/// The phases of [`Readiness`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// The store or a listener is not up yet.
    Starting,
    /// Serving.
    Ready,
    /// Shutting down: finishing what is in flight.
    Draining,
}

impl Readiness {
    const STARTING: u8 = 0;
    const READY: u8 = 1;
    const DRAINING: u8 = 2;

    /// The store and every listener are up.
    pub(crate) fn set_ready(&self) {
        let _ = self.0.compare_exchange(
            Self::STARTING,
            Self::READY,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// The edge stops: from now on, and for good, not ready.
    pub(crate) fn set_draining(&self) {
        self.0.store(Self::DRAINING, Ordering::Release);
    }

    /// The current phase.
    pub(crate) fn phase(&self) -> Phase {
        match self.0.load(Ordering::Acquire) {
            Self::STARTING => Phase::Starting,
            Self::READY => Phase::Ready,
            _ => Phase::Draining,
        }
    }
}
