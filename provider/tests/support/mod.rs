//! A small test provider built on the framework, for tests only (never shipped): a
//! `postern_thing` resource, a `postern_thing` data source and a `postern_token`
//! ephemeral resource, backed by a JSON file (Terraform starts a new provider process
//! per phase, so state must outlive the process).
//!
//! It exercises every framework feature a real resource uses: required, optional,
//! computed, defaults, stable computed values, requires-replace, sensitive and
//! write-only attributes, nested attributes (single and list), sets, exact numbers,
//! validation with attribute paths, import, drift and partial failure.

#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use terraform_provider_postern::framework::{
    Attribute, AttributePath, Attributes, ConfigureRequest, CreateRequest, DataSource,
    DataSourceReadRequest, DeleteRequest, Diagnostics, EphemeralResource, Number, OpenRequest,
    OpenResponse, Plan, PlanRequest, Provider, ReadRequest, Registry, Resource, Schema,
    StateResponse, Type, UpdateRequest, Value, async_trait,
};

/// The test provider's registry.
pub fn registry() -> Registry<TestProvider> {
    Registry::new(TestProvider)
        .resource(ThingResource)
        .data_source(ThingDataSource)
        .ephemeral_resource(TokenEphemeral)
}

/// Provider block: `store` names the JSON file holding the things.
pub struct TestProvider;

/// The provider data: where the store is.
pub struct Store {
    path: PathBuf,
    lock: tokio::sync::Mutex<()>,
}

/// Everything in the store file.
#[derive(Default, Serialize, Deserialize)]
pub struct StoreFile {
    pub next_id: u64,
    pub things: BTreeMap<String, ThingModel>,
    pub closed_tokens: u64,
}

impl Store {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Runs `f` on the store contents and saves them.
    async fn update<T>(&self, f: impl FnOnce(&mut StoreFile) -> T) -> Result<T, String> {
        let _guard = self.lock.lock().await;
        let mut file = read_store(&self.path)?;
        let out = f(&mut file);
        let text = serde_json::to_string_pretty(&file).map_err(|e| e.to_string())?;
        std::fs::write(&self.path, text).map_err(|e| format!("writing the store: {e}"))?;
        Ok(out)
    }
}

/// Reads a store file (missing = empty).
pub fn read_store(path: &std::path::Path) -> Result<StoreFile, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| format!("reading the store: {e}")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(StoreFile::default()),
        Err(e) => Err(format!("reading the store: {e}")),
    }
}

#[async_trait]
impl Provider for TestProvider {
    type Data = Store;

    fn schema(&self) -> Schema {
        Schema::new("Test provider.")
            .attribute("endpoint", Attribute::string("Ignored.").optional())
            .attribute(
                "store",
                Attribute::string("Path of the JSON store.").required(),
            )
    }

    fn validate(&self, config: &Value, diagnostics: &mut Diagnostics) {
        if let Some(endpoint) = config.get("endpoint").and_then(Value::as_str)
            && !endpoint.starts_with("http")
        {
            diagnostics.error_at(
                AttributePath::root("endpoint"),
                "Invalid endpoint",
                "Use an http:// URL.",
            );
        }
    }

    async fn configure(
        &self,
        req: ConfigureRequest,
        diagnostics: &mut Diagnostics,
    ) -> Option<Store> {
        match req.config.get("store").and_then(Value::as_str) {
            Some(path) => Some(Store::new(PathBuf::from(path))),
            None => {
                diagnostics.error_at(AttributePath::root("store"), "No store", "Set store.");
                None
            }
        }
    }
}

/// The state of a `postern_thing`, as Terraform and the store see it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ThingModel {
    pub id: Option<String>,
    pub name: String,
    pub zone: String,
    pub size: Option<Number>,
    pub labels: BTreeMap<String, String>,
    pub mode: String,
    pub created_at: Option<String>,
    pub revision: Option<i64>,
    #[serde(skip_serializing)]
    pub secret: Option<String>,
    pub secret_length: Option<i64>,
    pub origin: Option<Origin>,
    pub routes: Option<Vec<Route>>,
    pub tags: Option<BTreeSet<String>>,
    pub extra: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Origin {
    pub host: Option<String>,
    pub port: Option<Number>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Route {
    pub weight: i64,
    pub id: Option<String>,
}

pub struct ThingResource;

fn thing_schema() -> Schema {
    Schema::new("A thing kept in the test store.")
        .attribute("id", Attribute::string("Assigned id.").computed().stable())
        .attribute("name", Attribute::string("Name, [a-z0-9-]+.").required())
        .attribute(
            "zone",
            Attribute::string("Zone; changing it re-creates the thing.")
                .required()
                .requires_replace(),
        )
        .attribute("size", Attribute::number("An exact number.").optional())
        .attribute(
            "labels",
            Attribute::map(Type::String, "Labels.")
                .optional()
                .computed()
                .default(Value::map::<String>([])),
        )
        .attribute(
            "mode",
            Attribute::string("enforce or report.")
                .optional()
                .computed()
                .default("enforce"),
        )
        .attribute(
            "created_at",
            Attribute::string("Creation time.").computed().stable(),
        )
        .attribute(
            "revision",
            Attribute::number("Bumped by every update.").computed(),
        )
        .attribute(
            "secret",
            Attribute::string("Never stored.")
                .optional()
                .sensitive()
                .write_only(),
        )
        .attribute(
            "secret_length",
            Attribute::number("Length of the last secret.").computed(),
        )
        .attribute(
            "origin",
            Attribute::single_nested(
                Attributes::new()
                    .with("host", Attribute::string("Host.").optional())
                    .with(
                        "port",
                        Attribute::number("Port.").optional().computed().default(80),
                    ),
                "Origin.",
            )
            .optional(),
        )
        .attribute(
            "routes",
            Attribute::list_nested(
                Attributes::new()
                    .with("weight", Attribute::number("Weight.").required())
                    .with("id", Attribute::string("Route id.").computed().stable()),
                "Routes.",
            )
            .optional(),
        )
        .attribute("tags", Attribute::set(Type::String, "Tags.").optional())
        .attribute("extra", Attribute::dynamic("Anything.").optional())
}

fn api_error(diagnostics: &mut Diagnostics, error: String) {
    diagnostics.error("Store error", error);
}

#[async_trait]
impl Resource<Store> for ThingResource {
    fn type_name(&self) -> &'static str {
        "postern_thing"
    }

    fn schema(&self) -> Schema {
        thing_schema()
    }

    fn validate(&self, config: &Value, diagnostics: &mut Diagnostics) {
        if let Some(name) = config.get("name").and_then(Value::as_str) {
            let ok = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !ok {
                diagnostics.error_at(
                    AttributePath::root("name"),
                    "Invalid name",
                    format!("{name:?} must match [a-z0-9-]+."),
                );
            }
        }
        if let Some(mode) = config.get("mode").and_then(Value::as_str)
            && mode != "enforce"
            && mode != "report"
        {
            diagnostics.error_at(
                AttributePath::root("mode"),
                "Invalid mode",
                "Use enforce or report.",
            );
        }
    }

    async fn plan(&self, _data: &Store, req: &PlanRequest, plan: &mut Plan) {
        if req.config.get("zone").and_then(Value::as_str) == Some("forbidden") {
            plan.diagnostics.error_at(
                AttributePath::root("zone"),
                "Forbidden zone",
                "Pick another zone.",
            );
        }
    }

    async fn create(&self, store: &Store, req: CreateRequest, resp: &mut StateResponse) {
        let Some(mut thing) = resp.diagnostics.check(req.planned.decode::<ThingModel>()) else {
            return;
        };
        let secret_length = secret_length(&req.config);
        let fail_after_create = thing.name == "fail-after-create";
        let saved = store
            .update(|file| {
                file.next_id += 1;
                thing.id = Some(format!("t-{}", file.next_id));
                thing.created_at = Some("2026-01-01T00:00:00Z".to_owned());
                thing.revision = Some(1);
                thing.secret = None;
                thing.secret_length = secret_length;
                assign_route_ids(&mut thing, &mut file.next_id);
                if let Some(id) = &thing.id {
                    file.things.insert(id.clone(), thing.clone());
                }
                thing
            })
            .await;
        match saved {
            Ok(thing) => {
                resp.set_state(&thing);
                if fail_after_create {
                    resp.diagnostics.error(
                        "Failed after create",
                        "The thing exists, but a later step failed.",
                    );
                }
            }
            Err(e) => api_error(&mut resp.diagnostics, e),
        }
    }

    async fn read(&self, store: &Store, req: ReadRequest, resp: &mut StateResponse) {
        let Some(id) = req
            .state
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_owned)
        else {
            resp.diagnostics.error("No id", "The state has no id.");
            return;
        };
        match store.update(|file| file.things.get(&id).cloned()).await {
            Ok(Some(thing)) => resp.set_state(&thing),
            Ok(None) => resp.remove(),
            Err(e) => api_error(&mut resp.diagnostics, e),
        }
    }

    async fn update(&self, store: &Store, req: UpdateRequest, resp: &mut StateResponse) {
        let Some(mut thing) = resp.diagnostics.check(req.planned.decode::<ThingModel>()) else {
            return;
        };
        let Some(prior) = resp.diagnostics.check(req.prior.decode::<ThingModel>()) else {
            return;
        };
        let secret_length = secret_length(&req.config);
        let saved = store
            .update(|file| {
                thing.revision = Some(prior.revision.unwrap_or(0) + 1);
                thing.secret = None;
                thing.secret_length = secret_length;
                assign_route_ids(&mut thing, &mut file.next_id);
                if let Some(id) = &thing.id {
                    file.things.insert(id.clone(), thing.clone());
                }
                thing
            })
            .await;
        match saved {
            Ok(thing) => resp.set_state(&thing),
            Err(e) => api_error(&mut resp.diagnostics, e),
        }
    }

    async fn delete(&self, store: &Store, req: DeleteRequest, diagnostics: &mut Diagnostics) {
        let Some(id) = req
            .prior
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_owned)
        else {
            return;
        };
        if let Err(e) = store.update(|file| file.things.remove(&id)).await {
            api_error(diagnostics, e);
        }
    }

    async fn import(&self, _store: &Store, id: &str, resp: &mut StateResponse) {
        let mut state = Value::null_object(resp.value_type());
        state.set_attribute("id", id);
        resp.set_value(state);
    }
}

fn secret_length(config: &Value) -> Option<i64> {
    config
        .get("secret")
        .and_then(Value::as_str)
        .map(|s| s.len() as i64)
}

fn assign_route_ids(thing: &mut ThingModel, next_id: &mut u64) {
    for route in thing.routes.iter_mut().flatten() {
        if route.id.is_none() {
            *next_id += 1;
            route.id = Some(format!("r-{next_id}"));
        }
    }
}

pub struct ThingDataSource;

#[derive(Serialize, Deserialize)]
struct ThingLookup {
    name: String,
    id: Option<String>,
    zone: Option<String>,
    size: Option<Number>,
}

#[async_trait]
impl DataSource<Store> for ThingDataSource {
    fn type_name(&self) -> &'static str {
        "postern_thing"
    }

    fn schema(&self) -> Schema {
        Schema::new("Looks a thing up by name.")
            .attribute("name", Attribute::string("Name.").required())
            .attribute("id", Attribute::string("Id.").computed())
            .attribute("zone", Attribute::string("Zone.").computed())
            .attribute("size", Attribute::number("Size.").computed())
    }

    async fn read(&self, store: &Store, req: DataSourceReadRequest, resp: &mut StateResponse) {
        let Some(name) = req
            .config
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_owned)
        else {
            return;
        };
        let found = store
            .update(|file| file.things.values().find(|t| t.name == name).cloned())
            .await;
        match found {
            Ok(Some(thing)) => resp.set_state(&ThingLookup {
                name,
                id: thing.id,
                zone: Some(thing.zone),
                size: thing.size,
            }),
            Ok(None) => resp.diagnostics.error_at(
                AttributePath::root("name"),
                "No such thing",
                format!("No thing is named {name:?}."),
            ),
            Err(e) => api_error(&mut resp.diagnostics, e),
        }
    }
}

pub struct TokenEphemeral;

#[async_trait]
impl EphemeralResource<Store> for TokenEphemeral {
    fn type_name(&self) -> &'static str {
        "postern_token"
    }

    fn schema(&self) -> Schema {
        Schema::new("A short-lived token.")
            .attribute("length", Attribute::number("Length.").required())
            .attribute(
                "value",
                Attribute::string("The token.").computed().sensitive(),
            )
    }

    async fn open(&self, _store: &Store, req: OpenRequest, resp: &mut OpenResponse) {
        let length = req
            .config
            .get("length")
            .and_then(Value::as_number)
            .and_then(Number::to_u64)
            .unwrap_or(8)
            .min(64) as usize;
        let value: String = "0123456789abcdef".repeat(4).chars().take(length).collect();
        let mut result = req.config.clone();
        result.set_attribute("value", value);
        resp.set_value(result);
        resp.private = Some(b"opened".to_vec());
    }

    async fn close(
        &self,
        store: &Store,
        req: terraform_provider_postern::framework::CloseRequest,
        diagnostics: &mut Diagnostics,
    ) {
        if req.private.as_deref() != Some(b"opened".as_slice()) {
            diagnostics.error("Bad private data", "close did not get what open left");
        }
        if let Err(e) = store.update(|file| file.closed_tokens += 1).await {
            api_error(diagnostics, e);
        }
    }
}
