//! The one typed client of the edge's control API, shared by the provider and the connector.
//! Every call logs one debug line (`edge API call`: method, path, status, elapsed time; never
//! the token, never a body, which may hold a secret).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::{
    ApiErrorBody, ApiToken, ApiTokenSpec, Certificate, CertificateSpec, Connection, EdgeInfo,
    EnrollmentToken, EnrollmentTokenSpec, ErrorCode, Hostname, HostnameSpec, List, Policy,
    PolicySpec, REVISION_HEADER, Rollout, RolloutScope, TcpService, TcpServiceSpec, Tunnel,
    TunnelSpec, TunnelTokenBody,
};
use crate::ids::{PolicyId, TcpServiceId, TunnelId};
use crate::rules::format_selector;
use crate::secret::Secret;

/// A client of one edge's control API.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    endpoint: String,
    token: Secret,
    /// The highest `Postern-Revision` a write answered with (0: none yet); shared by clones,
    /// fresh for each [`Client::tracking_revisions`].
    revision: Arc<AtomicU64>,
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The endpoint is not an http(s) URL.
    #[error("endpoint {endpoint:?} is not an http:// or https:// URL")]
    InvalidEndpoint {
        /// What was given.
        endpoint: String,
    },
    /// The CA certificate given to trust the edge's API is not PEM.
    #[error("the CA certificate for the edge's API is not a PEM certificate: {reason}")]
    InvalidCaCertificate {
        /// What is wrong with it.
        reason: String,
    },
    /// The edge's TLS certificate is not trusted: signed by another CA than the one given, or
    /// not for the endpoint's name.
    #[error(
        "the TLS certificate of the edge at {endpoint} is not trusted ({detail}): give the \
         client the CA certificate that signed the edge API's certificate (the provider's \
         ca_cert_pem or POSTERN_CA_CERT, the connector's --api-ca), and check that the \
         endpoint names the host the certificate is for"
    )]
    UntrustedCertificate {
        /// The endpoint.
        endpoint: String,
        /// What the TLS layer said.
        detail: String,
    },
    /// The edge could not be reached, or the connection broke.
    #[error(
        "cannot reach the postern edge at {endpoint}: is it running, and is the endpoint right?"
    )]
    Unreachable {
        /// The endpoint.
        endpoint: String,
        /// What the transport said.
        #[source]
        source: reqwest::Error,
    },
    /// The edge answered with an error.
    #[error("the edge answered {status}: {}", body.error.message)]
    Api {
        /// The HTTP status.
        status: u16,
        /// The error body.
        body: ApiErrorBody,
    },
    /// The edge answered something that is not in the contract.
    #[error("unexpected answer from the edge ({status}): {detail}")]
    Protocol {
        /// The HTTP status.
        status: u16,
        /// What was wrong with it.
        detail: String,
    },
}

impl ClientError {
    /// The API error code, when the edge answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Api { body, .. } => Some(body.error.code),
            _ => None,
        }
    }

    /// The object does not exist.
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(ErrorCode::NotFound)
    }

    /// `If-Match` was stale: someone else changed the object.
    pub fn is_precondition_failed(&self) -> bool {
        self.code() == Some(ErrorCode::PreconditionFailed)
    }

    /// The JSON pointer into the request body that the edge blamed, if any.
    pub fn path(&self) -> Option<&str> {
        match self {
            ClientError::Api { body, .. } => body.error.path.as_deref(),
            _ => None,
        }
    }
}

/// How a [`Client`] connects.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Bound on opening a connection.
    pub connect_timeout: Duration,
    /// Bound on each whole call.
    pub call_timeout: Duration,
    /// For an `https://` endpoint: the CA certificate(s), PEM, that signed the edge API's
    /// certificate; when set, only they are trusted. `None`: the system's roots.
    pub ca_cert_pem: Option<String>,
    /// An HTTP proxy for every call (`http://[user:password@]host:port`). `None`: the one
    /// `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY` name, if any (`NO_PROXY` honoured).
    pub proxy: Option<String>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            call_timeout: Duration::from_secs(60),
            ca_cert_pem: None,
            proxy: None,
        }
    }
}

impl Client {
    /// A client for `endpoint` (e.g. `http://127.0.0.1:7070`) with an API token.
    pub fn new(endpoint: &str, token: Secret) -> Result<Self, ClientError> {
        Self::with_options(endpoint, token, &ClientOptions::default())
    }

    /// Like [`Client::new`], with a connect timeout and a timeout for each whole call: short
    /// ones suit best-effort questions that must not hold anything up.
    pub fn with_timeouts(
        endpoint: &str,
        token: Secret,
        connect: Duration,
        call: Duration,
    ) -> Result<Self, ClientError> {
        let options = ClientOptions {
            connect_timeout: connect,
            call_timeout: call,
            ..ClientOptions::default()
        };
        Self::with_options(endpoint, token, &options)
    }

    /// A client for `endpoint` with an API token, connecting as `options` say.
    pub fn with_options(
        endpoint: &str,
        token: Secret,
        options: &ClientOptions,
    ) -> Result<Self, ClientError> {
        let endpoint = endpoint.trim_end_matches('/').to_string();
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
            || reqwest::Url::parse(&endpoint).is_err()
        {
            return Err(ClientError::InvalidEndpoint { endpoint });
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .timeout(options.call_timeout);
        if let Some(pem) = &options.ca_cert_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes()).map_err(|e| {
                ClientError::InvalidCaCertificate {
                    reason: e.to_string(),
                }
            })?;
            if certs.is_empty() {
                return Err(ClientError::InvalidCaCertificate {
                    reason: "it holds no -----BEGIN CERTIFICATE----- block".into(),
                });
            }
            builder = builder.tls_certs_only(certs);
        }
        if let Some(proxy) = &options.proxy {
            let proxy = reqwest::Proxy::all(proxy).map_err(|source| ClientError::Unreachable {
                endpoint: endpoint.clone(),
                source,
            })?;
            builder = builder.proxy(proxy);
        }
        let http = builder.build().map_err(|source| ClientError::Unreachable {
            endpoint: endpoint.clone(),
            source,
        })?;
        Ok(Self {
            http,
            endpoint,
            token,
            revision: Arc::new(AtomicU64::new(0)),
        })
    }

    /// A clone (sharing connections) that records the store revision of the writes made
    /// through it, read with [`Client::revision`]: one per operation that wants to wait for
    /// its writes to reach the connectors.
    pub fn tracking_revisions(&self) -> Self {
        Self {
            revision: Arc::new(AtomicU64::new(0)),
            ..self.clone()
        }
    }

    /// The highest store revision (`Postern-Revision`) a write through this client produced;
    /// `None` before any.
    pub fn revision(&self) -> Option<u64> {
        Some(self.revision.load(Ordering::Relaxed)).filter(|r| *r > 0)
    }

    /// The endpoint this client talks to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    // === tunnels ===

    /// `GET /v1/tunnels`, optionally only those whose labels match `selector`.
    pub async fn list_tunnels(
        &self,
        selector: Option<&BTreeMap<String, String>>,
    ) -> Result<Vec<Tunnel>, ClientError> {
        let path = match selector.filter(|s| !s.is_empty()) {
            Some(selector) => format!(
                "/v1/tunnels?selector={}",
                encode_query(&format_selector(selector))
            ),
            None => "/v1/tunnels".to_string(),
        };
        let list: List<Tunnel> = self.call(Method::GET, &path, None::<&()>, None).await?;
        Ok(list.items)
    }

    /// `POST /v1/tunnels`: the answer carries the token.
    pub async fn create_tunnel(&self, spec: &TunnelSpec) -> Result<Tunnel, ClientError> {
        self.call(Method::POST, "/v1/tunnels", Some(spec), None)
            .await
    }

    /// `GET /v1/tunnels/{id}`.
    pub async fn tunnel(&self, id: TunnelId) -> Result<Tunnel, ClientError> {
        self.call(Method::GET, &format!("/v1/tunnels/{id}"), None::<&()>, None)
            .await
    }

    /// `PUT /v1/tunnels/{id}`.
    pub async fn replace_tunnel(
        &self,
        id: TunnelId,
        spec: &TunnelSpec,
        if_match: Option<u64>,
    ) -> Result<Tunnel, ClientError> {
        self.call(
            Method::PUT,
            &format!("/v1/tunnels/{id}"),
            Some(spec),
            if_match,
        )
        .await
    }

    /// `DELETE /v1/tunnels/{id}`.
    pub async fn delete_tunnel(
        &self,
        id: TunnelId,
        if_match: Option<u64>,
    ) -> Result<(), ClientError> {
        self.call_empty(Method::DELETE, &format!("/v1/tunnels/{id}"), if_match)
            .await
    }

    /// `GET /v1/tunnels/{id}/token`.
    pub async fn tunnel_token(&self, id: TunnelId) -> Result<Secret, ClientError> {
        let body: TunnelTokenBody = self
            .call(
                Method::GET,
                &format!("/v1/tunnels/{id}/token"),
                None::<&()>,
                None,
            )
            .await?;
        Ok(Secret::new(body.token))
    }

    /// `POST /v1/tunnels/{id}/enrollment-tokens`: a single-use, short-lived connector token.
    pub async fn create_enrollment_token(
        &self,
        id: TunnelId,
        spec: &EnrollmentTokenSpec,
    ) -> Result<EnrollmentToken, ClientError> {
        self.call(
            Method::POST,
            &format!("/v1/tunnels/{id}/enrollment-tokens"),
            Some(spec),
            None,
        )
        .await
    }

    /// `GET /v1/tunnels/{id}/connections`.
    pub async fn tunnel_connections(&self, id: TunnelId) -> Result<Vec<Connection>, ClientError> {
        let list: List<Connection> = self
            .call(
                Method::GET,
                &format!("/v1/tunnels/{id}/connections"),
                None::<&()>,
                None,
            )
            .await?;
        Ok(list.items)
    }

    // === hostnames ===

    /// `GET /v1/hostnames`.
    pub async fn list_hostnames(&self) -> Result<Vec<Hostname>, ClientError> {
        let list: List<Hostname> = self
            .call(Method::GET, "/v1/hostnames", None::<&()>, None)
            .await?;
        Ok(list.items)
    }

    /// `POST /v1/hostnames`.
    pub async fn create_hostname(&self, spec: &HostnameSpec) -> Result<Hostname, ClientError> {
        self.call(Method::POST, "/v1/hostnames", Some(spec), None)
            .await
    }

    /// `GET /v1/hostnames/{hostname}`.
    pub async fn hostname(&self, hostname: &str) -> Result<Hostname, ClientError> {
        self.call(
            Method::GET,
            &format!("/v1/hostnames/{}", encode_path(hostname)),
            None::<&()>,
            None,
        )
        .await
    }

    /// `PUT /v1/hostnames/{hostname}`.
    pub async fn replace_hostname(
        &self,
        spec: &HostnameSpec,
        if_match: Option<u64>,
    ) -> Result<Hostname, ClientError> {
        self.call(
            Method::PUT,
            &format!("/v1/hostnames/{}", encode_path(&spec.hostname)),
            Some(spec),
            if_match,
        )
        .await
    }

    /// `DELETE /v1/hostnames/{hostname}`.
    pub async fn delete_hostname(
        &self,
        hostname: &str,
        if_match: Option<u64>,
    ) -> Result<(), ClientError> {
        self.call_empty(
            Method::DELETE,
            &format!("/v1/hostnames/{}", encode_path(hostname)),
            if_match,
        )
        .await
    }

    // === policies ===

    /// `GET /v1/policies`.
    pub async fn list_policies(&self) -> Result<Vec<Policy>, ClientError> {
        let list: List<Policy> = self
            .call(Method::GET, "/v1/policies", None::<&()>, None)
            .await?;
        Ok(list.items)
    }

    /// `POST /v1/policies`.
    pub async fn create_policy(&self, spec: &PolicySpec) -> Result<Policy, ClientError> {
        self.call(Method::POST, "/v1/policies", Some(spec), None)
            .await
    }

    /// `GET /v1/policies/{id}`.
    pub async fn policy(&self, id: PolicyId) -> Result<Policy, ClientError> {
        self.call(
            Method::GET,
            &format!("/v1/policies/{id}"),
            None::<&()>,
            None,
        )
        .await
    }

    /// `PUT /v1/policies/{id}`.
    pub async fn replace_policy(
        &self,
        id: PolicyId,
        spec: &PolicySpec,
        if_match: Option<u64>,
    ) -> Result<Policy, ClientError> {
        self.call(
            Method::PUT,
            &format!("/v1/policies/{id}"),
            Some(spec),
            if_match,
        )
        .await
    }

    /// `DELETE /v1/policies/{id}`.
    pub async fn delete_policy(
        &self,
        id: PolicyId,
        if_match: Option<u64>,
    ) -> Result<(), ClientError> {
        self.call_empty(Method::DELETE, &format!("/v1/policies/{id}"), if_match)
            .await
    }

    // === TCP services ===

    /// `GET /v1/tcp-services`.
    pub async fn list_tcp_services(&self) -> Result<Vec<TcpService>, ClientError> {
        let list: List<TcpService> = self
            .call(Method::GET, "/v1/tcp-services", None::<&()>, None)
            .await?;
        Ok(list.items)
    }

    /// `POST /v1/tcp-services`.
    pub async fn create_tcp_service(
        &self,
        spec: &TcpServiceSpec,
    ) -> Result<TcpService, ClientError> {
        self.call(Method::POST, "/v1/tcp-services", Some(spec), None)
            .await
    }

    /// `GET /v1/tcp-services/{id}`.
    pub async fn tcp_service(&self, id: TcpServiceId) -> Result<TcpService, ClientError> {
        self.call(
            Method::GET,
            &format!("/v1/tcp-services/{id}"),
            None::<&()>,
            None,
        )
        .await
    }

    /// `PUT /v1/tcp-services/{id}`.
    pub async fn replace_tcp_service(
        &self,
        id: TcpServiceId,
        spec: &TcpServiceSpec,
        if_match: Option<u64>,
    ) -> Result<TcpService, ClientError> {
        self.call(
            Method::PUT,
            &format!("/v1/tcp-services/{id}"),
            Some(spec),
            if_match,
        )
        .await
    }

    /// `DELETE /v1/tcp-services/{id}`.
    pub async fn delete_tcp_service(
        &self,
        id: TcpServiceId,
        if_match: Option<u64>,
    ) -> Result<(), ClientError> {
        self.call_empty(Method::DELETE, &format!("/v1/tcp-services/{id}"), if_match)
            .await
    }

    // === certificates ===

    /// `GET /v1/certificates`.
    pub async fn list_certificates(&self) -> Result<Vec<Certificate>, ClientError> {
        let list: List<Certificate> = self
            .call(Method::GET, "/v1/certificates", None::<&()>, None)
            .await?;
        Ok(list.items)
    }

    /// `POST /v1/certificates`: an upload, or names to obtain a certificate for by ACME.
    pub async fn create_certificate(
        &self,
        spec: &CertificateSpec,
    ) -> Result<Certificate, ClientError> {
        self.call(Method::POST, "/v1/certificates", Some(spec), None)
            .await
    }

    /// `GET /v1/certificates/{id}`.
    pub async fn certificate(&self, id: &str) -> Result<Certificate, ClientError> {
        self.call(
            Method::GET,
            &format!("/v1/certificates/{}", encode_path(id)),
            None::<&()>,
            None,
        )
        .await
    }

    /// `DELETE /v1/certificates/{id}`.
    pub async fn delete_certificate(&self, id: &str) -> Result<(), ClientError> {
        self.call_empty(
            Method::DELETE,
            &format!("/v1/certificates/{}", encode_path(id)),
            None,
        )
        .await
    }

    // === API tokens ===

    /// `GET /v1/tokens`: every token, without secrets (admin tokens only).
    pub async fn list_api_tokens(&self) -> Result<Vec<ApiToken>, ClientError> {
        let list: List<ApiToken> = self
            .call(Method::GET, "/v1/tokens", None::<&()>, None)
            .await?;
        Ok(list.items)
    }

    /// `POST /v1/tokens`: the answer carries the secret, the only time it is shown.
    pub async fn create_api_token(&self, spec: &ApiTokenSpec) -> Result<ApiToken, ClientError> {
        self.call(Method::POST, "/v1/tokens", Some(spec), None)
            .await
    }

    /// `GET /v1/tokens/{id}` (without its secret).
    pub async fn api_token(&self, id: &str) -> Result<ApiToken, ClientError> {
        self.call(
            Method::GET,
            &format!("/v1/tokens/{}", encode_path(id)),
            None::<&()>,
            None,
        )
        .await
    }

    /// `DELETE /v1/tokens/{id}`: the token is refused by every edge node within a second.
    pub async fn delete_api_token(&self, id: &str) -> Result<(), ClientError> {
        self.call_empty(
            Method::DELETE,
            &format!("/v1/tokens/{}", encode_path(id)),
            None,
        )
        .await
    }

    // === the edge ===

    /// `GET /v1/edge`.
    pub async fn edge(&self) -> Result<EdgeInfo, ClientError> {
        self.call(Method::GET, "/v1/edge", None::<&()>, None).await
    }

    /// `GET /v1/status`: what the edge observes (recent traffic per route, decisions, DNS,
    /// ejected routes).
    pub async fn status(&self) -> Result<crate::api::EdgeStatus, ClientError> {
        self.call(Method::GET, "/v1/status", None::<&()>, None)
            .await
    }

    /// `GET /v1/rollout?revision=N`: which live connections have not yet acknowledged what
    /// their tunnel needs, within `scope`, at store revision `revision` (the edge's current
    /// one when `None`).
    pub async fn rollout(
        &self,
        revision: Option<u64>,
        scope: &RolloutScope,
    ) -> Result<Rollout, ClientError> {
        self.call(
            Method::GET,
            &rollout_path(revision, scope),
            None::<&()>,
            None,
        )
        .await
    }

    // === plumbing ===

    /// A call whose answer is a JSON body of type `T`.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
        if_match: Option<u64>,
    ) -> Result<T, ClientError> {
        self.exchange(method, path, body, if_match, |status, bytes| {
            serde_json::from_slice(bytes).map_err(|e| ClientError::Protocol {
                status: status.as_u16(),
                detail: format!("body does not match the contract: {e}"),
            })
        })
        .await
    }

    /// A call whose answer has no body worth reading (`204 No Content`).
    async fn call_empty(
        &self,
        method: Method,
        path: &str,
        if_match: Option<u64>,
    ) -> Result<(), ClientError> {
        self.exchange(method, path, None::<&()>, if_match, |_, _| Ok(()))
            .await
    }

    /// Sends one request, reads a successful answer with `read`, and logs the call once.
    async fn exchange<T>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
        if_match: Option<u64>,
        read: impl FnOnce(StatusCode, &[u8]) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let started = Instant::now();
        let result = match self.send(method.clone(), path, body, if_match).await {
            Ok((status, bytes)) => read(status, &bytes).map(|value| (status, value)),
            Err(error) => Err(error),
        };
        log_call(
            &method,
            path,
            started.elapsed(),
            result.as_ref().map(|(status, _)| *status),
        );
        result.map(|(_, value)| value)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
        if_match: Option<u64>,
    ) -> Result<(StatusCode, bytes::Bytes), ClientError> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.endpoint))
            .bearer_auth(self.token.expose());
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(version) = if_match {
            request = request.header(http::header::IF_MATCH, format!("\"{version}\""));
        }
        let unreachable = |source: reqwest::Error| match certificate_problem(&source) {
            Some(detail) => ClientError::UntrustedCertificate {
                endpoint: self.endpoint.clone(),
                detail,
            },
            None => ClientError::Unreachable {
                endpoint: self.endpoint.clone(),
                source,
            },
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        if let Some(revision) = response
            .headers()
            .get(REVISION_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            self.revision.fetch_max(revision, Ordering::Relaxed);
        }
        let bytes = response.bytes().await.map_err(unreachable)?;
        if status.is_success() {
            return Ok((status, bytes));
        }
        match serde_json::from_slice::<ApiErrorBody>(&bytes) {
            Ok(body) => Err(ClientError::Api {
                status: status.as_u16(),
                body,
            }),
            Err(_) => Err(ClientError::Protocol {
                status: status.as_u16(),
                detail: String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
            }),
        }
    }
}

/// Why a certificate signed by a CA the client was not given is refused.
const UNKNOWN_ISSUER: &str = "it is signed by an unknown certificate authority";

/// Why a certificate for another name is refused.
const NOT_FOR_NAME: &str = "it is not valid for the endpoint's host name";

fn crate_error_chain(error: &reqwest::Error) -> String {
    crate::error_chain(error)
}

/// What the TLS layer said about the edge's certificate, when that is why `error` happened.
fn certificate_problem(error: &reqwest::Error) -> Option<String> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = cause {
        // An io::Error's `source` skips the error it wraps: look inside it too.
        let inner = current
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|inner| inner as &(dyn std::error::Error + 'static));
        for candidate in [Some(current), inner].into_iter().flatten() {
            if let Some(rustls::Error::InvalidCertificate(problem)) =
                candidate.downcast_ref::<rustls::Error>()
            {
                return Some(match problem {
                    rustls::CertificateError::UnknownIssuer => UNKNOWN_ISSUER.to_string(),
                    rustls::CertificateError::NotValidForName
                    | rustls::CertificateError::NotValidForNameContext { .. } => {
                        NOT_FOR_NAME.to_string()
                    }
                    rustls::CertificateError::Expired
                    | rustls::CertificateError::ExpiredContext { .. } => {
                        "it has expired".to_string()
                    }
                    other => format!("{other:?}"),
                });
            }
        }
        cause = current.source();
    }
    // Some layers keep the TLS error only as text (a boxed error of another type).
    let text = crate_error_chain(error);
    text.find("invalid peer certificate: ").map(|at| {
        let detail = &text[at + "invalid peer certificate: ".len()..];
        match detail.split([' ', ':', ')']).next().unwrap_or_default() {
            "UnknownIssuer" => UNKNOWN_ISSUER.to_string(),
            "NotValidForName" | "NotValidForNameContext" => NOT_FOR_NAME.to_string(),
            "Expired" | "ExpiredContext" => "it has expired".to_string(),
            other => other.to_string(),
        }
    })
}

/// One debug line per call: the method, the path (ids, hostnames and selectors; never a
/// token or a body), the status the edge answered, how long it took. Failures say whether
/// the edge answered an error of the contract, something outside it, or nothing at all.
fn log_call(
    method: &Method,
    path: &str,
    elapsed: Duration,
    outcome: Result<StatusCode, &ClientError>,
) {
    let method = method.as_str();
    let elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
    match outcome {
        Ok(status) => tracing::debug!(
            method,
            path,
            status = status.as_u16(),
            elapsed_ms,
            "edge API call"
        ),
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
}

/// `/v1/rollout` with its query.
fn rollout_path(revision: Option<u64>, scope: &RolloutScope) -> String {
    let mut query = Vec::new();
    if let Some(revision) = revision {
        query.push(format!("revision={revision}"));
    }
    if let Some((key, value)) = scope.query() {
        query.push(format!("{key}={}", encode_query(&value)));
    }
    if query.is_empty() {
        "/v1/rollout".to_string()
    } else {
        format!("/v1/rollout?{}", query.join("&"))
    }
}

/// Percent-encodes a query value (labels use only unreserved characters plus `=`, `,` and `/`).
fn encode_query(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b',' | b'=' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Hostnames are `[a-z0-9.-]`; anything else is percent-encoded so it cannot change the path.
fn encode_path(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}
