//! API tokens: the admin token made on first start, the scoped tokens made through
//! `/v1/tokens`, each stored only as a SHA-256 hash with its role and expiry, and the check of
//! a presented token (constant time in the token's contents). Edge nodes on a shared store
//! follow each other's token changes, so a revoked token is refused everywhere within moments.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use postern_schema::api::Role;
use postern_schema::rules::{format_timestamp, parse_timestamp};
use postern_schema::secret::Secret;
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::store::{ApiTokenRecord, ChangeFeed, Store, StoreError};

/// The file under `--data-dir` that holds the admin token made on first start.
pub(crate) const ADMIN_TOKEN_FILE: &str = "admin-token";

/// The name of the admin token made on first start or given to the edge.
const ADMIN_TOKEN_NAME: &str = "admin";

/// Why the tokens could not be set up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AuthError {
    /// The store failed.
    #[error("cannot read or write API tokens")]
    Store(#[from] StoreError),
    /// The token file could not be written.
    #[error("cannot write {path}")]
    File {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// How often an unknown token may make the edge re-read the stored tokens (a fallback: nodes
/// on a shared store hear of each other's tokens through the store's feed).
const RELOAD_AT_MOST_EVERY: Duration = Duration::from_secs(2);

/// How often the tokens are re-read even when no change was heard (a feed that missed one).
const RELOAD_EVERY: Duration = Duration::from_secs(30);

/// The settings key that records which node minted the first admin token.
const MINTED_SETTING: &str = "admin-token-minted-by";

/// Who presented an accepted token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Principal {
    /// The token's id.
    pub(crate) token_id: String,
    /// What it may do.
    pub(crate) role: Role,
}

/// What a presented token is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A token the edge accepts.
    Accept(Principal),
    /// A token the edge knows, past its expiry.
    Expired,
    /// No token the edge knows.
    Unknown,
}

/// One accepted token, as held in memory.
#[derive(Debug, Clone)]
struct Known {
    hash: [u8; 32],
    id: String,
    role: Role,
    /// Unix seconds; `None` never expires.
    expires: Option<i64>,
}

/// The API tokens the edge accepts.
#[derive(Clone)]
pub(crate) struct Auth {
    known: Arc<RwLock<Vec<Known>>>,
    store: Option<Arc<dyn Store>>,
    last_reload: Arc<RwLock<Instant>>,
    changed: Arc<Notify>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = self.known.read().map(|h| h.len()).unwrap_or(0);
        f.debug_struct("Auth").field("tokens", &count).finish()
    }
}

impl Auth {
    /// Loads the accepted tokens. With `admin_token` (from `POSTERN_ADMIN_TOKEN` or
    /// `--admin-token-file`), that token is an admin token from now on; otherwise, when the
    /// store has no token yet, a new admin token is made and written to
    /// `<data_dir>/admin-token` with mode 0600. Edge nodes sharing a store agree on who mints
    /// it, so nodes starting together make one token, not several.
    pub(crate) async fn set_up(
        store: Arc<dyn Store>,
        data_dir: &Path,
        admin_token: Option<&Secret>,
    ) -> Result<Self, AuthError> {
        if let Some(token) = admin_token {
            store
                .add_api_token(new_record(token, ADMIN_TOKEN_NAME, Role::Admin, None))
                .await?;
        } else if store.api_tokens().await?.is_empty() && mint_is_ours(store.as_ref()).await? {
            let token = new_token();
            let path = data_dir.join(ADMIN_TOKEN_FILE);
            write_private(&path, &format!("{}\n", token.expose())).map_err(|source| {
                AuthError::File {
                    path: path.display().to_string(),
                    source,
                }
            })?;
            store
                .add_api_token(new_record(&token, ADMIN_TOKEN_NAME, Role::Admin, None))
                .await?;
            tracing::info!(path = %path.display(), "created the admin API token");
        }
        let known = load(store.as_ref()).await?;
        Ok(Self {
            known: Arc::new(RwLock::new(known)),
            store: Some(store),
            last_reload: Arc::new(RwLock::new(Instant::now())),
            changed: Arc::new(Notify::new()),
        })
    }

    /// What `token` is. Constant time in the token's contents. An unknown token makes the
    /// edge re-read the stored tokens, at most every [`RELOAD_AT_MOST_EVERY`].
    pub(crate) async fn verify(&self, token: &str) -> Verdict {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(verdict) = self.judge(&presented) {
            return verdict;
        }
        let due = self
            .last_reload
            .read()
            .map(|at| at.elapsed() >= RELOAD_AT_MOST_EVERY)
            .unwrap_or(false);
        if due && self.store.is_some() {
            self.reload().await;
            if let Some(verdict) = self.judge(&presented) {
                return verdict;
            }
        }
        Verdict::Unknown
    }

    /// Makes a token with `role`, refused after `expires` (Unix seconds) when given, and
    /// accepts it from now on. Returns its record and the token itself (shown once).
    pub(crate) async fn create(
        &self,
        name: &str,
        role: Role,
        expires: Option<i64>,
    ) -> Result<(ApiTokenRecord, Secret), StoreError> {
        let store = self.store()?;
        let token = new_token();
        let record = new_record(&token, name, role, expires);
        store.add_api_token(record.clone()).await?;
        self.reload().await;
        Ok((record, token))
    }

    /// Every stored token, without secrets.
    pub(crate) async fn list(&self) -> Result<Vec<ApiTokenRecord>, StoreError> {
        self.store()?.api_tokens().await
    }

    /// Revokes token `id`: refused at once by this node, and by every node on a shared store
    /// as soon as it hears of it. `false` when there was no such token.
    pub(crate) async fn revoke(&self, id: &str) -> Result<bool, StoreError> {
        let deleted = self.store()?.delete_api_token(id).await?;
        self.reload().await;
        Ok(deleted)
    }

    /// Re-reads the stored tokens whenever `changes` (the shared store's token feed) says
    /// another node added or removed one, and every [`RELOAD_EVERY`] in any case, until
    /// `cancel`.
    pub(crate) async fn follow(self, changes: Option<ChangeFeed>, cancel: CancellationToken) {
        let changed = self.changed.clone();
        let feed = async move {
            match changes {
                Some(feed) => feed.run(move || changed.notify_one(), cancel.clone()).await,
                None => cancel.cancelled().await,
            }
        };
        let reloads = async {
            loop {
                tokio::select! {
                    _ = self.changed.notified() => {}
                    _ = tokio::time::sleep(RELOAD_EVERY) => {}
                }
                self.reload().await;
            }
        };
        tokio::select! {
            _ = feed => {}
            _ = reloads => {}
        }
    }

    fn store(&self) -> Result<&Arc<dyn Store>, StoreError> {
        self.store
            .as_ref()
            .ok_or_else(|| StoreError::Corrupt("no store behind the API tokens".into()))
    }

    /// Re-reads the stored tokens; on failure the ones known stay accepted.
    async fn reload(&self) {
        let Some(store) = self.store.as_ref() else {
            return;
        };
        if let Ok(mut at) = self.last_reload.write() {
            *at = Instant::now();
        }
        match load(store.as_ref()).await {
            Ok(known) => {
                if let Ok(mut current) = self.known.write() {
                    *current = known;
                }
            }
            Err(error) => {
                tracing::warn!(error = %postern_schema::error_chain(&error), "cannot reload the API tokens");
            }
        }
    }

    /// The verdict on a known hash; `None` when no known token has it.
    fn judge(&self, presented: &[u8; 32]) -> Option<Verdict> {
        let known = self.known.read().unwrap_or_else(|p| p.into_inner());
        // Compare with every hash, so timing does not say which one matched.
        let mut found = 0u64;
        for (index, candidate) in known.iter().enumerate() {
            let position = u64::try_from(index).unwrap_or(u64::MAX).saturating_add(1);
            found = u64::conditional_select(&found, &position, candidate.hash.ct_eq(presented));
        }
        let index = usize::try_from(found.checked_sub(1)?).ok()?;
        let entry = known.get(index)?;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        Some(match entry.expires {
            Some(expires) if now >= expires => Verdict::Expired,
            _ => Verdict::Accept(Principal {
                token_id: entry.id.clone(),
                role: entry.role,
            }),
        })
    }
}

/// The stored tokens, as held in memory. A token whose role or expiry this edge cannot read
/// is left out (refused), with a warning.
async fn load(store: &dyn Store) -> Result<Vec<Known>, StoreError> {
    let mut known = Vec::new();
    for record in store.api_tokens().await? {
        let hash = parse_hash(&record.hash);
        let role = Role::parse(&record.role);
        let expires = record
            .expires_at
            .as_deref()
            .map(parse_timestamp)
            .transpose();
        match (hash, role, expires) {
            (Some(hash), Some(role), Ok(expires)) => known.push(Known {
                hash,
                id: record.id,
                role,
                expires,
            }),
            _ => {
                tracing::warn!(token_id = %record.id, "an API token in the store is unreadable; it is refused")
            }
        }
    }
    Ok(known)
}

/// The record of a new token: a random id, the token's hash, now as its creation time.
fn new_record(token: &Secret, name: &str, role: Role, expires: Option<i64>) -> ApiTokenRecord {
    ApiTokenRecord {
        id: uuid::Uuid::new_v4().to_string(),
        hash: hash_hex(token.expose()),
        name: name.to_string(),
        role: role.as_str().to_string(),
        created_at: crate::store::now_rfc3339(),
        expires_at: expires.and_then(format_timestamp),
    }
}

/// Claims the right to mint the first admin token: `true` for exactly one node.
async fn mint_is_ours(store: &dyn Store) -> Result<bool, StoreError> {
    let claim = uuid::Uuid::new_v4().to_string();
    Ok(store
        .setting_or_insert(MINTED_SETTING, claim.clone())
        .await?
        == claim)
}

/// A new random API token: `pst_` and 32 random bytes, base64url.
pub(crate) fn new_token() -> Secret {
    let bytes: [u8; 32] = rand::random();
    Secret::new(format!("pst_{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// A new random secret of 32 bytes, base64url (tunnel enrolment secrets).
pub(crate) fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Constant-time comparison of two secrets.
pub(crate) fn secrets_equal(a: &str, b: &str) -> bool {
    let a: [u8; 32] = Sha256::digest(a.as_bytes()).into();
    let b: [u8; 32] = Sha256::digest(b.as_bytes()).into();
    a.ct_eq(&b).into()
}

fn hash_hex(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn parse_hash(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Writes a file only its owner can read.
pub(crate) fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn fresh() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> =
            Arc::new(crate::store::SqliteStore::open(&dir.path().join("s.db")).expect("open"));
        (dir, store)
    }

    #[tokio::test]
    async fn tokens_are_judged_by_role_and_expiry() {
        let (dir, store) = fresh().await;
        let auth = Auth::set_up(store, dir.path(), None).await.expect("set up");
        let admin = std::fs::read_to_string(dir.path().join(ADMIN_TOKEN_FILE)).expect("file");
        assert!(matches!(
            auth.verify(admin.trim()).await,
            Verdict::Accept(Principal {
                role: Role::Admin,
                ..
            })
        ));
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let (viewer, viewer_token) = auth
            .create("dash", Role::Viewer, Some(now + 3600))
            .await
            .expect("viewer");
        assert_eq!(
            auth.verify(viewer_token.expose()).await,
            Verdict::Accept(Principal {
                token_id: viewer.id.clone(),
                role: Role::Viewer
            })
        );
        let (_, expired) = auth
            .create("old", Role::Editor, Some(now - 1))
            .await
            .expect("expired");
        assert_eq!(auth.verify(expired.expose()).await, Verdict::Expired);
        assert_eq!(auth.verify("pst_wrong").await, Verdict::Unknown);
        assert_eq!(auth.verify("").await, Verdict::Unknown);
        assert!(auth.revoke(&viewer.id).await.expect("revoke"));
        assert_eq!(auth.verify(viewer_token.expose()).await, Verdict::Unknown);
        assert!(!auth.revoke(&viewer.id).await.expect("revoke again"));
    }

    #[tokio::test]
    async fn tokens_added_by_another_node_are_accepted_and_one_admin_token_is_minted() {
        let (dir, store) = fresh().await;
        for node in ["a", "b"] {
            std::fs::create_dir_all(dir.path().join(node)).expect("node dir");
        }
        let (dir_a, dir_b) = (dir.path().join("a"), dir.path().join("b"));
        let (a, b) = tokio::join!(
            Auth::set_up(store.clone(), &dir_a, None),
            Auth::set_up(store.clone(), &dir_b, None),
        );
        let (a, b) = (a.expect("node a"), b.expect("node b"));
        assert_eq!(store.api_tokens().await.expect("tokens").len(), 1);
        let (_, later) = b.create("ci", Role::Editor, None).await.expect("create");
        if let Ok(mut at) = a.last_reload.write() {
            *at = Instant::now() - RELOAD_AT_MOST_EVERY;
        }
        assert!(matches!(
            a.verify(later.expose()).await,
            Verdict::Accept(Principal {
                role: Role::Editor,
                ..
            })
        ));
    }

    #[tokio::test]
    async fn a_given_admin_token_is_an_admin_token() {
        let (dir, store) = fresh().await;
        let given = Secret::new("pst_given-by-the-operator");
        let auth = Auth::set_up(store, dir.path(), Some(&given))
            .await
            .expect("set up");
        assert!(matches!(
            auth.verify(given.expose()).await,
            Verdict::Accept(Principal {
                role: Role::Admin,
                ..
            })
        ));
        assert!(!dir.path().join(ADMIN_TOKEN_FILE).exists());
    }

    #[test]
    fn hashes_round_trip() {
        let hash = hash_hex("x");
        assert_eq!(parse_hash(&hash).map(|h| h.len()), Some(32));
        assert_eq!(parse_hash("zz"), None);
    }
}
