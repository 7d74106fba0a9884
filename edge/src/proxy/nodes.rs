//! Requests between edge nodes, as the request phases see them: which other nodes hold a
//! connection for a hostname (in the order to try them), and the headers that mark a request
//! as forwarded (by which node, routed at which catalog revision). The links themselves are
//! `crate::cluster`'s; serving the receiving side is `links.rs`.

use http::header::HeaderName;
use http::{HeaderMap, HeaderValue, Request};
use postern_schema::api::Target;
use postern_schema::ids::TunnelId;
use postern_schema::rules::selector_matches;
use postern_schema::wire::{FORWARDED_BY_HEADER, REVISION_HEADER};
use rand::RngExt;

use super::forward::REQUEST_ID;
use super::route;
use crate::body::BoxBody;
use crate::catalog::Snapshot;
use crate::cluster::{Cluster, Member};

/// The other nodes that hold a healthy connection for the hostname: for weighted routes, the
/// holders of the route the roll picks first, then of the others by weight.
pub(super) fn holders_for(
    cluster: &Cluster,
    snapshot: &Snapshot,
    target: Option<Target<'_>>,
) -> Vec<Member> {
    match target {
        None => Vec::new(),
        Some(Target::Tunnel(id)) => cluster.holders(&[id]),
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
                for member in cluster.holders(&tunnels) {
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
pub(super) fn mark_forwarded(request: &mut Request<BoxBody>, node_id: &str, revision: u64) {
    let headers = request.headers_mut();
    if let Ok(value) = HeaderValue::from_str(node_id) {
        headers.insert(HeaderName::from_static(FORWARDED_BY_HEADER), value);
    }
    headers.insert(
        HeaderName::from_static(REVISION_HEADER),
        HeaderValue::from(revision),
    );
}

/// Removes the marks of [`mark_forwarded`] before the request goes down a tunnel.
pub(super) fn unmark(headers: &mut HeaderMap) {
    headers.remove(FORWARDED_BY_HEADER);
    headers.remove(REVISION_HEADER);
}

/// What a forwarded request says about itself.
#[derive(Debug)]
pub(super) struct Forwarded {
    /// The request id the first node gave it (a new one if it carries none).
    pub(super) request_id: String,
    /// The catalog revision the first node routed it with.
    pub(super) revision: Option<u64>,
}

impl Forwarded {
    /// Reads the request id and the revision from a forwarded request's headers.
    pub(super) fn read(headers: &HeaderMap) -> Self {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let request_id = header(REQUEST_ID.as_str())
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let revision = header(REVISION_HEADER).and_then(|r| r.parse::<u64>().ok());
        Self {
            request_id,
            revision,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forwarded_request_names_its_node_and_revision() {
        let mut request = Request::new(crate::body::empty());
        request
            .headers_mut()
            .insert(REQUEST_ID, HeaderValue::from_static("r-7"));
        mark_forwarded(&mut request, "node-a", 42);
        assert_eq!(request.headers()[FORWARDED_BY_HEADER], "node-a");
        let forwarded = Forwarded::read(request.headers());
        assert_eq!(forwarded.request_id, "r-7");
        assert_eq!(forwarded.revision, Some(42));
        unmark(request.headers_mut());
        assert!(request.headers().get(FORWARDED_BY_HEADER).is_none());
        assert!(request.headers().get(REVISION_HEADER).is_none());
    }
}
