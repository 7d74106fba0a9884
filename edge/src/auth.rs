//! API tokens: the admin token made on first start, stored only as a SHA-256 hash and compared
//! in constant time.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use postern_schema::secret::Secret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::store::{Store, StoreError};

/// The file under `--data-dir` that holds the admin token made on first start.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";

/// Why the tokens could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
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

/// The API tokens the edge accepts.
#[derive(Clone)]
pub struct Auth {
    hashes: Vec<[u8; 32]>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("tokens", &self.hashes.len())
            .finish()
    }
}

impl Auth {
    /// Loads the accepted token hashes. With `admin_token` (from `POSTERN_ADMIN_TOKEN`), that
    /// token is accepted from now on; otherwise, when the store has no token yet, a new admin
    /// token is made and written to `<data_dir>/admin-token` with mode 0600.
    pub async fn set_up(
        store: &dyn Store,
        data_dir: &Path,
        admin_token: Option<&Secret>,
    ) -> Result<Self, AuthError> {
        if let Some(token) = admin_token {
            store
                .add_api_token(&hash_hex(token.expose()), "admin")
                .await?;
        } else if store.api_token_hashes().await?.is_empty() {
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
        let hashes = store
            .api_token_hashes()
            .await?
            .iter()
            .filter_map(|h| parse_hash(h))
            .collect();
        Ok(Self { hashes })
    }

    /// Does `token` belong to an accepted API token? Constant time in the token's contents.
    pub fn verify(&self, token: &str) -> bool {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Check every hash, so timing does not say which one matched.
        self.hashes
            .iter()
            .fold(subtle::Choice::from(0), |found, known| {
                found | known.ct_eq(&presented)
            })
            .into()
    }
}

/// A new random API token: `pst_` and 32 random bytes, base64url.
pub fn new_token() -> Secret {
    let bytes: [u8; 32] = rand::random();
    Secret::new(format!("pst_{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// A new random secret of 32 bytes, base64url (tunnel enrolment secrets).
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Constant-time comparison of two secrets.
pub fn secrets_equal(a: &str, b: &str) -> bool {
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
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
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

    #[test]
    fn verify_accepts_only_known_tokens() {
        let token = new_token();
        let auth = Auth {
            hashes: vec![parse_hash(&hash_hex(token.expose())).expect("hash")],
        };
        assert!(auth.verify(token.expose()));
        assert!(!auth.verify("pst_wrong"));
        assert!(!auth.verify(""));
    }

    #[test]
    fn hashes_round_trip() {
        let hash = hash_hex("x");
        assert_eq!(parse_hash(&hash).map(|h| h.len()), Some(32));
        assert_eq!(parse_hash("zz"), None);
    }
}
