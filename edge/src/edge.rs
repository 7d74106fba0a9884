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

use crate::access_log::{self, AccessLog};
use crate::api::{self, ApiState, ApiTls, ApiTlsError, AuthThrottle, Readiness};
use crate::auth::{Auth, AuthError};
use crate::ca::{CaError, EdgeCa, VisitorCa};
use crate::catalog::Catalog;
use crate::certs::{
    AcmeHttpError, AcmeOffer, AcmeSettings, Certificates, CertificatesError, Orders,
};
use crate::cluster::{Cluster, ClusterError, NodeSettings};
use crate::config::{EdgeConfig, EdgeSettings};
use crate::dns::{DnsLimits, RateLimitConfig, TcpConfig};
use crate::metrics::Metrics;
use crate::policy::{KeysError, PeopleKeys, PolicyEngine};
use crate::proxy::{self, Proxy, ProxySettings};
use crate::store::{ChallengeKind, Store, StoreError};
use crate::tcp_ports::{PortMode, TcpPorts};
use crate::tunnel::{self, PeerPort, Registry, TunnelContext, TunnelSettings};

/// How many accepted links from other nodes may wait for the proxy to take them.
const PEER_BACKLOG: usize = 64;

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
    /// Public certificates could not be set up.
    #[error("cannot set up the public certificates")]
    Certificates(#[from] CertificatesError),
    /// The ACME client could not be set up (`--acme-ca-cert`).
    #[error("cannot set up the ACME client")]
    Acme(#[from] AcmeHttpError),
    /// The keys of people's logins could not be set up.
    #[error("cannot set up the login keys")]
    Keys(#[from] KeysError),
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
    /// The control API's TLS could not be configured.
    #[error("cannot set up TLS for the control API")]
    ApiTls(#[from] ApiTlsError),
    /// A flag's value cannot be used.
    #[error("{0}")]
    Config(String),
    /// The access log file could not be opened (`--access-log`).
    #[error("cannot open the access log {path}")]
    AccessLog {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
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
    /// Whether the control API is served over TLS (the ready line then says `https://…`).
    #[serde(skip)]
    pub api_tls: bool,
    /// `/metrics` without a token (`--metrics-listen`), when on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<SocketAddr>,
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
            if self.api_tls {
                map.insert("api".into(), format!("https://{}", self.api).into());
            }
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
    /// What `GET /ready` answers: draining from the start of shutdown.
    readiness: Readiness,
    /// The control API, stopped last so that `/ready` answers while the rest drains.
    api_stop: CancellationToken,
    api_task: ApiTask,
}

/// The control API's task; aborted when dropped, as the tasks of the `JoinSet` are.
struct ApiTask(Option<tokio::task::JoinHandle<()>>);

impl Drop for ApiTask {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

impl RunningEdge {
    /// Stops accepting, lets in-flight requests finish, waits for every task, and ends the
    /// workers; whatever still runs at `--shutdown-timeout` is cut off.
    pub async fn shutdown(mut self) {
        self.readiness.set_draining();
        self.cancel.cancel();
        let deadline = tokio::time::Instant::now() + self.shutdown_timeout;
        let tasks = &mut self.tasks;
        let finished = tokio::time::timeout_at(deadline, async {
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
        // The API last, so that `/ready` says the node is draining meanwhile; within the same
        // deadline.
        self.api_stop.cancel();
        if let Some(api) = self.api_task.0.take() {
            let abort = api.abort_handle();
            if tokio::time::timeout_at(deadline, api).await.is_err() {
                abort.abort();
            }
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
    metrics: Option<TcpListener>,
    tunnel: TcpListener,
    http: Vec<std::net::TcpListener>,
    https: Vec<std::net::TcpListener>,
    dns_udp: UdpSocket,
    dns_tcp: TcpListener,
}

/// The access log of `--access-log` (none: only followers read it).
fn open_access_log(
    path: Option<&str>,
    metrics: Arc<Metrics>,
    closing: CancellationToken,
) -> Result<Arc<AccessLog>, Failure> {
    let destination = path.map(access_log::Destination::parse);
    AccessLog::open(destination.as_ref(), metrics, closing)
        .map(Arc::new)
        .map_err(|source| Failure::AccessLog {
            path: path.unwrap_or_default().to_string(),
            source,
        })
}

/// Reopens the access log on every SIGHUP (after logrotate moved it) until `cancel`.
async fn reopen_on_hangup(log: Arc<AccessLog>, cancel: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP: the access log will not be reopened");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            received = hangups.recv() => {
                if received.is_none() {
                    return;
                }
                log.reopen();
            }
        }
    }
}

/// Starts the edge described by `config`.
pub async fn start(config: EdgeConfig) -> Result<RunningEdge, StartError> {
    Ok(start_edge(config).await?)
}

async fn start_edge(config: EdgeConfig) -> Result<RunningEdge, Failure> {
    create_data_dir(&config.data_dir)?;
    let store_url = config.store_url().map_err(Failure::Config)?;
    let admin_token = config.admin_token().map_err(Failure::Config)?;
    let opened = crate::store::open(
        store_url.as_ref().map(|url| url.expose()),
        &config.data_dir.join(STORE_FILE),
    )
    .await?;
    let store: Arc<dyn Store> = opened.store;
    let ca = Arc::new(EdgeCa::load_or_create(store.as_ref()).await?);
    let visitor_ca = Arc::new(VisitorCa::load_or_create(store.as_ref(), &config.zones).await?);
    let auth = Auth::set_up(store.clone(), &config.data_dir, admin_token.as_ref()).await?;
    let api_tls_wanted = ApiTls::from_config(&config);

    let workers = Workers::start(config.worker_count())?;
    let listeners = bind(&config, workers.count()).await?;
    let metrics_addr = match (&listeners.metrics, config.metrics_listen) {
        (Some(listener), Some(address)) => Some(local_addr(listener, address, "metrics")?),
        _ => None,
    };
    let addrs = BoundAddrs {
        api: local_addr(&listeners.api, config.api_listen, "api")?,
        api_tls: config.api_tls_on(),
        metrics: metrics_addr,
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
    let acme_settings = acme_settings(&config);
    let mut unknown_names = vec!["localhost".to_string()];
    unknown_names.extend(settings.public_addresses.iter().cloned());
    let certificates = Certificates::load(
        opened.certificates.clone(),
        visitor_ca.clone(),
        &unknown_names,
        acme_settings.as_ref().map(|acme| AcmeOffer {
            challenges: acme.challenges.clone(),
        }),
    )
    .await?;
    let api_tls = api_tls_wanted
        .acceptor(&ca, &certificates, &config.data_dir)
        .await?;
    let cancel = CancellationToken::new();
    let mut tasks = JoinSet::new();
    tasks.spawn(catalog.clone().run(cancel.clone()));
    tasks.spawn(certificates.clone().run(cancel.clone()));
    if let Some(changes) = opened.changes {
        // Writes by other edge nodes on the shared store reach this node's catalog and its
        // certificates.
        let catalog = catalog.clone();
        let certificates = certificates.clone();
        tasks.spawn(changes.run(
            move || {
                catalog.wake();
                certificates.wake();
            },
            cancel.clone(),
        ));
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
    let access_log = open_access_log(
        config.access_log.as_deref(),
        metrics.clone(),
        cancel.clone(),
    )?;
    if config.access_log.is_some() {
        tasks.spawn(reopen_on_hangup(access_log.clone(), cancel.clone()));
    }
    if let Some(acme) = acme_settings {
        // One node of a cluster orders at a time: the holder of the store's ACME lease.
        let holder = cluster
            .node_id()
            .map(str::to_string)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let orders = Orders::new(
            acme,
            settings.zones.clone(),
            certificates.clone(),
            store.clone(),
            catalog.clone(),
            metrics.clone(),
            holder,
        )?;
        tasks.spawn(orders.run(cancel.clone()));
    }
    let policies = Arc::new(PolicyEngine::new(metrics.clone()));
    // People's login cookies and the origin's JWTs: one set of keys for the whole cluster.
    policies.install_keys(PeopleKeys::load_or_create(store.as_ref()).await?);
    // Tokens added or revoked through other nodes on a shared store are heard of at once.
    tasks.spawn(auth.clone().follow(opened.token_changes, cancel.clone()));
    let readiness = Readiness::default();
    let tcp_ports = Arc::new(TcpPorts::new(
        config.tcp_address,
        PortMode::from_flag(config.tcp_ports),
        workers.count(),
    ));
    let state = ApiState {
        store: store.clone(),
        catalog: catalog.clone(),
        auth,
        ca: ca.clone(),
        visitor_ca,
        certificates: certificates.clone(),
        registry: registry.clone(),
        metrics: metrics.clone(),
        settings: settings.clone(),
        cluster: cluster.clone(),
        throttle: Arc::new(AuthThrottle::new(config.api_auth_failures_per_minute)),
        readiness: readiness.clone(),
        access_log: access_log.clone(),
        tcp_ports: tcp_ports.clone(),
    };
    if let Some(listener) = listeners.metrics {
        let router = api::metrics_router(state.clone());
        tasks.spawn(api::serve(
            "metrics",
            listener,
            router,
            None,
            cancel.clone(),
        ));
    }
    let router = api::router(state);
    // Stopped after everything else has drained, so that `/ready` says so meanwhile.
    let api_stop = CancellationToken::new();
    let api_task = tokio::spawn(api::serve(
        "api",
        listeners.api,
        router,
        api_tls,
        api_stop.clone(),
    ));

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
        certificates.clone(),
        access_log,
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
    let https_tls = proxy::https_acceptor(catalog.clone(), certificates.clone())?;
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
    // TCP services: one listener per service port on every worker, as the catalog says.
    tasks.spawn(proxy::serve_tcp_services(
        proxy.clone(),
        tcp_ports,
        handles.clone(),
        cancel.clone(),
    ));
    let zones = settings.zones.clone();
    let dns_cancel = cancel.clone();
    let dns_limits = dns_limits(&config);
    tasks.spawn(async move {
        crate::dns::serve(
            crate::dns::Sockets {
                udp: listeners.dns_udp,
                tcp: listeners.dns_tcp,
            },
            catalog,
            &zones,
            dns_limits,
            metrics,
            certificates,
            dns_cancel,
        )
        .await
    });

    tracing::info!(api = %addrs.api, api_tls = addrs.api_tls, http = %addrs.http, https = %addrs.https, tunnel = %addrs.tunnel, dns = %addrs.dns, "edge listening");
    readiness.set_ready();
    Ok(RunningEdge {
        addrs,
        cancel,
        tasks,
        workers,
        shutdown_timeout: config.shutdown_timeout,
        readiness,
        api_stop,
        api_task: ApiTask(Some(api_task)),
    })
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

/// The ACME flags, when `--acme-directory` turns ACME on.
fn acme_settings(config: &EdgeConfig) -> Option<AcmeSettings> {
    let directory = config.acme_directory.clone()?;
    Some(AcmeSettings {
        directory,
        email: config.acme_email.clone(),
        ca_cert: config.acme_ca_cert.clone(),
        challenges: config
            .acme_challenges
            .iter()
            .filter_map(|name| ChallengeKind::parse(name))
            .collect(),
    })
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
    let metrics = match config.metrics_listen {
        Some(address) => Some(bind_tcp("metrics", address).await?),
        None => None,
    };
    let tunnel = bind_tcp("tunnel", config.tunnel_listen).await?;
    let http = bind_shared("http", config.http_listen, workers)?;
    let https = bind_shared("https", config.https_listen, workers)?;
    let (dns_udp, dns_tcp) = bind_dns(config.dns_listen).await?;
    Ok(Listeners {
        api,
        metrics,
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
