//! The catalog: an immutable snapshot of every tunnel, hostname and policy, rebuilt from the
//! store after each write (and periodically, as a safety net) and swapped in atomically. The
//! proxy, the tunnel listener and DNS read snapshots; only the control API writes the store.
//!
//! When the store cannot be read, the last snapshot stays; the catalog says how long it has
//! gone without a successful read ([`Catalog::stale_for`]), so that the proxy can stop serving
//! from it after a limit.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use postern_schema::api::{
    Hostname, HostnameSpec, Policy, PolicySpec, TcpService, TcpServiceSpec, Tunnel, TunnelSpec,
};
use postern_schema::error_chain;
use postern_schema::ids::{PolicyId, TcpServiceId, TunnelId};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::store::{Kind, Record, Store, StoreError};

/// How often the catalog reloads even without a write it knows of.
const RESYNC_EVERY: Duration = Duration::from_secs(10);

/// How often the catalog tries again while the store cannot be read.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// While the store cannot be read, a warning at most this often.
const WARN_EVERY: Duration = Duration::from_secs(30);

/// Everything the data plane needs, at one store revision.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    /// The store revision this snapshot reflects.
    pub(crate) revision: u64,
    /// Tunnels by id.
    pub(crate) tunnels: BTreeMap<TunnelId, Tunnel>,
    /// Hostnames by name.
    pub(crate) hostnames: BTreeMap<String, Hostname>,
    /// Policies by id.
    pub(crate) policies: BTreeMap<PolicyId, Policy>,
    /// TCP services by id (their `listen` is left empty: the API fills it in).
    pub(crate) tcp_services: BTreeMap<TcpServiceId, TcpService>,
    /// Some hostname has `tls_passthrough`: the HTTPS listener reads each ClientHello's
    /// server name before it terminates TLS.
    pub(crate) passthrough: bool,
}

impl Snapshot {
    /// The hostname that serves `name`: the one declared with that name, else the wildcard
    /// one label above it (`*.dev.example.com` for `a.dev.example.com`).
    pub(crate) fn hostname_for(&self, name: &str) -> Option<&Hostname> {
        if let Some(hostname) = self.hostnames.get(name) {
            return Some(hostname);
        }
        self.hostnames
            .get(&postern_schema::rules::wildcard_of(name)?)
    }
}

/// The current snapshot and the means to refresh it.
#[derive(Clone)]
pub(crate) struct Catalog {
    store: Arc<dyn Store>,
    current: watch::Sender<Arc<Snapshot>>,
    wake: Arc<Notify>,
    public_addresses: Arc<RwLock<Arc<Vec<String>>>>,
    /// Set when the public addresses changed: the next reload is swapped in even at the same
    /// revision, so hostnames answer the new addresses.
    addresses_changed: Arc<AtomicBool>,
    freshness: Arc<Freshness>,
}

/// When the store was last read, and whether reading it fails now.
#[derive(Debug)]
struct Freshness {
    /// Set from the first failed read until the next successful one (all a request reads
    /// while the store is fine).
    failing: AtomicBool,
    last_read: Mutex<Instant>,
}

impl Catalog {
    /// Loads the first snapshot.
    pub(crate) async fn load(
        store: Arc<dyn Store>,
        public_addresses: Vec<String>,
    ) -> Result<Self, StoreError> {
        let first = build_snapshot(store.as_ref(), &public_addresses).await?;
        let (current, _) = watch::channel(Arc::new(first));
        Ok(Self {
            store,
            current,
            wake: Arc::new(Notify::new()),
            public_addresses: Arc::new(RwLock::new(Arc::new(public_addresses))),
            addresses_changed: Arc::new(AtomicBool::new(false)),
            freshness: Arc::new(Freshness {
                failing: AtomicBool::new(false),
                last_read: Mutex::new(Instant::now()),
            }),
        })
    }

    /// While the store cannot be read: how long since it last was, when that is over `limit`.
    /// `None` while the store answers (however long ago the last write was).
    pub(crate) fn stale_for(&self, limit: Duration) -> Option<Duration> {
        if !self.freshness.failing.load(Ordering::Relaxed) {
            return None;
        }
        let age = self
            .freshness
            .last_read
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed();
        (age > limit).then_some(age)
    }

    /// What DNS answers for hostnames (and their `addresses`): this node's `--public-address`
    /// values, or with several edge nodes every live node's.
    pub(crate) fn public_addresses(&self) -> Arc<Vec<String>> {
        self.public_addresses
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Changes the public addresses (edge nodes came or went); the snapshot is rebuilt with
    /// them without waiting for a write.
    pub(crate) fn set_public_addresses(&self, addresses: Vec<String>) {
        {
            let mut current = self
                .public_addresses
                .write()
                .unwrap_or_else(|p| p.into_inner());
            if **current == addresses {
                return;
            }
            *current = Arc::new(addresses);
        }
        self.addresses_changed.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// The latest snapshot.
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.current.borrow().clone()
    }

    /// A receiver that sees every new snapshot.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.current.subscribe()
    }

    /// Asks for a reload without waiting for it (a change notification from elsewhere).
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Waits until the snapshot reflects at least store revision `revision` (the revision of a
    /// write just made), so that what the API acknowledged is what the data plane serves.
    pub(crate) async fn refresh_to(&self, revision: u64) {
        if self.current.borrow().revision >= revision {
            return;
        }
        let mut receiver = self.current.subscribe();
        self.wake.notify_one();
        let reached = receiver.wait_for(|s| s.revision >= revision);
        if tokio::time::timeout(Duration::from_secs(5), reached)
            .await
            .is_err()
        {
            tracing::warn!(
                revision,
                "the catalog did not catch up with a write within 5 s"
            );
        }
    }

    /// Reloads on every wake-up and every [`RESYNC_EVERY`] (every [`RETRY_EVERY`] while the
    /// store cannot be read), until `cancel`.
    pub(crate) async fn run(self, cancel: CancellationToken) {
        let mut failing_since: Option<Instant> = None;
        let mut warned: Option<Instant> = None;
        loop {
            let wait = if failing_since.is_some() {
                RETRY_EVERY
            } else {
                RESYNC_EVERY
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
            let readdress = self.addresses_changed.swap(false, Ordering::SeqCst);
            match build_snapshot(self.store.as_ref(), &self.public_addresses()).await {
                Ok(snapshot) => {
                    *self
                        .freshness
                        .last_read
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()) = Instant::now();
                    self.freshness.failing.store(false, Ordering::Relaxed);
                    if let Some(since) = failing_since.take() {
                        tracing::info!(
                            failed_for_secs = since.elapsed().as_secs(),
                            "the store can be read again; the catalog is current"
                        );
                        warned = None;
                    }
                    self.current.send_if_modified(|current| {
                        if snapshot.revision > current.revision
                            || (readdress && snapshot.revision == current.revision)
                        {
                            *current = Arc::new(snapshot);
                            true
                        } else {
                            false
                        }
                    });
                }
                Err(error) => {
                    if readdress {
                        self.addresses_changed.store(true, Ordering::SeqCst);
                    }
                    self.freshness.failing.store(true, Ordering::Relaxed);
                    failing_since.get_or_insert_with(Instant::now);
                    if warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                        warned = Some(Instant::now());
                        tracing::warn!(error = %error_chain(&error), "cannot reload the catalog; serving the last snapshot until --max-staleness");
                    }
                }
            }
        }
    }
}

async fn build_snapshot(store: &dyn Store, addresses: &[String]) -> Result<Snapshot, StoreError> {
    let dump = store.dump().await?;
    let mut snapshot = Snapshot {
        revision: dump.revision,
        ..Snapshot::default()
    };
    for record in &dump.records {
        match record.kind {
            Kind::Tunnel => {
                let tunnel = tunnel_from_record(record)?;
                snapshot.tunnels.insert(tunnel.id, tunnel);
            }
            Kind::Policy => {
                let policy = policy_from_record(record)?;
                snapshot.policies.insert(policy.id, policy);
            }
            Kind::TcpService => {
                let service = tcp_service_from_record(record, "")?;
                snapshot.tcp_services.insert(service.id, service);
            }
            Kind::Hostname => {
                let hostname = hostname_from_record(record, addresses)?;
                snapshot.passthrough |= hostname.spec.passes_tls_through();
                snapshot
                    .hostnames
                    .insert(hostname.spec.hostname.clone(), hostname);
            }
        }
    }
    Ok(snapshot)
}

fn body<T: serde::de::DeserializeOwned>(record: &Record) -> Result<T, StoreError> {
    serde_json::from_value(record.body.clone())
        .map_err(|e| StoreError::Corrupt(format!("{} {}: {e}", record.kind, record.id)))
}

/// A stored tunnel record as the API object (no connection count, no token).
pub(crate) fn tunnel_from_record(record: &Record) -> Result<Tunnel, StoreError> {
    let spec: TunnelSpec = body(record)?;
    Ok(Tunnel {
        id: record
            .id
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("tunnel id {}", record.id)))?,
        spec,
        version: record.version,
        created_at: record.created_at.clone(),
        connections: 0,
        token: None,
    })
}

/// A stored policy record as the API object.
pub(crate) fn policy_from_record(record: &Record) -> Result<Policy, StoreError> {
    let spec: PolicySpec = body(record)?;
    Ok(Policy {
        id: record
            .id
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("policy id {}", record.id)))?,
        spec,
        version: record.version,
        created_at: record.created_at.clone(),
    })
}

/// A stored hostname record as the API object, answering `addresses`.
pub(crate) fn hostname_from_record(
    record: &Record,
    addresses: &[String],
) -> Result<Hostname, StoreError> {
    let spec: HostnameSpec = body(record)?;
    Ok(Hostname {
        spec,
        addresses: addresses.to_vec(),
        version: record.version,
        created_at: record.created_at.clone(),
        certificate: None,
    })
}

/// A stored TCP service record as the API object, with `listen` as given.
pub(crate) fn tcp_service_from_record(
    record: &Record,
    listen: &str,
) -> Result<TcpService, StoreError> {
    let spec: TcpServiceSpec = body(record)?;
    Ok(TcpService {
        id: record
            .id
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("tcp service id {}", record.id)))?,
        spec,
        listen: listen.to_string(),
        version: record.version,
        created_at: record.created_at.clone(),
    })
}
