//! The embedded store: one SQLite file under `--data-dir`, in WAL mode with full fsync, so a
//! write that was answered survives `kill -9` and power loss.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use super::certificates::{CertificateStore, PendingChallenge, StoredCertificate};
use super::record::{
    ApiTokenRecord, Dump, Kind, Record, Store, StoreError, Write, check_version, now_rfc3339,
};

mod certificates;

/// The schema, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE objects (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    revision INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    body TEXT NOT NULL,
    secret TEXT,
    PRIMARY KEY (kind, id),
    UNIQUE (kind, name)
);
CREATE TABLE refs (
    from_kind TEXT NOT NULL,
    from_id TEXT NOT NULL,
    to_kind TEXT NOT NULL,
    to_id TEXT NOT NULL,
    PRIMARY KEY (from_kind, from_id, to_kind, to_id)
);
CREATE INDEX refs_by_target ON refs (to_kind, to_id);
CREATE TABLE api_tokens (
    hash TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO settings (key, value) VALUES ('revision', '0');
"#,
    // API tokens get an id, a role and an expiry; the tokens made before roles existed were
    // admin tokens, and stay so. Their ids are random UUIDs (version 4).
    r#"
ALTER TABLE api_tokens ADD COLUMN id TEXT;
ALTER TABLE api_tokens ADD COLUMN role TEXT NOT NULL DEFAULT 'admin';
ALTER TABLE api_tokens ADD COLUMN expires_at TEXT;
UPDATE api_tokens SET id = lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2)))
    || '-4' || substr(lower(hex(randomblob(2))), 2) || '-'
    || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(lower(hex(randomblob(2))), 2)
    || '-' || lower(hex(randomblob(6)));
CREATE UNIQUE INDEX api_tokens_by_id ON api_tokens (id);
"#,
    certificates::MIGRATION,
    // TCP services live in `objects` like the other kinds; no two may hold one public port.
    r#"
CREATE UNIQUE INDEX objects_tcp_service_ports ON objects (json_extract(body, '$.listen_port'))
    WHERE kind = 'tcp_service';
"#,
];

/// The embedded store.
#[derive(Clone)]
pub(crate) struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the store file and applies pending migrations.
    pub(crate) fn open(path: &Path) -> Result<Self, StoreError> {
        #[cfg(unix)]
        create_private(path)?;
        let mut conn = Connection::open(path).map_err(unavailable)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;",
        )
        .map_err(unavailable)?;
        let applied: i64 = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(unavailable)?;
        let applied = usize::try_from(applied)
            .map_err(|_| StoreError::Corrupt("negative schema version".into()))?;
        if applied > MIGRATIONS.len() {
            return Err(StoreError::Corrupt(format!(
                "the store was written by a newer edge (schema {applied}, this edge knows {})",
                MIGRATIONS.len()
            )));
        }
        for (i, migration) in MIGRATIONS.iter().enumerate().skip(applied) {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            tx.execute_batch(migration).map_err(unavailable)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(unavailable)?;
            tx.commit().map_err(unavailable)?;
        }
        #[cfg(unix)]
        restrict_permissions(path);
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` on the connection on a blocking thread.
    async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave a half-done transaction behind
            // (SQLite rolls back an uncommitted transaction), so a poisoned lock is still usable.
            let mut guard = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Unavailable(Box::new(e)))?
    }

    /// Runs `f` in an immediate (write-locked) transaction and commits it.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>, u64) -> Result<T, StoreError> + Send + 'static,
    {
        self.run(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            let revision = next_revision(&tx)?;
            let out = f(&tx, revision)?;
            tx.commit().map_err(unavailable)?;
            Ok(out)
        })
        .await
    }
}

/// Creates the database file, mode 0600, unless it exists. SQLite gives the `-wal` and `-shm`
/// files it creates next to it the database file's mode, so they are 0600 from the start too
/// (an empty file is a valid empty database).
#[cfg(unix)]
fn create_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map(drop)
        .map_err(|e| StoreError::Unavailable(Box::new(e)))
}

/// Sets the database file and its `-wal` and `-shm` files to 0600, for files an older edge
/// (or a restore) left readable to others.
#[cfg(unix)]
fn restrict_permissions(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        // They hold the CA key; keep them to the edge's user. Best effort: a file SQLite has not
        // created (yet) is skipped, and a failure leaves what the file had.
        let _ = std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600));
    }
}

fn unavailable(error: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(Box::new(error))
}

fn next_revision(tx: &Transaction<'_>) -> Result<u64, StoreError> {
    let current: String = tx
        .query_row(
            "SELECT value FROM settings WHERE key = 'revision'",
            [],
            |r| r.get(0),
        )
        .map_err(unavailable)?;
    let next = current
        .parse::<u64>()
        .map_err(|_| StoreError::Corrupt("revision is not a number".into()))?
        + 1;
    tx.execute(
        "UPDATE settings SET value = ?1 WHERE key = 'revision'",
        params![next.to_string()],
    )
    .map_err(unavailable)?;
    Ok(next)
}

const COLUMNS: &str = "kind, id, name, version, created_at, body, revision";

fn read_record(
    row: &rusqlite::Row<'_>,
) -> rusqlite::Result<(String, String, String, i64, String, String, i64)> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
    ))
}

fn to_record(
    (kind, id, name, version, created_at, body, revision): (
        String,
        String,
        String,
        i64,
        String,
        String,
        i64,
    ),
) -> Result<Record, StoreError> {
    Ok(Record {
        kind: Kind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown kind {kind}")))?,
        id,
        name,
        version: u64::try_from(version)
            .map_err(|_| StoreError::Corrupt("negative version".into()))?,
        created_at,
        body: serde_json::from_str(&body)
            .map_err(|e| StoreError::Corrupt(format!("stored body is not JSON: {e}")))?,
        revision: u64::try_from(revision)
            .map_err(|_| StoreError::Corrupt("negative revision".into()))?,
    })
}

fn select_one(conn: &Connection, kind: Kind, id: &str) -> Result<Option<Record>, StoreError> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM objects WHERE kind = ?1 AND id = ?2"),
        params![kind.as_str(), id],
        read_record,
    )
    .optional()
    .map_err(unavailable)?
    .map(to_record)
    .transpose()
}

/// Fails with `NameTaken` when another object of the kind has the name.
fn check_name_free(
    tx: &Transaction<'_>,
    kind: Kind,
    name: &str,
    own_id: &str,
) -> Result<(), StoreError> {
    let holder: Option<String> = tx
        .query_row(
            "SELECT id FROM objects WHERE kind = ?1 AND name = ?2",
            params![kind.as_str(), name],
            |r| r.get(0),
        )
        .optional()
        .map_err(unavailable)?;
    match holder {
        Some(holder) if holder != own_id => Err(StoreError::NameTaken {
            kind,
            name: name.to_string(),
        }),
        _ => Ok(()),
    }
}

/// Replaces the references held by `(kind, id)`, failing on one that dangles.
fn set_refs(tx: &Transaction<'_>, write: &Write, id: &str) -> Result<(), StoreError> {
    tx.execute(
        "DELETE FROM refs WHERE from_kind = ?1 AND from_id = ?2",
        params![write.kind.as_str(), id],
    )
    .map_err(unavailable)?;
    for reference in &write.refs {
        let exists: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM objects WHERE kind = ?1 AND id = ?2)",
                params![reference.kind.as_str(), reference.id],
                |r| r.get(0),
            )
            .map_err(unavailable)?;
        if !exists {
            return Err(StoreError::MissingRef {
                reference: reference.clone(),
            });
        }
        tx.execute(
            "INSERT OR IGNORE INTO refs (from_kind, from_id, to_kind, to_id) VALUES (?1, ?2, ?3, ?4)",
            params![write.kind.as_str(), id, reference.kind.as_str(), reference.id],
        )
        .map_err(unavailable)?;
    }
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn list(&self, kind: Kind) -> Result<Vec<Record>, StoreError> {
        self.run(move |conn| {
            let mut statement = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM objects WHERE kind = ?1 ORDER BY name"
                ))
                .map_err(unavailable)?;
            let rows = statement
                .query_map(params![kind.as_str()], read_record)
                .map_err(unavailable)?;
            rows.map(|row| row.map_err(unavailable).and_then(to_record))
                .collect()
        })
        .await
    }

    async fn get(&self, kind: Kind, id: &str) -> Result<Option<Record>, StoreError> {
        let id = id.to_string();
        self.run(move |conn| select_one(conn, kind, &id)).await
    }

    async fn dump(&self) -> Result<Dump, StoreError> {
        self.run(|conn| {
            let tx = conn.transaction().map_err(unavailable)?;
            let revision: String = tx
                .query_row(
                    "SELECT value FROM settings WHERE key = 'revision'",
                    [],
                    |r| r.get(0),
                )
                .map_err(unavailable)?;
            let revision = revision
                .parse()
                .map_err(|_| StoreError::Corrupt("revision is not a number".into()))?;
            let mut statement = tx
                .prepare(&format!(
                    "SELECT {COLUMNS} FROM objects ORDER BY kind, name"
                ))
                .map_err(unavailable)?;
            let records = statement
                .query_map([], read_record)
                .map_err(unavailable)?
                .map(|row| row.map_err(unavailable).and_then(to_record))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Dump { revision, records })
        })
        .await
    }

    async fn create(&self, write: Write, secret: Option<String>) -> Result<Record, StoreError> {
        self.write(move |tx, revision| {
            if select_one(tx, write.kind, &write.id)?.is_some() {
                return Err(StoreError::NameTaken {
                    kind: write.kind,
                    name: write.name.clone(),
                });
            }
            check_name_free(tx, write.kind, &write.name, &write.id)?;
            set_refs(tx, &write, &write.id)?;
            let record = Record {
                kind: write.kind,
                id: write.id.clone(),
                name: write.name.clone(),
                version: 1,
                created_at: now_rfc3339(),
                body: write.body.clone(),
                revision,
            };
            tx.execute(
                "INSERT INTO objects (kind, id, name, version, revision, created_at, body, secret) VALUES (?1, ?2, ?3, 1, ?4, ?5, ?6, ?7)",
                params![
                    record.kind.as_str(),
                    record.id,
                    record.name,
                    revision as i64,
                    record.created_at,
                    record.body.to_string(),
                    secret
                ],
            )
            .map_err(unavailable)?;
            Ok(record)
        })
        .await
    }

    async fn replace(
        &self,
        id: &str,
        write: Write,
        if_match: Option<u64>,
    ) -> Result<Record, StoreError> {
        let id = id.to_string();
        self.write(move |tx, revision| {
            let current = select_one(tx, write.kind, &id)?.ok_or_else(|| StoreError::NotFound {
                kind: write.kind,
                id: id.clone(),
            })?;
            check_version(&current, if_match)?;
            check_name_free(tx, write.kind, &write.name, &id)?;
            set_refs(tx, &write, &id)?;
            let record = Record {
                name: write.name.clone(),
                version: current.version + 1,
                body: write.body.clone(),
                revision,
                ..current
            };
            tx.execute(
                "UPDATE objects SET name = ?1, version = ?2, revision = ?3, body = ?4 WHERE kind = ?5 AND id = ?6",
                params![
                    record.name,
                    record.version as i64,
                    revision as i64,
                    record.body.to_string(),
                    record.kind.as_str(),
                    record.id
                ],
            )
            .map_err(unavailable)?;
            Ok(record)
        })
        .await
    }

    async fn delete(
        &self,
        kind: Kind,
        id: &str,
        if_match: Option<u64>,
    ) -> Result<Record, StoreError> {
        let id = id.to_string();
        self.write(move |tx, revision| {
            let current = select_one(tx, kind, &id)?.ok_or_else(|| StoreError::NotFound {
                kind,
                id: id.clone(),
            })?;
            check_version(&current, if_match)?;
            let mut statement = tx
                .prepare(
                    "SELECT o.name FROM refs r JOIN objects o ON o.kind = r.from_kind AND o.id = r.from_id
                     WHERE r.to_kind = ?1 AND r.to_id = ?2 ORDER BY o.name",
                )
                .map_err(unavailable)?;
            let referrers = statement
                .query_map(params![kind.as_str(), id], |r| r.get::<_, String>(0))
                .map_err(unavailable)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(unavailable)?;
            if !referrers.is_empty() {
                return Err(StoreError::InUse {
                    kind,
                    id: id.clone(),
                    referrers,
                });
            }
            tx.execute(
                "DELETE FROM refs WHERE from_kind = ?1 AND from_id = ?2",
                params![kind.as_str(), id],
            )
            .map_err(unavailable)?;
            tx.execute(
                "DELETE FROM objects WHERE kind = ?1 AND id = ?2",
                params![kind.as_str(), id],
            )
            .map_err(unavailable)?;
            Ok(Record { revision, ..current })
        })
        .await
    }

    async fn secret(&self, kind: Kind, id: &str) -> Result<Option<String>, StoreError> {
        let id = id.to_string();
        self.run(move |conn| {
            conn.query_row(
                "SELECT secret FROM objects WHERE kind = ?1 AND id = ?2",
                params![kind.as_str(), id],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()
            .map(Option::flatten)
            .map_err(unavailable)
        })
        .await
    }

    async fn setting_or_insert(&self, key: &str, value: String) -> Result<String, StoreError> {
        let key = key.to_string();
        self.run(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            tx.execute(
                "INSERT OR IGNORE INTO settings (key, value) VALUES (?1, ?2)",
                params![key, value],
            )
            .map_err(unavailable)?;
            let stored: String = tx
                .query_row(
                    "SELECT value FROM settings WHERE key = ?1",
                    params![key],
                    |r| r.get(0),
                )
                .map_err(unavailable)?;
            tx.commit().map_err(unavailable)?;
            Ok(stored)
        })
        .await
    }

    async fn take_setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        let key = key.to_string();
        self.run(move |conn| {
            conn.query_row(
                "DELETE FROM settings WHERE key = ?1 RETURNING value",
                params![key],
                |r| r.get::<_, String>(0),
            )
            .optional()
            .map_err(unavailable)
        })
        .await
    }

    async fn add_api_token(&self, token: ApiTokenRecord) -> Result<(), StoreError> {
        self.run(move |conn| {
            conn.execute(
                "INSERT OR IGNORE INTO api_tokens (hash, name, created_at, id, role, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    token.hash,
                    token.name,
                    token.created_at,
                    token.id,
                    token.role,
                    token.expires_at
                ],
            )
            .map(|_| ())
            .map_err(unavailable)
        })
        .await
    }

    async fn api_tokens(&self) -> Result<Vec<ApiTokenRecord>, StoreError> {
        self.run(|conn| {
            let mut statement = conn
                .prepare(
                    "SELECT id, hash, name, role, created_at, expires_at FROM api_tokens
                     ORDER BY name, id",
                )
                .map_err(unavailable)?;
            statement
                .query_map([], |r| {
                    Ok(ApiTokenRecord {
                        id: r.get(0)?,
                        hash: r.get(1)?,
                        name: r.get(2)?,
                        role: r.get(3)?,
                        created_at: r.get(4)?,
                        expires_at: r.get(5)?,
                    })
                })
                .map_err(unavailable)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(unavailable)
        })
        .await
    }

    async fn delete_api_token(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.run(move |conn| {
            conn.execute("DELETE FROM api_tokens WHERE id = ?1", params![id])
                .map(|deleted| deleted > 0)
                .map_err(unavailable)
        })
        .await
    }
}

#[async_trait]
impl CertificateStore for SqliteStore {
    async fn certificates(&self) -> Result<Vec<StoredCertificate>, StoreError> {
        self.run(|conn| certificates::certificates(conn)).await
    }

    async fn insert_certificate(&self, certificate: &StoredCertificate) -> Result<(), StoreError> {
        let certificate = certificate.clone();
        self.run(move |conn| certificates::insert(conn, &certificate))
            .await
    }

    async fn update_certificate(
        &self,
        certificate: &StoredCertificate,
    ) -> Result<bool, StoreError> {
        let certificate = certificate.clone();
        self.run(move |conn| certificates::update(conn, &certificate))
            .await
    }

    async fn delete_certificate(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.run(move |conn| certificates::delete(conn, &id)).await
    }

    async fn challenges(&self) -> Result<Vec<PendingChallenge>, StoreError> {
        self.run(|conn| certificates::challenges(conn)).await
    }

    async fn add_challenges(&self, challenges: &[PendingChallenge]) -> Result<(), StoreError> {
        let challenges = challenges.to_vec();
        self.run(move |conn| certificates::add_challenges(conn, &challenges))
            .await
    }

    async fn remove_challenges(&self, challenges: &[PendingChallenge]) -> Result<(), StoreError> {
        let challenges = challenges.to_vec();
        self.run(move |conn| certificates::remove_challenges(conn, &challenges))
            .await
    }

    /// One node uses the file: it always holds the lease.
    async fn acme_lease(&self, _holder: &str, _lease: Duration) -> Result<bool, StoreError> {
        Ok(true)
    }

    async fn release_acme_lease(&self, _holder: &str) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode()
            & 0o777
    }

    fn token(hash: &str) -> ApiTokenRecord {
        ApiTokenRecord {
            id: uuid::Uuid::new_v4().to_string(),
            hash: hash.into(),
            name: "test".into(),
            role: "admin".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            expires_at: None,
        }
    }

    fn with_suffix(path: &Path, suffix: &str) -> std::path::PathBuf {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        name.into()
    }

    #[tokio::test]
    async fn the_database_and_its_wal_and_shm_files_are_created_0600() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("edge.db");
        let store = SqliteStore::open(&path).expect("open");
        store
            .add_api_token(token("hash"))
            .await
            .expect("a write, so the WAL is in use");
        for file in [
            path.clone(),
            with_suffix(&path, "-wal"),
            with_suffix(&path, "-shm"),
        ] {
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }
    }

    #[tokio::test]
    async fn files_an_older_edge_left_readable_are_restricted_at_open() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("edge.db");
        let wal = with_suffix(&path, "-wal");
        let shm = with_suffix(&path, "-shm");
        let first = SqliteStore::open(&path).expect("open");
        first.add_api_token(token("hash")).await.expect("write");
        // Held open, so SQLite keeps its WAL files while they are loosened behind its back.
        for file in [&path, &wal, &shm] {
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        }
        let second = SqliteStore::open(&path).expect("open again");
        let tokens = second.api_tokens().await.expect("read");
        assert_eq!(
            tokens.iter().map(|t| t.hash.as_str()).collect::<Vec<_>>(),
            ["hash"]
        );
        for file in [&path, &wal, &shm] {
            assert_eq!(mode(file), 0o600, "{}", file.display());
        }
        drop(first);
    }
}
