//! `/v1/hostnames`: create, list, read, replace, delete. A hostname's id is the hostname.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use postern_schema::api::{HostnameSpec, List};
use postern_schema::rules::in_zone;
use postern_schema::validate::validate;

use super::error::ApiError;
use super::reply::reply;
use super::reply::with_revision;
use super::request::JsonBody;
use super::request::{Path, if_match};
use super::state::ApiState;
use super::tcp_services::connection_policies;
use crate::catalog::hostname_from_record;
use crate::certs::for_hostname;
use crate::store::{Kind, Record, Ref, Write};

pub(super) fn router() -> Router<ApiState> {
    Router::new()
        .route("/v1/hostnames", get(list).post(create))
        .route(
            "/v1/hostnames/{hostname}",
            get(read).put(replace).delete(delete),
        )
}

async fn list(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let addresses = state.catalog.public_addresses();
    let items = state
        .store
        .list(Kind::Hostname)
        .await?
        .iter()
        .map(|r| {
            hostname_from_record(r, &addresses).map(|mut hostname| {
                hostname.certificate =
                    Some(for_hostname(&state.certificates, &hostname.spec.hostname));
                hostname
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(reply(StatusCode::OK, &List { items }, None))
}

async fn create(
    State(state): State<ApiState>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let spec = checked_spec(&state, &body).await?;
    let record = state.store.create(write(&spec), None).await?;
    state.catalog.refresh_to(record.revision).await;
    tracing::info!(hostname = %spec.hostname, "hostname created");
    let mut hostname = hostname_from_record(&record, &state.catalog.public_addresses())?;
    hostname.certificate = Some(for_hostname(&state.certificates, &spec.hostname));
    Ok(with_revision(
        reply(StatusCode::CREATED, &hostname, Some(hostname.version)),
        record.revision,
    ))
}

async fn read(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let record = find(&state, &name).await?;
    let mut hostname = hostname_from_record(&record, &state.catalog.public_addresses())?;
    hostname.certificate = Some(for_hostname(&state.certificates, &name));
    Ok(reply(StatusCode::OK, &hostname, Some(hostname.version)))
}

async fn replace(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let expected = if_match(&headers)?;
    let spec = checked_spec(&state, &body).await?;
    if spec.hostname != name {
        return Err(ApiError::invalid(
            "/hostname",
            "a hostname cannot be renamed: delete it and create the new one",
        ));
    }
    let record = state.store.replace(&name, write(&spec), expected).await?;
    state.catalog.refresh_to(record.revision).await;
    let mut hostname = hostname_from_record(&record, &state.catalog.public_addresses())?;
    hostname.certificate = Some(for_hostname(&state.certificates, &name));
    Ok(with_revision(
        reply(StatusCode::OK, &hostname, Some(hostname.version)),
        record.revision,
    ))
}

async fn delete(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let expected = if_match(&headers)?;
    let deleted = state.store.delete(Kind::Hostname, &name, expected).await?;
    state.catalog.refresh_to(deleted.revision).await;
    tracing::info!(hostname = %name, "hostname deleted");
    Ok(with_revision(
        StatusCode::NO_CONTENT.into_response(),
        deleted.revision,
    ))
}

/// The contract, then what only the edge knows: the hostname must lie in one of its zones,
/// and a TLS passthrough hostname's policies must apply to connections.
async fn checked_spec(
    state: &ApiState,
    body: &serde_json::Value,
) -> Result<HostnameSpec, ApiError> {
    let spec: HostnameSpec = validate(body)?;
    if spec.passes_tls_through() {
        connection_policies(state, &spec.policy_ids, "a TLS passthrough hostname").await?;
    }
    let zones = &state.settings.zones;
    if !zones.iter().any(|zone| in_zone(&spec.hostname, zone)) {
        return Err(ApiError::invalid(
            "/hostname",
            format!(
                "{} is not inside a zone of this edge ({})",
                spec.hostname,
                zones.join(", ")
            ),
        ));
    }
    Ok(spec)
}

fn write(spec: &HostnameSpec) -> Write {
    let mut refs = Vec::new();
    if let Some(tunnel) = spec.tunnel_id {
        refs.push(Ref {
            kind: Kind::Tunnel,
            id: tunnel.to_string(),
            pointer: "/tunnel_id".into(),
        });
    }
    for (i, policy) in spec.policy_ids.iter().enumerate() {
        refs.push(Ref {
            kind: Kind::Policy,
            id: policy.to_string(),
            pointer: format!("/policy_ids/{i}"),
        });
    }
    for (i, path) in spec.paths.iter().enumerate() {
        for (j, policy) in path.policy_ids.iter().flatten().enumerate() {
            refs.push(Ref {
                kind: Kind::Policy,
                id: policy.to_string(),
                pointer: format!("/paths/{i}/policy_ids/{j}"),
            });
        }
    }
    Write {
        kind: Kind::Hostname,
        id: spec.hostname.clone(),
        name: spec.hostname.clone(),
        body: serde_json::to_value(spec).unwrap_or_default(),
        refs,
    }
}

async fn find(state: &ApiState, name: &str) -> Result<Record, ApiError> {
    state
        .store
        .get(Kind::Hostname, name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("hostname {name} does not exist")))
}
