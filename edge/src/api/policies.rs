//! `/v1/policies`: create, list, read, replace, delete.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use postern_schema::api::{List, Policy, PolicySpec};
use postern_schema::ids::PolicyId;
use postern_schema::validate::validate;

use super::error::ApiError;
use super::reply::reply;
use super::reply::with_revision;
use super::request::JsonBody;
use super::request::{Path, if_match};
use super::state::ApiState;
use crate::catalog::{hostname_from_record, policy_from_record, tcp_service_from_record};
use crate::store::{Kind, Record, Write};

pub(super) fn router() -> Router<ApiState> {
    Router::new()
        .route("/v1/policies", get(list).post(create))
        .route("/v1/policies/{id}", get(read).put(replace).delete(delete))
}

async fn list(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let items = state
        .store
        .list(Kind::Policy)
        .await?
        .iter()
        .map(answer)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(reply(StatusCode::OK, &List { items }, None))
}

async fn create(
    State(state): State<ApiState>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let spec = checked_spec(&body)?;
    let id = PolicyId::new_random();
    let record = state.store.create(write(id, &spec), None).await?;
    state.catalog.refresh_to(record.revision).await;
    let policy = answer(&record)?;
    Ok(with_revision(
        reply(StatusCode::CREATED, &policy, Some(policy.version)),
        record.revision,
    ))
}

async fn read(State(state): State<ApiState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let record = find(&state, &id).await?;
    let policy = answer(&record)?;
    Ok(reply(StatusCode::OK, &policy, Some(policy.version)))
}

async fn replace(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let expected = if_match(&headers)?;
    let id = parse_id(&id)?;
    let spec = checked_spec(&body)?;
    connections_only_where_used(&state, id, &spec).await?;
    let record = state
        .store
        .replace(&id.to_string(), write(id, &spec), expected)
        .await?;
    state.catalog.refresh_to(record.revision).await;
    let policy = answer(&record)?;
    Ok(with_revision(
        reply(StatusCode::OK, &policy, Some(policy.version)),
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
        .delete(Kind::Policy, &id.to_string(), expected)
        .await?;
    state.catalog.refresh_to(deleted.revision).await;
    Ok(with_revision(
        StatusCode::NO_CONTENT.into_response(),
        deleted.revision,
    ))
}

/// The contract, then what only the edge checks: JWT public keys and password hashes must
/// parse.
fn checked_spec(body: &serde_json::Value) -> Result<PolicySpec, ApiError> {
    let spec: PolicySpec = validate(body)?;
    if let Some(keys) = spec.jwt.as_ref().and_then(|j| j.public_keys_pem.as_ref()) {
        for (i, pem) in keys.iter().enumerate() {
            let bytes = pem.as_bytes();
            let parses = jsonwebtoken::DecodingKey::from_rsa_pem(bytes).is_ok()
                || jsonwebtoken::DecodingKey::from_ec_pem(bytes).is_ok();
            if !parses {
                return Err(ApiError::invalid(
                    format!("/jwt/public_keys_pem/{i}"),
                    "not an RSA or EC (P-256) public key in PEM form",
                ));
            }
        }
    }
    if let Some(basic) = &spec.basic_auth {
        for (user, hash) in &basic.users {
            if let Err(why) = crate::policy::check_password_hash(hash) {
                let token = user.replace('~', "~0").replace('/', "~1");
                return Err(ApiError::invalid(format!("/basic_auth/users/{token}"), why));
            }
        }
    }
    Ok(spec.normalized())
}

/// A policy on a TCP service or a TLS passthrough hostname may not gain what applies to
/// HTTP requests only (methods, paths, a JWT): 400 at that field, naming who uses it.
async fn connections_only_where_used(
    state: &ApiState,
    id: PolicyId,
    spec: &PolicySpec,
) -> Result<(), ApiError> {
    let http_only = [
        ("/allow_methods", !spec.allow_methods.is_empty()),
        ("/allow_paths", !spec.allow_paths.is_empty()),
        ("/jwt", spec.jwt.is_some()),
    ];
    let Some((field, _)) = http_only.iter().find(|(_, set)| *set) else {
        return Ok(());
    };
    let mut users = Vec::new();
    for record in state.store.list(Kind::TcpService).await? {
        let service = tcp_service_from_record(&record, "")?;
        if service.spec.policy_ids.contains(&id) {
            users.push(format!("TCP service {}", service.spec.name));
        }
    }
    for record in state.store.list(Kind::Hostname).await? {
        let hostname = hostname_from_record(&record, &[])?;
        if hostname.spec.passes_tls_through() && hostname.spec.policy_ids.contains(&id) {
            users.push(format!(
                "TLS passthrough hostname {}",
                hostname.spec.hostname
            ));
        }
    }
    if users.is_empty() {
        return Ok(());
    }
    Err(ApiError::invalid(
        *field,
        format!(
            "{} does not apply to a connection, and this policy is used by {}: \
             take the policy off first",
            field.trim_start_matches('/'),
            users.join(", ")
        ),
    ))
}

/// A stored policy as the API answers it: without `jwt.hs256_secret` and
/// `oidc.client_secret`, which are write-only (the edge keeps them to verify tokens and to
/// redeem login codes; no answer carries them).
fn answer(record: &Record) -> Result<Policy, ApiError> {
    let mut policy = policy_from_record(record)?;
    if let Some(jwt) = policy.spec.jwt.as_mut() {
        jwt.hs256_secret = None;
    }
    if let Some(oidc) = policy.spec.oidc.as_mut() {
        oidc.client_secret = None;
    }
    Ok(policy)
}

fn write(id: PolicyId, spec: &PolicySpec) -> Write {
    Write {
        kind: Kind::Policy,
        id: id.to_string(),
        name: spec.name.clone(),
        body: serde_json::to_value(spec).unwrap_or_default(),
        refs: Vec::new(),
    }
}

fn parse_id(id: &str) -> Result<PolicyId, ApiError> {
    id.parse()
        .map_err(|_| ApiError::not_found(format!("policy {id} does not exist")))
}

async fn find(state: &ApiState, id: &str) -> Result<Record, ApiError> {
    let id = parse_id(id)?;
    state
        .store
        .get(Kind::Policy, &id.to_string())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("policy {id} does not exist")))
}
