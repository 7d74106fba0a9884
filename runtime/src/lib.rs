//! `postern-runtime`: the connector. It dials out to the edge, enrols with its token, keeps
//! `--connections` mutually authenticated HTTP/2 connections open (serving as the HTTP/2
//! *server* on them), applies the configuration the edge pushes, and forwards visitor
//! requests to local origins.

pub mod body;
pub mod config;
pub mod connection;
pub mod hello_world;
pub mod identity;
pub mod metrics;
pub mod orchestrator;
pub mod origin;
pub mod quick;
pub mod rebalance;
pub mod supervisor;
pub mod tls;
