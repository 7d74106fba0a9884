//! Which connectors are connected right now, per tunnel.

use std::collections::HashMap;
use std::sync::RwLock;

use postern_schema::api::Connection;
use postern_schema::ids::TunnelId;

/// Live connector connections, by tunnel.
#[derive(Debug, Default)]
pub struct Registry {
    connections: RwLock<HashMap<TunnelId, Vec<Connection>>>,
}

impl Registry {
    /// Records a new connection of `tunnel`.
    pub fn add(&self, tunnel: TunnelId, connection: Connection) {
        let mut map = self.connections.write().unwrap_or_else(|p| p.into_inner());
        map.entry(tunnel).or_default().push(connection);
    }

    /// Forgets a connection.
    pub fn remove(&self, tunnel: TunnelId, connection_id: &str) {
        let mut map = self.connections.write().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = map.get_mut(&tunnel) {
            list.retain(|c| c.id != connection_id);
            if list.is_empty() {
                map.remove(&tunnel);
            }
        }
    }

    /// The live connections of `tunnel`.
    pub fn connections(&self, tunnel: TunnelId) -> Vec<Connection> {
        let map = self.connections.read().unwrap_or_else(|p| p.into_inner());
        map.get(&tunnel).cloned().unwrap_or_default()
    }

    /// How many connections `tunnel` has.
    pub fn count(&self, tunnel: TunnelId) -> u32 {
        let map = self.connections.read().unwrap_or_else(|p| p.into_inner());
        map.get(&tunnel).map_or(0, |l| l.len() as u32)
    }

    /// Connection counts of every connected tunnel.
    pub fn counts(&self) -> Vec<(TunnelId, u32)> {
        let map = self.connections.read().unwrap_or_else(|p| p.into_inner());
        map.iter().map(|(id, l)| (*id, l.len() as u32)).collect()
    }
}
