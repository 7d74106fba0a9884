//! `hostname.schema.json`: a public hostname, served by a tunnel or by weighted label routes.

use serde::{Deserialize, Serialize};

use super::Labels;
use super::certificate::HostnameCertificate;
use crate::ids::{PolicyId, TunnelId};

/// What a client writes for a hostname. Exactly one of `tunnel_id` and `routes` is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostnameSpec {
    /// The hostname, also its id.
    pub hostname: String,
    /// The origin as seen from the connector's host.
    pub service: String,
    /// The one tunnel that serves it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel_id: Option<TunnelId>,
    /// Weighted routes over tunnel labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<Vec<Route>>,
    /// Policies applied in order.
    #[serde(default)]
    pub policy_ids: Vec<PolicyId>,
    /// Path routes beside the default; the longest matching prefix wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<PathRoute>,
    /// How the connector reaches the origin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<OriginSettings>,
    /// Served on the HTTPS port without terminating TLS: the edge reads the ClientHello's
    /// server name only and carries the raw bytes to the `https://` origin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_passthrough: Option<bool>,
}

impl HostnameSpec {
    /// Whether TLS to this hostname passes through the edge to the origin.
    pub fn passes_tls_through(&self) -> bool {
        self.tls_passthrough == Some(true)
    }

    /// Which tunnels serve the hostname's default route; `None` only for a spec that was never
    /// validated.
    pub fn target(&self) -> Option<Target<'_>> {
        match (&self.tunnel_id, &self.routes) {
            (Some(id), None) => Some(Target::Tunnel(*id)),
            (None, Some(routes)) => Some(Target::Routes(routes)),
            _ => None,
        }
    }

    /// The path route whose prefix covers `path` (the longest such prefix), or `None` for
    /// the hostname's default.
    pub fn path_route(&self, path: &str) -> Option<&PathRoute> {
        self.paths
            .iter()
            .filter(|p| crate::rules::prefix_covers(&p.prefix, path))
            .max_by_key(|p| p.prefix.len())
    }

    /// How a request for `path` is served: its service, tunnels and policies.
    pub fn serving(&self, path: &str) -> Serving<'_> {
        self.serving_route(self.path_route(path))
    }

    /// How requests under `route` (one of [`HostnameSpec::paths`], or `None` for the default)
    /// are served.
    pub fn serving_route<'a>(&'a self, route: Option<&'a PathRoute>) -> Serving<'a> {
        let Some(route) = route else {
            return Serving {
                prefix: None,
                service: &self.service,
                target: self.target(),
                policy_ids: &self.policy_ids,
            };
        };
        Serving {
            prefix: Some(&route.prefix),
            service: route.service.as_deref().unwrap_or(&self.service),
            target: match &route.routes {
                Some(routes) => Some(Target::Routes(routes)),
                None => self.target(),
            },
            policy_ids: route.policy_ids.as_deref().unwrap_or(&self.policy_ids),
        }
    }

    /// Every way the hostname is served: the default, then each path route.
    pub fn servings(&self) -> impl Iterator<Item = Serving<'_>> {
        std::iter::once(None)
            .chain(self.paths.iter().map(Some))
            .map(|route| self.serving_route(route))
    }

    /// Every policy the hostname applies somewhere (the default's and the paths').
    pub fn all_policy_ids(&self) -> impl Iterator<Item = &PolicyId> {
        self.policy_ids.iter().chain(
            self.paths
                .iter()
                .flat_map(|p| p.policy_ids.iter().flatten()),
        )
    }
}

/// One path route of a hostname.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathRoute {
    /// A literal path; it covers itself and everything below it.
    pub prefix: String,
    /// The origin for requests under the prefix (default: the hostname's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The tunnels for requests under the prefix (default: the hostname's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<Vec<Route>>,
    /// The policies for requests under the prefix, replacing the hostname's (default: the
    /// hostname's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_ids: Option<Vec<PolicyId>>,
}

/// How one class of a hostname's requests is served: the default, or one path route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Serving<'a> {
    /// The path route's prefix; `None` for the hostname's default.
    pub prefix: Option<&'a str>,
    /// The origin.
    pub service: &'a str,
    /// The tunnels; `None` only for a spec that was never validated.
    pub target: Option<Target<'a>>,
    /// The policies, in order.
    pub policy_ids: &'a [PolicyId],
}

/// The tunnels behind a hostname.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// One tunnel.
    Tunnel(TunnelId),
    /// Weighted routes.
    Routes(&'a [Route]),
}

/// One weighted route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Labels a tunnel must all carry.
    pub selector: Labels,
    /// 1 to 100, relative to the other routes.
    pub weight: u32,
    /// 0 to 1: when the route's share of 5xx answers over the last minute exceeds it, the
    /// edge gives its weight to the other routes until it recovers (canary rollback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_error_rate: Option<ErrorRate>,
}

/// A share of requests, 0 to 1 (validated; JSON carries no NaN, so equality is total).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ErrorRate(pub f64);

// The rate is a finite number (JSON has no NaN or infinity), so `==` is an equivalence.
impl Eq for ErrorRate {}

/// `origin.health_check`: how the connector probes the origin.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// The path probed with GET (default `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Time between probes, in the duration grammar (default `10s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// How long a probe may take (default `2s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Consecutive failed probes after which the origin is unhealthy (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy_after: Option<u32>,
}

impl HealthCheck {
    /// The probed path.
    pub fn path(&self) -> &str {
        self.path.as_deref().unwrap_or("/")
    }

    /// Time between probes (an unparsable value, refused by validation, falls back to the
    /// default).
    pub fn interval(&self) -> std::time::Duration {
        duration_or(self.interval.as_deref(), 10)
    }

    /// How long one probe may take.
    pub fn timeout(&self) -> std::time::Duration {
        duration_or(self.timeout.as_deref(), 2)
    }

    /// Failed probes in a row that make the origin unhealthy.
    pub fn unhealthy_after(&self) -> u32 {
        self.unhealthy_after.unwrap_or(3).max(1)
    }
}

/// A probe duration, or the default of `seconds`; held within 100 ms to 1 h.
fn duration_or(text: Option<&str>, seconds: u64) -> std::time::Duration {
    text.and_then(|t| crate::duration::parse(t).ok())
        .unwrap_or(std::time::Duration::from_secs(seconds))
        .clamp(
            std::time::Duration::from_millis(100),
            std::time::Duration::from_secs(3600),
        )
}

/// How the connector reaches the origin.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginSettings {
    /// Deprecated spelling of `insecure_skip_verify`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_tls_verify: Option<bool>,
    /// Deprecated spelling of `host_header`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_host_header: Option<String>,
    /// Deprecated spelling of `server_name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_server_name: Option<String>,
    /// INSECURE: accept any certificate from an https origin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
    /// The Host header sent to the origin instead of the visitor's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_header: Option<String>,
    /// The TLS server name used for an https origin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Active probes of the origin by the connector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// How long to wait for a connection to the origin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout_ms: Option<u32>,
    /// Speak HTTP/2 (ALPN `h2`) to an https origin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http2: Option<bool>,
    /// Extra CAs (PEM) an https origin's certificate may chain to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert_pem: Option<String>,
}

impl OriginSettings {
    /// `insecure_skip_verify`, or its deprecated spelling `no_tls_verify`.
    pub fn skip_verify(&self) -> bool {
        self.insecure_skip_verify.or(self.no_tls_verify) == Some(true)
    }

    /// `host_header`, or its deprecated spelling `http_host_header`.
    pub fn host_header(&self) -> Option<&str> {
        self.host_header
            .as_deref()
            .or(self.http_host_header.as_deref())
    }

    /// `server_name`, or its deprecated spelling `origin_server_name`.
    pub fn server_name(&self) -> Option<&str> {
        self.server_name
            .as_deref()
            .or(self.origin_server_name.as_deref())
    }
}

/// A hostname as the edge returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hostname {
    /// What the client wrote.
    #[serde(flatten)]
    pub spec: HostnameSpec,
    /// What DNS answers for the hostname.
    pub addresses: Vec<String>,
    /// Increases with every change.
    pub version: u64,
    /// RFC 3339.
    pub created_at: String,
    /// The certificate that answers the hostname on HTTPS (set by the edge's API; `None` in
    /// an edge's own snapshot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<HostnameCertificate>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_prefix_picks_service_tunnels_and_policies() {
        let tunnel = TunnelId::new_random();
        let policy = PolicyId::new_random();
        let canary = Route {
            selector: Labels::from([("release".to_string(), "canary".to_string())]),
            weight: 1,
            max_error_rate: None,
        };
        let spec = HostnameSpec {
            tls_passthrough: None,
            hostname: "app.example.com".into(),
            service: "http://web".into(),
            tunnel_id: Some(tunnel),
            routes: None,
            policy_ids: vec![policy],
            paths: vec![
                PathRoute {
                    prefix: "/api".into(),
                    service: Some("h2c://api".into()),
                    routes: None,
                    policy_ids: None,
                },
                PathRoute {
                    prefix: "/api/v2".into(),
                    service: None,
                    routes: Some(vec![canary.clone()]),
                    policy_ids: Some(Vec::new()),
                },
            ],
            origin: None,
        };
        let default = spec.serving("/apiary");
        assert_eq!(default.prefix, None);
        assert_eq!(default.service, "http://web");
        assert_eq!(default.target, Some(Target::Tunnel(tunnel)));
        let api = spec.serving("/api/users");
        assert_eq!(api.prefix, Some("/api"));
        assert_eq!(api.service, "h2c://api");
        assert_eq!(api.target, Some(Target::Tunnel(tunnel)));
        assert_eq!(api.policy_ids, [policy]);
        let v2 = spec.serving("/api/v2/users");
        assert_eq!(v2.prefix, Some("/api/v2"));
        assert_eq!(v2.service, "http://web");
        assert_eq!(
            v2.target,
            Some(Target::Routes(std::slice::from_ref(&canary)))
        );
        assert!(v2.policy_ids.is_empty());
        assert_eq!(spec.servings().count(), 3);
        assert_eq!(spec.all_policy_ids().count(), 1);
    }
}
