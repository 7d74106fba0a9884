//! Server certificates issued on demand, cached per name and re-issued before they expire: the
//! tunnel listener's (by the edge CA), and one per public hostname on HTTPS while it has no
//! public certificate (by the visitors' CA). [`ServerIssuer`] is what either CA offers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A CA that issues server certificates.
pub(crate) trait ServerIssuer: Send + Sync + 'static {
    /// A certificate chain (leaf first, then the CA) and key for `names`, valid for `lifetime`.
    fn issue_server_chain(
        &self,
        names: &[String],
        lifetime: Duration,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String>;
}

/// How long an issued server certificate is valid.
const LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

/// Re-issue once this much of the lifetime has passed.
const RENEW_AFTER: Duration = Duration::from_secs(20 * 24 * 3600);

/// At most this many names are cached; beyond it the cache is cleared (names are declared
/// hostnames, so this only bounds pathological cases).
const MAX_ENTRIES: usize = 10_000;

/// Issued certificates by name.
pub(crate) struct CertCache {
    ca: Arc<dyn ServerIssuer>,
    provider: Arc<CryptoProvider>,
    entries: Mutex<HashMap<String, Entry>>,
}

struct Entry {
    key: Arc<CertifiedKey>,
    renew_at: Instant,
}

impl std::fmt::Debug for CertCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CertCache")
    }
}

impl CertCache {
    /// An empty cache issuing from `ca`.
    pub(crate) fn new(ca: Arc<dyn ServerIssuer>, provider: Arc<CryptoProvider>) -> Self {
        Self {
            ca,
            provider,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The certificate (chain: leaf, CA) and key for `names[0]`, covering every name in
    /// `names`; issued now when missing or due. A failed renewal keeps serving the old one.
    pub(crate) fn get(&self, names: &[String]) -> Option<Arc<CertifiedKey>> {
        let first = names.first()?;
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = entries.get(first)
            && Instant::now() < entry.renew_at
        {
            return Some(entry.key.clone());
        }
        match self.issue(names) {
            Ok(key) => {
                if entries.len() >= MAX_ENTRIES {
                    entries.clear();
                }
                entries.insert(
                    first.clone(),
                    Entry {
                        key: key.clone(),
                        renew_at: Instant::now() + RENEW_AFTER,
                    },
                );
                Some(key)
            }
            Err(error) => {
                tracing::error!(hostname = %first, %error, "cannot issue a server certificate");
                entries.get(first).map(|e| e.key.clone())
            }
        }
    }

    fn issue(&self, names: &[String]) -> Result<Arc<CertifiedKey>, String> {
        let (chain, key) = self.ca.issue_server_chain(names, LIFETIME)?;
        CertifiedKey::from_der(chain, key, &self.provider)
            .map(Arc::new)
            .map_err(|e| e.to_string())
    }
}
