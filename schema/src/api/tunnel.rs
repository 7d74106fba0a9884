//! `tunnel.schema.json`: a tunnel, the identity connectors enrol as.

use serde::{Deserialize, Serialize};

use super::Labels;
use crate::ids::TunnelId;

/// What a client writes for a tunnel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelSpec {
    /// Unique among tunnels.
    pub name: String,
    /// Labels that route selectors match.
    #[serde(default)]
    pub labels: Labels,
}

/// A tunnel as the edge returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tunnel {
    /// Assigned by the edge.
    pub id: TunnelId,
    /// What the client wrote.
    #[serde(flatten)]
    pub spec: TunnelSpec,
    /// Increases with every change.
    pub version: u64,
    /// RFC 3339.
    pub created_at: String,
    /// Live connector connections when the answer was made.
    pub connections: u32,
    /// Only in the answer to a create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// The body of `GET /v1/tunnels/{id}/token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelToken {
    /// The connector token.
    pub token: String,
}

/// The body of `POST /v1/tunnels/{id}/enrollment-tokens`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollmentTokenSpec {
    /// How long the token stays usable (30 s to 24 h; default 600 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u32>,
}

impl EnrollmentTokenSpec {
    /// The lifetime when none is given.
    pub const DEFAULT_TTL_SECONDS: u32 = 600;
}

/// A single-use, short-lived connector token (`enrollment.schema.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollmentToken {
    /// The connector token; it enrols one connector, once.
    pub token: String,
    /// RFC 3339: unused after this, it is refused.
    pub expires_at: String,
}
