//! `postern-edge`: the only public part of Postern. It keeps the tunnels, hostnames and policies
//! (control API and store), issues certificates (CA), accepts connectors (tunnel listener),
//! serves visitors (public proxy, after policies and routing) and answers DNS for its zones.
//!
//! The library is the binary's: [`start`] an edge from an [`EdgeConfig`] and hold the
//! [`RunningEdge`] until it should stop. `docs/guides/architecture.md` draws the modules and which
//! may use which.

mod access_log;
mod api;
mod auth;
mod body;
mod ca;
mod catalog;
mod certs;
mod client;
mod cluster;
mod config;
mod dns;
mod edge;
mod enrollment;
mod metrics;
mod policy;
mod proxy;
mod store;
mod tcp_ports;
mod tunnel;

pub use config::{EdgeConfig, LogFormat};
pub use edge::{BoundAddrs, RunningEdge, StartError, start};
