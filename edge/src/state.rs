//! `EdgeState`: what the control API, the tunnel listener, the proxy and DNS share.

use std::sync::Arc;

use crate::auth::Auth;
use crate::ca::EdgeCa;
use crate::catalog::Catalog;
use crate::cluster::Cluster;
use crate::metrics::Metrics;
use crate::policy::PolicyEngine;
use crate::store::Store;
use crate::tunnel::{Registry, TunnelSettings};

/// What the edge serves, as far as the API tells clients.
#[derive(Debug, Clone)]
pub struct EdgeSettings {
    /// DNS zones hostnames must lie in.
    pub zones: Vec<String>,
    /// This node's `--public-address` values (DNS answers [`Cluster::public_addresses`]).
    pub public_addresses: Vec<String>,
    /// This node's tunnel addresses (tokens list [`Cluster::tunnel_addresses`]).
    pub tunnel_addresses: Vec<String>,
}

/// Everything the edge's subsystems share; cheap to clone.
#[derive(Clone)]
pub struct EdgeState {
    /// The durable state.
    pub store: Arc<dyn Store>,
    /// The snapshot the data plane serves.
    pub catalog: Catalog,
    /// Accepted API tokens.
    pub auth: Auth,
    /// The edge CA.
    pub ca: Arc<EdgeCa>,
    /// Live connections.
    pub registry: Arc<Registry>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Edge policies: the proxy checks every request with `policies.check(..)`.
    pub policies: Arc<PolicyEngine>,
    /// Zones and addresses.
    pub settings: Arc<EdgeSettings>,
    /// Settings of the tunnel listener.
    pub tunnel_settings: Arc<TunnelSettings>,
    /// The other edge nodes on a shared store (none with the embedded store): the public and
    /// tunnel addresses of all of them, and where each tunnel's connections are.
    pub cluster: Cluster,
}
