//! `postern_tcp_service`: a raw TCP service, a public port on the edge (`listen_port`, or one
//! the edge picks from its `--tcp-ports` range) whose connections go through a connector of
//! its tunnel (`tunnel_id`) or of a tunnel picked by label routes (`routes`) to a `tcp://`
//! origin. Everything updates in place; a port the edge picked stays the service's.

use std::collections::BTreeMap;

use postern_schema::api::{RolloutScope, Route, TcpService, TcpServiceSpec};
use postern_schema::client::{Client, ClientError};
use postern_schema::ids::{PolicyId, TcpServiceId, TunnelId};
use postern_schema::rules;
use serde::{Deserialize, Serialize};

use crate::framework::{
    Attribute, AttributePath, Attributes, Diagnostic, Diagnostics, Number, Plan, PlanRequest,
    Schema, Type, Value, async_trait,
};
use crate::postern::api_error::Operation;
use crate::postern::contract::{Findings, check_policy_ids, check_target, known_str};
use crate::postern::lifecycle::EdgeObject;
use crate::postern::provider_data::ProviderData;

/// Terraform state of a `postern_tcp_service`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct TcpServiceModel {
    /// The service's UUID; `None` until created.
    pub(crate) id: Option<String>,
    /// Unique name.
    pub(crate) name: String,
    /// The origin, `tcp://host:port`.
    pub(crate) service: String,
    /// The one tunnel serving it.
    pub(crate) tunnel_id: Option<String>,
    /// Weighted routes over tunnel labels.
    pub(crate) routes: Option<Vec<RouteModel>>,
    /// Policies, in order.
    pub(crate) policy_ids: Option<Vec<String>>,
    /// The public port.
    pub(crate) listen_port: Option<Number>,
    /// The public `address:port`.
    pub(crate) listen: Option<String>,
}

/// One element of `routes`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct RouteModel {
    /// Labels a tunnel must all carry.
    pub(crate) selector: BTreeMap<String, String>,
    /// 1 to 100.
    pub(crate) weight: Number,
}

impl TcpServiceModel {
    /// What the provider writes to the edge; a value the edge could not take becomes a
    /// diagnostic on its attribute.
    fn spec(&self) -> Result<TcpServiceSpec, Diagnostic> {
        let tunnel_id = match &self.tunnel_id {
            None => None,
            Some(text) => Some(text.parse::<TunnelId>().map_err(|_| {
                invalid(
                    AttributePath::root("tunnel_id"),
                    format!("tunnel_id {text:?} is not a tunnel UUID"),
                )
            })?),
        };
        let mut policy_ids = Vec::new();
        for (i, text) in self.policy_ids.iter().flatten().enumerate() {
            policy_ids.push(text.parse::<PolicyId>().map_err(|_| {
                invalid(
                    AttributePath::root("policy_ids").index(i as i64),
                    format!("{text:?} is not a policy UUID"),
                )
            })?);
        }
        let routes = match &self.routes {
            None => None,
            Some(routes) => {
                let mut out = Vec::with_capacity(routes.len());
                for (i, route) in routes.iter().enumerate() {
                    let weight = route
                        .weight
                        .to_u64()
                        .and_then(|w| u32::try_from(w).ok())
                        .ok_or_else(|| {
                            invalid(
                                AttributePath::root("routes")
                                    .index(i as i64)
                                    .attribute("weight"),
                                format!("weight {} must be between 1 and 100", route.weight),
                            )
                        })?;
                    out.push(Route {
                        max_error_rate: None,
                        selector: route.selector.clone(),
                        weight,
                    });
                }
                Some(out)
            }
        };
        let listen_port = match &self.listen_port {
            None => None,
            Some(port) => Some(
                port.to_u64()
                    .and_then(|p| u16::try_from(p).ok())
                    .filter(|p| *p > 0)
                    .ok_or_else(|| {
                        invalid(
                            AttributePath::root("listen_port"),
                            format!("listen_port {port} must be a port from 1 to 65535"),
                        )
                    })?,
            ),
        };
        Ok(TcpServiceSpec {
            name: self.name.clone(),
            service: self.service.clone(),
            tunnel_id,
            routes,
            policy_ids,
            listen_port,
        })
    }

    /// The state for a service as the edge returned it. Ids that Terraform had in another
    /// spelling of the same UUID (`known`: plan or prior state) keep it.
    fn from_service(service: &TcpService, known: Option<&TcpServiceModel>) -> Self {
        let spec = &service.spec;
        let tunnel_id = spec.tunnel_id.map(|id| {
            known
                .and_then(|k| k.tunnel_id.clone())
                .filter(|text| text.parse::<TunnelId>().ok() == Some(id))
                .unwrap_or_else(|| id.to_string())
        });
        let known_policies = known
            .and_then(|k| k.policy_ids.as_deref())
            .unwrap_or_default();
        let policy_ids = spec
            .policy_ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                known_policies
                    .get(i)
                    .filter(|text| text.parse::<PolicyId>().ok() == Some(*id))
                    .cloned()
                    .unwrap_or_else(|| id.to_string())
            })
            .collect();
        Self {
            id: Some(service.id.to_string()),
            name: spec.name.clone(),
            service: spec.service.clone(),
            tunnel_id,
            routes: spec.routes.as_ref().map(|routes| {
                routes
                    .iter()
                    .map(|r| RouteModel {
                        selector: r.selector.clone(),
                        weight: Number::from(r.weight),
                    })
                    .collect()
            }),
            policy_ids: Some(policy_ids),
            listen_port: spec.listen_port.map(|p| Number::from(u32::from(p))),
            listen: Some(service.listen.clone()),
        }
    }
}

/// The `postern_tcp_service` resource.
pub(crate) struct TcpServiceResource;

#[async_trait]
impl EdgeObject for TcpServiceResource {
    type Model = TcpServiceModel;
    type Spec = TcpServiceSpec;
    type Object = TcpService;
    type Id = TcpServiceId;

    const KIND: &'static str = "TCP service";
    const NAME_ATTRIBUTE: &'static str = "name";

    fn type_name(&self) -> &'static str {
        "postern_tcp_service"
    }

    fn schema(&self) -> Schema {
        Schema::new(
            "A raw TCP service (SSH, PostgreSQL, Redis, MQTT, …): a public port on the edge \
             whose connections pass the service's policies (IP lists, connections per second \
             per client), then go through a healthy connector of its tunnel (`tunnel_id`) or \
             of a tunnel picked by weighted label routes (`routes`) to `service`. Bytes flow \
             both ways, half-close included; the edge terminates nothing.",
        )
        .attribute(
            "id",
            Attribute::string("The service's UUID, assigned by the edge.")
                .computed()
                .stable(),
        )
        .attribute(
            "name",
            Attribute::string(
                "Unique name among TCP services: 1 to 63 lowercase letters, digits and `-`, \
                 starting and ending with a letter or digit.",
            )
            .required(),
        )
        .attribute(
            "service",
            Attribute::string(
                "The origin as seen from the connector's host: `tcp://host:port`, e.g. \
                 `tcp://127.0.0.1:22` or `tcp://[::1]:5432`.",
            )
            .required(),
        )
        .attribute(
            "tunnel_id",
            Attribute::string(
                "The one tunnel that serves the service (a `postern_tunnel`'s `id`). Set \
                 exactly one of `tunnel_id` and `routes`.",
            )
            .optional(),
        )
        .attribute(
            "routes",
            Attribute::list_nested(
                Attributes::new()
                    .with(
                        "selector",
                        Attribute::map(
                            Type::String,
                            "Labels a tunnel must all carry to serve this route.",
                        )
                        .required(),
                    )
                    .with(
                        "weight",
                        Attribute::number(
                            "Relative share of connections, 1 to 100, compared with the other \
                             routes.",
                        )
                        .required(),
                    ),
                "Weighted routes over tunnel labels: a connection picks a route by weight, \
                 then a healthy connector of a tunnel whose labels match its selector, failing \
                 over to the other routes. Set exactly one of `tunnel_id` and `routes`.",
            )
            .optional(),
        )
        .attribute(
            "policy_ids",
            Attribute::list(
                Type::String,
                "Ids of `postern_policy` objects applied in order when a connection is \
                 accepted; the first deny closes it. Only `allow_ips`, `deny_ips` and \
                 `rate_limit` (one connection counts as one request) apply to TCP: the edge \
                 refuses a policy that sets `allow_methods`, `allow_paths` or `jwt`. \
                 Defaults to `[]`.",
            )
            .optional()
            .computed()
            .default(Value::List(Vec::new())),
        )
        .attribute(
            "listen_port",
            Attribute::number(
                "The public port on the edge's `--tcp-address`, inside its `--tcp-ports` \
                 range. Unset, the edge picks the lowest free one and keeps it.",
            )
            .optional()
            .computed()
            .stable(),
        )
        .attribute(
            "listen",
            Attribute::string("Where visitors connect: the edge's `address:port`.")
                .computed()
                .stable(),
        )
    }

    fn validate(&self, config: &Value, diagnostics: &mut Diagnostics) {
        let mut findings = Findings::new();
        if let Some(name) = known_str(config, "name") {
            findings.rule(AttributePath::root("name"), rules::check_name(name));
        }
        if let Some(service) = known_str(config, "service") {
            findings.rule(
                AttributePath::root("service"),
                rules::parse_tcp_service(service),
            );
        }
        check_target(&mut findings, config);
        check_policy_ids(&mut findings, config);
        findings.schema::<TcpServiceSpec>(config, &self.schema().value_type());
        findings.report(diagnostics);
    }

    /// `listen` follows `listen_port`: a new port planned means a new address (on the edge's
    /// same `--tcp-address`), a port still unknown an address unknown too.
    async fn plan(&self, _data: &ProviderData, req: &PlanRequest, plan: &mut Plan) {
        let Some(prior) = &req.prior else {
            return;
        };
        let planned_port = plan.planned.get("listen_port").cloned();
        let prior_port = prior.get("listen_port").cloned();
        if planned_port == prior_port {
            return;
        }
        let listen = match (
            planned_port.as_ref().and_then(Value::as_number),
            prior.get("listen").and_then(Value::as_str),
        ) {
            (Some(port), Some(prior_listen)) => match prior_listen.rsplit_once(':') {
                Some((host, _)) => Value::String(format!("{host}:{port}")),
                None => Value::Unknown,
            },
            _ => Value::Unknown,
        };
        plan.planned.set_attribute("listen", listen);
    }

    fn spec(&self, model: &TcpServiceModel) -> Result<TcpServiceSpec, Diagnostic> {
        model.spec()
    }

    fn spec_name(spec: &TcpServiceSpec) -> &str {
        &spec.name
    }

    fn state_id(model: &TcpServiceModel) -> Option<&str> {
        model.id.as_deref()
    }

    fn parse_import_id(&self, text: &str) -> Result<TcpServiceId, Diagnostic> {
        text.trim().parse().map_err(|_| {
            Diagnostic::error(
                "Invalid TCP service id",
                format!(
                    "{text:?} is not a TCP service id. Import a postern_tcp_service by its \
                     UUID (GET /v1/tcp-services lists them), e.g. `terraform import \
                     postern_tcp_service.ssh 6f1c1d5e-0d55-4c8e-9a39-1c1e4b0b6a11`."
                ),
            )
        })
    }

    fn id(service: &TcpService) -> TcpServiceId {
        service.id
    }

    fn version(service: &TcpService) -> u64 {
        service.version
    }

    fn describe(service: &TcpService) -> String {
        format!(
            "a TCP service named {:?} (id {})",
            service.spec.name, service.id
        )
    }

    /// A spec without `listen_port` matches whatever port the edge gave.
    fn matches(service: &TcpService, spec: &TcpServiceSpec) -> bool {
        let mut spec = spec.clone();
        if spec.listen_port.is_none() {
            spec.listen_port = service.spec.listen_port;
        }
        service.spec == spec
    }

    /// A TCP service reaches the connectors of its tunnels: they all may need the change.
    fn scope(_id: &TcpServiceId) -> RolloutScope {
        RolloutScope::All
    }

    async fn create_object(
        &self,
        client: &Client,
        spec: &TcpServiceSpec,
    ) -> Result<TcpService, ClientError> {
        client.create_tcp_service(spec).await
    }

    async fn read_object(
        &self,
        client: &Client,
        id: &TcpServiceId,
    ) -> Result<TcpService, ClientError> {
        client.tcp_service(*id).await
    }

    async fn replace_object(
        &self,
        client: &Client,
        id: &TcpServiceId,
        spec: &TcpServiceSpec,
        if_match: Option<u64>,
    ) -> Result<TcpService, ClientError> {
        client.replace_tcp_service(*id, spec, if_match).await
    }

    async fn delete_object(
        &self,
        client: &Client,
        id: &TcpServiceId,
        if_match: Option<u64>,
    ) -> Result<(), ClientError> {
        client.delete_tcp_service(*id, if_match).await
    }

    async fn find_object(
        &self,
        client: &Client,
        spec: &TcpServiceSpec,
    ) -> Result<Option<TcpService>, ClientError> {
        Ok(client
            .list_tcp_services()
            .await?
            .into_iter()
            .find(|s| s.spec.name == spec.name))
    }

    async fn state(
        &self,
        _data: &ProviderData,
        service: &TcpService,
        known: Option<&TcpServiceModel>,
        _op: Operation<'_>,
        _diagnostics: &mut Diagnostics,
    ) -> TcpServiceModel {
        TcpServiceModel::from_service(service, known)
    }
}

fn invalid(path: AttributePath, message: String) -> Diagnostic {
    Diagnostic::error(
        "Invalid TCP service",
        format!("{message}. Fix the configuration and apply again."),
    )
    .at(path)
}
