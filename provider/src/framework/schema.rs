//! Schemas: the attributes of a provider block, resource, data source or ephemeral
//! resource, declared with a builder, plus the planning behaviour attached to each
//! attribute (requires replace, defaults, stable computed values).
//!
//! ```ignore
//! Schema::new("A Postern tunnel: the identity a connector runs as.")
//!     .attribute("id", Attribute::string("The tunnel's UUID.").computed().stable())
//!     .attribute("name", Attribute::string("Unique name.").required())
//!     .attribute(
//!         "labels",
//!         Attribute::map(Type::String, "Labels for routing.")
//!             .optional()
//!             .computed()
//!             .default(Value::map::<String>([])),
//!     )
//!     .attribute("hostname", Attribute::string("The FQDN.").required().requires_replace())
//!     .attribute("token", Attribute::string("Connector token.").computed().sensitive().stable())
//! ```
//!
//! Blocks (`x { ... }`) are not supported: nested data is declared as nested
//! attributes (`x = { ... }`, `x = [{ ... }]`), as terraform-plugin-framework recommends.

use std::collections::BTreeMap;

use super::types::Type;
use super::value::Value;

/// The schema of a provider block, resource, data source or ephemeral resource.
#[derive(Clone, Debug)]
pub struct Schema {
    pub(crate) version: i64,
    pub(crate) description: String,
    pub(crate) deprecated: bool,
    pub(crate) attributes: Attributes,
}

/// Named attributes, ordered by name.
#[derive(Clone, Debug, Default)]
pub struct Attributes(BTreeMap<String, Attribute>);

/// How nested attributes repeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nesting {
    /// `x = { ... }`
    Single,
    /// `x = [{ ... }, ...]`
    List,
    /// `x = [{ ... }, ...]` without order or duplicates.
    Set,
    /// `x = { key = { ... }, ... }`
    Map,
}

/// What an attribute holds.
#[derive(Clone, Debug)]
pub enum AttributeKind {
    /// A value of one cty type (primitive or collection).
    Typed(Type),
    /// Objects with attributes of their own.
    Nested(Nesting, Attributes),
}

/// One attribute and everything Terraform and the planner need to know about it.
#[derive(Clone, Debug)]
pub struct Attribute {
    pub(crate) kind: AttributeKind,
    pub(crate) description: String,
    pub(crate) required: bool,
    pub(crate) optional: bool,
    pub(crate) computed: bool,
    pub(crate) sensitive: bool,
    pub(crate) write_only: bool,
    pub(crate) deprecated: bool,
    pub(crate) requires_replace: bool,
    pub(crate) stable: bool,
    pub(crate) default: Option<Value>,
}

impl Schema {
    /// A schema with no attributes yet, at version 0.
    pub fn new(description: impl Into<String>) -> Self {
        Self {
            version: 0,
            description: description.into(),
            deprecated: false,
            attributes: Attributes::new(),
        }
    }

    /// Sets the schema version (bump it when the state's shape changes, and handle the
    /// old shape in `Resource::upgrade_state`).
    pub fn version(mut self, version: i64) -> Self {
        self.version = version;
        self
    }

    /// Marks the whole resource deprecated.
    pub fn deprecated(mut self) -> Self {
        self.deprecated = true;
        self
    }

    /// Adds an attribute.
    pub fn attribute(mut self, name: impl Into<String>, attribute: Attribute) -> Self {
        self.attributes.0.insert(name.into(), attribute);
        self
    }

    /// The schema's version.
    pub fn schema_version(&self) -> i64 {
        self.version
    }

    /// The schema's description.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Whether the schema is deprecated.
    pub fn is_deprecated(&self) -> bool {
        self.deprecated
    }

    /// The top-level attributes.
    pub fn attributes(&self) -> &Attributes {
        &self.attributes
    }

    /// The type of a whole value (config, plan or state) of this schema: an object.
    pub fn value_type(&self) -> Type {
        self.attributes.object_type()
    }

    /// Problems that would make Terraform reject (or misread) the schema: names that are
    /// not `[a-z0-9_]+`, attributes without a description, impossible flag
    /// combinations, defaults that do not fit their type.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.description.trim().is_empty() {
            out.push("the schema has no description".to_owned());
        }
        self.attributes.collect_problems("", false, &mut out);
        out
    }
}

impl Attributes {
    /// No attributes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an attribute.
    pub fn with(mut self, name: impl Into<String>, attribute: Attribute) -> Self {
        self.0.insert(name.into(), attribute);
        self
    }

    /// An attribute by name.
    pub fn get(&self, name: &str) -> Option<&Attribute> {
        self.0.get(name)
    }

    /// The attributes, ordered by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Attribute)> {
        self.0.iter().map(|(name, attr)| (name.as_str(), attr))
    }

    /// The object type these attributes make.
    pub fn object_type(&self) -> Type {
        Type::Object(
            self.0
                .iter()
                .map(|(name, attr)| (name.clone(), attr.value_type()))
                .collect(),
        )
    }

    fn collect_problems(&self, prefix: &str, in_set: bool, out: &mut Vec<String>) {
        for (name, attr) in &self.0 {
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}.{name}")
            };
            attr.collect_problems(&path, name, in_set, out);
        }
    }
}

impl Attribute {
    fn new(kind: AttributeKind, description: impl Into<String>) -> Self {
        Self {
            kind,
            description: description.into(),
            required: false,
            optional: false,
            computed: false,
            sensitive: false,
            write_only: false,
            deprecated: false,
            requires_replace: false,
            stable: false,
            default: None,
        }
    }

    /// A string attribute.
    pub fn string(description: impl Into<String>) -> Self {
        Self::of_type(Type::String, description)
    }

    /// A number attribute.
    pub fn number(description: impl Into<String>) -> Self {
        Self::of_type(Type::Number, description)
    }

    /// A bool attribute.
    pub fn bool(description: impl Into<String>) -> Self {
        Self::of_type(Type::Bool, description)
    }

    /// An attribute of any type, chosen by the configuration.
    pub fn dynamic(description: impl Into<String>) -> Self {
        Self::of_type(Type::Dynamic, description)
    }

    /// A list of `element`.
    pub fn list(element: Type, description: impl Into<String>) -> Self {
        Self::of_type(Type::list(element), description)
    }

    /// A set of `element`.
    pub fn set(element: Type, description: impl Into<String>) -> Self {
        Self::of_type(Type::set(element), description)
    }

    /// A map of `element`.
    pub fn map(element: Type, description: impl Into<String>) -> Self {
        Self::of_type(Type::map(element), description)
    }

    /// An attribute of any cty type.
    pub fn of_type(ty: Type, description: impl Into<String>) -> Self {
        Self::new(AttributeKind::Typed(ty), description)
    }

    /// One nested object: `x = { a = 1 }`.
    pub fn single_nested(attributes: Attributes, description: impl Into<String>) -> Self {
        Self::new(
            AttributeKind::Nested(Nesting::Single, attributes),
            description,
        )
    }

    /// A list of nested objects: `x = [{ a = 1 }]`.
    pub fn list_nested(attributes: Attributes, description: impl Into<String>) -> Self {
        Self::new(
            AttributeKind::Nested(Nesting::List, attributes),
            description,
        )
    }

    /// A set of nested objects.
    pub fn set_nested(attributes: Attributes, description: impl Into<String>) -> Self {
        Self::new(AttributeKind::Nested(Nesting::Set, attributes), description)
    }

    /// A map of nested objects: `x = { k = { a = 1 } }`.
    pub fn map_nested(attributes: Attributes, description: impl Into<String>) -> Self {
        Self::new(AttributeKind::Nested(Nesting::Map, attributes), description)
    }

    /// The configuration must set it.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// The configuration may set it.
    pub fn optional(mut self) -> Self {
        self.optional = true;
        self
    }

    /// The provider sets it (combine with `optional` for "set by the user or else by
    /// the provider").
    pub fn computed(mut self) -> Self {
        self.computed = true;
        self
    }

    /// Hidden in plan output and marked sensitive in state.
    pub fn sensitive(mut self) -> Self {
        self.sensitive = true;
        self
    }

    /// Never stored: the provider sees it in config at plan and apply, and it is null in
    /// plan and state (the framework enforces that).
    pub fn write_only(mut self) -> Self {
        self.write_only = true;
        self
    }

    /// Shown as deprecated by Terraform.
    pub fn deprecated(mut self) -> Self {
        self.deprecated = true;
        self
    }

    /// A change of this attribute destroys and re-creates the object.
    pub fn requires_replace(mut self) -> Self {
        self.requires_replace = true;
        self
    }

    /// Computed and unchanging once the object exists: at plan time the prior state's
    /// value is carried into the plan instead of "known after apply" (like
    /// terraform-plugin-framework's `UseStateForUnknown`). For ids, tokens, creation
    /// times.
    pub fn stable(mut self) -> Self {
        self.stable = true;
        self
    }

    /// The value planned when the configuration leaves an `optional().computed()`
    /// attribute unset.
    pub fn default(mut self, value: impl Into<Value>) -> Self {
        self.default = Some(value.into());
        self
    }

    /// What the attribute holds.
    pub fn kind(&self) -> &AttributeKind {
        &self.kind
    }

    /// The attribute's description.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Whether the configuration must set it.
    pub fn is_required(&self) -> bool {
        self.required
    }

    /// Whether the configuration may set it.
    pub fn is_optional(&self) -> bool {
        self.optional
    }

    /// Whether the provider may set it.
    pub fn is_computed(&self) -> bool {
        self.computed
    }

    /// Whether it is sensitive.
    pub fn is_sensitive(&self) -> bool {
        self.sensitive
    }

    /// Whether it is write-only.
    pub fn is_write_only(&self) -> bool {
        self.write_only
    }

    /// Whether it is deprecated.
    pub fn is_deprecated(&self) -> bool {
        self.deprecated
    }

    /// Whether changing it replaces the object.
    pub fn is_requires_replace(&self) -> bool {
        self.requires_replace
    }

    /// Whether its prior value is carried into plans.
    pub fn is_stable(&self) -> bool {
        self.stable
    }

    /// Its default value, if any.
    pub fn default_value(&self) -> Option<&Value> {
        self.default.as_ref()
    }

    /// The attribute's value type.
    pub fn value_type(&self) -> Type {
        match &self.kind {
            AttributeKind::Typed(ty) => ty.clone(),
            AttributeKind::Nested(nesting, attrs) => {
                let object = attrs.object_type();
                match nesting {
                    Nesting::Single => object,
                    Nesting::List => Type::list(object),
                    Nesting::Set => Type::set(object),
                    Nesting::Map => Type::map(object),
                }
            }
        }
    }

    fn collect_problems(&self, path: &str, name: &str, in_set: bool, out: &mut Vec<String>) {
        let mut problem = |what: &str| out.push(format!("attribute {path}: {what}"));
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            problem("names must match [a-z0-9_]+");
        }
        if self.description.trim().is_empty() {
            problem("every attribute needs a description");
        }
        if !(self.required || self.optional || self.computed) {
            problem("must be required, optional or computed");
        }
        if self.required && (self.optional || self.computed) {
            problem("required excludes optional and computed");
        }
        if self.default.is_some() && !(self.optional && self.computed) {
            problem("a default needs optional and computed");
        }
        if self.stable && !self.computed {
            problem("stable applies to computed attributes only");
        }
        if self.write_only && self.computed {
            problem("write-only attributes cannot be computed");
        }
        if self.write_only && in_set {
            problem("write-only attributes cannot sit inside a set");
        }
        let ty = self.value_type();
        if in_set && ty.has_dynamic() {
            problem("dynamic types cannot sit inside a set");
        }
        if let Some(default) = &self.default
            && let Err(e) = default.check_type(&ty)
        {
            problem(&format!("default does not fit the type: {e}"));
        }
        if let AttributeKind::Nested(nesting, attrs) = &self.kind {
            attrs.collect_problems(path, in_set || *nesting == Nesting::Set, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_type_includes_nested_attributes() {
        let schema = Schema::new("test")
            .attribute("name", Attribute::string("n").required())
            .attribute(
                "routes",
                Attribute::list_nested(
                    Attributes::new()
                        .with("weight", Attribute::number("w").required())
                        .with("selector", Attribute::map(Type::String, "s").required()),
                    "r",
                )
                .optional(),
            );
        assert_eq!(
            schema.value_type(),
            Type::object([
                ("name", Type::String),
                (
                    "routes",
                    Type::list(Type::object([
                        ("selector", Type::map(Type::String)),
                        ("weight", Type::Number)
                    ]))
                ),
            ])
        );
        assert!(schema.problems().is_empty(), "{:?}", schema.problems());
    }

    #[test]
    fn problems_are_found() {
        let schema = Schema::new("test")
            .attribute("Bad", Attribute::string("x").required())
            .attribute("nodesc", Attribute::string("").optional())
            .attribute("neither", Attribute::string("x"))
            .attribute("both", Attribute::string("x").required().computed())
            .attribute("dflt", Attribute::string("x").optional().default(true))
            .attribute(
                "s",
                Attribute::set_nested(
                    Attributes::new().with("w", Attribute::string("x").optional().write_only()),
                    "x",
                )
                .optional(),
            );
        let problems = schema.problems();
        for needle in [
            "attribute Bad: names",
            "attribute nodesc: every attribute needs a description",
            "attribute neither: must be",
            "attribute both: required excludes",
            "attribute dflt: a default needs",
            "attribute dflt: default does not fit",
            "attribute s.w: write-only attributes cannot sit inside a set",
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(needle)),
                "missing {needle:?} in {problems:#?}"
            );
        }
    }
}
