//! How the API answers: JSON with an `ETag` for versioned objects, and the store revision a
//! write produced.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

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
