//! The control API: REST/JSON over HTTP or HTTPS with bearer tokens, each of a role
//! (`admin`, `editor`, `viewer`). [`router`] merges one router per resource behind the token
//! check (`access`); `/healthz`, `/ready` and the status page (`/ui`) need no token. Every
//! write is validated against the contract in `postern-schema` before it reaches the store.
//! What a request reads and writes is [`ApiState`]; [`serve`] serves a router on a listener,
//! with TLS when [`ApiTls`] says so.

mod access;
mod certificates;
mod error;
#[cfg(test)]
mod fuzz;
mod hostnames;
mod policies;
mod reply;
mod request;
mod requests;
mod rollout;
mod router;
mod serve;
mod state;
mod status;
mod tcp_services;
mod throttle;
mod tls;
mod tokens;
mod tunnels;
mod ui;

pub(crate) use router::{metrics_router, router};
pub(crate) use serve::serve;
pub(crate) use state::{ApiState, Readiness};
pub(crate) use throttle::AuthThrottle;
pub(crate) use tls::{ApiTls, ApiTlsError};
