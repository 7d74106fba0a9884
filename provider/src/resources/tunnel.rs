//! `postern_tunnel`: a tunnel, the identity connectors enrol as. Its `token` is the one
//! string a connector needs; it is sensitive, known from creation on, and fetched again
//! on import, unless `store_token = false` keeps it out of state altogether (connectors
//! then enrol with single-use tokens from the `postern_enrollment_token` ephemeral
//! resource).

use std::collections::BTreeMap;

use postern_schema::api::{RolloutScope, Tunnel, TunnelSpec};
use postern_schema::client::{Client, ClientError};
use postern_schema::ids::TunnelId;
use serde::{Deserialize, Serialize};

use crate::framework::{
    Attribute, AttributePath, Diagnostic, Diagnostics, Plan, PlanRequest, Schema, Type, Value,
    async_trait,
};
use crate::postern::api_error::{Operation, diagnose};
use crate::postern::contract::{Findings, check_labels, known_str};
use crate::postern::lifecycle::EdgeObject;
use crate::postern::live;
use crate::postern::provider_data::ProviderData;

/// Terraform state of a `postern_tunnel` (no `Debug`: it holds the token).
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct TunnelModel {
    /// The tunnel's UUID; `None` until created.
    pub(crate) id: Option<String>,
    /// Unique name.
    pub(crate) name: String,
    /// Labels; `None` only while unknown.
    pub(crate) labels: Option<BTreeMap<String, String>>,
    /// The connector token; `None` when `store_token` is false.
    pub(crate) token: Option<String>,
    /// Whether the token is kept in state; `None` (an imported or older state) means yes.
    pub(crate) store_token: Option<bool>,
    /// RFC 3339 creation time.
    pub(crate) created_at: Option<String>,
}

impl TunnelModel {
    /// What the provider writes to the edge.
    fn spec(&self) -> TunnelSpec {
        TunnelSpec {
            name: self.name.clone(),
            labels: self.labels.clone().unwrap_or_default(),
        }
    }

    /// Whether the token belongs in state.
    fn stores_token(&self) -> bool {
        self.store_token != Some(false)
    }

    /// The state for a tunnel as the edge returned it; `token` only when `store_token`.
    fn from_tunnel(tunnel: &Tunnel, token: Option<String>, store_token: bool) -> Self {
        Self {
            id: Some(tunnel.id.to_string()),
            name: tunnel.spec.name.clone(),
            labels: Some(tunnel.spec.labels.clone()),
            token: token.filter(|_| store_token),
            store_token: Some(store_token),
            created_at: Some(tunnel.created_at.clone()),
        }
    }
}

/// The `postern_tunnel` resource.
pub(crate) struct TunnelResource;

#[async_trait]
impl EdgeObject for TunnelResource {
    type Model = TunnelModel;
    type Spec = TunnelSpec;
    type Object = Tunnel;
    type Id = TunnelId;

    const KIND: &'static str = "tunnel";
    const NAME_ATTRIBUTE: &'static str = "name";
    /// Deleting a tunnel drops its connectors: there is nothing left to apply.
    const WAITS_AFTER_DELETE: bool = false;

    fn type_name(&self) -> &'static str {
        "postern_tunnel"
    }

    fn schema(&self) -> Schema {
        Schema::new(
            "A tunnel: the identity that `postern` connectors enrol as. Hostnames are served \
             by a tunnel directly (`tunnel_id`) or through label selectors (`routes`).",
        )
        .version(1)
        .attribute(
            "id",
            Attribute::string("The tunnel's UUID, assigned by the edge.")
                .computed()
                .stable(),
        )
        .attribute(
            "name",
            Attribute::string(
                "Unique name among tunnels: 1 to 63 lowercase letters, digits and `-`, \
                 starting and ending with a letter or digit. Can be changed in place.",
            )
            .required(),
        )
        .attribute(
            "labels",
            Attribute::map(
                Type::String,
                "Kubernetes-style labels that route selectors match, e.g. \
                 `{ release = \"canary\" }`. Keys are an optional DNS-subdomain prefix and `/` \
                 plus a name of at most 63 characters; values are empty or at most 63 \
                 characters of letters, digits, `-`, `_` and `.`. Defaults to `{}`.",
            )
            .optional()
            .computed()
            .default(Value::map::<String>([])),
        )
        .attribute(
            "token",
            Attribute::string(
                "The single opaque string a connector needs (`postern tunnel run --token …`): \
                 edge addresses, tunnel id, enrolment secret and CA fingerprint. Sensitive. \
                 Null when `store_token` is false.",
            )
            .computed()
            .sensitive()
            .stable(),
        )
        .attribute(
            "store_token",
            Attribute::bool(
                "Whether Terraform keeps the long-lived `token` in state (the default, `true`). \
                 With `false`, `token` is null in plan and state, so a leaked state file \
                 enrols no connector; the trade-off is that Terraform cannot hand the token \
                 to anything. Connectors then enrol with single-use, short-lived tokens from \
                 the `postern_enrollment_token` ephemeral resource (passed, for instance, to \
                 a secret store's write-only attribute), or an operator reads the token with \
                 `GET /v1/tunnels/{id}/token`.",
            )
            .optional()
            .computed()
            .default(Value::Bool(true)),
        )
        .attribute(
            "created_at",
            Attribute::string("When the tunnel was created (RFC 3339).")
                .computed()
                .stable(),
        )
    }

    fn validate(&self, config: &Value, diagnostics: &mut Diagnostics) {
        let mut findings = Findings::new();
        if let Some(name) = known_str(config, "name") {
            findings.rule(
                AttributePath::root("name"),
                postern_schema::rules::check_name(name),
            );
        }
        check_labels(
            &mut findings,
            &AttributePath::root("labels"),
            config.get("labels"),
        );
        // `store_token` is Terraform's business only; the edge never sees it.
        let mut spec = config.clone();
        spec.set_attribute("store_token", Value::Null);
        findings.schema::<TunnelSpec>(&spec, &self.schema().value_type());
        findings.report(diagnostics);
    }

    /// With `store_token = false` the token is planned null; when it goes back to `true`
    /// the token is fetched again ("known after apply"). A label change of an existing
    /// tunnel gets plan-time warnings about the routes it moves (see [`live`]).
    async fn plan(&self, data: &ProviderData, req: &PlanRequest, plan: &mut Plan) {
        let store = plan.planned.get("store_token").and_then(Value::as_bool);
        if let Some(token) = plan.planned.get_mut("token") {
            match store {
                Some(false) => *token = Value::Null,
                Some(true) if token.is_null() => *token = Value::Unknown,
                _ => {}
            }
        }
        let Some(prior) = &req.prior else {
            return;
        };
        let labels = plan.planned.get("labels");
        if labels == prior.get("labels") {
            return;
        }
        let (Some(id), Some(name), Some(entries)) = (
            prior.get("id").and_then(Value::as_str),
            plan.planned.get("name").and_then(Value::as_str),
            labels.and_then(Value::as_entries),
        ) else {
            return;
        };
        let mut labels = BTreeMap::new();
        for (key, value) in entries {
            let Some(value) = value.as_str() else {
                return;
            };
            labels.insert(key.clone(), value.to_owned());
        }
        live::check_tunnel_labels(&data.live, id, name, &labels, &mut plan.diagnostics).await;
    }

    /// Version 0 states predate `store_token`: they kept the token.
    fn upgrade_state(
        &self,
        _version: i64,
        mut state: serde_json::Value,
        _diagnostics: &mut Diagnostics,
    ) -> Option<serde_json::Value> {
        if let Some(object) = state.as_object_mut() {
            object
                .entry("store_token")
                .or_insert(serde_json::Value::Bool(true));
        }
        Some(state)
    }

    fn spec(&self, model: &TunnelModel) -> Result<TunnelSpec, Diagnostic> {
        Ok(model.spec())
    }

    fn spec_name(spec: &TunnelSpec) -> &str {
        &spec.name
    }

    fn state_id(model: &TunnelModel) -> Option<&str> {
        model.id.as_deref()
    }

    fn parse_import_id(&self, text: &str) -> Result<TunnelId, Diagnostic> {
        text.trim().parse().map_err(|_| {
            Diagnostic::error(
                "Invalid tunnel id",
                format!(
                    "{text:?} is not a tunnel id. Import a postern_tunnel by its UUID, e.g. \
                     `terraform import postern_tunnel.web 3f2c…`; list tunnels with \
                     GET /v1/tunnels or the postern_tunnels data source."
                ),
            )
        })
    }

    fn id(tunnel: &Tunnel) -> TunnelId {
        tunnel.id
    }

    fn version(tunnel: &Tunnel) -> u64 {
        tunnel.version
    }

    fn describe(tunnel: &Tunnel) -> String {
        format!("a tunnel named {:?} (id {})", tunnel.spec.name, tunnel.id)
    }

    fn matches(tunnel: &Tunnel, spec: &TunnelSpec) -> bool {
        tunnel.spec == *spec
    }

    /// Everything the tunnel serves: its labels decide which routed hostnames it serves.
    fn scope(id: &TunnelId) -> RolloutScope {
        RolloutScope::Tunnel(*id)
    }

    async fn create_object(
        &self,
        client: &Client,
        spec: &TunnelSpec,
    ) -> Result<Tunnel, ClientError> {
        client.create_tunnel(spec).await
    }

    async fn read_object(&self, client: &Client, id: &TunnelId) -> Result<Tunnel, ClientError> {
        client.tunnel(*id).await
    }

    async fn replace_object(
        &self,
        client: &Client,
        id: &TunnelId,
        spec: &TunnelSpec,
        if_match: Option<u64>,
    ) -> Result<Tunnel, ClientError> {
        client.replace_tunnel(*id, spec, if_match).await
    }

    async fn delete_object(
        &self,
        client: &Client,
        id: &TunnelId,
        if_match: Option<u64>,
    ) -> Result<(), ClientError> {
        client.delete_tunnel(*id, if_match).await
    }

    async fn find_object(
        &self,
        client: &Client,
        spec: &TunnelSpec,
    ) -> Result<Option<Tunnel>, ClientError> {
        let tunnels = client.list_tunnels(None).await?;
        Ok(tunnels.into_iter().find(|t| t.spec.name == spec.name))
    }

    /// The token comes from what Terraform had, else from the edge's answer (a create's
    /// carries it), else from `GET /v1/tunnels/{id}/token`; none when `store_token` is false.
    async fn state(
        &self,
        data: &ProviderData,
        tunnel: &Tunnel,
        known: Option<&TunnelModel>,
        op: Operation<'_>,
        diagnostics: &mut Diagnostics,
    ) -> TunnelModel {
        let store = known.is_none_or(TunnelModel::stores_token);
        let token = match known.and_then(|k| k.token.clone()).or(tunnel.token.clone()) {
            _ if !store => None,
            Some(token) => Some(token),
            None => fetch_token(data, tunnel.id, op, diagnostics).await,
        };
        TunnelModel::from_tunnel(tunnel, token, store)
    }
}

/// `GET /v1/tunnels/{id}/token`; a failure becomes a diagnostic and `None`.
async fn fetch_token(
    data: &ProviderData,
    id: TunnelId,
    op: Operation<'_>,
    diagnostics: &mut Diagnostics,
) -> Option<String> {
    match data.client.tunnel_token(id).await {
        Ok(token) => Some(token.expose().to_owned()),
        Err(error) => {
            diagnostics.push(diagnose(&error, op));
            None
        }
    }
}
