//! The Postern Terraform provider: a Terraform plugin (tfplugin6 over gRPC with
//! go-plugin's AutoMTLS handshake) serving Postern's resources.
//!
//! - [`protocol`] speaks Terraform's wire protocol and knows no resource;
//! - [`framework`] is protocol-free: values, schemas, planning, and the traits a
//!   resource, data source or ephemeral resource implements;
//! - [`resources`] and [`data_sources`] hold Postern's types, registered in
//!   [`postern::registry`];
//! - [`api`] is the edge's control API as they use it, and [`contract`] the edge's
//!   validation rules run offline;
//! - [`rollout`] waits after each write until the connectors applied it, and [`live`]
//!   turns the edge's live state into plan-time warnings;
//! - [`logging`] writes the JSON log lines Terraform reads from stderr.

pub mod api;
pub mod contract;
pub mod data_sources;
pub mod docs;
pub mod framework;
pub mod live;
pub mod logging;
pub mod postern;
pub mod protocol;
pub mod resources;
pub mod rollout;
