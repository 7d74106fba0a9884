//! The Postern contract, shared by every part: the edge API's objects and their JSON Schemas,
//! validation (schema plus the semantic rules JSON Schema cannot say), the tunnel token, the
//! tunnel's control messages and the one typed client of the control API.
#![deny(missing_docs)]

pub mod api;
pub mod client;
pub mod duration;
mod error;
pub mod ids;
pub mod openapi;
pub mod rules;
pub mod secret;
pub mod token;
pub mod validate;
pub mod wire;

pub use error::{ContractError, Violation, error_chain};
