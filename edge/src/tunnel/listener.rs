//! The tunnel listener: connectors dial in here. TLS 1.3 only; the ALPN the client offers
//! decides what the connection is:
//!
//! - `postern/1`: a tunnel. A client certificate signed by the edge CA is required, and the
//!   tunnel is derived from it alone ([`tunnel_of_certificate`]); then the edge runs an HTTP/2
//!   *client* over the connection ([`session`]).
//! - `postern-enroll/1`: an enrolment, without a client certificate: exactly one request
//!   (tunnel id, secret, CSR) and one answer ([`enroll`]).
//! - `postern-peer/1`: another edge node forwarding visitor requests, with several nodes on a
//!   shared store only; both sides present node certificates. Accepted here, handed over
//!   ([`PeerPort`]) and served by the proxy.
//!
//! Anything else is closed. The protocol is described in `docs/guides/tunnel-protocol.md`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use postern_schema::error_chain;
use postern_schema::wire::{ALPN_ENROLL, ALPN_PEER, ALPN_TUNNEL, TUNNEL_SERVER_NAME};
use postern_workers::MovableStream;
use rustls::RootCertStore;
use rustls::server::{Acceptor, ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::context::TunnelContext;
use super::registry::certificate_key;
use super::{enroll, session};
use crate::ca::{CertCache, tunnel_of_certificate};

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long shutdown waits for sessions to drain.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Warnings that a tunnel is at its connection cap: at most one this often (each refusal is
/// counted in `postern_edge_tunnel_sessions_total{outcome="over_limit"}`).
const CAP_WARNING_EVERY: Duration = Duration::from_secs(10);

/// A connection from another edge node (`postern-peer/1`): TLS done, its node certificate
/// verified against the CA. The tunnel listener only accepts it; the proxy serves it.
#[derive(Debug)]
pub(crate) struct PeerConnection {
    /// The TLS stream.
    pub(crate) stream: TlsStream<MovableStream>,
    /// Where it comes from.
    pub(crate) peer: SocketAddr,
}

/// How the tunnel listener accepts other edge nodes (only with several nodes on a shared
/// store): their TLS configuration, and where accepted connections go.
#[derive(Debug, Clone)]
pub(crate) struct PeerPort {
    /// TLS 1.3 with a node certificate required on both sides.
    pub(crate) tls: Arc<rustls::ServerConfig>,
    /// Accepted connections, for whoever serves them.
    pub(crate) connections: mpsc::Sender<PeerConnection>,
}

/// Why the tunnel listener cannot be set up.
#[derive(Debug, thiserror::Error)]
enum TunnelTlsError {
    /// rustls refused the configuration.
    #[error("cannot configure TLS for the tunnel listener")]
    Tls(#[from] rustls::Error),
    /// The client verifier could not be built.
    #[error("cannot configure client certificate verification")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// The two TLS configurations of the tunnel listener, picked by ALPN.
struct TunnelTls {
    tunnel: Arc<rustls::ServerConfig>,
    enroll: Arc<rustls::ServerConfig>,
}

impl TunnelTls {
    fn new(context: &TunnelContext) -> Result<Self, TunnelTlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let resolver = Arc::new(TunnelCert {
            cache: CertCache::new(context.ca.clone(), provider.clone()),
        });

        let mut roots = RootCertStore::empty();
        roots.add(context.ca.cert_der().clone())?;
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()?;
        let mut tunnel = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(resolver.clone());
        tunnel.alpn_protocols = vec![ALPN_TUNNEL.to_vec()];

        let mut enroll = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_cert_resolver(resolver);
        enroll.alpn_protocols = vec![ALPN_ENROLL.to_vec()];
        Ok(Self {
            tunnel: Arc::new(tunnel),
            enroll: Arc::new(enroll),
        })
    }
}

/// The edge's certificate on the tunnel listener: issued by its own CA for
/// [`TUNNEL_SERVER_NAME`], which connectors check against the CA pinned in their token.
#[derive(Debug)]
struct TunnelCert {
    cache: CertCache,
}

impl ResolvesServerCert for TunnelCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.cache.get(&[TUNNEL_SERVER_NAME.to_string()])
    }
}

/// Accepts connectors (and, with `peers`, other edge nodes) on the tunnel listener until
/// `cancel`, then tells every connected connector the edge is going away and waits (bounded)
/// for their sessions to end.
pub(crate) async fn serve(
    listener: TcpListener,
    context: TunnelContext,
    peers: Option<PeerPort>,
    cancel: CancellationToken,
) {
    let tls = match TunnelTls::new(&context) {
        Ok(tls) => Arc::new(tls),
        Err(error) => {
            tracing::error!(error = %error_chain(&error), "the tunnel listener cannot start");
            cancel.cancelled().await;
            return;
        }
    };
    let tracker = TaskTracker::new();
    let shared = Arc::new(Shared {
        tls,
        context,
        peers,
        limiter: enroll::Limiter::default(),
        tracker: tracker.clone(),
        cap_warned: std::sync::Mutex::new(None),
    });
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accepting a tunnel connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let span = tracing::debug_span!("tunnel_conn", peer_addr = %peer);
        tracker.spawn(accept(stream, peer, shared.clone(), cancel.clone()).instrument(span));
    }
    drop(listener);
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("tunnel sessions did not end within the shutdown grace period");
    }
}

/// What every accepted connection of the tunnel listener uses.
struct Shared {
    tls: Arc<TunnelTls>,
    context: TunnelContext,
    peers: Option<PeerPort>,
    limiter: enroll::Limiter,
    /// The listener's tasks, sessions on the workers included, waited for at shutdown.
    tracker: TaskTracker,
    /// When a tunnel at its connection cap was last warned about.
    cap_warned: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Shared {
    /// Warns that `tunnel` is at its cap, unless that was said less than
    /// [`CAP_WARNING_EVERY`] ago.
    fn warn_at_cap(&self, tunnel: postern_schema::ids::TunnelId) {
        let mut warned = self.cap_warned.lock().unwrap_or_else(|p| p.into_inner());
        if warned.is_some_and(|at| at.elapsed() < CAP_WARNING_EVERY) {
            return;
        }
        *warned = Some(std::time::Instant::now());
        tracing::warn!(
            tunnel_id = %tunnel,
            max = self.context.settings.max_connections_per_tunnel,
            "refused a tunnel connection: the tunnel holds --max-connections-per-tunnel connections"
        );
    }
}

/// Finishes the TLS handshake with the configuration the client's ALPN asks for, then hands
/// the connection to enrolment, to a session (on the worker [`Registry::place`] picks), or
/// to the proxy (a link from another node).
///
/// [`Registry::place`]: super::registry::Registry::place
async fn accept(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let stream = MovableStream::new(stream);
    let Shared {
        tls,
        context,
        peers,
        limiter,
        tracker,
        ..
    } = shared.as_ref();
    let peer_tls = peers.as_ref().map(|p| p.tls.clone());
    let handshake = async {
        let start = LazyConfigAcceptor::new(Acceptor::default(), stream).await?;
        let offered: Vec<Vec<u8>> = start
            .client_hello()
            .alpn()
            .map(|protocols| protocols.map(<[u8]>::to_vec).collect())
            .unwrap_or_default();
        let kind = if offered.iter().any(|p| p == ALPN_TUNNEL) {
            Kind::Tunnel
        } else if offered.iter().any(|p| p == ALPN_ENROLL) {
            Kind::Enroll
        } else if offered.iter().any(|p| p == ALPN_PEER) && peer_tls.is_some() {
            Kind::Peer
        } else {
            return Ok(None);
        };
        let config = match kind {
            Kind::Tunnel => tls.tunnel.clone(),
            Kind::Enroll => tls.enroll.clone(),
            Kind::Peer => match peer_tls {
                Some(config) => config,
                None => return Ok(None),
            },
        };
        let stream = start.into_stream(config).await?;
        Ok::<_, std::io::Error>(Some((kind, stream)))
    };
    let (kind, stream) = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(Some(accepted))) => accepted,
        Ok(Ok(None)) => {
            tracing::debug!("closed a connection that offered no postern ALPN");
            return;
        }
        Ok(Err(error)) => {
            // A missing or foreign client certificate ends here, and so does whatever the
            // internet sends this port: counted, and logged only at debug (no line per stranger).
            tracing::debug!(%error, "tunnel TLS handshake failed");
            context.metrics.inc(
                "postern_edge_tunnel_sessions_total",
                &[("outcome", "handshake_failed")],
            );
            return;
        }
        Err(_) => {
            tracing::debug!("tunnel TLS handshake timed out");
            return;
        }
    };
    match kind {
        Kind::Enroll => enroll::serve_one(stream, peer, context, limiter).await,
        Kind::Peer => {
            if let Some(peers) = peers {
                let _ = peers
                    .connections
                    .send(PeerConnection { stream, peer })
                    .await;
            }
        }
        Kind::Tunnel => {
            let leaf = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first());
            let Some((tunnel, leaf)) = leaf.and_then(|l| Some((tunnel_of_certificate(l)?, l)))
            else {
                tracing::warn!("a client certificate signed by the edge CA names no tunnel");
                context.metrics.inc(
                    "postern_edge_tunnel_sessions_total",
                    &[("outcome", "no_tunnel")],
                );
                return;
            };
            // The session lives on the worker with the fewest of this connector's (then this
            // tunnel's) connections, if the tunnel has room for one more.
            let placement = context.registry.place(
                tunnel,
                certificate_key(leaf),
                context.workers.len(),
                postern_workers::current(),
                context.settings.max_connections_per_tunnel,
            );
            let Some(placement) = placement else {
                context.metrics.inc(
                    "postern_edge_tunnel_sessions_total",
                    &[("outcome", "over_limit")],
                );
                shared.warn_at_cap(tunnel);
                return;
            };
            let Some(worker) = context.workers.get(placement.worker).cloned() else {
                session::run(stream, peer, tunnel, context.clone(), placement, cancel).await;
                return;
            };
            let mut stream = stream;
            let context = context.clone();
            let run = async move {
                if let Err(error) = stream.get_mut().0.rehome() {
                    tracing::warn!(%error, "cannot move a tunnel connection to its worker");
                    return;
                }
                session::run(stream, peer, tunnel, context, placement, cancel).await;
            };
            tracker.spawn_on(run.in_current_span(), &worker);
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Another edge node forwarding requests (`postern-peer/1`, only with several nodes).
    Peer,
    Tunnel,
    Enroll,
}
