//! The control API: REST/JSON over HTTP with bearer tokens. `router()` merges one router per
//! resource behind the auth layer; `/healthz` and the status page (`/ui`) need no token. Every
//! write is validated against the contract in `postern-schema` before it reaches the store.

mod error;
#[cfg(test)]
mod fuzz;
mod hostnames;
mod policies;
mod request;
mod rollout;
mod status;
mod tunnels;
mod ui;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use postern_schema::api::EdgeInfo;
use serde::Serialize;
use serde_json::Value;

pub(crate) use error::ApiError;

use crate::metrics::Sample;
pub(crate) use crate::state::EdgeState as AppState;

/// Largest request body the API reads.
const MAX_BODY: usize = 1024 * 1024;

/// The control API's router.
pub(crate) fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .merge(tunnels::router())
        .merge(hostnames::router())
        .merge(policies::router())
        .merge(rollout::router())
        .merge(status::router())
        .route("/v1/edge", get(edge_info))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(healthz))
        // The status page holds no data; it reads the API with the token the visitor gives it.
        .merge(ui::router())
        .merge(v1)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

// === middleware ===

/// Rejects requests without a valid bearer token (401, `WWW-Authenticate: Bearer`).
async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    match token {
        Some(token) if state.auth.verify(token).await => next.run(request).await,
        Some(_) => ApiError::unauthorized("the API token is not valid").into_response(),
        None => ApiError::unauthorized("an API token is required: Authorization: Bearer <token>")
            .into_response(),
    }
}

/// Counts API requests by method and status.
async fn count_requests(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let response = next.run(request).await;
    state.metrics.inc(
        "postern_edge_api_requests_total",
        &[
            ("method", method.as_str()),
            ("status", response.status().as_str()),
        ],
    );
    response
}

// === small handlers ===

async fn healthz() -> Response {
    reply(StatusCode::OK, &serde_json::json!({"status": "ok"}), None)
}

async fn edge_info(State(state): State<AppState>) -> Response {
    let info = EdgeInfo {
        zones: state.settings.zones.clone(),
        public_addresses: state.cluster.public_addresses(),
        tunnel_addresses: state.cluster.tunnel_addresses(),
        ca_cert_pem: state.ca.cert_pem().to_string(),
    };
    reply(StatusCode::OK, &info, None)
}

async fn metrics(State(state): State<AppState>) -> Response {
    let snapshot = state.catalog.snapshot();
    let gauges: Vec<_> = snapshot
        .tunnels
        .values()
        .map(|tunnel| Sample {
            name: "postern_edge_connectors",
            labels: vec![
                ("tunnel", tunnel.spec.name.clone()),
                ("tunnel_id", tunnel.id.to_string()),
            ],
            value: f64::from(state.registry.count(tunnel.id)),
        })
        .collect();
    let mut response = state.metrics.render(&gauges).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint; see schema/openapi.json")
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

// === request and response helpers ===

/// A JSON request body: `application/json`, at most [`MAX_BODY`] bytes, well-formed.
pub(crate) struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                let v = v.trim();
                v.eq_ignore_ascii_case("application/json") || v.ends_with("+json")
            });
        if !is_json {
            return Err(ApiError::unsupported_media_type());
        }
        let bytes = read_body(request.into_body()).await?;
        let value: Value = request::parse_json(&bytes)?;
        Ok(JsonBody(value))
    }
}

/// A JSON answer, with an `ETag` when the object has a version.
pub(crate) fn reply<T: Serialize>(status: StatusCode, body: &T, version: Option<u64>) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    if let Some(version) = version
        && let Ok(value) = HeaderValue::from_str(&format!("\"{version}\""))
    {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// Adds the `Postern-Revision` header: the store revision a write produced, which
/// `GET /v1/rollout?revision=N` answers about.
pub(crate) fn with_revision(mut response: Response, revision: u64) -> Response {
    response.headers_mut().insert(
        postern_schema::api::REVISION_HEADER,
        HeaderValue::from(revision),
    );
    response
}

/// Reads a whole request body, at most [`MAX_BODY`] bytes (see [`request::read_limited`]).
pub(crate) async fn read_body(body: axum::body::Body) -> Result<Bytes, ApiError> {
    request::read_limited(body, MAX_BODY).await
}
