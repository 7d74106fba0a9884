//! The Postern provider as Terraform sees it: the [`registry`] of every type it serves, and
//! the `provider "postern"` block, whose configure step resolves the edge's endpoint and API
//! token into the [`ProviderData`] every type receives.

use std::time::Duration;

use postern_schema::client::{Client, ClientOptions};
use postern_schema::secret::Secret;

use crate::data_sources::edge::EdgeDataSource;
use crate::data_sources::tunnel::TunnelDataSource;
use crate::data_sources::tunnels::TunnelsDataSource;
use crate::framework::{
    Attribute, AttributePath, ConfigureRequest, Diagnostics, Provider, Registry, Schema, Value,
    async_trait,
};
use crate::postern::duration::parse_duration;
use crate::postern::live::LiveView;
use crate::postern::provider_data::ProviderData;
use crate::postern::rollout;
use crate::resources::api_token::ApiTokenResource;
use crate::resources::certificate::CertificateResource;
use crate::resources::enrollment_token::EnrollmentTokenResource;
use crate::resources::hostname::HostnameResource;
use crate::resources::policy::PolicyResource;
use crate::resources::tcp_service::TcpServiceResource;
use crate::resources::tunnel::TunnelResource;

/// The control API address used when neither the configuration nor
/// `POSTERN_ENDPOINT` names one (the edge's default `--api-listen`).
const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:7070";

/// How long plan-time questions to the edge may take to connect, and in all: plan must not
/// wait on an edge that is down.
const PROBE_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const PROBE_CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// Every Postern type, served by one provider. To add a type, write its file under
/// `resources/` or `data_sources/` and add it here; `tests::shipped_registry_is_valid`
/// checks the schemas.
pub fn registry() -> Registry<PosternProvider> {
    Registry::new(PosternProvider)
        .resource(TunnelResource)
        .resource(PolicyResource)
        .resource(HostnameResource)
        .resource(ApiTokenResource)
        .resource(CertificateResource)
        .resource(TcpServiceResource)
        .ephemeral_resource(EnrollmentTokenResource)
        .data_source(TunnelDataSource)
        .data_source(TunnelsDataSource)
        .data_source(EdgeDataSource)
}

/// The `provider "postern"` block.
pub struct PosternProvider;

#[async_trait]
impl Provider for PosternProvider {
    type Data = ProviderData;

    fn schema(&self) -> Schema {
        Schema::new(
            "The Postern provider manages tunnels, hostnames, policies and API tokens on a \
             Postern edge.",
        )
        .attribute(
            "endpoint",
            Attribute::string(
                "Base URL of the edge's control API, e.g. `http://127.0.0.1:7070`. \
                     Defaults to the `POSTERN_ENDPOINT` environment variable, then \
                     `http://127.0.0.1:7070`.",
            )
            .optional(),
        )
        .attribute(
            "api_token",
            Attribute::string(
                "API token for the edge's control API. Defaults to the \
                     `POSTERN_API_TOKEN` environment variable.",
            )
            .optional()
            .sensitive(),
        )
        .attribute(
            "ca_cert_pem",
            Attribute::string(
                "For an `https://` endpoint: the CA certificate (PEM) that signed the edge \
                 API's certificate; only it is trusted then. With `--api-tls edge-ca` it is \
                 the edge's `<data-dir>/ca.pem`. Defaults to the `POSTERN_CA_CERT` \
                 environment variable (a PEM certificate, or the path of a file that holds \
                 one), then the system's trusted roots.",
            )
            .optional(),
        )
        .attribute(
            "rollout_timeout",
            Attribute::string(
                "How long a create, update or delete of a hostname, tunnel or policy waits until \
                 every connected connector of the tunnels it affects has acknowledged the new \
                 configuration, e.g. `\"30s\"` or `\"2m\"`; on timeout the apply fails and \
                 names the connectors still on the old version. `\"0s\"` does not wait. \
                 Defaults to `\"30s\"`.",
            )
            .optional(),
        )
    }

    fn validate(&self, config: &Value, diagnostics: &mut Diagnostics) {
        if let Some(endpoint) = config.get("endpoint").and_then(Value::as_str) {
            check_endpoint(endpoint, diagnostics);
        }
        if let Some(timeout) = config.get("rollout_timeout").and_then(Value::as_str) {
            check_rollout_timeout(timeout, diagnostics);
        }
        if let Some(pem) = config.get("ca_cert_pem").and_then(Value::as_str) {
            check_ca_cert_pem(pem, diagnostics);
        }
    }

    async fn configure(
        &self,
        req: ConfigureRequest,
        diagnostics: &mut Diagnostics,
    ) -> Option<ProviderData> {
        for name in ["endpoint", "api_token", "ca_cert_pem", "rollout_timeout"] {
            if req.config.get(name).is_some_and(Value::is_unknown) {
                diagnostics.error_at(
                    AttributePath::root(name),
                    format!("Unknown {name}"),
                    format!(
                        "The provider's {name} depends on a value not known until apply. \
                         Set it to a known value, or apply the resources it depends on first."
                    ),
                );
            }
        }
        if diagnostics.has_errors() {
            return None;
        }
        let from_env = |key: &str| std::env::var(key).ok().filter(|v| !v.is_empty());
        let endpoint = req
            .config
            .get("endpoint")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| from_env("POSTERN_ENDPOINT"))
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
        check_endpoint(&endpoint, diagnostics);
        let rollout_timeout = match req.config.get("rollout_timeout").and_then(Value::as_str) {
            Some(text) => check_rollout_timeout(text, diagnostics),
            None => Some(rollout::DEFAULT_TIMEOUT),
        };
        let api_token = req
            .config
            .get("api_token")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| from_env("POSTERN_API_TOKEN"));
        let ca_cert_pem = match req.config.get("ca_cert_pem").and_then(Value::as_str) {
            Some(pem) => Some(pem.to_owned()),
            None => from_env("POSTERN_CA_CERT").and_then(|v| ca_from_env(&v, diagnostics)),
        };
        let rollout_timeout = rollout_timeout.filter(|_| !diagnostics.has_errors())?;
        let secret = Secret::new(api_token.as_deref().unwrap_or_default());
        let options = ClientOptions {
            ca_cert_pem: ca_cert_pem.clone(),
            ..ClientOptions::default()
        };
        let probe = Client::with_options(
            &endpoint,
            secret.clone(),
            &ClientOptions {
                connect_timeout: PROBE_CONNECT_TIMEOUT,
                call_timeout: PROBE_CALL_TIMEOUT,
                ca_cert_pem,
                ..ClientOptions::default()
            },
        );
        let client = match Client::with_options(&endpoint, secret, &options) {
            Ok(client) => client,
            Err(error @ postern_schema::client::ClientError::InvalidCaCertificate { .. }) => {
                diagnostics.error_at(
                    AttributePath::root("ca_cert_pem"),
                    "Invalid ca_cert_pem",
                    format!(
                        "{error}. Give the PEM certificate of the CA that signed the edge \
                         API's certificate (with --api-tls edge-ca: the edge's \
                         <data-dir>/ca.pem)."
                    ),
                );
                return None;
            }
            Err(error) => {
                diagnostics.error_at(
                    AttributePath::root("endpoint"),
                    "Invalid endpoint",
                    format!(
                        "{error}. Use the edge's control API address, e.g. {DEFAULT_ENDPOINT:?}."
                    ),
                );
                return None;
            }
        };
        tracing::debug!(
            %endpoint,
            has_token = api_token.is_some(),
            has_ca_cert = options.ca_cert_pem.is_some(),
            rollout_timeout_ms = rollout_timeout.as_millis() as u64,
            "provider configured"
        );
        Some(ProviderData {
            client,
            rollout_timeout,
            stop: req.stop,
            live: LiveView::new(probe.ok()),
        })
    }
}

/// The parsed `rollout_timeout`; an error diagnostic on the attribute when it is not a
/// duration.
fn check_rollout_timeout(text: &str, diagnostics: &mut Diagnostics) -> Option<Duration> {
    match parse_duration(text) {
        Ok(timeout) => Some(timeout),
        Err(message) => {
            diagnostics.error_at(
                AttributePath::root("rollout_timeout"),
                "Invalid rollout_timeout",
                format!("{message}. Use \"0s\" not to wait for connectors at all."),
            );
            None
        }
    }
}

/// `POSTERN_CA_CERT`: a PEM certificate, or the path of a file that holds one.
fn ca_from_env(value: &str, diagnostics: &mut Diagnostics) -> Option<String> {
    if value.trim_start().starts_with("-----BEGIN") {
        return Some(value.to_owned());
    }
    match std::fs::read_to_string(value) {
        Ok(pem) => Some(pem),
        Err(error) => {
            diagnostics.error(
                "Cannot read POSTERN_CA_CERT",
                format!(
                    "POSTERN_CA_CERT is neither a PEM certificate nor a file the provider can \
                     read ({value}: {error}). Set it to the CA certificate (PEM) that signed \
                     the edge API's certificate, or to the path of a file that holds it."
                ),
            );
            None
        }
    }
}

/// An error on `ca_cert_pem` when it holds no PEM certificate.
fn check_ca_cert_pem(pem: &str, diagnostics: &mut Diagnostics) {
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        diagnostics.error_at(
            AttributePath::root("ca_cert_pem"),
            "Invalid ca_cert_pem",
            "ca_cert_pem must hold a PEM certificate (-----BEGIN CERTIFICATE----- …): the CA \
             that signed the edge API's certificate, e.g. file(\"ca.pem\") with the edge's \
             <data-dir>/ca.pem.",
        );
    }
}

fn check_endpoint(endpoint: &str, diagnostics: &mut Diagnostics) {
    let host = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"));
    if host.is_none_or(|rest| rest.is_empty() || rest.starts_with('/')) {
        diagnostics.error_at(
            AttributePath::root("endpoint"),
            "Invalid endpoint",
            format!(
                "{endpoint:?} is not an http:// or https:// URL. \
                 Use the edge's control API address, e.g. {DEFAULT_ENDPOINT:?}."
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_registry_is_valid() {
        assert_eq!(registry().problems(), Vec::<String>::new());
    }

    #[test]
    fn endpoint_must_be_http() {
        for (endpoint, ok) in [
            ("http://127.0.0.1:1", true),
            ("https://edge.example.com", true),
            ("ftp://x", false),
            ("http://", false),
            ("127.0.0.1:7070", false),
        ] {
            let mut diagnostics = Diagnostics::new();
            PosternProvider.validate(
                &Value::object([
                    ("endpoint", Value::from(endpoint)),
                    ("api_token", Value::Null),
                    ("ca_cert_pem", Value::Null),
                    ("rollout_timeout", Value::Null),
                ]),
                &mut diagnostics,
            );
            assert_eq!(!diagnostics.has_errors(), ok, "{endpoint}");
        }
    }

    #[test]
    fn rollout_timeout_must_be_a_duration() {
        for (timeout, ok) in [("30s", true), ("0s", true), ("1m30s", true), ("30", false)] {
            let mut diagnostics = Diagnostics::new();
            PosternProvider.validate(
                &Value::object([
                    ("endpoint", Value::Null),
                    ("api_token", Value::Null),
                    ("ca_cert_pem", Value::Null),
                    ("rollout_timeout", Value::from(timeout)),
                ]),
                &mut diagnostics,
            );
            assert_eq!(!diagnostics.has_errors(), ok, "{timeout}");
        }
    }
}
