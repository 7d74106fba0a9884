//! `status.schema.json`: what the edge observes (`GET /v1/status`): recent requests per route,
//! policy decisions, the DNS records it answers and the connections of TCP services.

use serde::{Deserialize, Serialize};

use crate::api::{ErrorRate, Labels};
use crate::ids::{PolicyId, TcpServiceId};

/// `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeStatus {
    /// The store revision the edge's routing serves now.
    pub catalog_revision: u64,
    /// How many seconds back [`RouteTraffic::requests`] reach.
    pub window_seconds: u64,
    /// Live edge nodes sharing the store, this one included (1 with the embedded store).
    #[serde(default)]
    pub nodes: u32,
    /// Live connector connections on every edge node, draining ones included.
    #[serde(default)]
    pub connections: u32,
    /// Every route of every hostname with weighted routes, by hostname, then as declared.
    pub routes: Vec<RouteTraffic>,
    /// Policy decisions since the edge started, by policy name.
    pub decisions: Vec<PolicyDecisionCount>,
    /// Every record the edge's DNS answers, by name, then type.
    pub dns: Vec<DnsRecord>,
    /// Every TCP service, by name, with its connections since the edge started.
    #[serde(default)]
    pub tcp_services: Vec<TcpServiceTraffic>,
    /// Weighted routes out of rotation right now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ejected_routes: Vec<EjectedRoute>,
}

/// One TCP service and the connections this edge node took for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpServiceTraffic {
    /// The service.
    pub id: TcpServiceId,
    /// Its name.
    pub name: String,
    /// Where it listens, `address:port`.
    pub listen: String,
    /// Connections carried to the origin since the edge started.
    pub connections: u64,
    /// Connections closed at once (policies, limits, no connector, origin unreachable).
    pub refused: u64,
}

/// A weighted route out of rotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EjectedRoute {
    /// The hostname.
    pub hostname: String,
    /// The path route's prefix; `None` for the hostname's own routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The selector as `k=v,k2=v2`.
    pub route: String,
    /// `error_rate`, `consecutive_failures` or `origin_unhealthy`.
    pub reason: String,
    /// The 5xx share when it was ejected (passive ejections).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<ErrorRate>,
    /// Seconds until it takes traffic again (passive ejections).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_in_seconds: Option<u64>,
}

/// One weighted route of a hostname and the requests that took it lately.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteTraffic {
    /// The hostname.
    pub hostname: String,
    /// The route's position in the hostname's routes.
    pub index: usize,
    /// The selector as `k=v,k2=v2`, keys sorted (the metrics' `route` label).
    pub route: String,
    /// The selector.
    pub selector: Labels,
    /// The route's weight.
    pub weight: u32,
    /// Requests that took this route in the last `window_seconds`.
    pub requests: u64,
}

/// How a policy decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The policy let the request through.
    Allow,
    /// The policy refused it (enforce mode).
    Deny,
    /// The policy would have refused it (report mode) and let it through.
    Report,
}

/// How often one policy decided one way, for one reason, on one hostname.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDecisionCount {
    /// The policy.
    pub policy_id: PolicyId,
    /// The policy's name.
    pub policy: String,
    /// The hostname.
    pub hostname: String,
    /// The decision.
    pub decision: Decision,
    /// Why it refused (`ip`, `method`, `path`, `jwt_missing`, `jwt_invalid`, `rate_limit`,
    /// `basic_auth`, `login`, `person`), or
    /// `allow`.
    pub reason: String,
    /// How many times.
    pub count: u64,
}

/// One record of the edge's zones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsRecord {
    /// The owner name, lowercase, no trailing dot.
    pub name: String,
    /// `A`, `AAAA`, `TXT`, `NS` or `SOA`.
    #[serde(rename = "type")]
    pub record_type: String,
    /// Seconds.
    pub ttl: u32,
    /// The data in zone-file form.
    pub data: String,
}
