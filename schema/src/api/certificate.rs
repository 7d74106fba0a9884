//! `certificate.schema.json`: the certificates the edge's HTTPS listener serves or is
//! obtaining, what a client writes to upload one or to ask for one by ACME, and the summary a
//! hostname carries of the certificate that answers it.

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// Where a certificate comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertificateSource {
    /// Obtained by the edge from its ACME server.
    Acme,
    /// An operator's upload.
    Uploaded,
    /// From the edge's visitors' CA (name-constrained to its zones).
    EdgeCa,
}

impl CertificateSource {
    /// The contract's name: `acme`, `uploaded`, `edge_ca`.
    pub fn as_str(self) -> &'static str {
        match self {
            CertificateSource::Acme => "acme",
            CertificateSource::Uploaded => "uploaded",
            CertificateSource::EdgeCa => "edge_ca",
        }
    }
}

/// Where a certificate stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertificateStatus {
    /// Being obtained.
    Pending,
    /// Served.
    Valid,
    /// Not served: obtaining or renewing it failed.
    Failed,
}

impl CertificateStatus {
    /// The contract's name: `pending`, `valid`, `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            CertificateStatus::Pending => "pending",
            CertificateStatus::Valid => "valid",
            CertificateStatus::Failed => "failed",
        }
    }
}

/// A certificate as the edge returns it (never with its key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    /// A UUID, or `edge-ca:<hostname>`.
    pub id: String,
    /// The names it covers.
    pub names: Vec<String>,
    /// Where it comes from.
    pub source: CertificateSource,
    /// Where it stands.
    pub status: CertificateStatus,
    /// RFC 3339; `None` until one was issued.
    pub not_after: Option<String>,
    /// Why the last attempt to obtain or renew it failed.
    pub last_error: Option<String>,
}

/// What a client writes: an upload (`certificate_pem` and `private_key_pem`), or `names` to
/// obtain a certificate for by ACME.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateSpec {
    /// The chain, PEM, leaf first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_pem: Option<String>,
    /// The leaf's private key, PEM. `Debug` prints `***`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_pem: Option<Secret>,
    /// Names to obtain a certificate for by ACME.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub names: Option<Vec<String>>,
}

/// The certificate that answers a hostname's TLS hello (or, while none is valid, the ACME one
/// being obtained for it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostnameCertificate {
    /// The certificate's id (`GET /v1/certificates/{id}`).
    pub id: String,
    /// Where it comes from.
    pub source: CertificateSource,
    /// Where it stands.
    pub status: CertificateStatus,
    /// RFC 3339; `None` until one was issued.
    pub not_after: Option<String>,
}
