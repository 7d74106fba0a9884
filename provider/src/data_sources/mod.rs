//! Postern's data source types (`postern_tunnel`, `postern_tunnels`, `postern_edge`),
//! one file per type.
//!
//! To add one: write `src/data_sources/<type>.rs` with a struct implementing
//! [`DataSource<ProviderData>`](crate::framework::DataSource), declare the module here,
//! and register it in [`registry`](crate::provider::registry).

pub(crate) mod edge;
pub(crate) mod tunnel;
pub(crate) mod tunnels;
