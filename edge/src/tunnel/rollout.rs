//! Whether the connectors applied the catalog: a live connection is up to date when the
//! hostnames its connector last acknowledged are what its tunnel serves in the current
//! snapshot (all of them, or only those in a [`Scope`]). `GET /v1/rollout` answers with the
//! connections that are not, so a client (the Terraform provider) can wait until a write is in
//! effect on every connector it affects before it reports success.

use postern_schema::api::{PendingConnection, RolloutScope as Scope};
use postern_schema::wire::HostnameConfig;

use super::config::hostnames_for;
use super::registry::Registry;
use crate::catalog::Snapshot;

/// The live connections that may receive new requests (neither draining nor closed) whose
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
            if !session.is_healthy() {
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
            let info = session.connection();
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
            pending.push(PendingConnection {
                refused,
                tunnel_id: tunnel,
                tunnel_name: record.spec.name.clone(),
                connection_id: info.id,
                connector_id: info.connector_id,
                address: info.address,
                config_version: info.config_version,
            });
        }
    }
    pending.sort_by(|a, b| {
        (&a.tunnel_name, &a.connector_id, &a.connection_id).cmp(&(
            &b.tunnel_name,
            &b.connector_id,
            &b.connection_id,
        ))
    });
    pending
}

fn entry<'a>(hostnames: &'a [HostnameConfig], name: &str) -> Option<&'a HostnameConfig> {
    hostnames.iter().find(|h| h.hostname == name)
}
