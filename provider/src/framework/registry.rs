//! The registry: one provider plus every resource, data source and ephemeral resource
//! type it serves, with their schemas computed once.
//!
//! ```ignore
//! let registry = Registry::new(PosternProvider)
//!     .resources(resources::all())
//!     .data_sources(data_sources::all());
//! ```

use std::collections::BTreeMap;

use super::data_source::DataSource;
use super::ephemeral::EphemeralResource;
use super::provider::Provider;
use super::resource::Resource;
use super::schema::Schema;
use super::types::Type;

/// A boxed resource for provider data `D`.
pub(crate) type BoxedResource<D> = Box<dyn Resource<D>>;
/// A boxed data source for provider data `D`.
pub(crate) type BoxedDataSource<D> = Box<dyn DataSource<D>>;
/// A boxed ephemeral resource for provider data `D`.
pub(crate) type BoxedEphemeralResource<D> = Box<dyn EphemeralResource<D>>;

/// Everything a provider serves.
pub struct Registry<P: Provider> {
    pub(crate) provider: P,
    pub(crate) provider_schema: Schema,
    pub(crate) resources: BTreeMap<String, Registered<BoxedResource<P::Data>>>,
    pub(crate) data_sources: BTreeMap<String, Registered<BoxedDataSource<P::Data>>>,
    pub(crate) ephemeral_resources: BTreeMap<String, Registered<BoxedEphemeralResource<P::Data>>>,
    duplicates: Vec<String>,
}

/// A registered handler with its schema and value type.
pub(crate) struct Registered<T> {
    pub(crate) handler: T,
    pub(crate) schema: Schema,
    pub(crate) ty: Type,
}

impl<T> Registered<T> {
    fn new(handler: T, schema: Schema) -> Self {
        let ty = schema.value_type();
        Self {
            handler,
            schema,
            ty,
        }
    }
}

impl<P: Provider> Registry<P> {
    /// A registry serving `provider` and no resources yet.
    pub fn new(provider: P) -> Self {
        let provider_schema = provider.schema();
        Self {
            provider,
            provider_schema,
            resources: BTreeMap::new(),
            data_sources: BTreeMap::new(),
            ephemeral_resources: BTreeMap::new(),
            duplicates: Vec::new(),
        }
    }

    /// Adds a resource type.
    pub fn resource(mut self, resource: impl Resource<P::Data>) -> Self {
        self.insert_resource(Box::new(resource));
        self
    }

    /// Adds a data source type.
    pub fn data_source(mut self, data_source: impl DataSource<P::Data>) -> Self {
        self.insert_data_source(Box::new(data_source));
        self
    }

    /// Adds an ephemeral resource type.
    pub fn ephemeral_resource(mut self, ephemeral: impl EphemeralResource<P::Data>) -> Self {
        self.insert_ephemeral(Box::new(ephemeral));
        self
    }

    fn insert_resource(&mut self, resource: BoxedResource<P::Data>) {
        let name = resource.type_name().to_owned();
        let schema = resource.schema();
        if self
            .resources
            .insert(name.clone(), Registered::new(resource, schema))
            .is_some()
        {
            self.duplicates.push(format!("resource {name}"));
        }
    }

    fn insert_data_source(&mut self, data_source: BoxedDataSource<P::Data>) {
        let name = data_source.type_name().to_owned();
        let schema = data_source.schema();
        if self
            .data_sources
            .insert(name.clone(), Registered::new(data_source, schema))
            .is_some()
        {
            self.duplicates.push(format!("data source {name}"));
        }
    }

    fn insert_ephemeral(&mut self, ephemeral: BoxedEphemeralResource<P::Data>) {
        let name = ephemeral.type_name().to_owned();
        let schema = ephemeral.schema();
        if self
            .ephemeral_resources
            .insert(name.clone(), Registered::new(ephemeral, schema))
            .is_some()
        {
            self.duplicates.push(format!("ephemeral resource {name}"));
        }
    }

    /// The provider block's schema.
    pub fn provider_schema(&self) -> &Schema {
        &self.provider_schema
    }

    /// Resource type names with their schemas.
    pub fn resource_schemas(&self) -> impl Iterator<Item = (&str, &Schema)> {
        self.resources.iter().map(|(n, r)| (n.as_str(), &r.schema))
    }

    /// Data source type names with their schemas.
    pub fn data_source_schemas(&self) -> impl Iterator<Item = (&str, &Schema)> {
        self.data_sources
            .iter()
            .map(|(n, r)| (n.as_str(), &r.schema))
    }

    /// Ephemeral resource type names with their schemas.
    pub fn ephemeral_resource_schemas(&self) -> impl Iterator<Item = (&str, &Schema)> {
        self.ephemeral_resources
            .iter()
            .map(|(n, r)| (n.as_str(), &r.schema))
    }

    /// Everything wrong with the registered schemas and names; empty when Terraform
    /// will accept them. The server refuses to start otherwise, and a unit test should
    /// assert this is empty for the shipped registry.
    pub(crate) fn problems(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .duplicates
            .iter()
            .map(|d| format!("{d} is registered twice"))
            .collect();
        let mut check = |kind: &str, name: &str, schema: &Schema| {
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                out.push(format!("{kind} {name:?}: type names must match [a-z0-9_]+"));
            }
            out.extend(
                schema
                    .problems()
                    .into_iter()
                    .map(|p| format!("{kind} {name}: {p}")),
            );
        };
        check("provider", "provider", &self.provider_schema);
        for (name, r) in &self.resources {
            check("resource", name, &r.schema);
        }
        for (name, r) in &self.data_sources {
            check("data source", name, &r.schema);
        }
        for (name, r) in &self.ephemeral_resources {
            check("ephemeral resource", name, &r.schema);
        }
        out
    }
}
