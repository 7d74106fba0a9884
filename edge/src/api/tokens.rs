//! `/v1/tokens`: control API tokens (admin tokens only): create (the secret is answered once),
//! list and read without secrets, revoke.

use axum::Router;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use postern_schema::api::{ApiToken, ApiTokenSpec, List, Role};
use postern_schema::rules::parse_timestamp;
use postern_schema::validate::validate;

use super::error::ApiError;
use super::reply::reply;
use super::request::{JsonBody, Path};
use super::state::ApiState;
use crate::auth::Principal;
use crate::store::ApiTokenRecord;

pub(super) fn router() -> Router<ApiState> {
    Router::new()
        .route("/v1/tokens", get(list).post(create))
        .route("/v1/tokens/{id}", get(read).delete(revoke))
}

async fn list(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let items = state
        .auth
        .list()
        .await?
        .iter()
        .map(to_api)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(reply(StatusCode::OK, &List { items }, None))
}

async fn create(
    State(state): State<ApiState>,
    Extension(by): Extension<Principal>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let spec: ApiTokenSpec = validate(&body)?;
    let expires = match spec.expires_at.as_deref() {
        None => None,
        Some(text) => {
            let at = parse_timestamp(text).map_err(|m| ApiError::invalid("/expires_at", m))?;
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            if at <= now {
                return Err(ApiError::invalid(
                    "/expires_at",
                    format!("expires_at {text} is not in the future"),
                ));
            }
            Some(at)
        }
    };
    let (record, secret) = state.auth.create(&spec.name, spec.role, expires).await?;
    tracing::info!(token_id = %record.id, name = %record.name, role = %spec.role, created_by = %by.token_id, "API token created");
    let mut token = to_api(&record)?;
    token.secret = Some(secret);
    Ok(reply(StatusCode::CREATED, &token, None))
}

async fn read(State(state): State<ApiState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let record = state
        .auth
        .list()
        .await?
        .into_iter()
        .find(|token| token.id == id)
        .ok_or_else(|| not_found(&id))?;
    Ok(reply(StatusCode::OK, &to_api(&record)?, None))
}

async fn revoke(
    State(state): State<ApiState>,
    Extension(by): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if !state.auth.revoke(&id).await? {
        return Err(not_found(&id));
    }
    tracing::info!(token_id = %id, revoked_by = %by.token_id, "API token revoked");
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("API token {id} does not exist"))
}

/// A stored token as the API shows it (without a secret: the store has none).
fn to_api(record: &ApiTokenRecord) -> Result<ApiToken, ApiError> {
    let role = Role::parse(&record.role).ok_or_else(|| {
        tracing::error!(token_id = %record.id, role = %record.role, "an API token in the store has an unknown role");
        ApiError::internal()
    })?;
    Ok(ApiToken {
        id: record.id.clone(),
        name: record.name.clone(),
        role,
        expires_at: record.expires_at.clone(),
        created_at: record.created_at.clone(),
        secret: None,
    })
}
