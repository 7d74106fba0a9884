//! Picking the connector for a request: the hostname's tunnel, or a weighted route and then a
//! tunnel whose labels match its selector, failing over to the other routes when the picked
//! one has no healthy connection. A route the edge ejected (`tunnel::health`: 5xx answers) is
//! tried after the others, only when none of them can serve; a connection whose connector
//! finds the service's origin unhealthy (its health checks) is skipped like a closed one.
//! Within the candidate tunnels the registry picks the healthy connection with the fewest
//! outstanding streams.

use std::sync::Arc;

use postern_schema::api::{Serving, Target};
use postern_schema::ids::TunnelId;
use postern_schema::rules::{format_selector, selector_matches};
use rand::RngExt;

use crate::catalog::Snapshot;
use crate::tunnel::{Registry, RouteKey, Session};

/// Where a request goes.
#[derive(Debug)]
pub(super) struct Pick {
    /// The connection.
    pub(super) session: Arc<Session>,
    /// The connection lives on another worker than the one serving the request.
    pub(super) handed_off: bool,
    /// The route taken, written as its selector (`k=v,k2=v2`, keys sorted); `None` for a
    /// hostname bound to one tunnel.
    pub(super) route: Option<String>,
    /// The route's `max_error_rate`.
    pub(super) max_error_rate: Option<f64>,
}

/// The key of a route of `hostname` served as `serving`, for its passive health.
pub(super) fn route_key(hostname: &str, serving: &Serving<'_>, route: &str) -> RouteKey {
    RouteKey {
        hostname: hostname.to_owned(),
        prefix: serving.prefix.map(str::to_owned),
        route: route.to_owned(),
    }
}

/// Picks a healthy connection for `serving` (the hostname's own routes or a path route's) of
/// `hostname`, skipping the sessions in `exclude` (already tried); `None` when there is none.
/// Connections whose connector reports the service's origin unhealthy are skipped, and
/// ejected routes are tried last.
pub(super) fn pick(
    snapshot: &Snapshot,
    hostname: &str,
    serving: &Serving<'_>,
    registry: &Registry,
    exclude: &[String],
) -> Option<Pick> {
    let health = Health { hostname, serving };
    pick_in(snapshot, serving.target?, registry, exclude, Some(&health))
}

/// Picks a healthy connection of a TCP service's `target` tunnels, as [`pick`] does but
/// without route health: a TCP connection carries no status to judge an origin by.
pub(super) fn pick_target(
    snapshot: &Snapshot,
    target: Target<'_>,
    registry: &Registry,
    exclude: &[String],
) -> Option<Pick> {
    pick_in(snapshot, target, registry, exclude, None)
}

/// What a request's route health is read by: its hostname and how it is served.
struct Health<'a> {
    hostname: &'a str,
    serving: &'a Serving<'a>,
}

/// `target`'s tunnel, or a weighted route by weight failing over to the others; with
/// `health`, origins reported unhealthy are skipped and ejected routes tried last.
fn pick_in(
    snapshot: &Snapshot,
    target: Target<'_>,
    registry: &Registry,
    exclude: &[String],
    health: Option<&Health<'_>>,
) -> Option<Pick> {
    let connect = |tunnels: &[TunnelId]| match health {
        Some(health) => registry.pick_for(tunnels, exclude, health.serving.service),
        None => registry.pick(tunnels, exclude),
    };
    match target {
        Target::Tunnel(id) => connect(&[id]).map(|picked| Pick {
            session: picked.session,
            handed_off: picked.handed_off,
            route: None,
            max_error_rate: None,
        }),
        Target::Routes(routes) => {
            let weights: Vec<u32> = routes.iter().map(|r| r.weight).collect();
            let total: u32 = weights.iter().sum();
            let roll = if total == 0 {
                0
            } else {
                rand::rng().random_range(0..total)
            };
            let mut order = route_order(&weights, roll);
            if let Some(health) = health
                && registry.routes.any_ejected()
            {
                // Ejected routes last, in their order (a stable partition).
                let ejected = |index: &usize| {
                    routes.get(*index).is_some_and(|route| {
                        let label = format_selector(&route.selector);
                        let key = route_key(health.hostname, health.serving, &label);
                        registry.routes.is_ejected(&key)
                    })
                };
                let (healthy, out): (Vec<usize>, Vec<usize>) =
                    order.into_iter().partition(|i| !ejected(i));
                order = healthy.into_iter().chain(out).collect();
            }
            order.into_iter().find_map(|index| {
                let route = routes.get(index)?;
                let tunnels: Vec<TunnelId> = snapshot
                    .tunnels
                    .values()
                    .filter(|t| selector_matches(&route.selector, &t.spec.labels))
                    .map(|t| t.id)
                    .collect();
                connect(&tunnels).map(|picked| Pick {
                    session: picked.session,
                    handed_off: picked.handed_off,
                    route: Some(format_selector(&route.selector)),
                    max_error_rate: route.max_error_rate.map(|rate| rate.0),
                })
            })
        }
    }
}

/// The order in which routes are tried: the one `roll` (in `0..sum(weights)`) falls on, then
/// the others by descending weight (declaration order among equals).
pub(super) fn route_order(weights: &[u32], roll: u32) -> Vec<usize> {
    let mut chosen = None;
    let mut upper = 0u32;
    for (index, weight) in weights.iter().enumerate() {
        upper = upper.saturating_add(*weight);
        if roll < upper {
            chosen = Some(index);
            break;
        }
    }
    let mut rest: Vec<usize> = (0..weights.len()).filter(|i| Some(*i) != chosen).collect();
    rest.sort_by_key(|i| std::cmp::Reverse(weights[*i]));
    chosen.into_iter().chain(rest).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_roll_picks_a_route_in_proportion_to_its_weight() {
        let weights = [90, 10];
        let canary = (0..100)
            .filter(|roll| route_order(&weights, *roll)[0] == 1)
            .count();
        assert_eq!(canary, 10);
        assert_eq!(route_order(&weights, 0), [0, 1]);
        assert_eq!(route_order(&weights, 89), [0, 1]);
        assert_eq!(route_order(&weights, 90), [1, 0]);
        assert_eq!(route_order(&weights, 99), [1, 0]);
    }

    #[test]
    fn the_other_routes_follow_as_failover_by_weight() {
        assert_eq!(route_order(&[10, 30, 60], 0), [0, 2, 1]);
        assert_eq!(route_order(&[10, 30, 60], 45), [2, 1, 0]);
        assert_eq!(route_order(&[50, 50], 50), [1, 0]);
        assert_eq!(route_order(&[], 0), Vec::<usize>::new());
        // A roll out of range (weights changed under us) still tries every route.
        assert_eq!(route_order(&[1, 2], 7), [1, 0]);
    }
}
