//! The control API's router: one router per resource merged behind the token check, the
//! endpoints without a resource of their own (`/healthz`, `/ready`, `/v1/edge`, `/metrics`),
//! and the answers for unknown paths and methods.

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use postern_schema::api::EdgeInfo;

use super::access::require_token;
use super::error::ApiError;
use super::reply::reply;
use super::state::{ApiState, Phase};
use super::{
    certificates, hostnames, policies, requests, rollout, status, tcp_services, tokens, tunnels, ui,
};
use crate::metrics::Sample;

/// The control API's router.
pub(crate) fn router(state: ApiState) -> Router {
    let v1 = Router::new()
        .merge(tunnels::router())
        .merge(hostnames::router())
        .merge(policies::router())
        .merge(certificates::router())
        .merge(tcp_services::router())
        .merge(rollout::router())
        .merge(requests::router())
        .merge(status::router())
        .merge(tokens::router())
        .route("/v1/edge", get(edge_info))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/ready", get(ready))
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

/// Counts API requests by method and status. The method label is one of the methods HTTP
/// defines, or `other`: a client, even without a token, cannot grow `/metrics` (and the
/// edge's memory) with method names of its own.
async fn count_requests(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let method = method_label(request.method());
    let response = next.run(request).await;
    state.metrics.inc(
        "postern_edge_api_requests_total",
        &[("method", method), ("status", response.status().as_str())],
    );
    response
}

/// The `method` label of an API request.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

// === small handlers ===

async fn healthz() -> Response {
    reply(StatusCode::OK, &serde_json::json!({"status": "ok"}), None)
}

/// 200 once the store and every listener are up; 503 before, and while the edge drains.
async fn ready(State(state): State<ApiState>) -> Response {
    let (status, phase) = match state.readiness.phase() {
        Phase::Ready => (StatusCode::OK, "ready"),
        Phase::Starting => (StatusCode::SERVICE_UNAVAILABLE, "starting"),
        Phase::Draining => (StatusCode::SERVICE_UNAVAILABLE, "draining"),
    };
    reply(status, &serde_json::json!({ "status": phase }), None)
}

/// The router of `--metrics-listen`: `/metrics` without a token, for a Prometheus server on a
/// private address.
pub(crate) fn metrics_router(state: ApiState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn edge_info(State(state): State<ApiState>) -> Response {
    let info = EdgeInfo {
        zones: state.settings.zones.clone(),
        public_addresses: state.cluster.public_addresses(),
        tunnel_addresses: state.cluster.tunnel_addresses(),
        ca_cert_pem: state.ca.cert_pem().to_string(),
        visitor_ca_cert_pem: state.visitor_ca.cert_pem().to_string(),
    };
    reply(StatusCode::OK, &info, None)
}

async fn metrics(State(state): State<ApiState>) -> Response {
    let snapshot = state.catalog.snapshot();
    let mut gauges: Vec<_> = snapshot
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
    gauges.extend(crate::certs::expiry_samples(&state.certificates));
    gauges.extend(
        super::status::ejected_routes(&snapshot, &state.registry)
            .into_iter()
            .map(|ejected| Sample {
                name: "postern_edge_route_ejected",
                labels: vec![
                    ("hostname", ejected.hostname),
                    ("prefix", ejected.prefix.unwrap_or_default()),
                    ("route", ejected.route),
                    ("reason", ejected.reason),
                ],
                value: 1.0,
            }),
    );
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
