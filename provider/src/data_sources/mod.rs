//! Postern's data source types (`postern_tunnel`, `postern_tunnels`, `postern_edge`),
//! one file per type.
//!
//! To add one: write `src/data_sources/<type>.rs` with a struct implementing
//! [`DataSource<ProviderData>`](crate::framework::DataSource), declare the module
//! here, and add it to [`all`].

pub mod edge;
pub mod tunnel;
pub mod tunnels;

use crate::framework::BoxedDataSource;
use crate::postern::ProviderData;

pub use edge::EdgeDataSource;
pub use tunnel::TunnelDataSource;
pub use tunnels::TunnelsDataSource;

/// Every data source type the provider serves.
pub fn all() -> Vec<BoxedDataSource<ProviderData>> {
    vec![
        Box::new(TunnelDataSource),
        Box::new(TunnelsDataSource),
        Box::new(EdgeDataSource),
    ]
}
