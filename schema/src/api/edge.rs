//! `edge.schema.json` and `connection.schema.json`: what the edge serves, and who is connected.

use serde::{Deserialize, Serialize};

/// `GET /v1/edge`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeInfo {
    /// The DNS zones the edge is authoritative for.
    pub zones: Vec<String>,
    /// What DNS answers for hostnames.
    pub public_addresses: Vec<String>,
    /// Where connectors dial in.
    pub tunnel_addresses: Vec<String>,
    /// The edge CA certificate (PEM): the tunnel CA connectors pin.
    pub ca_cert_pem: String,
    /// The visitors' CA certificate (PEM), name-constrained to the zones: what the HTTPS
    /// listener falls back to for a hostname without a public certificate.
    #[serde(default)]
    pub visitor_ca_cert_pem: String,
}

/// One live connection of a connector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    /// This connection.
    pub id: String,
    /// The connector process it belongs to.
    pub connector_id: String,
    /// The connector's address as the edge sees it.
    pub address: String,
    /// RFC 3339.
    pub since: String,
    /// The connector's software version.
    pub version: String,
    /// The configuration version the connector applied.
    pub config_version: u64,
    /// The connector announced it is leaving; no new requests go to it.
    #[serde(default)]
    pub draining: bool,
    /// The edge node holding it, by the address other nodes reach its tunnel listener at.
    #[serde(default)]
    pub edge: String,
}
