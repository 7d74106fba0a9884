//! The DNS wire: hickory-server's UDP and TCP loops on the edge's sockets, and a request handler
//! that answers each query from the catalog snapshot current at that moment, so records follow
//! API writes at once.
//!
//! hickory-server drops datagrams shorter than a DNS header and messages that are responses,
//! and answers FORMERR itself when a header parses but the rest does not; those never reach the
//! handler (and are not counted in `postern_edge_dns_queries_total`). Every query that does is
//! answered and counted by response code.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::{Name, Record};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder};
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

use super::zone::{ZoneConfig, ZoneView};
use crate::catalog::{Catalog, Snapshot};
use crate::metrics::Metrics;

/// A TCP connection that sends no query for this long is closed.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Responses queued per TCP connection.
const TCP_RESPONSE_BUFFER: usize = 16;
/// The largest UDP response sent to an EDNS client (the DNS Flag Day 2020 value, which avoids
/// IP fragmentation); longer answers are truncated and the client retries over TCP.
const MAX_UDP_PAYLOAD: u16 = 1232;
/// The metric family of answered queries.
const QUERIES: &str = "postern_edge_dns_queries_total";
/// The `rcode` label values.
const RCODES: [&str; 8] = [
    "noerror", "formerr", "servfail", "nxdomain", "notimp", "refused", "badvers", "other",
];

/// Answers DNS queries for `zones` on `udp` and `tcp` until `cancel`.
pub(crate) async fn serve(
    udp: UdpSocket,
    tcp: TcpListener,
    catalog: Catalog,
    zones: &[String],
    metrics: Arc<Metrics>,
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
    let handler = ZoneHandler::new(catalog, config, metrics);
    tracing::info!(addr = ?udp.local_addr().ok(), ?zones, "DNS listening (UDP and TCP)");
    run(udp, tcp, handler, cancel).await;
}

/// Serves `handler` on both sockets until `cancel`.
pub(crate) async fn run(
    udp: UdpSocket,
    tcp: TcpListener,
    handler: ZoneHandler,
    cancel: CancellationToken,
) {
    let mut server = Server::new(handler);
    server.register_socket(udp);
    server.register_listener(tcp, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);
    tokio::select! {
        _ = cancel.cancelled() => {}
        done = server.block_until_done() => {
            if let Err(error) = done {
                tracing::error!(%error, "the DNS server stopped");
            }
            return;
        }
    }
    if let Err(error) = server.shutdown_gracefully().await {
        tracing::warn!(%error, "the DNS server did not shut down cleanly");
    }
}

/// Answers queries from the catalog.
pub(crate) struct ZoneHandler {
    catalog: Catalog,
    config: ZoneConfig,
    /// The view of the last snapshot seen, rebuilt when the catalog moves on.
    view: Mutex<Option<(Arc<Snapshot>, Arc<ZoneView>)>>,
    metrics: Arc<Metrics>,
    counters: [OnceLock<Arc<AtomicU64>>; RCODES.len()],
}

impl ZoneHandler {
    pub(crate) fn new(catalog: Catalog, config: ZoneConfig, metrics: Arc<Metrics>) -> Self {
        Self {
            catalog,
            config,
            view: Mutex::new(None),
            metrics,
            counters: Default::default(),
        }
    }

    /// The zones as the current snapshot has them, answering the catalog's current public
    /// addresses (with several edge nodes they follow the nodes that come and go, and every such
    /// change brings a new snapshot).
    fn view(&self) -> Arc<ZoneView> {
        let snapshot = self.catalog.snapshot();
        let mut cached = self.view.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((seen, view)) = cached.as_ref()
            && Arc::ptr_eq(seen, &snapshot)
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
        let view = Arc::new(ZoneView::build(&snapshot, &config));
        *cached = Some((snapshot, view.clone()));
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
        let error = if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            Some(ResponseCode::BADVERS)
        } else if request.metadata.op_code != OpCode::Query {
            Some(ResponseCode::NotImp)
        } else {
            None
        };
        if let Some(rcode) = error {
            let response = builder.error_msg(&request.metadata, rcode);
            return self.send(response_handle, response).await;
        }
        let query = match request.request_info() {
            Ok(info) => info.query,
            // Not exactly one question.
            Err(_) => {
                let response = builder.error_msg(&request.metadata, ResponseCode::FormErr);
                return self.send(response_handle, response).await;
            }
        };

        let view = self.view();
        let qname = Name::from(query.name().clone());
        let answer = view.answer(&qname, query.query_type(), query.query_class());
        tracing::debug!(
            peer_addr = %request.src(),
            qname = %qname,
            qtype = %query.query_type(),
            rcode = %answer.rcode,
            "dns query"
        );
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = answer.authoritative;
        metadata.recursion_available = false;
        metadata.response_code = answer.rcode;
        let response = builder.build(
            metadata,
            answer.answers.iter(),
            answer.authorities.iter(),
            std::iter::empty(),
            answer.additionals.iter(),
        );
        self.send(response_handle, response).await
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
