//! `data "postern_tunnels"`: discovery by label selector. Every tunnel whose labels
//! carry all of `selector`'s keys and values (all tunnels for an empty selector), ordered
//! by name, with its live connector count.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::framework::{
    Attribute, AttributePath, Attributes, DataSource, DataSourceReadRequest, Diagnostics, Schema,
    StateResponse, Type, Value, async_trait,
};
use crate::postern::api_error::{Operation, diagnose};
use crate::postern::contract::{Findings, check_labels};
use crate::postern::provider_data::ProviderData;

/// The data source's state.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct TunnelsModel {
    /// The label selector.
    pub(crate) selector: Option<BTreeMap<String, String>>,
    /// The matching tunnels.
    pub(crate) tunnels: Option<Vec<TunnelSummary>>,
}

/// One element of `tunnels`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct TunnelSummary {
    /// UUID.
    pub(crate) id: String,
    /// Name.
    pub(crate) name: String,
    /// Labels.
    pub(crate) labels: BTreeMap<String, String>,
    /// Live connector connections.
    pub(crate) connections: u32,
}

/// The `postern_tunnels` data source.
pub(crate) struct TunnelsDataSource;

#[async_trait]
impl DataSource<ProviderData> for TunnelsDataSource {
    fn type_name(&self) -> &'static str {
        "postern_tunnels"
    }

    fn schema(&self) -> Schema {
        Schema::new(
            "Discovers tunnels by label selector: every tunnel whose labels carry all of \
             `selector`'s keys and values, ordered by name.",
        )
        .attribute(
            "selector",
            Attribute::map(
                Type::String,
                "Labels a tunnel must all carry, e.g. `{ release = \"canary\" }`. Unset or \
                 empty selects every tunnel.",
            )
            .optional(),
        )
        .attribute(
            "tunnels",
            Attribute::list_nested(
                Attributes::new()
                    .with("id", Attribute::string("The tunnel's UUID.").computed())
                    .with("name", Attribute::string("The tunnel's name.").computed())
                    .with(
                        "labels",
                        Attribute::map(Type::String, "The tunnel's labels.").computed(),
                    )
                    .with(
                        "connections",
                        Attribute::number("Live connector connections when the data was read.")
                            .computed(),
                    ),
                "The matching tunnels, ordered by name.",
            )
            .computed(),
        )
    }

    fn validate(&self, config: &Value, diagnostics: &mut Diagnostics) {
        let mut findings = Findings::new();
        check_labels(
            &mut findings,
            &AttributePath::root("selector"),
            config.get("selector"),
        );
        findings.report(diagnostics);
    }

    async fn read(
        &self,
        data: &ProviderData,
        req: DataSourceReadRequest,
        resp: &mut StateResponse,
    ) {
        let Some(config) = resp.diagnostics.check(req.config.decode::<TunnelsModel>()) else {
            return;
        };
        let ty = resp.value_type().clone();
        let op = Operation {
            action: "listing",
            kind: "tunnels",
            object: None,
            value_type: &ty,
        };
        let mut tunnels = match data.client.list_tunnels(config.selector.as_ref()).await {
            Ok(tunnels) => tunnels,
            Err(error) => {
                resp.diagnostics.push(diagnose(&error, op));
                return;
            }
        };
        tunnels.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        let summaries = tunnels
            .into_iter()
            .map(|t| TunnelSummary {
                id: t.id.to_string(),
                name: t.spec.name,
                labels: t.spec.labels,
                connections: t.connections,
            })
            .collect();
        resp.set_state(&TunnelsModel {
            selector: config.selector,
            tunnels: Some(summaries),
        });
    }
}
