//! `postern_hostname`: a public hostname on the edge, served by one tunnel (`tunnel_id`)
//! or by weighted routes over tunnel labels (`routes`). The hostname is the object's id,
//! so changing it replaces the object; everything else updates in place.

use std::collections::BTreeMap;

use postern_schema::api::{
    ErrorRate, HealthCheck, Hostname, HostnameSpec, OriginSettings, PathRoute, RolloutScope, Route,
};
use postern_schema::client::{Client, ClientError};
use postern_schema::ids::{PolicyId, TunnelId};
use postern_schema::rules;
use serde::{Deserialize, Serialize};

use crate::framework::{
    Attribute, AttributePath, Attributes, Diagnostic, Diagnostics, Number, Plan, PlanRequest,
    Schema, Type, Value, async_trait,
};
use crate::postern::api_error::Operation;
use crate::postern::contract::{Findings, check_policy_ids, check_target, known_str};
use crate::postern::lifecycle::EdgeObject;
use crate::postern::live::{self, PlannedTarget};
use crate::postern::provider_data::ProviderData;

/// Terraform state of a `postern_hostname`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct HostnameModel {
    /// The FQDN, also the id.
    pub(crate) hostname: String,
    /// The origin as seen from the connector's host.
    pub(crate) service: String,
    /// The one tunnel serving it.
    pub(crate) tunnel_id: Option<String>,
    /// Weighted routes over tunnel labels.
    pub(crate) routes: Option<Vec<RouteModel>>,
    /// Policies, in order.
    pub(crate) policy_ids: Option<Vec<String>>,
    /// Path routes beside the default.
    pub(crate) paths: Option<Vec<PathModel>>,
    /// How the connector reaches the origin, as written.
    pub(crate) origin: Option<OriginModel>,
    /// TLS passes through the edge to the `https://` origin, as written.
    pub(crate) tls_passthrough: Option<bool>,
    /// What DNS answers for the hostname.
    pub(crate) addresses: Option<Vec<String>>,
    /// The certificate that answers it on HTTPS.
    pub(crate) certificate: Option<CertificateSummary>,
}

/// `certificate = { ... }`: computed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct CertificateSummary {
    /// The certificate's id on the edge.
    pub(crate) id: Option<String>,
    /// `acme`, `uploaded` or `edge_ca`.
    pub(crate) source: Option<String>,
    /// `pending`, `valid` or `failed`.
    pub(crate) status: Option<String>,
    /// RFC 3339.
    pub(crate) not_after: Option<String>,
}

/// One element of `routes`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct RouteModel {
    /// Labels a tunnel must all carry.
    pub(crate) selector: BTreeMap<String, String>,
    /// 1 to 100.
    pub(crate) weight: Number,
    /// 0 to 1: the 5xx share over a minute above which the route is ejected.
    pub(crate) max_error_rate: Option<Number>,
}

/// One element of `paths`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct PathModel {
    /// The prefix it covers.
    pub(crate) prefix: String,
    /// Its origin (default: the hostname's).
    pub(crate) service: Option<String>,
    /// Its routes (default: the hostname's tunnel or routes).
    pub(crate) routes: Option<Vec<RouteModel>>,
    /// Its policies, replacing the hostname's (default: the hostname's).
    pub(crate) policy_ids: Option<Vec<String>>,
}

/// `origin = { ... }`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct OriginModel {
    /// Deprecated spelling of `insecure_skip_verify`.
    pub(crate) no_tls_verify: Option<bool>,
    /// Deprecated spelling of `host_header`.
    pub(crate) http_host_header: Option<String>,
    /// Deprecated spelling of `server_name`.
    pub(crate) origin_server_name: Option<String>,
    /// Skip verifying an https origin's certificate.
    pub(crate) insecure_skip_verify: Option<bool>,
    /// Host header sent to the origin.
    pub(crate) host_header: Option<String>,
    /// TLS server name for an https origin.
    pub(crate) server_name: Option<String>,
    /// The connector's probes of the origin.
    pub(crate) health_check: Option<HealthCheckModel>,
    /// Connect timeout in milliseconds.
    pub(crate) connect_timeout_ms: Option<Number>,
    /// HTTP/2 by ALPN to an https origin.
    pub(crate) http2: Option<bool>,
    /// Extra CAs for an https origin, PEM.
    pub(crate) ca_cert_pem: Option<String>,
}

/// `origin.health_check = { ... }`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct HealthCheckModel {
    /// The probed path.
    pub(crate) path: Option<String>,
    /// Time between probes.
    pub(crate) interval: Option<String>,
    /// How long a probe may take.
    pub(crate) timeout: Option<String>,
    /// Failed probes in a row that make the origin unhealthy.
    pub(crate) unhealthy_after: Option<Number>,
}

impl HostnameModel {
    /// What the provider writes to the edge; a value the edge could not take becomes a
    /// diagnostic on its attribute.
    fn spec(&self) -> Result<HostnameSpec, Diagnostic> {
        let tunnel_id = match &self.tunnel_id {
            None => None,
            Some(text) => Some(text.parse::<TunnelId>().map_err(|_| {
                invalid(
                    AttributePath::root("tunnel_id"),
                    format!("tunnel_id {text:?} is not a tunnel UUID"),
                )
            })?),
        };
        let policy_ids = parse_policy_ids(
            self.policy_ids.as_deref().unwrap_or_default(),
            AttributePath::root("policy_ids"),
        )?;
        let routes = match &self.routes {
            None => None,
            Some(routes) => Some(routes_spec(routes, AttributePath::root("routes"))?),
        };
        let mut paths = Vec::new();
        for (i, path) in self.paths.iter().flatten().enumerate() {
            let at = AttributePath::root("paths").index(i as i64);
            paths.push(PathRoute {
                prefix: path.prefix.clone(),
                service: path.service.clone(),
                routes: match &path.routes {
                    None => None,
                    Some(routes) => Some(routes_spec(routes, at.clone().attribute("routes"))?),
                },
                policy_ids: match &path.policy_ids {
                    None => None,
                    Some(ids) => Some(parse_policy_ids(ids, at.attribute("policy_ids"))?),
                },
            });
        }
        let origin = match &self.origin {
            None => None,
            Some(o) => Some(OriginSettings {
                no_tls_verify: o.no_tls_verify,
                http_host_header: o.http_host_header.clone(),
                origin_server_name: o.origin_server_name.clone(),
                insecure_skip_verify: o.insecure_skip_verify,
                host_header: o.host_header.clone(),
                server_name: o.server_name.clone(),
                health_check: match &o.health_check {
                    None => None,
                    Some(h) => Some(HealthCheck {
                        path: h.path.clone(),
                        interval: h.interval.clone(),
                        timeout: h.timeout.clone(),
                        unhealthy_after: match &h.unhealthy_after {
                            None => None,
                            Some(n) => Some(small_integer(n).ok_or_else(|| {
                                invalid(
                                    AttributePath::root("origin")
                                        .attribute("health_check")
                                        .attribute("unhealthy_after"),
                                    format!("unhealthy_after {n} must be a whole number"),
                                )
                            })?),
                        },
                    }),
                },
                connect_timeout_ms: match &o.connect_timeout_ms {
                    None => None,
                    Some(ms) => Some(small_integer(ms).ok_or_else(|| {
                        invalid(
                            AttributePath::root("origin").attribute("connect_timeout_ms"),
                            format!(
                                "connect_timeout_ms {ms} must be a whole number of milliseconds"
                            ),
                        )
                    })?),
                },
                http2: o.http2,
                ca_cert_pem: o.ca_cert_pem.clone(),
            }),
        };
        Ok(HostnameSpec {
            tls_passthrough: self.tls_passthrough,
            hostname: self.hostname.clone(),
            service: self.service.clone(),
            tunnel_id,
            routes,
            policy_ids,
            paths,
            origin,
        })
    }

    /// The state for a hostname as the edge returned it. Ids that Terraform had in
    /// another spelling of the same UUID (`known`: plan or prior state) keep it.
    fn from_hostname(hostname: &Hostname, known: Option<&HostnameModel>) -> Self {
        let spec = &hostname.spec;
        let tunnel_id = spec.tunnel_id.map(|id| {
            known
                .and_then(|k| k.tunnel_id.clone())
                .filter(|text| text.parse::<TunnelId>().ok() == Some(id))
                .unwrap_or_else(|| id.to_string())
        });
        let policy_ids = policy_texts(
            &spec.policy_ids,
            known.and_then(|k| k.policy_ids.as_deref()),
        );
        let known_paths = known.and_then(|k| k.paths.as_deref()).unwrap_or_default();
        // `paths = []` stays `[]`; unset stays null.
        let written_empty = known
            .and_then(|k| k.paths.as_ref())
            .is_some_and(Vec::is_empty);
        let paths = (!spec.paths.is_empty() || written_empty).then(|| {
            spec.paths
                .iter()
                .enumerate()
                .map(|(i, path)| PathModel {
                    prefix: path.prefix.clone(),
                    service: path.service.clone(),
                    routes: path.routes.as_deref().map(route_models),
                    policy_ids: path.policy_ids.as_deref().map(|ids| {
                        policy_texts(
                            ids,
                            known_paths.get(i).and_then(|k| k.policy_ids.as_deref()),
                        )
                    }),
                })
                .collect()
        });
        Self {
            hostname: spec.hostname.clone(),
            service: spec.service.clone(),
            tunnel_id,
            routes: spec.routes.as_deref().map(route_models),
            policy_ids: Some(policy_ids),
            paths,
            origin: spec.origin.as_ref().map(|o| OriginModel {
                no_tls_verify: o.no_tls_verify,
                http_host_header: o.http_host_header.clone(),
                origin_server_name: o.origin_server_name.clone(),
                insecure_skip_verify: o.insecure_skip_verify,
                host_header: o.host_header.clone(),
                server_name: o.server_name.clone(),
                health_check: o.health_check.as_ref().map(|h| HealthCheckModel {
                    path: h.path.clone(),
                    interval: h.interval.clone(),
                    timeout: h.timeout.clone(),
                    unhealthy_after: h.unhealthy_after.map(Number::from),
                }),
                connect_timeout_ms: o.connect_timeout_ms.map(Number::from),
                http2: o.http2,
                ca_cert_pem: o.ca_cert_pem.clone(),
            }),
            tls_passthrough: spec.tls_passthrough,
            addresses: Some(hostname.addresses.clone()),
            certificate: hostname.certificate.as_ref().map(|c| CertificateSummary {
                id: Some(c.id.clone()),
                source: Some(c.source.as_str().to_string()),
                status: Some(c.status.as_str().to_string()),
                not_after: c.not_after.clone(),
            }),
        }
    }
}

/// The `postern_hostname` resource.
pub(crate) struct HostnameResource;

/// A hostname is its own id.
#[async_trait]
impl EdgeObject for HostnameResource {
    type Model = HostnameModel;
    type Spec = HostnameSpec;
    type Object = Hostname;
    type Id = String;

    const KIND: &'static str = "hostname";
    const NAME_ATTRIBUTE: &'static str = "hostname";

    fn type_name(&self) -> &'static str {
        "postern_hostname"
    }

    fn schema(&self) -> Schema {
        Schema::new(
            "A public hostname on the edge. Requests for it pass its policies, then go \
             through a healthy connector of its tunnel (`tunnel_id`) or of a tunnel picked \
             by weighted label routes (`routes`) to `service`. DNS answers for it at once.",
        )
        .attribute(
            "hostname",
            Attribute::string(
                "The public hostname, a lowercase fully qualified domain name inside one of \
                 the edge's zones, e.g. `app.example.com`; or a wildcard such as \
                 `*.dev.example.com`, which serves (and DNS answers) every name exactly one \
                 label below it that is not a hostname of its own: an exact hostname wins. \
                 It is the object's id: changing it replaces the hostname.",
            )
            .required()
            .requires_replace(),
        )
        .attribute(
            "service",
            Attribute::string(
                "The origin as seen from the connector's host: `http://host[:port][/path]`, \
                 `https://…` (HTTP/1.1, or HTTP/2 with `origin.http2`), `h2c://host:port` \
                 (HTTP/2 without TLS, e.g. a gRPC server), or `http_status:NNN` to answer \
                 every request with that status.",
            )
            .required(),
        )
        .attribute(
            "tunnel_id",
            Attribute::string(
                "The one tunnel that serves the hostname (a `postern_tunnel`'s `id`). Set \
                 exactly one of `tunnel_id` and `routes`.",
            )
            .optional(),
        )
        .attribute(
            "routes",
            Attribute::list_nested(
                route_attributes(),
                "Weighted routes over tunnel labels: a request picks a route by weight, then \
                 a healthy connector of a tunnel whose labels match its selector, failing \
                 over to the other routes. Set exactly one of `tunnel_id` and `routes`.",
            )
            .optional(),
        )
        .attribute(
            "policy_ids",
            Attribute::list(
                Type::String,
                "Ids of `postern_policy` objects applied in order; the first deny wins. \
                 Defaults to `[]`.",
            )
            .optional()
            .computed()
            .default(Value::List(Vec::new())),
        )
        .attribute(
            "tls_passthrough",
            Attribute::bool(
                "Serve the hostname on the edge's HTTPS port without terminating TLS: the edge \
                 reads only the server name of the visitor's ClientHello and carries the raw \
                 bytes to the origin, which presents its own certificate (end-to-end TLS). \
                 `service` must then be `https://host[:port]` without a path, `origin` is left \
                 out, and the policies may use only `allow_ips`, `deny_ips` and `rate_limit` \
                 (one connection counts as one request).",
            )
            .optional(),
        )
        .attribute(
            "paths",
            Attribute::list_nested(
                Attributes::new()
                    .with(
                        "prefix",
                        Attribute::string(
                            "A literal path starting with `/` that covers itself and \
                             everything below it: `/api` covers `/api` and `/api/users`, not \
                             `/apiary`; `/` covers every path.",
                        )
                        .required(),
                    )
                    .with(
                        "service",
                        Attribute::string(
                            "The origin for requests under the prefix, written as the \
                             hostname's `service`; defaults to the hostname's.",
                        )
                        .optional(),
                    )
                    .with(
                        "routes",
                        Attribute::list_nested(
                            route_attributes(),
                            "Weighted routes over tunnel labels for requests under the \
                             prefix; defaults to the hostname's `tunnel_id` or `routes`.",
                        )
                        .optional(),
                    )
                    .with(
                        "policy_ids",
                        Attribute::list(
                            Type::String,
                            "Policies for requests under the prefix, in order, replacing the \
                             hostname's (`[]` applies none); when unset, the hostname's apply.",
                        )
                        .optional(),
                    ),
                "Path routes beside the hostname's default, like cloudflared's ingress rules \
                 with a `path`: a request whose path lies under a `prefix` goes to that \
                 entry's `service` through its `routes`, after its `policy_ids`; the longest \
                 matching prefix wins; requests under no prefix use the hostname's own \
                 settings. Set `service`, `routes` or both. On a hostname with paths the \
                 edge routes the canonical path (`/a/../api` is `/api`) and refuses paths \
                 origins read in different ways (`%2f`).",
            )
            .optional(),
        )
        .attribute(
            "origin",
            Attribute::single_nested(
                Attributes::new()
                    .with(
                        "insecure_skip_verify",
                        Attribute::bool(
                            "**Insecure.** Accept any certificate from an https origin: anyone \
                             between the connector and the origin can then read and change the \
                             traffic. Prefer `ca_cert_pem` (trust a private CA) and \
                             `server_name` (the name the certificate carries).",
                        )
                        .optional(),
                    )
                    .with(
                        "host_header",
                        Attribute::string(
                            "Host header sent to the origin instead of the visitor's.",
                        )
                        .optional(),
                    )
                    .with(
                        "server_name",
                        Attribute::string(
                            "The name an https origin's certificate is verified against and sent \
                             as SNI, instead of the service's host.",
                        )
                        .optional(),
                    )
                    .with(
                        "no_tls_verify",
                        Attribute::bool("Deprecated: use `insecure_skip_verify`.")
                            .optional()
                            .deprecated(
                                "origin.no_tls_verify is deprecated: use \
                                 origin.insecure_skip_verify, which means the same.",
                            ),
                    )
                    .with(
                        "http_host_header",
                        Attribute::string("Deprecated: use `host_header`.")
                            .optional()
                            .deprecated(
                                "origin.http_host_header is deprecated: use \
                                 origin.host_header, which means the same.",
                            ),
                    )
                    .with(
                        "origin_server_name",
                        Attribute::string("Deprecated: use `server_name`.")
                            .optional()
                            .deprecated(
                                "origin.origin_server_name is deprecated: use \
                                 origin.server_name, which means the same.",
                            ),
                    )
                    .with(
                        "health_check",
                        Attribute::single_nested(
                            Attributes::new()
                                .with(
                                    "path",
                                    Attribute::string("The path probed with GET (default `/`).")
                                        .optional(),
                                )
                                .with(
                                    "interval",
                                    Attribute::string(
                                        "Time between probes, e.g. `10s` (default), `500ms`.",
                                    )
                                    .optional(),
                                )
                                .with(
                                    "timeout",
                                    Attribute::string("How long a probe may take (default `2s`).")
                                        .optional(),
                                )
                                .with(
                                    "unhealthy_after",
                                    Attribute::number(
                                        "Failed probes in a row (an error, a timeout or a 5xx) \
                                         after which the origin is unhealthy (default 3).",
                                    )
                                    .optional(),
                                ),
                            "The connector probes the origin and reports its health to the \
                             edge, which routes around a connector whose origin is unhealthy \
                             (to another route's, or 503 when none is left) until a probe \
                             succeeds again.",
                        )
                        .optional(),
                    )
                    .with(
                        "connect_timeout_ms",
                        Attribute::number(
                            "How long the connector waits for a connection to the origin, \
                             in milliseconds (1 to 600000).",
                        )
                        .optional(),
                    )
                    .with(
                        "http2",
                        Attribute::bool(
                            "Speak HTTP/2 to an `https://` origin (ALPN `h2`), e.g. a gRPC server \
                             behind TLS; the default speaks HTTP/1.1. For HTTP/2 without TLS \
                             write the service as `h2c://host:port`.",
                        )
                        .optional(),
                    )
                    .with(
                        "ca_cert_pem",
                        Attribute::string(
                            "PEM certificates of CAs an https origin's certificate may chain to, \
                             trusted for this hostname besides the connector's system roots and \
                             `--origin-ca`.",
                        )
                        .optional(),
                    ),
                "How the connector reaches the origin; every setting is optional.",
            )
            .optional(),
        )
        .attribute(
            "addresses",
            Attribute::list(
                Type::String,
                "What the edge's DNS answers for the hostname (its public addresses).",
            )
            .computed()
            .stable(),
        )
        .attribute(
            "certificate",
            Attribute::single_nested(
                Attributes::new()
                    .with(
                        "id",
                        Attribute::string(
                            "The certificate's id on the edge (see `postern_certificate`, or \
                             `GET /v1/certificates/{id}`).",
                        )
                        .computed(),
                    )
                    .with(
                        "source",
                        Attribute::string(
                            "`uploaded` (a `postern_certificate` upload), `acme` (obtained by \
                             the edge), or `edge_ca` (the edge's visitors' CA, which only clients \
                             that trust it accept).",
                        )
                        .computed(),
                    )
                    .with(
                        "status",
                        Attribute::string(
                            "`valid` (served), `pending` (being obtained) or `failed`.",
                        )
                        .computed(),
                    )
                    .with(
                        "not_after",
                        Attribute::string(
                            "When it expires (RFC 3339); null while none was issued, and for \
                             `edge_ca` (issued on demand by each edge node).",
                        )
                        .computed(),
                    ),
                "The certificate that answers the hostname on HTTPS: an uploaded one whose \
                 names cover it (exact before wildcard), else its ACME one, else one from the \
                 edge's visitors' CA; while no public certificate is valid and one is being \
                 obtained, that one. Read on every refresh, so `terraform plan` shows it and a \
                 `check` block can assert `certificate.status == \"valid\"`. A change to the \
                 hostname's other attributes keeps it as it was (the next refresh reads it \
                 again), so a plan shows no churn.",
            )
            .computed()
            .stable(),
        )
    }

    fn validate(&self, config: &Value, diagnostics: &mut Diagnostics) {
        let mut findings = Findings::new();
        if let Some(hostname) = known_str(config, "hostname") {
            findings.rule(
                AttributePath::root("hostname"),
                rules::check_hostname(hostname),
            );
        }
        if let Some(service) = known_str(config, "service") {
            findings.rule(
                AttributePath::root("service"),
                rules::parse_service(service),
            );
            let passthrough = matches!(config.get("tls_passthrough"), Some(Value::Bool(true)));
            if passthrough
                && let Ok(parsed) = rules::parse_service(service)
                && rules::passthrough_address(&parsed).is_none()
            {
                findings.add(
                    AttributePath::root("service"),
                    "with tls_passthrough the service must be https://host[:port] without a \
                     path (the origin speaks TLS itself)",
                );
            }
        }
        check_target(&mut findings, config);
        let paths = config.get("paths").unwrap_or(&Value::Null);
        for (i, path) in paths.as_elements().unwrap_or_default().iter().enumerate() {
            let at = AttributePath::root("paths").index(i as i64);
            if let Some(prefix) = known_str(path, "prefix") {
                findings.rule(
                    at.clone().attribute("prefix"),
                    rules::check_path_prefix(prefix),
                );
            }
            if let Some(service) = known_str(path, "service") {
                findings.rule(
                    at.clone().attribute("service"),
                    rules::parse_service(service),
                );
            }
            let service = path.get("service").unwrap_or(&Value::Null);
            let routes = path.get("routes").unwrap_or(&Value::Null);
            if service.is_null() && routes.is_null() {
                findings.add(at, "set service or routes (or both) for a path route");
            }
        }
        check_policy_ids(&mut findings, config);
        if let Some(origin) = config.get("origin") {
            for name in ["http_host_header", "host_header"] {
                if let Some(header) = known_str(origin, name)
                    && (header.is_empty()
                        || header.contains(char::is_whitespace)
                        || header.chars().any(|c| c.is_control()))
                {
                    findings.add(
                        AttributePath::root("origin").attribute(name),
                        format!("{name} must be a host name, optionally with a port"),
                    );
                }
            }
            deprecation_warnings(&self.schema(), origin, diagnostics);
        }
        findings.schema::<HostnameSpec>(config, &self.schema().value_type());
        findings.report(diagnostics);
    }

    /// Plan-time truth: for a hostname being created or changed, warnings about what the
    /// edge's live state means for it (see [`live`]).
    async fn plan(&self, data: &ProviderData, req: &PlanRequest, plan: &mut Plan) {
        let Some(hostname) = plan.planned.get("hostname").and_then(Value::as_str) else {
            return;
        };
        if plan.planned.get("routes").is_some_and(|r| !r.is_null())
            || plan
                .planned
                .get("paths")
                .and_then(Value::as_elements)
                .is_some_and(|paths| {
                    paths
                        .iter()
                        .any(|p| p.get("routes").is_some_and(|r| !r.is_null()))
                })
        {
            // Every plan, changed or not: an ejected canary is news while it lasts.
            live::check_ejected(&data.live, hostname, &mut plan.diagnostics).await;
        }
        if req.prior.as_ref() == Some(&plan.planned) {
            return;
        }
        let Some(target) = planned_target(&plan.planned) else {
            return;
        };
        live::check_hostname(&data.live, hostname, &target, &mut plan.diagnostics).await;
    }

    fn spec(&self, model: &HostnameModel) -> Result<HostnameSpec, Diagnostic> {
        model.spec()
    }

    fn spec_name(spec: &HostnameSpec) -> &str {
        &spec.hostname
    }

    fn state_id(model: &HostnameModel) -> Option<&str> {
        Some(&model.hostname)
    }

    fn parse_import_id(&self, text: &str) -> Result<String, Diagnostic> {
        let name = text.trim();
        match rules::check_hostname(name) {
            Ok(_) => Ok(name.to_owned()),
            Err(message) => Err(Diagnostic::error(
                "Invalid hostname",
                format!(
                    "{message}. Import a postern_hostname by the hostname itself, e.g. \
                     `terraform import postern_hostname.app app.example.com`."
                ),
            )),
        }
    }

    fn id(hostname: &Hostname) -> String {
        hostname.spec.hostname.clone()
    }

    fn version(hostname: &Hostname) -> u64 {
        hostname.version
    }

    fn describe(hostname: &Hostname) -> String {
        format!("the hostname {:?}", hostname.spec.hostname)
    }

    fn matches(hostname: &Hostname, spec: &HostnameSpec) -> bool {
        hostname.spec == *spec
    }

    fn scope(name: &String) -> RolloutScope {
        RolloutScope::Hostname(name.clone())
    }

    async fn create_object(
        &self,
        client: &Client,
        spec: &HostnameSpec,
    ) -> Result<Hostname, ClientError> {
        client.create_hostname(spec).await
    }

    async fn read_object(&self, client: &Client, name: &String) -> Result<Hostname, ClientError> {
        client.hostname(name).await
    }

    /// The hostname is the spec's: a changed one replaces the object instead.
    async fn replace_object(
        &self,
        client: &Client,
        _name: &String,
        spec: &HostnameSpec,
        if_match: Option<u64>,
    ) -> Result<Hostname, ClientError> {
        client.replace_hostname(spec, if_match).await
    }

    async fn delete_object(
        &self,
        client: &Client,
        name: &String,
        if_match: Option<u64>,
    ) -> Result<(), ClientError> {
        client.delete_hostname(name, if_match).await
    }

    async fn find_object(
        &self,
        client: &Client,
        spec: &HostnameSpec,
    ) -> Result<Option<Hostname>, ClientError> {
        match client.hostname(&spec.hostname).await {
            Ok(hostname) => Ok(Some(hostname)),
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(error),
        }
    }

    async fn state(
        &self,
        _data: &ProviderData,
        hostname: &Hostname,
        known: Option<&HostnameModel>,
        op: Operation<'_>,
        _diagnostics: &mut Diagnostics,
    ) -> HostnameModel {
        let mut model = HostnameModel::from_hostname(hostname, known);
        if op.action == "updating" {
            // The plan kept the certificate (it is stable, and a hostname is replaced, not
            // updated, when its name changes); the state must say what the plan said even if
            // the edge moved on meanwhile (say, a pending certificate was just issued).
            model.certificate = known.and_then(|k| k.certificate.clone());
        }
        model
    }
}

/// The attributes of one weighted route, in `routes` and in `paths[*].routes`.
fn route_attributes() -> Attributes {
    Attributes::new()
        .with(
            "selector",
            Attribute::map(
                Type::String,
                "Labels a tunnel must all carry to serve this route, e.g. \
                 `{ release = \"canary\" }`.",
            )
            .required(),
        )
        .with(
            "weight",
            Attribute::number(
                "Relative share of requests, 1 to 100, compared with the other routes.",
            )
            .required(),
        )
        .with(
            "max_error_rate",
            Attribute::number(
                "0 to 1: when the route's share of 5xx answers over the last minute exceeds \
                 it (after at least 20 answers), the edge gives the route's weight to the \
                 other routes (automatic canary rollback) until it recovers: after 10 \
                 seconds, and while its connectors report the origin healthy. `plan` warns \
                 while a route is ejected.",
            )
            .optional(),
        )
}

/// A warning for each deprecated `origin` attribute the configuration sets, naming the one
/// to use instead.
fn deprecation_warnings(schema: &Schema, origin: &Value, diagnostics: &mut Diagnostics) {
    let Some((_, origin_attribute)) = schema.attributes().iter().find(|(n, _)| *n == "origin")
    else {
        return;
    };
    let crate::framework::AttributeKind::Nested(_, attributes) = origin_attribute.kind() else {
        return;
    };
    for (name, attribute) in attributes.iter() {
        if let Some(message) = attribute.deprecation()
            && origin.get(name).is_some_and(|v| !v.is_null())
        {
            diagnostics.push(
                Diagnostic::warning("Deprecated attribute", message)
                    .at(AttributePath::root("origin").attribute(name)),
            );
        }
    }
}

/// Where the planned hostname sends its requests; `None` while anything about it is unknown.
fn planned_target(planned: &Value) -> Option<PlannedTarget> {
    if let Some(id) = planned.get("tunnel_id").and_then(Value::as_str) {
        return Some(PlannedTarget::Tunnel(id.to_owned()));
    }
    let mut routes = Vec::new();
    for route in planned.get("routes")?.as_elements()? {
        let mut selector = BTreeMap::new();
        for (key, value) in route.get("selector")?.as_entries()? {
            selector.insert(key.clone(), value.as_str()?.to_owned());
        }
        let weight = route
            .get("weight")?
            .as_number()?
            .to_u64()
            .and_then(|w| u32::try_from(w).ok())?;
        routes.push((selector, weight));
    }
    Some(PlannedTarget::Routes(routes))
}

/// Policy ids as written, each a UUID; a diagnostic at `at[i]` for one that is not.
fn parse_policy_ids(texts: &[String], at: AttributePath) -> Result<Vec<PolicyId>, Diagnostic> {
    let mut ids = Vec::with_capacity(texts.len());
    for (i, text) in texts.iter().enumerate() {
        ids.push(text.parse::<PolicyId>().map_err(|_| {
            invalid(
                at.clone().index(i as i64),
                format!("{text:?} is not a policy UUID"),
            )
        })?);
    }
    Ok(ids)
}

/// Weighted routes as written; a diagnostic at `at[i].weight` for a weight out of range.
fn routes_spec(routes: &[RouteModel], at: AttributePath) -> Result<Vec<Route>, Diagnostic> {
    let mut out = Vec::with_capacity(routes.len());
    for (i, route) in routes.iter().enumerate() {
        let weight = small_integer(&route.weight).ok_or_else(|| {
            invalid(
                at.clone().index(i as i64).attribute("weight"),
                format!("weight {} must be between 1 and 100", route.weight),
            )
        })?;
        out.push(Route {
            selector: route.selector.clone(),
            weight,
            max_error_rate: route.max_error_rate.as_ref().map(|n| ErrorRate(n.to_f64())),
        });
    }
    Ok(out)
}

/// Routes as state.
fn route_models(routes: &[Route]) -> Vec<RouteModel> {
    routes
        .iter()
        .map(|r| RouteModel {
            selector: r.selector.clone(),
            weight: Number::from(r.weight),
            max_error_rate: r
                .max_error_rate
                .and_then(|rate| Number::from_f64_shortest(rate.0)),
        })
        .collect()
}

/// Policy ids as state; ids Terraform had in another spelling of the same UUID (`known`)
/// keep it.
fn policy_texts(ids: &[PolicyId], known: Option<&[String]>) -> Vec<String> {
    let known = known.unwrap_or_default();
    ids.iter()
        .enumerate()
        .map(|(i, id)| {
            known
                .get(i)
                .filter(|text| text.parse::<PolicyId>().ok() == Some(*id))
                .cloned()
                .unwrap_or_else(|| id.to_string())
        })
        .collect()
}

/// A whole number that fits `u32`.
fn small_integer(number: &Number) -> Option<u32> {
    number.to_u64().and_then(|n| u32::try_from(n).ok())
}

fn invalid(path: AttributePath, message: String) -> Diagnostic {
    Diagnostic::error(
        "Invalid hostname",
        format!("{message}. Fix the configuration and apply again."),
    )
    .at(path)
}
