//! TLS for the public HTTPS listener: the certificate is chosen by SNI, issued by the edge CA
//! for a declared hostname on first use and cached; other names get the edge's fallback
//! certificate (and then a 404 from the proxy).

use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

use crate::ca::{CertCache, EdgeCa};
use crate::catalog::Catalog;

/// Picks the certificate for a TLS connection by its server name.
struct SniResolver {
    catalog: Catalog,
    cache: CertCache,
    fallback_names: Vec<String>,
}

impl std::fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SniResolver")
            .field("fallback_names", &self.fallback_names)
            .finish()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = hello.server_name() {
            let name = name.to_ascii_lowercase();
            if self.catalog.snapshot().hostnames.contains_key(&name) {
                return self.cache.get(&[name]);
            }
        }
        self.cache.get(&self.fallback_names)
    }
}

/// The HTTPS listener's acceptor (HTTP/2 and HTTP/1.1 by ALPN): certificates from `ca` for
/// the hostnames `catalog` declares; other names get one for `localhost` and
/// `public_addresses`.
pub(super) fn acceptor(
    catalog: Catalog,
    ca: Arc<EdgeCa>,
    public_addresses: &[String],
) -> Result<TlsAcceptor, rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut fallback_names = vec!["localhost".to_string()];
    fallback_names.extend(public_addresses.iter().cloned());
    let resolver = SniResolver {
        catalog,
        cache: CertCache::new(ca, provider.clone()),
        fallback_names,
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
