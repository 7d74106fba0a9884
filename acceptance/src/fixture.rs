//! Set-ups many tests share: a tunnel with a hostname served by it, waiting for a tunnel's
//! connections, and reading a connector's id from its log.

use std::collections::BTreeMap;
use std::time::Duration;

use postern_schema::api::{Connection, HostnameSpec, Tunnel, TunnelSpec};
use postern_schema::client::Client;
use postern_schema::ids::TunnelId;

use crate::connector::{ConnectorProcess, eventually};

/// Creates a tunnel and a hostname served by it; returns the tunnel (with its token).
pub async fn tunnel_for(client: &Client, name: &str, hostname: &str, service: &str) -> Tunnel {
    let tunnel = client
        .create_tunnel(&TunnelSpec {
            name: name.into(),
            labels: BTreeMap::new(),
        })
        .await
        .expect("create tunnel");
    add_hostname(client, &tunnel, hostname, service).await;
    tunnel
}

/// Adds a hostname served by `tunnel`.
pub async fn add_hostname(client: &Client, tunnel: &Tunnel, hostname: &str, service: &str) {
    client
        .create_hostname(&HostnameSpec {
            hostname: hostname.into(),
            service: service.into(),
            tunnel_id: Some(tunnel.id),
            routes: None,
            policy_ids: Vec::new(),
            origin: None,
        })
        .await
        .expect("create hostname");
}

/// The token of a tunnel just created.
pub fn token(tunnel: &Tunnel) -> String {
    tunnel
        .token
        .clone()
        .expect("a new tunnel carries its token")
}

/// Waits (at most 20 s) until `tunnel` has exactly `count` registered connections.
pub async fn connections(client: &Client, tunnel: TunnelId, count: usize) -> Vec<Connection> {
    eventually(
        Duration::from_secs(20),
        &format!("{count} registered connections"),
        || async {
            let list = client.tunnel_connections(tunnel).await.ok()?;
            (list.len() == count).then_some(list)
        },
    )
    .await
}

/// The connector id a connector process logged at start.
pub fn connector_id(connector: &ConnectorProcess) -> String {
    connector
        .log()
        .lines()
        .find_map(|line| {
            let (_, rest) = line.split_once("connector_id=")?;
            Some(rest.split_whitespace().next()?.to_string())
        })
        .expect("the connector logs its id")
}
