//! What every resource, data source and ephemeral resource receives once the provider is
//! configured (`data: &ProviderData`): the edge's control API, the rollout settings and the
//! plan-time view of the edge's live state.

use std::time::Duration;

use postern_schema::client::Client;
use tokio_util::sync::CancellationToken;

use super::live::LiveView;

/// The configured provider, as its types see it. `pub` only because it is the public
/// `PosternProvider`'s `Provider::Data`; outside the crate it cannot be named.
#[derive(Clone, Debug)]
pub struct ProviderData {
    /// The edge's control API, authenticated with the token (an empty one when none was
    /// given: the edge then answers 401 and the diagnostic says what to set).
    pub(crate) client: Client,
    /// How long a write waits for every affected connector to apply it (zero: not at all).
    pub(crate) rollout_timeout: Duration,
    /// Cancelled when Terraform asks the provider to stop (Ctrl-C).
    pub(crate) stop: CancellationToken,
    /// What plan-time checks learn from the edge (short timeouts, best effort, cached).
    pub(crate) live: LiveView,
}
