//! The lifecycle every object of the edge's control API shares as a Terraform resource
//! (`postern_tunnel`, `postern_hostname`, `postern_policy`): create, adopting on a 409 the
//! leftover of an interrupted apply when it is exactly what was planned; read, where a 404
//! removes the object from state; update and delete with `If-Match`, from the version kept
//! in private state; import by id; and after each write, the wait until the connectors
//! applied it.
//!
//! A resource implements [`EdgeObject`]: its schema and checks, as a
//! [`Resource`] would, plus what differs between the edge's objects (model, spec, id, the
//! API calls); it is then a `Resource<ProviderData>` whose lifecycle is the one written
//! here.

use std::fmt::Display;
use std::str::FromStr;

use postern_schema::api::{ErrorCode, RolloutScope};
use postern_schema::client::{Client, ClientError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::api_error::{Operation, diagnose};
use super::provider_data::ProviderData;
use super::rollout::{self, Change};
use super::version;
use crate::framework::{
    AttributePath, CreateRequest, DeleteRequest, Diagnostic, Diagnostics, Plan, PlanRequest,
    ReadRequest, Resource, Schema, StateResponse, UpdateRequest, Value, async_trait,
};

/// One kind of object on the edge, as a Terraform resource manages it. The first methods
/// are [`Resource`]'s, with the same meaning; the rest say how the object is written,
/// named and read on the edge.
#[async_trait]
pub(crate) trait EdgeObject: Send + Sync + 'static {
    /// The Terraform state (`TunnelModel`).
    type Model: Serialize + DeserializeOwned + Send + Sync;
    /// What the provider writes (`TunnelSpec`).
    type Spec: Send + Sync;
    /// What the edge answers (`Tunnel`).
    type Object: Send + Sync;
    /// How the API names one object: its UUID, or the hostname itself.
    type Id: Display + FromStr + Send + Sync;

    /// The kind of object, in messages and logs: `tunnel`.
    const KIND: &'static str;
    /// The attribute whose value must be unique on the edge (`name`, `hostname`); a
    /// conflicting object is reported on it.
    const NAME_ATTRIBUTE: &'static str;
    /// Whether a delete waits until the connectors applied it.
    const WAITS_AFTER_DELETE: bool = true;

    /// [`Resource::type_name`].
    fn type_name(&self) -> &'static str;

    /// [`Resource::schema`].
    fn schema(&self) -> Schema;

    /// [`Resource::validate`].
    fn validate(&self, _config: &Value, _diagnostics: &mut Diagnostics) {}

    /// [`Resource::plan`].
    async fn plan(&self, _data: &ProviderData, _req: &PlanRequest, _plan: &mut Plan) {}

    /// [`Resource::upgrade_state`].
    fn upgrade_state(
        &self,
        _version: i64,
        state: serde_json::Value,
        _diagnostics: &mut Diagnostics,
    ) -> Option<serde_json::Value> {
        Some(state)
    }

    /// Sets `model`'s write-only attributes from `config`: Terraform leaves them out of the
    /// plan (they are null there), so create and update read them from the configuration.
    fn fill_write_only(&self, _config: &Value, _model: &mut Self::Model) {}

    /// What the provider writes for `model`; a value the edge could not take becomes a
    /// diagnostic on its attribute.
    fn spec(&self, model: &Self::Model) -> Result<Self::Spec, Diagnostic>;

    /// The name the spec gives the object (its `NAME_ATTRIBUTE`).
    fn spec_name(spec: &Self::Spec) -> &str;

    /// The id recorded in state, as text.
    fn state_id(model: &Self::Model) -> Option<&str>;

    /// The id a user gave `terraform import`; a diagnostic that says what to give when it
    /// is not one.
    fn parse_import_id(&self, text: &str) -> Result<Self::Id, Diagnostic>;

    /// The object's id.
    fn id(object: &Self::Object) -> Self::Id;

    /// The object's version (its ETag).
    fn version(object: &Self::Object) -> u64;

    /// The object in a sentence: `a tunnel named "web" (id …)`.
    fn describe(object: &Self::Object) -> String;

    /// Whether the object on the edge is exactly what `spec` writes.
    fn matches(object: &Self::Object, spec: &Self::Spec) -> bool;

    /// What a write of object `id` changes, for the rollout question.
    fn scope(id: &Self::Id) -> RolloutScope;

    /// `POST`: creates the object.
    async fn create_object(
        &self,
        client: &Client,
        spec: &Self::Spec,
    ) -> Result<Self::Object, ClientError>;

    /// `GET`: reads the object.
    async fn read_object(
        &self,
        client: &Client,
        id: &Self::Id,
    ) -> Result<Self::Object, ClientError>;

    /// `PUT` with `If-Match`: replaces the object.
    async fn replace_object(
        &self,
        client: &Client,
        id: &Self::Id,
        spec: &Self::Spec,
        if_match: Option<u64>,
    ) -> Result<Self::Object, ClientError>;

    /// `DELETE` with `If-Match`.
    async fn delete_object(
        &self,
        client: &Client,
        id: &Self::Id,
        if_match: Option<u64>,
    ) -> Result<(), ClientError>;

    /// The object that holds `spec`'s name, if any (after a create answered 409).
    async fn find_object(
        &self,
        client: &Client,
        spec: &Self::Spec,
    ) -> Result<Option<Self::Object>, ClientError>;

    /// The state for `object` as the edge returned it. `known` is what Terraform had (the
    /// plan or the prior state; `None` on import): values it spells differently but that
    /// mean the same are kept as Terraform had them.
    async fn state(
        &self,
        data: &ProviderData,
        object: &Self::Object,
        known: Option<&Self::Model>,
        op: Operation<'_>,
        diagnostics: &mut Diagnostics,
    ) -> Self::Model;
}

/// Every edge object is a resource, with the lifecycle below.
#[async_trait]
impl<R: EdgeObject> Resource<ProviderData> for R {
    fn type_name(&self) -> &'static str {
        EdgeObject::type_name(self)
    }

    fn schema(&self) -> Schema {
        EdgeObject::schema(self)
    }

    fn validate(&self, config: &Value, diagnostics: &mut Diagnostics) {
        EdgeObject::validate(self, config, diagnostics);
    }

    async fn plan(&self, data: &ProviderData, req: &PlanRequest, plan: &mut Plan) {
        EdgeObject::plan(self, data, req, plan).await;
    }

    fn upgrade_state(
        &self,
        version: i64,
        state: serde_json::Value,
        diagnostics: &mut Diagnostics,
    ) -> Option<serde_json::Value> {
        EdgeObject::upgrade_state(self, version, state, diagnostics)
    }

    async fn create(&self, data: &ProviderData, req: CreateRequest, resp: &mut StateResponse) {
        create(self, data, req, resp).await;
    }

    async fn read(&self, data: &ProviderData, req: ReadRequest, resp: &mut StateResponse) {
        read(self, data, req, resp).await;
    }

    async fn update(&self, data: &ProviderData, req: UpdateRequest, resp: &mut StateResponse) {
        update(self, data, req, resp).await;
    }

    async fn delete(&self, data: &ProviderData, req: DeleteRequest, diagnostics: &mut Diagnostics) {
        delete(self, data, req, diagnostics).await;
    }

    async fn import(&self, data: &ProviderData, id: &str, resp: &mut StateResponse) {
        import(self, data, id, resp).await;
    }
}

/// [`Resource::create`]: `POST`, then wait for the connectors. A 409 adopts the object in
/// the way when it is exactly what was planned.
async fn create<R: EdgeObject>(
    r: &R,
    data: &ProviderData,
    req: CreateRequest,
    resp: &mut StateResponse,
) {
    // Read the plan into the model, and the write-only values from the configuration.
    let Some(mut plan) = resp.diagnostics.check(req.planned.decode::<R::Model>()) else {
        return;
    };
    r.fill_write_only(&req.config, &mut plan);
    let Some(spec) = resp.diagnostics.check(r.spec(&plan)) else {
        return;
    };
    let ty = resp.value_type().clone();
    let op = Operation {
        action: "creating",
        kind: R::KIND,
        object: Some(R::spec_name(&spec)),
        value_type: &ty,
    };
    let client = data.client.tracking_revisions();
    match r.create_object(&client, &spec).await {
        Ok(object) => {
            let id = R::id(&object);
            tracing::info!(kind = R::KIND, %id, name = R::spec_name(&spec), "{} created", R::KIND);
            keep(r, data, &object, Some(&plan), op, resp).await;
            let change = Change::new(R::scope(&id));
            rollout::wait(data, &client, change, &mut resp.diagnostics).await;
        }
        Err(error) if error.code() == Some(ErrorCode::Conflict) => {
            adopt(r, data, &spec, &plan, &error, op, resp).await;
        }
        Err(error) => resp.diagnostics.push(diagnose(&error, op)),
    }
}

/// [`Resource::read`]: `GET`; an object deleted outside Terraform leaves the state.
async fn read<R: EdgeObject>(
    r: &R,
    data: &ProviderData,
    req: ReadRequest,
    resp: &mut StateResponse,
) {
    let Some(state) = resp.diagnostics.check(req.state.decode::<R::Model>()) else {
        return;
    };
    let Some(id) = state_id::<R>(&state, &mut resp.diagnostics) else {
        return;
    };
    let ty = resp.value_type().clone();
    let id_text = id.to_string();
    let op = Operation {
        action: "reading",
        kind: R::KIND,
        object: Some(&id_text),
        value_type: &ty,
    };
    match r.read_object(&data.client, &id).await {
        Ok(object) => keep(r, data, &object, Some(&state), op, resp).await,
        Err(error) if error.is_not_found() => {
            tracing::info!(kind = R::KIND, %id, "{} deleted outside Terraform", R::KIND);
            resp.remove();
        }
        Err(error) => resp.diagnostics.push(diagnose(&error, op)),
    }
}

/// [`Resource::update`]: `PUT` with `If-Match`, then wait for the connectors.
async fn update<R: EdgeObject>(
    r: &R,
    data: &ProviderData,
    req: UpdateRequest,
    resp: &mut StateResponse,
) {
    let Some(mut plan) = resp.diagnostics.check(req.planned.decode::<R::Model>()) else {
        return;
    };
    r.fill_write_only(&req.config, &mut plan);
    let Some(id) = state_id::<R>(&plan, &mut resp.diagnostics) else {
        return;
    };
    let Some(spec) = resp.diagnostics.check(r.spec(&plan)) else {
        return;
    };
    let ty = resp.value_type().clone();
    let id_text = id.to_string();
    let op = Operation {
        action: "updating",
        kind: R::KIND,
        object: Some(&id_text),
        value_type: &ty,
    };
    let if_match = version::decode(&req.planned_private);
    let client = data.client.tracking_revisions();
    match r.replace_object(&client, &id, &spec, if_match).await {
        Ok(object) => {
            tracing::info!(kind = R::KIND, %id, "{} updated", R::KIND);
            keep(r, data, &object, Some(&plan), op, resp).await;
            let change = Change::new(R::scope(&id));
            rollout::wait(data, &client, change, &mut resp.diagnostics).await;
        }
        Err(error) => resp.diagnostics.push(diagnose(&error, op)),
    }
}

/// [`Resource::delete`]: `DELETE` with `If-Match`, then (unless the kind says not to) wait
/// for the connectors. An object already gone is not an error.
async fn delete<R: EdgeObject>(
    r: &R,
    data: &ProviderData,
    req: DeleteRequest,
    diagnostics: &mut Diagnostics,
) {
    let Some(prior) = diagnostics.check(req.prior.decode::<R::Model>()) else {
        return;
    };
    let Some(id) = state_id::<R>(&prior, diagnostics) else {
        return;
    };
    let ty = EdgeObject::schema(r).value_type();
    let id_text = id.to_string();
    let op = Operation {
        action: "deleting",
        kind: R::KIND,
        object: Some(&id_text),
        value_type: &ty,
    };
    let if_match = version::decode(&req.private);
    let client = data.client.tracking_revisions();
    match r.delete_object(&client, &id, if_match).await {
        Ok(()) => {
            tracing::info!(kind = R::KIND, %id, "{} deleted", R::KIND);
            if R::WAITS_AFTER_DELETE {
                rollout::wait(data, &client, Change::new(R::scope(&id)), diagnostics).await;
            }
        }
        Err(error) if error.is_not_found() => {}
        Err(error) => diagnostics.push(diagnose(&error, op)),
    }
}

/// [`Resource::import`]: `GET` by the id the user gave; Terraform reads it again next.
async fn import<R: EdgeObject>(
    r: &R,
    data: &ProviderData,
    id_text: &str,
    resp: &mut StateResponse,
) {
    let id = match r.parse_import_id(id_text) {
        Ok(id) => id,
        Err(diagnostic) => {
            resp.diagnostics.push(diagnostic);
            return;
        }
    };
    let ty = resp.value_type().clone();
    let op = Operation {
        action: "importing",
        kind: R::KIND,
        object: Some(id_text),
        value_type: &ty,
    };
    match r.read_object(&data.client, &id).await {
        Ok(object) => keep(r, data, &object, None, op, resp).await,
        Err(error) if error.is_not_found() => resp.diagnostics.error(
            "Cannot import non-existent remote object",
            format!("The edge has no {} with id {id}.", R::KIND),
        ),
        Err(error) => resp.diagnostics.push(diagnose(&error, op)),
    }
}

/// A create answered 409 because the name is taken. If the object in the way is exactly
/// what was planned, it is most likely ours from an interrupted apply: adopt it, with a
/// warning. Otherwise say how to import it.
async fn adopt<R: EdgeObject>(
    r: &R,
    data: &ProviderData,
    spec: &R::Spec,
    plan: &R::Model,
    conflict: &ClientError,
    op: Operation<'_>,
    resp: &mut StateResponse,
) {
    let existing = match r.find_object(&data.client, spec).await {
        Ok(existing) => existing,
        Err(error) => {
            resp.diagnostics.push(diagnose(&error, op));
            return;
        }
    };
    let Some(object) = existing else {
        resp.diagnostics.push(diagnose(conflict, op));
        return;
    };
    let (kind, attribute) = (R::KIND, R::NAME_ATTRIBUTE);
    let id = R::id(&object);
    let described = R::describe(&object);
    if !R::matches(&object, spec) {
        // `postern_hostname` is named by its hostname: "This hostname already exists".
        let summary = if attribute == kind {
            format!("This {kind} already exists")
        } else {
            format!("A {kind} with this {attribute} already exists")
        };
        resp.diagnostics.error_at(
            AttributePath::root(attribute),
            summary,
            format!(
                "The edge already has {described} with different settings, and Terraform does \
                 not manage it. To manage it, import it: `terraform import <address> {id}` or \
                 an `import {{ to = <address>, id = \"{id}\" }}` block. Otherwise choose \
                 another {attribute}."
            ),
        );
        return;
    }
    tracing::warn!(kind, %id, "adopted an existing {kind}");
    keep(r, data, &object, Some(plan), op, resp).await;
    resp.diagnostics.warning(
        format!("Adopted an existing {kind}"),
        format!(
            "The edge already had {described} with exactly the planned settings, most likely \
             created by an earlier apply that was interrupted before Terraform recorded it. \
             Terraform now manages it instead of creating another."
        ),
    );
}

/// Records `object` as the new state, and its version in private state for `If-Match`.
async fn keep<R: EdgeObject>(
    r: &R,
    data: &ProviderData,
    object: &R::Object,
    known: Option<&R::Model>,
    op: Operation<'_>,
    resp: &mut StateResponse,
) {
    let model = r
        .state(data, object, known, op, &mut resp.diagnostics)
        .await;
    resp.set_state(&model);
    resp.private = version::encode(R::version(object));
}

/// The id recorded in state; an error on `id` when it is not one.
fn state_id<R: EdgeObject>(model: &R::Model, diagnostics: &mut Diagnostics) -> Option<R::Id> {
    let text = R::state_id(model);
    let parsed = text.and_then(|text| text.parse::<R::Id>().ok());
    if parsed.is_none() {
        let kind = R::KIND;
        diagnostics.error_at(
            AttributePath::root("id"),
            format!("Invalid {kind} id in state"),
            format!(
                "The state holds {text:?}, which is not a {kind} UUID. Remove the resource from \
                 the state (`terraform state rm`) and import the {kind} by its id."
            ),
        );
    }
    parsed
}
