//! Managed resources: the [`Resource`] trait a resource type implements, and the
//! request and response types of its lifecycle (validate, plan, create, read, update,
//! delete, import, upgrade).
//!
//! The framework does the protocol's bookkeeping around each call: standard planning
//! (see [`plan`](super::plan)), write-only attributes nulled, unknowns refused in new
//! state, errors turned into diagnostics. A resource deals only in [`Value`]s, usually
//! through its serde model:
//!
//! ```ignore
//! async fn create(&self, client: &Client, req: CreateRequest, resp: &mut StateResponse) {
//!     // Read the plan into the model.
//!     let Some(plan) = resp.diagnostics.check(req.planned.decode::<TunnelModel>()) else {
//!         return;
//!     };
//!     match client.create_tunnel(&plan.spec()).await {
//!         Ok(tunnel) => resp.set_state(&TunnelModel::from(tunnel)),
//!         Err(e) => resp.diagnostics.push(api_error(e)),
//!     }
//! }
//! ```

use async_trait::async_trait;
use serde::Serialize;

use super::diagnostics::{AttributePath, Diagnostic, Diagnostics};
use super::schema::Schema;
use super::types::Type;
use super::value::Value;

/// A managed resource type (`resource "postern_tunnel" "x" { ... }`).
///
/// `D` is the provider data made by [`Provider::configure`](super::Provider::configure)
/// (for Postern: the API client); every call that may talk to the outside world gets
/// it. Validation gets none: `terraform validate` runs offline.
///
/// Errors go into the response's diagnostics; a method never panics on input.
#[async_trait]
pub trait Resource<D>: Send + Sync + 'static {
    /// The resource type name, e.g. `postern_tunnel`.
    fn type_name(&self) -> &'static str;

    /// The schema. Called once, when the registry is built.
    fn schema(&self) -> Schema;

    /// Checks a configuration offline (`terraform validate`, and before every plan).
    /// Values may be unknown anywhere: judge only what is known. The framework has
    /// already checked types and required attributes (Terraform did).
    fn validate(&self, _config: &Value, _diagnostics: &mut Diagnostics) {}

    /// Adjusts the plan after standard planning. `plan.planned` already holds
    /// defaults, unknowns for computed values and stable values carried from the prior
    /// state; the resource may refine it (e.g. mark an attribute unknown because a
    /// change elsewhere will alter it) or add replace paths. Requires-replace paths
    /// from the schema are computed after this hook, on its result.
    ///
    /// Not called for destroy plans.
    async fn plan(&self, _data: &D, _req: &PlanRequest, _plan: &mut Plan) {}

    /// Creates the object. `resp.state` starts as `None`; set it to the new state as
    /// soon as the object exists, even if a later step fails (Terraform then records it
    /// as tainted instead of losing it). Every unknown of the plan must be resolved.
    async fn create(&self, data: &D, req: CreateRequest, resp: &mut StateResponse);

    /// Reads the object's current state (refresh, and after import). `resp.state`
    /// starts as the state Terraform has; [`StateResponse::remove`] says the object is
    /// gone (deleted outside Terraform), and Terraform plans to create it again.
    async fn read(&self, data: &D, req: ReadRequest, resp: &mut StateResponse);

    /// Updates the object in place. `resp.state` starts as the prior state, which is
    /// what is kept if the update fails before changing anything.
    async fn update(&self, data: &D, req: UpdateRequest, resp: &mut StateResponse);

    /// Deletes the object. An object that is already gone is not an error. With errors
    /// the prior state is kept.
    async fn delete(&self, data: &D, req: DeleteRequest, diagnostics: &mut Diagnostics);

    /// Starts an import (`terraform import`, `import {}` blocks): turn the user's id
    /// into a state with at least the identifying attributes set; Terraform then calls
    /// [`Resource::read`] to fill in the rest. `resp.state` starts as `None`.
    ///
    /// The default refuses, saying the resource does not support import.
    async fn import(&self, _data: &D, _id: &str, resp: &mut StateResponse) {
        resp.diagnostics.error(
            "Import not supported",
            format!("The resource type {} cannot be imported.", self.type_name()),
        );
    }

    /// Upgrades a state written with an older schema version to the current schema
    /// (only called when `version` differs from the schema's). The state is the JSON
    /// Terraform stored. The default keeps it as it is.
    fn upgrade_state(
        &self,
        _version: i64,
        state: serde_json::Value,
        _diagnostics: &mut Diagnostics,
    ) -> Option<serde_json::Value> {
        Some(state)
    }
}

/// What the resource's plan hook is told.
#[derive(Clone, Debug)]
pub struct PlanRequest {
    /// The prior state; `None` when the object is being created.
    pub prior: Option<Value>,
    /// The configuration (may contain unknowns).
    pub config: Value,
    /// Terraform's proposed new state (prior merged with config).
    pub proposed: Value,
    /// The private state saved with the prior state.
    pub prior_private: Vec<u8>,
}

impl PlanRequest {}

/// The plan being built; the hook may change any of it.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The planned new state.
    pub planned: Value,
    /// Extra paths whose change forces replacement (schema flags are added later).
    pub requires_replace: Vec<AttributePath>,
    /// Private state handed to apply (defaults to the prior private state).
    pub private: Vec<u8>,
    /// Problems found while planning.
    pub diagnostics: Diagnostics,
}

/// Input of [`Resource::create`].
#[derive(Clone, Debug)]
pub struct CreateRequest {
    /// The configuration (wholly known at apply time, except write-only holes).
    pub config: Value,
    /// The planned state; computed attributes are unknown.
    pub planned: Value,
    /// The private state from the plan.
    pub planned_private: Vec<u8>,
}

/// Input of [`Resource::read`].
#[derive(Clone, Debug)]
pub struct ReadRequest {
    /// The state Terraform has recorded.
    pub state: Value,
    /// The private state recorded with it.
    pub private: Vec<u8>,
}

/// Input of [`Resource::update`].
#[derive(Clone, Debug)]
pub struct UpdateRequest {
    /// The state before the update.
    pub prior: Value,
    /// The configuration.
    pub config: Value,
    /// The planned state.
    pub planned: Value,
    /// The private state from the plan.
    pub planned_private: Vec<u8>,
}

/// Input of [`Resource::delete`].
#[derive(Clone, Debug)]
pub struct DeleteRequest {
    /// The state of the object to delete.
    pub prior: Value,
    /// The private state recorded with it.
    pub private: Vec<u8>,
}

/// The state a create, read, update, import or data-source read ends with.
#[derive(Clone, Debug)]
pub struct StateResponse {
    /// The new state; `None` means no object (see each method for the start value).
    pub state: Option<Value>,
    /// Private state to store with it (starts as the incoming private state).
    pub private: Vec<u8>,
    /// Problems.
    pub diagnostics: Diagnostics,
    ty: Type,
}

impl StateResponse {
    /// A response for values of type `ty` (the schema's value type).
    pub(crate) fn new(ty: Type, state: Option<Value>, private: Vec<u8>) -> Self {
        Self {
            state,
            private,
            diagnostics: Diagnostics::new(),
            ty,
        }
    }

    /// Sets the state from a serde model. Model fields are matched with attribute
    /// names; attributes the model leaves out become null. A model that does not fit
    /// the schema becomes an error diagnostic (and the state is left as it was).
    pub fn set_state<T: Serialize + ?Sized>(&mut self, model: &T) {
        if let Some(value) = self.diagnostics.check(Value::encode(model, &self.ty)) {
            self.state = Some(value);
        }
    }

    /// Sets the state to a value.
    pub fn set_value(&mut self, value: Value) {
        match value.check_type(&self.ty) {
            Ok(()) => self.state = Some(value),
            Err(e) => self.diagnostics.push(Diagnostic::from(e)),
        }
    }

    /// Says there is no object (read: it was deleted outside Terraform).
    pub fn remove(&mut self) {
        self.state = None;
    }

    /// The type of the state.
    pub fn value_type(&self) -> &Type {
        &self.ty
    }
}
