//! The edge's store: every tunnel, policy and hostname, durably. A generic record store with
//! optimistic concurrency (`version`), unique names and referential integrity, behind the
//! [`Store`] trait so the embedded SQLite store and a PostgreSQL store are interchangeable.

mod certificates;
pub(crate) mod cluster;
mod postgres;
mod record;
mod sqlite;

use std::path::Path;
use std::sync::Arc;

pub(crate) use certificates::{
    CertificateSource, CertificateStore, ChallengeKind, PendingChallenge, StoredCertificate,
};
pub(crate) use postgres::{ChangeFeed, PostgresStore, check_url};
pub(crate) use record::{ApiTokenRecord, Kind, Record, Ref, Store, StoreError, Write, now_rfc3339};
pub(crate) use sqlite::SqliteStore;

/// A store opened for the edge, and for a shared store the feed of changes that other edge
/// nodes make, which the catalog must follow.
pub(crate) struct OpenedStore {
    /// The store.
    pub(crate) store: Arc<dyn Store>,
    /// The same store's public certificates and ACME state.
    pub(crate) certificates: Arc<dyn CertificateStore>,
    /// `None` for the embedded store: only this process writes it.
    pub(crate) changes: Option<ChangeFeed>,
    /// `None` for the embedded store: one node, no members to track.
    pub(crate) cluster: Option<ClusterBackend>,
    /// `None` for the embedded store: API tokens added or removed by other edge nodes, which
    /// each node's token check must follow.
    pub(crate) token_changes: Option<ChangeFeed>,
}

/// What a shared store offers the edge nodes on it: their leases, and the feed that announces
/// changes to them.
pub(crate) struct ClusterBackend {
    /// The leases.
    pub(crate) leases: Arc<dyn cluster::ClusterStore>,
    /// Fires when a node took or gave up its lease or changed what it advertises.
    pub(crate) changes: ChangeFeed,
}

/// Opens the store `--store` names: a PostgreSQL URL, or when `None` the embedded store at
/// `embedded`. Applies pending migrations.
pub(crate) async fn open(url: Option<&str>, embedded: &Path) -> Result<OpenedStore, StoreError> {
    match url {
        Some(url) => {
            let store = Arc::new(PostgresStore::connect(url).await?);
            Ok(OpenedStore {
                certificates: store.clone(),
                changes: Some(store.change_feed()),
                token_changes: Some(store.token_feed()),
                cluster: Some(ClusterBackend {
                    changes: store.cluster_feed(),
                    leases: store.clone(),
                }),
                store,
            })
        }
        None => {
            let store = Arc::new(SqliteStore::open(embedded)?);
            Ok(OpenedStore {
                certificates: store.clone(),
                store,
                changes: None,
                cluster: None,
                token_changes: None,
            })
        }
    }
}

#[cfg(test)]
mod tests;
