//! The certificates as the API, the status page and metrics show them: the stored ones (ACME
//! and uploaded, never with a key) and, for each hostname no public certificate serves, the
//! visitors' CA certificate that does.

use postern_schema::api::{
    Certificate, CertificateSource as Source, CertificateStatus, HostnameCertificate,
};

use super::pem::rfc3339;
use super::served::{Certificates, now};
use super::table::{Status, status_of};
use crate::metrics::Sample;
use crate::store::{CertificateSource, StoredCertificate};

/// The id prefix of a visitors' CA certificate (it is not stored: its hostname names it).
pub(crate) const EDGE_CA_PREFIX: &str = "edge-ca:";

/// The expiry gauge.
const EXPIRY: &str = "postern_edge_certificate_expiry_timestamp_seconds";

fn status(status: Status) -> CertificateStatus {
    match status {
        Status::Pending => CertificateStatus::Pending,
        Status::Valid => CertificateStatus::Valid,
        Status::Failed => CertificateStatus::Failed,
    }
}

fn source(source: CertificateSource) -> Source {
    match source {
        CertificateSource::Acme => Source::Acme,
        CertificateSource::Uploaded => Source::Uploaded,
    }
}

/// A stored certificate as the API shows it.
pub(crate) fn stored(certificate: &StoredCertificate, now: i64) -> Certificate {
    Certificate {
        id: certificate.id.clone(),
        names: certificate.names.clone(),
        source: source(certificate.source),
        status: status(status_of(certificate, now)),
        not_after: certificate.not_after.map(rfc3339),
        last_error: certificate.last_error.clone(),
    }
}

/// The visitors' CA certificate of `hostname`, as the API shows it. Each node issues its own
/// on demand (and renews it), so it has no one expiry to show.
fn edge_ca(hostname: &str) -> Certificate {
    Certificate {
        id: format!("{EDGE_CA_PREFIX}{hostname}"),
        names: vec![hostname.to_string()],
        source: Source::EdgeCa,
        status: CertificateStatus::Valid,
        not_after: None,
        last_error: None,
    }
}

/// Every certificate: the stored ones as `stored` has them (the store's current rows), then
/// the visitors' CA certificate of each of `hostnames` that no public certificate serves on this
/// node.
pub(crate) fn list<'a>(
    certificates: &Certificates,
    stored_rows: &[StoredCertificate],
    hostnames: impl IntoIterator<Item = &'a String>,
) -> Vec<Certificate> {
    let now = now();
    let table = certificates.table();
    let mut items: Vec<Certificate> = stored_rows.iter().map(|c| stored(c, now)).collect();
    items.extend(
        hostnames
            .into_iter()
            .filter(|hostname| table.select(hostname, now).is_none())
            .map(|hostname| edge_ca(hostname)),
    );
    items
}

/// The certificate that answers `hostname`, for its API object.
pub(crate) fn for_hostname(certificates: &Certificates, hostname: &str) -> HostnameCertificate {
    let now = now();
    let table = certificates.table();
    let shown = table
        .certificate_for(hostname, now)
        .map(|c| stored(c, now))
        .unwrap_or_else(|| edge_ca(hostname));
    HostnameCertificate {
        id: shown.id,
        source: shown.source,
        status: shown.status,
        not_after: shown.not_after,
    }
}

/// `postern_edge_certificate_expiry_timestamp_seconds{names,source}` for every stored
/// certificate that was issued.
pub(crate) fn expiry_samples(certificates: &Certificates) -> Vec<Sample> {
    certificates
        .table()
        .certificates
        .iter()
        .filter_map(|c| {
            let not_after = c.not_after?;
            Some(Sample {
                name: EXPIRY,
                labels: vec![
                    ("names", c.names.join(",")),
                    ("source", c.source.as_str().to_string()),
                ],
                value: not_after as f64,
            })
        })
        .collect()
}
