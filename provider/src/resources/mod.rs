//! Postern's managed resource types (`postern_tunnel`, `postern_hostname`,
//! `postern_policy`) and ephemeral resources (`postern_enrollment_token`), one file per
//! type.
//!
//! To add one: write `src/resources/<type>.rs` with a struct implementing
//! [`Resource<ProviderData>`](crate::framework::Resource) (or
//! [`EphemeralResource<ProviderData>`](crate::framework::EphemeralResource)), declare
//! the module here, and add `Box::new(tunnel::TunnelResource)` to [`all`] (or
//! [`ephemeral`]). `postern::tests::shipped_registry_is_valid` checks the schemas.

pub mod enrollment_token;
pub mod hostname;
pub mod policy;
pub mod tunnel;
mod version;

use crate::framework::{BoxedEphemeralResource, BoxedResource};
use crate::postern::ProviderData;

pub use enrollment_token::EnrollmentTokenResource;
pub use hostname::HostnameResource;
pub use policy::PolicyResource;
pub use tunnel::TunnelResource;

/// Every managed resource type the provider serves.
pub fn all() -> Vec<BoxedResource<ProviderData>> {
    vec![
        Box::new(TunnelResource),
        Box::new(PolicyResource),
        Box::new(HostnameResource),
    ]
}

/// Every ephemeral resource type the provider serves.
pub fn ephemeral() -> Vec<BoxedEphemeralResource<ProviderData>> {
    vec![Box::new(EnrollmentTokenResource)]
}
