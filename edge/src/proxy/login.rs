//! People at the edge, around the policies of [`request`](super::request): the identity headers
//! (`X-Postern-User`, `X-Postern-Email`, `X-Postern-Jwt`) that only the edge may set (like every
//! `x-postern-*` header, removed from a visitor's request by `forward.rs`; set for a request
//! that passed as someone), and the paths
//! reserved on every hostname: `/.postern/jwks.json` (the key of `X-Postern-Jwt`),
//! `/.postern/callback` (the end of a login at the OpenID provider) and `/.postern/logout`.
//! A browser without a session is sent to log in; a client that does not take `text/html` gets
//! 401 instead.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode, request};

use super::error::ProxyError;
use crate::body::{self, BoxBody};
use crate::catalog::Snapshot;
use crate::policy::{
    CALLBACK_PATH, Identity, JWKS_PATH, LOGIN_COOKIE, LOGOUT_PATH, Login, PeopleKeys, PolicyEngine,
    SESSION_COOKIE, Session, query_param,
};
use postern_schema::api::Hostname;

/// The identity headers, as the origin receives them.
pub(crate) const USER_HEADER: HeaderName = HeaderName::from_static("x-postern-user");
pub(crate) const EMAIL_HEADER: HeaderName = HeaderName::from_static("x-postern-email");
pub(crate) const JWT_HEADER: HeaderName = HeaderName::from_static("x-postern-jwt");

/// Sets the identity headers of a request that passed its policies as `identity`.
pub(super) fn add_identity(
    headers: &mut HeaderMap,
    identity: &Identity,
    keys: Option<&PeopleKeys>,
    host: &str,
    now: u64,
) {
    if let Ok(value) = HeaderValue::from_str(&identity.user) {
        headers.insert(USER_HEADER, value);
    }
    if let Some(email) = &identity.email
        && let Ok(value) = HeaderValue::from_str(email)
    {
        headers.insert(EMAIL_HEADER, value);
    }
    if let Some(token) = keys.and_then(|k| k.origin_jwt(identity, host, now))
        && let Ok(mut value) = HeaderValue::from_str(&token)
    {
        // Never in an HPACK table.
        value.set_sensitive(true);
        headers.insert(JWT_HEADER, value);
    }
}

/// The session a request's cookie carries for `host`, if it opens.
pub(super) fn session_of(keys: &PeopleKeys, host: &str, headers: &HeaderMap) -> Option<Session> {
    cookie(headers, SESSION_COOKIE).and_then(|value| keys.open(SESSION_COOKIE, host, value))
}

/// The value of cookie `name`.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then_some(value)
        })
}

/// Answers the paths under `/.postern/` (404 for those the edge does not know); `None` for any
/// other path.
pub(super) async fn reserved(
    policies: &PolicyEngine,
    snapshot: &Snapshot,
    hostname: &Hostname,
    https: bool,
    parts: &request::Parts,
) -> Option<Result<Response<BoxBody>, ProxyError>> {
    let path = parts.uri.path();
    if !path.starts_with("/.postern/") {
        return None;
    }
    let keys = policies.keys()?;
    let host = hostname.spec.hostname.as_str();
    match path {
        JWKS_PATH => {
            let mut response = Response::new(body::full(keys.jwks().to_string()));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            );
            Some(Ok(response))
        }
        LOGOUT_PATH => {
            let mut response = Response::new(body::full("logged out\n"));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            append_cookie(&mut response, &clear_cookie(SESSION_COOKIE, https));
            append_cookie(&mut response, &clear_cookie(LOGIN_COOKIE, https));
            Some(Ok(response))
        }
        CALLBACK_PATH => match policies.login_policy(snapshot, hostname) {
            Some(oidc) => Some(callback(keys, &oidc, host, https, parts).await),
            None => Some(Err(not_here("this hostname logs no one in"))),
        },
        // Reserved on every hostname: the origin never sees a path under /.postern/.
        _ => Some(Err(not_here("no such path at the edge"))),
    }
}

/// `/.postern/callback?code=…&state=…`: checks the state against the login cookie, redeems
/// the code, and sends the browser back where it was going with its session cookie.
async fn callback(
    keys: &PeopleKeys,
    oidc: &crate::policy::OidcPolicy,
    host: &str,
    https: bool,
    parts: &request::Parts,
) -> Result<Response<BoxBody>, ProxyError> {
    let refuse = |message: &str| ProxyError::Rejected {
        status: StatusCode::BAD_REQUEST,
        headers: HeaderMap::new(),
        message: format!("login failed: {message}"),
    };
    let now = now_unix();
    let query = parts.uri.query().unwrap_or("");
    if let Some(error) = query_param(query, "error") {
        tracing::info!(hostname = host, error = %error, "the OpenID provider refused the login");
        return Err(refuse("the identity provider refused the login"));
    }
    let login: Login = cookie(&parts.headers, LOGIN_COOKIE)
        .and_then(|value| keys.open(LOGIN_COOKIE, host, value))
        .filter(|login: &Login| login.host == host && login.exp > now)
        .ok_or_else(|| refuse("no login in progress on this browser (or it took too long)"))?;
    let state = query_param(query, "state").unwrap_or_default();
    if state.is_empty() || state != login.state {
        return Err(refuse("the state does not match the login in progress"));
    }
    let code = query_param(query, "code")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| refuse("no authorization code"))?;
    let redirect_uri = redirect_uri(parts, host, https);
    let session = oidc
        .finish_login(&login, &code, &redirect_uri, now)
        .await
        .map_err(|error| {
            tracing::warn!(hostname = host, error = %postern_schema::error_chain(&error), "a login could not be completed");
            refuse("the login could not be completed")
        })?;
    tracing::info!(hostname = host, user = %session.user, email = session.email.as_deref().unwrap_or(""), "a person logged in");
    let sealed = keys
        .seal(SESSION_COOKIE, host, &session)
        .ok_or_else(|| refuse("the session could not be sealed"))?;
    let mut response = redirect(&login.return_to);
    let max_age = session.exp.saturating_sub(now);
    append_cookie(
        &mut response,
        &set_cookie(SESSION_COOKIE, &sealed, max_age, https),
    );
    append_cookie(&mut response, &clear_cookie(LOGIN_COOKIE, https));
    Ok(response)
}

/// A request without a session on a hostname that logs people in: a browser (its `Accept`
/// takes `text/html`, and the method is `GET`) is sent to the provider; any other client gets
/// the policy's 401.
pub(super) async fn start_login(
    policies: &PolicyEngine,
    snapshot: &Snapshot,
    hostname: &Hostname,
    https: bool,
    parts: &request::Parts,
    refusal: ProxyError,
) -> ProxyError {
    let browser = parts.method == http::Method::GET
        && parts
            .headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains("text/html"));
    let (Some(keys), Some(oidc), true) = (
        policies.keys(),
        policies.login_policy(snapshot, hostname),
        browser,
    ) else {
        return refusal;
    };
    let host = hostname.spec.hostname.as_str();
    let return_to = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str())
        // A path on this hostname only: never `//host` or `/\host`, which browsers read as
        // another site.
        .filter(|pq| pq.starts_with('/') && !pq.starts_with("//") && !pq.contains('\\'))
        .unwrap_or("/");
    let redirect_uri = redirect_uri(parts, host, https);
    let now = now_unix();
    let (location, login) = match oidc.start_login(host, &redirect_uri, return_to, now).await {
        Ok(started) => started,
        Err(error) => {
            tracing::warn!(hostname = host, error = %postern_schema::error_chain(&error), "cannot start a login at the OpenID provider");
            return ProxyError::Rejected {
                status: StatusCode::BAD_GATEWAY,
                headers: HeaderMap::new(),
                message: "the identity provider cannot be reached".into(),
            };
        }
    };
    let Some(sealed) = keys.seal(LOGIN_COOKIE, host, &login) else {
        return refusal;
    };
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, value);
    }
    if let Ok(value) = HeaderValue::from_str(&set_cookie(
        LOGIN_COOKIE,
        &sealed,
        crate::policy::LOGIN_SECS,
        https,
    )) {
        headers.insert(header::SET_COOKIE, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    ProxyError::Rejected {
        status: StatusCode::FOUND,
        headers,
        message: "log in first".into(),
    }
}

fn not_here(message: &str) -> ProxyError {
    ProxyError::Rejected {
        status: StatusCode::NOT_FOUND,
        headers: HeaderMap::new(),
        message: message.into(),
    }
}

/// `<scheme>://<host[:port]>/.postern/callback`, with the port the visitor used.
fn redirect_uri(parts: &request::Parts, host: &str, https: bool) -> String {
    let scheme = if https { "https" } else { "http" };
    let port = parts
        .uri
        .authority()
        .and_then(|a| a.port_u16())
        .or_else(|| {
            parts
                .headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<http::uri::Authority>().ok())
                .and_then(|a| a.port_u16())
        });
    match port {
        Some(port) => format!("{scheme}://{host}:{port}{CALLBACK_PATH}"),
        None => format!("{scheme}://{host}{CALLBACK_PATH}"),
    }
}

fn redirect(location: &str) -> Response<BoxBody> {
    let mut response = Response::new(body::empty());
    *response.status_mut() = StatusCode::FOUND;
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn append_cookie(response: &mut Response<BoxBody>, cookie: &str) {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// A host-only cookie (no `Domain`: the browser sends it to this hostname only), `HttpOnly`,
/// `SameSite=Lax`, and `Secure` on HTTPS.
fn set_cookie(name: &str, value: &str, max_age: u64, https: bool) -> String {
    let secure = if https { "; Secure" } else { "" };
    format!("{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}")
}

fn clear_cookie(name: &str, https: bool) -> String {
    set_cookie(name, "", 0, https)
}

pub(super) fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; __postern_session=xyz"),
        );
        headers.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie(&headers, "b"), Some("2"));
        assert_eq!(cookie(&headers, "c"), None);
    }

    #[test]
    fn session_cookies_are_host_only_http_only_and_lax() {
        let c = set_cookie(SESSION_COOKIE, "v", 60, true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Lax") && c.contains("Secure"));
        assert!(!c.contains("Domain"));
        assert!(!set_cookie(SESSION_COOKIE, "v", 60, false).contains("Secure"));
    }
}
