//! The DNS wire: hickory-server's UDP loop and the edge's own TCP loop (`tcp`, which caps
//! connections) on the edge's sockets, and a request handler that answers each query from the
//! catalog snapshot current at that moment, so records follow API writes at once.
//!
//! Messages shorter than a DNS header and messages that are responses are dropped, and a header
//! followed by something unreadable is answered FORMERR, before the handler (so these are not
//! counted in `postern_edge_dns_queries_total`). Every query that reaches the handler is
//! answered and counted by response code, except answers over UDP beyond the response rate
//! limit (`rate_limit`): those are dropped, or sent truncated, and counted in
//! `postern_edge_dns_rate_limited_total`.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::{Name, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder};
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

use super::rate_limit::{AnswerKind, RateLimitConfig, RateLimiter, Verdict};
use super::tcp::TcpConfig;
use super::zone::{Answer, ZoneConfig, ZoneView};
use crate::catalog::{Catalog, Snapshot};
use crate::certs::Certificates;
use crate::metrics::Metrics;
/// The largest UDP response sent to an EDNS client (the DNS Flag Day 2020 value, which avoids
/// IP fragmentation); longer answers are truncated and the client retries over TCP.
const MAX_UDP_PAYLOAD: u16 = 1232;
/// The metric family of answered queries.
const QUERIES: &str = "postern_edge_dns_queries_total";
/// The metric family of answers over the rate limit.
const RATE_LIMITED: &str = "postern_edge_dns_rate_limited_total";
/// The `rcode` label values.
const RCODES: [&str; 8] = [
    "noerror", "formerr", "servfail", "nxdomain", "notimp", "refused", "badvers", "other",
];

/// How the DNS server limits what one client can take.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct DnsLimits {
    /// The TCP side's connection cap and idle timeout.
    pub(crate) tcp: TcpConfig,
    /// Response-rate limiting of UDP answers.
    pub(crate) rate_limit: RateLimitConfig,
}

/// The two sockets DNS is served on.
pub(crate) struct Sockets {
    pub(crate) udp: UdpSocket,
    pub(crate) tcp: TcpListener,
}

/// Answers DNS queries for `zones` on `sockets` until `cancel`.
pub(crate) async fn serve(
    Sockets { udp, tcp }: Sockets,
    catalog: Catalog,
    zones: &[String],
    limits: DnsLimits,
    metrics: Arc<Metrics>,
    certificates: Certificates,
    cancel: CancellationToken,
) {
    let addresses: Vec<IpAddr> = catalog
        .public_addresses()
        .iter()
        .filter_map(|address| match address.parse() {
            Ok(ip) => Some(ip),
            Err(_) => {
                tracing::error!(%address, "not an IP address; DNS will not answer with it");
                None
            }
        })
        .collect();
    let config = ZoneConfig::new(zones, &addresses);
    let handler =
        ZoneHandler::new(catalog, config, limits.rate_limit, metrics).with_acme(certificates);
    tracing::info!(
        addr = ?udp.local_addr().ok(),
        ?zones,
        tcp_max_connections = limits.tcp.max_connections,
        rate_limit = limits.rate_limit.responses_per_second,
        "DNS listening (UDP and TCP)"
    );
    run(udp, tcp, handler, limits.tcp, cancel).await;
}

/// Serves `handler` on both sockets until `cancel`.
pub(crate) async fn run(
    udp: UdpSocket,
    tcp: TcpListener,
    handler: ZoneHandler,
    tcp_config: TcpConfig,
    cancel: CancellationToken,
) {
    let handler = Arc::new(handler);
    let metrics = handler.metrics.clone();
    let tcp = super::tcp::serve(tcp, handler.clone(), tcp_config, metrics, cancel.clone());
    let udp = async {
        let mut server = Server::new(Shared(handler));
        server.register_socket(udp);
        tokio::select! {
            _ = cancel.cancelled() => {}
            done = server.block_until_done() => {
                if let Err(error) = done {
                    tracing::error!(%error, "the DNS server stopped (UDP)");
                }
                return;
            }
        }
        if let Err(error) = server.shutdown_gracefully().await {
            tracing::warn!(%error, "the DNS server did not shut down cleanly (UDP)");
        }
    };
    tokio::join!(udp, tcp);
}

/// The handler, shared by hickory-server's UDP loop (which wants to own one) and the TCP loop.
struct Shared(Arc<ZoneHandler>);

#[async_trait::async_trait]
impl RequestHandler for Shared {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        self.0
            .handle_request::<R, T>(request, response_handle)
            .await
    }
}

/// The `dns-01` answers a view was built with.
type Acme = Option<Arc<std::collections::HashMap<String, Vec<String>>>>;

/// A view of the zones, with the snapshot and the `dns-01` answers it was built from.
type View = (Arc<Snapshot>, Acme, Arc<ZoneView>);

/// Answers queries from the catalog.
pub(crate) struct ZoneHandler {
    catalog: Catalog,
    config: ZoneConfig,
    /// The view of the last snapshot (and `dns-01` answers) seen, rebuilt when either moves on.
    view: Mutex<Option<View>>,
    /// Where the `dns-01` answers of the edge's ACME orders come from.
    certificates: Option<Certificates>,
    /// `None` when response-rate limiting is off.
    limiter: Option<RateLimiter>,
    metrics: Arc<Metrics>,
    counters: [OnceLock<Arc<AtomicU64>>; RCODES.len()],
    dropped: Arc<AtomicU64>,
    truncated: Arc<AtomicU64>,
}

impl ZoneHandler {
    pub(crate) fn new(
        catalog: Catalog,
        config: ZoneConfig,
        rate_limit: RateLimitConfig,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            catalog,
            config,
            view: Mutex::new(None),
            certificates: None,
            limiter: RateLimiter::new(rate_limit),
            dropped: metrics.counter(RATE_LIMITED, &[("action", "dropped")]),
            truncated: metrics.counter(RATE_LIMITED, &[("action", "truncated")]),
            metrics,
            counters: Default::default(),
        }
    }

    /// The same handler, also answering the `dns-01` challenges in flight.
    pub(crate) fn with_acme(mut self, certificates: Certificates) -> Self {
        self.certificates = Some(certificates);
        self
    }

    /// Whether the answer of `kind` to `request` may go out: always over TCP (its source
    /// address cannot be spoofed), over UDP within the client prefix's rate.
    fn verdict(&self, request: &Request, kind: AnswerKind<'_>) -> Verdict {
        let Some(limiter) = &self.limiter else {
            return Verdict::Send;
        };
        if request.protocol() != Protocol::Udp {
            return Verdict::Send;
        }
        let verdict = limiter.check(request.src().ip(), kind, Instant::now());
        match verdict {
            Verdict::Send => {}
            Verdict::Truncate => {
                self.truncated.fetch_add(1, Ordering::Relaxed);
            }
            Verdict::Drop => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        verdict
    }

    /// The zones as the current snapshot has them, answering the catalog's current public
    /// addresses (with several edge nodes they follow the nodes that come and go, and every such
    /// change brings a new snapshot).
    fn view(&self) -> Arc<ZoneView> {
        let snapshot = self.catalog.snapshot();
        let acme = self.certificates.as_ref().map(Certificates::dns01);
        let mut cached = self.view.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((seen, seen_acme, view)) = cached.as_ref()
            && Arc::ptr_eq(seen, &snapshot)
            && match (seen_acme, &acme) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
        {
            return view.clone();
        }
        let addresses: Vec<IpAddr> = self
            .catalog
            .public_addresses()
            .iter()
            .filter_map(|address| address.parse().ok())
            .collect();
        let config = self.config.with_addresses(&addresses);
        let mut view = ZoneView::build(&snapshot, &config);
        if let Some(answers) = &acme {
            view = view.with_acme(answers);
        }
        let view = Arc::new(view);
        *cached = Some((snapshot, acme, view.clone()));
        view
    }

    fn count(&self, rcode: ResponseCode) {
        let index = rcode_index(rcode);
        self.counters[index]
            .get_or_init(|| self.metrics.counter(QUERIES, &[("rcode", RCODES[index])]))
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Sends `response`, counting its response code.
    async fn send<'a, R: ResponseHandler>(
        &self,
        mut response_handle: R,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> ResponseInfo {
        let metadata = *response.metadata();
        self.count(metadata.response_code);
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(error) => {
                tracing::debug!(%error, "could not send a DNS response");
                let mut failed = metadata;
                failed.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata: failed,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for ZoneHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        // A client that speaks EDNS gets an OPT record back (RFC 6891); only version 0 exists.
        let response_edns = request.edns.as_ref().map(|theirs| {
            let mut ours = Edns::new();
            ours.set_version(0);
            ours.set_max_payload(theirs.max_payload().clamp(512, MAX_UDP_PAYLOAD));
            ours
        });
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(edns) = &response_edns {
            builder.edns(edns);
        }
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.recursion_available = false;
        let error = if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            Some(ResponseCode::BADVERS)
        } else if request.metadata.op_code != OpCode::Query {
            Some(ResponseCode::NotImp)
        } else {
            None
        };
        let answer = match (error, request.request_info()) {
            (Some(rcode), _) => Err(rcode),
            (None, Ok(info)) => {
                let view = self.view();
                let qname = Name::from(info.query.name().clone());
                let qtype = info.query.query_type();
                let answer = view.answer(&qname, qtype, info.query.query_class());
                tracing::debug!(
                    peer_addr = %request.src(),
                    qname = %qname,
                    qtype = %qtype,
                    rcode = %answer.rcode,
                    "dns query"
                );
                Ok((qname, qtype, answer))
            }
            // Not exactly one question.
            (None, Err(_)) => Err(ResponseCode::FormErr),
        };
        let kind = match &answer {
            Ok((qname, qtype, answer)) => answer_kind(qname, *qtype, answer),
            Err(_) => AnswerKind::Error,
        };
        match &answer {
            Ok((_, _, answer)) => {
                metadata.authoritative = answer.authoritative;
                metadata.response_code = answer.rcode;
            }
            Err(rcode) => metadata.response_code = *rcode,
        }
        match self.verdict(request, kind) {
            Verdict::Send => {}
            Verdict::Truncate => {
                // No records, TC set: a real client asks again over TCP.
                metadata.truncation = true;
                return self
                    .send(response_handle, builder.build_no_records(metadata))
                    .await;
            }
            Verdict::Drop => {
                return ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                });
            }
        }
        let response = match &answer {
            Ok((_, _, answer)) => builder.build(
                metadata,
                answer.answers.iter(),
                answer.authorities.iter(),
                std::iter::empty(),
                answer.additionals.iter(),
            ),
            Err(_) => builder.build(
                metadata,
                [].iter(),
                [].iter(),
                std::iter::empty(),
                [].iter(),
            ),
        };
        self.send(response_handle, response).await
    }
}

/// What an answer counts as for the rate limit: its records (by the question's name and type),
/// the negative answer of its zone (named by the SOA beside it), or an error.
fn answer_kind<'a>(qname: &'a Name, qtype: RecordType, answer: &'a Answer) -> AnswerKind<'a> {
    match answer.rcode {
        ResponseCode::NoError if !answer.answers.is_empty() => AnswerKind::Records(qname, qtype),
        ResponseCode::NoError | ResponseCode::NXDomain => answer
            .authorities
            .first()
            .map_or(AnswerKind::Error, |soa| AnswerKind::Negative(&soa.name)),
        _ => AnswerKind::Error,
    }
}

fn rcode_index(rcode: ResponseCode) -> usize {
    match rcode {
        ResponseCode::NoError => 0,
        ResponseCode::FormErr => 1,
        ResponseCode::ServFail => 2,
        ResponseCode::NXDomain => 3,
        ResponseCode::NotImp => 4,
        ResponseCode::Refused => 5,
        ResponseCode::BADVERS => 6,
        _ => 7,
    }
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
