//! `/v1/status`: what the edge observes beside what was declared: the live nodes and connector
//! connections of the whole cluster, the last minute's requests per weighted route, policy
//! decisions, the DNS records it answers, and each TCP service's connections. Read-only; the status
//! page (`/ui`) reads it with the tunnels, hostnames and policies.

use std::collections::HashMap;
use std::net::IpAddr;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use postern_schema::api::{
    Decision, DnsRecord, EdgeStatus, EjectedRoute, ErrorRate, PolicyDecisionCount, RouteTraffic,
    Target, TcpServiceTraffic,
};
use postern_schema::rules::{format_selector, selector_matches};

use super::reply::reply;
use super::state::ApiState;
use crate::catalog::Snapshot;
use crate::dns::{ZoneConfig, ZoneView, record_data};
use crate::metrics::{Metrics, RECENT_ROUTE_REQUESTS, WINDOW_SECONDS};
use crate::tunnel::Registry;

pub(super) fn router() -> Router<ApiState> {
    Router::new().route("/v1/status", get(status))
}

async fn status(State(state): State<ApiState>) -> Response {
    let snapshot = state.catalog.snapshot();
    let body = EdgeStatus {
        catalog_revision: snapshot.revision,
        window_seconds: WINDOW_SECONDS,
        nodes: u32::try_from(state.cluster.nodes()).unwrap_or(u32::MAX),
        connections: connections(&state),
        routes: routes(&snapshot, &state.metrics),
        decisions: decisions(&snapshot, &state.metrics),
        dns: dns(&snapshot, &state),
        tcp_services: tcp_services(&snapshot, &state),
        ejected_routes: ejected_routes(&snapshot, &state.registry),
    };
    reply(StatusCode::OK, &body, None)
}

/// Live connections on this node and on the others, as they advertise theirs.
fn connections(state: &ApiState) -> u32 {
    let local: usize = state
        .registry
        .counts()
        .iter()
        .map(|(_, n)| *n as usize)
        .sum();
    let remote = state.cluster.remote_records().len();
    u32::try_from(local + remote).unwrap_or(u32::MAX)
}

/// Every route of every routed hostname, with the requests that took it in the window.
fn routes(snapshot: &Snapshot, metrics: &Metrics) -> Vec<RouteTraffic> {
    let mut out = Vec::new();
    for (name, hostname) in &snapshot.hostnames {
        let Some(Target::Routes(routes)) = hostname.spec.target() else {
            continue;
        };
        for (index, route) in routes.iter().enumerate() {
            let label = format_selector(&route.selector);
            let requests = metrics.recent(
                RECENT_ROUTE_REQUESTS,
                &[("hostname", name), ("route", &label)],
            );
            out.push(RouteTraffic {
                hostname: name.clone(),
                index,
                route: label,
                selector: route.selector.clone(),
                weight: route.weight,
                requests,
            });
        }
    }
    out
}

/// The weighted routes out of rotation: ejected by the passive health of this node's answers,
/// or with every connection of the route reporting the service's origin unhealthy.
pub(crate) fn ejected_routes(snapshot: &Snapshot, registry: &Registry) -> Vec<EjectedRoute> {
    // Forget the health of routes no longer declared.
    registry.routes.retain(|key| {
        snapshot.hostnames.get(&key.hostname).is_some_and(|h| {
            h.spec.servings().any(|serving| {
                serving.prefix == key.prefix.as_deref()
                    && matches!(serving.target, Some(Target::Routes(routes))
                        if routes.iter().any(|r| format_selector(&r.selector) == key.route))
            })
        })
    });
    let mut out: Vec<EjectedRoute> = registry
        .routes
        .ejected()
        .into_iter()
        .map(|ejected| EjectedRoute {
            hostname: ejected.key.hostname,
            prefix: ejected.key.prefix,
            route: ejected.key.route,
            reason: ejected.reason.as_str().to_string(),
            error_rate: Some(ErrorRate(ejected.error_rate)),
            retry_in_seconds: Some(ejected.remaining.as_secs_f64().ceil() as u64),
        })
        .collect();
    for (name, hostname) in &snapshot.hostnames {
        for serving in hostname.spec.servings() {
            let Some(Target::Routes(routes)) = serving.target else {
                continue;
            };
            for route in routes {
                let label = format_selector(&route.selector);
                let sessions: Vec<_> = snapshot
                    .tunnels
                    .values()
                    .filter(|t| selector_matches(&route.selector, &t.spec.labels))
                    .flat_map(|t| registry.sessions(t.id))
                    .filter(|s| s.is_healthy())
                    .collect();
                let prefix = serving.prefix.map(str::to_owned);
                let listed = out
                    .iter()
                    .any(|e| &e.hostname == name && e.prefix == prefix && e.route == label);
                if !listed
                    && !sessions.is_empty()
                    && sessions.iter().all(|s| !s.serves_origin(serving.service))
                {
                    out.push(EjectedRoute {
                        hostname: name.clone(),
                        prefix,
                        route: label,
                        reason: "origin_unhealthy".to_string(),
                        error_rate: None,
                        retry_in_seconds: None,
                    });
                }
            }
        }
    }
    out.sort_by(|a, b| (&a.hostname, &a.prefix, &a.route).cmp(&(&b.hostname, &b.prefix, &b.route)));
    out
}

/// The policy engine's decision counters of the policies in `snapshot`. The counters are
/// labelled with the policy's name (unique among policies), which leads back to its id.
fn decisions(snapshot: &Snapshot, metrics: &Metrics) -> Vec<PolicyDecisionCount> {
    let by_name: HashMap<&str, _> = snapshot
        .policies
        .values()
        .map(|p| (p.spec.name.as_str(), p.id))
        .collect();
    metrics
        .series(crate::policy::DECISIONS)
        .into_iter()
        .filter_map(|(labels, count)| {
            let label = |key: &str| {
                labels
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| v.as_str())
            };
            let policy = label("policy")?;
            let decision = match label("decision")? {
                "allow" => Decision::Allow,
                "deny" => Decision::Deny,
                "report" => Decision::Report,
                _ => return None,
            };
            Some(PolicyDecisionCount {
                policy_id: *by_name.get(policy)?,
                policy: policy.to_string(),
                hostname: label("hostname")?.to_string(),
                decision,
                reason: label("reason")?.to_string(),
                count,
            })
        })
        .collect()
}

/// Every TCP service, by name, with the connections this node carried and refused for it (the
/// `outcome` of `postern_edge_tcp_connections_total`: `carried`, or why it was closed).
fn tcp_services(snapshot: &Snapshot, state: &ApiState) -> Vec<TcpServiceTraffic> {
    let mut counts: HashMap<String, (u64, u64)> = HashMap::new();
    for (labels, count) in state.metrics.series("postern_edge_tcp_connections_total") {
        let label = |key: &str| {
            labels
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.as_str())
        };
        let (Some(service), Some(outcome)) = (label("service"), label("outcome")) else {
            continue;
        };
        let entry = counts.entry(service.to_string()).or_default();
        if outcome == "carried" {
            entry.0 += count;
        } else {
            entry.1 += count;
        }
    }
    let mut out: Vec<TcpServiceTraffic> = snapshot
        .tcp_services
        .values()
        .map(|service| {
            let (connections, refused) =
                counts.get(&service.spec.name).copied().unwrap_or_default();
            TcpServiceTraffic {
                id: service.id,
                name: service.spec.name.clone(),
                listen: service
                    .spec
                    .listen_port
                    .map(|port| state.tcp_ports.listen(port))
                    .unwrap_or_default(),
                connections,
                refused,
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The records the edge's DNS answers now: the zones of `--zone` with the catalog's public
/// addresses, as the DNS server builds them.
fn dns(snapshot: &Snapshot, state: &ApiState) -> Vec<DnsRecord> {
    let addresses: Vec<IpAddr> = state
        .catalog
        .public_addresses()
        .iter()
        .filter_map(|address| address.parse().ok())
        .collect();
    let config = ZoneConfig::new(&state.settings.zones, &addresses);
    ZoneView::build(snapshot, &config)
        .records()
        .iter()
        .map(|record| {
            let name = record.name.to_ascii();
            DnsRecord {
                name: name.strip_suffix('.').unwrap_or(&name).to_string(),
                record_type: record.record_type().to_string(),
                ttl: record.ttl,
                data: record_data(record),
            }
        })
        .collect()
}
