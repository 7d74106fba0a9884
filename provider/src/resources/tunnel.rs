//! `postern_tunnel`: a tunnel, the identity connectors enrol as. Its `token` is the one
//! string a connector needs; it is sensitive, known from creation on, and fetched again
//! on import, unless `store_token = false` keeps it out of state altogether (connectors
//! then enrol with single-use tokens from the `postern_enrollment_token` ephemeral
//! resource).

use std::collections::BTreeMap;

use postern_schema::api::{ErrorCode, Tunnel, TunnelSpec};
use postern_schema::client::ClientError;
use postern_schema::ids::TunnelId;
use serde::{Deserialize, Serialize};

use super::version;
use crate::api::{Operation, diagnose};
use crate::contract::{Findings, check_labels, known_str};
use crate::framework::{
    Attribute, AttributePath, CreateRequest, DeleteRequest, Diagnostics, Plan, PlanRequest,
    ReadRequest, Resource, Schema, StateResponse, Type, UpdateRequest, Value, async_trait,
};
use crate::postern::ProviderData;
use crate::rollout::{self, Change};

/// Terraform state of a `postern_tunnel` (no `Debug`: it holds the token).
#[derive(Clone, Serialize, Deserialize)]
pub struct TunnelModel {
    /// The tunnel's UUID; `None` until created.
    pub id: Option<String>,
    /// Unique name.
    pub name: String,
    /// Labels; `None` only while unknown.
    pub labels: Option<BTreeMap<String, String>>,
    /// The connector token; `None` when `store_token` is false.
    pub token: Option<String>,
    /// Whether the token is kept in state; `None` (an imported or older state) means yes.
    pub store_token: Option<bool>,
    /// RFC 3339 creation time.
    pub created_at: Option<String>,
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
pub struct TunnelResource;

#[async_trait]
impl Resource<ProviderData> for TunnelResource {
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
    /// tunnel gets plan-time warnings about the routes it moves (see [`crate::live`]).
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
        crate::live::check_tunnel_labels(&data.live, id, name, &labels, &mut plan.diagnostics)
            .await;
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

    async fn create(&self, data: &ProviderData, req: CreateRequest, resp: &mut StateResponse) {
        // Read the plan into the model.
        let Some(plan) = resp.diagnostics.check(req.planned.decode::<TunnelModel>()) else {
            return;
        };
        let spec = plan.spec();
        let ty = resp.value_type().clone();
        let op = Operation {
            action: "creating",
            kind: "tunnel",
            object: Some(&spec.name),
            value_type: &ty,
        };
        let store = plan.stores_token();
        let api = data.api.tracking();
        match api.create_tunnel(&spec).await {
            Ok(tunnel) => {
                tracing::info!(tunnel_id = %tunnel.id, name = %spec.name, "tunnel created");
                let token = match tunnel.token.clone() {
                    _ if !store => None,
                    Some(token) => Some(token),
                    None => fetch_token(data, tunnel.id, op, &mut resp.diagnostics).await,
                };
                resp.set_state(&TunnelModel::from_tunnel(&tunnel, token, store));
                resp.private = version::encode(tunnel.version);
                rollout::wait(data, &api, change(tunnel.id), &mut resp.diagnostics).await;
            }
            Err(error) if error.code() == Some(ErrorCode::Conflict) => {
                adopt(data, &spec, store, &error, op, resp).await;
            }
            Err(error) => resp.diagnostics.push(diagnose(&error, op)),
        }
    }

    async fn read(&self, data: &ProviderData, req: ReadRequest, resp: &mut StateResponse) {
        let Some(state) = resp.diagnostics.check(req.state.decode::<TunnelModel>()) else {
            return;
        };
        let Some(id) = parse_id(state.id.as_deref(), &mut resp.diagnostics) else {
            return;
        };
        let ty = resp.value_type().clone();
        let id_text = id.to_string();
        let op = Operation {
            action: "reading",
            kind: "tunnel",
            object: Some(&id_text),
            value_type: &ty,
        };
        match data.api.tunnel(id).await {
            Ok(tunnel) => {
                let store = state.stores_token();
                let token = match state.token {
                    _ if !store => None,
                    Some(token) => Some(token),
                    None => fetch_token(data, id, op, &mut resp.diagnostics).await,
                };
                resp.set_state(&TunnelModel::from_tunnel(&tunnel, token, store));
                resp.private = version::encode(tunnel.version);
            }
            Err(error) if error.is_not_found() => {
                tracing::info!(tunnel_id = %id, "tunnel deleted outside Terraform");
                resp.remove();
            }
            Err(error) => resp.diagnostics.push(diagnose(&error, op)),
        }
    }

    async fn update(&self, data: &ProviderData, req: UpdateRequest, resp: &mut StateResponse) {
        let Some(plan) = resp.diagnostics.check(req.planned.decode::<TunnelModel>()) else {
            return;
        };
        let Some(id) = parse_id(plan.id.as_deref(), &mut resp.diagnostics) else {
            return;
        };
        let ty = resp.value_type().clone();
        let id_text = id.to_string();
        let op = Operation {
            action: "updating",
            kind: "tunnel",
            object: Some(&id_text),
            value_type: &ty,
        };
        let if_match = version::decode(&req.planned_private);
        let store = plan.stores_token();
        let api = data.api.tracking();
        match api.replace_tunnel(id, &plan.spec(), if_match).await {
            Ok(tunnel) => {
                tracing::info!(tunnel_id = %id, "tunnel updated");
                let token = match plan.token.clone() {
                    _ if !store => None,
                    Some(token) => Some(token),
                    None => fetch_token(data, id, op, &mut resp.diagnostics).await,
                };
                resp.set_state(&TunnelModel::from_tunnel(&tunnel, token, store));
                resp.private = version::encode(tunnel.version);
                rollout::wait(data, &api, change(id), &mut resp.diagnostics).await;
            }
            Err(error) => resp.diagnostics.push(diagnose(&error, op)),
        }
    }

    async fn delete(&self, data: &ProviderData, req: DeleteRequest, diagnostics: &mut Diagnostics) {
        let Some(prior) = diagnostics.check(req.prior.decode::<TunnelModel>()) else {
            return;
        };
        let Some(id) = parse_id(prior.id.as_deref(), diagnostics) else {
            return;
        };
        let ty = self.schema().value_type();
        let id_text = id.to_string();
        let op = Operation {
            action: "deleting",
            kind: "tunnel",
            object: Some(&id_text),
            value_type: &ty,
        };
        match data
            .api
            .delete_tunnel(id, version::decode(&req.private))
            .await
        {
            Ok(()) => tracing::info!(tunnel_id = %id, "tunnel deleted"),
            Err(error) if error.is_not_found() => {}
            Err(error) => diagnostics.push(diagnose(&error, op)),
        }
    }

    async fn import(&self, data: &ProviderData, id: &str, resp: &mut StateResponse) {
        let Ok(tunnel_id) = id.trim().parse::<TunnelId>() else {
            resp.diagnostics.error(
                "Invalid tunnel id",
                format!(
                    "{id:?} is not a tunnel id. Import a postern_tunnel by its UUID, e.g. \
                     `terraform import postern_tunnel.web 3f2c…`; list tunnels with \
                     GET /v1/tunnels or the postern_tunnels data source."
                ),
            );
            return;
        };
        let ty = resp.value_type().clone();
        let op = Operation {
            action: "importing",
            kind: "tunnel",
            object: Some(id),
            value_type: &ty,
        };
        match data.api.tunnel(tunnel_id).await {
            Ok(tunnel) => {
                let token = fetch_token(data, tunnel_id, op, &mut resp.diagnostics).await;
                resp.set_state(&TunnelModel::from_tunnel(&tunnel, token, true));
                resp.private = version::encode(tunnel.version);
            }
            Err(error) if error.is_not_found() => resp.diagnostics.error(
                "Cannot import non-existent remote object",
                format!("The edge has no tunnel with id {tunnel_id}."),
            ),
            Err(error) => resp.diagnostics.push(diagnose(&error, op)),
        }
    }
}

/// `GET /v1/tunnels/{id}/token`; a failure becomes a diagnostic and `None`.
async fn fetch_token(
    data: &ProviderData,
    id: TunnelId,
    op: Operation<'_>,
    diagnostics: &mut Diagnostics,
) -> Option<String> {
    match data.api.tunnel_token(id).await {
        Ok(token) => Some(token.expose().to_owned()),
        Err(error) => {
            diagnostics.push(diagnose(&error, op));
            None
        }
    }
}

/// A create answered 409 because the name is taken. If the existing tunnel is exactly
/// what was planned, it is most likely ours from an interrupted apply: adopt it, with a
/// warning. Otherwise say how to import it.
async fn adopt(
    data: &ProviderData,
    spec: &TunnelSpec,
    store_token: bool,
    conflict: &ClientError,
    op: Operation<'_>,
    resp: &mut StateResponse,
) {
    let existing = match data.api.list_tunnels(None).await {
        Ok(tunnels) => tunnels.into_iter().find(|t| t.spec.name == spec.name),
        Err(error) => {
            resp.diagnostics.push(diagnose(&error, op));
            return;
        }
    };
    let Some(tunnel) = existing else {
        resp.diagnostics.push(diagnose(conflict, op));
        return;
    };
    if tunnel.spec != *spec {
        resp.diagnostics.error_at(
            AttributePath::root("name"),
            "A tunnel with this name already exists",
            format!(
                "The edge already has a tunnel named {:?} (id {}) with different labels, and \
                 Terraform does not manage it. To manage it, import it: \
                 `terraform import <address> {}` or an `import {{ to = <address>, id = \"{}\" }}` \
                 block. Otherwise choose another name.",
                spec.name, tunnel.id, tunnel.id, tunnel.id
            ),
        );
        return;
    }
    let token = match store_token {
        true => fetch_token(data, tunnel.id, op, &mut resp.diagnostics).await,
        false => None,
    };
    tracing::warn!(tunnel_id = %tunnel.id, name = %spec.name, "adopted an existing tunnel");
    resp.set_state(&TunnelModel::from_tunnel(&tunnel, token, store_token));
    resp.private = version::encode(tunnel.version);
    resp.diagnostics.warning(
        "Adopted an existing tunnel",
        format!(
            "A tunnel named {:?} (id {}) already existed on the edge with exactly the planned \
             name and labels, most likely created by an earlier apply that was interrupted \
             before Terraform recorded it. Terraform now manages that tunnel instead of \
             creating another.",
            spec.name, tunnel.id
        ),
    );
}

/// What a write of tunnel `id` changes, for [`rollout::wait`]: everything it serves (its
/// labels decide which routed hostnames it serves).
fn change(id: TunnelId) -> Change {
    Change {
        scope: postern_schema::api::RolloutScope::Tunnel(id),
        subject: format!("tunnel {id}"),
    }
}

/// The tunnel id recorded in state.
fn parse_id(id: Option<&str>, diagnostics: &mut Diagnostics) -> Option<TunnelId> {
    let parsed = id.and_then(|id| id.parse::<TunnelId>().ok());
    if parsed.is_none() {
        diagnostics.error_at(
            AttributePath::root("id"),
            "Invalid tunnel id in state",
            format!(
                "The state holds {id:?}, which is not a tunnel UUID. Remove the resource from \
                 the state (`terraform state rm`) and import the tunnel by its id."
            ),
        );
    }
    parsed
}
