//! Failed calls to the edge's control API as diagnostics: what went wrong, on which
//! attribute (the one the edge blamed), and what to do. The calls themselves go through
//! `postern_schema::client::Client`, which logs each one.

use postern_schema::api::ErrorCode;
use postern_schema::client::ClientError;
use postern_schema::error_chain;

use super::contract::locatable;
use crate::framework::{AttributePath, Diagnostic, Type};

/// What a failed call was doing, for the diagnostic: `"creating"`, `"tunnel"`,
/// `"web"` (a name or id), and the value type the edge's JSON pointers are mapped onto.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Operation<'a> {
    /// A verb in -ing form: `creating`, `reading`, `updating`, `deleting`, `importing`.
    pub(crate) action: &'a str,
    /// The kind of object: `tunnel`, `policy`, `hostname`, `edge`.
    pub(crate) kind: &'a str,
    /// The object's name or id, when known.
    pub(crate) object: Option<&'a str>,
    /// The Terraform value type of the resource, for attribute paths.
    pub(crate) value_type: &'a Type,
}

impl Operation<'_> {
    fn subject(&self) -> String {
        match self.object {
            Some(object) => format!("{} {object:?}", self.kind),
            None => self.kind.to_owned(),
        }
    }
}

/// Turns a failed call into a diagnostic that names the cause and the fix, attached to
/// the attribute the edge blamed (its `error.path`) when there is one.
pub(crate) fn diagnose(error: &ClientError, op: Operation<'_>) -> Diagnostic {
    let subject = op.subject();
    let action = op.action;
    match error {
        ClientError::InvalidEndpoint { endpoint } => Diagnostic::error(
            "Invalid Postern endpoint",
            format!(
                "{endpoint:?} is not an http:// or https:// URL. Set the provider's `endpoint` \
                 (or POSTERN_ENDPOINT) to the edge's control API address, e.g. \
                 \"http://127.0.0.1:7070\"."
            ),
        ),
        ClientError::InvalidCaCertificate { reason } => Diagnostic::error(
            "Invalid ca_cert_pem",
            format!(
                "The provider's `ca_cert_pem` (or POSTERN_CA_CERT) is not a PEM CA \
                 certificate: {reason}. Give the certificate of the CA that signed the edge \
                 API's certificate, such as the edge's <data-dir>/ca.pem with \
                 `--api-tls edge-ca`."
            ),
        )
        .at(AttributePath::root("ca_cert_pem")),
        ClientError::UntrustedCertificate { endpoint, detail } => Diagnostic::error(
            "The Postern edge's certificate is not trusted",
            format!(
                "While {action} {subject}, the TLS certificate of the edge at {endpoint} was \
                 not trusted: {detail}. Set the provider's `ca_cert_pem` (or POSTERN_CA_CERT) \
                 to the CA certificate that signed the edge API's certificate (with \
                 `--api-tls edge-ca`: the edge's <data-dir>/ca.pem), and check that \
                 `endpoint` names the host the certificate is for."
            ),
        ),
        ClientError::Unreachable { endpoint, source } => Diagnostic::error(
            "Cannot reach the Postern edge",
            format!(
                "While {action} {subject}, the provider could not reach the edge's control API \
                 at {endpoint} ({}). Check that postern-edge is running and listening there \
                 (its --api-listen address), that the provider's `endpoint` or \
                 POSTERN_ENDPOINT names it, and that no firewall or proxy is in the way.",
                error_chain(source)
            ),
        ),
        ClientError::Protocol { status, detail } => Diagnostic::error(
            "Unexpected answer from the Postern edge",
            format!(
                "While {action} {subject}, the edge answered HTTP {status} with something \
                 outside its API contract: {detail}. Check that the endpoint is a Postern \
                 edge of a version this provider supports."
            ),
        ),
        ClientError::Api { status, body } => {
            let message = &body.error.message;
            let diagnostic = match body.error.code {
                ErrorCode::Unauthorized => Diagnostic::error(
                    "The Postern edge rejected the API token",
                    format!(
                        "While {action} {subject}, the edge answered 401: {message}. Set the \
                         provider's `api_token` (or POSTERN_API_TOKEN) to a valid token, such \
                         as the one in the edge's <data-dir>/admin-token or one an admin made \
                         (postern_api_token, POST /v1/tokens); a revoked or expired token is \
                         refused."
                    ),
                ),
                ErrorCode::Forbidden => Diagnostic::error(
                    "The API token's role does not allow this",
                    format!(
                        "While {action} {subject}, the edge answered 403: {message}. Use a \
                         token whose role allows it: an editor token manages tunnels, \
                         hostnames and policies; only an admin token manages API tokens; a \
                         viewer token only reads."
                    ),
                ),
                ErrorCode::TooManyRequests => Diagnostic::error(
                    "Too many failed authentications",
                    format!(
                        "While {action} {subject}, the edge answered 429: {message}. This \
                         address presented wrong or expired API tokens too often; fix \
                         `api_token` and try again after a minute."
                    ),
                ),
                ErrorCode::Invalid => Diagnostic::error(
                    format!("The edge rejected the {}", op.kind),
                    format!(
                        "While {action} {subject}, the edge refused the request: {message}. \
                         Fix the value and apply again; nothing was changed."
                    ),
                ),
                ErrorCode::NotFound => Diagnostic::error(
                    format!("The {} no longer exists", op.kind),
                    format!(
                        "While {action} {subject}, the edge answered 404: {message}. It was \
                         deleted outside Terraform. Run `terraform plan` again: Terraform will \
                         plan to create it."
                    ),
                ),
                ErrorCode::PreconditionFailed => Diagnostic::error(
                    format!("The {} was changed outside Terraform", op.kind),
                    format!(
                        "While {action} {subject}, the edge refused the change because someone \
                         else changed the object since Terraform last read it ({message}). \
                         Nothing was changed. Run `terraform refresh` (or `terraform plan` \
                         again) to see the current object, then re-plan and apply."
                    ),
                ),
                ErrorCode::InUse => {
                    let users = body
                        .error
                        .hostnames
                        .as_deref()
                        .unwrap_or_default()
                        .join(", ");
                    Diagnostic::error(
                        format!("The {} is still in use", op.kind),
                        format!(
                            "While {action} {subject}, the edge refused: {message}. Hostnames \
                             using it: {users}. Remove it from those hostnames (or delete \
                             them) first."
                        ),
                    )
                }
                ErrorCode::Conflict => Diagnostic::error(
                    format!(
                        "Conflict on the Postern edge while {action} the {}",
                        op.kind
                    ),
                    format!(
                        "While {action} {subject}, the edge answered 409: {message}. Another \
                         object already uses this name: choose a different one, or bring that \
                         object under Terraform with `terraform import` or an `import` block."
                    ),
                ),
                ErrorCode::Unavailable => Diagnostic::error(
                    "The Postern edge is unavailable",
                    format!(
                        "While {action} {subject}, the edge answered 503: {message}. Its store \
                         cannot be reached; nothing was changed. Try again once the edge is \
                         healthy."
                    ),
                ),
                _ => Diagnostic::error(
                    "The Postern edge reported an error",
                    format!(
                        "While {action} {subject}, the edge answered HTTP {status} ({}): \
                         {message}.",
                        body.error.code
                    ),
                ),
            };
            match body.error.path.as_deref() {
                Some(pointer) => {
                    let path = AttributePath::from_json_pointer(pointer, op.value_type);
                    if path.is_empty() {
                        diagnostic
                    } else {
                        let mut diagnostic = diagnostic.at(locatable(&path));
                        diagnostic.detail = format!("{} (attribute {path})", diagnostic.detail);
                        diagnostic
                    }
                }
                None => diagnostic,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use postern_schema::api::{ApiError, ApiErrorBody};

    use super::*;

    fn api_error(status: u16, code: ErrorCode, path: Option<&str>) -> ClientError {
        ClientError::Api {
            status,
            body: ApiErrorBody {
                error: ApiError {
                    code,
                    message: "nope".into(),
                    path: path.map(str::to_owned),
                    hostnames: Some(vec!["a.example.com".into()]),
                },
            },
        }
    }

    fn op(ty: &Type) -> Operation<'_> {
        Operation {
            action: "updating",
            kind: "tunnel",
            object: Some("web"),
            value_type: ty,
        }
    }

    #[test]
    fn edge_errors_land_on_the_attribute_the_edge_blamed() {
        let ty = Type::object([("labels", Type::map(Type::String)), ("name", Type::String)]);
        let d = diagnose(
            &api_error(400, ErrorCode::Invalid, Some("/labels/Bad")),
            op(&ty),
        );
        assert_eq!(
            d.path.map(|p| p.to_string()),
            Some(r#"labels["Bad"]"#.to_owned())
        );
        let d = diagnose(
            &api_error(412, ErrorCode::PreconditionFailed, None),
            op(&ty),
        );
        assert!(d.detail.contains("terraform refresh"), "{d}");
        assert!(d.detail.contains("re-plan"), "{d}");
        let d = diagnose(&api_error(409, ErrorCode::InUse, None), op(&ty));
        assert!(d.detail.contains("a.example.com"), "{d}");
        let d = diagnose(&api_error(401, ErrorCode::Unauthorized, None), op(&ty));
        assert!(d.detail.contains("POSTERN_API_TOKEN"), "{d}");
    }
}
