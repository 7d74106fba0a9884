//! JWT bearer tokens for a policy's `jwt` block: HS256 with the shared secret, RS256 and ES256
//! with the configured public keys. The token's `alg` picks the key family, so a token can never
//! be checked against a key of another kind (no `none`, no HS256 keyed with a public key). Time
//! is passed in: `exp` and `nbf` are checked against the caller's clock with at most
//! [`MAX_SKEW_SECS`] of tolerance.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use postern_schema::api::JwtSettings;
use serde::Deserialize;

use super::jwks::JwksCache;

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub(crate) const MAX_SKEW_SECS: f64 = 60.0;

/// Longer tokens are refused before any parsing.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// A policy's JWT requirements with its keys decoded once.
pub(crate) struct JwtVerifier {
    issuer: Option<String>,
    audiences: Vec<String>,
    hs256: Option<DecodingKey>,
    rsa: Vec<DecodingKey>,
    ec: Vec<DecodingKey>,
    /// The keys at `jwks_url`.
    jwks: Option<Arc<JwksCache>>,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("hs256", &self.hs256.as_ref().map(|_| "***"))
            .field("rsa_keys", &self.rsa.len())
            .field("ec_keys", &self.ec.len())
            .field("jwks", &self.jwks.as_ref().map(|j| j.url()))
            .finish()
    }
}

/// Why a public key of a policy could not be used.
#[derive(Debug, thiserror::Error)]
#[error("public key {index} is neither an RSA nor an EC public key in PEM form")]
pub(crate) struct KeyError {
    /// Its position in `public_keys_pem`.
    pub(crate) index: usize,
}

/// Why a token was refused. Carries no part of the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JwtRejection {
    /// Not three base64url parts with a JSON header and claims.
    Malformed,
    /// `alg` is not one the policy has a key for.
    Algorithm,
    /// No key of the policy verifies the signature.
    Signature,
    /// No `exp` claim.
    MissingExpiry,
    /// `exp` has passed (beyond the skew).
    Expired,
    /// `nbf` is still ahead (beyond the skew).
    NotYetValid,
    /// `iss` is not the policy's issuer.
    Issuer,
    /// `aud` names none of the policy's audiences.
    Audience,
}

impl JwtRejection {
    /// A short description for logs.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed token",
            Self::Algorithm => "algorithm not accepted",
            Self::Signature => "bad signature",
            Self::MissingExpiry => "no exp claim",
            Self::Expired => "expired",
            Self::NotYetValid => "not yet valid",
            Self::Issuer => "wrong issuer",
            Self::Audience => "wrong audience",
        }
    }
}

/// The length of a token's signed part (`header.payload`).
fn header_len(token: &str) -> usize {
    token.rfind('.').unwrap_or(0)
}

/// The `kid` of a token's header, if it has one and the header parses.
pub(crate) fn kid_of(token: &str) -> Option<String> {
    jsonwebtoken::decode_header(token).ok()?.kid
}

/// The registered claims the edge checks; every other claim is ignored.
#[derive(Deserialize)]
struct Claims {
    exp: Option<f64>,
    nbf: Option<f64>,
    iss: Option<String>,
    aud: Option<Audience>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains_any(&self, accepted: &[String]) -> bool {
        match self {
            Self::One(aud) => accepted.iter().any(|a| a == aud),
            Self::Many(auds) => auds.iter().any(|aud| accepted.iter().any(|a| a == aud)),
        }
    }
}

impl JwtVerifier {
    /// Decodes the keys of `settings`. A key that does not parse is reported and left out, so
    /// tokens it would have verified are refused (fail closed).
    pub(crate) fn compile(settings: &JwtSettings) -> (Self, Vec<KeyError>) {
        let mut errors = Vec::new();
        let mut rsa = Vec::new();
        let mut ec = Vec::new();
        for (index, pem) in settings.public_keys_pem.iter().flatten().enumerate() {
            let bytes = pem.as_bytes();
            if let Ok(key) = DecodingKey::from_rsa_pem(bytes) {
                rsa.push(key);
            } else if let Ok(key) = DecodingKey::from_ec_pem(bytes) {
                ec.push(key);
            } else {
                errors.push(KeyError { index });
            }
        }
        let verifier = Self {
            issuer: settings.issuer.clone(),
            audiences: settings.audiences.clone().unwrap_or_default(),
            hs256: settings
                .hs256_secret
                .as_ref()
                .map(|secret| DecodingKey::from_secret(secret.expose().as_bytes())),
            rsa,
            ec,
            jwks: settings
                .jwks_url
                .as_deref()
                .map(|url| Arc::new(JwksCache::new(url))),
        };
        (verifier, errors)
    }

    /// Checks `token` (what follows `Bearer `) at `now_unix` seconds since the epoch.
    pub(crate) fn verify(&self, token: &str, now_unix: f64) -> Result<(), JwtRejection> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(JwtRejection::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtRejection::Malformed);
        };
        if header.is_empty() || payload.is_empty() || signature.is_empty() {
            return Err(JwtRejection::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| JwtRejection::Malformed)?;
        let alg = header.alg;
        let keys: &[DecodingKey] = match alg {
            Algorithm::HS256 => self.hs256.as_slice(),
            Algorithm::RS256 => &self.rsa,
            Algorithm::ES256 => &self.ec,
            _ => &[],
        };
        let from_jwks = self
            .jwks
            .as_ref()
            .filter(|_| matches!(alg, Algorithm::RS256 | Algorithm::ES256));
        if keys.is_empty() && from_jwks.is_none() {
            return Err(JwtRejection::Algorithm);
        }
        let message = &token[..header_len(token)];
        let check = |key: &DecodingKey| {
            matches!(
                jsonwebtoken::crypto::verify(signature, message.as_bytes(), key, alg),
                Ok(true)
            )
        };
        let verified = keys.iter().any(check)
            || from_jwks.is_some_and(|jwks| jwks.any_verifies(alg, header.kid.as_deref(), check));
        if !verified {
            return Err(JwtRejection::Signature);
        }
        let claims = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|json| serde_json::from_slice::<Claims>(&json).ok())
            .ok_or(JwtRejection::Malformed)?;
        self.check_claims(&claims, now_unix)
    }

    /// The JWKS this verifier reads keys from, if any: the proxy makes sure it holds the key a
    /// token names before the token is checked.
    pub(crate) fn jwks(&self) -> Option<&Arc<JwksCache>> {
        self.jwks.as_ref()
    }

    fn check_claims(&self, claims: &Claims, now: f64) -> Result<(), JwtRejection> {
        let exp = claims.exp.ok_or(JwtRejection::MissingExpiry)?;
        if now >= exp + MAX_SKEW_SECS {
            return Err(JwtRejection::Expired);
        }
        if let Some(nbf) = claims.nbf
            && nbf > now + MAX_SKEW_SECS
        {
            return Err(JwtRejection::NotYetValid);
        }
        if let Some(issuer) = &self.issuer
            && claims.iss.as_deref() != Some(issuer.as_str())
        {
            return Err(JwtRejection::Issuer);
        }
        if !self.audiences.is_empty()
            && !claims
                .aud
                .as_ref()
                .is_some_and(|aud| aud.contains_any(&self.audiences))
        {
            return Err(JwtRejection::Audience);
        }
        Ok(())
    }
}
