//! DNS over TCP (RFC 7766): the accept loop, which holds at most `max_connections` connections,
//! and one task per connection that reads length-prefixed queries, answers them in order and
//! closes the connection when it sends no complete query for `idle_timeout`.
//!
//! hickory-server's own TCP listener has the idle timeout but no cap on connections, and it only
//! takes a whole listener, so the edge accepts TCP itself and hands each query to the same
//! request handler that answers UDP.
//!
//! At the cap, a new connection makes room by closing the connection that has been idle
//! longest (waiting for its next query, or for the rest of one); a client that connects to ask
//! something is therefore served even while someone holds the cap with idle connections. A
//! connection is refused (closed at once) only when every open connection is busy answering.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_server::net::NetError;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{Header, HeaderCounts, MessageType, Metadata, ResponseCode};
use hickory_server::proto::rr::Record;
use hickory_server::proto::serialize::binary::{
    BinDecodable, BinDecoder, BinEncodable, BinEncoder,
};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// The metric family of connections the edge closed on its own.
const CLOSED: &str = "postern_edge_dns_tcp_connections_closed_total";
/// How long the accept loop pauses after an accept error other than a failed handshake (such
/// as running out of file descriptors), instead of spinning on it.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The TCP side's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TcpConfig {
    /// Connections held at once.
    pub(crate) max_connections: usize,
    /// A connection that sends no complete query for this long is closed; a response the
    /// client does not read within it closes the connection too.
    pub(crate) idle_timeout: Duration,
}

/// Answers DNS over TCP on `listener` with `handler` until `cancel`, then closes every
/// connection.
pub(crate) async fn serve<H: RequestHandler>(
    listener: TcpListener,
    handler: Arc<H>,
    config: TcpConfig,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) {
    let connections = Arc::new(Connections::new(config.max_connections));
    let counters = Counters::new(&metrics);
    let mut tasks = JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::debug!(%error, "DNS TCP accept failed");
                    if !is_per_connection(&error) {
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    }
                    continue;
                }
            },
            _ = cancel.cancelled() => break,
        };
        let slot = match connections.admit() {
            Admission::Open(slot) => slot,
            Admission::OpenAfterEvicting(slot) => {
                counters.evicted.fetch_add(1, Ordering::Relaxed);
                slot
            }
            Admission::Refused => {
                counters.refused.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(peer_addr = %peer, "DNS TCP connection refused: every slot is busy");
                continue;
            }
        };
        tasks.spawn(connection(
            stream,
            peer,
            handler.clone(),
            slot,
            config.idle_timeout,
            counters.idle.clone(),
            cancel.clone(),
        ));
        while tasks.try_join_next().is_some() {}
    }
    // Every connection task watches `cancel`, so this ends at once.
    while tasks.join_next().await.is_some() {}
}

/// Accept errors that concern one connection only (it was reset before it was accepted); any
/// other error is the listener's (out of file descriptors, memory) and deserves a pause.
fn is_per_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    )
}

/// The counters of closed connections, by reason.
struct Counters {
    evicted: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
    idle: Arc<AtomicU64>,
}

impl Counters {
    fn new(metrics: &Metrics) -> Self {
        Self {
            evicted: metrics.counter(CLOSED, &[("reason", "evicted")]),
            refused: metrics.counter(CLOSED, &[("reason", "refused")]),
            idle: metrics.counter(CLOSED, &[("reason", "idle")]),
        }
    }
}

/// Serves one connection: queries in, answers out, in order, until the client closes it, it
/// idles, it is evicted or the server stops.
async fn connection<H: RequestHandler>(
    mut stream: TcpStream,
    peer: SocketAddr,
    handler: Arc<H>,
    slot: Slot,
    idle_timeout: Duration,
    idled: Arc<AtomicU64>,
    cancel: CancellationToken,
) {
    let evicted = slot.evicted();
    loop {
        slot.set_idle();
        let frame = tokio::select! {
            frame = tokio::time::timeout(idle_timeout, read_frame(&mut stream)) => frame,
            _ = evicted.cancelled() => return,
            _ = cancel.cancelled() => return,
        };
        let frame = match frame {
            Ok(Ok(Some(frame))) => frame,
            Ok(Ok(None)) => return,
            Ok(Err(error)) => {
                tracing::debug!(peer_addr = %peer, %error, "DNS TCP read failed");
                return;
            }
            Err(_) => {
                idled.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(peer_addr = %peer, "DNS TCP connection idle; closing it");
                return;
            }
        };
        slot.set_busy();
        let Some(response) = answer(handler.as_ref(), frame, peer).await else {
            continue;
        };
        let written = tokio::select! {
            written = tokio::time::timeout(idle_timeout, write_frame(&mut stream, &response)) => written,
            _ = cancel.cancelled() => return,
        };
        if !matches!(written, Ok(Ok(()))) {
            tracing::debug!(peer_addr = %peer, "DNS TCP answer not taken; closing the connection");
            return;
        }
    }
}

/// Reads one length-prefixed message; `None` at a clean end of the stream. Not cancel safe:
/// bytes read before it is dropped are lost, so the caller closes the connection whenever it
/// drops this future (idle timeout, eviction, shutdown).
async fn read_frame(reader: &mut (impl AsyncRead + Unpin)) -> io::Result<Option<Vec<u8>>> {
    let mut length = [0u8; 2];
    match reader.read_exact(&mut length).await {
        Ok(_) => {}
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error),
    }
    let length = usize::from(u16::from_be_bytes(length));
    // Grown as the bytes arrive, so a length prefix that lies costs nothing up front.
    let mut frame = Vec::new();
    (&mut *reader)
        .take(length as u64)
        .read_to_end(&mut frame)
        .await?;
    if frame.len() < length {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(Some(frame))
}

async fn write_frame(writer: &mut (impl AsyncWrite + Unpin), message: &[u8]) -> io::Result<()> {
    let length = u16::try_from(message.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "message over 65,535 bytes"))?;
    let mut frame = Vec::with_capacity(2 + message.len());
    frame.extend_from_slice(&length.to_be_bytes());
    frame.extend_from_slice(message);
    writer.write_all(&frame).await?;
    writer.flush().await
}

/// The answer to one message, as hickory-server's own listener would give it: nothing for a
/// message shorter than a header or for a response, FORMERR for a header followed by garbage,
/// and otherwise whatever `handler` sends.
async fn answer<H: RequestHandler>(
    handler: &H,
    message: Vec<u8>,
    peer: SocketAddr,
) -> Option<Vec<u8>> {
    let header = Header::read(&mut BinDecoder::new(&message)).ok()?;
    if header.metadata.message_type == MessageType::Response {
        return None;
    }
    let request = match Request::from_bytes(message, peer, Protocol::Tcp) {
        Ok(request) => request,
        Err(_) => {
            let mut metadata = Metadata::response_from_request(&header.metadata);
            metadata.response_code = ResponseCode::FormErr;
            return encode_header(metadata);
        }
    };
    let captured = Captured::default();
    handler
        .handle_request::<_, TokioTime>(&request, captured.clone())
        .await;
    captured.take()
}

fn encode_header(metadata: Metadata) -> Option<Vec<u8>> {
    let header = Header {
        metadata,
        counts: HeaderCounts::default(),
    };
    let mut bytes = Vec::with_capacity(12);
    header.emit(&mut BinEncoder::new(&mut bytes)).ok()?;
    Some(bytes)
}

/// Keeps the response the handler sends, encoded for TCP (up to 65,535 bytes; SERVFAIL when it
/// does not fit, as hickory-server does).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Option<Vec<u8>>>>);

impl Captured {
    fn take(&self) -> Option<Vec<u8>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

#[async_trait::async_trait]
impl ResponseHandler for Captured {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let request_metadata = *response.metadata();
        let mut bytes = Vec::with_capacity(512);
        let info = match response.destructive_emit(&mut BinEncoder::new(&mut bytes)) {
            Ok(info) => info,
            Err(error) => {
                tracing::debug!(%error, "a DNS answer does not fit in a TCP message");
                let mut metadata = request_metadata;
                metadata.response_code = ResponseCode::ServFail;
                bytes = encode_header(metadata).unwrap_or_default();
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        };
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(bytes);
        Ok(info)
    }
}

/// The open connections and the order in which they went idle.
struct Connections {
    max: usize,
    state: Mutex<Registry>,
}

#[derive(Default)]
struct Registry {
    /// The next connection's id.
    next_id: u64,
    /// Counts the times a connection went idle: the order of `idle`.
    clock: u64,
    /// Every open connection by id: how to close it, and its place in `idle` if it is idle.
    open: HashMap<u64, (CancellationToken, Option<u64>)>,
    /// The idle connections by when they went idle, longest first.
    idle: BTreeMap<u64, u64>,
}

enum Admission {
    Open(Slot),
    OpenAfterEvicting(Slot),
    Refused,
}

impl Connections {
    fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            state: Mutex::default(),
        }
    }

    /// A place for one more connection: free, or made by closing the connection idle longest.
    fn admit(self: &Arc<Self>) -> Admission {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut evicted = false;
        if state.open.len() >= self.max {
            let Some((_, id)) = state.idle.pop_first() else {
                return Admission::Refused;
            };
            if let Some((close, _)) = state.open.remove(&id) {
                close.cancel();
            }
            evicted = true;
        }
        let id = state.next_id;
        state.next_id += 1;
        // Idle from the start: a connection that has sent nothing yet is the same as one
        // waiting for its next query (and one of a burst of connections may be evicted by the
        // next before its task has run at all).
        state.clock += 1;
        let mark = state.clock;
        state.idle.insert(mark, id);
        let evict = CancellationToken::new();
        state.open.insert(id, (evict.clone(), Some(mark)));
        drop(state);
        let slot = Slot {
            id,
            evict,
            connections: self.clone(),
        };
        if evicted {
            Admission::OpenAfterEvicting(slot)
        } else {
            Admission::Open(slot)
        }
    }

    #[cfg(test)]
    fn open(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .open
            .len()
    }
}

/// One connection's place among the open ones; given back when dropped.
struct Slot {
    id: u64,
    evict: CancellationToken,
    connections: Arc<Connections>,
}

impl Slot {
    /// Cancelled when the connection is closed to make room for another.
    fn evicted(&self) -> CancellationToken {
        self.evict.clone()
    }

    /// The connection waits for a query: it may be closed to make room from now on.
    fn set_idle(&self) {
        let mut state = self
            .connections
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        state.clock += 1;
        let mark = state.clock;
        let previous = match state.open.get_mut(&self.id) {
            Some((_, idle)) => idle.replace(mark),
            // Already evicted.
            None => return,
        };
        if let Some(previous) = previous {
            state.idle.remove(&previous);
        }
        state.idle.insert(mark, self.id);
    }

    /// The connection is answering a query: it is not closed to make room until it is done.
    fn set_busy(&self) {
        let mut state = self
            .connections
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mark = state
            .open
            .get_mut(&self.id)
            .and_then(|(_, idle)| idle.take());
        if let Some(mark) = mark {
            state.idle.remove(&mark);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self
            .connections
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some((_, Some(mark))) = state.open.remove(&self.id) {
            state.idle.remove(&mark);
        }
    }
}

#[cfg(test)]
mod tests;
