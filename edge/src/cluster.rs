//! Several edge nodes on one shared store, seen from one of them: which nodes are alive and
//! what they advertise ([`membership`], from heartbeat-renewed leases in the store), which of
//! them hold connections for which tunnel, and the outgoing mTLS links over which a request is
//! forwarded to a node that holds a connection for its tunnel ([`links`]). The receiving side
//! of a link is the proxy's. `docs/guides/cluster.md` tells the whole design.
//!
//! With the embedded store the edge is one node: [`Cluster::standalone`] answers with the
//! node's own settings, holds no view, and runs nothing.

mod links;
mod membership;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::Request;
use hyper::Response;
use hyper::body::Incoming;
use postern_schema::ids::TunnelId;
use rand::seq::SliceRandom;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::body::BoxBody;
use crate::ca::EdgeCa;
use crate::catalog::Catalog;
use crate::store::ClusterBackend;
use crate::store::cluster::{ConnectionRecord, Departure, NodeAdvert};
use crate::tunnel::Registry;
use links::PeerLinks;
use membership::{Heartbeat, LEASE, View};

pub(crate) use links::{
    ClusterError, KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT, PeerError, SendFailure,
};
pub(crate) use membership::Member;

/// What this node advertises.
#[derive(Debug, Clone)]
pub(crate) struct NodeSettings {
    /// `--public-address` values.
    pub(crate) public_addresses: Vec<String>,
    /// `--advertise-tunnel` values, or the bound tunnel address.
    pub(crate) tunnel_addresses: Vec<String>,
    /// Where other nodes reach this node's tunnel listener.
    pub(crate) peer_address: String,
}

/// This node's place among the edge nodes; cheap to clone.
#[derive(Clone)]
pub(crate) struct Cluster {
    own: Arc<NodeAdvert>,
    joined: Option<Arc<Joined>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node_id", &self.node_id())
            .finish()
    }
}

/// A node on a shared store.
struct Joined {
    view: watch::Receiver<Arc<View>>,
    links: PeerLinks,
    server_tls: Arc<rustls::ServerConfig>,
    /// Nodes a dial just failed to reach, until when to leave them out.
    suspects: Mutex<HashMap<String, Instant>>,
}

impl Cluster {
    /// The only node (embedded store): its own addresses, nothing to forward to.
    pub(crate) fn standalone(settings: NodeSettings) -> Self {
        Self {
            own: Arc::new(advert(String::new(), settings)),
            joined: None,
        }
    }

    /// Joins the nodes on `backend`'s store: issues this node's certificate from the shared CA,
    /// takes a lease (once, before returning, so the node knows the others when it reports
    /// ready), and spawns into `tasks` the heartbeat and the follower of the cluster feed, both
    /// running until `cancel` (the heartbeat then gives the lease up).
    pub(crate) async fn join(
        backend: ClusterBackend,
        settings: NodeSettings,
        ca: &Arc<EdgeCa>,
        registry: Arc<Registry>,
        catalog: Catalog,
        cancel: &CancellationToken,
        tasks: &mut JoinSet<()>,
    ) -> Result<Self, ClusterError> {
        let own = advert(uuid::Uuid::new_v4().to_string(), settings);
        let identity = Arc::new(links::NodeIdentity::new(ca.clone(), own.node_id.clone())?);
        let server_tls = links::server_config(&identity, ca)?;
        let links = PeerLinks::new(links::client_config(&identity, ca)?);
        let (view_tx, view) = watch::channel(Arc::new(View::alone(&own)));
        let others_changed = Arc::new(Notify::new());
        let mut heartbeat = Heartbeat {
            store: backend.leases,
            own: own.clone(),
            registry,
            catalog,
            view: view_tx,
            others_changed: others_changed.clone(),
        };
        heartbeat.first().await;
        tracing::info!(node_id = %own.node_id, peer_address = %own.peer_address, "joined the edge cluster");
        tasks.spawn(heartbeat.run(cancel.clone()));
        tasks.spawn(
            backend
                .changes
                .run(move || others_changed.notify_one(), cancel.clone()),
        );
        Ok(Self {
            own: Arc::new(own),
            joined: Some(Arc::new(Joined {
                view,
                links,
                server_tls,
                suspects: Mutex::new(HashMap::new()),
            })),
        })
    }

    /// This node's id; `None` when it is the only node.
    pub(crate) fn node_id(&self) -> Option<&str> {
        self.joined.as_ref().map(|_| self.own.node_id.as_str())
    }

    /// What DNS answers for hostnames. Alone: this node's `--public-address` values as given;
    /// in a cluster every live node's, sorted.
    pub(crate) fn public_addresses(&self) -> Vec<String> {
        match &self.joined {
            None => self.own.public_addresses.clone(),
            Some(joined) => joined
                .view
                .borrow()
                .public_addresses(&self.own, Instant::now()),
        }
    }

    /// The tunnel addresses tokens list. Alone: this node's; in a cluster every live node's,
    /// sorted, so a token taken from any node names every node.
    pub(crate) fn tunnel_addresses(&self) -> Vec<String> {
        match &self.joined {
            None => self.own.tunnel_addresses.clone(),
            Some(joined) => joined
                .view
                .borrow()
                .tunnel_addresses(&self.own, Instant::now()),
        }
    }

    /// Healthy connections `tunnel` has on the other live nodes.
    pub(crate) fn remote_connections(&self, tunnel: TunnelId) -> u32 {
        match &self.joined {
            None => 0,
            Some(joined) => {
                joined
                    .view
                    .borrow()
                    .remote_connections(tunnel, &self.own.node_id, Instant::now())
            }
        }
    }

    /// The connections the other live nodes hold, as they last advertised them, each naming
    /// its node.
    pub(crate) fn remote_records(&self) -> Vec<ConnectionRecord> {
        self.others(|advert| {
            let mut records = advert.connections.clone();
            for record in &mut records {
                record.connection.edge.clone_from(&advert.peer_address);
            }
            records
        })
    }

    /// Where other nodes reach this one: what its connections name as their `edge`.
    pub(crate) fn peer_address(&self) -> &str {
        &self.own.peer_address
    }

    /// The connections that left the other live nodes lately before applying what those
    /// nodes had for them.
    pub(crate) fn remote_departed(&self) -> Vec<Departure> {
        self.others(|advert| advert.departed.clone())
    }

    /// How many edge nodes are live, this one included.
    pub(crate) fn nodes(&self) -> usize {
        match &self.joined {
            None => 1,
            Some(joined) => {
                let now = Instant::now();
                let view = joined.view.borrow();
                let others = view
                    .live(now)
                    .filter(|m| m.advert.node_id != self.own.node_id)
                    .count();
                others + 1
            }
        }
    }

    /// `take` of every live node's advert but this one's, concatenated.
    fn others<T>(&self, take: impl Fn(&NodeAdvert) -> Vec<T>) -> Vec<T> {
        let Some(joined) = &self.joined else {
            return Vec::new();
        };
        let now = Instant::now();
        let view = joined.view.borrow();
        view.live(now)
            .filter(|m| m.advert.node_id != self.own.node_id)
            .flat_map(|m| take(&m.advert))
            .collect()
    }

    /// The other live nodes holding a healthy connection for one of `tunnels`, in random order,
    /// leaving out nodes a dial just failed to reach.
    pub(crate) fn holders(&self, tunnels: &[TunnelId]) -> Vec<Member> {
        let Some(joined) = &self.joined else {
            return Vec::new();
        };
        let now = Instant::now();
        let mut holders = joined
            .view
            .borrow()
            .holders(tunnels, &self.own.node_id, now);
        {
            let mut suspects = joined.suspects.lock().unwrap_or_else(|p| p.into_inner());
            suspects.retain(|_, until| *until > now);
            holders.retain(|m| !suspects.contains_key(&m.advert.node_id));
        }
        holders.shuffle(&mut rand::rng());
        holders
    }

    /// The TLS configuration of `postern-peer/1` on the tunnel listener; `None` when alone
    /// (the listener then refuses that ALPN like any unknown one).
    pub(crate) fn peer_server_config(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.joined.as_ref().map(|j| j.server_tls.clone())
    }

    /// Sends a visitor request (already past this node's policies, in tunnel form) to `member`.
    /// A node that cannot be reached is left out of [`Cluster::holders`] for one lease.
    pub(crate) async fn forward(
        &self,
        member: &Member,
        request: Request<BoxBody>,
    ) -> Result<Response<Incoming>, SendFailure> {
        let Some(joined) = &self.joined else {
            return Err(SendFailure::alone(request));
        };
        let result = joined
            .links
            .send(&member.advert.node_id, &member.advert.peer_address, request)
            .await;
        if let Err(failure) = &result
            && failure.error.is_unreachable()
        {
            self.suspect(&member.advert.node_id, LEASE);
        }
        result
    }

    /// Leaves `node_id` out of [`Cluster::holders`] for `period`.
    pub(crate) fn suspect(&self, node_id: &str, period: Duration) {
        if let Some(joined) = &self.joined {
            tracing::info!(
                node_id,
                "an edge node cannot be reached; not forwarding to it for now"
            );
            joined
                .suspects
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(node_id.to_string(), Instant::now() + period);
        }
    }
}

fn advert(node_id: String, settings: NodeSettings) -> NodeAdvert {
    NodeAdvert {
        node_id,
        peer_address: settings.peer_address,
        public_addresses: settings.public_addresses,
        tunnel_addresses: settings.tunnel_addresses,
        holdings: Vec::new(),
        connections: Vec::new(),
        departed: Vec::new(),
    }
}
