//! `data "postern_edge"`: what the edge serves: its DNS zones, the addresses DNS answers
//! for hostnames, where connectors dial in, and its CA certificate.

use serde::{Deserialize, Serialize};

use crate::framework::{
    Attribute, DataSource, DataSourceReadRequest, Schema, StateResponse, Type, async_trait,
};
use crate::postern::api_error::{Operation, diagnose};
use crate::postern::provider_data::ProviderData;

/// The data source's state.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct EdgeModel {
    /// DNS zones.
    pub(crate) zones: Vec<String>,
    /// Public addresses.
    pub(crate) public_addresses: Vec<String>,
    /// Tunnel addresses.
    pub(crate) tunnel_addresses: Vec<String>,
    /// CA certificate (PEM).
    pub(crate) ca_cert_pem: String,
}

/// The `postern_edge` data source.
pub(crate) struct EdgeDataSource;

#[async_trait]
impl DataSource<ProviderData> for EdgeDataSource {
    fn type_name(&self) -> &'static str {
        "postern_edge"
    }

    fn schema(&self) -> Schema {
        Schema::new("The edge the provider talks to: its zones, addresses and CA certificate.")
            .attribute(
                "zones",
                Attribute::list(
                    Type::String,
                    "The DNS zones the edge is authoritative for; hostnames must lie inside \
                     one of them.",
                )
                .computed(),
            )
            .attribute(
                "public_addresses",
                Attribute::list(
                    Type::String,
                    "The IP addresses the edge's DNS answers for hostnames.",
                )
                .computed(),
            )
            .attribute(
                "tunnel_addresses",
                Attribute::list(
                    Type::String,
                    "Where connectors dial in (`host:port`), as written into tunnel tokens.",
                )
                .computed(),
            )
            .attribute(
                "ca_cert_pem",
                Attribute::string(
                    "The edge's CA certificate (PEM), which connectors pin and which issues \
                     the HTTPS certificates of hostnames.",
                )
                .computed(),
            )
    }

    async fn read(
        &self,
        data: &ProviderData,
        _req: DataSourceReadRequest,
        resp: &mut StateResponse,
    ) {
        let ty = resp.value_type().clone();
        let op = Operation {
            action: "reading",
            kind: "edge",
            object: None,
            value_type: &ty,
        };
        match data.client.edge().await {
            Ok(edge) => resp.set_state(&EdgeModel {
                zones: edge.zones,
                public_addresses: edge.public_addresses,
                tunnel_addresses: edge.tunnel_addresses,
                ca_cert_pem: edge.ca_cert_pem,
            }),
            Err(error) => resp.diagnostics.push(diagnose(&error, op)),
        }
    }
}
