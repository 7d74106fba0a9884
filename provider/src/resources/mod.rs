//! Postern's managed resource types (`postern_tunnel`, `postern_hostname`,
//! `postern_policy`, `postern_api_token`, `postern_certificate`, `postern_tcp_service`) and ephemeral resources
//! (`postern_enrollment_token`), one file per type.
//!
//! To add one: write `src/resources/<type>.rs` with a struct implementing
//! [`EdgeObject`](crate::postern::lifecycle::EdgeObject) (an object of the edge's API,
//! which makes it a `Resource<ProviderData>` with the shared lifecycle), or
//! [`EphemeralResource<ProviderData>`](crate::framework::EphemeralResource), declare the
//! module here, and register it in [`registry`](crate::provider::registry).

pub(crate) mod api_token;
pub(crate) mod certificate;
pub(crate) mod enrollment_token;
pub(crate) mod hostname;
pub(crate) mod policy;
pub(crate) mod tcp_service;
pub(crate) mod tunnel;
