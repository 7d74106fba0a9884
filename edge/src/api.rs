//! The control API: REST/JSON over HTTP with bearer tokens. [`router`] merges one router per
//! resource behind the token check; `/healthz` and the status page (`/ui`) need no token.
//! Every write is validated against the contract in `postern-schema` before it reaches the
//! store. What a request reads and writes is [`ApiState`].

mod certificates;
mod error;
#[cfg(test)]
mod fuzz;
mod hostnames;
mod policies;
mod reply;
mod request;
mod rollout;
mod router;
mod state;
mod status;
mod tunnels;
mod ui;

pub(crate) use router::router;
pub(crate) use state::ApiState;
