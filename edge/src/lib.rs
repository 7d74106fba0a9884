//! `postern-edge`: the only public part of Postern. It keeps the tunnels, hostnames and policies
//! (control API and store), issues certificates (CA), accepts connectors (tunnel listener),
//! serves visitors (public proxy, after policies and routing) and answers DNS for its zones.

pub mod api;
pub mod auth;
pub mod ca;
pub mod catalog;
pub mod cluster;
pub mod config;
pub mod dns;
pub mod edge;
pub mod enrollment;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod rollout;
pub mod state;
pub mod store;
pub mod tunnel;

pub use config::EdgeConfig;
pub use edge::{BoundAddrs, RunningEdge, start};
