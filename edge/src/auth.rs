//! API tokens: the admin token made on first start, stored only as a SHA-256 hash and compared
//! in constant time.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use postern_schema::secret::Secret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::store::{Store, StoreError};

/// The file under `--data-dir` that holds the admin token made on first start.
pub(crate) const ADMIN_TOKEN_FILE: &str = "admin-token";

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

/// How often an unknown token may make the edge re-read the stored hashes (tokens added by
/// another edge node sharing the store are accepted after at most this long).
const RELOAD_AT_MOST_EVERY: Duration = Duration::from_secs(2);

/// The settings key that records which node minted the first admin token.
const MINTED_SETTING: &str = "admin-token-minted-by";

/// The API tokens the edge accepts.
#[derive(Clone)]
pub(crate) struct Auth {
    hashes: Arc<RwLock<Vec<[u8; 32]>>>,
    store: Option<Arc<dyn Store>>,
    last_reload: Arc<RwLock<Instant>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = self.hashes.read().map(|h| h.len()).unwrap_or(0);
        f.debug_struct("Auth").field("tokens", &count).finish()
    }
}

impl Auth {
    /// Loads the accepted token hashes. With `admin_token` (from `POSTERN_ADMIN_TOKEN`), that
    /// token is accepted from now on; otherwise, when the store has no token yet, a new admin
    /// token is made and written to `<data_dir>/admin-token` with mode 0600. Edge nodes sharing
    /// a store agree on who mints it, so nodes starting together make one token, not several.
    pub(crate) async fn set_up(
        store: Arc<dyn Store>,
        data_dir: &Path,
        admin_token: Option<&Secret>,
    ) -> Result<Self, AuthError> {
        if let Some(token) = admin_token {
            store
                .add_api_token(&hash_hex(token.expose()), "admin")
                .await?;
        } else if store.api_token_hashes().await?.is_empty() && mint_is_ours(store.as_ref()).await?
        {
            let token = new_token();
            let path = data_dir.join(ADMIN_TOKEN_FILE);
            write_private(&path, &format!("{}\n", token.expose())).map_err(|source| {
                AuthError::File {
                    path: path.display().to_string(),
                    source,
                }
            })?;
            store
                .add_api_token(&hash_hex(token.expose()), "admin")
                .await?;
            tracing::info!(path = %path.display(), "created the admin API token");
        }
        let hashes = load_hashes(store.as_ref()).await?;
        Ok(Self {
            hashes: Arc::new(RwLock::new(hashes)),
            store: Some(store),
            last_reload: Arc::new(RwLock::new(Instant::now())),
        })
    }

    /// Does `token` belong to an accepted API token? Constant time in the token's contents.
    /// An unknown token makes the edge re-read the stored hashes, at most every
    /// [`RELOAD_AT_MOST_EVERY`], so tokens added through another edge node are accepted too.
    pub(crate) async fn verify(&self, token: &str) -> bool {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if self.knows(&presented) {
            return true;
        }
        let due = self
            .last_reload
            .read()
            .map(|at| at.elapsed() >= RELOAD_AT_MOST_EVERY)
            .unwrap_or(false);
        let Some(store) = self.store.as_ref().filter(|_| due) else {
            return false;
        };
        if let Ok(mut at) = self.last_reload.write() {
            *at = Instant::now();
        }
        match load_hashes(store.as_ref()).await {
            Ok(hashes) => {
                if let Ok(mut current) = self.hashes.write() {
                    *current = hashes;
                }
                self.knows(&presented)
            }
            Err(error) => {
                tracing::warn!(%error, "cannot reload the API tokens");
                false
            }
        }
    }

    fn knows(&self, presented: &[u8; 32]) -> bool {
        let hashes = self.hashes.read().unwrap_or_else(|p| p.into_inner());
        // Check every hash, so timing does not say which one matched.
        hashes
            .iter()
            .fold(subtle::Choice::from(0), |found, known| {
                found | known.ct_eq(presented)
            })
            .into()
    }
}

async fn load_hashes(store: &dyn Store) -> Result<Vec<[u8; 32]>, StoreError> {
    Ok(store
        .api_token_hashes()
        .await?
        .iter()
        .filter_map(|h| parse_hash(h))
        .collect())
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

    #[tokio::test]
    async fn verify_accepts_only_known_tokens() {
        let token = new_token();
        let auth = Auth {
            hashes: Arc::new(RwLock::new(vec![
                parse_hash(&hash_hex(token.expose())).expect("hash"),
            ])),
            store: None,
            last_reload: Arc::new(RwLock::new(Instant::now())),
        };
        assert!(auth.verify(token.expose()).await);
        assert!(!auth.verify("pst_wrong").await);
        assert!(!auth.verify("").await);
    }

    #[tokio::test]
    async fn tokens_added_by_another_node_are_accepted_and_one_admin_token_is_minted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> =
            Arc::new(crate::store::SqliteStore::open(&dir.path().join("s.db")).expect("open"));
        for node in ["a", "b"] {
            std::fs::create_dir_all(dir.path().join(node)).expect("node dir");
        }
        let (dir_a, dir_b) = (dir.path().join("a"), dir.path().join("b"));
        let (a, b) = tokio::join!(
            Auth::set_up(store.clone(), &dir_a, None),
            Auth::set_up(store.clone(), &dir_b, None),
        );
        let (a, _b) = (a.expect("node a"), b.expect("node b"));
        assert_eq!(store.api_token_hashes().await.expect("hashes").len(), 1);
        let later = new_token();
        store
            .add_api_token(&hash_hex(later.expose()), "other node")
            .await
            .expect("add");
        if let Ok(mut at) = a.last_reload.write() {
            *at = Instant::now() - RELOAD_AT_MOST_EVERY;
        }
        assert!(a.verify(later.expose()).await);
    }

    #[test]
    fn hashes_round_trip() {
        let hash = hash_hex("x");
        assert_eq!(parse_hash(&hash).map(|h| h.len()), Some(32));
        assert_eq!(parse_hash("zz"), None);
    }
}
