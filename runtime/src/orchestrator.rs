//! The connector's live configuration: which hostnames it serves and how, as pushed by the
//! edge. Each push carries a version; a newer one replaces the whole table atomically, an
//! older or equal one is ignored, and requests read whichever table is current.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use postern_schema::api::{HealthCheck, OriginSettings};
use postern_schema::rules::{OriginScheme, Service, parse_service, prefix_covers, wildcard_of};
use postern_schema::wire::ConfigPush;
use tokio::sync::watch;

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

/// The hostnames served at one version.
#[derive(Debug, Default)]
pub(crate) struct Routing {
    /// The config version (0 before the first push).
    pub(crate) version: u64,
    hostnames: HashMap<String, Arc<Ingress>>,
    /// The origins to probe (`origin.health_check`), one per service as pushed.
    pub(crate) probes: Vec<Probe>,
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
}

impl Orchestrator {
    /// Serves nothing until the first push; with `hello_world`, every declared hostname goes
    /// to the built-in origin at that `host:port`.
    pub fn new(hello_world: Option<String>) -> Self {
        let (current, _) = watch::channel(Arc::new(Routing::default()));
        Self {
            current,
            hello_world,
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
            let routing = self.build(&push);
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

    fn build(&self, push: &ConfigPush) -> Routing {
        let mut hostnames = HashMap::new();
        let mut probes: Vec<Probe> = Vec::new();
        for entry in &push.hostnames {
            let Some(service) = self.service(&entry.hostname, &entry.service) else {
                continue;
            };
            let mut paths: Vec<(String, Service)> = entry
                .paths
                .iter()
                .filter_map(|path| {
                    Some((
                        path.prefix.clone(),
                        self.service(&entry.hostname, &path.service)?,
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
                    if probes.iter().any(|p| &p.text == text) {
                        continue;
                    }
                    if let Ok(service @ Service::Origin { .. }) = parse_service(text) {
                        probes.push(Probe {
                            text: text.clone(),
                            service,
                            ingress: ingress.clone(),
                            check: check.clone(),
                        });
                    }
                }
            }
            hostnames.insert(hostname, ingress);
        }
        Routing {
            version: push.version,
            hostnames,
            probes,
        }
    }

    /// A pushed service as the connector serves it (every one the built-in origin with
    /// `--hello-world`); `None`, with a warning, for one it cannot use.
    fn service(&self, hostname: &str, service: &str) -> Option<Service> {
        if let Some(address) = &self.hello_world {
            return Some(Service::Origin {
                scheme: OriginScheme::Http,
                authority: address.clone(),
                path_prefix: String::new(),
            });
        }
        match parse_service(service) {
            Ok(service) => Some(service),
            Err(message) => {
                tracing::warn!(%hostname, %message, "ignored a hostname with an unusable service");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use postern_schema::wire::HostnameConfig;

    use super::*;

    fn push(version: u64, entries: &[(&str, &str)]) -> ConfigPush {
        ConfigPush {
            version,
            hostnames: entries
                .iter()
                .map(|(hostname, service)| HostnameConfig {
                    hostname: hostname.to_string(),
                    service: service.to_string(),
                    origin: OriginSettings::default(),
                    paths: Vec::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn newer_versions_replace_the_table_and_stale_ones_are_ignored() {
        let orchestrator = Orchestrator::new(None);
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
    fn path_routes_and_wildcards_pick_the_service() {
        let orchestrator = Orchestrator::new(None);
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
        let orchestrator = Orchestrator::new(None);
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
        let orchestrator = Orchestrator::new(Some("127.0.0.1:9".into()));
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
        let orchestrator = Arc::new(Orchestrator::new(None));
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
