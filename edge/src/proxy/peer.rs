//! Forwarding between edge nodes, the proxy's phase 3 when this node holds no connection for
//! the hostname: the request, past this node's policies and rewritten for the tunnel, goes to a
//! node that holds one ([`forward`]), and that node answers it from its own connection
//! ([`serve_forwarded`]): the same phases from 3 on, never its policies again, and never a
//! second forward (a forwarded request that finds no connection there is 503). The transport
//! (mTLS links, which node holds what) is `crate::cluster`'s.
//!
//! On the forwarding node's side, a node that cannot be reached before the request left is
//! skipped for the next holder (at most [`MAX_ATTEMPTS`]); once the request left, a failure
//! is 502 like a broken tunnel stream. Upgrades travel as extended CONNECT on the link and are
//! spliced at both nodes.

use http::header::HeaderName;
use http::{HeaderValue, Method, Request, Response, StatusCode, request};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use postern_schema::api::{Hostname, HostnameSpec, Target};
use postern_schema::ids::TunnelId;
use postern_schema::rules::selector_matches;
use postern_schema::wire::{FORWARDED_BY_HEADER, REVISION_HEADER};
use rand::RngExt;
use tracing::Instrument;

use super::forward::{self, REQUEST_ID, Upgrade};
use super::{
    Context, Forwarded, MAX_ATTEMPTS, ProxyBody, ProxyError, Tally, forward_response, limits,
    open_stream, pick_connector, respond, route,
};
use crate::catalog::Snapshot;
use crate::cluster::membership::Member;
use crate::state::EdgeState;
use crate::tunnel::registry::TunnelBody;

/// How long a forwarded request waits for this node's catalog to reach the revision the
/// forwarding node routed with (a hostname created a moment ago through another node).
const CATCH_UP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Phase 3, elsewhere: no connection here serves the hostname, so the request goes to a node
/// that holds one. `NoConnector` (503) when no live node does or none can be reached.
pub(super) async fn forward(
    state: &EdgeState,
    snapshot: &Snapshot,
    hostname: &Hostname,
    context: &Context,
    mut parts: request::Parts,
    body: Incoming,
    request_id: &str,
) -> Result<Response<ProxyBody>, ProxyError> {
    let Some(node_id) = state.cluster.node_id() else {
        return Err(ProxyError::NoConnector);
    };
    let holders = holders_for(state, snapshot, &hostname.spec);
    if holders.is_empty() {
        return Err(ProxyError::NoConnector);
    }
    let upgrade = forward::upgrade_of(&parts);
    let visitor_upgrade = upgrade.and_then(|_| parts.extensions.remove::<OnUpgrade>());
    let (body, body_failed) = limits::watch(body);
    let body = body.map_err(|e| Box::new(e) as _).boxed_unsync();
    let host = hostname.spec.hostname.as_str();
    let mut request =
        forward::tunnel_request(parts, body, host, &context.visitor, request_id, upgrade);
    mark_forwarded(&mut request, node_id, snapshot.revision);

    for member in holders.iter().take(MAX_ATTEMPTS) {
        let node = member.advert.node_id.as_str();
        match state.cluster.forward(member, request).await {
            Ok(response) => {
                tracing::debug!(
                    node_id = node,
                    "forwarded to the edge node holding a connection"
                );
                let forwarded = relay(response, upgrade, visitor_upgrade);
                return respond(forwarded, request_id);
            }
            Err(failure) => match failure.request {
                Some(returned) => {
                    tracing::debug!(node_id = node, error = %postern_schema::error_chain(&failure.error), "cannot forward to an edge node; trying another");
                    request = returned;
                }
                None => {
                    return Err(match failure.error {
                        crate::cluster::peer::PeerError::Http2 { source, .. }
                            if body_failed.get() =>
                        {
                            ProxyError::VisitorBody(source)
                        }
                        crate::cluster::peer::PeerError::Http2 { source, .. } => {
                            ProxyError::Tunnel(source)
                        }
                        _ => ProxyError::NoConnector,
                    });
                }
            },
        }
    }
    Err(ProxyError::NoConnector)
}

/// The other nodes that hold a healthy connection for the hostname: for weighted routes, the
/// holders of the route the roll picks first, then of the others by weight.
fn holders_for(state: &EdgeState, snapshot: &Snapshot, spec: &HostnameSpec) -> Vec<Member> {
    match spec.target() {
        None => Vec::new(),
        Some(Target::Tunnel(id)) => state.cluster.holders(&[id]),
        Some(Target::Routes(routes)) => {
            let weights: Vec<u32> = routes.iter().map(|r| r.weight).collect();
            let total: u32 = weights.iter().sum();
            let roll = if total == 0 {
                0
            } else {
                rand::rng().random_range(0..total)
            };
            let mut holders: Vec<Member> = Vec::new();
            for index in route::route_order(&weights, roll) {
                let Some(route) = routes.get(index) else {
                    continue;
                };
                let tunnels: Vec<TunnelId> = snapshot
                    .tunnels
                    .values()
                    .filter(|t| selector_matches(&route.selector, &t.spec.labels))
                    .map(|t| t.id)
                    .collect();
                for member in state.cluster.holders(&tunnels) {
                    if !holders
                        .iter()
                        .any(|h| h.advert.node_id == member.advert.node_id)
                    {
                        holders.push(member);
                    }
                }
            }
            holders
        }
    }
}

/// Marks a request as forwarded by `node_id`, routed at catalog `revision`.
fn mark_forwarded(request: &mut Request<TunnelBody>, node_id: &str, revision: u64) {
    let headers = request.headers_mut();
    if let Ok(value) = HeaderValue::from_str(node_id) {
        headers.insert(HeaderName::from_static(FORWARDED_BY_HEADER), value);
    }
    headers.insert(
        HeaderName::from_static(REVISION_HEADER),
        HeaderValue::from(revision),
    );
}

/// The other node's answer, for the visitor: streamed, or for an accepted upgrade, the
/// visitor's connection spliced to the link's stream in the background.
fn relay(
    mut response: Response<Incoming>,
    upgrade: Option<Upgrade>,
    visitor_upgrade: Option<OnUpgrade>,
) -> Forwarded {
    match (upgrade, visitor_upgrade) {
        (Some(kind), Some(visitor)) if response.status() == StatusCode::OK => {
            let link = hyper::upgrade::on(&mut response);
            tokio::spawn(splice(visitor, link).in_current_span());
            let (mut parts, _) = response.into_parts();
            if kind == Upgrade::Http1WebSocket {
                parts.status = StatusCode::SWITCHING_PROTOCOLS;
            }
            Forwarded {
                response: Response::from_parts(parts, crate::tunnel::session::full_body("")),
                switching: Some(kind),
            }
        }
        _ => Forwarded {
            response: response.map(|body| body.map_err(|e| Box::new(e) as _).boxed_unsync()),
            switching: None,
        },
    }
}

/// Copies bytes both ways between two upgraded connections.
async fn splice(visitor: OnUpgrade, link: OnUpgrade) {
    let (visitor, link) = match tokio::try_join!(visitor, link) {
        Ok(pair) => pair,
        Err(error) => {
            tracing::debug!(%error, "forwarded upgrade failed");
            return;
        }
    };
    let mut visitor = TokioIo::new(visitor);
    let mut link = TokioIo::new(link);
    if let Err(error) = tokio::io::copy_bidirectional(&mut visitor, &mut link).await {
        tracing::debug!(%error, "forwarded upgraded connection ended");
    }
}

/// Answers a request another node forwarded (from node `from`): its policies were applied
/// there, so here it only finds the hostname, picks a connection of this node's own and opens
/// the stream. Never forwarded again: without a connection here it is 503.
pub(crate) async fn serve_forwarded(
    state: crate::state::EdgeState,
    from: &str,
    request: Request<Incoming>,
) -> Response<ProxyBody> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let request_id = header(REQUEST_ID.as_str())
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let revision = header(REVISION_HEADER).and_then(|r| r.parse::<u64>().ok());
    let span = tracing::debug_span!(
        "forwarded",
        request_id = %request_id,
        node_id = %from,
        hostname = tracing::field::Empty,
        tunnel_id = tracing::field::Empty,
        config_version = tracing::field::Empty,
    );
    async move {
        if let Some(revision) = revision {
            let _ =
                tokio::time::timeout(CATCH_UP_TIMEOUT, state.catalog.refresh_to(revision)).await;
        }
        let snapshot = state.catalog.snapshot();
        let response = match answer_forwarded(&state, &snapshot, request, &request_id).await {
            Ok(response) => response,
            Err(error) => error.into_response(&request_id),
        };
        tracing::debug!(
            status = response.status().as_u16(),
            "answered a forwarded request"
        );
        response
    }
    .instrument(span)
    .await
}

/// Phases 1 and 3 to 6 for a forwarded request, already in tunnel form.
async fn answer_forwarded(
    state: &EdgeState,
    snapshot: &Snapshot,
    request: Request<Incoming>,
    request_id: &str,
) -> Result<Response<ProxyBody>, ProxyError> {
    let (mut parts, body) = request.into_parts();
    parts.headers.remove(FORWARDED_BY_HEADER);
    parts.headers.remove(REVISION_HEADER);
    let host = parts
        .uri
        .authority()
        .map(|a| a.host().trim_end_matches('.').to_ascii_lowercase())
        .ok_or(ProxyError::MissingHost)?;
    let hostname = snapshot
        .hostnames
        .get(&host)
        .ok_or(ProxyError::UnknownHostname)?;
    tracing::Span::current().record("hostname", host.as_str());

    let pick = pick_connector(state, snapshot, hostname, &[])?;

    let upgrade = (parts.method == Method::CONNECT
        && parts.extensions.get::<hyper::ext::Protocol>().is_some())
    .then_some(Upgrade::ExtendedConnect);
    let link_upgrade = upgrade.and_then(|_| parts.extensions.remove::<OnUpgrade>());
    let (body, body_failed) = limits::watch(body);
    let body = body.map_err(|e| Box::new(e) as _).boxed_unsync();
    let request = Request::from_parts(parts, body);
    let mut tally = Tally::default();
    let stream = match open_stream(state, snapshot, hostname, pick, request, &mut tally).await {
        Ok(stream) => stream,
        Err(ProxyError::Tunnel(error)) if body_failed.get() => {
            return Err(ProxyError::VisitorBody(error));
        }
        Err(error) => return Err(error),
    };
    let forwarded = forward_response(stream, upgrade, link_upgrade);
    respond(forwarded, request_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forwarded_request_names_its_node_and_revision() {
        let mut request = Request::new(crate::tunnel::session::full_body(""));
        mark_forwarded(&mut request, "node-a", 42);
        assert_eq!(request.headers()[FORWARDED_BY_HEADER], "node-a");
        assert_eq!(request.headers()[REVISION_HEADER], "42");
    }
}
