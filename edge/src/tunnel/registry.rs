//! Which connectors are connected right now, per tunnel: one [`Session`] per live tunnel
//! connection, the handle the proxy opens visitor streams on. Each session lives on one
//! worker; the registry spreads each connector's connections over the workers
//! ([`Registry::place`]) and picks, for a request, the least busy connector, on a connection of
//! the worker serving it when that connector has one there.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper::{Request, Response};
use postern_schema::api::Connection;
use postern_schema::ids::TunnelId;
use postern_schema::wire::{HostnameConfig, RefusedHostname, tuning};

use crate::store::cluster::Departure;
use rand::RngExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_util::sync::CancellationToken;

use crate::body::BoxBody;

/// One live, registered tunnel connection.
pub(crate) struct Session {
    /// The edge's id for the connection.
    pub(crate) id: String,
    /// The tunnel its certificate is bound to.
    pub(crate) tunnel: TunnelId,
    /// The connector process at the other end.
    pub(crate) connector: String,
    /// Its certificate, as [`Registry::place`] knows it.
    certificate: u64,
    /// The worker whose runtime drives the connection (`None` off the workers, in tests).
    pub(crate) worker: Option<usize>,
    sender: SendRequest<BoxBody>,
    info: Mutex<Connection>,
    outstanding: AtomicUsize,
    /// The connector's streams visitors may use (`tuning::MAX_CONCURRENT_STREAMS`, less those
    /// kept for control requests).
    streams: Arc<Semaphore>,
    draining: AtomicBool,
    pushed_version: AtomicU64,
    seen_revision: watch::Sender<u64>,
    applied: Mutex<Vec<HostnameConfig>>,
    refused: Mutex<Vec<(HostnameConfig, RefusedHostname)>>,
    close: CancellationToken,
    /// Some service's origin is unhealthy by the connector's health checks (read on every
    /// pick, so the list is locked only when set).
    any_unhealthy: AtomicBool,
    unhealthy: Mutex<Vec<String>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("tunnel", &self.tunnel)
            .field("outstanding", &self.outstanding())
            .field("draining", &self.is_draining())
            .finish()
    }
}

/// Why a stream could not be opened on a session.
#[derive(Debug)]
pub(crate) struct SendFailure {
    /// The request, when it never left the edge (safe to send elsewhere).
    pub(crate) request: Option<Request<BoxBody>>,
    /// What hyper said.
    pub(crate) error: hyper::Error,
}

/// Visitor streams one connection carries at once.
const VISITOR_STREAMS: u32 = tuning::MAX_CONCURRENT_STREAMS - tuning::CONTROL_STREAMS;

/// Counts one outstanding stream on a session, and holds its stream, until dropped.
#[derive(Debug)]
pub(crate) struct StreamGuard {
    session: Arc<Session>,
    _stream: OwnedSemaphorePermit,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.session.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Session {
    /// A session over `sender`, described by `info`, placed by `placement`; `close` ends the
    /// connection.
    pub(crate) fn new(
        sender: SendRequest<BoxBody>,
        info: Connection,
        placement: &Placement,
        close: CancellationToken,
    ) -> Self {
        Self {
            id: info.id.clone(),
            tunnel: placement.tunnel,
            connector: info.connector_id.clone(),
            certificate: placement.certificate,
            worker: postern_workers::current(),
            sender,
            pushed_version: AtomicU64::new(info.config_version),
            seen_revision: watch::channel(0).0,
            applied: Mutex::new(Vec::new()),
            refused: Mutex::new(Vec::new()),
            info: Mutex::new(info),
            outstanding: AtomicUsize::new(0),
            streams: Arc::new(Semaphore::new(VISITOR_STREAMS as usize)),
            draining: AtomicBool::new(false),
            close,
            any_unhealthy: AtomicBool::new(false),
            unhealthy: Mutex::new(Vec::new()),
        }
    }

    /// Records the services whose origins the connector's health checks find unhealthy.
    pub(crate) fn set_unhealthy_origins(&self, services: Vec<String>) {
        let mut unhealthy = self.unhealthy.lock().unwrap_or_else(|p| p.into_inner());
        self.any_unhealthy
            .store(!services.is_empty(), Ordering::Relaxed);
        *unhealthy = services;
    }

    /// Does the connector find `service`'s origin healthy (or not probe it)?
    pub(crate) fn serves_origin(&self, service: &str) -> bool {
        if !self.any_unhealthy.load(Ordering::Relaxed) {
            return true;
        }
        let unhealthy = self.unhealthy.lock().unwrap_or_else(|p| p.into_inner());
        !unhealthy.iter().any(|s| s == service)
    }

    /// Can new visitor streams go here?
    pub(crate) fn is_healthy(&self) -> bool {
        !self.is_draining() && !self.sender.is_closed() && !self.close.is_cancelled()
    }

    /// Has the connector (or the edge) asked to stop routing here?
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Stops routing new streams here.
    pub(crate) fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
        self.with_info(|info| info.draining = true);
    }

    /// Visitor streams in flight.
    pub(crate) fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// The last config version pushed (or being pushed) to the connector.
    pub(crate) fn pushed_version(&self) -> u64 {
        self.pushed_version.load(Ordering::Relaxed)
    }

    /// Records a push about to be sent.
    pub(crate) fn set_pushed_version(&self, version: u64) {
        self.pushed_version.store(version, Ordering::Relaxed);
    }

    /// Records that the session has pushed whatever catalog revision `revision` changed for it.
    pub(crate) fn set_seen_revision(&self, revision: u64) {
        self.seen_revision.send_if_modified(|seen| {
            let newer = revision > *seen;
            if newer {
                *seen = revision;
            }
            newer
        });
    }

    /// Waits (at most `timeout`) until the session has pushed the configuration of catalog
    /// revision `revision`, so a request routed with that revision finds its hostname at the
    /// connector.
    pub(crate) async fn catch_up(&self, revision: u64, timeout: std::time::Duration) {
        if *self.seen_revision.borrow() >= revision {
            return;
        }
        let mut seen = self.seen_revision.subscribe();
        let _ = tokio::time::timeout(timeout, seen.wait_for(|seen| *seen >= revision)).await;
    }

    /// The catalog revision up to which the connector applied everything its tunnel serves:
    /// the last revision the session handled, unless the connector did not acknowledge the
    /// push of it in full (then the version it did acknowledge).
    pub(crate) fn current_through(&self) -> u64 {
        let seen = *self.seen_revision.borrow();
        let acked = self.connection().config_version;
        if acked >= self.pushed_version() {
            seen
        } else {
            acked.min(seen)
        }
    }

    /// Records the version the connector acknowledged.
    pub(crate) fn set_acked_version(&self, version: u64) {
        self.with_info(|info| info.config_version = version);
    }

    /// Records the hostnames the connector acknowledged serving (a push it applied), and
    /// those of that push it refused.
    pub(crate) fn set_applied(
        &self,
        hostnames: Vec<HostnameConfig>,
        refused: Vec<(HostnameConfig, RefusedHostname)>,
    ) {
        *self.applied.lock().unwrap_or_else(|p| p.into_inner()) = hostnames;
        *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = refused;
    }

    /// The hostnames of its last applied push the connector refused, as pushed, and why.
    pub(crate) fn refused(&self) -> Vec<(HostnameConfig, RefusedHostname)> {
        self.refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Runs `look` on the hostnames the connector last acknowledged serving.
    pub(crate) fn with_applied<R>(&self, look: impl FnOnce(&[HostnameConfig]) -> R) -> R {
        look(
            self.applied
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_slice(),
        )
    }

    /// The API's view of the connection.
    pub(crate) fn connection(&self) -> Connection {
        self.info.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Takes one of the connection's visitor streams, waiting at most `wait` for one to be
    /// free, and counts it as outstanding until the guard is dropped; `None` when none freed
    /// in time.
    pub(crate) async fn begin_stream(
        self: &Arc<Self>,
        wait: std::time::Duration,
    ) -> Option<StreamGuard> {
        let stream = match self.streams.clone().try_acquire_owned() {
            Ok(stream) => stream,
            Err(_) => tokio::time::timeout(wait, self.streams.clone().acquire_owned())
                .await
                .ok()?
                .ok()?,
        };
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        Some(StreamGuard {
            session: self.clone(),
            _stream: stream,
        })
    }

    /// Opens a stream for `request` and waits for the response head.
    pub(crate) async fn send(
        &self,
        request: Request<BoxBody>,
    ) -> Result<Response<Incoming>, SendFailure> {
        let mut sender = self.sender.clone();
        sender
            .try_send_request(request)
            .await
            .map_err(|mut failure| SendFailure {
                request: failure.take_message(),
                error: failure.into_error(),
            })
    }

    /// A clone of the h2 handle, for control requests.
    pub(crate) fn sender(&self) -> SendRequest<BoxBody> {
        self.sender.clone()
    }

    fn with_info(&self, change: impl FnOnce(&mut Connection)) {
        let mut info = self.info.lock().unwrap_or_else(|p| p.into_inner());
        change(&mut info);
    }
}

/// Live sessions, by tunnel.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    sessions: RwLock<HashMap<TunnelId, Vec<Arc<Session>>>>,
    /// Connections placed on a worker whose session is not registered yet, by tunnel:
    /// (certificate, worker) for each.
    placing: Mutex<HashMap<TunnelId, Vec<(u64, usize)>>>,
    /// Connections that left lately before applying what the edge had for them, oldest first,
    /// with when they left.
    departed: Mutex<VecDeque<(std::time::Instant, Departure)>>,
    /// The passive health of weighted routes, from the answers through these sessions.
    pub(crate) routes: super::health::RouteHealth,
}

/// How long a departed connection is remembered (for `/v1/rollout` to name it).
const DEPARTED_FOR: std::time::Duration = std::time::Duration::from_secs(600);

/// How many departed connections are remembered at most.
const DEPARTED_MAX: usize = 256;

/// Where a request's connection was found.
#[derive(Debug)]
pub(crate) struct Picked {
    /// The session.
    pub(crate) session: Arc<Session>,
    /// It lives on another worker than the one serving the request: the request is handed
    /// over to that worker's thread.
    pub(crate) handed_off: bool,
}

/// A connection of a tunnel placed on a worker, counted there until dropped (by then its
/// session is registered, or it failed).
#[derive(Debug)]
pub(crate) struct Placement {
    registry: Arc<Registry>,
    tunnel: TunnelId,
    certificate: u64,
    /// The worker the connection goes to.
    pub(crate) worker: usize,
}

impl Drop for Placement {
    fn drop(&mut self) {
        let mut placing = self
            .registry
            .placing
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(pending) = placing.get_mut(&self.tunnel) {
            if let Some(at) = pending
                .iter()
                .position(|p| *p == (self.certificate, self.worker))
            {
                pending.swap_remove(at);
            }
            if pending.is_empty() {
                placing.remove(&self.tunnel);
            }
        }
    }
}

/// A key for a connector's client certificate (its DER), which every connection of one
/// connector process presents; [`Registry::place`] spreads the connections under one key
/// over the workers.
pub(crate) fn certificate_key(der: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    der.hash(&mut hasher);
    hasher.finish()
}

impl Registry {
    /// The worker (of `workers`) a new connection of `tunnel`, presenting the certificate
    /// `certificate` (a [`certificate_key`]), should live on: the one with the fewest of that
    /// connector's connections, then the fewest of the tunnel's, counting those being placed;
    /// remaining ties go to `preferred` (the worker that accepted it), then to the lowest
    /// index. So each connector's connections land on different workers, and when it has as
    /// many as there are workers, every worker can serve its requests without a hand-off.
    /// `None` when the tunnel already holds `max` connections (registered or being placed).
    pub(crate) fn place(
        self: &Arc<Self>,
        tunnel: TunnelId,
        certificate: u64,
        workers: usize,
        preferred: Option<usize>,
        max: u32,
    ) -> Option<Placement> {
        let workers = workers.max(1);
        // (the connector's, the tunnel's) per worker
        let mut counts = vec![(0usize, 0usize); workers];
        let mut total = 0usize;
        let mut count = |cert: u64, worker: Option<usize>| {
            total += 1;
            if let Some(slot) = worker.and_then(|w| counts.get_mut(w)) {
                slot.0 += usize::from(cert == certificate);
                slot.1 += 1;
            }
        };
        // The placing lock first, and held while the sessions are counted: a session that
        // registers meanwhile is then counted at least once, so the cap is never passed.
        let mut placing = self.placing.lock().unwrap_or_else(|p| p.into_inner());
        {
            let map = self.sessions.read().unwrap_or_else(|p| p.into_inner());
            for session in map.get(&tunnel).into_iter().flatten() {
                count(session.certificate, session.worker);
            }
        }
        let pending = placing.entry(tunnel).or_default();
        for (cert, worker) in pending.iter() {
            count(*cert, Some(*worker));
        }
        if total >= max as usize {
            if pending.is_empty() {
                placing.remove(&tunnel);
            }
            return None;
        }
        let least = counts.iter().copied().min().unwrap_or((0, 0));
        let worker = preferred
            .filter(|p| counts.get(*p) == Some(&least))
            .or_else(|| counts.iter().position(|c| *c == least))
            .unwrap_or(0);
        pending.push((certificate, worker));
        Some(Placement {
            registry: self.clone(),
            tunnel,
            certificate,
            worker,
        })
    }

    /// Registers a session: from now on the proxy may route to it.
    pub(crate) fn add(&self, session: Arc<Session>) {
        let mut map = self.sessions.write().unwrap_or_else(|p| p.into_inner());
        map.entry(session.tunnel).or_default().push(session);
    }

    /// Forgets a session.
    pub(crate) fn remove(&self, tunnel: TunnelId, session_id: &str) {
        let mut map = self.sessions.write().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = map.get_mut(&tunnel) {
            list.retain(|s| s.id != session_id);
            if list.is_empty() {
                map.remove(&tunnel);
            }
        }
    }

    /// Forgets a session that ended by itself (the connector went away or stopped answering),
    /// remembering it for a while when it had not applied catalog revision `catalog_revision`
    /// (the one the edge had when it left). A draining session left on purpose and is not
    /// remembered.
    pub(crate) fn leave(&self, session: &Session, catalog_revision: u64) {
        self.remove(session.tunnel, &session.id);
        let current_through = session.current_through();
        if session.is_draining() || current_through >= catalog_revision {
            return;
        }
        let now = std::time::Instant::now();
        let mut departed = self.departed.lock().unwrap_or_else(|p| p.into_inner());
        Self::prune(&mut departed, now);
        if departed.len() >= DEPARTED_MAX {
            departed.pop_front();
        }
        departed.push_back((
            now,
            Departure {
                tunnel_id: session.tunnel,
                connection: session.connection(),
                current_through,
                left_at: catalog_revision,
            },
        ));
    }

    /// The connections remembered by [`Registry::leave`], oldest first.
    pub(crate) fn departed(&self) -> Vec<Departure> {
        let mut departed = self.departed.lock().unwrap_or_else(|p| p.into_inner());
        Self::prune(&mut departed, std::time::Instant::now());
        departed.iter().map(|(_, d)| d.clone()).collect()
    }

    fn prune(departed: &mut VecDeque<(std::time::Instant, Departure)>, now: std::time::Instant) {
        while departed
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > DEPARTED_FOR)
        {
            departed.pop_front();
        }
    }

    /// The live sessions of `tunnel`.
    pub(crate) fn sessions(&self, tunnel: TunnelId) -> Vec<Arc<Session>> {
        let map = self.sessions.read().unwrap_or_else(|p| p.into_inner());
        map.get(&tunnel).cloned().unwrap_or_default()
    }

    /// The live connections of `tunnel`, as the API shows them.
    pub(crate) fn connections(&self, tunnel: TunnelId) -> Vec<Connection> {
        self.sessions(tunnel)
            .iter()
            .map(|s| s.connection())
            .collect()
    }

    /// How many connections `tunnel` has.
    pub(crate) fn count(&self, tunnel: TunnelId) -> u32 {
        let map = self.sessions.read().unwrap_or_else(|p| p.into_inner());
        map.get(&tunnel).map_or(0, |l| l.len() as u32)
    }

    /// Every live session, by tunnel.
    pub(crate) fn all(&self) -> Vec<(TunnelId, Vec<Arc<Session>>)> {
        let map = self.sessions.read().unwrap_or_else(|p| p.into_inner());
        map.iter().map(|(id, l)| (*id, l.clone())).collect()
    }

    /// Connection counts of every connected tunnel.
    pub(crate) fn counts(&self) -> Vec<(TunnelId, u32)> {
        let map = self.sessions.read().unwrap_or_else(|p| p.into_inner());
        map.iter().map(|(id, l)| (*id, l.len() as u32)).collect()
    }

    /// The healthy session with the fewest outstanding streams among `tunnels`' sessions,
    /// skipping `exclude` (ties broken at random, so idle connectors share the traffic) —
    /// or, when the chosen session's connector has another one on the calling worker that is
    /// no busier, that one, so the request needs no hand-off. Connectors are chosen as if
    /// there were no workers; only the connection within a connector follows the worker.
    /// Only sessions whose connector finds `service`'s origin healthy count.
    pub(crate) fn pick_for(
        &self,
        tunnels: &[TunnelId],
        exclude: &[String],
        service: &str,
    ) -> Option<Picked> {
        self.pick_on(tunnels, exclude, Some(service), postern_workers::current())
    }

    /// [`Registry::pick_for`] without an origin to be healthy (a TCP service's connection).
    pub(crate) fn pick(&self, tunnels: &[TunnelId], exclude: &[String]) -> Option<Picked> {
        self.pick_on(tunnels, exclude, None, postern_workers::current())
    }

    /// [`Registry::pick_for`] for a request served by `worker` (`service`: `None` counts every
    /// session).
    fn pick_on(
        &self,
        tunnels: &[TunnelId],
        exclude: &[String],
        service: Option<&str>,
        worker: Option<usize>,
    ) -> Option<Picked> {
        let map = self.sessions.read().unwrap_or_else(|p| p.into_inner());
        // Two passes, no allocation (it runs for every request). Counts change under us, so
        // each is read once per pass; ties are broken by reservoir sampling (the k-th tie
        // replaces the choice with probability 1/k), which picks uniformly among them.
        let candidates = || {
            tunnels
                .iter()
                .filter_map(|t| map.get(t))
                .flatten()
                .filter(|s| {
                    s.is_healthy()
                        && !exclude.contains(&s.id)
                        && service.is_none_or(|service| s.serves_origin(service))
                })
        };
        let mut rng = rand::rng();
        let mut any = Least::default();
        for session in candidates() {
            any.offer(session, session.outstanding(), &mut rng);
        }
        let chosen = any.chosen?;
        if worker.is_none() || chosen.worker == worker {
            return Some(Picked {
                session: chosen.clone(),
                handed_off: false,
            });
        }
        let mut own = Least::default();
        for session in candidates() {
            if session.worker == worker && session.connector == chosen.connector {
                own.offer(session, session.outstanding(), &mut rng);
            }
        }
        match own.chosen {
            Some(session) if own.least <= any.least => Some(Picked {
                session: session.clone(),
                handed_off: false,
            }),
            _ => Some(Picked {
                session: chosen.clone(),
                handed_off: true,
            }),
        }
    }
}

/// The least busy session seen so far, with ties broken uniformly at random.
struct Least<'a> {
    chosen: Option<&'a Arc<Session>>,
    least: usize,
    ties: u32,
}

impl Default for Least<'_> {
    fn default() -> Self {
        Self {
            chosen: None,
            least: usize::MAX,
            ties: 0,
        }
    }
}

impl<'a> Least<'a> {
    fn offer(&mut self, session: &'a Arc<Session>, outstanding: usize, rng: &mut impl RngExt) {
        if outstanding < self.least {
            self.least = outstanding;
            self.ties = 1;
            self.chosen = Some(session);
        } else if outstanding == self.least {
            self.ties += 1;
            if rng.random_range(0..self.ties) == 0 {
                self.chosen = Some(session);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_connectors_connections_are_spread_over_the_workers() {
        let registry = Arc::new(Registry::default());
        let tunnel = TunnelId::new_random();
        let (one, two) = (certificate_key(b"one"), certificate_key(b"two"));
        let place = |tunnel, certificate, preferred| {
            registry
                .place(tunnel, certificate, 2, preferred, 32)
                .expect("room")
        };
        let first = place(tunnel, one, Some(1));
        assert_eq!(first.worker, 1, "the accepting worker wins a tie");
        let other = place(tunnel, two, Some(1));
        assert_eq!(other.worker, 0, "the tunnel's emptier worker comes next");
        let second = place(tunnel, one, Some(1));
        assert_eq!(
            second.worker, 0,
            "a connector's second connection goes where it has none, whatever the tunnel has"
        );
        let third = place(tunnel, two, None);
        assert_eq!(third.worker, 1, "and so does the other connector's");
        drop(second);
        let again = place(tunnel, one, Some(1));
        assert_eq!(again.worker, 0, "a placement that ended frees its worker");
        let apart = place(TunnelId::new_random(), one, Some(1));
        assert_eq!(apart.worker, 1, "other tunnels are counted apart");
        drop((first, other, third, again, apart));
        assert!(registry.placing.lock().expect("lock").is_empty());
    }

    #[test]
    fn a_tunnel_holds_at_most_its_cap_of_connections() {
        let registry = Arc::new(Registry::default());
        let tunnel = TunnelId::new_random();
        let held: Vec<Placement> = (0..3)
            .map(|_| {
                registry
                    .place(tunnel, 7, 2, None, 3)
                    .expect("within the cap")
            })
            .collect();
        assert!(registry.place(tunnel, 7, 2, None, 3).is_none());
        assert!(
            registry
                .place(TunnelId::new_random(), 7, 2, None, 3)
                .is_some(),
            "other tunnels have caps of their own"
        );
        drop(held);
        assert!(registry.place(tunnel, 7, 2, None, 3).is_some());
    }
}
