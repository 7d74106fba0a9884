//! `tcp_service.schema.json`: a raw TCP service, a public port on the edge carried down a
//! tunnel to a `tcp://` origin.

use serde::{Deserialize, Serialize};

use super::hostname::{Route, Target};
use crate::ids::{PolicyId, TcpServiceId, TunnelId};

/// What a client writes for a TCP service. Exactly one of `tunnel_id` and `routes` is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpServiceSpec {
    /// Unique among TCP services.
    pub name: String,
    /// The origin as seen from the connector's host: `tcp://host:port`.
    pub service: String,
    /// The one tunnel that serves it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel_id: Option<TunnelId>,
    /// Weighted routes over tunnel labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<Vec<Route>>,
    /// Policies applied in order when a connection is accepted.
    #[serde(default)]
    pub policy_ids: Vec<PolicyId>,
    /// The public port; `None` lets the edge pick one of its `--tcp-ports` range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_port: Option<u16>,
}

impl TcpServiceSpec {
    /// Which tunnels serve the service; `None` only for a spec that was never validated.
    pub fn target(&self) -> Option<Target<'_>> {
        match (&self.tunnel_id, &self.routes) {
            (Some(id), None) => Some(Target::Tunnel(*id)),
            (None, Some(routes)) => Some(Target::Routes(routes)),
            _ => None,
        }
    }
}

/// A TCP service as the edge returns it: `listen_port` is always set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpService {
    /// Assigned by the edge.
    pub id: TcpServiceId,
    /// What the client wrote, with the port the edge picked.
    #[serde(flatten)]
    pub spec: TcpServiceSpec,
    /// The public `address:port` visitors connect to.
    pub listen: String,
    /// Increases with every change.
    pub version: u64,
    /// RFC 3339.
    pub created_at: String,
}
