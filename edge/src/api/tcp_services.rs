//! `/v1/tcp-services`: create, list, read, replace, delete. The edge gives each service its
//! public port (the one asked for, or the lowest free one of `--tcp-ports`) and answers where
//! it listens.

use std::collections::BTreeSet;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use postern_schema::api::{List, PolicySpec, TcpService, TcpServiceSpec};
use postern_schema::ids::{PolicyId, TcpServiceId};
use postern_schema::validate::validate;

use super::error::ApiError;
use super::reply::{reply, with_revision};
use super::request::JsonBody;
use super::request::{Path, if_match};
use super::state::ApiState;
use crate::catalog::tcp_service_from_record;
use crate::store::{Kind, Record, Ref, Write};
use crate::tcp_ports::PortError;

pub(super) fn router() -> Router<ApiState> {
    Router::new()
        .route("/v1/tcp-services", get(list).post(create))
        .route(
            "/v1/tcp-services/{id}",
            get(read).put(replace).delete(delete),
        )
}

async fn list(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let items = state
        .store
        .list(Kind::TcpService)
        .await?
        .iter()
        .map(|record| answer(&state, record))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(reply(StatusCode::OK, &List { items }, None))
}

async fn create(
    State(state): State<ApiState>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let mut spec = checked_spec(&state, &body).await?;
    let id = TcpServiceId::new_random();
    let taken = taken_ports(&state, None).await?;
    let port = state
        .tcp_ports
        .choose(spec.listen_port, &taken)
        .map_err(port_refusal)?;
    spec.listen_port = Some(port);
    let record = match state.store.create(write(id, &spec), None).await {
        Ok(record) => record,
        Err(error) => {
            state.tcp_ports.release(port);
            return Err(error.into());
        }
    };
    state.catalog.refresh_to(record.revision).await;
    tracing::info!(service = %spec.name, port, "TCP service created");
    let service = answer(&state, &record)?;
    Ok(with_revision(
        reply(StatusCode::CREATED, &service, Some(service.version)),
        record.revision,
    ))
}

async fn read(State(state): State<ApiState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let record = find(&state, &id).await?;
    let service = answer(&state, &record)?;
    Ok(reply(StatusCode::OK, &service, Some(service.version)))
}

/// A PUT without `listen_port` keeps the port the service has.
async fn replace(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let expected = if_match(&headers)?;
    let current = find(&state, &id).await?;
    let id = parse_id(&id)?;
    let mut spec = checked_spec(&state, &body).await?;
    let held = tcp_service_from_record(&current, "")?.spec.listen_port;
    let port = match (spec.listen_port, held) {
        (None, Some(held)) => held,
        (Some(wanted), Some(held)) if wanted == held => held,
        (wanted, _) => {
            let taken = taken_ports(&state, Some(&current.id)).await?;
            state
                .tcp_ports
                .choose(wanted, &taken)
                .map_err(port_refusal)?
        }
    };
    spec.listen_port = Some(port);
    let record = match state
        .store
        .replace(&id.to_string(), write(id, &spec), expected)
        .await
    {
        Ok(record) => record,
        Err(error) => {
            if Some(port) != held {
                state.tcp_ports.release(port);
            }
            return Err(error.into());
        }
    };
    state.catalog.refresh_to(record.revision).await;
    let service = answer(&state, &record)?;
    Ok(with_revision(
        reply(StatusCode::OK, &service, Some(service.version)),
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
        .delete(Kind::TcpService, &id.to_string(), expected)
        .await?;
    state.catalog.refresh_to(deleted.revision).await;
    tracing::info!(tcp_service_id = %id, "TCP service deleted");
    Ok(with_revision(
        StatusCode::NO_CONTENT.into_response(),
        deleted.revision,
    ))
}

/// The contract, then what only the edge knows: each policy must use only what applies to
/// a TCP connection (IP lists, rate limit).
async fn checked_spec(
    state: &ApiState,
    body: &serde_json::Value,
) -> Result<TcpServiceSpec, ApiError> {
    let spec: TcpServiceSpec = validate(body)?;
    connection_policies(state, &spec.policy_ids, "a TCP service").await?;
    Ok(spec)
}

/// Each of `policy_ids` must use only what applies to a connection (IP lists, rate limit):
/// the policies of a TCP service, or of a TLS passthrough hostname (`what` names which).
pub(super) async fn connection_policies(
    state: &ApiState,
    policy_ids: &[PolicyId],
    what: &str,
) -> Result<(), ApiError> {
    for (i, id) in policy_ids.iter().enumerate() {
        let Some(record) = state.store.get(Kind::Policy, &id.to_string()).await? else {
            // The store answers a missing reference with 400 at this pointer.
            continue;
        };
        let policy: PolicySpec = serde_json::from_value(record.body)
            .map_err(|e| crate::store::StoreError::Corrupt(format!("policy {id}: {e}")))?;
        let http_only = [
            ("allow_methods", !policy.allow_methods.is_empty()),
            ("allow_paths", !policy.allow_paths.is_empty()),
            ("jwt", policy.jwt.is_some()),
        ];
        if let Some((field, _)) = http_only.iter().find(|(_, set)| *set) {
            return Err(ApiError::invalid(
                format!("/policy_ids/{i}"),
                format!(
                    "policy {} sets {field}, which does not apply to TCP: {what} takes \
                     policies with allow_ips, deny_ips and rate_limit only",
                    policy.name
                ),
            ));
        }
    }
    Ok(())
}

/// The ports of every TCP service but `except`.
async fn taken_ports(state: &ApiState, except: Option<&str>) -> Result<BTreeSet<u16>, ApiError> {
    let mut taken = BTreeSet::new();
    for record in state.store.list(Kind::TcpService).await? {
        if Some(record.id.as_str()) == except {
            continue;
        }
        if let Some(port) = tcp_service_from_record(&record, "")?.spec.listen_port {
            taken.insert(port);
        }
    }
    Ok(taken)
}

/// A port the service cannot have: 400 for one outside the range (or no range), 409 for one
/// in use.
fn port_refusal(error: PortError) -> ApiError {
    let message = postern_schema::error_chain(&error);
    match error {
        PortError::Off | PortError::OutOfRange { .. } => ApiError::invalid("/listen_port", message),
        PortError::Taken { .. } | PortError::Exhausted { .. } | PortError::Bind { .. } => {
            ApiError::conflict("/listen_port", message)
        }
    }
}

/// A stored service as the API answers it, with the address it listens on.
fn answer(state: &ApiState, record: &Record) -> Result<TcpService, ApiError> {
    let mut service = tcp_service_from_record(record, "")?;
    service.listen = service
        .spec
        .listen_port
        .map(|port| state.tcp_ports.listen(port))
        .unwrap_or_default();
    Ok(service)
}

fn write(id: TcpServiceId, spec: &TcpServiceSpec) -> Write {
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
    Write {
        kind: Kind::TcpService,
        id: id.to_string(),
        name: spec.name.clone(),
        body: serde_json::to_value(spec).unwrap_or_default(),
        refs,
    }
}

fn parse_id(id: &str) -> Result<TcpServiceId, ApiError> {
    id.parse()
        .map_err(|_| ApiError::not_found(format!("TCP service {id} does not exist")))
}

async fn find(state: &ApiState, id: &str) -> Result<Record, ApiError> {
    let id = parse_id(id)?;
    state
        .store
        .get(Kind::TcpService, &id.to_string())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("TCP service {id} does not exist")))
}
