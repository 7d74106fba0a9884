//! Wires the edge's subsystems together: opens the store, loads the CA and tokens, binds every
//! listener (port 0 allowed), starts the tasks, and owns shutdown.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use postern_workers::{WorkerError, Workers};
use serde::Serialize;
use tokio::net::{TcpListener, UdpSocket};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{self, ApiState};
use crate::auth::{Auth, AuthError};
use crate::ca::{CaError, EdgeCa};
use crate::catalog::Catalog;
use crate::cluster::{Cluster, ClusterError, NodeSettings};
use crate::config::{EdgeConfig, EdgeSettings, StoreUrl};
use crate::dns::{DnsLimits, RateLimitConfig, TcpConfig};
use crate::metrics::Metrics;
use crate::policy::PolicyEngine;
use crate::proxy::{self, Proxy, ProxySettings};
use crate::store::{Store, StoreError};
use crate::tunnel::{self, PeerPort, Registry, TunnelContext, TunnelSettings};

/// How many accepted links from other nodes may wait for the proxy to take them.
const PEER_BACKLOG: usize = 64;

/// How long a client of the control API may take to send a request head (its first byte
/// included).
const API_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The embedded store's file under `--data-dir`.
pub(crate) const STORE_FILE: &str = "postern.db";

/// Why the edge could not start; its sources say what failed.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct StartError(#[from] Failure);

/// What failed at start.
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// The data directory could not be created.
    #[error("cannot create the data directory {path}")]
    DataDir {
        /// The directory.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The store could not be opened.
    #[error("cannot open the store")]
    Store(#[from] StoreError),
    /// The CA could not be loaded or created.
    #[error("cannot set up the certificate authority")]
    Ca(#[from] CaError),
    /// The API tokens could not be set up.
    #[error("cannot set up the API tokens")]
    Auth(#[from] AuthError),
    /// This node could not join the other edge nodes on the shared store.
    #[error("cannot join the edge cluster")]
    Cluster(#[from] ClusterError),
    /// The workers could not start.
    #[error("cannot start the workers")]
    Workers(#[from] WorkerError),
    /// The HTTPS listener's TLS could not be configured.
    #[error("cannot configure TLS for the HTTPS listener")]
    HttpsTls(#[from] rustls::Error),
    /// A listener could not be bound.
    #[error("cannot listen on {address} ({what})")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        address: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The addresses the edge is listening on: the ready line.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct BoundAddrs {
    /// Control API.
    pub api: SocketAddr,
    /// Public HTTP.
    pub http: SocketAddr,
    /// Public HTTPS.
    pub https: SocketAddr,
    /// Tunnel listener.
    pub tunnel: SocketAddr,
    /// DNS (UDP and TCP).
    pub dns: SocketAddr,
}

impl BoundAddrs {
    /// The one machine-readable line printed once every listener is bound.
    pub fn ready_line(&self) -> String {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let Some(map) = value.as_object_mut() {
            map.insert("ready".into(), serde_json::Value::Bool(true));
        }
        value.to_string()
    }
}

/// A started edge.
pub struct RunningEdge {
    /// Where it listens.
    pub addrs: BoundAddrs,
    cancel: CancellationToken,
    tasks: JoinSet<()>,
    workers: Workers,
    shutdown_timeout: Duration,
}

impl RunningEdge {
    /// Stops accepting, lets in-flight requests finish, waits for every task, and ends the
    /// workers; whatever still runs at `--shutdown-timeout` is cut off.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        let tasks = &mut self.tasks;
        let finished = tokio::time::timeout(self.shutdown_timeout, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            tracing::warn!(
                shutdown_timeout = ?self.shutdown_timeout,
                "shutdown deadline reached: closing the connections still open"
            );
            self.tasks.abort_all();
        }
        // Ending the workers' runtimes drops whatever still runs on them.
        let workers = self.workers;
        let _ = tokio::task::spawn_blocking(move || workers.stop()).await;
    }
}

/// The bound sockets, before any task runs. The public listeners are one socket per worker,
/// sharing the port.
struct Listeners {
    api: TcpListener,
    tunnel: TcpListener,
    http: Vec<std::net::TcpListener>,
    https: Vec<std::net::TcpListener>,
    dns_udp: UdpSocket,
    dns_tcp: TcpListener,
}

/// Starts the edge described by `config`.
pub async fn start(config: EdgeConfig) -> Result<RunningEdge, StartError> {
    Ok(start_edge(config).await?)
}

async fn start_edge(config: EdgeConfig) -> Result<RunningEdge, Failure> {
    create_data_dir(&config.data_dir)?;
    let opened = crate::store::open(
        config.store.as_ref().map(StoreUrl::expose),
        &config.data_dir.join(STORE_FILE),
    )
    .await?;
    let store: Arc<dyn Store> = opened.store;
    let ca = Arc::new(EdgeCa::load_or_create(store.as_ref()).await?);
    let auth = Auth::set_up(
        store.clone(),
        &config.data_dir,
        config.admin_token().as_ref(),
    )
    .await?;

    let workers = Workers::start(config.worker_count())?;
    let listeners = bind(&config, workers.count()).await?;
    let addrs = BoundAddrs {
        api: local_addr(&listeners.api, config.api_listen, "api")?,
        http: shared_addr(&listeners.http, config.http_listen, "http")?,
        https: shared_addr(&listeners.https, config.https_listen, "https")?,
        tunnel: local_addr(&listeners.tunnel, config.tunnel_listen, "tunnel")?,
        dns: listeners
            .dns_udp
            .local_addr()
            .map_err(|source| Failure::Bind {
                what: "dns",
                address: config.dns_listen,
                source,
            })?,
    };
    let tunnel_addresses = if config.advertise_tunnel.is_empty() {
        vec![addrs.tunnel.to_string()]
    } else {
        config.advertise_tunnel.clone()
    };
    let settings = Arc::new(EdgeSettings {
        zones: config.zones.clone(),
        public_addresses: config
            .public_addresses
            .iter()
            .map(|a| a.to_string())
            .collect(),
        tunnel_addresses,
    });

    let catalog = Catalog::load(store.clone(), settings.public_addresses.clone()).await?;
    let cancel = CancellationToken::new();
    let mut tasks = JoinSet::new();
    tasks.spawn(catalog.clone().run(cancel.clone()));
    if let Some(changes) = opened.changes {
        // Writes by other edge nodes on the shared store reach this node's catalog.
        let catalog = catalog.clone();
        tasks.spawn(changes.run(move || catalog.wake(), cancel.clone()));
    }

    let registry = Arc::new(Registry::default());
    let node = NodeSettings {
        public_addresses: settings.public_addresses.clone(),
        tunnel_addresses: settings.tunnel_addresses.clone(),
        peer_address: peer_address(&config, addrs.tunnel),
    };
    let cluster = match opened.cluster {
        None => Cluster::standalone(node),
        Some(backend) => {
            Cluster::join(
                backend,
                node,
                &ca,
                registry.clone(),
                catalog.clone(),
                &cancel,
                &mut tasks,
            )
            .await?
        }
    };

    let metrics = Arc::new(Metrics::default());
    let policies = Arc::new(PolicyEngine::new(metrics.clone()));
    let state = ApiState {
        store: store.clone(),
        catalog: catalog.clone(),
        auth,
        ca: ca.clone(),
        registry: registry.clone(),
        metrics: metrics.clone(),
        settings: settings.clone(),
        cluster: cluster.clone(),
    };
    let router = api::router(state);
    tasks.spawn(serve_api(listeners.api, router, cancel.clone()));

    let proxy = Arc::new(Proxy::new(
        catalog.clone(),
        registry.clone(),
        policies,
        metrics.clone(),
        cluster.clone(),
        ProxySettings {
            max_connections_per_ip: config.max_connections_per_ip,
            http2_idle_timeout: config.http2_idle_timeout,
            http2_keepalive_interval: config.http2_keepalive_interval,
            http1_idle_timeout: config.http1_idle_timeout,
            response_head_timeout: config.response_head_timeout,
            stream_slot_timeout: config.stream_slot_timeout,
            max_staleness: config.max_staleness,
        },
    ));
    let handles: Arc<[Handle]> = (0..workers.count())
        .map(|index| workers.handle(index).clone())
        .collect();
    // Links from other nodes arrive on the tunnel port; the proxy answers their requests.
    let peers = match cluster.peer_server_config() {
        None => None,
        Some(tls) => {
            let (connections, accepted) = mpsc::channel(PEER_BACKLOG);
            tasks.spawn(proxy::serve_links(
                accepted,
                proxy.clone(),
                handles.clone(),
                cancel.clone(),
            ));
            Some(PeerPort { tls, connections })
        }
    };
    let tunnels = TunnelContext {
        store,
        catalog: catalog.clone(),
        ca: ca.clone(),
        registry,
        metrics: metrics.clone(),
        settings: Arc::new(TunnelSettings {
            max_connections_per_tunnel: config.max_connections_per_tunnel,
            ..TunnelSettings::from_env()
        }),
        workers: handles.clone(),
    };
    tasks.spawn(tunnel::serve(
        listeners.tunnel,
        tunnels,
        peers,
        cancel.clone(),
    ));
    // Each worker serves its share of the public listeners.
    let https_tls = proxy::https_acceptor(catalog.clone(), ca, &settings.public_addresses)?;
    for (index, (http, https)) in listeners.http.into_iter().zip(listeners.https).enumerate() {
        let worker = workers.handle(index);
        tasks.spawn_on(
            proxy::serve_http(http, proxy.clone(), cancel.clone()),
            worker,
        );
        tasks.spawn_on(
            proxy::serve_https(https, proxy.clone(), https_tls.clone(), cancel.clone()),
            worker,
        );
    }
    let zones = settings.zones.clone();
    let dns_cancel = cancel.clone();
    let dns_limits = dns_limits(&config);
    tasks.spawn(async move {
        crate::dns::serve(
            listeners.dns_udp,
            listeners.dns_tcp,
            catalog,
            &zones,
            dns_limits,
            metrics,
            dns_cancel,
        )
        .await
    });

    tracing::info!(api = %addrs.api, http = %addrs.http, https = %addrs.https, tunnel = %addrs.tunnel, dns = %addrs.dns, "edge listening");
    Ok(RunningEdge {
        addrs,
        cancel,
        tasks,
        workers,
        shutdown_timeout: config.shutdown_timeout,
    })
}

/// Serves the control API until `cancel`, then lets requests in flight finish (the edge's
/// shutdown deadline ends the rest). A client must send its first byte, and then each
/// request head, within [`API_HEADER_TIMEOUT`].
async fn serve_api(listener: TcpListener, router: axum::Router, cancel: CancellationToken) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto;
    use hyper_util::service::TowerToHyperService;

    let tracker = TaskTracker::new();
    loop {
        let (stream, _) = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accepting an API connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let service = TowerToHyperService::new(router.clone());
        let cancel = cancel.clone();
        tracker.spawn(async move {
            // Until a first byte comes, hyper has not picked HTTP/1.1 or HTTP/2 and no timer of
            // its own runs.
            let first_byte = tokio::select! {
                _ = cancel.cancelled() => return,
                readable = tokio::time::timeout(API_HEADER_TIMEOUT, stream.readable()) => readable,
            };
            if !matches!(first_byte, Ok(Ok(()))) {
                return;
            }
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(API_HEADER_TIMEOUT);
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = cancel.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
}

/// Where other edge nodes reach this one: `--peer-address`, else the first
/// `--advertise-tunnel` (where connectors reach it), else the bound tunnel address.
fn peer_address(config: &EdgeConfig, tunnel: SocketAddr) -> String {
    config
        .peer_address
        .as_ref()
        .or(config.advertise_tunnel.first())
        .cloned()
        .unwrap_or_else(|| tunnel.to_string())
}

/// The DNS server's limits from the `--dns-*` flags.
fn dns_limits(config: &EdgeConfig) -> DnsLimits {
    DnsLimits {
        tcp: TcpConfig {
            max_connections: usize::try_from(config.dns_tcp_max_connections).unwrap_or(usize::MAX),
            idle_timeout: config.dns_tcp_idle_timeout,
        },
        rate_limit: RateLimitConfig {
            responses_per_second: config.dns_rate_limit,
            slip: config.dns_rate_limit_slip,
            ipv4_prefix: config.dns_rate_limit_ipv4_prefix,
            ipv6_prefix: config.dns_rate_limit_ipv6_prefix,
        },
    }
}

fn create_data_dir(path: &Path) -> Result<(), Failure> {
    let fail = |source| Failure::DataDir {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(path).map_err(fail)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(fail)?;
    }
    Ok(())
}

async fn bind_tcp(what: &'static str, address: SocketAddr) -> Result<TcpListener, Failure> {
    TcpListener::bind(address)
        .await
        .map_err(|source| Failure::Bind {
            what,
            address,
            source,
        })
}

/// One listener per worker on `address`, sharing its port (`SO_REUSEPORT`).
fn bind_shared(
    what: &'static str,
    address: SocketAddr,
    workers: usize,
) -> Result<Vec<std::net::TcpListener>, Failure> {
    postern_workers::bind_shared(address, workers).map_err(|source| Failure::Bind {
        what,
        address,
        source,
    })
}

/// The address the listeners of [`bind_shared`] share.
fn shared_addr(
    listeners: &[std::net::TcpListener],
    address: SocketAddr,
    what: &'static str,
) -> Result<SocketAddr, Failure> {
    let fail = |source| Failure::Bind {
        what,
        address,
        source,
    };
    listeners
        .first()
        .ok_or_else(|| fail(std::io::Error::other("no listener")))?
        .local_addr()
        .map_err(fail)
}

fn local_addr(
    listener: &TcpListener,
    address: SocketAddr,
    what: &'static str,
) -> Result<SocketAddr, Failure> {
    listener.local_addr().map_err(|source| Failure::Bind {
        what,
        address,
        source,
    })
}

async fn bind(config: &EdgeConfig, workers: usize) -> Result<Listeners, Failure> {
    let api = bind_tcp("api", config.api_listen).await?;
    let tunnel = bind_tcp("tunnel", config.tunnel_listen).await?;
    let http = bind_shared("http", config.http_listen, workers)?;
    let https = bind_shared("https", config.https_listen, workers)?;
    let (dns_udp, dns_tcp) = bind_dns(config.dns_listen).await?;
    Ok(Listeners {
        api,
        tunnel,
        http,
        https,
        dns_udp,
        dns_tcp,
    })
}

/// Binds UDP and TCP on one port. With port 0 the UDP port is picked first; if TCP cannot have
/// the same number, try again with another.
async fn bind_dns(address: SocketAddr) -> Result<(UdpSocket, TcpListener), Failure> {
    let mut last_error = None;
    for _ in 0..20 {
        let udp = UdpSocket::bind(address)
            .await
            .map_err(|source| Failure::Bind {
                what: "dns (udp)",
                address,
                source,
            })?;
        let bound = udp.local_addr().map_err(|source| Failure::Bind {
            what: "dns (udp)",
            address,
            source,
        })?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(error) if address.port() == 0 => last_error = Some(error),
            Err(source) => {
                return Err(Failure::Bind {
                    what: "dns (tcp)",
                    address,
                    source,
                });
            }
        }
    }
    Err(Failure::Bind {
        what: "dns (tcp)",
        address,
        source: last_error.unwrap_or_else(|| std::io::Error::other("no free port")),
    })
}
