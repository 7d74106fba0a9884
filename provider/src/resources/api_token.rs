//! `postern_api_token`: a token of the edge's control API with a role (`admin`, `editor`,
//! `viewer`) and an optional expiry, for a pipeline, a dashboard or a person. Its `secret` is
//! answered once, on creation, and kept (sensitive) in state; an imported token has none.
//! Tokens cannot be changed: any change replaces the token (a new secret), and destroying
//! it revokes it on every edge node within a second.

use postern_schema::api::{ApiToken, ApiTokenSpec, Role, RolloutScope};
use postern_schema::client::{Client, ClientError};
use postern_schema::rules;
use serde::{Deserialize, Serialize};

use crate::framework::{
    Attribute, AttributePath, Diagnostic, Diagnostics, Schema, Value, async_trait,
};
use crate::postern::api_error::Operation;
use crate::postern::contract::{Findings, known_str};
use crate::postern::lifecycle::EdgeObject;
use crate::postern::provider_data::ProviderData;

/// Terraform state of a `postern_api_token` (no `Debug`: it holds the secret).
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct ApiTokenModel {
    /// The token's UUID; `None` until created.
    pub(crate) id: Option<String>,
    /// What the token is for.
    pub(crate) name: String,
    /// `admin`, `editor` or `viewer`.
    pub(crate) role: String,
    /// RFC 3339, when it expires.
    pub(crate) expires_at: Option<String>,
    /// The token itself; `None` once imported.
    pub(crate) secret: Option<String>,
    /// RFC 3339 creation time.
    pub(crate) created_at: Option<String>,
}

impl ApiTokenModel {
    fn spec(&self) -> Result<ApiTokenSpec, Diagnostic> {
        let role = Role::parse(&self.role).ok_or_else(|| {
            Diagnostic::error(
                "Invalid role",
                format!(
                    "role {:?} must be \"admin\", \"editor\" or \"viewer\". Fix the \
                     configuration and apply again.",
                    self.role
                ),
            )
            .at(AttributePath::root("role"))
        })?;
        Ok(ApiTokenSpec {
            name: self.name.clone(),
            role,
            expires_at: self.expires_at.clone(),
        })
    }
}

/// The `postern_api_token` resource.
pub(crate) struct ApiTokenResource;

#[async_trait]
impl EdgeObject for ApiTokenResource {
    type Model = ApiTokenModel;
    type Spec = ApiTokenSpec;
    type Object = ApiToken;
    type Id = String;

    const KIND: &'static str = "API token";
    const NAME_ATTRIBUTE: &'static str = "name";
    /// A token is no configuration of a connector: nothing to wait for.
    const WAITS_AFTER_DELETE: bool = false;

    fn type_name(&self) -> &'static str {
        "postern_api_token"
    }

    fn schema(&self) -> Schema {
        Schema::new(
            "A token of the edge's control API, with a role: `admin` (everything), `editor` \
             (tunnels, hostnames, policies and tunnel tokens, not API tokens) or `viewer` \
             (reads everything but tunnel tokens: dashboards, the status page, Prometheus). \
             Creating it needs an admin token. The secret is shown once, on creation, and kept \
             in state as a sensitive value; changing any argument makes a new token, and \
             destroying it revokes it on every edge node within a second.",
        )
        .attribute(
            "id",
            Attribute::string("The token's UUID, assigned by the edge.")
                .computed()
                .stable(),
        )
        .attribute(
            "name",
            Attribute::string(
                "What the token is for (a pipeline, a dashboard, a person): 1 to 63 lowercase \
                 letters, digits and `-`. Names need not be unique.",
            )
            .required()
            .requires_replace(),
        )
        .attribute(
            "role",
            Attribute::string("`admin`, `editor` or `viewer`.")
                .required()
                .requires_replace(),
        )
        .attribute(
            "expires_at",
            Attribute::string(
                "When the token stops working, in RFC 3339 (`2027-01-31T00:00:00Z`); it must \
                 lie in the future when the token is made. Unset: it does not expire.",
            )
            .optional()
            .requires_replace(),
        )
        .attribute(
            "secret",
            Attribute::string(
                "The token, for `Authorization: Bearer` or another configuration's \
                 `api_token`. Known only to the configuration that made it (null after \
                 `terraform import`).",
            )
            .computed()
            .sensitive()
            .stable(),
        )
        .attribute(
            "created_at",
            Attribute::string("When the edge made the token (RFC 3339).")
                .computed()
                .stable(),
        )
    }

    fn validate(&self, config: &Value, diagnostics: &mut Diagnostics) {
        let mut findings = Findings::new();
        if let Some(name) = known_str(config, "name") {
            findings.rule(AttributePath::root("name"), rules::check_name(name));
        }
        if let Some(role) = known_str(config, "role")
            && Role::parse(role).is_none()
        {
            findings.add(
                AttributePath::root("role"),
                format!("role {role:?} must be \"admin\", \"editor\" or \"viewer\""),
            );
        }
        if let Some(at) = known_str(config, "expires_at") {
            findings.rule(
                AttributePath::root("expires_at"),
                rules::parse_timestamp(at),
            );
        }
        findings.schema::<ApiTokenSpec>(config, &self.schema().value_type());
        findings.report(diagnostics);
    }

    fn spec(&self, model: &ApiTokenModel) -> Result<ApiTokenSpec, Diagnostic> {
        model.spec()
    }

    fn spec_name(spec: &ApiTokenSpec) -> &str {
        &spec.name
    }

    fn state_id(model: &ApiTokenModel) -> Option<&str> {
        model.id.as_deref()
    }

    fn parse_import_id(&self, text: &str) -> Result<String, Diagnostic> {
        let text = text.trim();
        match uuid::Uuid::parse_str(text) {
            Ok(id) => Ok(id.to_string()),
            Err(_) => Err(Diagnostic::error(
                "Invalid API token id",
                format!(
                    "{text:?} is not an API token id. Import a postern_api_token by its UUID \
                     (list them with GET /v1/tokens); its secret cannot be read back."
                ),
            )),
        }
    }

    fn id(token: &ApiToken) -> String {
        token.id.clone()
    }

    /// Tokens are never changed, so they have no versions.
    fn version(_token: &ApiToken) -> u64 {
        1
    }

    fn describe(token: &ApiToken) -> String {
        format!(
            "an API token named {:?} (id {}, role {})",
            token.name, token.id, token.role
        )
    }

    fn matches(_token: &ApiToken, _spec: &ApiTokenSpec) -> bool {
        // Names need not be unique: a create never conflicts, and nothing is adopted.
        false
    }

    fn scope(_id: &String) -> RolloutScope {
        RolloutScope::All
    }

    async fn create_object(
        &self,
        client: &Client,
        spec: &ApiTokenSpec,
    ) -> Result<ApiToken, ClientError> {
        client.create_api_token(spec).await
    }

    async fn read_object(&self, client: &Client, id: &String) -> Result<ApiToken, ClientError> {
        client.api_token(id).await
    }

    /// Every argument forces a new token, so there is never an update to make: the token
    /// is read back as it is.
    async fn replace_object(
        &self,
        client: &Client,
        id: &String,
        _spec: &ApiTokenSpec,
        _if_match: Option<u64>,
    ) -> Result<ApiToken, ClientError> {
        client.api_token(id).await
    }

    async fn delete_object(
        &self,
        client: &Client,
        id: &String,
        _if_match: Option<u64>,
    ) -> Result<(), ClientError> {
        client.delete_api_token(id).await
    }

    async fn find_object(
        &self,
        _client: &Client,
        _spec: &ApiTokenSpec,
    ) -> Result<Option<ApiToken>, ClientError> {
        Ok(None)
    }

    /// The secret only comes with the creation's answer; later reads keep the one in state.
    async fn state(
        &self,
        _data: &ProviderData,
        token: &ApiToken,
        known: Option<&ApiTokenModel>,
        _op: Operation<'_>,
        _diagnostics: &mut Diagnostics,
    ) -> ApiTokenModel {
        let secret = token
            .secret
            .as_ref()
            .map(|s| s.expose().to_owned())
            .or_else(|| known.and_then(|k| k.secret.clone()));
        // The edge writes the expiry in UTC; keep the configuration's spelling of the same
        // moment, so that plans stay empty.
        let expires_at = match (
            known.and_then(|k| k.expires_at.as_deref()),
            &token.expires_at,
        ) {
            (Some(written), Some(stored))
                if rules::parse_timestamp(written).ok() == rules::parse_timestamp(stored).ok() =>
            {
                Some(written.to_owned())
            }
            (_, stored) => stored.clone(),
        };
        ApiTokenModel {
            id: Some(token.id.clone()),
            name: token.name.clone(),
            role: token.role.as_str().to_owned(),
            expires_at,
            secret,
            created_at: Some(token.created_at.clone()),
        }
    }
}
