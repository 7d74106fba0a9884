//! Server certificates issued by the edge CA on demand, cached per name and re-issued before
//! they expire: one per public hostname (HTTPS, by SNI) and one for the tunnel listener.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;

use super::authority::EdgeCa;

/// How long an issued server certificate is valid.
const LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

/// Re-issue once this much of the lifetime has passed.
const RENEW_AFTER: Duration = Duration::from_secs(20 * 24 * 3600);

/// At most this many names are cached; beyond it the cache is cleared (names are declared
/// hostnames, so this only bounds pathological cases).
const MAX_ENTRIES: usize = 10_000;

/// Issued certificates by name.
pub(crate) struct CertCache {
    ca: Arc<EdgeCa>,
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
    pub(crate) fn new(ca: Arc<EdgeCa>, provider: Arc<CryptoProvider>) -> Self {
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
        let (cert, key) = self
            .ca
            .issue_server_cert(names, LIFETIME)
            .map_err(|e| e.to_string())?;
        let chain = vec![cert, self.ca.cert_der().clone()];
        CertifiedKey::from_der(chain, key, &self.provider)
            .map(Arc::new)
            .map_err(|e| e.to_string())
    }
}
