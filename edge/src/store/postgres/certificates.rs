//! Public certificates in PostgreSQL: `postern_certificates`, `postern_acme_challenges` and the
//! one-row `postern_acme_lease` (which node orders, until when, by the database's clock). Every
//! write to the first two sends `NOTIFY postern_changes`, so every node's change feed hears it
//! and reloads what its HTTPS listener and DNS serve.

use deadpool_postgres::ClientWrapper;
use postern_schema::secret::Secret;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::store::certificates::{
    CertificateSource, ChallengeKind, PendingChallenge, StoredCertificate,
};
use crate::store::record::StoreError;

/// The migration that adds the tables.
pub(super) const MIGRATION: &str = r#"
CREATE TABLE postern_certificates (
    id TEXT COLLATE "C" PRIMARY KEY,
    source TEXT NOT NULL,
    names TEXT NOT NULL,
    automatic BOOLEAN NOT NULL,
    chain_pem TEXT,
    key_pem TEXT,
    not_before BIGINT,
    not_after BIGINT,
    last_error TEXT,
    failures BIGINT NOT NULL,
    next_attempt BIGINT,
    created_at TEXT NOT NULL
);
CREATE TABLE postern_acme_challenges (
    kind TEXT COLLATE "C" NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    value TEXT COLLATE "C" NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (kind, key, value)
);
CREATE TABLE postern_acme_lease (
    only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    holder TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
"#;

/// The channel the edge's change feed follows (the parent's `CHANGES_CHANNEL`); certificate
/// writes use it without a new revision, so the catalog reloads nothing it did not have.
const CHANGES_CHANNEL: &str = "postern_changes";

/// The payload of a certificate change (the feed only logs it).
const PAYLOAD: &str = "certificates";

const COLUMNS: &str = "id, source, names, automatic, chain_pem, key_pem, not_before, not_after, \
                       last_error, failures, next_attempt, created_at";

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn parse(row: &Row) -> Result<StoredCertificate, StoreError> {
    let id: String = row.try_get(0)?;
    let source: String = row.try_get(1)?;
    let names: String = row.try_get(2)?;
    let failures: i64 = row.try_get(9)?;
    Ok(StoredCertificate {
        source: CertificateSource::parse(&source)
            .ok_or_else(|| StoreError::Corrupt(format!("certificate {id}: source {source}")))?,
        names: serde_json::from_str(&names)
            .map_err(|e| StoreError::Corrupt(format!("certificate {id}: names: {e}")))?,
        automatic: row.try_get(3)?,
        chain_pem: row.try_get(4)?,
        key_pem: row.try_get::<_, Option<String>>(5)?.map(Secret::new),
        not_before: row.try_get(6)?,
        not_after: row.try_get(7)?,
        last_error: row.try_get(8)?,
        failures: u32::try_from(failures).unwrap_or(u32::MAX),
        next_attempt: row.try_get(10)?,
        created_at: row.try_get(11)?,
        id,
    })
}

pub(super) async fn certificates(
    client: &mut ClientWrapper,
) -> Result<Vec<StoredCertificate>, StoreError> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM postern_certificates ORDER BY created_at, id"
        ))
        .await?;
    client
        .query(&statement, &[])
        .await?
        .iter()
        .map(parse)
        .collect()
}

/// Runs `sql` with the certificate's columns as `$1..$12` (in [`COLUMNS`] order) and
/// announces the change; the number of rows it changed.
async fn write(
    client: &mut ClientWrapper,
    sql: &str,
    c: &StoredCertificate,
) -> Result<u64, StoreError> {
    let names = serde_json::to_string(&c.names)
        .map_err(|e| StoreError::Corrupt(format!("certificate names: {e}")))?;
    let key = c.key_pem.as_ref().map(Secret::expose);
    let failures = i64::from(c.failures);
    let params: [&(dyn ToSql + Sync); 12] = [
        &c.id,
        &c.source.as_str(),
        &names,
        &c.automatic,
        &c.chain_pem,
        &key,
        &c.not_before,
        &c.not_after,
        &c.last_error,
        &failures,
        &c.next_attempt,
        &c.created_at,
    ];
    let tx = client.transaction().await?;
    let changed = tx.execute(sql, &params).await?;
    announce(&tx).await?;
    tx.commit().await?;
    Ok(changed)
}

async fn announce(tx: &deadpool_postgres::Transaction<'_>) -> Result<(), StoreError> {
    tx.execute("SELECT pg_notify($1, $2)", &[&CHANGES_CHANNEL, &PAYLOAD])
        .await?;
    Ok(())
}

pub(super) async fn insert(
    client: &mut ClientWrapper,
    certificate: StoredCertificate,
) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO postern_certificates ({COLUMNS})
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
    );
    write(client, &sql, &certificate).await.map(drop)
}

pub(super) async fn update(
    client: &mut ClientWrapper,
    certificate: StoredCertificate,
) -> Result<bool, StoreError> {
    // `created_at` ($12) never changes; it is compared so that every parameter is used.
    let sql = "UPDATE postern_certificates SET source = $2, names = $3, automatic = $4,
                   chain_pem = $5, key_pem = $6, not_before = $7, not_after = $8,
                   last_error = $9, failures = $10, next_attempt = $11
               WHERE id = $1 AND created_at = $12";
    write(client, sql, &certificate)
        .await
        .map(|changed| changed > 0)
}

pub(super) async fn delete(client: &mut ClientWrapper, id: String) -> Result<bool, StoreError> {
    let tx = client.transaction().await?;
    let changed = tx
        .execute("DELETE FROM postern_certificates WHERE id = $1", &[&id])
        .await?;
    announce(&tx).await?;
    tx.commit().await?;
    Ok(changed > 0)
}

pub(super) async fn challenges(
    client: &mut ClientWrapper,
) -> Result<Vec<PendingChallenge>, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT kind, key, value, expires_at FROM postern_acme_challenges
             WHERE expires_at > $1 ORDER BY kind, key, value",
        )
        .await?;
    client
        .query(&statement, &[&now()])
        .await?
        .iter()
        .map(|row| {
            let kind: String = row.try_get(0)?;
            Ok(PendingChallenge {
                kind: ChallengeKind::parse(&kind)
                    .ok_or_else(|| StoreError::Corrupt(format!("challenge kind {kind}")))?,
                key: row.try_get(1)?,
                value: row.try_get(2)?,
                expires_at: row.try_get(3)?,
            })
        })
        .collect()
}

pub(super) async fn add_challenges(
    client: &mut ClientWrapper,
    challenges: Vec<PendingChallenge>,
) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    tx.execute(
        "DELETE FROM postern_acme_challenges WHERE expires_at <= $1",
        &[&now()],
    )
    .await?;
    for c in &challenges {
        tx.execute(
            "INSERT INTO postern_acme_challenges (kind, key, value, expires_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (kind, key, value) DO UPDATE SET expires_at = EXCLUDED.expires_at",
            &[&c.kind.as_str(), &c.key, &c.value, &c.expires_at],
        )
        .await?;
    }
    announce(&tx).await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn remove_challenges(
    client: &mut ClientWrapper,
    challenges: Vec<PendingChallenge>,
) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    for c in &challenges {
        tx.execute(
            "DELETE FROM postern_acme_challenges WHERE kind = $1 AND key = $2 AND value = $3",
            &[&c.kind.as_str(), &c.key, &c.value],
        )
        .await?;
    }
    announce(&tx).await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn acme_lease(
    client: &mut ClientWrapper,
    holder: String,
    seconds: f64,
) -> Result<bool, StoreError> {
    let row = client
        .query_opt(
            "INSERT INTO postern_acme_lease (only_row, holder, expires_at)
             VALUES (TRUE, $1, now() + make_interval(secs => $2))
             ON CONFLICT (only_row) DO UPDATE
                 SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
                 WHERE postern_acme_lease.holder = EXCLUDED.holder
                    OR postern_acme_lease.expires_at < now()
             RETURNING holder",
            &[&holder, &seconds],
        )
        .await?;
    Ok(row.is_some())
}

pub(super) async fn release_acme_lease(
    client: &mut ClientWrapper,
    holder: String,
) -> Result<(), StoreError> {
    client
        .execute(
            "DELETE FROM postern_acme_lease WHERE holder = $1",
            &[&holder],
        )
        .await?;
    Ok(())
}
