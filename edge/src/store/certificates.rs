//! Public certificates in the store, shared by every edge node on it: the certificates the
//! HTTPS listener serves (obtained by ACME or uploaded) with their keys, the answers to the ACME
//! challenges in flight (so whichever node a CA asks can answer), and the lease that lets one
//! node at a time order certificates.

use std::time::Duration;

use async_trait::async_trait;
use postern_schema::secret::Secret;

use super::record::StoreError;

/// Where a certificate comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum CertificateSource {
    /// Obtained by the edge from its ACME server.
    Acme,
    /// Uploaded by an operator.
    Uploaded,
}

impl CertificateSource {
    /// The stored (and API) name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CertificateSource::Acme => "acme",
            CertificateSource::Uploaded => "uploaded",
        }
    }

    /// Parses a stored name.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text {
            "acme" => Some(CertificateSource::Acme),
            "uploaded" => Some(CertificateSource::Uploaded),
            _ => None,
        }
    }
}

/// One certificate as stored; its key is a [`Secret`], so `Debug` never shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredCertificate {
    /// A UUID.
    pub(crate) id: String,
    /// ACME or uploaded.
    pub(crate) source: CertificateSource,
    /// The names it covers (`*.` for a wildcard): for ACME, the names ordered; for an upload,
    /// the certificate's own.
    pub(crate) names: Vec<String>,
    /// An ACME certificate the edge asked for on its own, for a hostname (it goes when the
    /// hostname does); `false` for one asked for through the API, and for uploads.
    pub(crate) automatic: bool,
    /// The chain, leaf first, PEM; `None` until an ACME certificate was first issued.
    pub(crate) chain_pem: Option<String>,
    /// The leaf's private key, PKCS#8 PEM.
    pub(crate) key_pem: Option<Secret>,
    /// The leaf's validity, Unix seconds.
    pub(crate) not_before: Option<i64>,
    /// The leaf's expiry, Unix seconds.
    pub(crate) not_after: Option<i64>,
    /// Why the last attempt to obtain or renew it failed; `None` after a success.
    pub(crate) last_error: Option<String>,
    /// Failed attempts since the last success (the backoff).
    pub(crate) failures: u32,
    /// Not before this (Unix seconds) is the next attempt made; `None`: when due.
    pub(crate) next_attempt: Option<i64>,
    /// RFC 3339.
    pub(crate) created_at: String,
}

impl StoredCertificate {
    /// A new request for an ACME certificate for `names`, not yet ordered (`automatic`: the
    /// edge asks on its own, for a hostname), made at `created_at` (RFC 3339).
    pub(crate) fn acme_request(names: Vec<String>, automatic: bool, created_at: String) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            source: CertificateSource::Acme,
            names,
            automatic,
            chain_pem: None,
            key_pem: None,
            not_before: None,
            not_after: None,
            last_error: None,
            failures: 0,
            next_attempt: None,
            created_at,
        }
    }
}

/// The kinds of ACME challenge the edge answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum ChallengeKind {
    /// `http-01`: `GET /.well-known/acme-challenge/<token>` on the HTTP listener.
    Http01,
    /// `tls-alpn-01`: a hello offering `acme-tls/1` on the HTTPS listener.
    TlsAlpn01,
    /// `dns-01`: `TXT _acme-challenge.<name>` from the edge's own zone.
    Dns01,
}

impl ChallengeKind {
    /// The ACME name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ChallengeKind::Http01 => "http-01",
            ChallengeKind::TlsAlpn01 => "tls-alpn-01",
            ChallengeKind::Dns01 => "dns-01",
        }
    }

    /// Parses an ACME name.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text {
            "http-01" => Some(ChallengeKind::Http01),
            "tls-alpn-01" => Some(ChallengeKind::TlsAlpn01),
            "dns-01" => Some(ChallengeKind::Dns01),
            _ => None,
        }
    }
}

/// The answer to one challenge in flight.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct PendingChallenge {
    /// Which kind.
    pub(crate) kind: ChallengeKind,
    /// `http-01`: the token; `tls-alpn-01` and `dns-01`: the domain (without `*.`).
    pub(crate) key: String,
    /// `http-01`: the key authorization; `tls-alpn-01`: its SHA-256, base64url; `dns-01`: the
    /// TXT value.
    pub(crate) value: String,
    /// Unix seconds after which the answer is dropped (an order that never cleaned up).
    pub(crate) expires_at: i64,
}

/// The store's side of public certificates.
#[async_trait]
pub(crate) trait CertificateStore: Send + Sync + 'static {
    /// Every certificate, with its key.
    async fn certificates(&self) -> Result<Vec<StoredCertificate>, StoreError>;

    /// Inserts a certificate (a new id).
    async fn insert_certificate(&self, certificate: &StoredCertificate) -> Result<(), StoreError>;

    /// Replaces every field of the certificate with `certificate.id`; `false` when it no longer
    /// exists.
    async fn update_certificate(&self, certificate: &StoredCertificate)
    -> Result<bool, StoreError>;

    /// Deletes a certificate; `false` when there was none with that id.
    async fn delete_certificate(&self, id: &str) -> Result<bool, StoreError>;

    /// Every challenge answer that has not expired.
    async fn challenges(&self) -> Result<Vec<PendingChallenge>, StoreError>;

    /// Publishes challenge answers (and drops expired ones).
    async fn add_challenges(&self, challenges: &[PendingChallenge]) -> Result<(), StoreError>;

    /// Withdraws challenge answers.
    async fn remove_challenges(&self, challenges: &[PendingChallenge]) -> Result<(), StoreError>;

    /// Takes or renews, for `holder`, the lease that lets one edge node order certificates;
    /// `true` when `holder` holds it for `lease` from now. The embedded store serves one node,
    /// which always holds it.
    async fn acme_lease(&self, holder: &str, lease: Duration) -> Result<bool, StoreError>;

    /// Gives the lease up, if `holder` holds it (a clean shutdown).
    async fn release_acme_lease(&self, holder: &str) -> Result<(), StoreError>;
}
