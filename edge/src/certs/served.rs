//! [`Certificates`]: the handle every part of the edge shares. It holds the current [`Table`]
//! (reloaded from the store when told of a change, and every few seconds as a safety net), the
//! visitors' CA fallback, and answers the questions of the TLS hello, of `http-01` requests and
//! of DNS. Reading is one uncontended `RwLock` read and an `Arc` clone; the control runtime
//! writes.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use postern_schema::error_chain;
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::table::Table;
use crate::ca::{CaError, CertCache, VisitorCa, self_signed};
use crate::store::{CertificateStore, ChallengeKind, StoreError};

/// How often the table is reloaded without being told of a change.
const RESYNC_EVERY: Duration = Duration::from_secs(10);

/// What the edge's ACME settings mean for the API (the rest is the ordering task's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AcmeOffer {
    /// The challenges the edge answers, in the order it prefers them.
    pub(crate) challenges: Vec<ChallengeKind>,
}

/// Public certificates as this node serves them; cheap to clone.
#[derive(Clone)]
pub(crate) struct Certificates {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn CertificateStore>,
    provider: Arc<CryptoProvider>,
    table: RwLock<Arc<Table>>,
    /// Asks the reload task to reload now.
    wake: Notify,
    /// Counts reloads that changed something; the ordering task follows it.
    changes: watch::Sender<u64>,
    /// Certificates for hostnames without a public one.
    visitors: CertCache,
    /// For names that are not hostnames.
    unknown: Arc<CertifiedKey>,
    acme: Option<AcmeOffer>,
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificates")
            .field("acme", &self.inner.acme)
            .finish()
    }
}

/// Why public certificates could not be set up at start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CertificatesError {
    /// The store failed.
    #[error("cannot read the certificates from the store")]
    Store(#[from] StoreError),
    /// The fallback certificate could not be made.
    #[error("cannot make the HTTPS fallback certificate")]
    Fallback(#[from] CaError),
    /// rustls refused the fallback certificate.
    #[error("cannot use the HTTPS fallback certificate")]
    Tls(#[from] rustls::Error),
}

impl Certificates {
    /// Loads the certificates from the store. `visitors` issues for hostnames without a public
    /// certificate; names that are not hostnames get a self-signed certificate for
    /// `unknown_names`. `acme` is `None` when the edge does not obtain certificates.
    pub(crate) async fn load(
        store: Arc<dyn CertificateStore>,
        visitors: Arc<VisitorCa>,
        unknown_names: &[String],
        acme: Option<AcmeOffer>,
    ) -> Result<Self, CertificatesError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let (chain, key) = self_signed(unknown_names)?;
        let unknown = Arc::new(CertifiedKey::from_der(chain, key, &provider)?);
        let (changes, _) = watch::channel(0);
        let certificates = Self {
            inner: Arc::new(Inner {
                visitors: CertCache::new(visitors, provider.clone()),
                store,
                provider,
                table: RwLock::new(Arc::new(Table::default())),
                wake: Notify::new(),
                changes,
                unknown,
                acme,
            }),
        };
        certificates.reload().await?;
        Ok(certificates)
    }

    /// Reads the store again and swaps the new table in.
    pub(crate) async fn reload(&self) -> Result<(), StoreError> {
        let stored = self.inner.store.certificates().await?;
        let challenges = self.inner.store.challenges().await?;
        let table = Table::build(stored, &challenges, &self.inner.provider);
        let changed = {
            let current = self.table();
            current.certificates != table.certificates || **current.dns01() != **table.dns01()
        };
        *self
            .inner
            .table
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(table);
        if changed {
            self.inner.changes.send_modify(|n| *n += 1);
        }
        Ok(())
    }

    /// Asks for a reload without waiting for it (a change notification from another node).
    pub(crate) fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Reloads on every wake-up and every [`RESYNC_EVERY`] until `cancel`.
    pub(crate) async fn run(self, cancel: CancellationToken) {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(RESYNC_EVERY) => {}
            }
            if let Err(error) = self.reload().await {
                tracing::warn!(error = %error_chain(&error), "cannot reload the certificates; serving the last ones");
            }
        }
    }

    /// Fires after each reload that changed a certificate or a `dns-01` answer.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    /// The current table.
    pub(crate) fn table(&self) -> Arc<Table> {
        self.inner
            .table
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The store's certificates.
    pub(crate) fn store(&self) -> &Arc<dyn CertificateStore> {
        &self.inner.store
    }

    /// The crypto provider certificates are loaded with.
    pub(crate) fn provider(&self) -> &Arc<CryptoProvider> {
        &self.inner.provider
    }

    /// What the edge's ACME settings allow; `None` when it does not obtain certificates.
    pub(crate) fn acme(&self) -> Option<&AcmeOffer> {
        self.inner.acme.as_ref()
    }

    // === the TLS hello ===

    /// The public certificate (uploaded, else ACME) for `name` now.
    pub(crate) fn public(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        self.table()
            .select(name, now())
            .map(|served| served.key.clone())
    }

    /// The visitors' CA certificate for hostname `name` (issued now when missing or due).
    pub(crate) fn visitors_ca(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        self.inner.visitors.get(&[name.to_string()])
    }

    /// The certificate for a name that is not a hostname.
    pub(crate) fn unknown_name(&self) -> Arc<CertifiedKey> {
        self.inner.unknown.clone()
    }

    /// The `tls-alpn-01` challenge certificate for `name`, while its challenge is in flight.
    pub(crate) fn tls_alpn01(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        self.table().tls_alpn01(name)
    }

    /// The `dns-01` TXT records in flight: `_acme-challenge.<domain>` → values (the same map
    /// until a reload changes it).
    pub(crate) fn dns01(&self) -> Arc<HashMap<String, Vec<String>>> {
        self.table().dns01().clone()
    }

    // === http-01 ===

    /// The key authorization for an `http-01` token in flight.
    pub(crate) fn http01(&self, token: &str) -> Option<String> {
        self.table().http01(token).map(str::to_string)
    }
}

/// Now, Unix seconds.
pub(crate) fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
