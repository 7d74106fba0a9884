//! A policy's `oidc` block: people log in at an OpenID Connect provider with the authorization
//! code flow (PKCE `S256`, `state`, `nonce`). The provider's endpoints come from its
//! `/.well-known/openid-configuration` (fetched once, then every [`DISCOVERY_MAX_AGE`]); the ID
//! token is checked against the provider's JWKS (signature), `iss`, `aud`, `exp` and `nonce`.
//! Who may in: `allowed_emails`, `allowed_email_domains`, `allowed_groups` (any match; all
//! empty lets every person the provider logs in).

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use postern_schema::api::OidcSettings;
use serde::Deserialize;

use super::fetch::{self, FetchError};
use super::jwks::JwksCache;
use super::session::{Login, Session, pkce_challenge, random_token};

/// A discovery document older than this is fetched again.
const DISCOVERY_MAX_AGE: Duration = Duration::from_secs(3600);

/// How long a person has to log in at the provider.
pub(crate) const LOGIN_SECS: u64 = 600;

/// `session_duration` when unset.
const DEFAULT_SESSION: Duration = Duration::from_secs(12 * 3600);

/// The reserved paths.
pub(crate) const CALLBACK_PATH: &str = "/.postern/callback";
pub(crate) const LOGOUT_PATH: &str = "/.postern/logout";
pub(crate) const JWKS_PATH: &str = "/.postern/jwks.json";

/// Why a login could not be completed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoginError {
    /// The provider could not be asked.
    #[error("cannot reach the OpenID provider")]
    Fetch(#[from] FetchError),
    /// The discovery document names another issuer.
    #[error("the provider's discovery document names issuer {found:?}, not {expected:?}")]
    IssuerMismatch { expected: String, found: String },
    /// The ID token is not acceptable.
    #[error("the ID token is not acceptable: {0}")]
    IdToken(&'static str),
    /// The token endpoint gave no ID token.
    #[error("the token endpoint answered without an id_token")]
    NoIdToken,
}

/// What the edge reads of a discovery document.
#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

/// The compiled `oidc` block.
pub(crate) struct OidcPolicy {
    pub(crate) settings: OidcSettings,
    pub(crate) session_duration: Duration,
    discovery: tokio::sync::Mutex<Option<(Discovery, Instant, Arc<JwksCache>)>>,
}

impl std::fmt::Debug for OidcPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcPolicy")
            .field("issuer", &self.settings.issuer)
            .field("client_id", &self.settings.client_id)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    id_token: Option<String>,
}

#[derive(Deserialize)]
struct IdClaims {
    iss: String,
    sub: String,
    aud: Audience,
    exp: f64,
    nonce: Option<String>,
    email: Option<String>,
    email_verified: Option<bool>,
    preferred_username: Option<String>,
    name: Option<String>,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl OidcPolicy {
    /// Compiles `settings`.
    pub(crate) fn compile(settings: &OidcSettings) -> Self {
        let session_duration = settings
            .session_duration
            .as_deref()
            .and_then(|text| postern_schema::duration::parse(text).ok())
            .unwrap_or(DEFAULT_SESSION);
        Self {
            settings: settings.clone(),
            session_duration,
            discovery: tokio::sync::Mutex::new(None),
        }
    }

    /// Is `session` one of this policy's provider and client, for `host`, unexpired at `now`?
    pub(crate) fn recognises(&self, session: &Session, host: &str, now: u64) -> bool {
        session.host == host
            && session.issuer == self.settings.issuer
            && session.client_id == self.settings.client_id
            && session.exp > now
    }

    /// May the person of `session` in?
    pub(crate) fn allows(&self, session: &Session) -> bool {
        let s = &self.settings;
        let emails = s.allowed_emails.as_deref().unwrap_or_default();
        let domains = s.allowed_email_domains.as_deref().unwrap_or_default();
        let groups = s.allowed_groups.as_deref().unwrap_or_default();
        if emails.is_empty() && domains.is_empty() && groups.is_empty() {
            return true;
        }
        // An email counts only when the provider says it is verified.
        let email = session
            .email
            .as_deref()
            .filter(|_| session.email_verified)
            .map(str::to_ascii_lowercase);
        if let Some(email) = &email {
            if emails.iter().any(|e| e.eq_ignore_ascii_case(email)) {
                return true;
            }
            if let Some((_, domain)) = email.rsplit_once('@')
                && domains
                    .iter()
                    .any(|d| d.trim_start_matches('@').eq_ignore_ascii_case(domain))
            {
                return true;
            }
        }
        session.groups.iter().any(|g| groups.contains(g))
    }

    /// The discovery document and the provider's key cache, fetched when missing or old.
    async fn discovery(&self) -> Result<(Discovery, Arc<JwksCache>), LoginError> {
        let mut held = self.discovery.lock().await;
        if let Some((doc, at, jwks)) = held.as_ref()
            && at.elapsed() < DISCOVERY_MAX_AGE
        {
            return Ok((doc.clone(), jwks.clone()));
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.settings.issuer.trim_end_matches('/')
        );
        let doc: Discovery = fetch::get_json(&url).await?;
        if doc.issuer != self.settings.issuer {
            return Err(LoginError::IssuerMismatch {
                expected: self.settings.issuer.clone(),
                found: doc.issuer,
            });
        }
        let jwks = match held.as_ref() {
            Some((old, _, jwks)) if old.jwks_uri == doc.jwks_uri => jwks.clone(),
            _ => Arc::new(JwksCache::new(&doc.jwks_uri)),
        };
        *held = Some((doc.clone(), Instant::now(), jwks.clone()));
        Ok((doc, jwks))
    }

    /// Starts a login: the provider's authorization URL to send the browser to, and the login
    /// to keep (sealed in the login cookie) until the callback.
    pub(crate) async fn start_login(
        &self,
        host: &str,
        redirect_uri: &str,
        return_to: &str,
        now: u64,
    ) -> Result<(String, Login), LoginError> {
        let (doc, _) = self.discovery().await?;
        let login = Login {
            host: host.to_string(),
            state: random_token(),
            nonce: random_token(),
            verifier: random_token(),
            return_to: return_to.to_string(),
            exp: now + LOGIN_SECS,
        };
        let mut scopes = vec!["openid".to_string()];
        let configured = self
            .settings
            .scopes
            .clone()
            .unwrap_or_else(|| vec!["email".to_string(), "profile".to_string()]);
        for scope in configured {
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        let query = form(&[
            ("response_type", "code"),
            ("client_id", &self.settings.client_id),
            ("redirect_uri", redirect_uri),
            ("scope", &scopes.join(" ")),
            ("state", &login.state),
            ("nonce", &login.nonce),
            ("code_challenge", &pkce_challenge(&login.verifier)),
            ("code_challenge_method", "S256"),
        ]);
        let separator = if doc.authorization_endpoint.contains('?') {
            '&'
        } else {
            '?'
        };
        Ok((
            format!("{}{separator}{query}", doc.authorization_endpoint),
            login,
        ))
    }

    /// Finishes a login: redeems `code` at the token endpoint and checks the ID token. The
    /// caller has checked `state` against `login`.
    pub(crate) async fn finish_login(
        &self,
        login: &Login,
        code: &str,
        redirect_uri: &str,
        now: u64,
    ) -> Result<Session, LoginError> {
        let (doc, jwks) = self.discovery().await?;
        let body = form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", &login.verifier),
            ("client_id", &self.settings.client_id),
        ]);
        // client_secret_basic (RFC 6749, section 2.3.1): both parts form-encoded first.
        let authorization = self.settings.client_secret.as_ref().map(|secret| {
            let pair = format!(
                "{}:{}",
                encode(&self.settings.client_id),
                encode(secret.expose())
            );
            format!("Basic {}", STANDARD.encode(pair))
        });
        let answer: TokenAnswer =
            fetch::post_form(&doc.token_endpoint, body, authorization.as_deref()).await?;
        let id_token = answer.id_token.ok_or(LoginError::NoIdToken)?;
        let claims = self.verify_id_token(&id_token, &jwks, login, now).await?;
        let groups_claim = self.settings.groups_claim.as_deref().unwrap_or("groups");
        let groups = match claims.rest.get(groups_claim) {
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            Some(serde_json::Value::String(one)) => vec![one.clone()],
            _ => Vec::new(),
        };
        let user = claims
            .preferred_username
            .clone()
            .or_else(|| claims.name.clone())
            .or_else(|| claims.email.clone())
            .unwrap_or_else(|| claims.sub.clone());
        Ok(Session {
            host: login.host.clone(),
            issuer: self.settings.issuer.clone(),
            client_id: self.settings.client_id.clone(),
            sub: claims.sub,
            user,
            email: claims.email,
            email_verified: claims.email_verified.unwrap_or(false),
            groups,
            exp: now + self.session_duration.as_secs(),
        })
    }

    async fn verify_id_token(
        &self,
        token: &str,
        jwks: &JwksCache,
        login: &Login,
        now: u64,
    ) -> Result<IdClaims, LoginError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| LoginError::IdToken("malformed"))?;
        let alg = header.alg;
        if !matches!(
            alg,
            jsonwebtoken::Algorithm::RS256 | jsonwebtoken::Algorithm::ES256
        ) {
            return Err(LoginError::IdToken("algorithm not accepted"));
        }
        jwks.ensure(header.kid.as_deref()).await;
        let (signed, signature) = token
            .rsplit_once('.')
            .ok_or(LoginError::IdToken("malformed"))?;
        let verified = jwks.any_verifies(alg, header.kid.as_deref(), |key| {
            matches!(
                jsonwebtoken::crypto::verify(signature, signed.as_bytes(), key, alg),
                Ok(true)
            )
        });
        if !verified {
            return Err(LoginError::IdToken("bad signature"));
        }
        let payload = signed
            .split('.')
            .nth(1)
            .ok_or(LoginError::IdToken("malformed"))?;
        let claims: IdClaims = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or(LoginError::IdToken("malformed claims"))?;
        if claims.iss != self.settings.issuer {
            return Err(LoginError::IdToken("wrong issuer"));
        }
        let aud_ok = match &claims.aud {
            Audience::One(aud) => *aud == self.settings.client_id,
            Audience::Many(auds) => auds.contains(&self.settings.client_id),
        };
        if !aud_ok {
            return Err(LoginError::IdToken("wrong audience"));
        }
        if claims.exp + super::jwt::MAX_SKEW_SECS <= now as f64 {
            return Err(LoginError::IdToken("expired"));
        }
        if claims.nonce.as_deref() != Some(login.nonce.as_str()) {
            return Err(LoginError::IdToken("wrong nonce"));
        }
        Ok(claims)
    }
}

/// `application/x-www-form-urlencoded` pairs.
pub(crate) fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
pub(crate) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Decodes a query-string value (`+` is a space).
pub(crate) fn decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The value of `name` in a query string.
pub(crate) fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(key)? == name).then(|| decode(value)).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(json: serde_json::Value) -> OidcPolicy {
        OidcPolicy::compile(&serde_json::from_value(json).expect("settings"))
    }

    fn session(email: &str, groups: &[&str]) -> Session {
        Session {
            host: "app.example.com".into(),
            issuer: "https://id.example".into(),
            client_id: "edge".into(),
            sub: "s".into(),
            user: "u".into(),
            email: Some(email.into()),
            email_verified: true,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            exp: 100,
        }
    }

    #[test]
    fn people_are_let_in_by_email_domain_or_group() {
        let p = policy(serde_json::json!({
            "issuer": "https://id.example", "client_id": "edge",
            "allowed_emails": ["Boss@Other.org"], "allowed_email_domains": ["example.com"],
            "allowed_groups": ["ops"],
        }));
        assert!(p.allows(&session("ana@example.com", &[])));
        assert!(p.allows(&session("boss@other.org", &[])));
        assert!(p.allows(&session("x@else.org", &["ops"])));
        assert!(!p.allows(&session("x@else.org", &["dev"])));
        let mut unverified = session("ana@example.com", &[]);
        unverified.email_verified = false;
        assert!(!p.allows(&unverified));
        let open =
            policy(serde_json::json!({ "issuer": "https://id.example", "client_id": "edge" }));
        assert!(open.allows(&session("x@else.org", &[])));
        assert!(open.recognises(&session("x@else.org", &[]), "app.example.com", 99));
        assert!(!open.recognises(&session("x@else.org", &[]), "app.example.com", 100));
        assert!(!open.recognises(&session("x@else.org", &[]), "other.example.com", 99));
    }

    #[test]
    fn query_strings_round_trip() {
        let q = form(&[("code", "a b&c=d"), ("state", "x/y")]);
        assert_eq!(query_param(&q, "code").as_deref(), Some("a b&c=d"));
        assert_eq!(query_param(&q, "state").as_deref(), Some("x/y"));
        assert_eq!(query_param(&q, "nope"), None);
        assert_eq!(query_param("a=%zz", "a"), None);
    }
}
