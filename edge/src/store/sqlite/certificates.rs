//! Public certificates in the embedded store: the tables `certificates` and `acme_challenges`
//! (the schema is the parent's second migration). One node uses the file, so there is no lease
//! to take: that node always orders.

use postern_schema::secret::Secret;
use rusqlite::{Connection, Row, params};

use crate::store::certificates::{
    CertificateSource, ChallengeKind, PendingChallenge, StoredCertificate,
};
use crate::store::record::StoreError;

/// The second migration: the certificates and the challenge answers.
pub(super) const MIGRATION: &str = r#"
CREATE TABLE certificates (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    names TEXT NOT NULL,
    automatic INTEGER NOT NULL,
    chain_pem TEXT,
    key_pem TEXT,
    not_before INTEGER,
    not_after INTEGER,
    last_error TEXT,
    failures INTEGER NOT NULL,
    next_attempt INTEGER,
    created_at TEXT NOT NULL
);
CREATE TABLE acme_challenges (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (kind, key, value)
);
"#;

const COLUMNS: &str = "id, source, names, automatic, chain_pem, key_pem, not_before, not_after, \
                       last_error, failures, next_attempt, created_at";

fn failed(error: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(Box::new(error))
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

type Columns = (
    String,
    String,
    String,
    bool,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    i64,
    Option<i64>,
    String,
);

fn read(row: &Row<'_>) -> rusqlite::Result<Columns> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
        row.get(8)?,
        row.get(9)?,
        row.get(10)?,
        row.get(11)?,
    ))
}

fn parse(columns: Columns) -> Result<StoredCertificate, StoreError> {
    let (
        id,
        source,
        names,
        automatic,
        chain_pem,
        key_pem,
        not_before,
        not_after,
        last_error,
        failures,
        next_attempt,
        created_at,
    ) = columns;
    Ok(StoredCertificate {
        source: CertificateSource::parse(&source)
            .ok_or_else(|| StoreError::Corrupt(format!("certificate {id}: source {source}")))?,
        names: serde_json::from_str(&names)
            .map_err(|e| StoreError::Corrupt(format!("certificate {id}: names: {e}")))?,
        id,
        automatic,
        chain_pem,
        key_pem: key_pem.map(Secret::new),
        not_before,
        not_after,
        last_error,
        failures: u32::try_from(failures).unwrap_or(u32::MAX),
        next_attempt,
        created_at,
    })
}

pub(super) fn certificates(conn: &Connection) -> Result<Vec<StoredCertificate>, StoreError> {
    let mut statement = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM certificates ORDER BY created_at, id"
        ))
        .map_err(failed)?;
    let rows = statement.query_map([], read).map_err(failed)?;
    rows.map(|row| row.map_err(failed).and_then(parse))
        .collect()
}

pub(super) fn insert(conn: &Connection, c: &StoredCertificate) -> Result<(), StoreError> {
    conn.execute(
        &format!(
            "INSERT INTO certificates ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
        ),
        params![
            c.id,
            c.source.as_str(),
            serde_json::to_string(&c.names).unwrap_or_default(),
            c.automatic,
            c.chain_pem,
            c.key_pem.as_ref().map(Secret::expose),
            c.not_before,
            c.not_after,
            c.last_error,
            i64::from(c.failures),
            c.next_attempt,
            c.created_at,
        ],
    )
    .map(drop)
    .map_err(failed)
}

pub(super) fn update(conn: &Connection, c: &StoredCertificate) -> Result<bool, StoreError> {
    conn.execute(
        "UPDATE certificates SET source = ?2, names = ?3, automatic = ?4, chain_pem = ?5,
             key_pem = ?6, not_before = ?7, not_after = ?8, last_error = ?9, failures = ?10,
             next_attempt = ?11
         WHERE id = ?1",
        params![
            c.id,
            c.source.as_str(),
            serde_json::to_string(&c.names).unwrap_or_default(),
            c.automatic,
            c.chain_pem,
            c.key_pem.as_ref().map(Secret::expose),
            c.not_before,
            c.not_after,
            c.last_error,
            i64::from(c.failures),
            c.next_attempt,
        ],
    )
    .map(|changed| changed > 0)
    .map_err(failed)
}

pub(super) fn delete(conn: &Connection, id: &str) -> Result<bool, StoreError> {
    conn.execute("DELETE FROM certificates WHERE id = ?1", params![id])
        .map(|changed| changed > 0)
        .map_err(failed)
}

pub(super) fn challenges(conn: &Connection) -> Result<Vec<PendingChallenge>, StoreError> {
    let mut statement = conn
        .prepare_cached(
            "SELECT kind, key, value, expires_at FROM acme_challenges WHERE expires_at > ?1
             ORDER BY kind, key, value",
        )
        .map_err(failed)?;
    let rows = statement
        .query_map(params![now()], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, i64>(3)?,
            ))
        })
        .map_err(failed)?;
    let mut out = Vec::new();
    for row in rows {
        let (kind, key, value, expires_at) = row.map_err(failed)?;
        let kind = ChallengeKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("challenge kind {kind}")))?;
        out.push(PendingChallenge {
            kind,
            key,
            value,
            expires_at,
        });
    }
    Ok(out)
}

pub(super) fn add_challenges(
    conn: &mut Connection,
    challenges: &[PendingChallenge],
) -> Result<(), StoreError> {
    let tx = conn.transaction().map_err(failed)?;
    tx.execute(
        "DELETE FROM acme_challenges WHERE expires_at <= ?1",
        params![now()],
    )
    .map_err(failed)?;
    for c in challenges {
        tx.execute(
            "INSERT OR REPLACE INTO acme_challenges (kind, key, value, expires_at)
             VALUES (?1, ?2, ?3, ?4)",
            params![c.kind.as_str(), c.key, c.value, c.expires_at],
        )
        .map_err(failed)?;
    }
    tx.commit().map_err(failed)
}

pub(super) fn remove_challenges(
    conn: &mut Connection,
    challenges: &[PendingChallenge],
) -> Result<(), StoreError> {
    let tx = conn.transaction().map_err(failed)?;
    for c in challenges {
        tx.execute(
            "DELETE FROM acme_challenges WHERE kind = ?1 AND key = ?2 AND value = ?3",
            params![c.kind.as_str(), c.key, c.value],
        )
        .map_err(failed)?;
    }
    tx.commit().map_err(failed)
}
