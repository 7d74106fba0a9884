//! The runtime: the protocol-free half of every RPC. It looks up the handler, holds the
//! configured provider data, runs standard planning around the resource's hooks, and
//! checks what resources return (no unknowns in new state, write-only attributes null).
//! The protocol layer only decodes, calls one method here, and encodes.

use std::sync::Arc;

use tokio::sync::RwLock;
use tokio_util::sync::CancellationToken;

use super::data_source::DataSourceReadRequest;
use super::diagnostics::{AttributePath, Diagnostic, Diagnostics};
use super::ephemeral::{CloseRequest, OpenRequest, OpenResponse, RenewRequest, RenewResponse};
use super::plan;
use super::provider::{ConfigureRequest, Provider};
use super::registry::{Registered, Registry};
use super::resource::{
    CreateRequest, DeleteRequest, Plan, PlanRequest, ReadRequest, StateResponse, UpdateRequest,
};
use super::schema::Schema;
use super::types::Type;
use super::value::Value;

/// Serves one provider process: a registry plus what ConfigureProvider produced.
pub struct Runtime<P: Provider> {
    registry: Registry<P>,
    data: RwLock<Option<Arc<P::Data>>>,
    stop: CancellationToken,
}

/// What kind of type a name was looked up as, for error messages.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    /// A managed resource.
    Resource,
    /// A data source.
    DataSource,
    /// An ephemeral resource.
    EphemeralResource,
}

/// A stored state handed to UpgradeResourceState.
#[derive(Clone, Debug)]
pub(crate) enum StoredState {
    /// Written with the current schema version, already decoded.
    Current(Value),
    /// Written with an older schema version: the JSON as stored.
    Older(serde_json::Value),
}

/// The result of planning a resource change.
#[derive(Clone, Debug)]
pub(crate) struct PlanOutcome {
    /// The planned state (null for destroy).
    pub planned: Value,
    /// Paths whose change forces replacement.
    pub requires_replace: Vec<AttributePath>,
    /// Private state for apply.
    pub private: Vec<u8>,
    /// Problems.
    pub diagnostics: Diagnostics,
}

/// The result of an operation that ends with a state (apply, read, import, data read).
#[derive(Clone, Debug)]
pub(crate) struct StateOutcome {
    /// The new state; `None` is null (deleted, gone, nothing created).
    pub state: Option<Value>,
    /// Private state.
    pub private: Vec<u8>,
    /// Problems.
    pub diagnostics: Diagnostics,
}

impl StateOutcome {
    fn failed(diagnostics: Diagnostics) -> Self {
        Self {
            state: None,
            private: Vec::new(),
            diagnostics,
        }
    }
}

impl<P: Provider> Runtime<P> {
    /// A runtime for `registry`, not configured yet.
    pub fn new(registry: Registry<P>) -> Self {
        Self {
            registry,
            data: RwLock::new(None),
            stop: CancellationToken::new(),
        }
    }

    /// The registry served.
    pub(crate) fn registry(&self) -> &Registry<P> {
        &self.registry
    }

    /// The value type of a registered type, for decoding its values.
    pub(crate) fn value_type(&self, kind: Kind, type_name: &str) -> Result<&Type, Diagnostic> {
        match kind {
            Kind::Resource => self.resource(type_name).map(|r| &r.ty),
            Kind::DataSource => self.data_source(type_name).map(|r| &r.ty),
            Kind::EphemeralResource => self.ephemeral(type_name).map(|r| &r.ty),
        }
    }

    /// The provider block's value type.
    pub fn provider_type(&self) -> Type {
        self.registry.provider_schema.value_type()
    }

    /// The schema of a resource type.
    pub fn resource_schema(&self, type_name: &str) -> Result<&Schema, Diagnostic> {
        self.resource(type_name).map(|r| &r.schema)
    }

    /// Asks in-flight work to stop (StopProvider). Returns at once.
    pub(crate) fn stop(&self) {
        self.stop.cancel();
    }

    // === provider ===

    /// ValidateProviderConfig.
    pub(crate) fn validate_provider(&self, config: &Value) -> Diagnostics {
        let mut diagnostics = Diagnostics::new();
        self.registry.provider.validate(config, &mut diagnostics);
        diagnostics
    }

    /// ConfigureProvider: builds the provider data every later call receives.
    pub(crate) async fn configure(&self, terraform_version: String, config: Value) -> Diagnostics {
        let mut diagnostics = Diagnostics::new();
        let req = ConfigureRequest {
            terraform_version,
            config,
            stop: self.stop.clone(),
        };
        let data = self
            .registry
            .provider
            .configure(req, &mut diagnostics)
            .await;
        match data {
            Some(data) => *self.data.write().await = Some(Arc::new(data)),
            None if !diagnostics.has_errors() => diagnostics.error(
                "Provider configuration failed",
                "The provider produced no configuration and reported no error. \
                 This is a bug in the provider.",
            ),
            None => {}
        }
        diagnostics
    }

    async fn configured(&self) -> Result<Arc<P::Data>, Diagnostics> {
        self.data.read().await.clone().ok_or_else(|| {
            Diagnostic::error(
                "Provider not configured",
                "Terraform called the provider before configuring it. \
                 This is a bug in Terraform or in the provider.",
            )
            .into()
        })
    }

    // === managed resources ===

    /// ValidateResourceConfig.
    pub(crate) fn validate_resource(&self, type_name: &str, config: &Value) -> Diagnostics {
        let mut diagnostics = Diagnostics::new();
        match self.resource(type_name) {
            Ok(r) => r.handler.validate(config, &mut diagnostics),
            Err(d) => diagnostics.push(d),
        }
        diagnostics
    }

    /// UpgradeResourceState: brings a stored state to the current schema. A state of
    /// the current version is taken as decoded; an older one goes through the
    /// resource's [`Resource::upgrade_state`](super::Resource::upgrade_state) hook.
    pub(crate) fn upgrade_resource_state(
        &self,
        type_name: &str,
        version: i64,
        stored: StoredState,
    ) -> (Option<Value>, Diagnostics) {
        let mut diagnostics = Diagnostics::new();
        let r = match self.resource(type_name) {
            Ok(r) => r,
            Err(d) => return (None, d.into()),
        };
        if version > r.schema.version {
            diagnostics.error(
                "State written by a newer provider",
                format!(
                    "The state of this {type_name} has schema version {version}, but this \
                     provider only knows versions up to {}. Upgrade the provider.",
                    r.schema.version
                ),
            );
            return (None, diagnostics);
        }
        let value = match stored {
            StoredState::Current(value) => Some(value),
            StoredState::Older(json) => r
                .handler
                .upgrade_state(version, json, &mut diagnostics)
                .and_then(|json| diagnostics.check(Value::from_json(&json, &r.ty))),
        };
        let value = value.map(|mut v| {
            plan::null_write_only(&r.schema.attributes, &mut v);
            v
        });
        (value, diagnostics)
    }

    /// ReadResource.
    pub(crate) async fn read_resource(
        &self,
        type_name: &str,
        state: Value,
        private: Vec<u8>,
    ) -> StateOutcome {
        let (r, data) = match self.resource_and_data(type_name).await {
            Ok(found) => found,
            Err(d) => return StateOutcome::failed(d),
        };
        let mut resp = StateResponse::new(r.ty.clone(), Some(state.clone()), private.clone());
        r.handler
            .read(&data, ReadRequest { state, private }, &mut resp)
            .await;
        finish(&r.schema, resp, "read")
    }

    /// PlanResourceChange.
    pub(crate) async fn plan_resource(
        &self,
        type_name: &str,
        prior: Value,
        proposed: Value,
        config: Value,
        prior_private: Vec<u8>,
    ) -> PlanOutcome {
        let r = match self.resource(type_name) {
            Ok(r) => r,
            Err(d) => {
                return PlanOutcome {
                    planned: Value::Null,
                    requires_replace: Vec::new(),
                    private: prior_private,
                    diagnostics: d.into(),
                };
            }
        };
        // Destroy: nothing to plan but null.
        if proposed.is_null() {
            return PlanOutcome {
                planned: Value::Null,
                requires_replace: Vec::new(),
                private: prior_private,
                diagnostics: Diagnostics::new(),
            };
        }
        let data = match self.configured().await {
            Ok(data) => data,
            Err(diagnostics) => {
                return PlanOutcome {
                    planned: proposed,
                    requires_replace: Vec::new(),
                    private: prior_private,
                    diagnostics,
                };
            }
        };
        let prior = (!prior.is_null()).then_some(prior);
        let planned = plan::plan_standard(&r.schema, prior.as_ref(), &config, &proposed);
        let req = PlanRequest {
            prior,
            config,
            proposed,
            prior_private: prior_private.clone(),
        };
        let mut plan = Plan {
            planned,
            requires_replace: Vec::new(),
            private: prior_private,
            diagnostics: Diagnostics::new(),
        };
        r.handler.plan(&data, &req, &mut plan).await;
        plan::null_write_only(&r.schema.attributes, &mut plan.planned);
        if let Some(prior) = &req.prior {
            for path in plan::requires_replace(&r.schema, prior, &plan.planned) {
                if !plan.requires_replace.contains(&path) {
                    plan.requires_replace.push(path);
                }
            }
        } else {
            // Replace paths mean nothing on create.
            plan.requires_replace.clear();
        }
        PlanOutcome {
            planned: plan.planned,
            requires_replace: plan.requires_replace,
            private: plan.private,
            diagnostics: plan.diagnostics,
        }
    }

    /// ApplyResourceChange: create, update or delete, by which of prior and planned
    /// are null.
    pub(crate) async fn apply_resource(
        &self,
        type_name: &str,
        prior: Value,
        planned: Value,
        config: Value,
        planned_private: Vec<u8>,
    ) -> StateOutcome {
        let (r, data) = match self.resource_and_data(type_name).await {
            Ok(found) => found,
            Err(d) => {
                // Keep whatever Terraform had.
                return StateOutcome {
                    state: (!prior.is_null()).then_some(prior),
                    private: planned_private,
                    diagnostics: d,
                };
            }
        };
        if planned.is_null() {
            let mut diagnostics = Diagnostics::new();
            let req = DeleteRequest {
                prior: prior.clone(),
                private: planned_private.clone(),
            };
            r.handler.delete(&data, req, &mut diagnostics).await;
            let state = diagnostics.has_errors().then_some(prior);
            return StateOutcome {
                state,
                private: planned_private,
                diagnostics,
            };
        }
        if prior.is_null() {
            let mut resp = StateResponse::new(r.ty.clone(), None, planned_private.clone());
            let req = CreateRequest {
                config,
                planned,
                planned_private,
            };
            r.handler.create(&data, req, &mut resp).await;
            if resp.state.is_none() && !resp.diagnostics.has_errors() {
                resp.diagnostics.error(
                    "Provider returned no state after create",
                    format!(
                        "Creating the {type_name} reported success but returned no state. \
                         This is a bug in the provider."
                    ),
                );
            }
            return finish(&r.schema, resp, "create");
        }
        let mut resp =
            StateResponse::new(r.ty.clone(), Some(prior.clone()), planned_private.clone());
        let req = UpdateRequest {
            prior,
            config,
            planned,
            planned_private,
        };
        r.handler.update(&data, req, &mut resp).await;
        finish(&r.schema, resp, "update")
    }

    /// ImportResourceState: the state to hand to ReadResource next.
    pub(crate) async fn import_resource(&self, type_name: &str, id: &str) -> StateOutcome {
        let (r, data) = match self.resource_and_data(type_name).await {
            Ok(found) => found,
            Err(d) => return StateOutcome::failed(d),
        };
        let mut resp = StateResponse::new(r.ty.clone(), None, Vec::new());
        r.handler.import(&data, id, &mut resp).await;
        if resp.state.is_none() && !resp.diagnostics.has_errors() {
            resp.diagnostics.error(
                "Cannot import non-existent remote object",
                format!("No {type_name} with id {id:?} was found."),
            );
        }
        finish(&r.schema, resp, "import")
    }

    // === data sources ===

    /// ValidateDataResourceConfig.
    pub(crate) fn validate_data_source(&self, type_name: &str, config: &Value) -> Diagnostics {
        let mut diagnostics = Diagnostics::new();
        match self.data_source(type_name) {
            Ok(r) => r.handler.validate(config, &mut diagnostics),
            Err(d) => diagnostics.push(d),
        }
        diagnostics
    }

    /// ReadDataSource.
    pub(crate) async fn read_data_source(&self, type_name: &str, config: Value) -> StateOutcome {
        let r = match self.data_source(type_name) {
            Ok(r) => r,
            Err(d) => return StateOutcome::failed(d.into()),
        };
        let data = match self.configured().await {
            Ok(data) => data,
            Err(d) => return StateOutcome::failed(d),
        };
        let mut resp = StateResponse::new(r.ty.clone(), None, Vec::new());
        r.handler
            .read(&data, DataSourceReadRequest { config }, &mut resp)
            .await;
        if resp.state.is_none() && !resp.diagnostics.has_errors() {
            resp.diagnostics.error(
                "Provider returned no data",
                format!("Reading {type_name} returned nothing. This is a bug in the provider."),
            );
        }
        finish(&r.schema, resp, "read")
    }

    // === ephemeral resources ===

    /// ValidateEphemeralResourceConfig.
    pub(crate) fn validate_ephemeral(&self, type_name: &str, config: &Value) -> Diagnostics {
        let mut diagnostics = Diagnostics::new();
        match self.ephemeral(type_name) {
            Ok(r) => r.handler.validate(config, &mut diagnostics),
            Err(d) => diagnostics.push(d),
        }
        diagnostics
    }

    /// OpenEphemeralResource.
    pub(crate) async fn open_ephemeral(&self, type_name: &str, config: Value) -> OpenResponse {
        let r = match self.ephemeral(type_name) {
            Ok(r) => r,
            Err(d) => {
                let mut resp = OpenResponse::new(Type::Dynamic);
                resp.diagnostics.push(d);
                return resp;
            }
        };
        let mut resp = OpenResponse::new(r.ty.clone());
        let data = match self.configured().await {
            Ok(data) => data,
            Err(d) => {
                resp.diagnostics.extend(d);
                return resp;
            }
        };
        r.handler
            .open(&data, OpenRequest { config }, &mut resp)
            .await;
        match resp.result.take() {
            Some(result) => {
                let (result, problems) = known_or_null(result, &r.schema, "open");
                resp.diagnostics.extend(problems);
                resp.result = Some(result);
            }
            None if !resp.diagnostics.has_errors() => resp.diagnostics.error(
                "Provider returned no result",
                format!("Opening {type_name} returned nothing. This is a bug in the provider."),
            ),
            None => {}
        }
        resp
    }

    /// RenewEphemeralResource.
    pub(crate) async fn renew_ephemeral(
        &self,
        type_name: &str,
        private: Option<Vec<u8>>,
    ) -> RenewResponse {
        let mut resp = RenewResponse {
            private: private.clone(),
            ..RenewResponse::default()
        };
        let r = match self.ephemeral(type_name) {
            Ok(r) => r,
            Err(d) => {
                resp.diagnostics.push(d);
                return resp;
            }
        };
        match self.configured().await {
            Ok(data) => {
                r.handler
                    .renew(&data, RenewRequest { private }, &mut resp)
                    .await
            }
            Err(d) => resp.diagnostics.extend(d),
        }
        resp
    }

    /// CloseEphemeralResource.
    pub(crate) async fn close_ephemeral(
        &self,
        type_name: &str,
        private: Option<Vec<u8>>,
    ) -> Diagnostics {
        let mut diagnostics = Diagnostics::new();
        let r = match self.ephemeral(type_name) {
            Ok(r) => r,
            Err(d) => return d.into(),
        };
        match self.configured().await {
            Ok(data) => {
                r.handler
                    .close(&data, CloseRequest { private }, &mut diagnostics)
                    .await
            }
            Err(d) => diagnostics.extend(d),
        }
        diagnostics
    }

    // === lookups ===

    fn resource(
        &self,
        type_name: &str,
    ) -> Result<&Registered<super::registry::BoxedResource<P::Data>>, Diagnostic> {
        self.registry
            .resources
            .get(type_name)
            .ok_or_else(|| unknown_type("resource", type_name))
    }

    fn data_source(
        &self,
        type_name: &str,
    ) -> Result<&Registered<super::registry::BoxedDataSource<P::Data>>, Diagnostic> {
        self.registry
            .data_sources
            .get(type_name)
            .ok_or_else(|| unknown_type("data source", type_name))
    }

    fn ephemeral(
        &self,
        type_name: &str,
    ) -> Result<&Registered<super::registry::BoxedEphemeralResource<P::Data>>, Diagnostic> {
        self.registry
            .ephemeral_resources
            .get(type_name)
            .ok_or_else(|| unknown_type("ephemeral resource", type_name))
    }

    async fn resource_and_data(
        &self,
        type_name: &str,
    ) -> Result<
        (
            &Registered<super::registry::BoxedResource<P::Data>>,
            Arc<P::Data>,
        ),
        Diagnostics,
    > {
        let r = self.resource(type_name)?;
        let data = self.configured().await?;
        Ok((r, data))
    }
}

fn unknown_type(kind: &str, type_name: &str) -> Diagnostic {
    Diagnostic::error(
        format!("Unknown {kind} type"),
        format!("This provider has no {kind} type named {type_name:?}."),
    )
}

/// Checks a new state before it goes back to Terraform: write-only attributes null,
/// no unknowns left (they become null, with an error naming them).
fn finish(schema: &Schema, resp: StateResponse, operation: &str) -> StateOutcome {
    let mut diagnostics = resp.diagnostics;
    let state = resp.state.map(|state| {
        let (state, problems) = known_or_null(state, schema, operation);
        diagnostics.extend(problems);
        state
    });
    StateOutcome {
        state,
        private: resp.private,
        diagnostics,
    }
}

fn known_or_null(mut value: Value, schema: &Schema, operation: &str) -> (Value, Diagnostics) {
    let mut diagnostics = Diagnostics::new();
    plan::null_write_only(&schema.attributes, &mut value);
    if value.is_wholly_known() {
        return (value, diagnostics);
    }
    for path in value.unknown_paths() {
        diagnostics.push(
            Diagnostic::error(
                format!("Provider left a value unknown after {operation}"),
                "Every value must be known once the operation is done. \
                 This is a bug in the provider; please report it.",
            )
            .at(path),
        );
    }
    (value.unknowns_to_null(), diagnostics)
}
