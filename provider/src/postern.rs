//! The `postern` provider block: its schema, the configure step that resolves the
//! edge's endpoint and API token, and the [`registry`] that serves every Postern type.
//!
//! [`ProviderData`] is what each resource, data source and ephemeral resource receives
//! as `data: &ProviderData`: above all [`ProviderData::api`], the edge's control API,
//! built in [`PosternProvider::configure`].

use std::fmt;

use postern_schema::client::Client;
use postern_schema::secret::Secret;

use crate::api::EdgeApi;
use crate::framework::{
    Attribute, AttributePath, ConfigureRequest, Diagnostics, Provider, Registry, Schema, Value,
    async_trait,
};

/// The control API address used when neither the configuration nor
/// `POSTERN_ENDPOINT` names one (the edge's default `--api-listen`).
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:7070";

/// Every Postern type, served by one provider.
pub fn registry() -> Registry<PosternProvider> {
    Registry::new(PosternProvider)
        .resources(crate::resources::all())
        .ephemeral_resources(crate::resources::ephemeral())
        .data_sources(crate::data_sources::all())
}

/// The `provider "postern"` block.
pub struct PosternProvider;

/// What resources receive once the provider is configured.
#[derive(Clone, Debug)]
pub struct ProviderData {
    /// The edge's control API base URL.
    pub endpoint: String,
    /// The API token, if one was given.
    pub api_token: Option<ApiToken>,
    /// Cancelled when Terraform asks the provider to stop (Ctrl-C).
    pub stop: tokio_util::sync::CancellationToken,
    /// The edge's control API, authenticated with the token (an empty one when none was
    /// given: the edge then answers 401 and the diagnostic says what to set).
    pub api: EdgeApi,
}

/// A secret API token; `Debug` does not print it.
#[derive(Clone)]
pub struct ApiToken(String);

impl ApiToken {
    /// The token itself, for the `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(***)")
    }
}

#[async_trait]
impl Provider for PosternProvider {
    type Data = ProviderData;

    fn schema(&self) -> Schema {
        Schema::new(
            "The Postern provider manages tunnels, hostnames and policies on a Postern edge.",
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
    }

    fn validate(&self, config: &Value, diagnostics: &mut Diagnostics) {
        if let Some(endpoint) = config.get("endpoint").and_then(Value::as_str) {
            check_endpoint(endpoint, diagnostics);
        }
    }

    async fn configure(
        &self,
        req: ConfigureRequest,
        diagnostics: &mut Diagnostics,
    ) -> Option<ProviderData> {
        for name in ["endpoint", "api_token"] {
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
        let api_token = req
            .config
            .get("api_token")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| from_env("POSTERN_API_TOKEN"))
            .map(ApiToken);
        if diagnostics.has_errors() {
            return None;
        }
        let secret = Secret::new(api_token.as_ref().map_or("", ApiToken::expose));
        let client = match Client::new(&endpoint, secret) {
            Ok(client) => client,
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
        tracing::debug!(%endpoint, has_token = api_token.is_some(), "provider configured");
        Some(ProviderData {
            endpoint,
            api_token,
            stop: req.stop,
            api: EdgeApi::new(client),
        })
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
                ]),
                &mut diagnostics,
            );
            assert_eq!(!diagnostics.has_errors(), ok, "{endpoint}");
        }
    }

    #[test]
    fn token_is_not_printed() {
        assert_eq!(format!("{:?}", ApiToken("s3cret".into())), "ApiToken(***)");
    }
}
