//! The acceptance harness: real binaries (`postern-edge`, `postern`, the provider) started as
//! processes on loopback with port 0, in temporary directories, and an API client that holds
//! every answer of the edge to `schema/openapi.json`.

pub mod api;
pub mod binaries;
pub mod edge;
pub mod postgres;
pub mod terraform;

pub use api::{Api, ApiResponse};
pub use binaries::binary;
pub use edge::{EdgeOptions, EdgeProcess, Ready};
pub use postgres::PostgresServer;
pub use terraform::{Plan, Run, Terraform};
