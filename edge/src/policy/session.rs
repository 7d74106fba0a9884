//! The keys of people's logins, shared by every node of a cluster (kept in the store's
//! settings), and what they protect: the session cookie (AES-256-GCM, bound to its hostname by
//! the associated data, so it can be neither read, changed, nor moved to another hostname), the
//! short-lived login cookie of a login in flight, and the JWT the edge signs for the origin
//! (ES256), whose public key `/.postern/jwks.json` publishes.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::{Store, StoreError};

/// The store setting that holds the keys.
const SETTING: &str = "people_keys";

/// The session cookie's name.
pub(crate) const SESSION_COOKIE: &str = "__postern_session";

/// The cookie of a login in flight (state, nonce, PKCE verifier).
pub(crate) const LOGIN_COOKIE: &str = "__postern_login";

/// Longer cookies are not decrypted.
const MAX_COOKIE: usize = 8 * 1024;

/// How long the JWT the origin receives is valid.
pub(crate) const ORIGIN_JWT_SECS: u64 = 60;

/// Why the keys could not be set up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KeysError {
    /// The store failed.
    #[error("cannot read or store the login keys")]
    Store(#[from] StoreError),
    /// The stored keys do not parse.
    #[error("the login keys in the store are malformed")]
    Malformed,
}

#[derive(Serialize, Deserialize)]
struct StoredKeys {
    /// 32 bytes, base64url.
    session_key: String,
    /// P-256 private key, PKCS#8 DER, base64url.
    signing_key: String,
}

/// The cluster's login keys.
pub(crate) struct PeopleKeys {
    aead: LessSafeKey,
    signing: EncodingKey,
    /// The public JWK of the signing key.
    jwk: serde_json::Value,
    kid: String,
}

impl std::fmt::Debug for PeopleKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeopleKeys")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// A person logged in at a hostname, as the session cookie carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Session {
    /// The hostname the cookie was issued for.
    pub(crate) host: String,
    /// The OpenID provider (issuer) and client the person logged in through.
    pub(crate) issuer: String,
    pub(crate) client_id: String,
    /// `sub` of the ID token.
    pub(crate) sub: String,
    /// A name to show: `preferred_username`, `name`, else `email`, else `sub`.
    pub(crate) user: String,
    pub(crate) email: Option<String>,
    #[serde(default)]
    pub(crate) email_verified: bool,
    #[serde(default)]
    pub(crate) groups: Vec<String>,
    /// Unix seconds.
    pub(crate) exp: u64,
}

/// A login in flight, as the login cookie carries it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Login {
    pub(crate) host: String,
    pub(crate) state: String,
    pub(crate) nonce: String,
    pub(crate) verifier: String,
    /// Where to go back to (a path on the hostname).
    pub(crate) return_to: String,
    /// Unix seconds.
    pub(crate) exp: u64,
}

impl PeopleKeys {
    /// The keys in the store, creating them first when there are none (on a shared store, the
    /// first node's win).
    pub(crate) async fn load_or_create(store: &dyn Store) -> Result<Self, KeysError> {
        let fresh = fresh_keys()?;
        let stored = store
            .setting_or_insert(
                SETTING,
                serde_json::to_string(&fresh).map_err(|_| KeysError::Malformed)?,
            )
            .await?;
        let stored: StoredKeys = serde_json::from_str(&stored).map_err(|_| KeysError::Malformed)?;
        Self::from_stored(&stored)
    }

    /// Fresh keys, not stored (unit tests).
    #[cfg(test)]
    pub(crate) fn generate() -> Self {
        let fresh = fresh_keys().expect("key generation");
        Self::from_stored(&fresh).expect("fresh keys parse")
    }

    fn from_stored(stored: &StoredKeys) -> Result<Self, KeysError> {
        let session_key = URL_SAFE_NO_PAD
            .decode(&stored.session_key)
            .map_err(|_| KeysError::Malformed)?;
        let aead = LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, &session_key).map_err(|_| KeysError::Malformed)?,
        );
        let der = URL_SAFE_NO_PAD
            .decode(&stored.signing_key)
            .map_err(|_| KeysError::Malformed)?;
        let pair = rcgen::KeyPair::try_from(der.as_slice()).map_err(|_| KeysError::Malformed)?;
        let point = pair.public_key_raw();
        // An uncompressed P-256 point: 0x04, x (32 bytes), y (32 bytes).
        if point.len() != 65 || point[0] != 4 {
            return Err(KeysError::Malformed);
        }
        let kid = URL_SAFE_NO_PAD.encode(&Sha256::digest(point)[..12]);
        let jwk = serde_json::json!({
            "kty": "EC",
            "crv": "P-256",
            "use": "sig",
            "alg": "ES256",
            "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..]),
        });
        Ok(Self {
            aead,
            signing: EncodingKey::from_ec_der(&der),
            jwk,
            kid,
        })
    }

    /// `/.postern/jwks.json`: the public key of the JWTs the origin receives.
    pub(crate) fn jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": [self.jwk] })
    }

    /// Encrypts `value` into a cookie value for cookie `name` on `host`.
    pub(crate) fn seal<T: Serialize>(&self, name: &str, host: &str, value: &T) -> Option<String> {
        let mut data = serde_json::to_vec(value).ok()?;
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let nonce = Nonce::assume_unique_for_key(nonce_bytes);
        self.aead
            .seal_in_place_append_tag(nonce, Aad::from(aad(name, host)), &mut data)
            .ok()?;
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&data);
        Some(URL_SAFE_NO_PAD.encode(out))
    }

    /// Decrypts a cookie value sealed for cookie `name` on `host`; `None` when it was not
    /// (forged, changed, or another hostname's).
    pub(crate) fn open<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
        host: &str,
        cookie: &str,
    ) -> Option<T> {
        if cookie.len() > MAX_COOKIE {
            return None;
        }
        let mut bytes = URL_SAFE_NO_PAD.decode(cookie).ok()?;
        if bytes.len() < NONCE_LEN {
            return None;
        }
        let mut sealed = bytes.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&bytes).ok()?;
        let plain = self
            .aead
            .open_in_place(nonce, Aad::from(aad(name, host)), &mut sealed)
            .ok()?;
        serde_json::from_slice(plain).ok()
    }

    /// The JWT the origin receives for `session`, valid [`ORIGIN_JWT_SECS`] from `now`.
    pub(crate) fn origin_jwt(&self, identity: &Identity, host: &str, now: u64) -> Option<String> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        let claims = serde_json::json!({
            "iss": format!("https://{host}/.postern"),
            "aud": host,
            "sub": identity.sub,
            "name": identity.user,
            "email": identity.email,
            "groups": identity.groups,
            "iat": now,
            "exp": now + ORIGIN_JWT_SECS,
        });
        jsonwebtoken::encode(&header, &claims, &self.signing).ok()
    }
}

/// Who a request that passed its policies belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) sub: String,
    pub(crate) user: String,
    pub(crate) email: Option<String>,
    pub(crate) groups: Vec<String>,
}

impl Identity {
    /// The identity of a logged-in person.
    pub(crate) fn of_session(session: &Session) -> Self {
        Self {
            sub: session.sub.clone(),
            user: session.user.clone(),
            email: session.email.clone(),
            groups: session.groups.clone(),
        }
    }

    /// The identity of a `basic_auth` user.
    pub(crate) fn of_user(user: &str) -> Self {
        Self {
            sub: user.to_string(),
            user: user.to_string(),
            email: None,
            groups: Vec::new(),
        }
    }
}

fn aad(name: &str, host: &str) -> Vec<u8> {
    format!("postern/{name}/{host}").into_bytes()
}

fn fresh_keys() -> Result<StoredKeys, KeysError> {
    let session_key: [u8; 32] = rand::random();
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|_| KeysError::Malformed)?;
    Ok(StoredKeys {
        session_key: URL_SAFE_NO_PAD.encode(session_key),
        signing_key: URL_SAFE_NO_PAD.encode(pair.serialize_der()),
    })
}

/// Random text for `state`, `nonce` and the PKCE verifier: 32 random bytes, base64url.
pub(crate) fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// The PKCE `S256` challenge of `verifier`.
pub(crate) fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(host: &str) -> Session {
        Session {
            host: host.into(),
            issuer: "https://id.example".into(),
            client_id: "edge".into(),
            sub: "u1".into(),
            user: "ana".into(),
            email: Some("ana@example.com".into()),
            email_verified: true,
            groups: vec!["ops".into()],
            exp: 2_000_000_000,
        }
    }

    #[test]
    fn cookies_open_only_on_their_hostname_and_unchanged() {
        let keys = PeopleKeys::generate();
        let sealed = keys
            .seal(
                SESSION_COOKIE,
                "app.example.com",
                &session("app.example.com"),
            )
            .expect("sealed");
        let opened: Option<Session> = keys.open(SESSION_COOKIE, "app.example.com", &sealed);
        assert_eq!(opened, Some(session("app.example.com")));
        assert_eq!(
            keys.open::<Session>(SESSION_COOKIE, "other.example.com", &sealed),
            None
        );
        assert_eq!(
            keys.open::<Session>(LOGIN_COOKIE, "app.example.com", &sealed),
            None
        );
        let mut forged = sealed.clone().into_bytes();
        let last = forged.len() - 3;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).expect("ascii");
        assert_eq!(
            keys.open::<Session>(SESSION_COOKIE, "app.example.com", &forged),
            None
        );
        // Another cluster's keys cannot read it.
        let other = PeopleKeys::generate();
        assert_eq!(
            other.open::<Session>(SESSION_COOKIE, "app.example.com", &sealed),
            None
        );
    }

    #[test]
    fn the_origin_jwt_verifies_with_the_published_jwks() {
        let keys = PeopleKeys::generate();
        let identity = Identity::of_session(&session("app.example.com"));
        let now = jsonwebtoken::get_current_timestamp();
        let token = keys
            .origin_jwt(&identity, "app.example.com", now)
            .expect("signed");
        let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(keys.jwks()).expect("a JWKS");
        let key = jsonwebtoken::DecodingKey::from_jwk(&set.keys[0]).expect("a key");
        let mut validation = jsonwebtoken::Validation::new(Algorithm::ES256);
        validation.set_audience(&["app.example.com"]);
        let data =
            jsonwebtoken::decode::<serde_json::Value>(&token, &key, &validation).expect("verifies");
        assert_eq!(data.claims["email"], "ana@example.com");
    }
}
