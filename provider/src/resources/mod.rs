//! Postern's managed resource types (`postern_tunnel`, `postern_hostname`,
//! `postern_policy`) and ephemeral resources (`postern_enrollment_token`), one file per
//! type.
//!
//! To add one: write `src/resources/<type>.rs` with a struct implementing
//! [`Resource<ProviderData>`](crate::framework::Resource) (an object of the edge's API
//! through [`lifecycle`](crate::postern::lifecycle)), or
//! [`EphemeralResource<ProviderData>`](crate::framework::EphemeralResource), declare the
//! module here, and register it in [`registry`](crate::provider::registry).

pub(crate) mod enrollment_token;
pub(crate) mod hostname;
pub(crate) mod policy;
pub(crate) mod tunnel;
