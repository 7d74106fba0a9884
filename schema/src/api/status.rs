//! `status.schema.json`: what the edge observes (`GET /v1/status`): recent requests per route,
//! policy decisions and the DNS records it answers.

use serde::{Deserialize, Serialize};

use crate::api::Labels;
use crate::ids::PolicyId;

/// `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeStatus {
    /// The store revision the edge's routing serves now.
    pub catalog_revision: u64,
    /// How many seconds back [`RouteTraffic::requests`] reach.
    pub window_seconds: u64,
    /// Every route of every hostname with weighted routes, by hostname, then as declared.
    pub routes: Vec<RouteTraffic>,
    /// Policy decisions since the edge started, by policy name.
    pub decisions: Vec<PolicyDecisionCount>,
    /// Every record the edge's DNS answers, by name, then type.
    pub dns: Vec<DnsRecord>,
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
