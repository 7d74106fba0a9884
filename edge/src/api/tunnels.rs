//! `/v1/tunnels`: create, list (with `?selector=`), read, replace, delete, token, connections.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::time::Duration;

use postern_schema::api::{
    EnrollmentToken, EnrollmentTokenSpec, List, Tunnel, TunnelSpec, TunnelTokenBody,
};
use postern_schema::ids::TunnelId;
use postern_schema::rules::{parse_selector, selector_matches};
use postern_schema::secret::Secret;
use postern_schema::token::TunnelToken;
use postern_schema::validate::validate;
use serde::Deserialize;

use super::error::ApiError;
use super::reply::reply;
use super::reply::with_revision;
use super::request::JsonBody;
use super::request::{Path, Query, if_match};
use super::state::ApiState;
use crate::auth::new_secret;
use crate::catalog::tunnel_from_record;
use crate::store::{Kind, Record, Write};

pub(super) fn router() -> Router<ApiState> {
    Router::new()
        .route("/v1/tunnels", get(list).post(create))
        .route("/v1/tunnels/{id}", get(read).put(replace).delete(delete))
        .route("/v1/tunnels/{id}/token", get(token))
        .route("/v1/tunnels/{id}/connections", get(connections))
        .route(
            "/v1/tunnels/{id}/enrollment-tokens",
            axum::routing::post(enrollment_token),
        )
}

#[derive(Deserialize)]
struct ListQuery {
    selector: Option<String>,
}

async fn list(
    State(state): State<ApiState>,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let selector = parse_selector(query.selector.as_deref().unwrap_or(""))
        .map_err(|message| ApiError::invalid("", format!("selector: {message}")))?;
    let mut items = Vec::new();
    for record in state.store.list(Kind::Tunnel).await? {
        let tunnel = to_api(&state, &record)?;
        if selector_matches(&selector, &tunnel.spec.labels) {
            items.push(tunnel);
        }
    }
    Ok(reply(StatusCode::OK, &List { items }, None))
}

async fn create(
    State(state): State<ApiState>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let spec: TunnelSpec = validate(&body)?;
    let id = TunnelId::new_random();
    let secret = new_secret();
    let record = state
        .store
        .create(write(id, &spec), Some(secret.clone()))
        .await?;
    state.catalog.refresh_to(record.revision).await;
    tracing::info!(tunnel_id = %id, name = %spec.name, "tunnel created");
    let mut tunnel = to_api(&state, &record)?;
    tunnel.token = Some(token_for(&state, id, secret));
    Ok(with_revision(
        reply(StatusCode::CREATED, &tunnel, Some(tunnel.version)),
        record.revision,
    ))
}

async fn read(State(state): State<ApiState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let record = find(&state, &id).await?;
    let tunnel = to_api(&state, &record)?;
    Ok(reply(StatusCode::OK, &tunnel, Some(tunnel.version)))
}

async fn replace(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let expected = if_match(&headers)?;
    let id = parse_id(&id)?;
    let spec: TunnelSpec = validate(&body)?;
    let record = state
        .store
        .replace(&id.to_string(), write(id, &spec), expected)
        .await?;
    state.catalog.refresh_to(record.revision).await;
    let tunnel = to_api(&state, &record)?;
    Ok(with_revision(
        reply(StatusCode::OK, &tunnel, Some(tunnel.version)),
        record.revision,
    ))
}

async fn delete(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let expected = if_match(&headers)?;
    let id = parse_id(&id)?;
    let deleted = state
        .store
        .delete(Kind::Tunnel, &id.to_string(), expected)
        .await?;
    // Waiting for the catalog means the tunnel listener has seen the deletion and is closing the
    // tunnel's connections by the time the client hears back.
    state.catalog.refresh_to(deleted.revision).await;
    tracing::info!(tunnel_id = %id, "tunnel deleted");
    Ok(with_revision(
        StatusCode::NO_CONTENT.into_response(),
        deleted.revision,
    ))
}

async fn token(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let record = find(&state, &id).await?;
    let id = parse_id(&record.id)?;
    let secret = state
        .store
        .secret(Kind::Tunnel, &record.id)
        .await?
        .ok_or_else(ApiError::internal)?;
    let body = TunnelTokenBody {
        token: token_for(&state, id, secret),
    };
    Ok(reply(StatusCode::OK, &body, None))
}

async fn connections(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let record = find(&state, &id).await?;
    let id = parse_id(&record.id)?;
    // Every node's: a connector may be connected to any of them.
    let mut items = state.registry.connections(id);
    for item in &mut items {
        state.cluster.peer_address().clone_into(&mut item.edge);
    }
    items.extend(
        state
            .cluster
            .remote_records()
            .into_iter()
            .filter(|r| r.tunnel_id == id)
            .map(|r| r.connection),
    );
    Ok(reply(StatusCode::OK, &List { items }, None))
}

/// A single-use, short-lived token for one connector of the tunnel; only a hash is stored.
async fn enrollment_token(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let record = find(&state, &id).await?;
    let id = parse_id(&record.id)?;
    let spec: EnrollmentTokenSpec = validate(&body)?;
    let ttl = spec
        .ttl_seconds
        .unwrap_or(EnrollmentTokenSpec::DEFAULT_TTL_SECONDS);
    let (secret, expires_unix) = crate::enrollment::mint(
        state.store.as_ref(),
        id,
        Duration::from_secs(u64::from(ttl)),
    )
    .await?;
    let expires_at = time::OffsetDateTime::from_unix_timestamp(expires_unix as i64)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .ok_or_else(ApiError::internal)?;
    tracing::info!(tunnel_id = %id, ttl, "single-use enrolment token minted");
    let body = EnrollmentToken {
        token: token_for(&state, id, secret),
        expires_at,
    };
    Ok(reply(StatusCode::CREATED, &body, None))
}

// === helpers ===

fn write(id: TunnelId, spec: &TunnelSpec) -> Write {
    Write {
        kind: Kind::Tunnel,
        id: id.to_string(),
        name: spec.name.clone(),
        body: serde_json::to_value(spec).unwrap_or_default(),
        refs: Vec::new(),
    }
}

fn parse_id(id: &str) -> Result<TunnelId, ApiError> {
    id.parse()
        .map_err(|_| ApiError::not_found(format!("tunnel {id} does not exist")))
}

async fn find(state: &ApiState, id: &str) -> Result<Record, ApiError> {
    let id = parse_id(id)?;
    state
        .store
        .get(Kind::Tunnel, &id.to_string())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("tunnel {id} does not exist")))
}

fn to_api(state: &ApiState, record: &Record) -> Result<Tunnel, ApiError> {
    let mut tunnel = tunnel_from_record(record)?;
    // Every node's connections: a connector may be connected to any of them.
    tunnel.connections =
        state.registry.count(tunnel.id) + state.cluster.remote_connections(tunnel.id);
    Ok(tunnel)
}

fn token_for(state: &ApiState, id: TunnelId, secret: String) -> String {
    TunnelToken {
        edge_addresses: state.cluster.tunnel_addresses(),
        tunnel_id: id,
        secret: Secret::new(secret),
        ca_sha256: state.ca.fingerprint(),
    }
    .encode()
}
