//! Keys published as a JWKS at a URL (a `jwt` policy's `jwks_url`, an OpenID provider's
//! `jwks_uri`): fetched on first use, kept, and fetched again when a token names a `kid` the
//! cached set does not hold (the provider rotated its key) or when the set is older than
//! [`MAX_AGE`]. Fetches are rate-limited ([`MIN_INTERVAL`]), so tokens with made-up `kid`s
//! cannot make the edge hammer the provider; requests never wait for a fetch they did not need.

use std::sync::RwLock;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::fetch::{self, FetchError};

/// At most one fetch per URL in this interval.
pub(crate) const MIN_INTERVAL: Duration = Duration::from_secs(2);

/// A set older than this is fetched again on its next use.
const MAX_AGE: Duration = Duration::from_secs(600);

/// One key of the set.
struct Key {
    kid: Option<String>,
    /// The algorithm family the key serves (RS256 or ES256).
    alg: Algorithm,
    key: DecodingKey,
}

#[derive(Default)]
struct Fetched {
    keys: Vec<Key>,
    at: Option<Instant>,
}

/// The cached JWKS of one URL.
pub(crate) struct JwksCache {
    url: String,
    fetched: RwLock<Fetched>,
    /// When the last fetch started; serialises fetches.
    last_attempt: tokio::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl JwksCache {
    /// An empty cache of the set at `url`.
    pub(crate) fn new(url: &str) -> Self {
        Self {
            url: url.to_string(),
            fetched: RwLock::new(Fetched::default()),
            last_attempt: tokio::sync::Mutex::new(None),
        }
    }

    /// The URL.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Does the cache need a fetch before a token with `kid` can be checked? True when it was
    /// never fetched, is older than [`MAX_AGE`], or lacks `kid`.
    fn needs_fetch(&self, kid: Option<&str>) -> bool {
        let fetched = self.fetched.read().unwrap_or_else(|p| p.into_inner());
        match fetched.at {
            None => true,
            Some(at) if at.elapsed() >= MAX_AGE => true,
            Some(_) => {
                kid.is_some_and(|kid| !fetched.keys.iter().any(|k| k.kid.as_deref() == Some(kid)))
            }
        }
    }

    /// Fetches the set when [`needs_fetch`](Self::needs_fetch) says so and the last fetch is
    /// at least [`MIN_INTERVAL`] old. A failed fetch keeps the keys held (and is logged).
    pub(crate) async fn ensure(&self, kid: Option<&str>) {
        if !self.needs_fetch(kid) {
            return;
        }
        let mut last = self.last_attempt.lock().await;
        // Another request may have fetched while this one waited.
        if !self.needs_fetch(kid) {
            return;
        }
        if last.is_some_and(|at| at.elapsed() < MIN_INTERVAL) {
            return;
        }
        *last = Some(Instant::now());
        match self.fetch().await {
            Ok(keys) => {
                tracing::debug!(url = %self.url, keys = keys.len(), "fetched a JWKS");
                let mut fetched = self.fetched.write().unwrap_or_else(|p| p.into_inner());
                fetched.keys = keys;
                fetched.at = Some(Instant::now());
            }
            Err(error) => {
                tracing::warn!(url = %self.url, error = %postern_schema::error_chain(&error), "cannot fetch a JWKS; keeping the keys held");
            }
        }
    }

    async fn fetch(&self) -> Result<Vec<Key>, FetchError> {
        let set: JwkSet = fetch::get_json(&self.url).await?;
        Ok(set.keys.iter().filter_map(key_of).collect())
    }

    /// Calls `verify` with each held key that could have signed a token with `alg` and `kid`
    /// (a token without `kid` is tried against every key of its family); true when one does.
    pub(crate) fn any_verifies(
        &self,
        alg: Algorithm,
        kid: Option<&str>,
        mut verify: impl FnMut(&DecodingKey) -> bool,
    ) -> bool {
        let fetched = self.fetched.read().unwrap_or_else(|p| p.into_inner());
        fetched
            .keys
            .iter()
            .filter(|k| k.alg == alg)
            .filter(|k| kid.is_none() || k.kid.as_deref() == kid)
            .any(|k| verify(&k.key))
    }

    /// Installs keys without fetching (unit tests).
    #[cfg(test)]
    pub(crate) fn install(&self, set: &JwkSet) {
        let mut fetched = self.fetched.write().unwrap_or_else(|p| p.into_inner());
        fetched.keys = set.keys.iter().filter_map(key_of).collect();
        fetched.at = Some(Instant::now());
    }
}

/// An RSA (RS256) or P-256 (ES256) signing key of a JWKS; other keys are left out.
fn key_of(jwk: &Jwk) -> Option<Key> {
    use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, PublicKeyUse};
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let alg = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            Algorithm::ES256
        }
        _ => return None,
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(Key {
        kid: jwk.common.key_id.clone(),
        alg,
        key,
    })
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use jsonwebtoken::{EncodingKey, Header};

    use super::*;

    #[test]
    fn keys_are_picked_by_kid_and_family_and_unknown_kids_need_a_fetch() {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let point = pair.public_key_raw();
        let set: JwkSet = serde_json::from_value(serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": "a", "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..]),
        }]}))
        .expect("a JWKS");
        let cache = JwksCache::new("https://id.example/jwks");
        assert!(cache.needs_fetch(None), "never fetched");
        cache.install(&set);
        assert!(!cache.needs_fetch(Some("a")));
        assert!(cache.needs_fetch(Some("b")), "an unknown kid");

        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("a".into());
        let key = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).expect("pem");
        let token =
            jsonwebtoken::encode(&header, &serde_json::json!({"exp": 1}), &key).expect("token");
        let (signed, signature) = token.rsplit_once('.').expect("three parts");
        let verify = |alg: Algorithm, kid: Option<&str>| {
            cache.any_verifies(alg, kid, |k| {
                matches!(
                    jsonwebtoken::crypto::verify(signature, signed.as_bytes(), k, Algorithm::ES256),
                    Ok(true)
                )
            })
        };
        assert!(verify(Algorithm::ES256, Some("a")));
        assert!(verify(Algorithm::ES256, None));
        assert!(!verify(Algorithm::ES256, Some("b")));
        assert!(!verify(Algorithm::RS256, Some("a")));
    }
}
