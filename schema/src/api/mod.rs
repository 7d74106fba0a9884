//! The control API's objects, one file per JSON Schema under `schemas/v1`. `XxxSpec` is what a
//! client may write; `Xxx` is the spec plus what the edge assigns.

mod certificate;
mod edge;
mod error;
mod hostname;
mod policy;
mod rollout;
mod status;
mod tcp_service;
mod token;
mod tunnel;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use certificate::{
    Certificate, CertificateSource, CertificateSpec, CertificateStatus, HostnameCertificate,
};
pub use edge::{Connection, EdgeInfo};
pub use error::{ApiError, ApiErrorBody, ErrorCode};
pub use hostname::{
    ErrorRate, HealthCheck, Hostname, HostnameSpec, OriginSettings, PathRoute, Route, Serving,
    Target,
};
pub use policy::{
    BasicAuthSettings, HeaderEdits, HeaderRules, Hsts, JwtSettings, OidcSettings, Policy,
    PolicyMode, PolicySpec, RateLimit, RateLimitKey,
};
pub use rollout::{PendingConnection, REVISION_HEADER, Rollout, RolloutScope};
pub use status::{
    Decision, DnsRecord, EdgeStatus, EjectedRoute, PolicyDecisionCount, RouteTraffic,
    TcpServiceTraffic,
};
pub use tcp_service::{TcpService, TcpServiceSpec};
pub use token::{ApiToken, ApiTokenSpec, Role};
pub use tunnel::{
    EnrollmentToken, EnrollmentTokenSpec, Tunnel, TunnelSpec, TunnelToken as TunnelTokenBody,
};

/// Labels and selectors: a map of label keys to values, ordered by key.
pub type Labels = BTreeMap<String, String>;

/// The body of every list answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct List<T> {
    /// The objects, ordered by name.
    pub items: Vec<T>,
}
