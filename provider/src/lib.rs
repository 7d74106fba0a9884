//! The Postern Terraform provider: a Terraform plugin (tfplugin6 over gRPC with
//! go-plugin's AutoMTLS handshake) serving Postern's resources.
//!
//! - `protocol` speaks Terraform's wire protocol and knows no resource;
//! - [`framework`] is protocol-free: values, schemas, planning, and the traits a
//!   resource, data source or ephemeral resource implements;
//! - `postern` is everything that knows the edge's control API: the data each type
//!   receives, the lifecycle the edge's objects share, errors as diagnostics, the edge's
//!   validation run offline, the wait for connectors after a write, plan-time warnings;
//! - `resources` and `data_sources` hold Postern's types, and `provider` assembles
//!   them with the provider block into the [`registry`];
//! - [`logging`] writes the JSON log lines Terraform reads from stderr, and [`docs`]
//!   the registry documentation.
//!
//! Module graph (an arrow: may use): `provider -> resources, data_sources, postern,
//! framework`; `resources, data_sources -> postern, framework`; `postern -> framework`;
//! `protocol -> framework`; `docs -> framework`. Nothing uses `provider` but the crate
//! root, and `framework` uses none of them.

mod data_sources;
pub mod docs;
pub mod framework;
pub mod logging;
mod postern;
pub mod protocol;
mod provider;
mod resources;

pub use provider::{PosternProvider, registry};
