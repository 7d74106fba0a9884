//! What the HTTPS listener, the HTTP listener and DNS read about public certificates, built
//! from the store in one go and swapped in whole ([`super::served`]): the certificates by name,
//! and the answers to the ACME challenges in flight. Immutable once built, so a TLS hello reads
//! it without a lock held beyond cloning one `Arc`.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use rcgen::{CertificateParams, CustomExtension, KeyPair, SanType};
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::names::{Cover, best_cover, wildcard_of};
use super::pem::certified_key;
use crate::store::{CertificateSource, ChallengeKind, PendingChallenge, StoredCertificate};

/// Where a certificate stands, as the API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Being obtained; nothing failed yet.
    Pending,
    /// Served: it has not expired.
    Valid,
    /// Not served: obtaining it failed (or it expired and renewing failed).
    Failed,
}

/// Where `certificate` stands at `now` (Unix seconds).
pub(crate) fn status_of(certificate: &StoredCertificate, now: i64) -> Status {
    match (&certificate.chain_pem, certificate.not_after) {
        (Some(_), Some(not_after)) if not_after > now => Status::Valid,
        _ if certificate.last_error.is_some() => Status::Failed,
        (Some(_), _) => Status::Failed,
        _ => Status::Pending,
    }
}

/// A certificate the HTTPS listener may serve.
#[derive(Debug, Clone)]
pub(crate) struct Served {
    /// Its id in the store.
    pub(crate) id: String,
    /// ACME or uploaded.
    pub(crate) source: CertificateSource,
    /// Unix seconds.
    pub(crate) not_after: i64,
    /// The chain and key.
    pub(crate) key: Arc<CertifiedKey>,
}

/// Everything at one reload.
#[derive(Debug, Default)]
pub(crate) struct Table {
    /// Certificates with a chain and a key that loaded, by each of their names (`*.` included).
    by_name: HashMap<String, Vec<Served>>,
    /// Every stored certificate, without its key (for the API, the status page and metrics).
    pub(crate) certificates: Vec<StoredCertificate>,
    /// `http-01`: token → key authorization.
    http01: HashMap<String, String>,
    /// `tls-alpn-01`: domain → its challenge certificate.
    tls_alpn01: HashMap<String, Arc<CertifiedKey>>,
    /// `dns-01`: `_acme-challenge.<domain>` → the TXT values.
    dns01: Arc<HashMap<String, Vec<String>>>,
}

impl Table {
    /// Builds the table; a stored certificate that cannot be served (a corrupt chain or key) is
    /// left out with an error log, the others are served.
    pub(crate) fn build(
        stored: Vec<StoredCertificate>,
        challenges: &[PendingChallenge],
        provider: &Arc<CryptoProvider>,
    ) -> Self {
        let mut table = Table::default();
        let mut dns01: HashMap<String, Vec<String>> = HashMap::new();
        for certificate in &stored {
            let (Some(chain), Some(key), Some(not_after)) = (
                &certificate.chain_pem,
                &certificate.key_pem,
                certificate.not_after,
            ) else {
                continue;
            };
            match certified_key(chain, key.expose(), provider) {
                Ok(key) => {
                    for name in &certificate.names {
                        table.by_name.entry(name.clone()).or_default().push(Served {
                            id: certificate.id.clone(),
                            source: certificate.source,
                            not_after,
                            key: key.clone(),
                        });
                    }
                }
                Err(error) => tracing::error!(
                    certificate = %certificate.id,
                    %error,
                    "a stored certificate cannot be served"
                ),
            }
        }
        for challenge in challenges {
            match challenge.kind {
                ChallengeKind::Http01 => {
                    table
                        .http01
                        .insert(challenge.key.clone(), challenge.value.clone());
                }
                ChallengeKind::Dns01 => {
                    dns01
                        .entry(format!("_acme-challenge.{}", challenge.key))
                        .or_default()
                        .push(challenge.value.clone());
                }
                ChallengeKind::TlsAlpn01 => {
                    match alpn_certificate(&challenge.key, &challenge.value, provider) {
                        Ok(key) => {
                            table.tls_alpn01.insert(challenge.key.clone(), key);
                        }
                        Err(error) => tracing::error!(
                            domain = %challenge.key,
                            %error,
                            "cannot make the tls-alpn-01 certificate"
                        ),
                    }
                }
            }
        }
        table.dns01 = Arc::new(dns01);
        table.certificates = stored
            .into_iter()
            .map(|mut certificate| {
                certificate.key_pem = None;
                certificate
            })
            .collect();
        table
    }

    /// The public certificate for `hostname` at `now`: an uploaded one whose names cover it
    /// (an exact name before a wildcard), else an ACME one (the same way); among equals, the
    /// one valid longest. Expired certificates are never served.
    pub(crate) fn select(&self, hostname: &str, now: i64) -> Option<&Served> {
        let exact = self.by_name.get(hostname).into_iter().flatten();
        let wildcard = wildcard_of(hostname)
            .and_then(|w| self.by_name.get(&w))
            .into_iter()
            .flatten();
        let rank = |served: &Served, cover: Cover| {
            let source = match served.source {
                CertificateSource::Uploaded => 0,
                CertificateSource::Acme => 1,
            };
            (source, cover, std::cmp::Reverse(served.not_after))
        };
        exact
            .map(|served| (rank(served, Cover::Exact), served))
            .chain(wildcard.map(|served| (rank(served, Cover::Wildcard), served)))
            .filter(|(_, served)| served.not_after > now)
            .min_by(|a, b| a.0.cmp(&b.0))
            .map(|(_, served)| served)
    }

    /// The stored certificate the hostname's status is about: the one served, else an ACME
    /// certificate being obtained for it.
    pub(crate) fn certificate_for(&self, hostname: &str, now: i64) -> Option<&StoredCertificate> {
        if let Some(served) = self.select(hostname, now) {
            return self.certificates.iter().find(|c| c.id == served.id);
        }
        self.certificates
            .iter()
            .filter(|c| c.source == CertificateSource::Acme)
            .filter_map(|c| best_cover(&c.names, hostname).map(|cover| (cover, c)))
            .min_by_key(|(cover, _)| *cover)
            .map(|(_, c)| c)
    }

    /// The key authorization for an `http-01` token.
    pub(crate) fn http01(&self, token: &str) -> Option<&str> {
        self.http01.get(token).map(String::as_str)
    }

    /// The `tls-alpn-01` certificate for a domain.
    pub(crate) fn tls_alpn01(&self, domain: &str) -> Option<Arc<CertifiedKey>> {
        self.tls_alpn01.get(domain).cloned()
    }

    /// The `dns-01` TXT records: owner name → values.
    pub(crate) fn dns01(&self) -> &Arc<HashMap<String, Vec<String>>> {
        &self.dns01
    }
}

/// The self-signed certificate that answers a `tls-alpn-01` challenge (RFC 8737): the domain as
/// its only name, and the SHA-256 of the key authorization (`digest`, base64url) in a critical
/// `acmeIdentifier` extension.
fn alpn_certificate(
    domain: &str,
    digest: &str,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<CertifiedKey>, String> {
    let digest = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(digest)
        .map_err(|_| "the stored digest is not base64url".to_string())?;
    if digest.len() != 32 {
        return Err("the stored digest is not a SHA-256".into());
    }
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![SanType::DnsName(
        domain
            .to_string()
            .try_into()
            .map_err(|e: rcgen::Error| e.to_string())?,
    )];
    params.custom_extensions = vec![CustomExtension::new_acme_identifier(&digest)];
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let der: CertificateDer<'static> = cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    // Not `CertifiedKey::from_der`: its key check parses the certificate with webpki, which
    // refuses the critical acmeIdentifier extension. The key was made here, for this certificate.
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(CertifiedKey::new(vec![der], signing)))
}

#[cfg(test)]
mod tests;
