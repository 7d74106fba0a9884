//! The tunnel side of the edge: the listener connectors dial in to ([`listener`]), their
//! enrolment ([`enroll`]), one session per authenticated connection ([`session`]) pushing the
//! tunnel's configuration ([`config`]), and the registry of live sessions the proxy routes to
//! ([`registry`]). `docs/guides/tunnel-protocol.md` describes the protocol.

mod config;
mod context;
mod enroll;
mod health;
mod listener;
mod registry;
mod rollout;
mod session;

pub(crate) use context::{TunnelContext, TunnelSettings};
pub(crate) use health::RouteKey;
pub(crate) use listener::{PeerConnection, PeerPort, serve};
pub(crate) use registry::{Registry, Session, StreamGuard};
pub(crate) use rollout::{departed, pending, remote_pending, sort as sort_pending};
