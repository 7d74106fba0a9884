//! HTTP Basic authentication for a policy's `basic_auth` block: user names and PHC password
//! hashes (argon2 or bcrypt), never passwords. Verifying a hash is slow by design, so a
//! verified pair is remembered (as a keyed SHA-256 digest, never the password) and the next
//! request with it costs one hash; refusals are not remembered.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use argon2::{PasswordHash, PasswordVerifier};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use postern_schema::api::BasicAuthSettings;
use sha2::{Digest, Sha256};

/// At most this many verified pairs are remembered per policy (then the memory starts over).
const MAX_REMEMBERED: usize = 4096;

/// Longer `Authorization` values are refused before decoding.
const MAX_HEADER: usize = 4096;

/// A stored hash, parsed.
enum Hash {
    Argon2(String),
    Bcrypt(String),
}

/// A policy's users and what was verified.
pub(crate) struct BasicVerifier {
    users: HashMap<String, Hash>,
    /// A random key for the digests of verified pairs.
    salt: [u8; 32],
    verified: Mutex<HashSet<[u8; 32]>>,
}

impl std::fmt::Debug for BasicVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicVerifier")
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}

/// Is `hash` one the edge can verify passwords against? The API refuses the others.
pub(crate) fn check_password_hash(hash: &str) -> Result<(), String> {
    parse(hash).map(drop)
}

fn parse(hash: &str) -> Result<Hash, String> {
    if hash.starts_with("$argon2") {
        PasswordHash::new(hash)
            .map(|_| Hash::Argon2(hash.to_string()))
            .map_err(|e| format!("not a valid argon2 hash in PHC form: {e}"))
    } else if hash.starts_with("$2") {
        hash.parse::<bcrypt::HashParts>()
            .map(|_| Hash::Bcrypt(hash.to_string()))
            .map_err(|e| format!("not a valid bcrypt hash: {e}"))
    } else {
        Err("not an argon2 or bcrypt hash in PHC form".into())
    }
}

impl BasicVerifier {
    /// Parses the hashes of `settings`; a hash that does not parse is reported and its user
    /// can never log in.
    pub(crate) fn compile(settings: &BasicAuthSettings) -> (Self, Vec<String>) {
        let mut users = HashMap::new();
        let mut errors = Vec::new();
        for (user, hash) in &settings.users {
            match parse(hash) {
                Ok(hash) => {
                    users.insert(user.clone(), hash);
                }
                Err(error) => errors.push(format!("user {user:?}: {error}")),
            }
        }
        let verifier = Self {
            users,
            salt: rand::random(),
            verified: Mutex::new(HashSet::new()),
        };
        (verifier, errors)
    }

    /// The user of a valid `Authorization: Basic` header; `None` when there is none, it is
    /// malformed, names no user, or carries the wrong password.
    pub(crate) fn verify(&self, authorization: Option<&[u8]>) -> Option<&str> {
        let header = authorization?;
        if header.len() > MAX_HEADER {
            return None;
        }
        let text = std::str::from_utf8(header).ok()?.trim();
        let (scheme, rest) = text.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = STANDARD.decode(rest.trim()).ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (user, password) = decoded.split_once(':')?;
        let (name, hash) = self.users.get_key_value(user)?;
        let digest = self.digest(user, password);
        if self
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&digest)
        {
            return Some(name);
        }
        let ok = match hash {
            Hash::Argon2(text) => PasswordHash::new(text).is_ok_and(|parsed| {
                argon2::Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            }),
            Hash::Bcrypt(text) => bcrypt::verify(password, text).unwrap_or(false),
        };
        if !ok {
            return None;
        }
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if verified.len() >= MAX_REMEMBERED {
            verified.clear();
        }
        verified.insert(digest);
        Some(name)
    }

    fn digest(&self, user: &str, password: &str) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(self.salt);
        hasher.update((user.len() as u64).to_be_bytes());
        hasher.update(user.as_bytes());
        hasher.update(password.as_bytes());
        hasher.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(user: &str, hash: &str) -> BasicAuthSettings {
        BasicAuthSettings {
            users: [(user.to_string(), hash.to_string())].into(),
        }
    }

    fn header(user: &str, password: &str) -> String {
        format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
    }

    #[test]
    fn bcrypt_and_argon2_hashes_verify_the_right_password_only() {
        let bcrypt_hash = bcrypt::hash("s3cret", 4).expect("bcrypt");
        let (verifier, errors) = BasicVerifier::compile(&settings("ana", &bcrypt_hash));
        assert!(errors.is_empty());
        assert_eq!(
            verifier.verify(Some(header("ana", "s3cret").as_bytes())),
            Some("ana")
        );
        // A second time, from memory.
        assert_eq!(
            verifier.verify(Some(header("ana", "s3cret").as_bytes())),
            Some("ana")
        );
        assert_eq!(
            verifier.verify(Some(header("ana", "wrong").as_bytes())),
            None
        );
        assert_eq!(
            verifier.verify(Some(header("bob", "s3cret").as_bytes())),
            None
        );
        assert_eq!(verifier.verify(Some(b"Bearer x")), None);
        assert_eq!(verifier.verify(None), None);

        let argon: PasswordHash = argon2::PasswordHasher::hash_password_with_salt(
            &argon2::Argon2::default(),
            b"hunter22",
            b"somesaltsomesalt",
        )
        .expect("argon2");
        let (verifier, errors) = BasicVerifier::compile(&settings("ops", &argon.to_string()));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            verifier.verify(Some(header("ops", "hunter22").as_bytes())),
            Some("ops")
        );
        assert_eq!(
            verifier.verify(Some(header("ops", "wrong").as_bytes())),
            None
        );
    }

    #[test]
    fn malformed_hashes_are_refused() {
        assert!(check_password_hash("$2b$12$short").is_err());
        assert!(check_password_hash("$argon2id$nonsense").is_err());
        assert!(check_password_hash("hunter2").is_err());
    }
}
