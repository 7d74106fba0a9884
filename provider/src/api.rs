//! The edge's control API as resources and data sources see it: the typed client from
//! `postern-schema` with one debug line per call (method, path, status; never a token or
//! a secret), and the translation of its errors into diagnostics that say what went
//! wrong, on which attribute, and what to do.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Instant;

use postern_schema::api::{
    Connection, EdgeInfo, EnrollmentToken, EnrollmentTokenSpec, ErrorCode, Hostname, HostnameSpec,
    Policy, PolicySpec, Rollout, RolloutScope, Tunnel, TunnelSpec,
};
use postern_schema::client::{Client, ClientError};
use postern_schema::error_chain;
use postern_schema::ids::{PolicyId, TunnelId};
use postern_schema::secret::Secret;

use crate::contract::locatable;
use crate::framework::{AttributePath, Diagnostic, Type};

/// The control API of one edge.
#[derive(Clone, Debug)]
pub struct EdgeApi {
    client: Client,
}

impl EdgeApi {
    /// Wraps a typed client.
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// The endpoint the calls go to.
    pub fn endpoint(&self) -> &str {
        self.client.endpoint()
    }

    /// A handle (sharing connections) that remembers the store revision of the writes made
    /// through it, for [`crate::rollout::wait`].
    pub fn tracking(&self) -> Self {
        Self {
            client: self.client.tracking_revisions(),
        }
    }

    /// The highest store revision a write through this handle produced.
    pub fn revision(&self) -> Option<u64> {
        self.client.revision()
    }

    // === tunnels ===

    /// `GET /v1/tunnels[?selector=…]`.
    pub async fn list_tunnels(
        &self,
        selector: Option<&BTreeMap<String, String>>,
    ) -> Result<Vec<Tunnel>, ClientError> {
        let path = match selector.filter(|s| !s.is_empty()) {
            Some(s) => format!(
                "/v1/tunnels?selector={}",
                postern_schema::rules::format_selector(s)
            ),
            None => "/v1/tunnels".to_owned(),
        };
        logged("GET", &path, 200, self.client.list_tunnels(selector)).await
    }

    /// `POST /v1/tunnels`; the answer carries the token.
    pub async fn create_tunnel(&self, spec: &TunnelSpec) -> Result<Tunnel, ClientError> {
        logged("POST", "/v1/tunnels", 201, self.client.create_tunnel(spec)).await
    }

    /// `GET /v1/tunnels/{id}`.
    pub async fn tunnel(&self, id: TunnelId) -> Result<Tunnel, ClientError> {
        let path = format!("/v1/tunnels/{id}");
        logged("GET", &path, 200, self.client.tunnel(id)).await
    }

    /// `PUT /v1/tunnels/{id}` with `If-Match`.
    pub async fn replace_tunnel(
        &self,
        id: TunnelId,
        spec: &TunnelSpec,
        if_match: Option<u64>,
    ) -> Result<Tunnel, ClientError> {
        let path = format!("/v1/tunnels/{id}");
        let call = self.client.replace_tunnel(id, spec, if_match);
        logged("PUT", &path, 200, call).await
    }

    /// `DELETE /v1/tunnels/{id}` with `If-Match`.
    pub async fn delete_tunnel(
        &self,
        id: TunnelId,
        if_match: Option<u64>,
    ) -> Result<(), ClientError> {
        let path = format!("/v1/tunnels/{id}");
        logged(
            "DELETE",
            &path,
            204,
            self.client.delete_tunnel(id, if_match),
        )
        .await
    }

    /// `GET /v1/tunnels/{id}/token`.
    pub async fn tunnel_token(&self, id: TunnelId) -> Result<Secret, ClientError> {
        let path = format!("/v1/tunnels/{id}/token");
        logged("GET", &path, 200, self.client.tunnel_token(id)).await
    }

    /// `POST /v1/tunnels/{id}/enrollment-tokens`: a single-use, short-lived connector token.
    pub async fn create_enrollment_token(
        &self,
        id: TunnelId,
        spec: &EnrollmentTokenSpec,
    ) -> Result<EnrollmentToken, ClientError> {
        let path = format!("/v1/tunnels/{id}/enrollment-tokens");
        let call = self.client.create_enrollment_token(id, spec);
        logged("POST", &path, 201, call).await
    }

    /// `GET /v1/tunnels/{id}/connections`.
    pub async fn tunnel_connections(&self, id: TunnelId) -> Result<Vec<Connection>, ClientError> {
        let path = format!("/v1/tunnels/{id}/connections");
        logged("GET", &path, 200, self.client.tunnel_connections(id)).await
    }

    // === hostnames ===

    /// `GET /v1/hostnames`.
    pub async fn list_hostnames(&self) -> Result<Vec<Hostname>, ClientError> {
        logged("GET", "/v1/hostnames", 200, self.client.list_hostnames()).await
    }

    /// `POST /v1/hostnames`.
    pub async fn create_hostname(&self, spec: &HostnameSpec) -> Result<Hostname, ClientError> {
        logged(
            "POST",
            "/v1/hostnames",
            201,
            self.client.create_hostname(spec),
        )
        .await
    }

    /// `GET /v1/hostnames/{hostname}`.
    pub async fn hostname(&self, hostname: &str) -> Result<Hostname, ClientError> {
        let path = format!("/v1/hostnames/{hostname}");
        logged("GET", &path, 200, self.client.hostname(hostname)).await
    }

    /// `PUT /v1/hostnames/{hostname}` with `If-Match`.
    pub async fn replace_hostname(
        &self,
        spec: &HostnameSpec,
        if_match: Option<u64>,
    ) -> Result<Hostname, ClientError> {
        let path = format!("/v1/hostnames/{}", spec.hostname);
        let call = self.client.replace_hostname(spec, if_match);
        logged("PUT", &path, 200, call).await
    }

    /// `DELETE /v1/hostnames/{hostname}` with `If-Match`.
    pub async fn delete_hostname(
        &self,
        hostname: &str,
        if_match: Option<u64>,
    ) -> Result<(), ClientError> {
        let path = format!("/v1/hostnames/{hostname}");
        let call = self.client.delete_hostname(hostname, if_match);
        logged("DELETE", &path, 204, call).await
    }

    // === policies ===

    /// `GET /v1/policies`.
    pub async fn list_policies(&self) -> Result<Vec<Policy>, ClientError> {
        logged("GET", "/v1/policies", 200, self.client.list_policies()).await
    }

    /// `POST /v1/policies`.
    pub async fn create_policy(&self, spec: &PolicySpec) -> Result<Policy, ClientError> {
        logged("POST", "/v1/policies", 201, self.client.create_policy(spec)).await
    }

    /// `GET /v1/policies/{id}`.
    pub async fn policy(&self, id: PolicyId) -> Result<Policy, ClientError> {
        let path = format!("/v1/policies/{id}");
        logged("GET", &path, 200, self.client.policy(id)).await
    }

    /// `PUT /v1/policies/{id}` with `If-Match`.
    pub async fn replace_policy(
        &self,
        id: PolicyId,
        spec: &PolicySpec,
        if_match: Option<u64>,
    ) -> Result<Policy, ClientError> {
        let path = format!("/v1/policies/{id}");
        let call = self.client.replace_policy(id, spec, if_match);
        logged("PUT", &path, 200, call).await
    }

    /// `DELETE /v1/policies/{id}` with `If-Match`.
    pub async fn delete_policy(
        &self,
        id: PolicyId,
        if_match: Option<u64>,
    ) -> Result<(), ClientError> {
        let path = format!("/v1/policies/{id}");
        logged(
            "DELETE",
            &path,
            204,
            self.client.delete_policy(id, if_match),
        )
        .await
    }

    // === the edge ===

    /// `GET /v1/edge`.
    pub async fn edge(&self) -> Result<EdgeInfo, ClientError> {
        logged("GET", "/v1/edge", 200, self.client.edge()).await
    }

    /// `GET /v1/rollout?revision=N&…`.
    pub async fn rollout(
        &self,
        revision: Option<u64>,
        scope: &RolloutScope,
    ) -> Result<Rollout, ClientError> {
        let path = postern_schema::client::rollout_path(revision, scope);
        logged("GET", &path, 200, self.client.rollout(revision, scope)).await
    }
}

/// Runs one call and logs it at debug. The typed client only returns `Ok` for a 2xx
/// answer and the contract (`schema/openapi.json`) gives each operation exactly one,
/// `success`; failures log the status the edge really sent.
async fn logged<T>(
    method: &'static str,
    path: &str,
    success: u16,
    call: impl Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    let started = Instant::now();
    let result = call.await;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match &result {
        Ok(_) => tracing::debug!(method, path, status = success, elapsed_ms, "edge API call"),
        Err(ClientError::Api { status, body }) => tracing::debug!(
            method,
            path,
            status,
            code = %body.error.code,
            elapsed_ms,
            "edge API call"
        ),
        Err(ClientError::Protocol { status, .. }) => tracing::debug!(
            method,
            path,
            status,
            elapsed_ms,
            "edge API call: answer outside the contract"
        ),
        Err(error) => tracing::debug!(
            method,
            path,
            error = %error,
            elapsed_ms,
            "edge API call: no answer"
        ),
    }
    result
}

/// What a failed call was doing, for the diagnostic: `"creating"`, `"tunnel"`,
/// `"web"` (a name or id), and the value type the edge's JSON pointers are mapped onto.
#[derive(Clone, Copy, Debug)]
pub struct Operation<'a> {
    /// A verb in -ing form: `creating`, `reading`, `updating`, `deleting`, `importing`.
    pub action: &'a str,
    /// The kind of object: `tunnel`, `policy`, `hostname`, `edge`.
    pub kind: &'a str,
    /// The object's name or id, when known.
    pub object: Option<&'a str>,
    /// The Terraform value type of the resource, for attribute paths.
    pub value_type: &'a Type,
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
pub fn diagnose(error: &ClientError, op: Operation<'_>) -> Diagnostic {
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
                         as the one in the edge's <data-dir>/admin-token."
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
