//! Shared test fixtures: RSA and EC key pairs (generated once per test binary), token minting,
//! policies from JSON, and request facts at a fixed moment.

use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use postern_schema::api::{Policy, PolicySpec};
use postern_schema::ids::PolicyId;

use super::evaluate::{Now, RequestFacts};

/// The HS256 secret the fixture policies use.
pub(crate) const SECRET: &str = "a-shared-secret-of-reasonable-length";

/// A key pair: private key PEM (PKCS#8) and public key PEM (SPKI).
pub(crate) struct Keys {
    pub(crate) private_pem: String,
    pub(crate) public_pem: String,
}

fn generate(alg: &'static rcgen::SignatureAlgorithm) -> Keys {
    let pair = rcgen::KeyPair::generate_for(alg).expect("key generation");
    Keys {
        private_pem: pair.serialize_pem(),
        public_pem: pair.public_key_pem(),
    }
}

/// The RSA key the fixture policies trust.
pub(crate) fn rsa() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| generate(&rcgen::PKCS_RSA_SHA256))
}

/// An RSA key nobody trusts.
pub(crate) fn other_rsa() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| generate(&rcgen::PKCS_RSA_SHA256))
}

/// The P-256 key the fixture policies trust.
pub(crate) fn ec() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| generate(&rcgen::PKCS_ECDSA_P256_SHA256))
}

/// A P-256 key nobody trusts.
pub(crate) fn other_ec() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| generate(&rcgen::PKCS_ECDSA_P256_SHA256))
}

/// The fixed "now" of the tests, in Unix seconds.
pub(crate) const NOW_UNIX: u64 = 1_800_000_000;

/// A moment whose Unix time is [`NOW_UNIX`] plus `offset` seconds.
pub(crate) fn now_plus(base: Instant, offset: Duration) -> Now {
    Now {
        monotonic: base + offset,
        unix: Duration::from_secs(NOW_UNIX) + offset,
    }
}

/// Signs `claims` with `alg` and `key`.
pub(crate) fn token(alg: Algorithm, key: &EncodingKey, claims: serde_json::Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), &claims, key).expect("signing a test token")
}

pub(crate) fn hs256_key(secret: &str) -> EncodingKey {
    EncodingKey::from_secret(secret.as_bytes())
}

pub(crate) fn rsa_key(keys: &Keys) -> EncodingKey {
    EncodingKey::from_rsa_pem(keys.private_pem.as_bytes()).expect("rsa private key")
}

pub(crate) fn ec_key(keys: &Keys) -> EncodingKey {
    EncodingKey::from_ec_pem(keys.private_pem.as_bytes()).expect("ec private key")
}

/// Claims that pass the fixture JWT settings at [`NOW_UNIX`].
pub(crate) fn good_claims() -> serde_json::Value {
    serde_json::json!({
        "sub": "visitor",
        "iss": "https://issuer.example",
        "aud": "edge",
        "exp": NOW_UNIX + 300,
        "nbf": NOW_UNIX - 10,
    })
}

/// The fixture JWT settings: issuer, audiences, the secret and both public keys.
pub(crate) fn jwt_settings() -> serde_json::Value {
    serde_json::json!({
        "issuer": "https://issuer.example",
        "audiences": ["edge", "other"],
        "hs256_secret": SECRET,
        "public_keys_pem": [rsa().public_pem, ec().public_pem],
    })
}

/// A stored policy from a JSON spec (defaults filled as the API fills them).
pub(crate) fn policy(spec: serde_json::Value) -> Policy {
    policy_version(PolicyId::new_random(), 1, spec)
}

pub(crate) fn policy_version(id: PolicyId, version: u64, spec: serde_json::Value) -> Policy {
    let spec: PolicySpec = serde_json::from_value(spec).expect("a valid policy spec");
    Policy {
        id,
        spec: spec.normalized(),
        version,
        created_at: "2026-01-01T00:00:00Z".into(),
    }
}

/// Facts of a plain `GET /` from `ip`.
pub(crate) fn facts<'a>(ip: &str, now: Now) -> RequestFacts<'a> {
    RequestFacts {
        client_ip: ip.parse::<IpAddr>().expect("test address"),
        method: "GET",
        path: "/",
        authorization: None,
        session: None,
        now,
    }
}
