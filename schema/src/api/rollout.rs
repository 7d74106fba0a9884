//! `rollout.schema.json`: whether the connectors applied a write (`GET /v1/rollout`).

use serde::{Deserialize, Serialize};

use crate::ids::{PolicyId, TunnelId};

/// The name of the header every write answer of the control API carries: the store revision
/// the write produced, to ask `GET /v1/rollout?revision=N` about.
pub const REVISION_HEADER: &str = "postern-revision";

/// `GET /v1/rollout?revision=N`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollout {
    /// The revision asked about (the edge's current one when none was given).
    pub revision: u64,
    /// The store revision the edge's routing serves now.
    pub catalog_revision: u64,
    /// The edge serves `revision` or later, and every live connection acknowledged its
    /// tunnel's configuration.
    pub complete: bool,
    /// The connections still on an older configuration.
    pub pending: Vec<PendingConnection>,
    /// Connections that were live when the edge reached `revision` and closed (or were
    /// declared dead) before acknowledging it, within the last ten minutes, on any edge node;
    /// their connector is not waited for, and serves none of the change until it connects
    /// again.
    #[serde(default)]
    pub departed: Vec<PendingConnection>,
}

/// One live connection that has not acknowledged its tunnel's current configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingConnection {
    /// Its tunnel.
    pub tunnel_id: TunnelId,
    /// The tunnel's name.
    pub tunnel_name: String,
    /// The connection.
    pub connection_id: String,
    /// The connector process.
    pub connector_id: String,
    /// The connector's address as the edge sees it.
    pub address: String,
    /// The configuration version the connector last acknowledged.
    pub config_version: u64,
    /// Hostnames the connector refused to serve, and why: waiting longer will not help.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<crate::wire::RefusedHostname>,
}

/// Which part of the configuration a rollout question is about (`GET /v1/rollout`'s
/// `tunnel`, `hostname` and `policy` parameters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutScope {
    /// Every hostname of every tunnel.
    All,
    /// Everything one tunnel serves (its labels changed, so its hostnames may have).
    Tunnel(TunnelId),
    /// One hostname, on every tunnel that serves it or served it.
    Hostname(String),
    /// The hostnames that use one policy.
    Policy(PolicyId),
}

impl RolloutScope {
    /// The query parameter that says it, if any (`tunnel=…`, `hostname=…`, `policy=…`).
    pub fn query(&self) -> Option<(&'static str, String)> {
        match self {
            RolloutScope::All => None,
            RolloutScope::Tunnel(id) => Some(("tunnel", id.to_string())),
            RolloutScope::Hostname(name) => Some(("hostname", name.clone())),
            RolloutScope::Policy(id) => Some(("policy", id.to_string())),
        }
    }
}
