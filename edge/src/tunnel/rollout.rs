//! Whether the connectors applied the catalog: a live connection is up to date when the
//! hostnames its connector last acknowledged are what its tunnel serves in the current
//! snapshot (all of them, or only those in a [`Scope`]). `GET /v1/rollout` answers with the
//! connections that are not, so a client (the Terraform provider) can wait until a write is in
//! effect on every connector it affects before it reports success.
//!
//! In a cluster, the connections of the other nodes count too, as those nodes advertise them
//! in the store ([`ConnectionRecord`]): one is up to date when its connector applied everything
//! up to the revision asked about. So are the connections that left (on any node) before
//! acknowledging that revision ([`departed`]): the client tells its user about them.

use std::collections::BTreeSet;

use postern_schema::api::{PendingConnection, RolloutScope as Scope};
use postern_schema::ids::TunnelId;
use postern_schema::wire::HostnameConfig;

use super::config::{hostnames_for, serves};
use super::registry::Registry;
use crate::catalog::Snapshot;
use crate::store::cluster::{ConnectionRecord, Departure};

/// The live connections that are not draining whose
/// acknowledged configuration differs, within `scope`, from what `snapshot` gives their
/// tunnel; ordered by tunnel name, then connector. Connections of deleted tunnels are left
/// out: they are being closed.
pub(crate) fn pending(
    snapshot: &Snapshot,
    registry: &Registry,
    scope: &Scope,
) -> Vec<PendingConnection> {
    let names: Option<Vec<&str>> = match scope {
        Scope::All | Scope::Tunnel(_) => None,
        Scope::Hostname(name) => Some(vec![name.as_str()]),
        Scope::Policy(policy) => Some(
            snapshot
                .hostnames
                .values()
                .filter(|h| h.spec.policy_ids.contains(policy))
                .map(|h| h.spec.hostname.as_str())
                .collect(),
        ),
    };
    let mut pending = Vec::new();
    for (tunnel, sessions) in registry.all() {
        if matches!(scope, Scope::Tunnel(only) if *only != tunnel) {
            continue;
        }
        let (Some(record), Some(wanted)) = (
            snapshot.tunnels.get(&tunnel),
            hostnames_for(snapshot, tunnel),
        ) else {
            continue;
        };
        for session in sessions {
            // A connection that closed without draining stays pending until its session ends
            // (moments later), when it is remembered as departed if it had not applied.
            if session.is_draining() {
                continue;
            }
            let current = session.with_applied(|applied| match &names {
                None => applied == wanted.as_slice(),
                Some(names) => names
                    .iter()
                    .all(|name| entry(applied, name) == entry(&wanted, name)),
            });
            if current {
                continue;
            }
            // Refusals of what the tunnel still needs, in the scope asked about.
            let refused = session
                .refused()
                .into_iter()
                .filter(|(config, _)| entry(&wanted, &config.hostname) == Some(config))
                .filter(|(config, _)| {
                    names
                        .as_ref()
                        .is_none_or(|names| names.contains(&config.hostname.as_str()))
                })
                .map(|(_, refusal)| refusal)
                .collect();
            let mut entry = pending_entry(tunnel, &record.spec.name, &session.connection());
            entry.refused = refused;
            pending.push(entry);
        }
    }
    sort(&mut pending);
    pending
}

/// The connections of other nodes (`remote`) that are not draining and whose
/// connector has not applied revision `revision` yet, within `scope`.
pub(crate) fn remote_pending(
    snapshot: &Snapshot,
    remote: &[ConnectionRecord],
    revision: u64,
    scope: &Scope,
) -> Vec<PendingConnection> {
    let mut pending: Vec<PendingConnection> = remote
        .iter()
        .filter(|r| !r.connection.draining && r.current_through < revision)
        .filter(|r| in_scope(snapshot, r.tunnel_id, scope))
        .filter_map(|r| {
            let tunnel = snapshot.tunnels.get(&r.tunnel_id)?;
            Some(pending_entry(r.tunnel_id, &tunnel.spec.name, &r.connection))
        })
        .collect();
    sort(&mut pending);
    pending
}

/// The connections that left (`departures`, of this node and the others) before applying
/// revision `revision`, which their node already had, within `scope`; leaving out connectors
/// that are back: they have a connection of the same tunnel in `live` and none of theirs is
/// in `pending`.
pub(crate) fn departed(
    snapshot: &Snapshot,
    departures: &[Departure],
    live: &[(TunnelId, String)],
    pending: &[PendingConnection],
    revision: u64,
    scope: &Scope,
) -> Vec<PendingConnection> {
    let behind: BTreeSet<(TunnelId, &str)> = pending
        .iter()
        .map(|p| (p.tunnel_id, p.connector_id.as_str()))
        .collect();
    let back: BTreeSet<(TunnelId, &str)> = live
        .iter()
        .map(|(tunnel, connector)| (*tunnel, connector.as_str()))
        .filter(|key| !behind.contains(key))
        .collect();
    let mut left: Vec<PendingConnection> = departures
        .iter()
        .filter(|d| d.missed(revision))
        .filter(|d| !back.contains(&(d.tunnel_id, d.connection.connector_id.as_str())))
        .filter(|d| in_scope(snapshot, d.tunnel_id, scope))
        .filter_map(|d| {
            let tunnel = snapshot.tunnels.get(&d.tunnel_id)?;
            Some(pending_entry(d.tunnel_id, &tunnel.spec.name, &d.connection))
        })
        .collect();
    sort(&mut left);
    left.dedup_by(|a, b| a.connection_id == b.connection_id);
    left
}

/// Whether a connection of `tunnel` is concerned by `scope`, knowing only its tunnel: for a
/// hostname, when the tunnel serves it (or the hostname is gone: every tunnel may have served
/// it); for a policy, when the tunnel serves a hostname that uses it.
fn in_scope(snapshot: &Snapshot, tunnel: TunnelId, scope: &Scope) -> bool {
    let Some(record) = snapshot.tunnels.get(&tunnel) else {
        return false;
    };
    let labels = &record.spec.labels;
    match scope {
        Scope::All => true,
        Scope::Tunnel(only) => *only == tunnel,
        Scope::Hostname(name) => snapshot
            .hostnames
            .get(name)
            .is_none_or(|h| serves(&h.spec, tunnel, labels)),
        Scope::Policy(policy) => snapshot
            .hostnames
            .values()
            .any(|h| h.spec.policy_ids.contains(policy) && serves(&h.spec, tunnel, labels)),
    }
}

fn pending_entry(
    tunnel_id: TunnelId,
    tunnel_name: &str,
    info: &postern_schema::api::Connection,
) -> PendingConnection {
    PendingConnection {
        tunnel_id,
        tunnel_name: tunnel_name.to_string(),
        connection_id: info.id.clone(),
        connector_id: info.connector_id.clone(),
        address: info.address.clone(),
        config_version: info.config_version,
        refused: Vec::new(),
    }
}

/// By tunnel name, then connector, then connection.
pub(crate) fn sort(pending: &mut [PendingConnection]) {
    pending.sort_by(|a, b| {
        (&a.tunnel_name, &a.connector_id, &a.connection_id).cmp(&(
            &b.tunnel_name,
            &b.connector_id,
            &b.connection_id,
        ))
    });
}

fn entry<'a>(hostnames: &'a [HostnameConfig], name: &str) -> Option<&'a HostnameConfig> {
    hostnames.iter().find(|h| h.hostname == name)
}
