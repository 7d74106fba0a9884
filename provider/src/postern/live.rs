//! Plan-time truth: while planning a hostname, the provider asks the edge (best effort, short
//! timeouts, one answer shared by the whole plan for a moment) which tunnels exist and how many
//! connectors each has, and turns that into the warnings a reviewer needs: a hostname whose
//! tunnel has no connector, a route that matches no tunnel or no connected connector, and the
//! traffic split per route that results (also for the hostnames whose routes select a tunnel
//! whose labels change). Warnings, never errors: when the edge cannot be
//! reached the plan goes on, and a warning says the check was skipped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use postern_schema::api::{Hostname, Tunnel};
use postern_schema::rules::{format_selector, selector_matches};

use postern_schema::client::{Client, ClientError};

use crate::framework::{AttributePath, Diagnostic, Diagnostics};

/// How long one answer of the edge serves every hostname of a plan.
const FRESH_FOR: Duration = Duration::from_secs(2);

/// What plan needs of the edge's live state.
#[derive(Debug)]
pub(crate) struct Live {
    /// Every tunnel, with its connection count.
    pub(crate) tunnels: Vec<Tunnel>,
    /// Every hostname (read only when a check needs them).
    pub(crate) hostnames: Option<Vec<Hostname>>,
}

/// The live state, or why it could not be read.
type Fetched = Result<Arc<Live>, String>;

/// The edge's live state as plan sees it: fetched on first use, then shared for
/// [`FRESH_FOR`].
#[derive(Clone, Debug)]
pub(crate) struct LiveView {
    client: Option<Client>,
    cache: Arc<tokio::sync::Mutex<Option<(Instant, Fetched)>>>,
}

impl LiveView {
    /// A view that asks through `client` (one with short timeouts); `None` when no such
    /// client could be built, and every check is then skipped.
    pub(crate) fn new(client: Option<Client>) -> Self {
        Self {
            client,
            cache: Arc::default(),
        }
    }

    /// The tunnels with their connection counts (and the hostnames, when `hostnames`), or
    /// why they are not known.
    async fn fetch(&self, hostnames: bool) -> Fetched {
        let Some(client) = &self.client else {
            return Err("no usable endpoint".to_string());
        };
        let mut cache = self.cache.lock().await;
        if let Some((at, fetched)) = cache.as_ref()
            && at.elapsed() < FRESH_FOR
            && (!hostnames || fetched.as_ref().is_ok_and(|l| l.hostnames.is_some()))
        {
            return fetched.clone();
        }
        let fetched = async {
            let tunnels = client.list_tunnels(None).await?;
            let hostnames = match hostnames {
                true => Some(client.list_hostnames().await?),
                false => None,
            };
            Ok(Arc::new(Live { tunnels, hostnames }))
        }
        .await
        .map_err(|e: ClientError| e.to_string());
        *cache = Some((Instant::now(), fetched.clone()));
        fetched
    }

    /// The endpoint asked, for messages.
    fn endpoint(&self) -> &str {
        self.client.as_ref().map_or("(none)", Client::endpoint)
    }
}

/// Where a planned hostname sends its requests, with every value known.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum PlannedTarget {
    /// `tunnel_id`, as written.
    Tunnel(String),
    /// `routes`: each selector and weight.
    Routes(Vec<(BTreeMap<String, String>, u32)>),
}

/// Adds the plan-time warnings about hostname `hostname` going to `target`.
pub(crate) async fn check_hostname(
    live: &LiveView,
    hostname: &str,
    target: &PlannedTarget,
    diagnostics: &mut Diagnostics,
) {
    match live.fetch(false).await {
        Ok(state) => {
            for diagnostic in assess(&state.tunnels, hostname, target) {
                diagnostics.push(diagnostic);
            }
        }
        Err(error) => skipped(live, &error, &format!("hostname {hostname:?}"), diagnostics),
    }
}

/// Adds a warning for each route of `hostname` the edge has taken out of rotation (its
/// weight goes to the other routes): ejected for its 5xx answers, or with its origin
/// reported unhealthy. Silent when the edge's status cannot be read (the other checks say
/// so already).
pub(crate) async fn check_ejected(live: &LiveView, hostname: &str, diagnostics: &mut Diagnostics) {
    let Some(client) = &live.client else {
        return;
    };
    let status = match client.status().await {
        Ok(status) => status,
        Err(error) => {
            tracing::debug!(%error, "no ejected-route check: the edge's status is not readable");
            return;
        }
    };
    for diagnostic in assess_ejected(&status.ejected_routes, hostname) {
        diagnostics.push(diagnostic);
    }
}

/// The warnings about `hostname`'s routes in `ejected`.
pub(crate) fn assess_ejected(
    ejected: &[postern_schema::api::EjectedRoute],
    hostname: &str,
) -> Vec<Diagnostic> {
    ejected
        .iter()
        .filter(|e| e.hostname == hostname)
        .map(|e| {
            let under = e
                .prefix
                .as_deref()
                .map(|p| format!(" (path route {p})"))
                .unwrap_or_default();
            let why = match e.reason.as_str() {
                "error_rate" => format!(
                    "its share of 5xx answers over the last minute ({}) exceeded its max_error_rate",
                    e.error_rate
                        .map_or_else(|| "?".to_string(), |r| format_percent(r.0 * 100.0))
                ),
                "consecutive_failures" => {
                    "its last answers were 5xx (or failed to connect) five times in a row"
                        .to_string()
                }
                _ => "every connector of the route reports its origin unhealthy (origin.health_check)"
                    .to_string(),
            };
            let retry = e
                .retry_in_seconds
                .map(|s| format!(" It is tried again in {s} s."))
                .unwrap_or_default();
            Diagnostic::warning(
                format!("Route {} of {hostname} is ejected", e.route),
                format!(
                    "The edge sends no traffic to route {}{under} of {hostname}: {why}; its \
                     weight goes to the other routes until it recovers.{retry} Fix the \
                     origin, or plan a rollback of the canary.",
                    e.route
                ),
            )
            .at(AttributePath::root("routes"))
        })
        .collect()
}

/// Adds the plan-time warnings about tunnel `id` (named `name`) taking the labels `labels`:
/// for every hostname whose routes select it before or after, the traffic split that results.
pub(crate) async fn check_tunnel_labels(
    live: &LiveView,
    id: &str,
    name: &str,
    labels: &BTreeMap<String, String>,
    diagnostics: &mut Diagnostics,
) {
    match live.fetch(true).await {
        Ok(state) => {
            let hostnames = state.hostnames.as_deref().unwrap_or_default();
            for diagnostic in assess_labels(&state.tunnels, hostnames, id, labels) {
                diagnostics.push(diagnostic);
            }
        }
        Err(error) => skipped(live, &error, &format!("tunnel {name:?}"), diagnostics),
    }
}

/// The warning that the check was skipped.
fn skipped(live: &LiveView, error: &str, subject: &str, diagnostics: &mut Diagnostics) {
    diagnostics.warning(
        "Live check skipped: the edge is unreachable",
        format!(
            "The provider could not ask the edge at {} which connectors are connected \
             ({error}), so this plan does not say how the change to {subject} affects the \
             traffic it serves. The plan itself is not affected; the check runs again at apply.",
            live.endpoint()
        ),
    );
}

/// The warnings about tunnel `id` taking `labels`: per hostname whose routes select it before
/// or after, the split that results, flagged when a route is left without a connector.
pub(crate) fn assess_labels(
    tunnels: &[Tunnel],
    hostnames: &[Hostname],
    id: &str,
    labels: &BTreeMap<String, String>,
) -> Vec<Diagnostic> {
    let Some(before) = tunnels.iter().find(|t| t.id.to_string() == id) else {
        return Vec::new();
    };
    let after: Vec<Tunnel> = tunnels
        .iter()
        .map(|t| {
            let mut t = t.clone();
            if t.id == before.id {
                t.spec.labels = labels.clone();
            }
            t
        })
        .collect();
    let mut out = Vec::new();
    for hostname in hostnames {
        let Some(routes) = &hostname.spec.routes else {
            continue;
        };
        let selects = |labels: &BTreeMap<String, String>| {
            routes.iter().any(|r| selector_matches(&r.selector, labels))
        };
        if !selects(&before.spec.labels) && !selects(labels) {
            continue;
        }
        let routes: Vec<(BTreeMap<String, String>, u32)> = routes
            .iter()
            .map(|r| (r.selector.clone(), r.weight))
            .collect();
        let name = &hostname.spec.hostname;
        let served = serve(&after, &routes);
        let stranded: Vec<String> = served
            .iter()
            .enumerate()
            .filter(|(_, r)| r.connectors == 0)
            .map(|(i, r)| format!("routes[{i}] ({})", r.selector))
            .collect();
        let summary = if stranded.is_empty() {
            format!("Traffic split for {name} after this label change")
        } else {
            format!(
                "Label change leaves {} of {name} without a connected connector",
                stranded.join(", ")
            )
        };
        let detail = split_text(
            name,
            &served,
            "With these labels and the connectors connected now",
        );
        out.push(Diagnostic::warning(summary, detail).at(AttributePath::root("labels")));
    }
    out
}

/// The warnings about `hostname` going to `target`, given the edge's `tunnels`.
pub(crate) fn assess(
    tunnels: &[Tunnel],
    hostname: &str,
    target: &PlannedTarget,
) -> Vec<Diagnostic> {
    match target {
        PlannedTarget::Tunnel(id) => assess_tunnel(tunnels, hostname, id),
        PlannedTarget::Routes(routes) => assess_routes(tunnels, hostname, routes),
    }
}

fn assess_tunnel(tunnels: &[Tunnel], hostname: &str, id: &str) -> Vec<Diagnostic> {
    let path = AttributePath::root("tunnel_id");
    let found = tunnels
        .iter()
        .find(|t| id.parse().ok() == Some(t.id) || t.id.to_string() == id);
    match found {
        None => vec![
            Diagnostic::warning(
                "The hostname's tunnel is not on the edge",
                format!(
                    "Requests for {hostname} are to go to tunnel {id}, which the edge does not \
                     have (yet): unless this plan creates it, the apply will fail."
                ),
            )
            .at(path),
        ],
        Some(tunnel) if tunnel.connections == 0 => vec![
            Diagnostic::warning(
                "The hostname's tunnel has no connected connector",
                format!(
                    "Requests for {hostname} go to tunnel {:?} ({}), which has no connected \
                     connector: they are answered 503 until one connects \
                     (`postern tunnel run --token …`).",
                    tunnel.spec.name, tunnel.id
                ),
            )
            .at(path),
        ],
        Some(_) => Vec::new(),
    }
}

/// One route as the edge would serve it now.
struct Served<'a> {
    selector: String,
    weight: u32,
    tunnels: Vec<&'a Tunnel>,
    connectors: u32,
}

/// How each route is served by `tunnels`.
fn serve<'t>(tunnels: &'t [Tunnel], routes: &[(BTreeMap<String, String>, u32)]) -> Vec<Served<'t>> {
    routes
        .iter()
        .map(|(selector, weight)| {
            let matching: Vec<&Tunnel> = tunnels
                .iter()
                .filter(|t| selector_matches(selector, &t.spec.labels))
                .collect();
            Served {
                selector: format_selector(selector),
                weight: *weight,
                connectors: matching.iter().map(|t| t.connections).sum(),
                tunnels: matching,
            }
        })
        .collect()
}

/// `weight` as a percentage of the routes' total weight.
fn percent_of(served: &[Served<'_>], weight: u64) -> String {
    let total: u64 = served.iter().map(|r| u64::from(r.weight)).sum();
    if total == 0 {
        "0%".to_string()
    } else {
        format_percent(weight as f64 * 100.0 / total as f64)
    }
}

/// The split as lines, one per route (its effective share, what serves it), then what fails.
fn split_text(hostname: &str, served: &[Served<'_>], given: &str) -> String {
    let (shares, failing) = effective_shares(served);
    let mut split = format!("{given}, requests for {hostname} go:\n");
    for (i, (route, share)) in served.iter().zip(&shares).enumerate() {
        let serving = if route.connectors == 0 {
            "no connected connector".to_string()
        } else {
            format!(
                "{} connection{} on tunnel {}",
                route.connectors,
                if route.connectors == 1 { "" } else { "s" },
                names(&route.tunnels)
            )
        };
        split.push_str(&format!(
            "  routes[{i}] {} (weight {}): {} of requests, {serving}\n",
            route.selector,
            route.weight,
            percent_of(served, *share)
        ));
    }
    if failing > 0 {
        split.push_str(&format!(
            "  answered 503 (no connector anywhere): {}\n",
            percent_of(served, failing)
        ));
    }
    split.trim_end().to_string()
}

fn assess_routes(
    tunnels: &[Tunnel],
    hostname: &str,
    routes: &[(BTreeMap<String, String>, u32)],
) -> Vec<Diagnostic> {
    let served = serve(tunnels, routes);
    let percent = |weight: u64| percent_of(&served, weight);
    let mut out = Vec::new();
    for (i, route) in served.iter().enumerate() {
        if route.connectors > 0 {
            continue;
        }
        let what = format!(
            "routes[{i}] ({}, weight {}) of {hostname}",
            route.selector, route.weight
        );
        let whereto = if served.iter().any(|r| r.connectors > 0) {
            "fail over to the other routes".to_string()
        } else {
            "are answered 503: no route has a connected connector".to_string()
        };
        let share = percent(u64::from(route.weight));
        let (summary, detail) = if route.tunnels.is_empty() {
            (
                "Route matches no tunnel",
                format!(
                    "{what} matches no tunnel on the edge (tunnels this plan creates are not \
                     counted): its {share} of requests {whereto}."
                ),
            )
        } else {
            (
                "Route has no connected connector",
                format!(
                    "{what} matches tunnel {}, but no connector is connected: its {share} of \
                     requests {whereto}.",
                    names(&route.tunnels)
                ),
            )
        };
        out.push(
            Diagnostic::warning(summary, detail).at(AttributePath::root("routes").index(i as i64)),
        );
    }
    out.push(Diagnostic::warning(
        format!("Traffic split for {hostname}"),
        split_text(hostname, &served, "With the connectors connected now"),
    ));
    out
}

/// The weight each route really serves: a request rolls a route by weight, and when that route
/// has no connector it goes to the next one with a connector, in order of descending weight
/// (as the edge's proxy does). Returns the share per route and the weight no route can serve.
fn effective_shares(served: &[Served<'_>]) -> (Vec<u64>, u64) {
    let mut shares = vec![0u64; served.len()];
    let mut failing = 0u64;
    for (rolled, route) in served.iter().enumerate() {
        let mut order = vec![rolled];
        let mut rest: Vec<usize> = (0..served.len()).filter(|i| *i != rolled).collect();
        rest.sort_by_key(|i| std::cmp::Reverse(served[*i].weight));
        order.extend(rest);
        match order.into_iter().find(|i| served[*i].connectors > 0) {
            Some(winner) => shares[winner] += u64::from(route.weight),
            None => failing += u64::from(route.weight),
        }
    }
    (shares, failing)
}

fn names(tunnels: &[&Tunnel]) -> String {
    tunnels
        .iter()
        .map(|t| format!("{:?}", t.spec.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `90%`, `33.3%`.
fn format_percent(value: f64) -> String {
    let text = format!("{value:.1}");
    format!("{}%", text.trim_end_matches(".0"))
}

#[cfg(test)]
mod tests {
    use postern_schema::api::TunnelSpec;
    use postern_schema::ids::TunnelId;

    use super::*;

    fn tunnel(name: &str, release: &str, connections: u32) -> Tunnel {
        Tunnel {
            id: TunnelId::new_random(),
            spec: TunnelSpec {
                name: name.into(),
                labels: BTreeMap::from([("release".to_string(), release.to_string())]),
            },
            version: 1,
            created_at: String::new(),
            connections,
            token: None,
        }
    }

    fn routes(pairs: &[(&str, u32)]) -> PlannedTarget {
        PlannedTarget::Routes(
            pairs
                .iter()
                .map(|(release, weight)| {
                    (
                        BTreeMap::from([("release".to_string(), release.to_string())]),
                        *weight,
                    )
                })
                .collect(),
        )
    }

    fn texts(diagnostics: &[Diagnostic]) -> Vec<String> {
        diagnostics.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn an_ejected_route_is_warned_about_with_its_reason() {
        let ejected = vec![
            postern_schema::api::EjectedRoute {
                hostname: "split.example.com".into(),
                prefix: None,
                route: "release=canary".into(),
                reason: "error_rate".into(),
                error_rate: Some(postern_schema::api::ErrorRate(0.5)),
                retry_in_seconds: Some(4),
            },
            postern_schema::api::EjectedRoute {
                hostname: "other.example.com".into(),
                prefix: None,
                route: "release=canary".into(),
                reason: "origin_unhealthy".into(),
                error_rate: None,
                retry_in_seconds: None,
            },
        ];
        let found = texts(&assess_ejected(&ejected, "split.example.com"));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("Route release=canary of split.example.com is ejected"));
        assert!(found[0].contains("50%"), "{}", found[0]);
        assert!(found[0].contains("max_error_rate"));
        let other = texts(&assess_ejected(&ejected, "other.example.com"));
        assert!(other[0].contains("origin unhealthy"), "{}", other[0]);
    }

    #[test]
    fn a_route_without_connectors_is_named_and_its_share_fails_over() {
        let tunnels = [tunnel("stable", "stable", 2), tunnel("canary", "canary", 0)];
        let found = assess(
            &tunnels,
            "app.example.com",
            &routes(&[("stable", 90), ("canary", 10)]),
        );
        let all = texts(&found);
        assert_eq!(found.len(), 2, "{all:#?}");
        assert_eq!(
            found[0].path,
            Some(AttributePath::root("routes").index(1)),
            "{all:#?}"
        );
        assert!(
            all[0].contains("routes[1] (release=canary, weight 10)"),
            "{all:#?}"
        );
        assert!(all[0].contains("10% of requests fail over"), "{all:#?}");
        assert!(
            all[1].contains("routes[0] release=stable (weight 90): 100% of requests"),
            "{all:#?}"
        );
        assert!(
            all[1].contains("routes[1] release=canary (weight 10): 0% of requests"),
            "{all:#?}"
        );
    }

    #[test]
    fn the_split_follows_the_weights_when_every_route_is_served() {
        let tunnels = [
            tunnel("a", "a", 1),
            tunnel("b", "b", 1),
            tunnel("c", "c", 1),
        ];
        let found = assess(
            &tunnels,
            "x.example.com",
            &routes(&[("a", 1), ("b", 1), ("c", 1)]),
        );
        assert_eq!(found.len(), 1);
        let text = found[0].to_string();
        assert!(
            text.contains("routes[0] release=a (weight 1): 33.3%"),
            "{text}"
        );
    }

    #[test]
    fn no_tunnel_and_no_connector_anywhere_say_so() {
        let found = assess(&[], "x.example.com", &routes(&[("gone", 100)]));
        let all = texts(&found);
        assert!(all[0].contains("matches no tunnel"), "{all:#?}");
        assert!(all[0].contains("answered 503"), "{all:#?}");
        assert!(
            all[1].contains("answered 503 (no connector anywhere): 100%"),
            "{all:#?}"
        );
    }

    #[test]
    fn a_label_change_that_strands_a_route_says_so_for_each_hostname_it_touches() {
        let stable = tunnel("stable", "stable", 2);
        let canary = tunnel("canary", "canary", 1);
        let routed = |name: &str| Hostname {
            spec: postern_schema::api::HostnameSpec {
                tls_passthrough: None,
                hostname: name.into(),
                service: "http_status:204".into(),
                tunnel_id: None,
                routes: Some(vec![
                    postern_schema::api::Route {
                        selector: BTreeMap::from([("release".into(), "stable".into())]),
                        weight: 90,
                        max_error_rate: None,
                    },
                    postern_schema::api::Route {
                        selector: BTreeMap::from([("release".into(), "canary".into())]),
                        weight: 10,
                        max_error_rate: None,
                    },
                ]),
                policy_ids: Vec::new(),
                paths: Vec::new(),
                origin: None,
            },
            addresses: Vec::new(),
            version: 1,
            created_at: String::new(),
            certificate: None,
        };
        let mut bound = routed("bound.example.com");
        bound.spec.routes = None;
        bound.spec.tunnel_id = Some(canary.id);
        let hostnames = [routed("shop.example.com"), bound];
        let relabelled = BTreeMap::from([("release".to_string(), "beta".to_string())]);
        let found = assess_labels(
            &[stable, canary.clone()],
            &hostnames,
            &canary.id.to_string(),
            &relabelled,
        );
        assert_eq!(found.len(), 1, "{:#?}", texts(&found));
        let text = found[0].to_string();
        assert_eq!(found[0].path, Some(AttributePath::root("labels")));
        assert!(
            text.contains("leaves routes[1] (release=canary) of shop.example.com without"),
            "{text}"
        );
        assert!(
            text.contains("routes[0] release=stable (weight 90): 100%"),
            "{text}"
        );
    }

    #[test]
    fn a_tunnel_without_connectors_is_reported_on_tunnel_id() {
        let idle = tunnel("web", "", 0);
        let busy = tunnel("api", "", 3);
        let found = assess(
            &[idle.clone(), busy.clone()],
            "app.example.com",
            &PlannedTarget::Tunnel(idle.id.to_string()),
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, Some(AttributePath::root("tunnel_id")));
        assert!(found[0].detail.contains("503"), "{}", found[0]);
        let found = assess(
            &[idle, busy.clone()],
            "app.example.com",
            &PlannedTarget::Tunnel(busy.id.to_string()),
        );
        assert!(found.is_empty());
        let found = assess(
            &[],
            "app.example.com",
            &PlannedTarget::Tunnel(busy.id.to_string()),
        );
        assert!(found[0].summary.contains("not on the edge"));
    }
}
