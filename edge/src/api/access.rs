//! Who may call what: the bearer token check in front of every `/v1` route and `/metrics`,
//! the role each route and method needs, and the throttle on failed authentications.
//!
//! In order: a client address that failed too often gets 429 (nothing else is looked at);
//! a request without a token gets 401; a wrong or expired token gets 401 and counts as a
//! failure of its address; a token whose role is not enough gets 403; the rest goes on, with
//! the [`Principal`] in the request's extensions.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use postern_schema::api::Role;

use super::error::ApiError;
use super::state::ApiState;
use crate::auth::Verdict;

/// The route of a tunnel's connector token: the one read a viewer may not make.
const TUNNEL_TOKEN_ROUTE: &str = "/v1/tunnels/{id}/token";

/// The routes of API tokens: admin tokens only.
const TOKENS_ROUTE: &str = "/v1/tokens";

/// The least role that may call `method` on `route` (the route's template, such as
/// `/v1/tunnels/{id}`): admin for `/v1/tokens`; editor to read a tunnel's token and for
/// every method that writes; viewer for every other read.
pub(crate) fn required_role(method: &Method, route: &str) -> Role {
    let tokens = route == TOKENS_ROUTE || route.starts_with("/v1/tokens/");
    if tokens {
        Role::Admin
    } else if *method == Method::GET || *method == Method::HEAD {
        if route == TUNNEL_TOKEN_ROUTE {
            Role::Editor
        } else {
            Role::Viewer
        }
    } else {
        Role::Editor
    }
}

/// Rejects requests without a valid bearer token (401, `WWW-Authenticate: Bearer`), from an
/// address that failed too often (429, `Retry-After`), or whose token's role is not enough
/// (403).
pub(crate) async fn require_token(
    State(state): State<ApiState>,
    mut request: Request,
    next: Next,
) -> Response {
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip());
    if let Some(wait) = client.and_then(|ip| state.throttle.blocked(ip)) {
        return ApiError::too_many_failures(wait).into_response();
    }
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(token) = token else {
        return ApiError::unauthorized("an API token is required: Authorization: Bearer <token>")
            .into_response();
    };
    let principal = match state.auth.verify(token).await {
        Verdict::Accept(principal) => principal,
        refused => {
            if let Some(ip) = client {
                state.throttle.fail(ip);
            }
            let message = match refused {
                Verdict::Expired => "the API token has expired; ask an admin for a new one",
                _ => "the API token is not valid",
            };
            return ApiError::unauthorized(message).into_response();
        }
    };
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_string())
        .unwrap_or_else(|| request.uri().path().to_string());
    let needed = required_role(request.method(), &route);
    if !principal.role.includes(needed) {
        tracing::debug!(token_id = %principal.token_id, role = %principal.role, %route, "refused: role");
        return ApiError::forbidden(refusal(principal.role, needed, &route)).into_response();
    }
    request.extensions_mut().insert(principal);
    next.run(request).await
}

/// Why a token of role `has` may not do what needs `needs`, and what would.
fn refusal(has: Role, needs: Role, route: &str) -> String {
    if needs == Role::Admin {
        format!("{route} needs an admin token; this is a {has} token")
    } else if route == TUNNEL_TOKEN_ROUTE {
        format!(
            "reading a tunnel's connector token needs an editor or admin token; this is a {has} \
             token"
        )
    } else {
        format!("a {has} token may only read; this needs an editor or admin token")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_route_needs_the_role_the_contract_says() {
        let get = Method::GET;
        let cases = [
            (&get, "/v1/tunnels", Role::Viewer),
            (&get, "/v1/tunnels/{id}", Role::Viewer),
            (&get, "/v1/tunnels/{id}/token", Role::Editor),
            (&get, "/v1/tunnels/{id}/connections", Role::Viewer),
            (&get, "/v1/status", Role::Viewer),
            (&get, "/metrics", Role::Viewer),
            (&get, "/v1/tokens", Role::Admin),
            (&Method::POST, "/v1/tunnels", Role::Editor),
            (
                &Method::POST,
                "/v1/tunnels/{id}/enrollment-tokens",
                Role::Editor,
            ),
            (&Method::PUT, "/v1/policies/{id}", Role::Editor),
            (&Method::DELETE, "/v1/hostnames/{hostname}", Role::Editor),
            (&Method::POST, "/v1/tokens", Role::Admin),
            (&Method::DELETE, "/v1/tokens/{id}", Role::Admin),
        ];
        for (method, route, role) in cases {
            assert_eq!(required_role(method, route), role, "{method} {route}");
        }
    }
}
