//! Edge nodes sharing a store: each node holds a lease, a row it renews with every heartbeat,
//! carrying what it advertises (its public and tunnel addresses, where other nodes reach it)
//! and which tunnels it holds connections for. A row whose lease ran out is not a member: a dead
//! node drops out within one lease. Only shared stores implement [`ClusterStore`]; the embedded
//! store serves one node and has no members to track.

use std::time::Duration;

use async_trait::async_trait;
use postern_schema::api::Connection;
use postern_schema::ids::TunnelId;
use serde::{Deserialize, Serialize};

use super::record::StoreError;

/// What a node tells the others about itself, renewed with its lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NodeAdvert {
    /// The node's id: random, new at every start.
    pub(crate) node_id: String,
    /// Where other nodes reach this node's tunnel listener (`host:port`) for forwarded requests.
    pub(crate) peer_address: String,
    /// What DNS may answer for hostnames, on this node's behalf (`--public-address`).
    pub(crate) public_addresses: Vec<String>,
    /// Where connectors reach this node (`--advertise-tunnel`, or the bound tunnel address).
    pub(crate) tunnel_addresses: Vec<String>,
    /// The tunnels this node holds healthy connections for, by tunnel id.
    pub(crate) holdings: Vec<Holding>,
    /// Every connection this node holds, with how far its connector is: what the other nodes
    /// list and wait for (`/v1/tunnels/{id}/connections`, `/v1/rollout`, `/v1/status`).
    #[serde(default)]
    pub(crate) connections: Vec<ConnectionRecord>,
    /// Connections that closed lately before acknowledging what the edge had for them.
    #[serde(default)]
    pub(crate) departed: Vec<Departure>,
}

/// One connection a node holds, as the other nodes see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConnectionRecord {
    /// Its tunnel.
    pub(crate) tunnel_id: TunnelId,
    /// The API's view of it.
    pub(crate) connection: Connection,
    /// It may receive new requests (neither draining nor closing).
    pub(crate) healthy: bool,
    /// The catalog revision up to which its connector applied everything its tunnel serves.
    pub(crate) current_through: u64,
}

/// A connection that closed (or was declared dead) while its connector had not applied the
/// configuration of the node's catalog revision at that moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Departure {
    /// Its tunnel.
    pub(crate) tunnel_id: TunnelId,
    /// The API's view of it when it left.
    pub(crate) connection: Connection,
    /// The catalog revision up to which its connector had applied everything.
    pub(crate) current_through: u64,
    /// The node's catalog revision when it left: it missed the revisions after
    /// `current_through` up to this one.
    pub(crate) left_at: u64,
}

impl Departure {
    /// It left before acknowledging revision `revision`, which the edge already had.
    pub(crate) fn missed(&self, revision: u64) -> bool {
        self.current_through < revision && revision <= self.left_at
    }
}

/// A tunnel a node holds connections for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Holding {
    /// The tunnel.
    pub(crate) tunnel_id: TunnelId,
    /// Healthy (routable) connections of that tunnel on the node.
    pub(crate) connections: u32,
}

/// A node whose lease is live, as the store saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeLease {
    /// What the node advertised with its last renewal.
    pub(crate) advert: NodeAdvert,
    /// How long the lease has left, by the store's clock (so nodes' clocks need not agree).
    pub(crate) remaining: Duration,
}

/// The leases of the edge nodes sharing a store.
#[async_trait]
pub(crate) trait ClusterStore: Send + Sync + 'static {
    /// Takes or renews the lease of `advert.node_id` for `lease`, recording `advert`, and
    /// returns every node whose lease is live, this one included. With `announce`, the other
    /// nodes are told (through the store's cluster feed) to read the leases again at once,
    /// rather than at their next heartbeat.
    async fn heartbeat(
        &self,
        advert: &NodeAdvert,
        lease: Duration,
        announce: bool,
    ) -> Result<Vec<NodeLease>, StoreError>;

    /// Every node whose lease is live, without renewing any.
    async fn members(&self) -> Result<Vec<NodeLease>, StoreError>;

    /// Gives the lease of `node_id` up (a clean shutdown), and tells the other nodes.
    async fn leave(&self, node_id: &str) -> Result<(), StoreError>;
}
