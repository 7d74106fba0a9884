//! The PostgreSQL store: one database shared by several edge nodes (`--store postgres://…`).
//!
//! - Versioned migrations run at start inside one transaction that holds an advisory lock, so
//!   nodes starting together apply each migration once.
//! - Every write is one transaction that first bumps the single revision row: that row lock
//!   serializes writers on every node, so the checks that follow (names, references, `If-Match`
//!   against the row read `FOR UPDATE`) see every earlier write, and revisions commit in order.
//! - A committed write announces its revision with `NOTIFY postern_changes` (sent by PostgreSQL at
//!   commit, never for a rolled-back write); [`ChangeFeed`] follows it on a dedicated connection.
//! - Every call is bounded in time (pool wait, connect, statements), so callers fail fast with
//!   [`StoreError::Unavailable`] while the database is unreachable and succeed again, without a
//!   restart, once it is back. As with any networked database, an error while committing
//!   (the connection lost mid-commit) is ambiguous: the write may have landed, which a retry
//!   with `If-Match` or the same name then reports.
//! - Connections use TLS as the URL's `sslmode` and `sslrootcert` say (rustls; see `tls`):
//!   `sslmode=verify-full&sslrootcert=FILE` is the recommended setting for a database on
//!   another host. A certificate that is not trusted, and a server that wants TLS from an edge
//!   told `sslmode=disable`, are reported as such.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{
    ClientWrapper, Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
    Transaction,
};
use futures::StreamExt;
use futures::future::BoxFuture;
use postern_schema::error_chain;
use tokio::sync::mpsc;
use tokio_postgres::config::Host;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, Config, IsolationLevel, Row};
use tokio_postgres_rustls::MakeRustlsConnect;
use tokio_util::sync::CancellationToken;

use super::certificates::{CertificateStore, PendingChallenge, StoredCertificate};
use super::cluster::{ClusterStore, NodeAdvert, NodeLease};
use super::record::{
    ApiTokenRecord, Dump, Kind, Record, Store, StoreError, Write, check_version, now_rfc3339,
};
use cluster::CLUSTER_CHANNEL;
use tls::{StoreUrl, TlsMode, certificate_problem};

mod certificates;
mod cluster;
mod tls;

/// The channel every committed write notifies, with the new store revision as the payload.
const CHANGES_CHANNEL: &str = "postern_changes";

/// The channel notified when an API token is added or removed (no payload): every node
/// re-reads the tokens, so a revoked one is refused everywhere within moments.
const TOKENS_CHANNEL: &str = "postern_tokens";

/// The advisory lock key that serializes migrations ("postern1" in ASCII).
const MIGRATION_LOCK: i64 = 0x706f_7374_6572_6e31;

/// Connections per edge node.
const POOL_SIZE: usize = 16;

/// Bound on opening one connection (TCP and the startup handshake).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Bound on waiting for a free pooled connection.
const POOL_WAIT: Duration = Duration::from_secs(2);

/// Bound on the statements of one store call, measured by the edge: it also covers a server that
/// stopped answering without closing the connection.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);

/// Bound on migrations, which may wait for another node's.
const MIGRATION_TIMEOUT: Duration = Duration::from_secs(60);

/// Server-side bounds for every session, so an abandoned transaction cannot hold the revision row
/// (and with it every node's writes) for long.
const SESSION_OPTIONS: &str = "-c statement_timeout=5s -c lock_timeout=5s \
                               -c idle_in_transaction_session_timeout=15s";

/// How often the change feed checks that its connection is alive.
const FEED_HEARTBEAT: Duration = Duration::from_secs(10);

/// First and longest pause between change feed reconnections.
const FEED_BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(2));

/// The schema, applied in order; `postern_migrations` records which ran.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE postern_objects (
    kind TEXT COLLATE "C" NOT NULL,
    id TEXT COLLATE "C" NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    version BIGINT NOT NULL,
    revision BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    body TEXT NOT NULL,
    secret TEXT,
    PRIMARY KEY (kind, id),
    UNIQUE (kind, name)
);
CREATE TABLE postern_refs (
    from_kind TEXT COLLATE "C" NOT NULL,
    from_id TEXT COLLATE "C" NOT NULL,
    to_kind TEXT COLLATE "C" NOT NULL,
    to_id TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (from_kind, from_id, to_kind, to_id),
    FOREIGN KEY (from_kind, from_id) REFERENCES postern_objects (kind, id) ON DELETE CASCADE,
    FOREIGN KEY (to_kind, to_id) REFERENCES postern_objects (kind, id)
);
CREATE INDEX postern_refs_by_target ON postern_refs (to_kind, to_id);
CREATE TABLE postern_api_tokens (
    hash TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE postern_settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE postern_revision (
    only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    revision BIGINT NOT NULL
);
INSERT INTO postern_revision (revision) VALUES (0);
"#,
    r#"
CREATE TABLE postern_nodes (
    node_id TEXT COLLATE "C" PRIMARY KEY,
    advert TEXT NOT NULL,
    renewed_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX postern_nodes_by_expiry ON postern_nodes (expires_at);
"#,
    // API tokens get an id, a role and an expiry; the tokens made before roles existed were
    // admin tokens, and stay so.
    r#"
ALTER TABLE postern_api_tokens ADD COLUMN id TEXT COLLATE "C";
ALTER TABLE postern_api_tokens ADD COLUMN role TEXT NOT NULL DEFAULT 'admin';
ALTER TABLE postern_api_tokens ADD COLUMN expires_at TEXT;
UPDATE postern_api_tokens SET id = gen_random_uuid()::text;
ALTER TABLE postern_api_tokens ALTER COLUMN id SET NOT NULL;
CREATE UNIQUE INDEX postern_api_tokens_by_id ON postern_api_tokens (id);
"#,
    certificates::MIGRATION,
];

const COLUMNS: &str = "kind, id, name, version, created_at, body, revision";

/// Why the PostgreSQL store could not do something; carried inside [`StoreError::Unavailable`].
#[derive(Debug, thiserror::Error)]
enum PostgresError {
    /// The URL does not parse, or its TLS settings cannot be used.
    #[error("the store URL cannot be used: {0}")]
    Url(String),
    /// The database server's certificate is not trusted.
    #[error(
        "the database server's TLS certificate is not trusted ({detail}): sslrootcert must \
         name the CA certificate that signed it (sslmode={mode})"
    )]
    UntrustedCertificate {
        /// What rustls said.
        detail: String,
        /// The URL's sslmode.
        mode: &'static str,
    },
    /// The server refused a connection without TLS.
    #[error(
        "the database server refused a connection without TLS (the store URL says \
         sslmode=disable): use sslmode=verify-full with sslrootcert=FILE"
    )]
    TlsRequired(#[source] tokio_postgres::Error),
    /// No pooled connection could be had.
    #[error("cannot get a database connection")]
    Pool(#[source] PoolError),
    /// The pool could not be built.
    #[error("cannot set up the connection pool")]
    Build(#[source] deadpool_postgres::BuildError),
    /// The database answered with an error or the connection failed.
    #[error("the database failed")]
    Database(#[source] tokio_postgres::Error),
    /// The database did not answer in time.
    #[error("the database did not answer within {0:?}")]
    TimedOut(Duration),
    /// The change feed's connection ended.
    #[error("the database closed the connection")]
    Closed,
}

impl From<PostgresError> for StoreError {
    fn from(error: PostgresError) -> Self {
        StoreError::Unavailable(Box::new(error))
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        PostgresError::Database(error).into()
    }
}

/// Checks a `--store` value without connecting: a `postgres://` or `postgresql://` URL that
/// `tokio-postgres` understands, with TLS settings that can be used (`sslrootcert` read).
pub(crate) fn check_url(url: &str) -> Result<(), String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err("expected a postgres://user:password@host:port/database URL".into());
    }
    StoreUrl::parse(url)?.connector()?;
    Ok(())
}

/// The PostgreSQL store.
#[derive(Clone)]
pub(crate) struct PostgresStore {
    pool: Pool,
    config: Config,
    target: String,
    tls: MakeRustlsConnect,
    mode: TlsMode,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.target)
            .finish()
    }
}

impl PostgresStore {
    /// Connects to the database at `url` and applies pending migrations. Fails with
    /// `Unavailable` when the database cannot be reached and with `Corrupt` when a newer edge
    /// migrated it further than this one knows.
    pub(crate) async fn connect(url: &str) -> Result<Self, StoreError> {
        let url = StoreUrl::parse(url).map_err(PostgresError::Url)?;
        let tls = url.connector().map_err(PostgresError::Url)?;
        let mode = url.mode;
        let config = session_config(url.config);
        let target = format!("{} (sslmode={})", describe(&config), mode.as_str());
        let connect_bound = connect_bound(&config);
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(connect_bound))
            .recycle_timeout(Some(connect_bound))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(PostgresError::Build)?;
        let store = Self {
            pool,
            config,
            target,
            tls,
            mode,
        };
        store.migrate().await?;
        tracing::info!(store = %store.target, "using the PostgreSQL store");
        Ok(store)
    }

    /// The feed of changes written to this database by any node.
    pub(crate) fn change_feed(&self) -> ChangeFeed {
        ChangeFeed {
            config: self.config.clone(),
            target: self.target.clone(),
            channel: CHANGES_CHANNEL,
            tls: self.tls.clone(),
            mode: self.mode,
        }
    }

    /// The feed of API tokens added or removed by any node ([`TOKENS_CHANNEL`]).
    pub(crate) fn token_feed(&self) -> ChangeFeed {
        ChangeFeed {
            channel: TOKENS_CHANNEL,
            ..self.change_feed()
        }
    }

    /// The feed of changes to the edge nodes' leases ([`CLUSTER_CHANNEL`]).
    pub(crate) fn cluster_feed(&self) -> ChangeFeed {
        ChangeFeed {
            channel: CLUSTER_CHANNEL,
            ..self.change_feed()
        }
    }

    /// Runs `op` on a pooled connection within [`OPERATION_TIMEOUT`]. A connection whose call
    /// timed out is closed rather than returned to the pool: it may be stuck mid-transaction.
    async fn run<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        F: for<'c> FnOnce(&'c mut ClientWrapper) -> BoxFuture<'c, Result<T, StoreError>>,
    {
        self.run_within(OPERATION_TIMEOUT, op).await
    }

    async fn run_within<T, F>(&self, limit: Duration, op: F) -> Result<T, StoreError>
    where
        F: for<'c> FnOnce(&'c mut ClientWrapper) -> BoxFuture<'c, Result<T, StoreError>>,
    {
        let mut client = self
            .pool
            .get()
            .await
            .map_err(|error| connect_failure(error, self.mode))?;
        match tokio::time::timeout(limit, op(&mut client)).await {
            Ok(result) => result,
            Err(_) => {
                drop(Object::take(client));
                Err(PostgresError::TimedOut(limit).into())
            }
        }
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let target = self.target.clone();
        self.run_within(MIGRATION_TIMEOUT, move |client| {
            Box::pin(migrate(client, target))
        })
        .await
    }
}

/// Why a connection could not be had, saying so when TLS is the reason.
fn connect_failure(error: PoolError, mode: TlsMode) -> PostgresError {
    match error {
        PoolError::Backend(backend) => {
            if let Some(detail) = certificate_problem(&backend) {
                return PostgresError::UntrustedCertificate {
                    detail,
                    mode: mode.as_str(),
                };
            }
            let refused_in_clear = backend.as_db_error().is_some_and(|db| {
                *db.code() == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
                    && db.message().contains("no encryption")
            });
            if mode == TlsMode::Disable && refused_in_clear {
                PostgresError::TlsRequired(backend)
            } else {
                PostgresError::Pool(PoolError::Backend(backend))
            }
        }
        other => PostgresError::Pool(other),
    }
}

/// The URL's settings plus the edge's bounds: a connect timeout (unless the URL sets one),
/// server-side statement and lock timeouts, and TCP keepalives.
fn session_config(mut config: Config) -> Config {
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    let options = match config.get_options() {
        Some(own) if !own.trim().is_empty() => format!("{SESSION_OPTIONS} {own}"),
        _ => SESSION_OPTIONS.to_string(),
    };
    config
        .options(options)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30))
        .tcp_user_timeout(Duration::from_secs(30));
    if config.get_application_name().is_none() {
        config.application_name("postern-edge");
    }
    config
}

/// How long opening one connection may take: the URL's `connect_timeout` (per host) or ours,
/// plus a little for the startup handshake.
fn connect_bound(config: &Config) -> Duration {
    let per_host = config
        .get_connect_timeout()
        .copied()
        .unwrap_or(CONNECT_TIMEOUT);
    let hosts = u32::try_from(config.get_hosts().len().max(1)).unwrap_or(u32::MAX);
    per_host.saturating_mul(hosts) + Duration::from_millis(500)
}

/// `user@host:port/database`, for logs: never the password.
fn describe(config: &Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let host = match host {
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => path.display().to_string(),
            };
            match config.get_ports().get(i).or(config.get_ports().first()) {
                Some(port) => format!("{host}:{port}"),
                None => host,
            }
        })
        .collect();
    format!(
        "{}@{}/{}",
        config.get_user().unwrap_or("(default user)"),
        hosts.join(","),
        config.get_dbname().unwrap_or("(default database)")
    )
}

async fn migrate(client: &mut ClientWrapper, target: String) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    // Migrations may outlast the per-statement bound; the caller bounds them as a whole.
    tx.batch_execute("SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = 0")
        .await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS postern_migrations (
             version INTEGER PRIMARY KEY,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let applied: i32 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM postern_migrations",
            &[],
        )
        .await?
        .try_get(0)?;
    let applied = usize::try_from(applied)
        .map_err(|_| StoreError::Corrupt("negative schema version".into()))?;
    if applied > MIGRATIONS.len() {
        return Err(StoreError::Corrupt(format!(
            "the store was written by a newer edge (schema {applied}, this edge knows {})",
            MIGRATIONS.len()
        )));
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(applied) {
        let version = i32::try_from(index + 1)
            .map_err(|_| StoreError::Corrupt("too many migrations".into()))?;
        tx.batch_execute(migration).await?;
        tx.execute(
            "INSERT INTO postern_migrations (version) VALUES ($1)",
            &[&version],
        )
        .await?;
        tracing::info!(store = %target, version, "applied a store migration");
    }
    tx.commit().await?;
    Ok(())
}

// === reading rows ===

fn to_record(row: &Row) -> Result<Record, StoreError> {
    let kind: String = row.try_get(0)?;
    let version: i64 = row.try_get(3)?;
    let body: String = row.try_get(5)?;
    let revision: i64 = row.try_get(6)?;
    Ok(Record {
        kind: Kind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown kind {kind}")))?,
        id: row.try_get(1)?,
        name: row.try_get(2)?,
        version: u64::try_from(version)
            .map_err(|_| StoreError::Corrupt("negative version".into()))?,
        created_at: row.try_get(4)?,
        body: serde_json::from_str(&body)
            .map_err(|e| StoreError::Corrupt(format!("stored body is not JSON: {e}")))?,
        revision: u64::try_from(revision)
            .map_err(|_| StoreError::Corrupt("negative revision".into()))?,
    })
}

fn to_i64(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} out of range")))
}

// === the steps of a write, all inside its transaction ===

/// Takes the revision row (serializing this write after every other node's) and returns the
/// revision this write will commit as.
async fn next_revision(tx: &Transaction<'_>) -> Result<u64, StoreError> {
    let statement = tx
        .prepare_cached("UPDATE postern_revision SET revision = revision + 1 RETURNING revision")
        .await?;
    let revision: i64 = tx.query_one(&statement, &[]).await?.try_get(0)?;
    u64::try_from(revision).map_err(|_| StoreError::Corrupt("negative revision".into()))
}

/// Queues the change notification; PostgreSQL delivers it when (and only if) the write commits.
async fn announce(tx: &Transaction<'_>, revision: u64) -> Result<(), StoreError> {
    let statement = tx.prepare_cached("SELECT pg_notify($1, $2)").await?;
    tx.execute(&statement, &[&CHANGES_CHANNEL, &revision.to_string()])
        .await?;
    Ok(())
}

/// The stored object, locked until the transaction ends.
async fn select_for_update(
    tx: &Transaction<'_>,
    kind: Kind,
    id: &str,
) -> Result<Option<Record>, StoreError> {
    let statement = tx
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM postern_objects WHERE kind = $1 AND id = $2 FOR UPDATE"
        ))
        .await?;
    tx.query_opt(&statement, &[&kind.as_str(), &id])
        .await?
        .as_ref()
        .map(to_record)
        .transpose()
}

/// Fails with `NameTaken` when another object of the kind has the name.
async fn check_name_free(
    tx: &Transaction<'_>,
    kind: Kind,
    name: &str,
    own_id: &str,
) -> Result<(), StoreError> {
    let statement = tx
        .prepare_cached("SELECT id FROM postern_objects WHERE kind = $1 AND name = $2")
        .await?;
    let holder: Option<String> = tx
        .query_opt(&statement, &[&kind.as_str(), &name])
        .await?
        .map(|row| row.try_get(0))
        .transpose()?;
    match holder {
        Some(holder) if holder != own_id => Err(StoreError::NameTaken {
            kind,
            name: name.to_string(),
        }),
        _ => Ok(()),
    }
}

/// Fails with `MissingRef` (naming the field) on the first reference that dangles; locks the
/// referenced objects against deletion until the transaction ends.
async fn check_refs(tx: &Transaction<'_>, write: &Write) -> Result<(), StoreError> {
    let statement = tx
        .prepare_cached("SELECT 1 FROM postern_objects WHERE kind = $1 AND id = $2 FOR KEY SHARE")
        .await?;
    for reference in &write.refs {
        let found = tx
            .query_opt(&statement, &[&reference.kind.as_str(), &reference.id])
            .await?;
        if found.is_none() {
            return Err(StoreError::MissingRef {
                reference: reference.clone(),
            });
        }
    }
    Ok(())
}

/// Replaces the references held by `(write.kind, id)`; they were checked by [`check_refs`].
async fn set_refs(tx: &Transaction<'_>, write: &Write, id: &str) -> Result<(), StoreError> {
    let clear = tx
        .prepare_cached("DELETE FROM postern_refs WHERE from_kind = $1 AND from_id = $2")
        .await?;
    tx.execute(&clear, &[&write.kind.as_str(), &id]).await?;
    let insert = tx
        .prepare_cached(
            "INSERT INTO postern_refs (from_kind, from_id, to_kind, to_id) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING",
        )
        .await?;
    for reference in &write.refs {
        tx.execute(
            &insert,
            &[
                &write.kind.as_str(),
                &id,
                &reference.kind.as_str(),
                &reference.id,
            ],
        )
        .await?;
    }
    Ok(())
}

// === the store calls ===

async fn list(client: &mut ClientWrapper, kind: Kind) -> Result<Vec<Record>, StoreError> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM postern_objects WHERE kind = $1 ORDER BY name"
        ))
        .await?;
    client
        .query(&statement, &[&kind.as_str()])
        .await?
        .iter()
        .map(to_record)
        .collect()
}

async fn get(
    client: &mut ClientWrapper,
    kind: Kind,
    id: String,
) -> Result<Option<Record>, StoreError> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM postern_objects WHERE kind = $1 AND id = $2"
        ))
        .await?;
    client
        .query_opt(&statement, &[&kind.as_str(), &id])
        .await?
        .as_ref()
        .map(to_record)
        .transpose()
}

async fn dump(client: &mut ClientWrapper) -> Result<Dump, StoreError> {
    // One snapshot for the revision and the records, so they agree.
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let revision: i64 = tx
        .query_one("SELECT revision FROM postern_revision", &[])
        .await?
        .try_get(0)?;
    let statement = tx
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM postern_objects ORDER BY kind, name"
        ))
        .await?;
    let records = tx
        .query(&statement, &[])
        .await?
        .iter()
        .map(to_record)
        .collect::<Result<Vec<_>, _>>()?;
    tx.commit().await?;
    Ok(Dump {
        revision: u64::try_from(revision)
            .map_err(|_| StoreError::Corrupt("negative revision".into()))?,
        records,
    })
}

async fn create(
    client: &mut ClientWrapper,
    write: Write,
    secret: Option<String>,
) -> Result<Record, StoreError> {
    let tx = client.transaction().await?;
    let revision = next_revision(&tx).await?;
    if select_for_update(&tx, write.kind, &write.id)
        .await?
        .is_some()
    {
        return Err(StoreError::NameTaken {
            kind: write.kind,
            name: write.name,
        });
    }
    check_name_free(&tx, write.kind, &write.name, &write.id).await?;
    check_refs(&tx, &write).await?;
    let record = Record {
        kind: write.kind,
        id: write.id.clone(),
        name: write.name.clone(),
        version: 1,
        created_at: now_rfc3339(),
        body: write.body.clone(),
        revision,
    };
    let insert = tx
        .prepare_cached(
            "INSERT INTO postern_objects (kind, id, name, version, revision, created_at, body, secret)
             VALUES ($1, $2, $3, 1, $4, $5, $6, $7)",
        )
        .await?;
    let params: [&(dyn ToSql + Sync); 7] = [
        &record.kind.as_str(),
        &record.id,
        &record.name,
        &to_i64(revision, "revision")?,
        &record.created_at,
        &record.body.to_string(),
        &secret,
    ];
    tx.execute(&insert, &params).await?;
    set_refs(&tx, &write, &write.id).await?;
    announce(&tx, revision).await?;
    tx.commit().await?;
    Ok(record)
}

async fn replace(
    client: &mut ClientWrapper,
    id: String,
    write: Write,
    if_match: Option<u64>,
) -> Result<Record, StoreError> {
    let tx = client.transaction().await?;
    let revision = next_revision(&tx).await?;
    let current = select_for_update(&tx, write.kind, &id)
        .await?
        .ok_or_else(|| StoreError::NotFound {
            kind: write.kind,
            id: id.clone(),
        })?;
    check_version(&current, if_match)?;
    check_name_free(&tx, write.kind, &write.name, &id).await?;
    check_refs(&tx, &write).await?;
    set_refs(&tx, &write, &id).await?;
    let record = Record {
        name: write.name.clone(),
        version: current.version + 1,
        body: write.body.clone(),
        revision,
        ..current
    };
    let update = tx
        .prepare_cached(
            "UPDATE postern_objects SET name = $1, version = $2, revision = $3, body = $4
             WHERE kind = $5 AND id = $6",
        )
        .await?;
    let params: [&(dyn ToSql + Sync); 6] = [
        &record.name,
        &to_i64(record.version, "version")?,
        &to_i64(revision, "revision")?,
        &record.body.to_string(),
        &record.kind.as_str(),
        &record.id,
    ];
    tx.execute(&update, &params).await?;
    announce(&tx, revision).await?;
    tx.commit().await?;
    Ok(record)
}

async fn delete(
    client: &mut ClientWrapper,
    kind: Kind,
    id: String,
    if_match: Option<u64>,
) -> Result<Record, StoreError> {
    let tx = client.transaction().await?;
    let revision = next_revision(&tx).await?;
    let current = select_for_update(&tx, kind, &id)
        .await?
        .ok_or_else(|| StoreError::NotFound {
            kind,
            id: id.clone(),
        })?;
    check_version(&current, if_match)?;
    let referrers = tx
        .prepare_cached(
            "SELECT o.name FROM postern_refs r
             JOIN postern_objects o ON o.kind = r.from_kind AND o.id = r.from_id
             WHERE r.to_kind = $1 AND r.to_id = $2 ORDER BY o.name",
        )
        .await?;
    let referrers = tx
        .query(&referrers, &[&kind.as_str(), &id])
        .await?
        .iter()
        .map(|row| row.try_get::<_, String>(0))
        .collect::<Result<Vec<_>, _>>()?;
    if !referrers.is_empty() {
        return Err(StoreError::InUse {
            kind,
            id,
            referrers,
        });
    }
    // The object's own references go with it (ON DELETE CASCADE).
    let remove = tx
        .prepare_cached("DELETE FROM postern_objects WHERE kind = $1 AND id = $2")
        .await?;
    tx.execute(&remove, &[&kind.as_str(), &id]).await?;
    announce(&tx, revision).await?;
    tx.commit().await?;
    Ok(Record {
        revision,
        ..current
    })
}

async fn secret(
    client: &mut ClientWrapper,
    kind: Kind,
    id: String,
) -> Result<Option<String>, StoreError> {
    let statement = client
        .prepare_cached("SELECT secret FROM postern_objects WHERE kind = $1 AND id = $2")
        .await?;
    Ok(client
        .query_opt(&statement, &[&kind.as_str(), &id])
        .await?
        .map(|row| row.try_get::<_, Option<String>>(0))
        .transpose()?
        .flatten())
}

async fn setting_or_insert(
    client: &mut ClientWrapper,
    key: String,
    value: String,
) -> Result<String, StoreError> {
    let tx = client.transaction().await?;
    tx.execute(
        "INSERT INTO postern_settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        &[&key, &value],
    )
    .await?;
    // A separate statement: under READ COMMITTED it sees the row of a node that won the race,
    // which the INSERT's own snapshot may not.
    let stored: String = tx
        .query_one("SELECT value FROM postern_settings WHERE key = $1", &[&key])
        .await?
        .try_get(0)?;
    tx.commit().await?;
    Ok(stored)
}

async fn take_setting(
    client: &mut ClientWrapper,
    key: String,
) -> Result<Option<String>, StoreError> {
    let row = client
        .query_opt(
            "DELETE FROM postern_settings WHERE key = $1 RETURNING value",
            &[&key],
        )
        .await?;
    Ok(match row {
        Some(row) => Some(row.try_get(0)?),
        None => None,
    })
}

async fn add_api_token(
    client: &mut ClientWrapper,
    token: ApiTokenRecord,
) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    tx.execute(
        "INSERT INTO postern_api_tokens (hash, name, created_at, id, role, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (hash) DO NOTHING",
        &[
            &token.hash,
            &token.name,
            &token.created_at,
            &token.id,
            &token.role,
            &token.expires_at,
        ],
    )
    .await?;
    tx.execute("SELECT pg_notify($1, '')", &[&TOKENS_CHANNEL])
        .await?;
    tx.commit().await?;
    Ok(())
}

async fn api_tokens(client: &mut ClientWrapper) -> Result<Vec<ApiTokenRecord>, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT id, hash, name, role, created_at, expires_at FROM postern_api_tokens
             ORDER BY name, id",
        )
        .await?;
    client
        .query(&statement, &[])
        .await?
        .iter()
        .map(|row| {
            Ok(ApiTokenRecord {
                id: row.try_get(0)?,
                hash: row.try_get(1)?,
                name: row.try_get(2)?,
                role: row.try_get(3)?,
                created_at: row.try_get(4)?,
                expires_at: row.try_get(5)?,
            })
        })
        .collect()
}

async fn delete_api_token(client: &mut ClientWrapper, id: String) -> Result<bool, StoreError> {
    let tx = client.transaction().await?;
    let deleted = tx
        .execute("DELETE FROM postern_api_tokens WHERE id = $1", &[&id])
        .await?;
    if deleted > 0 {
        tx.execute("SELECT pg_notify($1, '')", &[&TOKENS_CHANNEL])
            .await?;
    }
    tx.commit().await?;
    Ok(deleted > 0)
}

#[async_trait]
impl Store for PostgresStore {
    async fn list(&self, kind: Kind) -> Result<Vec<Record>, StoreError> {
        self.run(move |c| Box::pin(list(c, kind))).await
    }

    async fn get(&self, kind: Kind, id: &str) -> Result<Option<Record>, StoreError> {
        let id = id.to_string();
        self.run(move |c| Box::pin(get(c, kind, id))).await
    }

    async fn dump(&self) -> Result<Dump, StoreError> {
        self.run(|c| Box::pin(dump(c))).await
    }

    async fn create(&self, write: Write, secret: Option<String>) -> Result<Record, StoreError> {
        self.run(move |c| Box::pin(create(c, write, secret))).await
    }

    async fn replace(
        &self,
        id: &str,
        write: Write,
        if_match: Option<u64>,
    ) -> Result<Record, StoreError> {
        let id = id.to_string();
        self.run(move |c| Box::pin(replace(c, id, write, if_match)))
            .await
    }

    async fn delete(
        &self,
        kind: Kind,
        id: &str,
        if_match: Option<u64>,
    ) -> Result<Record, StoreError> {
        let id = id.to_string();
        self.run(move |c| Box::pin(delete(c, kind, id, if_match)))
            .await
    }

    async fn secret(&self, kind: Kind, id: &str) -> Result<Option<String>, StoreError> {
        let id = id.to_string();
        self.run(move |c| Box::pin(secret(c, kind, id))).await
    }

    async fn setting_or_insert(&self, key: &str, value: String) -> Result<String, StoreError> {
        let key = key.to_string();
        self.run(move |c| Box::pin(setting_or_insert(c, key, value)))
            .await
    }

    async fn take_setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        let key = key.to_string();
        self.run(move |c| Box::pin(take_setting(c, key))).await
    }

    async fn add_api_token(&self, token: ApiTokenRecord) -> Result<(), StoreError> {
        self.run(move |c| Box::pin(add_api_token(c, token))).await
    }

    async fn api_tokens(&self) -> Result<Vec<ApiTokenRecord>, StoreError> {
        self.run(|c| Box::pin(api_tokens(c))).await
    }

    async fn delete_api_token(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.run(move |c| Box::pin(delete_api_token(c, id))).await
    }
}

// === impl ChangeFeed ===

/// Follows `NOTIFY postern_changes` (or another channel) on a dedicated connection (a pooled
/// one cannot hold a `LISTEN`), reconnecting with backoff when the connection drops.
#[derive(Clone)]
pub(crate) struct ChangeFeed {
    config: Config,
    target: String,
    channel: &'static str,
    tls: MakeRustlsConnect,
    mode: TlsMode,
}

impl fmt::Debug for ChangeFeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChangeFeed")
            .field("target", &self.target)
            .field("channel", &self.channel)
            .finish()
    }
}

impl ChangeFeed {
    /// Calls `on_change` for every committed write (by any node) until `cancel`, and once after
    /// each (re)connection, since writes made while the feed was down were not heard.
    pub(crate) async fn run(
        self,
        on_change: impl Fn() + Send + Sync + 'static,
        cancel: CancellationToken,
    ) {
        let mut pause = FEED_BACKOFF.0;
        let mut was_up = true;
        loop {
            let mut connected = false;
            let outcome = tokio::select! {
                _ = cancel.cancelled() => return,
                outcome = self.follow(&on_change, &mut connected) => outcome,
            };
            if connected {
                pause = FEED_BACKOFF.0;
            }
            let error = outcome.err();
            let error_text = error.as_ref().map(|e| error_chain(e)).unwrap_or_default();
            if connected || was_up {
                tracing::warn!(store = %self.target, channel = self.channel, error = %error_text, "lost the store's change feed; reconnecting");
            } else {
                tracing::debug!(store = %self.target, channel = self.channel, error = %error_text, "the store's change feed is still down");
            }
            was_up = connected;
            // Jitter, so that nodes do not reconnect in lockstep.
            let jittered = pause.mul_f64(rand::random_range(0.75..1.25));
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(jittered) => {}
            }
            pause = (pause * 2).min(FEED_BACKOFF.1);
        }
    }

    /// One connection's life: connect, `LISTEN`, report notifications until it fails.
    async fn follow(
        &self,
        on_change: &(impl Fn() + Send + Sync),
        connected: &mut bool,
    ) -> Result<(), PostgresError> {
        let bound = connect_bound(&self.config);
        let (client, mut connection) =
            tokio::time::timeout(bound, self.config.connect(self.tls.clone()))
                .await
                .map_err(|_| PostgresError::TimedOut(bound))?
                .map_err(|e| connect_failure(PoolError::Backend(e), self.mode))?;
        // The connection delivers notifications only while polled; a task polls it and passes
        // them on, ending when the connection does.
        let (sender, mut messages) = mpsc::unbounded_channel();
        let driver = tokio::spawn(async move {
            let mut stream = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = stream.next().await {
                let failed = message.is_err();
                if sender.send(message).is_err() || failed {
                    break;
                }
            }
        });
        let _stop_driver = AbortOnDrop(driver);

        tokio::time::timeout(
            OPERATION_TIMEOUT,
            client.batch_execute(&format!("LISTEN {}", self.channel)),
        )
        .await
        .map_err(|_| PostgresError::TimedOut(OPERATION_TIMEOUT))?
        .map_err(PostgresError::Database)?;
        *connected = true;
        tracing::info!(store = %self.target, channel = self.channel, "following the store's change feed");
        on_change();

        let mut heartbeat = tokio::time::interval(FEED_HEARTBEAT);
        heartbeat.tick().await;
        loop {
            tokio::select! {
                message = messages.recv() => match message {
                    Some(Ok(AsyncMessage::Notification(notification))) => {
                        tracing::debug!(revision = notification.payload(), "store change");
                        on_change();
                    }
                    Some(Ok(_)) => {}
                    Some(Err(error)) => return Err(PostgresError::Database(error)),
                    None => return Err(PostgresError::Closed),
                },
                _ = heartbeat.tick() => {
                    // A server that vanished without closing the connection shows up here.
                    tokio::time::timeout(OPERATION_TIMEOUT, client.simple_query(""))
                        .await
                        .map_err(|_| PostgresError::TimedOut(OPERATION_TIMEOUT))?
                        .map_err(PostgresError::Database)?;
                }
            }
        }
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[async_trait]
impl ClusterStore for PostgresStore {
    async fn heartbeat(
        &self,
        advert: &NodeAdvert,
        lease: Duration,
        announce: bool,
    ) -> Result<Vec<NodeLease>, StoreError> {
        let text = serde_json::to_string(advert)
            .map_err(|e| StoreError::Corrupt(format!("a node's advert: {e}")))?;
        let node_id = advert.node_id.clone();
        let lease = lease.as_secs_f64();
        self.run(move |c| Box::pin(cluster::heartbeat(c, text, node_id, lease, announce)))
            .await
    }

    async fn members(&self) -> Result<Vec<NodeLease>, StoreError> {
        self.run(|c| Box::pin(cluster::members(c))).await
    }

    async fn leave(&self, node_id: &str) -> Result<(), StoreError> {
        let node_id = node_id.to_string();
        self.run(move |c| Box::pin(cluster::leave(c, node_id)))
            .await
    }
}

#[async_trait]
impl CertificateStore for PostgresStore {
    async fn certificates(&self) -> Result<Vec<StoredCertificate>, StoreError> {
        self.run(|c| Box::pin(certificates::certificates(c))).await
    }

    async fn insert_certificate(&self, certificate: &StoredCertificate) -> Result<(), StoreError> {
        let certificate = certificate.clone();
        self.run(move |c| Box::pin(certificates::insert(c, certificate)))
            .await
    }

    async fn update_certificate(
        &self,
        certificate: &StoredCertificate,
    ) -> Result<bool, StoreError> {
        let certificate = certificate.clone();
        self.run(move |c| Box::pin(certificates::update(c, certificate)))
            .await
    }

    async fn delete_certificate(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.run(move |c| Box::pin(certificates::delete(c, id)))
            .await
    }

    async fn challenges(&self) -> Result<Vec<PendingChallenge>, StoreError> {
        self.run(|c| Box::pin(certificates::challenges(c))).await
    }

    async fn add_challenges(&self, challenges: &[PendingChallenge]) -> Result<(), StoreError> {
        let challenges = challenges.to_vec();
        self.run(move |c| Box::pin(certificates::add_challenges(c, challenges)))
            .await
    }

    async fn remove_challenges(&self, challenges: &[PendingChallenge]) -> Result<(), StoreError> {
        let challenges = challenges.to_vec();
        self.run(move |c| Box::pin(certificates::remove_challenges(c, challenges)))
            .await
    }

    async fn acme_lease(&self, holder: &str, lease: Duration) -> Result<bool, StoreError> {
        let holder = holder.to_string();
        let seconds = lease.as_secs_f64();
        self.run(move |c| Box::pin(certificates::acme_lease(c, holder, seconds)))
            .await
    }

    async fn release_acme_lease(&self, holder: &str) -> Result<(), StoreError> {
        let holder = holder.to_string();
        self.run(move |c| Box::pin(certificates::release_acme_lease(c, holder)))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_postgres_urls_are_accepted() {
        assert!(check_url("postgres://u:p@127.0.0.1:5432/db").is_ok());
        assert!(check_url("postgresql://u@db.internal/postern?sslmode=disable").is_ok());
        assert!(check_url("sqlite:///tmp/x.db").is_err());
        assert!(check_url("/var/lib/postern").is_err());
        assert!(check_url("postgres://u@h:notaport/db").is_err());
        assert!(check_url("postgres://u@h/db?sslmode=require").is_ok());
        assert!(check_url("postgres://u@h/db?sslmode=verify-full").is_err());
    }

    #[test]
    fn logs_name_the_database_but_never_the_password() {
        let config = session_config(
            StoreUrl::parse("postgres://edge:s3cret@10.1.2.3:6543/postern")
                .expect("url")
                .config,
        );
        let text = describe(&config);
        assert_eq!(text, "edge@10.1.2.3:6543/postern");
        assert!(!text.contains("s3cret"));
    }

    #[test]
    fn sessions_get_the_edge_bounds_and_keep_their_own_options() {
        let config = session_config(
            StoreUrl::parse("postgres://u@h/db?options=-c%20search_path%3Dedge")
                .expect("url")
                .config,
        );
        let options = config.get_options().unwrap_or_default();
        assert!(options.contains("statement_timeout=5s"), "{options}");
        assert!(
            options.contains("idle_in_transaction_session_timeout"),
            "{options}"
        );
        assert!(options.ends_with("-c search_path=edge"), "{options}");
        assert_eq!(config.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
        let own = session_config(
            StoreUrl::parse("postgres://u@h/db?connect_timeout=9")
                .expect("url")
                .config,
        );
        assert_eq!(own.get_connect_timeout(), Some(&Duration::from_secs(9)));
    }
}
