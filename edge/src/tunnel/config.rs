//! What a tunnel serves, computed from a catalog snapshot: the hostnames bound to it directly
//! (`tunnel_id`) or through routes whose selectors match its labels, by their default or by
//! one of their path routes (with those path routes), and its TCP services. Pure, so the
//! session pushes exactly what the proxy routes.

use postern_schema::api::{HostnameSpec, Labels, Target};
use postern_schema::ids::TunnelId;
use postern_schema::rules::selector_matches;
use postern_schema::wire::{ConfigPush, HostnameConfig, PathConfig, TcpServiceConfig};

use crate::catalog::Snapshot;

/// The hostnames `tunnel` serves in `snapshot`, ordered by name; `None` when the tunnel does
/// not exist (deleted).
pub(crate) fn hostnames_for(snapshot: &Snapshot, tunnel: TunnelId) -> Option<Vec<HostnameConfig>> {
    let labels = &snapshot.tunnels.get(&tunnel)?.spec.labels;
    Some(
        snapshot
            .hostnames
            .values()
            .filter(|h| serves(&h.spec, tunnel, labels))
            .map(|h| HostnameConfig {
                hostname: h.spec.hostname.clone(),
                service: h.spec.service.clone(),
                origin: h.spec.origin.clone().unwrap_or_default(),
                tls_passthrough: h.spec.passes_tls_through(),
                paths: h
                    .spec
                    .servings()
                    .filter(|s| targets(s.target, tunnel, labels))
                    .filter_map(|s| {
                        Some(PathConfig {
                            prefix: s.prefix?.to_string(),
                            service: s.service.to_string(),
                        })
                    })
                    .collect(),
            })
            .collect(),
    )
}

/// The TCP services `tunnel` serves in `snapshot`, ordered by name (empty when the tunnel
/// does not exist).
pub(crate) fn tcp_services_for(snapshot: &Snapshot, tunnel: TunnelId) -> Vec<TcpServiceConfig> {
    let Some(record) = snapshot.tunnels.get(&tunnel) else {
        return Vec::new();
    };
    let mut services: Vec<TcpServiceConfig> = snapshot
        .tcp_services
        .values()
        .filter(|s| targets(s.spec.target(), tunnel, &record.spec.labels))
        .map(|s| TcpServiceConfig {
            id: s.id.to_string(),
            name: s.spec.name.clone(),
            service: s.spec.service.clone(),
        })
        .collect();
    services.sort_by(|a, b| a.name.cmp(&b.name));
    services
}

/// Does a tunnel with this id and these labels serve `hostname` (its default, or one of its
/// path routes)?
pub(crate) fn serves(hostname: &HostnameSpec, tunnel: TunnelId, labels: &Labels) -> bool {
    hostname
        .servings()
        .any(|serving| targets(serving.target, tunnel, labels))
}

/// Is a tunnel with this id and these labels one of `target`'s?
fn targets(target: Option<Target<'_>>, tunnel: TunnelId, labels: &Labels) -> bool {
    match target {
        Some(Target::Tunnel(id)) => id == tunnel,
        Some(Target::Routes(routes)) => routes
            .iter()
            .any(|route| selector_matches(&route.selector, labels)),
        None => false,
    }
}

/// Tracks what was pushed on one connection, so only changes are pushed, each with a newer
/// version: to a connector that takes deltas, only the hostnames that changed (a change to one
/// hostname costs the same bytes whatever the tunnel serves), else everything. TCP services,
/// few, are always sent whole.
#[derive(Debug, Default)]
pub(crate) struct PushState {
    /// The version, hostnames and TCP services of the last push.
    last: Option<(u64, Vec<HostnameConfig>, Vec<TcpServiceConfig>)>,
    /// The connector applies deltas.
    deltas: bool,
}

/// One push: the message, and everything the tunnel serves at its version (what the
/// connector serves once it applied it; a snapshot to send instead if it refuses a delta).
#[derive(Debug)]
pub(crate) struct Push {
    /// What is sent.
    pub(crate) message: ConfigPush,
    /// The hostnames the tunnel serves at `message.version`.
    pub(crate) hostnames: Vec<HostnameConfig>,
}

impl Push {
    /// The snapshot that replaces a refused delta.
    pub(crate) fn snapshot(&self) -> ConfigPush {
        ConfigPush::snapshot(
            self.message.version,
            self.hostnames.clone(),
            self.message.tcp_services.clone(),
        )
    }
}

impl PushState {
    /// Nothing pushed yet; deltas when the connector said it takes them.
    pub(crate) fn new(deltas: bool) -> Self {
        Self { last: None, deltas }
    }

    /// The push to send for `snapshot`, if what the tunnel serves changed since the last one
    /// (or nothing was pushed yet). The version is the snapshot's revision.
    pub(crate) fn next(
        &mut self,
        snapshot: &Snapshot,
        tunnel: TunnelId,
        hostnames: Vec<HostnameConfig>,
    ) -> Option<Push> {
        let tcp_services = tcp_services_for(snapshot, tunnel);
        let message = match &self.last {
            Some((version, last, last_tcp))
                if (*last == hostnames && *last_tcp == tcp_services)
                    || snapshot.revision <= *version =>
            {
                return None;
            }
            Some((version, last, _)) if self.deltas => {
                let (changed, removed) = diff(last, &hostnames);
                ConfigPush {
                    version: snapshot.revision,
                    hostnames: changed,
                    base: Some(*version),
                    removed,
                    tcp_services: tcp_services.clone(),
                }
            }
            _ => ConfigPush::snapshot(snapshot.revision, hostnames.clone(), tcp_services.clone()),
        };
        self.last = Some((snapshot.revision, hostnames.clone(), tcp_services));
        Some(Push { message, hostnames })
    }
}

/// What changed from `old` to `new` (both ordered by name): the entries added or changed, and
/// the names removed.
fn diff(old: &[HostnameConfig], new: &[HostnameConfig]) -> (Vec<HostnameConfig>, Vec<String>) {
    let (mut changed, mut removed) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    loop {
        match (old.get(i), new.get(j)) {
            (None, None) => break,
            (Some(o), None) => {
                removed.push(o.hostname.clone());
                i += 1;
            }
            (None, Some(n)) => {
                changed.push(n.clone());
                j += 1;
            }
            (Some(o), Some(n)) => match o.hostname.cmp(&n.hostname) {
                std::cmp::Ordering::Less => {
                    removed.push(o.hostname.clone());
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    changed.push(n.clone());
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    if o != n {
                        changed.push(n.clone());
                    }
                    i += 1;
                    j += 1;
                }
            },
        }
    }
    (changed, removed)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use postern_schema::api::{Hostname, Route, TcpService, TcpServiceSpec, Tunnel, TunnelSpec};
    use postern_schema::ids::TcpServiceId;

    use super::*;

    fn tunnel(labels: &[(&str, &str)]) -> Tunnel {
        Tunnel {
            id: TunnelId::new_random(),
            spec: TunnelSpec {
                name: "t".into(),
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            },
            version: 1,
            created_at: String::new(),
            connections: 0,
            token: None,
        }
    }

    fn hostname(name: &str, tunnel_id: Option<TunnelId>, routes: Option<Vec<Route>>) -> Hostname {
        Hostname {
            spec: HostnameSpec {
                tls_passthrough: None,
                hostname: name.into(),
                service: "http://localhost:4000".into(),
                tunnel_id,
                routes,
                policy_ids: Vec::new(),
                paths: Vec::new(),
                origin: None,
            },
            addresses: Vec::new(),
            version: 1,
            created_at: String::new(),
            certificate: None,
        }
    }

    fn route(key: &str, value: &str, weight: u32) -> Route {
        Route {
            selector: BTreeMap::from([(key.to_string(), value.to_string())]),
            weight,
            max_error_rate: None,
        }
    }

    fn snapshot(revision: u64, tunnels: &[&Tunnel], hostnames: Vec<Hostname>) -> Snapshot {
        Snapshot {
            revision,
            tunnels: tunnels.iter().map(|t| (t.id, (*t).clone())).collect(),
            hostnames: hostnames
                .into_iter()
                .map(|h| (h.spec.hostname.clone(), h))
                .collect(),
            policies: BTreeMap::new(),
            tcp_services: BTreeMap::new(),
            passthrough: false,
        }
    }

    fn tcp_service(
        name: &str,
        tunnel_id: Option<TunnelId>,
        routes: Option<Vec<Route>>,
    ) -> TcpService {
        TcpService {
            id: TcpServiceId::new_random(),
            spec: TcpServiceSpec {
                name: name.into(),
                service: "tcp://127.0.0.1:22".into(),
                tunnel_id,
                routes,
                policy_ids: Vec::new(),
                listen_port: Some(4000),
            },
            listen: String::new(),
            version: 1,
            created_at: String::new(),
        }
    }

    #[test]
    fn a_tunnel_serves_its_own_and_its_routed_tcp_services_and_a_new_one_is_pushed() {
        let stable = tunnel(&[("release", "stable")]);
        let other = tunnel(&[]);
        let mut snap = snapshot(3, &[&stable, &other], Vec::new());
        for service in [
            tcp_service("ssh", Some(stable.id), None),
            tcp_service("db", None, Some(vec![route("release", "stable", 1)])),
            tcp_service("redis", Some(other.id), None),
        ] {
            snap.tcp_services.insert(service.id, service);
        }
        let names: Vec<String> = tcp_services_for(&snap, stable.id)
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["db", "ssh"]);

        let mut state = PushState::default();
        let first = snapshot(2, &[&stable], Vec::new());
        assert!(state.next(&first, stable.id, Vec::new()).is_some());
        let push = state
            .next(&snap, stable.id, Vec::new())
            .expect("the TCP services changed");
        assert_eq!(push.message.tcp_services.len(), 2);
        assert_eq!(push.message.tcp_services[1].service, "tcp://127.0.0.1:22");
    }

    #[test]
    fn a_tunnel_serves_its_own_and_its_routed_hostnames_only() {
        let stable = tunnel(&[("release", "stable")]);
        let canary = tunnel(&[("release", "canary")]);
        let snap = snapshot(
            3,
            &[&stable, &canary],
            vec![
                hostname("a.example.com", Some(stable.id), None),
                hostname("b.example.com", Some(canary.id), None),
                hostname(
                    "split.example.com",
                    None,
                    Some(vec![
                        route("release", "stable", 90),
                        route("release", "canary", 10),
                    ]),
                ),
                hostname(
                    "c.example.com",
                    None,
                    Some(vec![route("release", "beta", 1)]),
                ),
            ],
        );
        let names = |t: &Tunnel| -> Vec<String> {
            hostnames_for(&snap, t.id)
                .expect("exists")
                .into_iter()
                .map(|h| h.hostname)
                .collect()
        };
        assert_eq!(names(&stable), ["a.example.com", "split.example.com"]);
        assert_eq!(names(&canary), ["b.example.com", "split.example.com"]);
        assert!(hostnames_for(&snap, TunnelId::new_random()).is_none());
    }

    #[test]
    fn a_tunnel_that_serves_a_path_route_gets_the_hostname_with_that_route() {
        let web = tunnel(&[("app", "web")]);
        let api = tunnel(&[("app", "api")]);
        let mut shop = hostname("shop.example.com", Some(web.id), None);
        shop.spec.paths = vec![postern_schema::api::PathRoute {
            prefix: "/api".into(),
            service: Some("h2c://localhost:50051".into()),
            routes: Some(vec![route("app", "api", 1)]),
            policy_ids: None,
        }];
        let snap = snapshot(1, &[&web, &api], vec![shop]);
        let for_web = hostnames_for(&snap, web.id).expect("exists");
        assert_eq!(for_web.len(), 1);
        assert!(for_web[0].paths.is_empty(), "web serves the default only");
        let for_api = hostnames_for(&snap, api.id).expect("exists");
        assert_eq!(for_api.len(), 1);
        assert_eq!(
            for_api[0].paths,
            [PathConfig {
                prefix: "/api".into(),
                service: "h2c://localhost:50051".into()
            }]
        );
    }

    #[test]
    fn pushes_carry_new_versions_and_only_changes() {
        let t = tunnel(&[]);
        let mut state = PushState::new(false);
        let first = snapshot(5, &[&t], vec![hostname("a.example.com", Some(t.id), None)]);
        let push = state
            .next(&first, t.id, hostnames_for(&first, t.id).expect("exists"))
            .expect("first push")
            .message;
        assert_eq!(push.version, 5);

        // An unrelated write: same hostnames, no push.
        let unrelated = snapshot(6, &[&t], vec![hostname("a.example.com", Some(t.id), None)]);
        assert!(
            state
                .next(
                    &unrelated,
                    t.id,
                    hostnames_for(&unrelated, t.id).expect("exists")
                )
                .is_none()
        );

        // A service change: pushed with the new revision.
        let mut changed = hostname("a.example.com", Some(t.id), None);
        changed.spec.service = "http://localhost:5000".into();
        let changed = snapshot(7, &[&t], vec![changed]);
        let push = state
            .next(
                &changed,
                t.id,
                hostnames_for(&changed, t.id).expect("exists"),
            )
            .expect("changed")
            .message;
        assert_eq!(push.version, 7);
        assert_eq!(push.hostnames[0].service, "http://localhost:5000");

        // An older snapshot never produces a push.
        assert!(state.next(&first, t.id, Vec::new()).is_none());
    }

    #[test]
    fn a_connector_that_takes_deltas_gets_only_what_changed() {
        let t = tunnel(&[]);
        let mut state = PushState::new(true);
        let names = |n: usize| -> Vec<Hostname> {
            (0..n)
                .map(|i| hostname(&format!("h{i:04}.example.com"), Some(t.id), None))
                .collect()
        };
        let first = snapshot(5, &[&t], names(1000));
        let push = state
            .next(&first, t.id, hostnames_for(&first, t.id).expect("exists"))
            .expect("first push");
        assert_eq!(push.message.base, None);
        assert_eq!(push.message.hostnames.len(), 1000);

        // One changed, one removed, one added: the delta names three, from version 5.
        let mut next = names(1000);
        next[10].spec.service = "http://localhost:5000".into();
        next.remove(20);
        next.push(hostname("zz.example.com", Some(t.id), None));
        let second = snapshot(8, &[&t], next);
        let push = state
            .next(&second, t.id, hostnames_for(&second, t.id).expect("exists"))
            .expect("delta");
        assert_eq!(push.message.base, Some(5));
        assert_eq!(push.message.version, 8);
        let changed: Vec<&str> = push
            .message
            .hostnames
            .iter()
            .map(|h| h.hostname.as_str())
            .collect();
        assert_eq!(changed, ["h0010.example.com", "zz.example.com"]);
        assert_eq!(push.message.removed, ["h0020.example.com"]);
        assert_eq!(push.hostnames.len(), 1000);
        assert!(postern_schema::wire::to_json(&push.message).len() < 4096);
        // Refused, it becomes the whole configuration at the same version.
        assert_eq!(push.snapshot().hostnames.len(), 1000);
        assert_eq!(push.snapshot().base, None);
    }
}
