//! Which connectors are connected right now, per tunnel: one [`Session`] per live tunnel
//! connection, the handle the proxy opens visitor streams on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper::{Request, Response};
use postern_schema::api::Connection;
use postern_schema::ids::TunnelId;
use postern_schema::wire::HostnameConfig;
use rand::RngExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Any error a body may carry.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every stream the edge opens on a tunnel.
pub type TunnelBody = UnsyncBoxBody<Bytes, BoxError>;

/// One live, registered tunnel connection.
pub struct Session {
    /// The edge's id for the connection.
    pub id: String,
    /// The tunnel its certificate is bound to.
    pub tunnel: TunnelId,
    sender: SendRequest<TunnelBody>,
    info: Mutex<Connection>,
    outstanding: AtomicUsize,
    draining: AtomicBool,
    pushed_version: AtomicU64,
    seen_revision: watch::Sender<u64>,
    applied: Mutex<Vec<HostnameConfig>>,
    close: CancellationToken,
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
pub struct SendFailure {
    /// The request, when it never left the edge (safe to send elsewhere).
    pub request: Option<Request<TunnelBody>>,
    /// What hyper said.
    pub error: hyper::Error,
}

/// Counts one outstanding stream on a session until dropped.
#[derive(Debug)]
pub struct StreamGuard {
    session: Arc<Session>,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.session.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Session {
    /// A session over `sender`, described by `info`; `close` ends the connection.
    pub fn new(
        tunnel: TunnelId,
        sender: SendRequest<TunnelBody>,
        info: Connection,
        close: CancellationToken,
    ) -> Self {
        Self {
            id: info.id.clone(),
            tunnel,
            sender,
            pushed_version: AtomicU64::new(info.config_version),
            seen_revision: watch::channel(0).0,
            applied: Mutex::new(Vec::new()),
            info: Mutex::new(info),
            outstanding: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            close,
        }
    }

    /// Can new visitor streams go here?
    pub fn is_healthy(&self) -> bool {
        !self.is_draining() && !self.sender.is_closed() && !self.close.is_cancelled()
    }

    /// Has the connector (or the edge) asked to stop routing here?
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Stops routing new streams here.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
        self.with_info(|info| info.draining = true);
    }

    /// Visitor streams in flight.
    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// The last config version pushed (or being pushed) to the connector.
    pub fn pushed_version(&self) -> u64 {
        self.pushed_version.load(Ordering::Relaxed)
    }

    /// Records a push about to be sent.
    pub fn set_pushed_version(&self, version: u64) {
        self.pushed_version.store(version, Ordering::Relaxed);
    }

    /// Records that the session has pushed whatever catalog revision `revision` changed for it.
    pub fn set_seen_revision(&self, revision: u64) {
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
    pub async fn catch_up(&self, revision: u64, timeout: std::time::Duration) {
        if *self.seen_revision.borrow() >= revision {
            return;
        }
        let mut seen = self.seen_revision.subscribe();
        let _ = tokio::time::timeout(timeout, seen.wait_for(|seen| *seen >= revision)).await;
    }

    /// Records the version the connector acknowledged.
    pub fn set_acked_version(&self, version: u64) {
        self.with_info(|info| info.config_version = version);
    }

    /// Records the hostnames the connector acknowledged serving (a push it applied).
    pub fn set_applied(&self, hostnames: Vec<HostnameConfig>) {
        *self.applied.lock().unwrap_or_else(|p| p.into_inner()) = hostnames;
    }

    /// Runs `look` on the hostnames the connector last acknowledged serving.
    pub fn with_applied<R>(&self, look: impl FnOnce(&[HostnameConfig]) -> R) -> R {
        look(
            self.applied
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_slice(),
        )
    }

    /// The API's view of the connection.
    pub fn connection(&self) -> Connection {
        self.info.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Ends the connection.
    pub fn close(&self) {
        self.close.cancel();
    }

    /// Counts a stream as outstanding until the guard is dropped.
    pub fn begin_stream(self: &Arc<Self>) -> StreamGuard {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        StreamGuard {
            session: self.clone(),
        }
    }

    /// Opens a stream for `request` and waits for the response head.
    pub async fn send(
        &self,
        request: Request<TunnelBody>,
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
    pub fn sender(&self) -> SendRequest<TunnelBody> {
        self.sender.clone()
    }

    fn with_info(&self, change: impl FnOnce(&mut Connection)) {
        let mut info = self.info.lock().unwrap_or_else(|p| p.into_inner());
        change(&mut info);
    }
}

/// Live sessions, by tunnel.
#[derive(Debug, Default)]
pub struct Registry {
    sessions: RwLock<HashMap<TunnelId, Vec<Arc<Session>>>>,
}

impl Registry {
    /// Registers a session: from now on the proxy may route to it.
    pub fn add(&self, session: Arc<Session>) {
        let mut map = self.sessions.write().unwrap_or_else(|p| p.into_inner());
        map.entry(session.tunnel).or_default().push(session);
    }

    /// Forgets a session.
    pub fn remove(&self, tunnel: TunnelId, session_id: &str) {
        let mut map = self.sessions.write().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = map.get_mut(&tunnel) {
            list.retain(|s| s.id != session_id);
            if list.is_empty() {
                map.remove(&tunnel);
            }
        }
    }

    /// The live sessions of `tunnel`.
    pub fn sessions(&self, tunnel: TunnelId) -> Vec<Arc<Session>> {
        let map = self.sessions.read().unwrap_or_else(|p| p.into_inner());
        map.get(&tunnel).cloned().unwrap_or_default()
    }

    /// The live connections of `tunnel`, as the API shows them.
    pub fn connections(&self, tunnel: TunnelId) -> Vec<Connection> {
        self.sessions(tunnel)
            .iter()
            .map(|s| s.connection())
            .collect()
    }

    /// How many connections `tunnel` has.
    pub fn count(&self, tunnel: TunnelId) -> u32 {
        let map = self.sessions.read().unwrap_or_else(|p| p.into_inner());
        map.get(&tunnel).map_or(0, |l| l.len() as u32)
    }

    /// Every live session, by tunnel.
    pub fn all(&self) -> Vec<(TunnelId, Vec<Arc<Session>>)> {
        let map = self.sessions.read().unwrap_or_else(|p| p.into_inner());
        map.iter().map(|(id, l)| (*id, l.clone())).collect()
    }

    /// Connection counts of every connected tunnel.
    pub fn counts(&self) -> Vec<(TunnelId, u32)> {
        let map = self.sessions.read().unwrap_or_else(|p| p.into_inner());
        map.iter().map(|(id, l)| (*id, l.len() as u32)).collect()
    }

    /// The healthy session with the fewest outstanding streams among `tunnels`' sessions
    /// (ties broken at random, so idle connectors share the traffic), skipping `exclude`.
    pub fn pick(&self, tunnels: &[TunnelId], exclude: &[String]) -> Option<Arc<Session>> {
        let map = self.sessions.read().unwrap_or_else(|p| p.into_inner());
        // One pass, no allocation (it runs for every request): each count is read once, as
        // they change under us, and ties are broken by reservoir sampling (the k-th tie
        // replaces the choice with probability 1/k), which picks uniformly among them.
        let mut rng = rand::rng();
        let mut chosen: Option<&Arc<Session>> = None;
        let mut least = usize::MAX;
        let mut ties = 0u32;
        let candidates = tunnels
            .iter()
            .filter_map(|t| map.get(t))
            .flatten()
            .filter(|s| s.is_healthy() && !exclude.contains(&s.id));
        for session in candidates {
            let outstanding = session.outstanding();
            if outstanding < least {
                least = outstanding;
                ties = 1;
                chosen = Some(session);
            } else if outstanding == least {
                ties += 1;
                if rng.random_range(0..ties) == 0 {
                    chosen = Some(session);
                }
            }
        }
        chosen.map(Arc::clone)
    }
}
