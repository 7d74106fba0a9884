//! `error.schema.json`: the one JSON error shape of the control API.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The body of every 4xx and 5xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiErrorBody {
    /// What went wrong.
    pub error: ApiError,
}

/// What went wrong, and where in the request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// A stable, machine-readable code.
    pub code: ErrorCode,
    /// A sentence for humans.
    pub message: String,
    /// A JSON pointer to the offending field of the request body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// With `in_use`: the hostnames that still reference the object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostnames: Option<Vec<String>>,
}

/// The error codes of `error.schema.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the body breaks the contract.
    Invalid,
    /// 401: missing, wrong or expired token.
    Unauthorized,
    /// 403: the token's role may not do this.
    Forbidden,
    /// 404: no such object.
    NotFound,
    /// 409: a name is taken or a reference dangles.
    Conflict,
    /// 409: still referenced by hostnames.
    InUse,
    /// 412: `If-Match` is stale.
    PreconditionFailed,
    /// 413: body too large.
    PayloadTooLarge,
    /// 415: not JSON.
    UnsupportedMediaType,
    /// 405.
    MethodNotAllowed,
    /// 429: too many failed authentications from the client's address.
    TooManyRequests,
    /// 503: the store cannot be reached.
    Unavailable,
    /// 500.
    Internal,
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        f.write_str(&text)
    }
}
