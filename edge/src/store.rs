//! The edge's store: every tunnel, policy and hostname, durably. A generic record store with
//! optimistic concurrency (`version`), unique names and referential integrity, behind the
//! [`Store`] trait so the embedded SQLite store and a PostgreSQL store are interchangeable.

pub mod cluster;
mod postgres;
mod sqlite;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

pub use postgres::{CHANGES_CHANNEL, CLUSTER_CHANNEL, ChangeFeed, PostgresStore, check_url};
pub use sqlite::SqliteStore;

/// A store opened for the edge, and for a shared store the feed of changes that other edge
/// nodes make, which the catalog must follow.
pub struct OpenedStore {
    /// The store.
    pub store: Arc<dyn Store>,
    /// `None` for the embedded store: only this process writes it.
    pub changes: Option<ChangeFeed>,
    /// `None` for the embedded store: one node, no members to track.
    pub cluster: Option<ClusterBackend>,
}

/// What a shared store offers the edge nodes on it: their leases, and the feed that announces
/// changes to them.
pub struct ClusterBackend {
    /// The leases.
    pub leases: Arc<dyn cluster::ClusterStore>,
    /// Fires when a node took or gave up its lease or changed what it advertises.
    pub changes: ChangeFeed,
}

/// Opens the store `--store` names: a PostgreSQL URL, or when `None` the embedded store at
/// `embedded`. Applies pending migrations.
pub async fn open(url: Option<&str>, embedded: &Path) -> Result<OpenedStore, StoreError> {
    match url {
        Some(url) => {
            let store = Arc::new(PostgresStore::connect(url).await?);
            Ok(OpenedStore {
                changes: Some(store.change_feed()),
                cluster: Some(ClusterBackend {
                    changes: store.cluster_feed(),
                    leases: store.clone(),
                }),
                store,
            })
        }
        None => Ok(OpenedStore {
            store: Arc::new(SqliteStore::open(embedded)?),
            changes: None,
            cluster: None,
        }),
    }
}

/// The kinds of objects the store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A tunnel; id is a UUID, name unique.
    Tunnel,
    /// A policy; id is a UUID, name unique.
    Policy,
    /// A hostname; id and name are the hostname.
    Hostname,
}

impl Kind {
    /// The stored name of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Tunnel => "tunnel",
            Kind::Policy => "policy",
            Kind::Hostname => "hostname",
        }
    }

    /// Parses a stored kind name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "tunnel" => Some(Kind::Tunnel),
            "policy" => Some(Kind::Policy),
            "hostname" => Some(Kind::Hostname),
            _ => None,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reference from one object to another, with the JSON pointer of the field that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ref {
    /// The kind referred to.
    pub kind: Kind,
    /// Its id.
    pub id: String,
    /// Where in the referring object's body the reference sits, e.g. `/policy_ids/1`.
    pub pointer: String,
}

/// What a write puts in the store.
#[derive(Debug, Clone)]
pub struct Write {
    /// The kind.
    pub kind: Kind,
    /// The id (ignored by `replace`, which takes it separately).
    pub id: String,
    /// Unique within the kind.
    pub name: String,
    /// The normalized spec, as JSON.
    pub body: Value,
    /// The objects this one refers to; they must exist.
    pub refs: Vec<Ref>,
}

/// A stored object.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The kind.
    pub kind: Kind,
    /// The id.
    pub id: String,
    /// The unique name.
    pub name: String,
    /// Starts at 1, increases with every replace.
    pub version: u64,
    /// RFC 3339.
    pub created_at: String,
    /// The normalized spec, as JSON.
    pub body: Value,
    /// The store revision of the last write to this object.
    pub revision: u64,
}

/// Everything in the store at one revision.
#[derive(Debug, Clone, Default)]
pub struct Dump {
    /// The store revision: increases with every write.
    pub revision: u64,
    /// Every record.
    pub records: Vec<Record>,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No object with that id.
    #[error("{kind} {id} does not exist")]
    NotFound {
        /// The kind.
        kind: Kind,
        /// The id.
        id: String,
    },
    /// The name is taken.
    #[error("a {kind} named {name:?} already exists")]
    NameTaken {
        /// The kind.
        kind: Kind,
        /// The name.
        name: String,
    },
    /// A referenced object does not exist.
    #[error("{} {} does not exist", reference.kind, reference.id)]
    MissingRef {
        /// The dangling reference.
        reference: Ref,
    },
    /// The object is still referenced.
    #[error("{kind} {id} is still used by {}", referrers.join(", "))]
    InUse {
        /// The kind.
        kind: Kind,
        /// The id.
        id: String,
        /// Names of the objects that refer to it.
        referrers: Vec<String>,
    },
    /// `If-Match` did not match.
    #[error("{kind} {id} is at version {current}, not {expected}")]
    VersionMismatch {
        /// The kind.
        kind: Kind,
        /// The id.
        id: String,
        /// What the client expected.
        expected: u64,
        /// What is stored.
        current: u64,
    },
    /// The store cannot be used right now.
    #[error("the store is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The stored data is not what this version of the edge wrote.
    #[error("the store holds data this edge cannot read: {0}")]
    Corrupt(String),
}

/// The durable state of the edge.
///
/// Every write is one transaction: when a method returns `Ok`, the change is on disk and
/// survives a crash; when it returns `Err`, nothing changed.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Every record of one kind, ordered by name.
    async fn list(&self, kind: Kind) -> Result<Vec<Record>, StoreError>;

    /// One record.
    async fn get(&self, kind: Kind, id: &str) -> Result<Option<Record>, StoreError>;

    /// Everything, at one revision.
    async fn dump(&self) -> Result<Dump, StoreError>;

    /// Inserts a new object at version 1. Fails on a taken name or a missing reference.
    async fn create(&self, write: Write, secret: Option<String>) -> Result<Record, StoreError>;

    /// Replaces an object's name, body and references, bumping its version; with `if_match`,
    /// only if the stored version is that one.
    async fn replace(
        &self,
        id: &str,
        write: Write,
        if_match: Option<u64>,
    ) -> Result<Record, StoreError>;

    /// Deletes an object that nothing refers to; with `if_match`, only at that version. The
    /// returned record is the deleted one, with the revision of the deletion.
    async fn delete(
        &self,
        kind: Kind,
        id: &str,
        if_match: Option<u64>,
    ) -> Result<Record, StoreError>;

    /// The secret stored with an object at creation (a tunnel's enrolment secret).
    async fn secret(&self, kind: Kind, id: &str) -> Result<Option<String>, StoreError>;

    /// Stores `value` under `key` unless a value is there already; returns the stored value.
    /// Edge nodes that start together agree on one CA this way.
    async fn setting_or_insert(&self, key: &str, value: String) -> Result<String, StoreError>;

    /// Removes the setting `key` and returns its value, if it was there. Exactly one of several
    /// concurrent callers (on any edge node) gets the value: single-use secrets rely on it.
    async fn take_setting(&self, key: &str) -> Result<Option<String>, StoreError>;

    /// Records the hash of an API token.
    async fn add_api_token(&self, hash: &str, name: &str) -> Result<(), StoreError>;

    /// Every stored API token hash.
    async fn api_token_hashes(&self) -> Result<Vec<String>, StoreError>;
}

/// Fails with `VersionMismatch` unless `if_match` is absent or names the stored version.
fn check_version(record: &Record, if_match: Option<u64>) -> Result<(), StoreError> {
    match if_match {
        Some(expected) if expected != record.version => Err(StoreError::VersionMismatch {
            kind: record.kind,
            id: record.id.clone(),
            expected,
            current: record.version,
        }),
        _ => Ok(()),
    }
}

/// Now, RFC 3339 in UTC to the second: the `created_at` of new records.
fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
