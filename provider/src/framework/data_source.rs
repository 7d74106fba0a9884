//! Data sources: the [`DataSource`] trait (`data "postern_tunnel" "x" { ... }`), read-only
//! lookups whose computed attributes are filled from the outside world.

use async_trait::async_trait;

use super::diagnostics::Diagnostics;
use super::resource::StateResponse;
use super::schema::Schema;
use super::value::Value;

/// A data source type. `D` is the provider data (see [`Resource`](super::Resource)).
#[async_trait]
pub trait DataSource<D>: Send + Sync + 'static {
    /// The data source type name, e.g. `postern_tunnels`.
    fn type_name(&self) -> &'static str;

    /// The schema. Called once, when the registry is built.
    fn schema(&self) -> Schema;

    /// Checks a configuration offline; values may be unknown anywhere.
    fn validate(&self, _config: &Value, _diagnostics: &mut Diagnostics) {}

    /// Reads the data. `resp.state` starts as `None`: set it to the configuration with
    /// every computed attribute filled in (no unknowns may remain).
    async fn read(&self, data: &D, req: DataSourceReadRequest, resp: &mut StateResponse);
}

/// Input of [`DataSource::read`].
#[derive(Clone, Debug)]
pub struct DataSourceReadRequest {
    /// The configuration (wholly known: Terraform defers reads of unknown config).
    pub config: Value,
}
