//! `data "postern_tunnel"`: one tunnel looked up by `id` or by `name`. It exposes the
//! tunnel's attributes but never its token.

use std::collections::BTreeMap;

use postern_schema::api::Tunnel;
use postern_schema::ids::TunnelId;
use serde::{Deserialize, Serialize};

use crate::framework::{
    Attribute, AttributePath, DataSource, DataSourceReadRequest, Diagnostics, Schema,
    StateResponse, Type, Value, async_trait,
};
use crate::postern::api_error::{Operation, diagnose};
use crate::postern::contract::{Findings, known_str};
use crate::postern::provider_data::ProviderData;

/// The data source's state.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct TunnelDataModel {
    /// The tunnel's UUID.
    pub(crate) id: Option<String>,
    /// Its name.
    pub(crate) name: Option<String>,
    /// Its labels.
    pub(crate) labels: Option<BTreeMap<String, String>>,
    /// RFC 3339 creation time.
    pub(crate) created_at: Option<String>,
}

impl From<&Tunnel> for TunnelDataModel {
    fn from(tunnel: &Tunnel) -> Self {
        Self {
            id: Some(tunnel.id.to_string()),
            name: Some(tunnel.spec.name.clone()),
            labels: Some(tunnel.spec.labels.clone()),
            created_at: Some(tunnel.created_at.clone()),
        }
    }
}

/// The `postern_tunnel` data source.
pub(crate) struct TunnelDataSource;

#[async_trait]
impl DataSource<ProviderData> for TunnelDataSource {
    fn type_name(&self) -> &'static str {
        "postern_tunnel"
    }

    fn schema(&self) -> Schema {
        Schema::new(
            "Looks up one tunnel by `id` or by `name` (set exactly one). The token is not \
             exposed: manage the tunnel with the `postern_tunnel` resource to get it.",
        )
        .attribute(
            "id",
            Attribute::string("The tunnel's UUID. Set this or `name`.")
                .optional()
                .computed(),
        )
        .attribute(
            "name",
            Attribute::string("The tunnel's name. Set this or `id`.")
                .optional()
                .computed(),
        )
        .attribute(
            "labels",
            Attribute::map(Type::String, "The tunnel's labels.").computed(),
        )
        .attribute(
            "created_at",
            Attribute::string("When the tunnel was created (RFC 3339).").computed(),
        )
    }

    fn validate(&self, config: &Value, diagnostics: &mut Diagnostics) {
        let id = config.get("id").unwrap_or(&Value::Null);
        let name = config.get("name").unwrap_or(&Value::Null);
        let mut findings = Findings::new();
        if id.is_null() && name.is_null() {
            findings.add(AttributePath::root("name"), "set id or name");
        } else if !id.is_null() && !name.is_null() && !id.is_unknown() && !name.is_unknown() {
            findings.add(AttributePath::root("name"), "set id or name, not both");
        }
        if let Some(id) = known_str(config, "id")
            && id.parse::<TunnelId>().is_err()
        {
            findings.add(
                AttributePath::root("id"),
                format!("{id:?} is not a tunnel UUID"),
            );
        }
        if let Some(name) = known_str(config, "name") {
            findings.rule(
                AttributePath::root("name"),
                postern_schema::rules::check_name(name),
            );
        }
        findings.report(diagnostics);
    }

    async fn read(
        &self,
        data: &ProviderData,
        req: DataSourceReadRequest,
        resp: &mut StateResponse,
    ) {
        let Some(config) = resp
            .diagnostics
            .check(req.config.decode::<TunnelDataModel>())
        else {
            return;
        };
        let ty = resp.value_type().clone();
        let object = config.id.clone().or(config.name.clone());
        let op = Operation {
            action: "reading",
            kind: "tunnel",
            object: object.as_deref(),
            value_type: &ty,
        };
        let found = match (&config.id, &config.name) {
            (Some(id), _) => {
                let Ok(id) = id.parse::<TunnelId>() else {
                    resp.diagnostics.error_at(
                        AttributePath::root("id"),
                        "Invalid tunnel id",
                        format!("{id:?} is not a tunnel UUID."),
                    );
                    return;
                };
                match data.client.tunnel(id).await {
                    Ok(tunnel) => Some(tunnel),
                    Err(error) if error.is_not_found() => None,
                    Err(error) => {
                        resp.diagnostics.push(diagnose(&error, op));
                        return;
                    }
                }
            }
            (None, Some(name)) => match data.client.list_tunnels(None).await {
                Ok(tunnels) => tunnels.into_iter().find(|t| t.spec.name == *name),
                Err(error) => {
                    resp.diagnostics.push(diagnose(&error, op));
                    return;
                }
            },
            (None, None) => {
                resp.diagnostics
                    .error_at(AttributePath::root("name"), "Set id or name", "");
                return;
            }
        };
        match found {
            Some(tunnel) => resp.set_state(&TunnelDataModel::from(&tunnel)),
            None => resp.diagnostics.error(
                "No such tunnel",
                format!(
                    "The edge has no tunnel {}. Check the id or name, or create the tunnel \
                     with a postern_tunnel resource first.",
                    object
                        .as_deref()
                        .map(|o| format!("{o:?}"))
                        .unwrap_or_default()
                ),
            ),
        }
    }
}
