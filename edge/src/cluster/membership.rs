//! Membership: this node's view of the live edge nodes, kept from the leases in the shared
//! store. The node renews its own lease every [`HEARTBEAT`] (at once when its connections
//! change: one opens or closes, or its connector acknowledges a configuration) and reads everyone's with it; a lease lasts [`LEASE`], so a node that died (SIGKILL,
//! power loss, partition from the store) drops out of every other node's view within
//! [`LEASE`] of its last renewal, without anyone having to notice the death itself.
//!
//! While the store cannot be reached, nobody can renew: the view is then frozen as last read
//! (leases are not expired by the local clock) rather than emptied, so forwarding and DNS keep
//! working through a store outage; a node that died meanwhile is caught by the failed dial
//! instead ([`super::Cluster::suspect`]). After an outage, nodes missing from the first read
//! are kept for one more lease, since they may simply not have renewed yet.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use postern_schema::ids::TunnelId;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use postern_schema::error_chain;

use crate::catalog::Catalog;
use crate::store::cluster::{ClusterStore, ConnectionRecord, Holding, NodeAdvert, NodeLease};
use crate::tunnel::Registry;

/// How often a node renews its lease.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(1);

/// How long a lease lasts without renewal: a dead node's entries expire this long after its
/// last heartbeat at the latest.
pub(crate) const LEASE: Duration = Duration::from_secs(3);

/// How often the node looks at its own connections for a change worth announcing at once.
const HOLDINGS_POLL: Duration = Duration::from_millis(100);

/// A live node, as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    /// Its advert.
    pub(crate) advert: NodeAdvert,
    /// When its lease runs out, by the local clock.
    pub(crate) deadline: Instant,
}

impl Member {
    /// Healthy connections this member holds for `tunnel`.
    pub(crate) fn connections(&self, tunnel: TunnelId) -> u32 {
        self.advert
            .holdings
            .iter()
            .filter(|h| h.tunnel_id == tunnel)
            .map(|h| h.connections)
            .sum()
    }
}

/// The live nodes at one moment.
#[derive(Debug, Clone)]
pub(crate) struct View {
    /// Every node whose lease was live when last read, this one included, by node id.
    pub(crate) members: BTreeMap<String, Member>,
    /// Whether the last heartbeat reached the store. When it did not, leases are not expired
    /// by the local clock: nobody could have renewed them.
    pub(crate) store_reachable: bool,
}

impl View {
    /// A view holding only this node.
    pub(crate) fn alone(own: &NodeAdvert) -> Self {
        let mut members = BTreeMap::new();
        members.insert(
            own.node_id.clone(),
            Member {
                advert: own.clone(),
                deadline: Instant::now() + LEASE,
            },
        );
        Self {
            members,
            store_reachable: true,
        }
    }

    /// The view the store answered with at `now`. `previous` is kept in part after an outage:
    /// members it has that the store does not are kept until one lease from now.
    pub(crate) fn from_leases(
        leases: Vec<NodeLease>,
        now: Instant,
        previous: Option<&View>,
    ) -> Self {
        let mut members: BTreeMap<String, Member> = leases
            .into_iter()
            .map(|lease| {
                (
                    lease.advert.node_id.clone(),
                    Member {
                        advert: lease.advert,
                        deadline: now + lease.remaining,
                    },
                )
            })
            .collect();
        if let Some(previous) = previous.filter(|p| !p.store_reachable) {
            for (id, member) in &previous.members {
                members.entry(id.clone()).or_insert_with(|| Member {
                    advert: member.advert.clone(),
                    deadline: now + LEASE,
                });
            }
        }
        Self {
            members,
            store_reachable: true,
        }
    }

    /// The members whose lease is live at `now` (all of them while the store is unreachable).
    pub(crate) fn live(&self, now: Instant) -> impl Iterator<Item = &Member> {
        let expire = self.store_reachable;
        self.members
            .values()
            .filter(move |m| !expire || m.deadline > now)
    }

    /// Every live node's public addresses, and `own`'s, sorted and without repeats: what DNS
    /// answers, the same on every node.
    pub(crate) fn public_addresses(&self, own: &NodeAdvert, now: Instant) -> Vec<String> {
        self.union(own, now, |a| &a.public_addresses)
    }

    /// Every live node's tunnel addresses, and `own`'s, sorted and without repeats: what
    /// tokens list, the same on every node.
    pub(crate) fn tunnel_addresses(&self, own: &NodeAdvert, now: Instant) -> Vec<String> {
        self.union(own, now, |a| &a.tunnel_addresses)
    }

    fn union(
        &self,
        own: &NodeAdvert,
        now: Instant,
        field: impl Fn(&NodeAdvert) -> &Vec<String>,
    ) -> Vec<String> {
        let mut all: BTreeSet<String> = field(own).iter().cloned().collect();
        for member in self.live(now) {
            all.extend(field(&member.advert).iter().cloned());
        }
        all.into_iter().collect()
    }

    /// The live nodes other than `own_id` that hold a healthy connection for one of `tunnels`.
    pub(crate) fn holders(&self, tunnels: &[TunnelId], own_id: &str, now: Instant) -> Vec<Member> {
        self.live(now)
            .filter(|m| m.advert.node_id != own_id)
            .filter(|m| {
                m.advert
                    .holdings
                    .iter()
                    .any(|h| h.connections > 0 && tunnels.contains(&h.tunnel_id))
            })
            .cloned()
            .collect()
    }

    /// Healthy connections of `tunnel` on live nodes other than `own_id`.
    pub(crate) fn remote_connections(&self, tunnel: TunnelId, own_id: &str, now: Instant) -> u32 {
        self.live(now)
            .filter(|m| m.advert.node_id != own_id)
            .map(|m| m.connections(tunnel))
            .sum()
    }
}

/// The tunnels this node holds healthy connections for, sorted by tunnel id.
pub(crate) fn holdings_of(registry: &Registry) -> Vec<Holding> {
    let mut holdings: Vec<Holding> = registry
        .counts()
        .into_iter()
        .filter_map(|(tunnel_id, _)| {
            let healthy = registry
                .sessions(tunnel_id)
                .iter()
                .filter(|s| s.is_healthy())
                .count();
            let connections = u32::try_from(healthy).unwrap_or(u32::MAX);
            (connections > 0).then_some(Holding {
                tunnel_id,
                connections,
            })
        })
        .collect();
    holdings.sort_by_key(|h| h.tunnel_id);
    holdings
}

/// Every connection this node holds, with how far its connector is, ordered by tunnel, then
/// connection id.
pub(crate) fn connections_of(registry: &Registry) -> Vec<ConnectionRecord> {
    let mut records: Vec<ConnectionRecord> = registry
        .all()
        .into_iter()
        .flat_map(|(tunnel_id, sessions)| {
            sessions.into_iter().map(move |session| ConnectionRecord {
                tunnel_id,
                connection: session.connection(),
                healthy: session.is_healthy(),
                current_through: session.current_through(),
            })
        })
        .collect();
    records.sort_by(|a, b| (a.tunnel_id, &a.connection.id).cmp(&(b.tunnel_id, &b.connection.id)));
    records
}

/// What the heartbeat loop needs.
pub(super) struct Heartbeat {
    pub(super) store: Arc<dyn ClusterStore>,
    pub(super) own: NodeAdvert,
    pub(super) registry: Arc<Registry>,
    pub(super) catalog: Catalog,
    pub(super) view: watch::Sender<Arc<View>>,
    /// Woken by the store's cluster feed: another node's advert changed.
    pub(super) others_changed: Arc<Notify>,
}

impl Heartbeat {
    /// Takes the lease for the first time, so that the node is a member (and knows the others)
    /// before it says it is ready. A failure is logged; the loop keeps trying.
    pub(super) async fn first(&mut self) {
        self.own.holdings = holdings_of(&self.registry);
        self.own.connections = connections_of(&self.registry);
        self.own.departed = self.registry.departed();
        self.renew(true).await;
    }

    /// Renews the lease every [`HEARTBEAT`], at once when this node's holdings change, and
    /// re-reads the others' whenever the cluster feed says so; gives the lease up at `cancel`.
    pub(super) async fn run(mut self, cancel: CancellationToken) {
        let mut last_renewal = Instant::now();
        let mut poll = tokio::time::interval(HOLDINGS_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.others_changed.notified() => {
                    self.reread().await;
                    continue;
                }
                _ = poll.tick() => {}
            }
            let holdings = holdings_of(&self.registry);
            let connections = connections_of(&self.registry);
            let departed = self.registry.departed();
            let changed = holdings != self.own.holdings
                || connections != self.own.connections
                || departed != self.own.departed;
            if changed || last_renewal.elapsed() >= HEARTBEAT {
                self.own.holdings = holdings;
                self.own.connections = connections;
                self.own.departed = departed;
                self.renew(changed).await;
                last_renewal = Instant::now();
            }
        }
        match self.store.leave(&self.own.node_id).await {
            Ok(()) => tracing::info!(node_id = %self.own.node_id, "left the cluster"),
            Err(error) => {
                tracing::warn!(error = %error_chain(&error), "cannot give up this node's lease; it expires by itself")
            }
        }
    }

    /// Renews this node's lease and takes the view the store answers with.
    async fn renew(&mut self, announce: bool) {
        let result = self.store.heartbeat(&self.own, LEASE, announce).await;
        self.take(
            result,
            "cannot renew this node's lease; keeping the last view of the cluster",
        );
    }

    /// Reads the leases without renewing.
    async fn reread(&mut self) {
        let result = self.store.members().await;
        self.take(
            result,
            "cannot read the cluster's leases; keeping the last view",
        );
    }

    fn take(
        &mut self,
        result: Result<Vec<NodeLease>, crate::store::StoreError>,
        failure: &'static str,
    ) {
        let now = Instant::now();
        let previous = self.view.borrow().clone();
        let next = match result {
            Ok(leases) => {
                if !previous.store_reachable {
                    tracing::info!("the store is reachable again; cluster view refreshed");
                }
                View::from_leases(leases, now, Some(&previous))
            }
            Err(error) => {
                if previous.store_reachable {
                    tracing::warn!(error = %error_chain(&error), "{failure}");
                }
                View {
                    store_reachable: false,
                    ..(*previous).clone()
                }
            }
        };
        let before: BTreeSet<&String> = previous.live(now).map(|m| &m.advert.node_id).collect();
        let after: BTreeSet<&String> = next.live(now).map(|m| &m.advert.node_id).collect();
        if before != after {
            tracing::info!(nodes = after.len(), members = ?after, "cluster membership changed");
        }
        self.catalog
            .set_public_addresses(next.public_addresses(&self.own, now));
        self.view.send_replace(Arc::new(next));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn advert(id: &str, public: &[&str], holdings: &[(TunnelId, u32)]) -> NodeAdvert {
        NodeAdvert {
            node_id: id.into(),
            peer_address: format!("{id}:7844"),
            public_addresses: public.iter().map(|s| s.to_string()).collect(),
            tunnel_addresses: vec![format!("{id}:7844")],
            holdings: holdings
                .iter()
                .map(|(tunnel_id, connections)| Holding {
                    tunnel_id: *tunnel_id,
                    connections: *connections,
                })
                .collect(),
            connections: Vec::new(),
            departed: Vec::new(),
        }
    }

    fn lease(advert: NodeAdvert, remaining_ms: u64) -> NodeLease {
        NodeLease {
            advert,
            remaining: Duration::from_millis(remaining_ms),
        }
    }

    #[test]
    fn addresses_are_the_sorted_union_of_live_nodes_and_this_one() {
        let own = advert("a", &["127.0.0.2"], &[]);
        let now = Instant::now();
        let view = View::from_leases(
            vec![
                lease(advert("b", &["127.0.0.3", "::1"], &[]), 3000),
                lease(advert("c", &["127.0.0.9"], &[]), 0),
            ],
            now,
            None,
        );
        assert_eq!(
            view.public_addresses(&own, now),
            ["127.0.0.2", "127.0.0.3", "::1"]
        );
        assert_eq!(view.tunnel_addresses(&own, now), ["a:7844", "b:7844"]);
    }

    #[test]
    fn a_lease_expires_by_the_local_clock_while_the_store_answers() {
        let tunnel = TunnelId::new_random();
        let now = Instant::now();
        let view = View::from_leases(
            vec![lease(advert("b", &["127.0.0.3"], &[(tunnel, 2)]), 1000)],
            now,
            None,
        );
        assert_eq!(view.holders(&[tunnel], "a", now).len(), 1);
        assert_eq!(view.remote_connections(tunnel, "a", now), 2);
        let later = now + Duration::from_millis(1001);
        assert!(view.holders(&[tunnel], "a", later).is_empty());
        assert_eq!(view.remote_connections(tunnel, "a", later), 0);

        // While the store is unreachable nobody can renew: the view is frozen instead.
        let frozen = View {
            store_reachable: false,
            ..view
        };
        assert_eq!(frozen.holders(&[tunnel], "a", later).len(), 1);
    }

    #[test]
    fn holders_are_other_nodes_with_a_healthy_connection_for_one_of_the_tunnels() {
        let (web, api) = (TunnelId::new_random(), TunnelId::new_random());
        let now = Instant::now();
        let view = View::from_leases(
            vec![
                lease(advert("a", &[], &[(web, 1)]), 3000),
                lease(advert("b", &[], &[(web, 1), (api, 1)]), 3000),
                lease(advert("c", &[], &[(api, 0)]), 3000),
            ],
            now,
            None,
        );
        let ids = |members: Vec<Member>| -> Vec<String> {
            members.into_iter().map(|m| m.advert.node_id).collect()
        };
        assert_eq!(ids(view.holders(&[web], "a", now)), ["b"]);
        assert_eq!(ids(view.holders(&[api], "a", now)), ["b"]);
        assert_eq!(ids(view.holders(&[web, api], "b", now)), ["a"]);
        assert!(view.holders(&[TunnelId::new_random()], "a", now).is_empty());
    }

    #[test]
    fn after_an_outage_nodes_that_have_not_renewed_yet_are_kept_for_a_lease() {
        let tunnel = TunnelId::new_random();
        let now = Instant::now();
        let before = View::from_leases(
            vec![lease(advert("b", &["127.0.0.3"], &[(tunnel, 1)]), 3000)],
            now,
            None,
        );
        let during = View {
            store_reachable: false,
            ..before.clone()
        };
        let after = View::from_leases(Vec::new(), now, Some(&during));
        assert_eq!(after.holders(&[tunnel], "a", now).len(), 1);
        assert!(
            after
                .holders(&[tunnel], "a", now + LEASE + Duration::from_millis(1))
                .is_empty()
        );
        // Without an outage before it, the store's answer is the whole truth.
        let normal = View::from_leases(Vec::new(), now, Some(&before));
        assert!(normal.holders(&[tunnel], "a", now).is_empty());
    }
}
