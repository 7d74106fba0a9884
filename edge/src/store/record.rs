//! What the store holds and promises: records of each kind with their versions, the writes
//! that change them, the [`Store`] trait both stores implement, and [`StoreError`].

use std::fmt;

use async_trait::async_trait;
use serde_json::Value;

/// The kinds of objects the store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Kind {
    /// A tunnel; id is a UUID, name unique.
    Tunnel,
    /// A policy; id is a UUID, name unique.
    Policy,
    /// A hostname; id and name are the hostname.
    Hostname,
    /// A TCP service; id is a UUID, name unique, `listen_port` unique.
    TcpService,
}

impl Kind {
    /// The stored name of the kind.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Tunnel => "tunnel",
            Kind::Policy => "policy",
            Kind::Hostname => "hostname",
            Kind::TcpService => "tcp_service",
        }
    }

    /// Parses a stored kind name.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text {
            "tunnel" => Some(Kind::Tunnel),
            "policy" => Some(Kind::Policy),
            "hostname" => Some(Kind::Hostname),
            "tcp_service" => Some(Kind::TcpService),
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
pub(crate) struct Ref {
    /// The kind referred to.
    pub(crate) kind: Kind,
    /// Its id.
    pub(crate) id: String,
    /// Where in the referring object's body the reference sits, e.g. `/policy_ids/1`.
    pub(crate) pointer: String,
}

/// What a write puts in the store.
#[derive(Debug, Clone)]
pub(crate) struct Write {
    /// The kind.
    pub(crate) kind: Kind,
    /// The id (ignored by `replace`, which takes it separately).
    pub(crate) id: String,
    /// Unique within the kind.
    pub(crate) name: String,
    /// The normalized spec, as JSON.
    pub(crate) body: Value,
    /// The objects this one refers to; they must exist.
    pub(crate) refs: Vec<Ref>,
}

/// A stored object.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Record {
    /// The kind.
    pub(crate) kind: Kind,
    /// The id.
    pub(crate) id: String,
    /// The unique name.
    pub(crate) name: String,
    /// Starts at 1, increases with every replace.
    pub(crate) version: u64,
    /// RFC 3339.
    pub(crate) created_at: String,
    /// The normalized spec, as JSON.
    pub(crate) body: Value,
    /// The store revision of the last write to this object.
    pub(crate) revision: u64,
}

/// A control API token as the store keeps it: never the token, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiTokenRecord {
    /// A UUID, how the API names the token.
    pub(crate) id: String,
    /// The SHA-256 of the token, lowercase hex.
    pub(crate) hash: String,
    /// What it is for.
    pub(crate) name: String,
    /// `admin`, `editor` or `viewer`.
    pub(crate) role: String,
    /// RFC 3339.
    pub(crate) created_at: String,
    /// RFC 3339 in UTC; `None` never expires.
    pub(crate) expires_at: Option<String>,
}

/// Everything in the store at one revision.
#[derive(Debug, Clone, Default)]
pub(crate) struct Dump {
    /// The store revision: increases with every write.
    pub(crate) revision: u64,
    /// Every record.
    pub(crate) records: Vec<Record>,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
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
pub(crate) trait Store: Send + Sync + 'static {
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

    /// Records an API token; nothing happens when a token with the same hash is there already.
    /// Every edge node on the store hears of it ([`Store::api_tokens`] changes).
    async fn add_api_token(&self, token: ApiTokenRecord) -> Result<(), StoreError>;

    /// Every stored API token, ordered by name, then id.
    async fn api_tokens(&self) -> Result<Vec<ApiTokenRecord>, StoreError>;

    /// Removes the API token `id`; `false` when there was none. Every edge node on the store
    /// hears of it.
    async fn delete_api_token(&self, id: &str) -> Result<bool, StoreError>;
}

/// Fails with `VersionMismatch` unless `if_match` is absent or names the stored version.
pub(super) fn check_version(record: &Record, if_match: Option<u64>) -> Result<(), StoreError> {
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
pub(crate) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
