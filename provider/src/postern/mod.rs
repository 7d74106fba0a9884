//! The Postern layer: everything that knows the edge's control API, as the provider's types
//! use it. [`provider_data::ProviderData`] is what they receive; [`lifecycle`] is the one
//! create/read/update/delete/import skeleton of the edge's objects; [`api_error`] turns a
//! failed call into a diagnostic; [`contract`] runs the edge's own validation offline;
//! [`rollout`] waits after a write until the connectors applied it; [`live`] turns the
//! edge's live state into plan-time warnings; [`version`] keeps an object's version for
//! `If-Match`; [`duration`] parses the durations users write.
//!
//! It uses the framework and `postern_schema`, never the types built on it
//! (`resources`, `data_sources`) nor the provider that assembles them.

pub(crate) mod api_error;
pub(crate) mod contract;
pub(crate) mod duration;
pub(crate) mod lifecycle;
pub(crate) mod live;
pub(crate) mod provider_data;
pub(crate) mod rollout;
mod version;
