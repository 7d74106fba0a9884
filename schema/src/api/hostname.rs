//! `hostname.schema.json`: a public hostname, served by a tunnel or by weighted label routes.

use serde::{Deserialize, Serialize};

use super::Labels;
use super::certificate::HostnameCertificate;
use crate::ids::{PolicyId, TunnelId};

/// What a client writes for a hostname. Exactly one of `tunnel_id` and `routes` is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostnameSpec {
    /// The hostname, also its id.
    pub hostname: String,
    /// The origin as seen from the connector's host.
    pub service: String,
    /// The one tunnel that serves it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel_id: Option<TunnelId>,
    /// Weighted routes over tunnel labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<Vec<Route>>,
    /// Policies applied in order.
    #[serde(default)]
    pub policy_ids: Vec<PolicyId>,
    /// How the connector reaches the origin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<OriginSettings>,
}

impl HostnameSpec {
    /// Which tunnels serve the hostname; `None` only for a spec that was never validated.
    pub fn target(&self) -> Option<Target<'_>> {
        match (&self.tunnel_id, &self.routes) {
            (Some(id), None) => Some(Target::Tunnel(*id)),
            (None, Some(routes)) => Some(Target::Routes(routes)),
            _ => None,
        }
    }
}

/// The tunnels behind a hostname.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// One tunnel.
    Tunnel(TunnelId),
    /// Weighted routes.
    Routes(&'a [Route]),
}

/// One weighted route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Labels a tunnel must all carry.
    pub selector: Labels,
    /// 1 to 100, relative to the other routes.
    pub weight: u32,
}

/// How the connector reaches the origin.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginSettings {
    /// INSECURE: accept any certificate from an https origin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_tls_verify: Option<bool>,
    /// The Host header sent to the origin instead of the visitor's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_host_header: Option<String>,
    /// The TLS server name used for an https origin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_server_name: Option<String>,
    /// How long to wait for a connection to the origin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout_ms: Option<u32>,
    /// Speak HTTP/2 (ALPN `h2`) to an https origin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http2: Option<bool>,
    /// Extra CAs (PEM) an https origin's certificate may chain to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert_pem: Option<String>,
}

/// A hostname as the edge returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hostname {
    /// What the client wrote.
    #[serde(flatten)]
    pub spec: HostnameSpec,
    /// What DNS answers for the hostname.
    pub addresses: Vec<String>,
    /// Increases with every change.
    pub version: u64,
    /// RFC 3339.
    pub created_at: String,
    /// The certificate that answers the hostname on HTTPS (set by the edge's API; `None` in
    /// an edge's own snapshot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<HostnameCertificate>,
}
