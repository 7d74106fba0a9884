//! What a tunnel serves, computed from a catalog snapshot: the hostnames bound to it directly
//! (`tunnel_id`) or through routes whose selectors match its labels, by their default or by
//! one of their path routes (with those path routes). Pure, so the session pushes exactly
//! what the proxy routes.

use postern_schema::api::{HostnameSpec, Labels, Target};
use postern_schema::ids::TunnelId;
use postern_schema::rules::selector_matches;
use postern_schema::wire::{ConfigPush, HostnameConfig, PathConfig};

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
/// version.
#[derive(Debug, Default)]
pub(crate) struct PushState {
    last: Option<ConfigPush>,
}

impl PushState {
    /// The push to send for `snapshot`, if the tunnel's hostnames changed since the last one
    /// (or nothing was pushed yet). The version is the snapshot's revision.
    pub(crate) fn next(
        &mut self,
        snapshot: &Snapshot,
        hostnames: Vec<HostnameConfig>,
    ) -> Option<ConfigPush> {
        if let Some(last) = &self.last
            && (last.hostnames == hostnames || snapshot.revision <= last.version)
        {
            return None;
        }
        let push = ConfigPush {
            version: snapshot.revision,
            hostnames,
        };
        self.last = Some(push.clone());
        Some(push)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use postern_schema::api::{Hostname, Route, Tunnel, TunnelSpec};

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
        }
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
        let mut state = PushState::default();
        let first = snapshot(5, &[&t], vec![hostname("a.example.com", Some(t.id), None)]);
        let push = state
            .next(&first, hostnames_for(&first, t.id).expect("exists"))
            .expect("first push");
        assert_eq!(push.version, 5);

        // An unrelated write: same hostnames, no push.
        let unrelated = snapshot(6, &[&t], vec![hostname("a.example.com", Some(t.id), None)]);
        assert!(
            state
                .next(&unrelated, hostnames_for(&unrelated, t.id).expect("exists"))
                .is_none()
        );

        // A service change: pushed with the new revision.
        let mut changed = hostname("a.example.com", Some(t.id), None);
        changed.spec.service = "http://localhost:5000".into();
        let changed = snapshot(7, &[&t], vec![changed]);
        let push = state
            .next(&changed, hostnames_for(&changed, t.id).expect("exists"))
            .expect("changed");
        assert_eq!(push.version, 7);
        assert_eq!(push.hostnames[0].service, "http://localhost:5000");

        // An older snapshot never produces a push.
        assert!(state.next(&first, Vec::new()).is_none());
    }
}
