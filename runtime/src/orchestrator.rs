//! The connector's live configuration: which hostnames (TLS passthrough ones apart) and TCP
//! services it serves and how, as pushed by the edge. Each push carries a version; a newer one
//! replaces the table atomically (a snapshot builds it anew, a delta changes the served
//! table's entries when that table is its base), an older or equal one is ignored, and
//! requests read whichever table is current. A hostname whose service (or one of whose path
//! routes' services) this connector will not use (outside `--allow-origin`, or unusable) is
//! left out, and the refusal goes back to the edge with the acknowledgement.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use postern_schema::api::{HealthCheck, OriginSettings};
use postern_schema::rules::{
    OriginScheme, Service, parse_service, parse_tcp_service, passthrough_address, prefix_covers,
    wildcard_of,
};
use postern_schema::wire::{ConfigPush, HostnameConfig, RefusedHostname, TcpServiceConfig};
use tokio::sync::watch;

use crate::allowlist::AllowedOrigins;

/// How one hostname is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ingress {
    /// The hostname (a wildcard one, `*.dev.example.com`, serves every name one label below).
    pub(crate) hostname: String,
    /// Where requests go that no path route covers.
    pub(crate) service: Service,
    /// Path routes: prefix and service, longest prefix first.
    pub(crate) paths: Vec<(String, Service)>,
    /// How the origin is reached.
    pub(crate) origin: OriginSettings,
}

impl Ingress {
    /// The service for a request to `path`: the longest path route that covers it, else the
    /// hostname's (the edge chose the tunnel by the same rule).
    pub(crate) fn service_for(&self, path: &str) -> &Service {
        self.paths
            .iter()
            .find(|(prefix, _)| prefix_covers(prefix, path))
            .map_or(&self.service, |(_, service)| service)
    }
}

/// How one TCP service is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TcpIngress {
    /// The service's name, for logs.
    pub(crate) name: String,
    /// The origin to dial, `host:port`.
    pub(crate) address: String,
}

/// The hostnames and TCP services served at one version.
#[derive(Debug, Default)]
pub(crate) struct Routing {
    /// The config version (0 before the first push).
    pub(crate) version: u64,
    hostnames: HashMap<String, Arc<Ingress>>,
    /// The origins to probe (`origin.health_check`), one per service as pushed.
    pub(crate) probes: Vec<Probe>,
    /// The hostnames of this version the connector refused to serve, and why.
    pub(crate) refused: Vec<RefusedHostname>,
    tcp_services: HashMap<String, Arc<TcpIngress>>,
    /// The hostnames whose TLS passes through, by name: their origins, dialed as TCP.
    passthrough: HashMap<String, Arc<TcpIngress>>,
}

/// One origin the connector probes: a service of a hostname with `origin.health_check`.
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    /// The service as the edge pushed it (the key the edge knows it by).
    pub(crate) text: String,
    /// The service.
    pub(crate) service: Service,
    /// The hostname it belongs to (its origin settings reach it).
    pub(crate) ingress: Arc<Ingress>,
    /// How to probe it.
    pub(crate) check: HealthCheck,
}

impl Routing {
    /// Where a TLS passthrough `hostname`'s raw bytes go, if it is declared so for this
    /// tunnel.
    pub(crate) fn passthrough_ingress(&self, hostname: &str) -> Option<Arc<TcpIngress>> {
        self.passthrough
            .get(&hostname.to_ascii_lowercase())
            .cloned()
    }

    /// How the TCP service with id `id` is served, if it is declared for this tunnel.
    pub(crate) fn tcp_ingress(&self, id: &str) -> Option<Arc<TcpIngress>> {
        self.tcp_services.get(id).cloned()
    }

    /// How `hostname` is served, if it is declared for this tunnel: by its own name, else by
    /// the wildcard one label above it.
    pub(crate) fn ingress(&self, hostname: &str) -> Option<Arc<Ingress>> {
        if let Some(ingress) = self.hostnames.get(hostname) {
            return Some(ingress.clone());
        }
        self.hostnames.get(&wildcard_of(hostname)?).cloned()
    }

    /// How many hostnames are served.
    pub(crate) fn len(&self) -> usize {
        self.hostnames.len()
    }
}

/// Holds the current [`Routing`] and swaps in newer ones.
#[derive(Debug)]
pub struct Orchestrator {
    current: watch::Sender<Arc<Routing>>,
    /// With `--hello-world`: every hostname is served by the built-in origin at this address.
    hello_world: Option<String>,
    /// `--allow-origin`.
    allowed: AllowedOrigins,
}

impl Orchestrator {
    /// Serves nothing until the first push; with `hello_world`, every declared hostname goes
    /// to the built-in origin at that `host:port`; only services `allowed` allows are served.
    pub fn new(hello_world: Option<String>, allowed: AllowedOrigins) -> Self {
        let (current, _) = watch::channel(Arc::new(Routing::default()));
        Self {
            current,
            hello_world,
            allowed,
        }
    }

    /// Applies `push` if it is newer than what is served; returns the version served after.
    pub(crate) fn apply(&self, push: ConfigPush) -> u64 {
        let mut served = 0;
        self.current.send_if_modified(|current| {
            if push.version <= current.version {
                served = current.version;
                return false;
            }
            let routing = match push.base {
                None => self.build(&push),
                Some(base) if base == current.version => self.change(current, &push),
                Some(base) => {
                    // Not what the delta changes: the edge sends a snapshot on this answer.
                    tracing::debug!(
                        base,
                        served = current.version,
                        "ignored a configuration delta for another version"
                    );
                    served = current.version;
                    return false;
                }
            };
            tracing::info!(
                config_version = push.version,
                hostnames = routing.len(),
                "applied configuration"
            );
            served = push.version;
            *current = Arc::new(routing);
            true
        });
        served
    }

    /// Follows the current table.
    pub(crate) fn watch(&self) -> watch::Receiver<Arc<Routing>> {
        self.current.subscribe()
    }

    /// The current table.
    pub(crate) fn routing(&self) -> Arc<Routing> {
        self.current.borrow().clone()
    }

    /// The current table, once it is at least `version` (waiting at most `timeout` for a
    /// push in flight; then whatever is current).
    pub(crate) async fn routing_at_least(&self, version: u64, timeout: Duration) -> Arc<Routing> {
        let current = self.routing();
        if current.version >= version {
            return current;
        }
        let mut receiver = self.current.subscribe();
        let _ = tokio::time::timeout(timeout, receiver.wait_for(|r| r.version >= version)).await;
        self.routing()
    }

    /// `current` with `delta`'s entries added or replaced and its removed ones gone; its TCP
    /// services are all of them.
    fn change(&self, current: &Routing, delta: &ConfigPush) -> Routing {
        let mut table = Table {
            hostnames: current.hostnames.clone(),
            probes: current.probes.clone(),
            passthrough: current.passthrough.clone(),
            refused: current.refused.clone(),
        };
        for name in delta
            .removed
            .iter()
            .chain(delta.hostnames.iter().map(|h| &h.hostname))
        {
            table.forget(name);
        }
        self.insert(&mut table, &delta.hostnames);
        table.into_routing(delta.version, self.tcp_services(&delta.tcp_services))
    }

    fn build(&self, push: &ConfigPush) -> Routing {
        let mut table = Table::default();
        self.insert(&mut table, &push.hostnames);
        table.into_routing(push.version, self.tcp_services(&push.tcp_services))
    }

    /// Serves `entries` (or refuses them) in `table`.
    fn insert(&self, table: &mut Table, entries: &[HostnameConfig]) {
        for entry in entries {
            let refuse = |reason: String| RefusedHostname {
                hostname: entry.hostname.clone(),
                reason,
            };
            if self.hello_world.is_none() {
                let texts =
                    std::iter::once(&entry.service).chain(entry.paths.iter().map(|p| &p.service));
                if let Some(reason) = texts
                    .filter_map(|text| self.allowed.check(text).err())
                    .next()
                {
                    tracing::warn!(hostname = %entry.hostname, %reason, "refused a hostname");
                    table.refused.push(refuse(reason));
                    continue;
                }
            }
            if entry.tls_passthrough {
                // The visitor's TLS bytes go to the origin as they are: a TCP origin.
                let address = parse_service(&entry.service)
                    .ok()
                    .and_then(|service| passthrough_address(&service));
                match address {
                    Some(address) => {
                        table.passthrough.insert(
                            entry.hostname.to_ascii_lowercase(),
                            Arc::new(TcpIngress {
                                name: entry.hostname.clone(),
                                address,
                            }),
                        );
                    }
                    None => {
                        tracing::warn!(hostname = %entry.hostname, service = %entry.service, "ignored a TLS passthrough hostname whose service is not https://host[:port]");
                    }
                }
                continue;
            }
            let service = match self.service(&entry.hostname, &entry.service) {
                Ok(service) => service,
                Err(message) => {
                    table.refused.push(refuse(message));
                    continue;
                }
            };
            let mut paths: Vec<(String, Service)> = entry
                .paths
                .iter()
                .filter_map(|path| {
                    Some((
                        path.prefix.clone(),
                        self.service(&entry.hostname, &path.service).ok()?,
                    ))
                })
                .collect();
            paths.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
            let hostname = entry.hostname.to_ascii_lowercase();
            let ingress = Arc::new(Ingress {
                hostname: hostname.clone(),
                service,
                paths,
                origin: entry.origin.clone(),
            });
            if let Some(check) = &entry.origin.health_check
                && self.hello_world.is_none()
            {
                let texts =
                    std::iter::once(&entry.service).chain(entry.paths.iter().map(|p| &p.service));
                for text in texts {
                    if table.probes.iter().any(|p| &p.text == text) {
                        continue;
                    }
                    if let Ok(service @ Service::Origin { .. }) = parse_service(text) {
                        table.probes.push(Probe {
                            text: text.clone(),
                            service,
                            ingress: ingress.clone(),
                            check: check.clone(),
                        });
                    }
                }
            }
            table.hostnames.insert(hostname, ingress);
        }
    }

    /// A pushed service as the connector serves it (every one the built-in origin with
    /// `--hello-world`); why not, with a warning, for one it cannot use.
    fn service(&self, hostname: &str, service: &str) -> Result<Service, String> {
        if let Some(address) = &self.hello_world {
            return Ok(Service::Origin {
                scheme: OriginScheme::Http,
                authority: address.clone(),
                path_prefix: String::new(),
            });
        }
        parse_service(service).inspect_err(|message| {
            tracing::warn!(%hostname, %message, "ignored a hostname with an unusable service");
        })
    }

    /// The TCP services of a push, by id; those outside `--allow-origin` or unusable left out.
    fn tcp_services(&self, entries: &[TcpServiceConfig]) -> HashMap<String, Arc<TcpIngress>> {
        let mut tcp_services = HashMap::new();
        for entry in entries {
            if let Err(reason) = self.allowed.check(&entry.service) {
                tracing::warn!(service = %entry.name, %reason, "refused a TCP service");
                continue;
            }
            match parse_tcp_service(&entry.service) {
                Ok(address) => {
                    tcp_services.insert(
                        entry.id.clone(),
                        Arc::new(TcpIngress {
                            name: entry.name.clone(),
                            address,
                        }),
                    );
                }
                Err(message) => {
                    tracing::warn!(service = %entry.name, %message, "ignored a TCP service with an unusable service");
                }
            }
        }
        tcp_services
    }
}

/// The hostnames of a [`Routing`] while it is built.
#[derive(Default)]
struct Table {
    hostnames: HashMap<String, Arc<Ingress>>,
    probes: Vec<Probe>,
    passthrough: HashMap<String, Arc<TcpIngress>>,
    refused: Vec<RefusedHostname>,
}

impl Table {
    /// Drops every trace of hostname `name` (removed, or about to be replaced).
    fn forget(&mut self, name: &str) {
        let key = name.to_ascii_lowercase();
        self.hostnames.remove(&key);
        self.probes.retain(|p| p.ingress.hostname != key);
        self.passthrough.remove(&key);
        self.refused
            .retain(|r| !r.hostname.eq_ignore_ascii_case(name));
    }

    fn into_routing(self, version: u64, tcp_services: HashMap<String, Arc<TcpIngress>>) -> Routing {
        Routing {
            version,
            hostnames: self.hostnames,
            probes: self.probes,
            refused: self.refused,
            tcp_services,
            passthrough: self.passthrough,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(version: u64, entries: &[(&str, &str)]) -> ConfigPush {
        ConfigPush {
            tcp_services: Vec::new(),
            version,
            hostnames: entries
                .iter()
                .map(|(hostname, service)| HostnameConfig {
                    hostname: hostname.to_string(),
                    service: service.to_string(),
                    origin: OriginSettings::default(),
                    tls_passthrough: false,
                    paths: Vec::new(),
                })
                .collect(),
            base: None,
            removed: Vec::new(),
        }
    }

    #[test]
    fn a_delta_changes_its_base_and_nothing_else() {
        let orchestrator = Orchestrator::new(None, AllowedOrigins::any());
        orchestrator.apply(push(
            3,
            &[
                ("a.example.com", "http://127.0.0.1:1"),
                ("b.example.com", "http://127.0.0.1:2"),
            ],
        ));
        let delta = |version, base| ConfigPush {
            base: Some(base),
            removed: vec!["b.example.com".into()],
            ..push(version, &[("c.example.com", "http_status:204")])
        };
        // A delta from another version than the one served is not applied.
        assert_eq!(orchestrator.apply(delta(5, 4)), 3);
        assert!(orchestrator.routing().ingress("c.example.com").is_none());
        assert_eq!(orchestrator.apply(delta(5, 3)), 5);
        let routing = orchestrator.routing();
        assert!(routing.ingress("a.example.com").is_some());
        assert!(routing.ingress("b.example.com").is_none());
        assert!(routing.ingress("c.example.com").is_some());
        assert_eq!(routing.len(), 2);
    }

    #[test]
    fn newer_versions_replace_the_table_and_stale_ones_are_ignored() {
        let orchestrator = Orchestrator::new(None, AllowedOrigins::any());
        assert_eq!(
            orchestrator.apply(push(3, &[("a.example.com", "http://127.0.0.1:1")])),
            3
        );
        assert!(orchestrator.routing().ingress("a.example.com").is_some());

        assert_eq!(
            orchestrator.apply(push(2, &[("b.example.com", "http_status:204")])),
            3
        );
        assert!(orchestrator.routing().ingress("b.example.com").is_none());

        assert_eq!(
            orchestrator.apply(push(5, &[("b.example.com", "http_status:204")])),
            5
        );
        let routing = orchestrator.routing();
        assert!(routing.ingress("a.example.com").is_none());
        assert_eq!(
            routing.ingress("b.example.com").map(|i| i.service.clone()),
            Some(Service::Status(204))
        );
        assert_eq!(orchestrator.apply(push(5, &[])), 5);
    }

    #[test]
    fn services_outside_the_allow_list_are_refused_with_the_reason() {
        let allowed = AllowedOrigins::parse(&["127.0.0.1:4000".to_string()]).expect("valid");
        let orchestrator = Orchestrator::new(None, allowed);
        orchestrator.apply(push(
            1,
            &[
                ("ok.example.com", "http://127.0.0.1:4000"),
                ("db.example.com", "http://127.0.0.1:5432"),
                ("gone.example.com", "http_status:410"),
            ],
        ));
        let routing = orchestrator.routing();
        assert!(routing.ingress("ok.example.com").is_some());
        assert!(routing.ingress("gone.example.com").is_some(), "no origin");
        assert!(routing.ingress("db.example.com").is_none());
        assert_eq!(routing.refused.len(), 1);
        assert_eq!(routing.refused[0].hostname, "db.example.com");
        assert!(routing.refused[0].reason.contains("--allow-origin"));
    }

    #[test]
    fn path_routes_and_wildcards_pick_the_service() {
        let orchestrator = Orchestrator::new(None, AllowedOrigins::any());
        let mut push = push(1, &[("*.dev.example.com", "http://127.0.0.1:1")]);
        push.hostnames[0].paths = vec![
            postern_schema::wire::PathConfig {
                prefix: "/api".into(),
                service: "h2c://127.0.0.1:2".into(),
            },
            postern_schema::wire::PathConfig {
                prefix: "/api/v2".into(),
                service: "http_status:204".into(),
            },
        ];
        orchestrator.apply(push);
        let routing = orchestrator.routing();
        let ingress = routing.ingress("a.dev.example.com").expect("wildcard");
        let authority = |service: &Service| match service {
            Service::Origin { authority, .. } => authority.clone(),
            Service::Status(code) => code.to_string(),
        };
        assert_eq!(authority(ingress.service_for("/")), "127.0.0.1:1");
        assert_eq!(authority(ingress.service_for("/apiary")), "127.0.0.1:1");
        assert_eq!(authority(ingress.service_for("/api/x")), "127.0.0.1:2");
        assert_eq!(authority(ingress.service_for("/api/v2/x")), "204");
        assert!(routing.ingress("a.b.dev.example.com").is_none());
        assert!(routing.ingress("dev.example.com").is_none());
    }

    #[test]
    fn unusable_services_are_skipped_not_fatal() {
        let orchestrator = Orchestrator::new(None, AllowedOrigins::any());
        orchestrator.apply(push(
            1,
            &[
                ("a.example.com", "ftp://x"),
                ("b.example.com", "http://localhost:4000"),
            ],
        ));
        let routing = orchestrator.routing();
        assert_eq!(routing.len(), 1);
        assert!(routing.ingress("b.example.com").is_some());
    }

    #[test]
    fn hello_world_overrides_every_service() {
        let orchestrator = Orchestrator::new(Some("127.0.0.1:9".into()), AllowedOrigins::any());
        orchestrator.apply(push(1, &[("a.example.com", "http_status:500")]));
        let ingress = orchestrator
            .routing()
            .ingress("a.example.com")
            .expect("declared");
        assert!(
            matches!(&ingress.service, Service::Origin { authority, .. } if authority == "127.0.0.1:9")
        );
    }

    #[tokio::test]
    async fn requests_wait_briefly_for_a_push_in_flight() {
        let orchestrator = Arc::new(Orchestrator::new(None, AllowedOrigins::any()));
        let waiter = {
            let orchestrator = orchestrator.clone();
            tokio::spawn(async move {
                orchestrator
                    .routing_at_least(4, Duration::from_secs(5))
                    .await
                    .version
            })
        };
        orchestrator.apply(push(4, &[]));
        assert_eq!(waiter.await.expect("joins"), 4);
        let stale = orchestrator
            .routing_at_least(9, Duration::from_millis(10))
            .await;
        assert_eq!(stale.version, 4);
    }
}
