//! `ApiState`: what the control API reads and writes.

use std::sync::Arc;

use crate::auth::Auth;
use crate::ca::{EdgeCa, VisitorCa};
use crate::catalog::Catalog;
use crate::certs::Certificates;
use crate::cluster::Cluster;
use crate::config::EdgeSettings;
use crate::metrics::Metrics;
use crate::store::Store;
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
}
