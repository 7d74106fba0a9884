//! What every tunnel connection of one connector process shares: its id, identity, live
//! configuration, origin pools and metrics, the event streams of its registered connections,
//! and the two process-wide signals (draining on a stop signal, failed when the tunnel was
//! deleted). The supervisor owns the [`Connector`]; each connection reads it.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use postern_schema::wire::{self, Event};
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use crate::egress::Egress;
use crate::identity::{EnrolError, Identity};
use crate::metrics::ConnectorMetrics;
use crate::orchestrator::Orchestrator;
use crate::origin::Origins;

/// The key of one connection's event stream among the connector's live connections: one per
/// dial, so that a connection moving to another edge node and its successor never share one.
pub(crate) type ConnectionKey = usize;

/// What every connection of one connector process shares.
pub struct Connector {
    /// This process's id, the same on all its connections.
    pub(crate) id: String,
    /// Key, certificate, pinned CA.
    pub(crate) identity: Identity,
    /// The configuration pushed by the edge.
    pub(crate) orchestrator: Orchestrator,
    /// Pooled clients to origins.
    pub(crate) origins: Origins,
    /// Counters.
    pub(crate) metrics: Arc<ConnectorMetrics>,
    /// The way out to the edge: direct or through an HTTP proxy.
    pub(crate) egress: Egress,
    draining: CancellationToken,
    failed: CancellationToken,
    tunnel_deleted: AtomicBool,
    events: Mutex<HashMap<ConnectionKey, mpsc::Sender<Bytes>>>,
    enrolling: tokio::sync::Mutex<()>,
    next_key: AtomicUsize,
    /// The most connections an edge node asked for in its hello (one per edge worker).
    wanted: tokio::sync::watch::Sender<usize>,
    /// The services whose origins the health checks find unhealthy.
    unhealthy: Mutex<BTreeSet<String>>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector").field("id", &self.id).finish()
    }
}

impl Connector {
    /// A connector whose connections all present `id`.
    pub fn new(
        identity: Identity,
        orchestrator: Orchestrator,
        origins: Origins,
        metrics: Arc<ConnectorMetrics>,
        id: String,
        egress: Egress,
    ) -> Self {
        Self {
            id,
            egress,
            identity,
            orchestrator,
            origins,
            metrics,
            draining: CancellationToken::new(),
            failed: CancellationToken::new(),
            tunnel_deleted: AtomicBool::new(false),
            events: Mutex::new(HashMap::new()),
            enrolling: tokio::sync::Mutex::new(()),
            next_key: AtomicUsize::new(0),
            wanted: tokio::sync::watch::channel(0).0,
            unhealthy: Mutex::new(BTreeSet::new()),
        }
    }

    /// Records how many connections an edge node asked for in its hello; the supervisor
    /// opens more when the count was not set by the user and this is more than it keeps.
    pub(crate) fn note_wanted_connections(&self, wanted: u32) {
        let wanted = usize::try_from(wanted).unwrap_or(usize::MAX);
        self.wanted.send_if_modified(|current| {
            let more = wanted > *current;
            if more {
                *current = wanted;
            }
            more
        });
    }

    /// Follows the most connections an edge node asked for.
    pub(crate) fn wanted_connections(&self) -> tokio::sync::watch::Receiver<usize> {
        self.wanted.subscribe()
    }

    /// A key no other connection of this process has had.
    pub(crate) fn next_connection_key(&self) -> ConnectionKey {
        self.next_key.fetch_add(1, Ordering::Relaxed)
    }

    /// Starts shutting down: every connection drains.
    pub(crate) fn start_draining(&self) {
        self.draining.cancel();
    }

    /// Is the connector shutting down?
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.is_cancelled()
    }

    /// Resolves once the connector starts shutting down.
    pub(crate) fn draining(&self) -> WaitForCancellationFuture<'_> {
        self.draining.cancelled()
    }

    /// The edge said the tunnel was deleted: stop everything.
    pub(crate) fn fail_tunnel_deleted(&self) {
        if !self.tunnel_deleted.swap(true, Ordering::SeqCst) {
            tracing::error!(
                tunnel_id = %self.identity.token().tunnel_id,
                "the edge says this tunnel was deleted; the connector stops"
            );
        }
        self.failed.cancel();
    }

    /// Has the tunnel been deleted?
    pub(crate) fn has_failed(&self) -> bool {
        self.failed.is_cancelled()
    }

    /// Resolves once the tunnel has been deleted.
    pub(crate) fn failed(&self) -> WaitForCancellationFuture<'_> {
        self.failed.cancelled()
    }

    /// Records the event stream of a registered connection, and tells it the unhealthy
    /// origins, if any.
    pub(crate) fn add_events(&self, key: ConnectionKey, sender: mpsc::Sender<Bytes>) {
        if let Some(line) = self.origin_health_line() {
            let _ = sender.try_send(line);
        }
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, sender);
    }

    /// The [`Event::OriginHealth`] line, when an origin is unhealthy.
    fn origin_health_line(&self) -> Option<Bytes> {
        let unhealthy = self.unhealthy.lock().unwrap_or_else(|p| p.into_inner());
        if unhealthy.is_empty() {
            return None;
        }
        let event = Event::OriginHealth {
            unhealthy: unhealthy.iter().cloned().collect(),
        };
        let mut line = wire::to_json(&event);
        line.push(b'\n');
        Some(Bytes::from(line))
    }

    /// Records a health check's verdict on `service`'s origin (`failure`: why it is
    /// unhealthy; `None`: healthy) and tells every registered connection when it changed, or
    /// while any origin stays unhealthy.
    pub(crate) fn note_origin_health(&self, service: &str, failure: Option<&str>) {
        let changed = {
            let mut unhealthy = self.unhealthy.lock().unwrap_or_else(|p| p.into_inner());
            match failure {
                Some(_) => unhealthy.insert(service.to_owned()),
                None => unhealthy.remove(service),
            }
        };
        if changed {
            match failure {
                Some(reason) => {
                    tracing::warn!(%service, %reason, "origin unhealthy: the edge routes around this connector for it")
                }
                None => tracing::info!(%service, "origin healthy again"),
            }
        }
        self.tell_origin_health(changed);
    }

    /// Sends the unhealthy origins to every registered connection: when any is unhealthy,
    /// or (`changed`) the list just emptied.
    fn tell_origin_health(&self, changed: bool) {
        let line = match self.origin_health_line() {
            Some(line) => line,
            None if changed => {
                let mut line = wire::to_json(&Event::OriginHealth {
                    unhealthy: Vec::new(),
                });
                line.push(b'\n');
                Bytes::from(line)
            }
            None => return,
        };
        let senders: Vec<mpsc::Sender<Bytes>> = self
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for sender in senders {
            let _ = sender.try_send(line.clone());
        }
    }

    /// Forgets the health of services no longer probed (`keep` says which still are).
    pub(crate) fn forget_origins_except(&self, keep: impl Fn(&str) -> bool) {
        let forgotten = {
            let mut unhealthy = self.unhealthy.lock().unwrap_or_else(|p| p.into_inner());
            let before = unhealthy.len();
            unhealthy.retain(|service| keep(service));
            unhealthy.len() != before
        };
        if forgotten {
            self.tell_origin_health(true);
        }
    }

    /// Forgets the event stream of a connection that ended or drains.
    pub(crate) fn remove_events(&self, key: ConnectionKey) {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
    }

    /// Sends `event` on one registered connection; `false` if there is none.
    pub(crate) async fn send_event_anywhere(&self, event: &Event) -> bool {
        let senders: Vec<mpsc::Sender<Bytes>> = self
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let mut line = wire::to_json(event);
        line.push(b'\n');
        let line = Bytes::from(line);
        for sender in senders {
            if sender.send(line.clone()).await.is_ok() {
                return true;
            }
        }
        false
    }

    /// Enrols unless a usable certificate exists; one enrolment at a time.
    pub(crate) async fn ensure_enrolled(&self) -> Result<(), EnrolError> {
        let _one_at_a_time = self.enrolling.lock().await;
        if self.identity.credentials().is_some() {
            return Ok(());
        }
        tracing::info!(tunnel_id = %self.identity.token().tunnel_id, "enrolling with the edge");
        self.identity.enrol(&self.egress).await
    }
}
