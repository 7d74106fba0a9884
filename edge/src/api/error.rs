//! `ApiError`: every failure of the control API, mapped to its status and the contract's JSON
//! error body in one place. Client faults (4xx) are not logged; faults of the edge (5xx) are.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use postern_schema::ContractError;
use postern_schema::api::{ApiErrorBody, ErrorCode};

use crate::store::{Kind, StoreError};
use postern_schema::error_chain;

/// A failed API request.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    body: ApiErrorBody,
    /// With 429: when the client may try again.
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ApiErrorBody {
                error: postern_schema::api::ApiError {
                    code,
                    message: message.into(),
                    path: None,
                    hostnames: None,
                },
            },
            retry_after: None,
        }
    }

    /// 400: the body breaks the contract at `pointer`.
    pub(crate) fn invalid(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        let mut error = Self::new(StatusCode::BAD_REQUEST, ErrorCode::Invalid, message);
        error.body.error.path = Some(pointer.into());
        error
    }

    /// 409: the write conflicts with another object at `pointer`.
    pub(crate) fn conflict(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        let mut error = Self::new(StatusCode::CONFLICT, ErrorCode::Conflict, message);
        error.body.error.path = Some(pointer.into());
        error
    }

    /// 401.
    pub(crate) fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message)
    }

    /// 403: the token's role may not do this.
    pub(crate) fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, message)
    }

    /// 429 with `Retry-After`: too many failed authentications from the client's address.
    pub(crate) fn too_many_failures(retry_after: std::time::Duration) -> Self {
        let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
        let mut error = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::TooManyRequests,
            format!("too many failed authentications from this address; try again in {seconds} s"),
        );
        error.retry_after = Some(seconds);
        error
    }

    /// 404.
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
    }

    /// 405.
    pub(crate) fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::MethodNotAllowed,
            "this method is not allowed on this path; see schema/openapi.json",
        )
    }

    /// 412.
    pub(crate) fn precondition_failed(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PRECONDITION_FAILED,
            ErrorCode::PreconditionFailed,
            message,
        )
    }

    /// 413.
    pub(crate) fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            format!("the body is larger than {limit} bytes"),
        )
    }

    /// 415.
    pub(crate) fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            "send the body as JSON with Content-Type: application/json",
        )
    }

    /// 500: the details are logged, not returned.
    pub(crate) fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "the edge failed to handle the request; nothing was changed (see the edge's log)",
        )
    }
}

impl From<ContractError> for ApiError {
    fn from(error: ContractError) -> Self {
        let first = error.first();
        Self::invalid(first.pointer.clone(), first.message.clone())
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match &error {
            StoreError::NotFound { .. } => Self::not_found(error.to_string()),
            StoreError::NameTaken { kind, .. } => {
                let mut e = Self::new(StatusCode::CONFLICT, ErrorCode::Conflict, error.to_string());
                // A hostname's name is its `hostname` field; the others have a `name`.
                let field = match kind {
                    Kind::Hostname => "/hostname",
                    Kind::Tunnel | Kind::Policy | Kind::TcpService => "/name",
                };
                e.body.error.path = Some(field.into());
                e
            }
            StoreError::MissingRef { reference } => {
                Self::invalid(reference.pointer.clone(), error.to_string())
            }
            StoreError::InUse { referrers, .. } => {
                let mut e = Self::new(
                    StatusCode::CONFLICT,
                    ErrorCode::InUse,
                    format!("{error}; change or delete those hostnames first"),
                );
                e.body.error.hostnames = Some(referrers.clone());
                e
            }
            StoreError::VersionMismatch { .. } => Self::precondition_failed(format!(
                "{error}: it changed since you read it; read it again and retry"
            )),
            StoreError::Unavailable(_) => {
                tracing::error!(error = %error_chain(&error), "store unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::Unavailable,
                    "the store is unavailable; nothing was changed, retry later",
                )
            }
            StoreError::Corrupt(_) => {
                tracing::error!(error = %error_chain(&error), "store holds unreadable data");
                Self::internal()
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(seconds),
            );
        }
        response
    }
}
