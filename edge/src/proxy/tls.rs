//! TLS for the public HTTPS listener: the certificate is chosen by SNI (see `certs`): an
//! uploaded certificate whose names cover the name (exact before wildcard), else an ACME one,
//! else for a declared hostname (or a name a wildcard hostname serves) one from the visitors'
//! CA; other names get a self-signed
//! certificate (and then a 404 from the proxy). A hello that offers only `acme-tls/1` is an
//! ACME server's `tls-alpn-01` validation: it gets that challenge's certificate or nothing.

use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

use crate::catalog::Catalog;
use crate::certs::Certificates;

/// The ALPN protocol of `tls-alpn-01` (RFC 8737).
pub(super) const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Picks the certificate for a TLS connection by its server name.
struct SniResolver {
    catalog: Catalog,
    certificates: Certificates,
}

impl std::fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SniResolver").finish()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name().map(str::to_ascii_lowercase);
        let offered: Vec<&[u8]> = hello.alpn().into_iter().flatten().collect();
        let acme_only = !offered.is_empty() && offered.iter().all(|p| *p == ACME_TLS_ALPN);
        if acme_only {
            return self.certificates.tls_alpn01(name.as_deref()?);
        }
        if let Some(name) = name {
            if let Some(public) = self.certificates.public(&name) {
                return Some(public);
            }
            // A name a wildcard hostname serves gets a certificate for that name.
            if self.catalog.snapshot().hostname_for(&name).is_some() {
                return self.certificates.visitors_ca(&name);
            }
        }
        Some(self.certificates.unknown_name())
    }
}

/// The HTTPS listener's acceptor (HTTP/2 and HTTP/1.1 by ALPN, and `acme-tls/1` for ACME
/// validations): certificates from `certificates` for the hostnames `catalog` declares.
pub(super) fn acceptor(
    catalog: Catalog,
    certificates: Certificates,
) -> Result<TlsAcceptor, rustls::Error> {
    let provider = certificates.provider().clone();
    let resolver = SniResolver {
        catalog,
        certificates,
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    // Visitors' clients never offer acme-tls/1, so they get h2 or http/1.1 as before.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
