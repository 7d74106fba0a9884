//! Each client's share of the public listeners: how many visitor connections one client (an
//! IPv4 address or an IPv6 /64, [`ClientKey`]) holds at once, over HTTP and HTTPS and every
//! worker together (the kernel deals one client's connections to any worker). Counted in
//! independently locked shards, so the accept path takes one short lock; a client's entry
//! lives only while it holds a connection, so memory is bounded by the connections themselves.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedSemaphorePermit;

use crate::client::ClientKey;

/// Independently locked shards of the counts.
const SHARDS: usize = 64;

/// Visitor connections per client, shared by every public listener of every worker.
#[derive(Debug)]
pub(super) struct ConnectionShares {
    max: u32,
    shards: Box<[Mutex<HashMap<ClientKey, u32>>]>,
    hasher: RandomState,
}

/// One connection counted against its client's share until dropped.
#[derive(Debug)]
pub(super) struct Share {
    shares: Arc<ConnectionShares>,
    client: ClientKey,
}

/// A visitor connection's place at the edge: its slot in the listener's connection limit and
/// its client's share. Held as long as the connection, or the upgraded connection it turned
/// into, lives.
#[derive(Debug)]
pub(super) struct ConnectionSlot {
    _listener: OwnedSemaphorePermit,
    _share: Share,
}

impl ConnectionSlot {
    pub(super) fn new(listener: OwnedSemaphorePermit, share: Share) -> Self {
        Self {
            _listener: listener,
            _share: share,
        }
    }
}

impl ConnectionShares {
    /// Shares of at most `max` connections per client.
    pub(super) fn new(max: u32) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
        })
    }

    /// Counts a new connection from `ip`; `None` when its client already holds its share.
    pub(super) fn claim(self: &Arc<Self>, ip: IpAddr) -> Option<Share> {
        let client = ClientKey::of(ip);
        let mut shard = self.shard(client).lock().unwrap_or_else(|p| p.into_inner());
        let held = shard.entry(client).or_insert(0);
        if *held >= self.max {
            return None;
        }
        *held += 1;
        Some(Share {
            shares: self.clone(),
            client,
        })
    }

    /// How many connections `client` holds (for tests).
    #[cfg(test)]
    fn held(&self, client: ClientKey) -> u32 {
        let shard = self.shard(client).lock().unwrap_or_else(|p| p.into_inner());
        shard.get(&client).copied().unwrap_or(0)
    }

    fn shard(&self, client: ClientKey) -> &Mutex<HashMap<ClientKey, u32>> {
        let index = (self.hasher.hash_one(client) as usize) % self.shards.len();
        &self.shards[index]
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut shard = self
            .shares
            .shard(self.client)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(held) = shard.get_mut(&self.client) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                shard.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    #[test]
    fn a_client_holds_its_share_and_no_more() {
        let shares = ConnectionShares::new(3);
        let held: Vec<Share> = (0..3)
            .map(|_| shares.claim(ip("192.0.2.1")).expect("within the share"))
            .collect();
        assert!(shares.claim(ip("192.0.2.1")).is_none());
        assert!(shares.claim(ip("::ffff:192.0.2.1")).is_none());
        assert!(shares.claim(ip("192.0.2.2")).is_some(), "another client");
        drop(held);
        assert_eq!(shares.held(ClientKey::of(ip("192.0.2.1"))), 0);
        assert!(shares.claim(ip("192.0.2.1")).is_some());
    }

    #[test]
    fn an_ipv6_slash_64_is_one_client_and_entries_go_with_their_connections() {
        let shares = ConnectionShares::new(2);
        let a = shares.claim(ip("2001:db8::1")).expect("first");
        let b = shares.claim(ip("2001:db8::ffff")).expect("second");
        assert!(shares.claim(ip("2001:db8::1:2")).is_none());
        assert!(shares.claim(ip("2001:db8:0:1::1")).is_some(), "another /64");
        drop((a, b));
        let total: usize = shares
            .shards
            .iter()
            .map(|s| s.lock().expect("lock").len())
            .sum();
        assert_eq!(total, 0, "no entry outlives its client's connections");
    }
}
