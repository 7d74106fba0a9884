//! The acceptance harness: real binaries (`postern-edge`, `postern`, the provider) started as
//! processes on loopback with port 0, in temporary directories, and an API client that holds
//! every answer of the edge to `schema/openapi.json`.

pub mod api;
pub mod bad_origin;
pub mod bench;
pub mod binaries;
pub mod connector;
pub mod edge;
pub mod fake_connector;
pub mod fixture;
pub mod grpc;
pub mod load;
pub mod netns;
pub mod origin;
pub mod pebble;
pub mod pki;
pub mod postgres;
pub mod process;
pub mod provider;
pub mod raw;
pub mod terraform;
pub mod tunnel_dial;
pub mod visitor;
pub mod websocket;

pub use api::{Api, ApiResponse};
pub use binaries::binary;
pub use connector::{ConnectorOptions, ConnectorProcess, eventually};
pub use edge::{EdgeOptions, EdgeProcess, Ready};
pub use load::Load;
pub use origin::TestOrigin;
pub use pebble::{Pebble, PebbleOptions};
pub use postgres::PostgresServer;
pub use terraform::{Plan, Run, Terraform};
