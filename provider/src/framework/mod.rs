//! The provider framework: protocol-free types and traits a resource author works with
//! (values, types, schemas, diagnostics, the resource / data source / ephemeral
//! resource / provider traits), standard planning, and the runtime the protocol layer
//! drives. Nothing here knows about gRPC, msgpack or prost.
//!
//! A resource implements [`Resource`] with the provider's data type (`D`), declares
//! its [`Schema`] with the [`Attribute`] builder, reads config, plan and state as
//! [`Value`]s (usually decoded into a serde model with [`Value::decode`]) and reports
//! problems as [`Diagnostics`]. It is registered in a [`Registry`].

mod data_source;
mod diagnostics;
mod ephemeral;
mod model;
mod number;
pub mod plan;
mod provider;
mod registry;
mod resource;
mod runtime;
mod schema;
mod types;
mod value;

pub use data_source::{DataSource, DataSourceReadRequest};
pub use diagnostics::{AttributePath, Diagnostic, Diagnostics, PathStep, Severity};
pub use ephemeral::{
    CloseRequest, EphemeralResource, OpenRequest, OpenResponse, RenewRequest, RenewResponse,
};
pub use number::{Number, NumberError};
pub use provider::{ConfigureRequest, Provider};
pub use registry::{BoxedDataSource, BoxedEphemeralResource, BoxedResource, Registry};
pub use resource::{
    CreateRequest, DeleteRequest, Plan, PlanRequest, ReadRequest, Resource, StateResponse,
    UpdateRequest,
};
pub use runtime::{Kind, PlanOutcome, Runtime, StateOutcome, StoredState};
pub use schema::{Attribute, AttributeKind, Attributes, Nesting, Schema};
pub use types::{Type, TypeError};
pub use value::{Value, ValueError};

pub use async_trait::async_trait;
