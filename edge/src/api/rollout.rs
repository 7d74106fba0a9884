//! `/v1/rollout`: whether every live connector, on every edge node, applied a write (see
//! `crate::tunnel::pending`).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use postern_schema::api::{Rollout, RolloutScope as Scope};
use serde::Deserialize;

use super::error::ApiError;
use super::reply::reply;
use super::request::Query;
use super::state::ApiState;

pub(super) fn router() -> Router<ApiState> {
    Router::new().route("/v1/rollout", get(status))
}

#[derive(Deserialize)]
struct RolloutQuery {
    revision: Option<u64>,
    tunnel: Option<String>,
    hostname: Option<String>,
    policy: Option<String>,
}

impl RolloutQuery {
    /// At most one of `tunnel`, `hostname` and `policy` narrows the rollout.
    fn scope(&self) -> Result<Scope, ApiError> {
        match (&self.tunnel, &self.hostname, &self.policy) {
            (None, None, None) => Ok(Scope::All),
            (Some(id), None, None) => hyphenated(id)
                .and_then(|id| id.parse().ok())
                .map(Scope::Tunnel)
                .ok_or_else(|| ApiError::invalid("", format!("tunnel {id:?} is not a tunnel id"))),
            (None, Some(name), None) => Ok(Scope::Hostname(name.to_ascii_lowercase())),
            (None, None, Some(id)) => hyphenated(id)
                .and_then(|id| id.parse().ok())
                .map(Scope::Policy)
                .ok_or_else(|| ApiError::invalid("", format!("policy {id:?} is not a policy id"))),
            _ => Err(ApiError::invalid(
                "",
                "give at most one of tunnel, hostname and policy",
            )),
        }
    }
}

/// An id in the one form openapi.json's `format: uuid` names (8-4-4-4-12 hex digits); the
/// other spellings a UUID parser takes (braced, URN, without hyphens) are refused.
fn hyphenated(id: &str) -> Option<&str> {
    (id.len() == 36).then_some(id)
}

/// The connections, on every node, still on an older configuration than revision `revision`
/// (or the current one) needs, within the scope asked for, and those that left before
/// applying it. Until the catalog reaches `revision` the rollout is not complete and lists
/// nothing: which configuration is needed is not known yet.
async fn status(
    State(state): State<ApiState>,
    Query(query): Query<RolloutQuery>,
) -> Result<Response, ApiError> {
    let scope = query.scope()?;
    let snapshot = state.catalog.snapshot();
    let revision = query.revision.unwrap_or(snapshot.revision);
    let reached = snapshot.revision >= revision;
    let (pending, departed) = if reached {
        let remote = state.cluster.remote_records();
        let mut pending = crate::tunnel::pending(&snapshot, &state.registry, &scope);
        pending.extend(crate::tunnel::remote_pending(
            &snapshot, &remote, revision, &scope,
        ));
        crate::tunnel::sort_pending(&mut pending);
        let mut live: Vec<_> = state
            .registry
            .all()
            .into_iter()
            .flat_map(|(tunnel, sessions)| {
                sessions
                    .into_iter()
                    .filter(|s| s.is_healthy())
                    .map(move |s| (tunnel, s.connector.clone()))
            })
            .collect();
        live.extend(
            remote
                .iter()
                .filter(|r| r.healthy)
                .map(|r| (r.tunnel_id, r.connection.connector_id.clone())),
        );
        let mut departures = state.registry.departed();
        departures.extend(state.cluster.remote_departed());
        let departed =
            crate::tunnel::departed(&snapshot, &departures, &live, &pending, revision, &scope);
        (pending, departed)
    } else {
        state.catalog.wake();
        (Vec::new(), Vec::new())
    };
    let body = Rollout {
        revision,
        catalog_revision: snapshot.revision,
        complete: reached && pending.is_empty(),
        pending,
        departed,
    };
    Ok(reply(StatusCode::OK, &body, None))
}
