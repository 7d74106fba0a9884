//! `/v1/certificates`: list, upload (or ask for a certificate by ACME), read, delete. A
//! private key goes in with an upload and never comes out: not in an answer, not in an error
//! message, not in a log line.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use postern_schema::api::{Certificate, CertificateSpec, List};
use postern_schema::rules::in_zone;
use postern_schema::validate::validate;

use super::error::ApiError;
use super::reply::reply;
use super::request::{JsonBody, Path};
use super::state::ApiState;
use crate::certs::{self, EDGE_CA_PREFIX};
use crate::store::{CertificateSource, ChallengeKind, StoredCertificate};

pub(super) fn router() -> Router<ApiState> {
    Router::new()
        .route("/v1/certificates", get(list).post(create))
        .route("/v1/certificates/{id}", get(read).delete(delete))
}

async fn list(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let stored = state.certificates.store().certificates().await?;
    let snapshot = state.catalog.snapshot();
    let items = certs::list(&state.certificates, &stored, snapshot.hostnames.keys());
    Ok(reply(StatusCode::OK, &List { items }, None))
}

async fn create(
    State(state): State<ApiState>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let spec: CertificateSpec = validate(&body)?;
    let now = certs::now();
    let certificate = match (&spec.names, &spec.certificate_pem, &spec.private_key_pem) {
        (Some(names), None, None) => acme_request(&state, names, now)?,
        (None, Some(chain), Some(key)) => upload(&state, chain, key.expose(), now)?,
        // The schema allows nothing else; say so rather than panic.
        _ => {
            return Err(ApiError::invalid(
                "",
                "set names, or certificate_pem and private_key_pem",
            ));
        }
    };
    let store = state.certificates.store();
    store.insert_certificate(&certificate).await?;
    state.certificates.reload().await?;
    tracing::info!(
        certificate = %certificate.id,
        source = certificate.source.as_str(),
        names = ?certificate.names,
        "certificate added"
    );
    let shown = certs::stored_view(&certificate, now);
    Ok(reply(StatusCode::CREATED, &shown, None))
}

/// An upload that passed every check, ready to store.
fn upload(
    state: &ApiState,
    chain: &str,
    key: &str,
    now: i64,
) -> Result<StoredCertificate, ApiError> {
    let checked = certs::check_upload(chain, key, now, state.certificates.provider())
        .map_err(|e| ApiError::invalid(e.pointer, e.message))?;
    let zones = &state.settings.zones;
    let in_zones = |name: &String| {
        let base = name.strip_prefix("*.").unwrap_or(name);
        zones.iter().any(|zone| in_zone(base, zone))
    };
    if !checked.facts.names.iter().any(in_zones) {
        return Err(ApiError::invalid(
            "/certificate_pem",
            format!(
                "none of the certificate's names ({}) lies inside a zone of this edge ({})",
                checked.facts.names.join(", "),
                zones.join(", ")
            ),
        ));
    }
    Ok(StoredCertificate {
        id: uuid::Uuid::new_v4().to_string(),
        source: CertificateSource::Uploaded,
        names: checked.facts.names,
        automatic: false,
        chain_pem: Some(checked.chain_pem),
        key_pem: Some(checked.key_pem.into()),
        not_before: Some(checked.facts.not_before),
        not_after: Some(checked.facts.not_after),
        last_error: None,
        failures: 0,
        next_attempt: None,
        created_at: certs::rfc3339(now),
    })
}

/// Names to obtain a certificate for by ACME, checked against what the edge can do.
fn acme_request(
    state: &ApiState,
    names: &[String],
    now: i64,
) -> Result<StoredCertificate, ApiError> {
    let Some(acme) = state.certificates.acme() else {
        return Err(ApiError::invalid(
            "/names",
            "this edge does not obtain certificates by ACME (start it with --acme-directory); \
             upload one with certificate_pem and private_key_pem instead",
        ));
    };
    let zones = &state.settings.zones;
    for (i, name) in names.iter().enumerate() {
        let base = name.strip_prefix("*.").unwrap_or(name);
        if !zones.iter().any(|zone| in_zone(base, zone)) {
            return Err(ApiError::invalid(
                format!("/names/{i}"),
                format!(
                    "{name} is not inside a zone of this edge ({})",
                    zones.join(", ")
                ),
            ));
        }
        if name.starts_with("*.") && !acme.challenges.contains(&ChallengeKind::Dns01) {
            return Err(ApiError::invalid(
                format!("/names/{i}"),
                format!(
                    "{name} is a wildcard, which only dns-01 can validate, and this edge's \
                     --acme-challenges leaves it out"
                ),
            ));
        }
    }
    Ok(StoredCertificate::acme_request(
        names.to_vec(),
        false,
        certs::rfc3339(now),
    ))
}

async fn read(State(state): State<ApiState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let certificate = find(&state, &id).await?;
    Ok(reply(StatusCode::OK, &certificate, None))
}

async fn delete(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if id.starts_with(EDGE_CA_PREFIX) || !state.certificates.store().delete_certificate(&id).await?
    {
        return Err(not_found(&id));
    }
    state.certificates.reload().await?;
    tracing::info!(certificate = %id, "certificate deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The certificate `id` names: a stored one, or a hostname's visitors' CA certificate.
async fn find(state: &ApiState, id: &str) -> Result<Certificate, ApiError> {
    if let Some(hostname) = id.strip_prefix(EDGE_CA_PREFIX) {
        let snapshot = state.catalog.snapshot();
        let name = snapshot.hostnames.get_key_value(hostname).map(|(k, _)| k);
        return certs::list(&state.certificates, &[], name)
            .into_iter()
            .next()
            .ok_or_else(|| not_found(id));
    }
    let stored = state.certificates.store().certificates().await?;
    stored
        .iter()
        .find(|c| c.id == id)
        .map(|c| certs::stored_view(c, certs::now()))
        .ok_or_else(|| not_found(id))
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("certificate {id} does not exist"))
}
