//! The provider itself: the [`Provider`] trait gives the `provider "postern" { ... }`
//! block's schema and turns its configuration into the data every resource receives.

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::diagnostics::Diagnostics;
use super::schema::Schema;
use super::value::Value;

/// The provider block and its configure step.
///
/// [`Provider::Data`] is whatever resources need to do their work (for Postern: the
/// typed API client). The framework keeps it in an `Arc` after ConfigureProvider and
/// passes `&Data` to every resource, data source and ephemeral resource call that may
/// touch the outside world. Terraform always configures the provider before such calls
/// in the same process.
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// What resources receive.
    type Data: Send + Sync + 'static;

    /// The provider block's schema.
    fn schema(&self) -> Schema;

    /// Checks the provider configuration offline; values may be unknown anywhere.
    fn validate(&self, _config: &Value, _diagnostics: &mut Diagnostics) {}

    /// Builds the provider data from the configuration (which may still contain
    /// unknowns when the provider block refers to resources not yet created). Returns
    /// `None` with error diagnostics when that is impossible.
    async fn configure(
        &self,
        req: ConfigureRequest,
        diagnostics: &mut Diagnostics,
    ) -> Option<Self::Data>;
}

/// Input of [`Provider::configure`].
#[derive(Clone, Debug)]
pub struct ConfigureRequest {
    /// The Terraform CLI version, e.g. `1.11.4`.
    pub terraform_version: String,
    /// The provider block.
    pub config: Value,
    /// Cancelled when Terraform asks the provider to stop (StopProvider, on Ctrl-C).
    /// Keep a clone in the provider data so long operations (retries, waits) can give
    /// up early; the framework itself never aborts a call midway, so no state is lost.
    pub stop: CancellationToken,
}
