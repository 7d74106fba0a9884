//! `postern-runtime`: the connector. It dials out to the edge, enrols with its token, keeps
//! `--connections` mutually authenticated HTTP/2 connections open (serving as the HTTP/2
//! *server* on them), applies the configuration the edge pushes, and forwards visitor
//! requests to local origins.
//!
//! The API is what the `postern` binary needs to assemble a connector process: the command
//! line ([`config`]), the parts of a [`Connector`], the [`supervisor`] that runs it, the
//! metrics listener ([`metrics`]), the built-in origin ([`hello_world`]) and quick mode
//! ([`quick`]). Everything else is private machinery.

pub mod config;
pub mod hello_world;
pub mod metrics;
pub mod quick;
pub mod supervisor;

mod allowlist;
mod body;
mod connection;
mod connector;
mod egress;
mod health;
mod identity;
mod orchestrator;
mod origin;
mod rebalance;
mod tls;

pub use allowlist::AllowedOrigins;
pub use connector::Connector;
pub use egress::{Egress, EgressError};
pub use identity::Identity;
pub use orchestrator::Orchestrator;
pub use origin::Origins;
