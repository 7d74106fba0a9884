//! The provider framework: protocol-free types and traits a resource author works with
//! (values, types, schemas, diagnostics, the resource / data source / ephemeral
//! resource / provider traits), standard planning, and the runtime the protocol layer
//! drives. Nothing here knows about gRPC, msgpack or prost.
//!
//! A resource implements [`Resource`] for the provider's data type (`D`, for Postern
//! `postern::provider_data::ProviderData`), declares its [`Schema`] with the
//! [`Attribute`] builder, reads config, plan and state as [`Value`]s (usually decoded
//! into a serde model with [`Value::decode`]), writes state with
//! [`StateResponse::set_state`], and reports problems as [`Diagnostics`]. It is added
//! to a [`Registry`]. The framework knows no provider built on it: nothing here uses
//! another module of the crate. (Postern's own managed resources implement `Resource`
//! through `postern::lifecycle::EdgeObject`, which writes their lifecycle once; the
//! example below is the trait itself.)
//!
//! ```ignore
//! use serde::{Deserialize, Serialize};
//! use crate::framework::*;
//! use crate::postern::provider_data::ProviderData;
//!
//! /// Terraform state of a postern_tunnel.
//! #[derive(Serialize, Deserialize)]
//! struct TunnelModel {
//!     id: Option<String>,                    // computed: None while unknown
//!     name: String,
//!     labels: BTreeMap<String, String>,       // optional + computed, default {}
//!     token: Option<String>,
//!     created_at: Option<String>,
//! }
//!
//! pub struct TunnelResource;
//!
//! #[async_trait]
//! impl Resource<ProviderData> for TunnelResource {
//!     fn type_name(&self) -> &'static str { "postern_tunnel" }
//!
//!     fn schema(&self) -> Schema {
//!         Schema::new("A tunnel: the identity a connector runs as.")
//!             .attribute("id", Attribute::string("The tunnel's UUID.").computed().stable())
//!             .attribute("name", Attribute::string("Unique name.").required())
//!             .attribute("labels", Attribute::map(Type::String, "Labels.")
//!                 .optional().computed().default(Value::map::<String>([])))
//!             .attribute("token", Attribute::string("Connector token.")
//!                 .computed().sensitive().stable())
//!             .attribute("created_at", Attribute::string("RFC 3339.").computed().stable())
//!     }
//!
//!     fn validate(&self, config: &Value, diags: &mut Diagnostics) {
//!         // Only judge what is known: config may hold unknowns.
//!         if let Some(name) = config.get("name").and_then(Value::as_str) { /* ... */ }
//!     }
//!
//!     async fn create(&self, data: &ProviderData, req: CreateRequest, resp: &mut StateResponse) {
//!         let Some(plan) = resp.diagnostics.check(req.planned.decode::<TunnelModel>()) else {
//!             return;
//!         };
//!         // ... call the API with `data`, then:
//!         resp.set_state(&TunnelModel { id: Some(new_id), ..plan });
//!     }
//!
//!     async fn read(&self, data: &ProviderData, req: ReadRequest, resp: &mut StateResponse) {
//!         // Found: resp.set_state(&model). Deleted outside Terraform: resp.remove().
//!     }
//!
//!     async fn update(&self, data: &ProviderData, req: UpdateRequest, resp: &mut StateResponse) {}
//!     async fn delete(&self, data: &ProviderData, req: DeleteRequest, diags: &mut Diagnostics) {}
//!
//!     async fn import(&self, _data: &ProviderData, id: &str, resp: &mut StateResponse) {
//!         let mut state = Value::null_object(resp.value_type());
//!         state.set_attribute("id", id);
//!         resp.set_value(state); // Terraform calls read next
//!     }
//! }
//! ```

mod data_source;
mod diagnostics;
mod ephemeral;
mod json;
mod model;
mod number;
pub(crate) mod plan;
mod provider;
mod registry;
mod resource;
mod runtime;
mod schema;
mod types;
mod value;

pub use data_source::{DataSource, DataSourceReadRequest};
pub use diagnostics::{AttributePath, Diagnostic, Diagnostics, Severity};
pub use ephemeral::{
    CloseRequest, EphemeralResource, OpenRequest, OpenResponse, RenewRequest, RenewResponse,
};
pub use json::{ExtraAttributes, decode_json};
pub use number::{Number, NumberError};
pub use provider::{ConfigureRequest, Provider};
pub use registry::Registry;
pub use resource::{
    CreateRequest, DeleteRequest, Plan, PlanRequest, ReadRequest, Resource, StateResponse,
    UpdateRequest,
};
pub use runtime::Runtime;
pub use schema::{Attribute, Attributes, Schema};
pub use types::Type;
pub use value::{Value, ValueError};

pub(crate) use diagnostics::PathStep;
pub(crate) use runtime::{Kind, StoredState};
pub(crate) use schema::{AttributeKind, Nesting};

pub use async_trait::async_trait;
