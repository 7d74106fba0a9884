//! One visitor request, phase by phase, top-down in this file:
//!
//! 0. [`acme_challenge`]: an ACME server's `http-01` validation is answered before any lookup.
//! 1. [`find_hostname`]: the declared hostname named by `Host` (and, on HTTPS, the SNI): the
//!    exact one, else the wildcard one label above; then [`choose_route`]: the path route
//!    whose prefix covers the path (the longest), else the hostname's default.
//! 2. [`apply_policies`]: that route's policies; refused traffic stops here. Before them,
//!    the identity headers a visitor sent are removed and the paths under `/.postern/` answered
//!    (`login.rs`); after them, a request that passed as someone carries who.
//! 3. [`pick_destination`]: a route by weight, then the least busy healthy connection of this
//!    node; with several edge nodes and none here, the nodes that hold one.
//! 4. [`open_stream`]: the request as an HTTP/2 stream on that tunnel connection, or on the
//!    link to one of those nodes.
//! 5. [`forward_response`]: the response body streamed back, or the upgraded connection
//!    spliced.
//! 6. [`respond`]: connector faults turned into the edge's statuses; headers cleaned.
//!
//! A visitor's request ([`handle`]) runs every phase. A request another node forwarded
//! ([`handle_forwarded`]) was checked there: it runs phases 1 and 3 to 6, only ever on this
//! node's own connections. Either is refused (503) while this node serves a catalog it has
//! not been able to refresh for longer than `--max-staleness`. Failures are [`ProxyError`]s,
//! turned into statuses in one place (`error.rs`).

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant, SystemTime};

use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, request};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use postern_schema::api::{Hostname, Serving};
use postern_schema::ids::TunnelId;
use postern_schema::wire::{ConnectorFault, ERROR_HEADER};
use tracing::Instrument;

use super::activity::{Active, Splices};
use super::error::ProxyError;
use super::forward::{self, Upgrade, Visitor};
use super::limits::{self, ProxySettings};
use super::login;
use super::nodes::{self, Forwarded};
use super::route::{self, Pick};
use super::rules;
use super::shares::{ConnectionShares, ConnectionSlot};
use crate::access_log::{self, AccessLog, Entry, Logged};
use crate::body::{self, BodyFailed, BoxBody, Guarded};
use crate::catalog::{Catalog, Snapshot};
use crate::certs::Certificates;
use crate::cluster::{Cluster, Member, PeerError};
use crate::metrics::{Metrics, PublicRequest};
use crate::policy::{Now, PolicyEngine, Reason, RequestFacts, Verdict, canonical_path};
use crate::tunnel::{Registry, RouteKey, Session, StreamGuard};
use http_body_util::BodyExt;

/// How long a request waits for its connection to push the configuration it was routed with.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(1);

/// How many connections (or nodes) one request may be offered to when they close under it.
const MAX_ATTEMPTS: usize = 3;

/// What the request path reads; shared by every connection of the public listeners and of
/// the links from other nodes.
pub(crate) struct Proxy {
    /// Hostnames, tunnels and policies.
    pub(crate) catalog: Catalog,
    /// This node's live tunnel connections.
    pub(crate) registry: Arc<Registry>,
    /// The hostnames' policies, with their counters.
    pub(crate) policies: Arc<PolicyEngine>,
    /// Request counters.
    pub(crate) metrics: Arc<Metrics>,
    /// The other edge nodes, to forward to when no connection here serves a hostname.
    pub(crate) cluster: Cluster,
    /// The limits an operator set.
    pub(crate) settings: ProxySettings,
    /// Each client's share of the public listeners.
    pub(super) shares: Arc<ConnectionShares>,
    /// Public certificates, for the answers to ACME `http-01` validations.
    pub(crate) certificates: Certificates,
    /// One line per request, while someone reads them.
    pub(crate) access_log: Arc<AccessLog>,
}

impl Proxy {
    /// The request path over these parts of the edge, held to `settings`.
    #[expect(
        clippy::too_many_arguments,
        reason = "each is a part of the edge the request path reads; its one caller names them"
    )]
    pub(crate) fn new(
        catalog: Catalog,
        registry: Arc<Registry>,
        policies: Arc<PolicyEngine>,
        metrics: Arc<Metrics>,
        cluster: Cluster,
        settings: ProxySettings,
        certificates: Certificates,
        access_log: Arc<AccessLog>,
    ) -> Self {
        Self {
            certificates,
            access_log,
            shares: ConnectionShares::new(settings.max_connections_per_ip),
            catalog,
            registry,
            policies,
            metrics,
            cluster,
            settings,
        }
    }
}

/// What the proxy knows about a visitor's connection, and what the connection holds while it
/// (or an upgraded connection it carried) lives.
#[derive(Debug)]
pub(super) struct Context {
    pub(super) visitor: Visitor,
    /// The TLS server name, on HTTPS.
    pub(super) sni: Option<String>,
    /// Where the connection's upgraded connections run.
    pub(super) splices: Splices,
    /// Its place in the listener's limit and its client's share (held, never read).
    pub(super) _slot: ConnectionSlot,
}

/// What the metrics need to know about a request once it is answered. Every label value comes
/// from declared objects (the hostname, its routes, the tunnel's `release` label), never from
/// the request, so cardinality stays bounded.
#[derive(Debug, Default)]
struct Tally {
    hostname: Option<String>,
    route: Option<String>,
    /// The `release` label of the tunnel the request was sent to (empty when it has none);
    /// `None` until a connector is picked.
    release: Option<String>,
    /// The path route's prefix the request was served under.
    prefix: Option<String>,
    /// The picked route's `max_error_rate`.
    max_error_rate: Option<f64>,
    /// What only the access log reads, filled while it is on: the connection that carried
    /// the request, the policies' decision, and the body bytes read from the visitor.
    session: Option<Arc<Session>>,
    decision: Option<Decision>,
    bytes_in: Option<Arc<AtomicU64>>,
    /// Who the request was from (an email, or a Basic user name), when a policy said.
    user: Option<String>,
}

/// What a hostname's policies decided about a request.
#[derive(Debug)]
struct Decision {
    allowed: bool,
    /// The policy that refused it, and why.
    refused_by: Option<(Arc<str>, &'static str)>,
}

impl Tally {
    fn count(&self, metrics: &Metrics, status: StatusCode, elapsed: Duration) {
        let request = PublicRequest {
            hostname: self.hostname.as_deref().unwrap_or(""),
            route: self.route.as_deref(),
            release: self.release.as_deref(),
            status,
        };
        metrics.count_request(&request, elapsed);
    }

    /// Counts the answer in the passive health of the route the request took, if it took a
    /// weighted route of this node's connections.
    fn judge(&self, registry: &Registry, status: StatusCode) {
        if let (Some(hostname), Some(route)) = (&self.hostname, &self.route) {
            let key = RouteKey {
                hostname: hostname.clone(),
                prefix: self.prefix.clone(),
                route: route.clone(),
            };
            registry
                .routes
                .record(&key, status.is_server_error(), self.max_error_rate);
        }
    }
}

/// What the access log keeps of a request from its arrival: what the request itself said.
struct Arrived {
    at: SystemTime,
    client_ip: std::net::IpAddr,
    method: String,
    host: String,
    path: String,
}

impl Arrived {
    fn of(request: &Request<Incoming>, context: &Context) -> Self {
        Self {
            at: SystemTime::now(),
            client_ip: context.visitor.peer.ip(),
            method: request.method().as_str().to_string(),
            host: host_of(request.uri(), request.headers()).unwrap_or_default(),
            // The path only: a query may carry a secret.
            path: request.uri().path().to_string(),
        }
    }

    /// Wraps `response`'s body so that the request's line is written once it is sent.
    fn log_when_sent(
        self,
        log: Arc<AccessLog>,
        request_id: String,
        tally: Tally,
        failure: Option<String>,
        started: Instant,
        response: Response<BoxBody>,
    ) -> Response<BoxBody> {
        let Tally {
            hostname,
            route,
            session,
            decision,
            bytes_in,
            user,
            ..
        } = tally;
        let (decision, policy, refusal) = match decision {
            None => (None, None, None),
            Some(Decision {
                allowed,
                refused_by,
            }) => {
                let (policy, reason) = refused_by.unzip();
                (
                    Some(if allowed { "allow" } else { "deny" }),
                    policy.map(|policy| policy.to_string()),
                    reason.map(str::to_string),
                )
            }
        };
        let entry = Entry {
            request_id,
            time: access_log::rfc3339(self.at),
            client_ip: self.client_ip,
            method: self.method,
            host: hostname.unwrap_or(self.host),
            path: self.path,
            status: response.status().as_u16(),
            bytes_in: 0,
            bytes_out: 0,
            duration_ms: 0.0,
            route,
            tunnel_id: session.as_ref().map(|s| s.tunnel.to_string()),
            connection_id: session.as_ref().map(|s| s.id.clone()),
            connector: session.as_ref().map(|s| s.connector.clone()),
            decision,
            policy,
            reason: refusal.or(failure),
            user,
        };
        let read = bytes_in.unwrap_or_default();
        response.map(|body| Logged::new(body, log, entry, started, read).boxed_unsync())
    }
}

// === the two ways in ===

/// One visitor request, start to finish. `active` counts it as in flight on its connection
/// until its response (or the upgraded connection it became) ends.
pub(super) async fn handle(
    proxy: Arc<Proxy>,
    context: Arc<Context>,
    request: Request<Incoming>,
    active: Active,
) -> Response<BoxBody> {
    let request_id = new_request_id();
    let span = tracing::debug_span!(
        "request",
        request_id = %request_id,
        peer_addr = %context.visitor.peer,
        hostname = tracing::field::Empty,
        user = tracing::field::Empty,
        tunnel_id = tracing::field::Empty,
        config_version = tracing::field::Empty,
    );
    async move {
        let started = Instant::now();
        let snapshot = proxy.catalog.snapshot();
        let mut tally = Tally::default();
        let arrived = proxy.access_log.is_on().then(|| {
            tally.bytes_in = Some(Arc::new(AtomicU64::new(0)));
            Arrived::of(&request, &context)
        });
        let answered = proxy_visitor(
            &proxy,
            &snapshot,
            &context,
            request,
            &request_id,
            &mut tally,
            active,
        )
        .await;
        let (response, failure) = match answered {
            Ok(response) => (response, None),
            Err(error) => {
                let why = arrived.as_ref().map(|_| error.to_string());
                (error.into_response(&request_id), why)
            }
        };
        tally.count(&proxy.metrics, response.status(), started.elapsed());
        tally.judge(&proxy.registry, response.status());
        tracing::debug!(status = response.status().as_u16(), "answered");
        match arrived {
            None => response,
            Some(arrived) => {
                let log = proxy.access_log.clone();
                arrived.log_when_sent(log, request_id, tally, failure, started, response)
            }
        }
    }
    .instrument(span)
    .await
}

/// A request another node forwarded (node `from`): its policies were applied there, so here
/// it only finds the hostname, picks a connection of this node's own and opens the stream.
/// Never forwarded again: without a connection here it is 503. An upgrade runs in `splices`.
pub(super) async fn handle_forwarded(
    proxy: Arc<Proxy>,
    from: Arc<str>,
    request: Request<Incoming>,
    splices: Splices,
) -> Response<BoxBody> {
    let forwarded = Forwarded::read(request.headers());
    let span = tracing::debug_span!(
        "forwarded",
        request_id = %forwarded.request_id,
        node_id = %from,
        hostname = tracing::field::Empty,
        tunnel_id = tracing::field::Empty,
        config_version = tracing::field::Empty,
    );
    async move {
        if let Some(revision) = forwarded.revision {
            // A hostname created a moment ago through the other node may not be here yet.
            let _ =
                tokio::time::timeout(CATCH_UP_TIMEOUT, proxy.catalog.refresh_to(revision)).await;
        }
        let snapshot = proxy.catalog.snapshot();
        let request_id = forwarded.request_id;
        let answered = answer_forwarded(&proxy, &snapshot, request, &request_id, &splices).await;
        let response = answered.unwrap_or_else(|error| error.into_response(&request_id));
        tracing::debug!(
            status = response.status().as_u16(),
            "answered a forwarded request"
        );
        response
    }
    .instrument(span)
    .await
}

/// A random (version 4) UUID for a request, from the thread's generator: no system call on
/// the request path, unlike `Uuid::new_v4`.
fn new_request_id() -> String {
    uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// Every phase, in order, for a visitor's request.
async fn proxy_visitor(
    proxy: &Proxy,
    snapshot: &Snapshot,
    context: &Arc<Context>,
    request: Request<Incoming>,
    request_id: &str,
    tally: &mut Tally,
    active: Active,
) -> Result<Response<BoxBody>, ProxyError> {
    let (mut parts, body) = request.into_parts();
    if limits::header_list_size(&parts.headers) > limits::MAX_HEADER_LIST {
        return Err(ProxyError::HeadersTooLarge);
    }
    if let Some(answer) = acme_challenge(proxy, &parts) {
        return Ok(answer);
    }
    refuse_if_stale(proxy)?;
    let (hostname, host) = find_hostname(snapshot, context.sni.as_deref(), &parts)?;
    tally.hostname = Some(hostname.spec.hostname.clone());
    tracing::Span::current().record("hostname", host.as_str());
    let serving = choose_route(hostname, &mut parts)?;

    let header_rules = rules::of(snapshot, serving.policy_ids);
    if let Some(redirect) = rules::redirect(&header_rules, context.visitor.scheme, &host, &parts) {
        return Ok(redirect);
    }
    let https = context.sni.is_some();
    if let Some(answer) = login::reserved(&proxy.policies, snapshot, hostname, https, &parts).await
    {
        return answer;
    }
    let identity = apply_policies(
        proxy, snapshot, hostname, &serving, context, &mut parts, tally,
    )
    .await?;
    rules::edit_request(&header_rules, &mut parts.headers);

    let destination = pick_destination(
        proxy,
        snapshot,
        &hostname.spec.hostname,
        &serving,
        Reach::AnyNode,
    )?;

    let upgrade = forward::upgrade_of(&parts);
    let visitor_upgrade = upgrade.and_then(|_| parts.extensions.remove::<OnUpgrade>());
    let (body, body_failed) = body::watch(body);
    let body = match &tally.bytes_in {
        Some(read) => body.counting(read.clone()),
        None => body,
    };
    let mut request = forward::tunnel_request(
        parts,
        body::boxed(body),
        &host,
        &context.visitor,
        request_id,
        upgrade,
    );
    // After `tunnel_request`, which removes every `x-postern-*` header the visitor sent.
    request.headers_mut().extend(identity);
    if let (Destination::Nodes(_), Some(node_id)) = (&destination, proxy.cluster.node_id()) {
        nodes::mark_forwarded(&mut request, node_id, snapshot.revision);
    }
    let stream = open_stream(proxy, snapshot, &serving, destination, request, tally)
        .await
        .map_err(|error| error.blame_visitor_body(&body_failed))?;

    // The connection stays counted (and in flight) as long as the response or the upgraded
    // connection lives.
    let hold = (context.clone(), active);
    let mut response = respond(
        forward_response(stream, upgrade, visitor_upgrade, &context.splices, hold),
        request_id,
    )?;
    rules::edit_response(
        &header_rules,
        context.visitor.scheme,
        response.headers_mut(),
    );
    Ok(response)
}

/// Phases 1 and 3 to 6 for a forwarded request, already in tunnel form.
async fn answer_forwarded(
    proxy: &Proxy,
    snapshot: &Snapshot,
    request: Request<Incoming>,
    request_id: &str,
    splices: &Splices,
) -> Result<Response<BoxBody>, ProxyError> {
    refuse_if_stale(proxy)?;
    let (mut parts, body) = request.into_parts();
    nodes::unmark(&mut parts.headers);
    let (hostname, host) = find_hostname(snapshot, None, &parts)?;
    tracing::Span::current().record("hostname", host.as_str());
    let serving = choose_route(hostname, &mut parts)?;

    let destination = pick_destination(
        proxy,
        snapshot,
        &hostname.spec.hostname,
        &serving,
        Reach::ThisNode,
    )?;

    let upgrade = forward::upgrade_of(&parts);
    let link_upgrade = upgrade.and_then(|_| parts.extensions.remove::<OnUpgrade>());
    let (body, body_failed) = body::watch(body);
    let request = Request::from_parts(parts, body::boxed(body));
    let mut tally = Tally {
        hostname: Some(hostname.spec.hostname.clone()),
        ..Tally::default()
    };
    let opened = open_stream(proxy, snapshot, &serving, destination, request, &mut tally)
        .await
        .map_err(|error| error.blame_visitor_body(&body_failed));
    let status = match &opened {
        Ok(stream) => stream.response.status(),
        Err(error) => error.status(),
    };
    tally.judge(&proxy.registry, status);
    respond(
        forward_response(opened?, upgrade, link_upgrade, splices, ()),
        request_id,
    )
}

/// Before any phase: a node that has not been able to refresh its catalog from the store for
/// longer than `--max-staleness` refuses (503, saying so) rather than apply hostnames and
/// policies that may have changed since.
fn refuse_if_stale(proxy: &Proxy) -> Result<(), ProxyError> {
    match proxy.catalog.stale_for(proxy.settings.max_staleness) {
        None => Ok(()),
        Some(age) => Err(ProxyError::Stale {
            age,
            limit: proxy.settings.max_staleness,
        }),
    }
}

// === the phases ===

/// Phase 0, before the hostname is looked up: `GET /.well-known/acme-challenge/<token>` for an
/// `http-01` token the edge's ACME orders have in flight is answered with its key authorization
/// (RFC 8555, section 8.3), whatever the `Host`. Any other path under it goes on as usual, so an
/// origin may still answer challenges of its own.
fn acme_challenge(proxy: &Proxy, parts: &request::Parts) -> Option<Response<BoxBody>> {
    if parts.method != http::Method::GET {
        return None;
    }
    let token = parts
        .uri
        .path()
        .strip_prefix("/.well-known/acme-challenge/")?;
    let answer = proxy.certificates.http01(token)?;
    let mut response = Response::new(body::full(answer));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Some(response)
}

/// Phase 1: the declared hostname this request is for, by its `Host` (the URI authority on
/// HTTP/2 and absolute-form requests): the hostname of that name, else the wildcard one label
/// above it (an exact hostname wins over a wildcard). On HTTPS the host must be the SNI name
/// the connection was opened for (421 otherwise); an undeclared host, or one whose TLS passes through, is 404. Returns the
/// hostname and the host the request named.
fn find_hostname<'s>(
    snapshot: &'s Snapshot,
    sni: Option<&str>,
    parts: &request::Parts,
) -> Result<(&'s Hostname, String), ProxyError> {
    let host = request_host(parts).ok_or(ProxyError::MissingHost)?;
    if let Some(sni) = sni
        && sni != host
    {
        return Err(ProxyError::Misdirected {
            sni: sni.to_string(),
            host,
        });
    }
    // A passthrough hostname's origin speaks TLS to the visitor itself: no HTTP for it here.
    let hostname = snapshot
        .hostname_for(&host)
        .filter(|h| !h.spec.passes_tls_through())
        .ok_or(ProxyError::UnknownHostname)?;
    Ok((hostname, host))
}

/// Phase 1, continued: how the request is served: the path route whose prefix covers its
/// path (the longest prefix wins), else the hostname's default. On a hostname with path
/// routes the path is first put in canonical form (and the request refused, 400, when origins
/// would read it in different ways), so that `/x/../api` cannot reach `/api` past the
/// policies of another route.
fn choose_route<'h>(
    hostname: &'h Hostname,
    parts: &mut request::Parts,
) -> Result<Serving<'h>, ProxyError> {
    if hostname.spec.paths.is_empty() {
        return Ok(hostname.spec.serving_route(None));
    }
    use_canonical_path(parts)?;
    Ok(hostname.spec.serving(parts.uri.path()))
}

/// Phase 2: the policies of the request's route (the hostname's, or its path route's),
/// applied in order; the first deny wins. On a pass, the identity headers the origin receives
/// (empty for an anonymous request). Runs before any
/// connector is picked, so refused traffic never reaches a tunnel. A refusal is
/// [`ProxyError::Rejected`] with its status and headers (`WWW-Authenticate`, `Retry-After`).
/// Policies in `report` mode let the request through; the engine counts and logs them.
///
/// On a hostname whose policies restrict paths, the path checked is the canonical one, and it
/// replaces the request's own, so the origin receives exactly what was checked; a path origins
/// read in different ways is refused (400) before any policy runs.
async fn apply_policies(
    proxy: &Proxy,
    snapshot: &Snapshot,
    hostname: &Hostname,
    serving: &Serving<'_>,
    context: &Context,
    parts: &mut request::Parts,
    tally: &mut Tally,
) -> Result<http::HeaderMap, ProxyError> {
    let mut identity_headers = http::HeaderMap::new();
    if serving.policy_ids.is_empty() {
        return Ok(identity_headers);
    }
    if proxy.policies.restricts_paths(snapshot, serving.policy_ids) {
        use_canonical_path(parts)?;
    }
    let host = hostname.spec.hostname.as_str();
    let authorization = parts
        .headers
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    proxy
        .policies
        .prepare(snapshot, hostname, authorization)
        .await;
    let keys = proxy.policies.keys();
    let session = keys
        .filter(|_| proxy.policies.has_login(snapshot, hostname))
        .and_then(|keys| login::session_of(keys, host, &parts.headers));
    if let Some(session) = &session {
        // Who the request is from, in the request's log lines: the email, never the cookie.
        let who = session.email.as_deref().unwrap_or(&session.user);
        tracing::Span::current().record("user", who);
    }
    let facts = RequestFacts {
        client_ip: context.visitor.peer.ip(),
        method: parts.method.as_str(),
        path: parts.uri.path(),
        authorization,
        session: session.as_ref(),
        now: Now::read(),
    };
    let verdict = proxy
        .policies
        .check_policies(snapshot, hostname, serving.policy_ids, &facts);
    if tally.bytes_in.is_some() {
        tally.decision = Some(match &verdict {
            Verdict::Allow => Decision {
                allowed: true,
                refused_by: None,
            },
            Verdict::Deny(denial) => Decision {
                allowed: false,
                refused_by: Some((denial.policy.clone(), denial.reason.as_str())),
            },
        });
    }
    match verdict {
        Verdict::Allow => {
            let identity = proxy.policies.identity(snapshot, hostname, &facts);
            let now = facts.now.unix.as_secs();
            if let Some(identity) = identity {
                let who = identity.email.as_deref().unwrap_or(&identity.user);
                tracing::Span::current().record("user", who);
                if tally.bytes_in.is_some() {
                    tally.user = Some(who.to_string());
                }
                login::add_identity(
                    &mut identity_headers,
                    &identity,
                    keys.map(|k| &**k),
                    host,
                    now,
                );
            }
            Ok(identity_headers)
        }
        Verdict::Deny(denial) => {
            let mut headers = http::HeaderMap::new();
            denial.add_headers(&mut headers);
            let refusal = ProxyError::Rejected {
                status: denial.status(),
                headers,
                message: format!(
                    "refused by policy {} ({})",
                    denial.policy,
                    denial.reason.as_str()
                ),
            };
            if denial.reason == Reason::Login {
                let https = context.sni.is_some();
                return Err(login::start_login(
                    &proxy.policies,
                    snapshot,
                    hostname,
                    https,
                    parts,
                    refusal,
                )
                .await);
            }
            Err(refusal)
        }
    }
}

/// Replaces the request's path by its canonical form (the query stays as it came).
fn use_canonical_path(parts: &mut request::Parts) -> Result<(), ProxyError> {
    let canonical =
        canonical_path(parts.uri.path()).map_err(|why| ProxyError::AmbiguousPath(why.as_str()))?;
    let Cow::Owned(path) = canonical else {
        return Ok(());
    };
    let path_and_query = match parts.uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path,
    };
    let mut uri = std::mem::take(&mut parts.uri).into_parts();
    // The canonical path only holds characters the request's own path held, so it parses;
    // should it not, the request is refused rather than forwarded with another path.
    let unusable = || ProxyError::AmbiguousPath("the path cannot be put in canonical form");
    uri.path_and_query = Some(path_and_query.parse().map_err(|_| unusable())?);
    parts.uri = http::Uri::from_parts(uri).map_err(|_| unusable())?;
    Ok(())
}

/// Where phase 3 may look for a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// This node's connections, else another node's (a visitor's request).
    AnyNode,
    /// This node's connections only (a request another node forwarded).
    ThisNode,
}

/// Where a request goes.
#[derive(Debug)]
enum Destination {
    /// A tunnel connection of this node.
    Connection(Pick),
    /// Other edge nodes that hold a connection for the hostname, in the order to try them.
    Nodes(Vec<Member>),
}

/// Phase 3: a healthy connection for the hostname: its tunnel's, or for weighted routes a
/// route by weight (failing over to the others) and a tunnel whose labels match; the least
/// busy connection wins. With none here, and when `reach` allows, the other nodes that hold
/// one. None anywhere is 503 at once.
fn pick_destination(
    proxy: &Proxy,
    snapshot: &Snapshot,
    hostname: &str,
    serving: &Serving<'_>,
    reach: Reach,
) -> Result<Destination, ProxyError> {
    if let Some(pick) = route::pick(snapshot, hostname, serving, &proxy.registry, &[]) {
        return Ok(Destination::Connection(pick));
    }
    if reach == Reach::ThisNode || proxy.cluster.node_id().is_none() {
        return Err(ProxyError::NoConnector);
    }
    let holders = nodes::holders_for(&proxy.cluster, snapshot, serving.target);
    if holders.is_empty() {
        return Err(ProxyError::NoConnector);
    }
    Ok(Destination::Nodes(holders))
}

/// A stream opened for the request: its response head, and for a tunnel connection of this
/// node the guard that counts it as outstanding.
struct Stream {
    response: Response<Incoming>,
    guard: Option<StreamGuard>,
}

/// Phase 4: sends the request to its destination and waits for the response head. A
/// connection (or node) that closed before the request left the edge is skipped for another
/// (at most [`MAX_ATTEMPTS`] in all); any other failure is 502.
async fn open_stream(
    proxy: &Proxy,
    snapshot: &Snapshot,
    serving: &Serving<'_>,
    destination: Destination,
    request: Request<BoxBody>,
    tally: &mut Tally,
) -> Result<Stream, ProxyError> {
    match destination {
        Destination::Connection(pick) => {
            open_on_connection(proxy, snapshot, serving, pick, request, tally).await
        }
        Destination::Nodes(holders) => {
            let head_timeout = proxy.settings.response_head_timeout;
            open_on_node(&proxy.cluster, &holders, request, head_timeout).await
        }
    }
}

/// Phase 4 on this node's tunnel connections.
async fn open_on_connection(
    proxy: &Proxy,
    snapshot: &Snapshot,
    serving: &Serving<'_>,
    mut pick: Pick,
    mut request: Request<BoxBody>,
    tally: &mut Tally,
) -> Result<Stream, ProxyError> {
    let mut tried = Vec::new();
    loop {
        tally.route = pick.route.clone();
        tally.prefix = serving.prefix.map(str::to_owned);
        tally.max_error_rate = pick.max_error_rate;
        tally.release = Some(release_of(snapshot, pick.session.tunnel));
        if tally.bytes_in.is_some() {
            tally.session = Some(pick.session.clone());
        }
        if pick.handed_off {
            // No connection of this tunnel on this worker: the stream is another thread's.
            proxy.metrics.inc("postern_edge_worker_handoffs_total", &[]);
        }
        let session = pick.session;
        // A hostname changed a moment ago may not have reached this connector yet.
        session.catch_up(snapshot.revision, CATCH_UP_TIMEOUT).await;
        let version = session.pushed_version();
        let span = tracing::Span::current();
        span.record("tunnel_id", tracing::field::display(session.tunnel));
        span.record("config_version", version);
        forward::set_config_version(&mut request, version);
        let guard = session
            .begin_stream(proxy.settings.stream_slot_timeout)
            .await
            .ok_or(ProxyError::NoStreamSlot)?;
        let sent =
            tokio::time::timeout(proxy.settings.response_head_timeout, session.send(request))
                .await
                .map_err(|_| ProxyError::ResponseTimeout)?;
        match sent {
            Ok(response) => {
                return Ok(Stream {
                    response,
                    guard: Some(guard),
                });
            }
            Err(failure) => {
                tried.push(session.id.clone());
                match failure.request {
                    Some(returned) if tried.len() < MAX_ATTEMPTS => {
                        tracing::debug!(
                            "the connection closed before the stream opened; trying another"
                        );
                        request = returned;
                        let hostname = tally.hostname.as_deref().unwrap_or_default();
                        pick = route::pick(snapshot, hostname, serving, &proxy.registry, &tried)
                            .ok_or(ProxyError::NoConnector)?;
                    }
                    _ => return Err(ProxyError::Tunnel(failure.error)),
                }
            }
        }
    }
}

/// Phase 4 on the link to another node that holds a connection: a node that cannot be
/// reached before the request left is skipped for the next holder; once the request left, a
/// failure is 502 like a broken tunnel stream.
async fn open_on_node(
    cluster: &Cluster,
    holders: &[Member],
    mut request: Request<BoxBody>,
    head_timeout: Duration,
) -> Result<Stream, ProxyError> {
    for member in holders.iter().take(MAX_ATTEMPTS) {
        let node_id = member.advert.node_id.as_str();
        let forwarded = tokio::time::timeout(head_timeout, cluster.forward(member, request))
            .await
            .map_err(|_| ProxyError::ResponseTimeout)?;
        match forwarded {
            Ok(response) => {
                tracing::debug!(node_id, "forwarded to the edge node holding a connection");
                return Ok(Stream {
                    response,
                    guard: None,
                });
            }
            Err(failure) => match failure.request {
                Some(returned) => {
                    tracing::debug!(node_id, error = %postern_schema::error_chain(&failure.error), "cannot forward to an edge node; trying another");
                    request = returned;
                }
                None => {
                    return Err(match failure.error {
                        PeerError::Http2 { source, .. } => ProxyError::Tunnel(source),
                        _ => ProxyError::NoConnector,
                    });
                }
            },
        }
    }
    Err(ProxyError::NoConnector)
}

/// A response ready for the visitor, and whether it switches protocols.
struct Answer {
    response: Response<BoxBody>,
    switching: Option<Upgrade>,
}

/// Phase 5: the response, its body streamed as it arrives (a tunnel stream stays counted
/// until the body ends, and so does `hold`). For an accepted upgrade, the visitor's
/// connection and the stream are spliced in `splices`, holding both until they end.
fn forward_response<H: Send + Unpin + 'static>(
    stream: Stream,
    upgrade: Option<Upgrade>,
    visitor_upgrade: Option<OnUpgrade>,
    splices: &Splices,
    hold: H,
) -> Answer {
    let Stream {
        mut response,
        guard,
    } = stream;
    match (upgrade, visitor_upgrade) {
        (Some(kind), Some(visitor)) if response.status() == StatusCode::OK => {
            let tunnel = hyper::upgrade::on(&mut response);
            splices.spawn(body::splice(visitor, tunnel, (guard, hold)).in_current_span());
            let (mut parts, _) = response.into_parts();
            if kind == Upgrade::Http1WebSocket {
                parts.status = StatusCode::SWITCHING_PROTOCOLS;
            }
            Answer {
                response: Response::from_parts(parts, body::empty()),
                switching: Some(kind),
            }
        }
        _ => Answer {
            response: response.map(|body| Guarded::new(body, (guard, hold)).boxed()),
            switching: None,
        },
    }
}

/// Phase 6: a failure the connector reported (in `x-postern-error`) becomes the edge's own
/// answer (404, 502 or 504); otherwise the response goes out with hop-by-hop and internal
/// headers removed and the request id added.
fn respond(answer: Answer, request_id: &str) -> Result<Response<BoxBody>, ProxyError> {
    let Answer {
        mut response,
        switching,
    } = answer;
    if let Some(fault) = response
        .headers()
        .get(HeaderName::from_static(ERROR_HEADER))
        .and_then(|v| v.to_str().ok())
        .and_then(ConnectorFault::parse)
    {
        return Err(ProxyError::Connector(fault));
    }
    forward::clean_response_headers(response.headers_mut(), request_id);
    if switching == Some(Upgrade::Http1WebSocket) {
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    }
    Ok(response)
}

impl ProxyError {
    /// A stream that failed while the visitor's body had broken off or was malformed is the
    /// visitor's fault (400), not the tunnel's.
    fn blame_visitor_body(self, body_failed: &BodyFailed) -> Self {
        match self {
            ProxyError::Tunnel(error) if body_failed.get() => ProxyError::VisitorBody(error),
            other => other,
        }
    }
}

/// The `release` label of `tunnel` in `snapshot`, empty when it has none.
fn release_of(snapshot: &Snapshot, tunnel: TunnelId) -> String {
    snapshot
        .tunnels
        .get(&tunnel)
        .and_then(|t| t.spec.labels.get("release"))
        .cloned()
        .unwrap_or_default()
}

/// The host a request names, lowercase, without port or trailing dot.
fn request_host(parts: &request::Parts) -> Option<String> {
    host_of(&parts.uri, &parts.headers)
}

/// The host named by `uri`'s authority, else by the `Host` header; as [`request_host`].
fn host_of(uri: &http::Uri, headers: &http::HeaderMap) -> Option<String> {
    let host = match uri.authority() {
        Some(authority) => authority.host().to_string(),
        None => {
            let value = headers.get(header::HOST)?.to_str().ok()?;
            value
                .trim()
                .parse::<http::uri::Authority>()
                .ok()?
                .host()
                .to_string()
        }
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(build: http::request::Builder) -> request::Parts {
        build.body(()).expect("valid").into_parts().0
    }

    #[test]
    fn the_host_comes_from_the_authority_or_the_host_header() {
        assert_eq!(
            request_host(&parts(
                Request::get("/").header("host", "App.Example.com:8080")
            )),
            Some("app.example.com".into())
        );
        assert_eq!(
            request_host(&parts(Request::get("https://a.example.com./x"))),
            Some("a.example.com".into())
        );
        assert_eq!(request_host(&parts(Request::get("/"))), None);
        assert_eq!(
            request_host(&parts(Request::get("/").header("host", "bad host"))),
            None
        );
    }
}
