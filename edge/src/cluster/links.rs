//! The links between edge nodes. Each node gets a certificate from the shared edge CA at start
//! (key made in memory, never stored; server and client use; named `peer.postern.invalid` and,
//! by URI SAN, `urn:postern:node:<node id>`) and speaks `postern-peer/1` on its tunnel port:
//! TLS 1.3, both sides presenting a node certificate (a connector's certificate, also from the
//! CA, names no node and is refused), then HTTP/2 with the forwarding node as the client. Every
//! stream is one visitor request the forwarding node already checked against the hostname's
//! policies; the receiving node's proxy answers it from a connection of its own and never
//! forwards it again.
//!
//! This file holds the node's identity (its certificate and both TLS configurations) and the
//! dialing side: [`PeerLinks`] keeps one HTTP/2 connection per node, dialed on first use and
//! again after it closed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use postern_schema::error_chain;
use postern_schema::wire::{self, ALPN_PEER, PEER_SERVER_NAME};
use rustls::RootCertStore;
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tracing::Instrument;

use crate::body::BoxBody;
use crate::ca::{CaError, EdgeCa, node_of_certificate};

/// How long a node certificate is valid.
const NODE_CERT_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// A node certificate is re-issued once this much of its lifetime has passed.
const NODE_CERT_RENEW_AFTER: Duration = Duration::from_secs(16 * 3600);

/// Bound on dialing another node: TCP, TLS and the HTTP/2 handshake. Nodes are near each other;
/// a node that takes longer is treated as unreachable.
const DIAL_TIMEOUT: Duration = Duration::from_secs(1);

/// Pings on an idle link, and how long one may go unanswered: a dead node's link is noticed
/// within about five seconds even without a request on it. The receiving side uses the same.
pub(crate) const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
pub(crate) const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(3);

/// Why this node could not join the cluster: its certificate or the TLS of its links.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClusterError {
    /// The node certificate could not be issued.
    #[error("cannot issue this node's certificate")]
    Certificate(#[from] CaError),
    /// rustls refused a configuration.
    #[error("cannot configure TLS between edge nodes")]
    Tls(#[from] rustls::Error),
    /// The peer certificate verifier could not be built.
    #[error("cannot configure certificate verification between edge nodes")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// Why a request could not be forwarded to another node.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PeerError {
    /// There is no other node (the embedded store).
    #[error("this edge is the only node")]
    Alone,
    /// The node's address does not accept connections.
    #[error("cannot reach edge node {node_id} at {address}")]
    Unreachable {
        /// The node.
        node_id: String,
        /// Its peer address.
        address: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// TLS with the node failed.
    #[error("TLS with edge node {node_id} at {address} failed")]
    Tls {
        /// The node.
        node_id: String,
        /// Its peer address.
        address: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Another node (or none) answers at the address: the node is gone.
    #[error("{address} is no longer edge node {node_id}")]
    WrongNode {
        /// The node.
        node_id: String,
        /// Its peer address.
        address: String,
    },
    /// Dialing took longer than [`DIAL_TIMEOUT`].
    #[error("edge node {node_id} at {address} did not answer within {DIAL_TIMEOUT:?}")]
    TimedOut {
        /// The node.
        node_id: String,
        /// Its peer address.
        address: String,
    },
    /// HTTP/2 with the node failed.
    #[error("HTTP/2 with edge node {node_id} failed")]
    Http2 {
        /// The node.
        node_id: String,
        /// Why.
        #[source]
        source: hyper::Error,
    },
}

impl PeerError {
    /// Whether the node could not be reached at all (as opposed to a stream failing).
    pub(crate) fn is_unreachable(&self) -> bool {
        matches!(
            self,
            PeerError::Unreachable { .. }
                | PeerError::Tls { .. }
                | PeerError::WrongNode { .. }
                | PeerError::TimedOut { .. }
        )
    }
}

/// A request that could not be forwarded.
#[derive(Debug)]
pub(crate) struct SendFailure {
    /// The request, when it never left this node (safe to send elsewhere).
    pub(crate) request: Option<Request<BoxBody>>,
    /// Why.
    pub(crate) error: PeerError,
}

impl SendFailure {
    pub(super) fn alone(request: Request<BoxBody>) -> Self {
        Self {
            request: Some(request),
            error: PeerError::Alone,
        }
    }
}

// === the node certificate ===

/// This node's certificate and key for `postern-peer/1`, re-issued from the CA before expiry.
pub(super) struct NodeIdentity {
    ca: Arc<EdgeCa>,
    node_id: String,
    provider: Arc<CryptoProvider>,
    current: Mutex<(Arc<CertifiedKey>, Instant)>,
}

impl std::fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("node_id", &self.node_id)
            .finish()
    }
}

impl NodeIdentity {
    /// Issues the first certificate.
    pub(super) fn new(ca: Arc<EdgeCa>, node_id: String) -> Result<Self, ClusterError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let key = issue(&ca, &node_id, &provider)?;
        Ok(Self {
            ca,
            node_id,
            provider,
            current: Mutex::new((key, Instant::now() + NODE_CERT_RENEW_AFTER)),
        })
    }

    /// The current certificate, re-issued first when due (a failure keeps the old one).
    fn certified_key(&self) -> Arc<CertifiedKey> {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if Instant::now() >= current.1 {
            match issue(&self.ca, &self.node_id, &self.provider) {
                Ok(key) => *current = (key, Instant::now() + NODE_CERT_RENEW_AFTER),
                Err(error) => {
                    tracing::error!(error = %error_chain(&error), "cannot renew this node's certificate")
                }
            }
        }
        current.0.clone()
    }
}

fn issue(
    ca: &EdgeCa,
    node_id: &str,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, ClusterError> {
    let (cert, key) = ca.issue_node_cert(node_id, NODE_CERT_LIFETIME)?;
    let chain = vec![cert, ca.cert_der().clone()];
    Ok(Arc::new(CertifiedKey::from_der(chain, key, provider)?))
}

impl ResolvesServerCert for NodeIdentity {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.certified_key())
    }
}

impl ResolvesClientCert for NodeIdentity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.certified_key())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn ca_roots(ca: &EdgeCa) -> Result<Arc<RootCertStore>, rustls::Error> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert_der().clone())?;
    Ok(Arc::new(roots))
}

/// The tunnel listener's configuration for `postern-peer/1`: TLS 1.3, a client certificate
/// from the edge CA required (that it names a node is checked by [`serve`]).
pub(super) fn server_config(
    identity: &Arc<NodeIdentity>,
    ca: &EdgeCa,
) -> Result<Arc<rustls::ServerConfig>, ClusterError> {
    let provider = identity.provider.clone();
    let verifier =
        WebPkiClientVerifier::builder_with_provider(ca_roots(ca)?, provider.clone()).build()?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(identity.clone());
    config.alpn_protocols = vec![ALPN_PEER.to_vec()];
    Ok(Arc::new(config))
}

/// The dialing side: TLS 1.3, the server must chain to the edge CA and be named
/// `peer.postern.invalid` (which node it is is checked after the handshake).
pub(super) fn client_config(
    identity: &Arc<NodeIdentity>,
    ca: &EdgeCa,
) -> Result<Arc<rustls::ClientConfig>, ClusterError> {
    let mut config = rustls::ClientConfig::builder_with_provider(identity.provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(ca_roots(ca)?)
        .with_client_cert_resolver(identity.clone());
    config.alpn_protocols = vec![ALPN_PEER.to_vec()];
    Ok(Arc::new(config))
}

// === the dialing side ===

/// One HTTP/2 link per other node, dialed on demand.
pub(super) struct PeerLinks {
    tls: TlsConnector,
    links: Mutex<HashMap<String, Arc<Link>>>,
}

/// The link to one node; the async mutex makes concurrent requests share one dial.
struct Link {
    address: String,
    sender: tokio::sync::Mutex<Option<SendRequest<BoxBody>>>,
}

impl PeerLinks {
    pub(super) fn new(tls: Arc<rustls::ClientConfig>) -> Self {
        Self {
            tls: TlsConnector::from(tls),
            links: Mutex::new(HashMap::new()),
        }
    }

    /// Sends `request` to node `node_id` at `address` and waits for the response head. A link
    /// that turns out closed is dialed again once.
    pub(super) async fn send(
        &self,
        node_id: &str,
        address: &str,
        mut request: Request<BoxBody>,
    ) -> Result<Response<Incoming>, SendFailure> {
        let link = self.link(node_id, address);
        for attempt in 0..2 {
            let mut sender = match link.sender(node_id, &self.tls, attempt > 0).await {
                Ok(sender) => sender,
                Err(error) => {
                    return Err(SendFailure {
                        request: Some(request),
                        error,
                    });
                }
            };
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(response),
                Err(mut failure) => {
                    let returned = failure.take_message();
                    let error = PeerError::Http2 {
                        node_id: node_id.to_string(),
                        source: failure.into_error(),
                    };
                    match returned {
                        Some(returned) if attempt == 0 => {
                            tracing::debug!(
                                node_id,
                                "the link closed before the stream opened; dialing again"
                            );
                            request = returned;
                        }
                        returned => {
                            return Err(SendFailure {
                                request: returned,
                                error,
                            });
                        }
                    }
                }
            }
        }
        // Both attempts returned above; kept for the type checker.
        Err(SendFailure {
            request: None,
            error: PeerError::Alone,
        })
    }

    fn link(&self, node_id: &str, address: &str) -> Arc<Link> {
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        // Links of nodes that are gone are dropped with their connections.
        links.retain(|_, link| Arc::strong_count(link) > 1 || link.is_open());
        let link = links
            .entry(node_id.to_string())
            .or_insert_with(|| Arc::new(Link::new(address)));
        if link.address != address {
            *link = Arc::new(Link::new(address));
        }
        link.clone()
    }
}

impl Link {
    fn new(address: &str) -> Self {
        Self {
            address: address.to_string(),
            sender: tokio::sync::Mutex::new(None),
        }
    }

    fn is_open(&self) -> bool {
        self.sender
            .try_lock()
            .map(|s| s.as_ref().is_some_and(|s| !s.is_closed()))
            .unwrap_or(true)
    }

    /// The open connection's handle, dialing first when there is none (or `redial`).
    async fn sender(
        &self,
        node_id: &str,
        tls: &TlsConnector,
        redial: bool,
    ) -> Result<SendRequest<BoxBody>, PeerError> {
        let mut current = self.sender.lock().await;
        if !redial
            && let Some(sender) = current.as_ref()
            && !sender.is_closed()
        {
            return Ok(sender.clone());
        }
        *current = None;
        let dialed = tokio::time::timeout(DIAL_TIMEOUT, dial(node_id, &self.address, tls))
            .await
            .map_err(|_| PeerError::TimedOut {
                node_id: node_id.to_string(),
                address: self.address.clone(),
            })??;
        *current = Some(dialed.clone());
        Ok(dialed)
    }
}

/// Dials `node_id` at `address`: TCP, TLS (the server's certificate must name that node), and
/// the HTTP/2 handshake; the connection is driven by a task of its own.
async fn dial(
    node_id: &str,
    address: &str,
    tls: &TlsConnector,
) -> Result<SendRequest<BoxBody>, PeerError> {
    let tcp = TcpStream::connect(address)
        .await
        .map_err(|source| PeerError::Unreachable {
            node_id: node_id.to_string(),
            address: address.to_string(),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(PEER_SERVER_NAME).map_err(|_| PeerError::WrongNode {
        node_id: node_id.to_string(),
        address: address.to_string(),
    })?;
    let stream = tls
        .connect(name, tcp)
        .await
        .map_err(|source| PeerError::Tls {
            node_id: node_id.to_string(),
            address: address.to_string(),
            source,
        })?;
    let named = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(node_of_certificate);
    if named.as_deref() != Some(node_id) {
        return Err(PeerError::WrongNode {
            node_id: node_id.to_string(),
            address: address.to_string(),
        });
    }
    let (sender, connection) =
        hyper::client::conn::http2::Builder::new(postern_heap::BoxingExecutor)
            .timer(TokioTimer::new())
            .keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
            .max_header_list_size(wire::ACCEPTED_HEADER_LIST)
            .handshake::<_, BoxBody>(TokioIo::new(stream))
            .await
            .map_err(|source| PeerError::Http2 {
                node_id: node_id.to_string(),
                source,
            })?;
    let span = tracing::debug_span!("peer_link", node_id = %node_id, peer_addr = %address);
    tokio::spawn(
        async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "link to an edge node ended with an error");
            }
        }
        .instrument(span),
    );
    tracing::debug!(node_id, address, "linked to an edge node");
    Ok(sender)
}

#[cfg(test)]
mod tests;
