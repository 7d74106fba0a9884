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
    pub(crate) attributes: Attributes,
}

/// Named attributes, ordered by name.
#[derive(Clone, Debug, Default)]
pub struct Attributes(BTreeMap<String, Attribute>);

/// How nested attributes repeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Nesting {
    /// `x = { ... }`
    Single,
    /// `x = [{ ... }, ...]`
    List,
}

/// What an attribute holds.
#[derive(Clone, Debug)]
pub(crate) enum AttributeKind {
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
    pub(crate) requires_replace: bool,
    pub(crate) stable: bool,
    pub(crate) default: Option<Value>,
    pub(crate) deprecation: Option<String>,
}

impl Schema {
    /// A schema with no attributes yet, at version 0.
    pub fn new(description: impl Into<String>) -> Self {
        Self {
            version: 0,
            description: description.into(),
            attributes: Attributes::new(),
        }
    }

    /// Sets the schema version (bump it when the state's shape changes, and handle the
    /// old shape in `Resource::upgrade_state`).
    pub(crate) fn version(mut self, version: i64) -> Self {
        self.version = version;
        self
    }

    /// Adds an attribute.
    pub fn attribute(mut self, name: impl Into<String>, attribute: Attribute) -> Self {
        self.attributes.0.insert(name.into(), attribute);
        self
    }

    /// The schema's version.
    pub(crate) fn schema_version(&self) -> i64 {
        self.version
    }

    /// The schema's description.
    pub(crate) fn description(&self) -> &str {
        &self.description
    }

    /// The top-level attributes.
    pub(crate) fn attributes(&self) -> &Attributes {
        &self.attributes
    }

    /// The type of a whole value (config, plan or state) of this schema: an object.
    pub fn value_type(&self) -> Type {
        self.attributes.object_type()
    }

    /// Problems that would make Terraform reject (or misread) the schema: names that are
    /// not `[a-z0-9_]+`, attributes without a description, impossible flag
    /// combinations, defaults that do not fit their type.
    pub(crate) fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.description.trim().is_empty() {
            out.push("the schema has no description".to_owned());
        }
        self.attributes.collect_problems("", &mut out);
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

    /// The attributes, ordered by name.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &Attribute)> {
        self.0.iter().map(|(name, attr)| (name.as_str(), attr))
    }

    /// The object type these attributes make.
    pub(crate) fn object_type(&self) -> Type {
        Type::Object(
            self.0
                .iter()
                .map(|(name, attr)| (name.clone(), attr.value_type()))
                .collect(),
        )
    }

    fn collect_problems(&self, prefix: &str, out: &mut Vec<String>) {
        for (name, attr) in &self.0 {
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}.{name}")
            };
            attr.collect_problems(&path, name, out);
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
            requires_replace: false,
            stable: false,
            default: None,
            deprecation: None,
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
    pub(crate) fn bool(description: impl Into<String>) -> Self {
        Self::of_type(Type::Bool, description)
    }

    /// An attribute of any type, chosen by the configuration.
    pub fn dynamic(description: impl Into<String>) -> Self {
        Self::of_type(Type::Dynamic, description)
    }

    /// A list of `element`.
    pub(crate) fn list(element: Type, description: impl Into<String>) -> Self {
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
    pub(crate) fn of_type(ty: Type, description: impl Into<String>) -> Self {
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

    /// Marks the attribute deprecated (Terraform shows it so); `message` names what to use
    /// instead, and the resource warns with it when a configuration sets the attribute.
    pub(crate) fn deprecated(mut self, message: impl Into<String>) -> Self {
        self.deprecation = Some(message.into());
        self
    }

    /// The deprecation message, when the attribute is deprecated.
    pub(crate) fn deprecation(&self) -> Option<&str> {
        self.deprecation.as_deref()
    }

    /// What the attribute holds.
    pub(crate) fn kind(&self) -> &AttributeKind {
        &self.kind
    }

    /// The attribute's description.
    pub(crate) fn description(&self) -> &str {
        &self.description
    }

    /// Whether the configuration must set it.
    pub(crate) fn is_required(&self) -> bool {
        self.required
    }

    /// Whether the configuration may set it.
    pub(crate) fn is_optional(&self) -> bool {
        self.optional
    }

    /// Whether the provider may set it.
    pub(crate) fn is_computed(&self) -> bool {
        self.computed
    }

    /// Whether it is sensitive.
    pub(crate) fn is_sensitive(&self) -> bool {
        self.sensitive
    }

    /// Whether it is write-only.
    pub(crate) fn is_write_only(&self) -> bool {
        self.write_only
    }

    /// Whether changing it replaces the object.
    pub(crate) fn is_requires_replace(&self) -> bool {
        self.requires_replace
    }

    /// Its default value, if any.
    pub(crate) fn default_value(&self) -> Option<&Value> {
        self.default.as_ref()
    }

    /// The attribute's value type.
    pub(crate) fn value_type(&self) -> Type {
        match &self.kind {
            AttributeKind::Typed(ty) => ty.clone(),
            AttributeKind::Nested(nesting, attrs) => {
                let object = attrs.object_type();
                match nesting {
                    Nesting::Single => object,
                    Nesting::List => Type::list(object),
                }
            }
        }
    }

    fn collect_problems(&self, path: &str, name: &str, out: &mut Vec<String>) {
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
        let ty = self.value_type();
        if let Some(default) = &self.default
            && let Err(e) = default.check_type(&ty)
        {
            problem(&format!("default does not fit the type: {e}"));
        }
        if let AttributeKind::Nested(_, attrs) = &self.kind {
            attrs.collect_problems(path, out);
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
                Attribute::single_nested(
                    Attributes::new().with("w", Attribute::string("x").computed().write_only()),
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
            "attribute s.w: write-only attributes cannot be computed",
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(needle)),
                "missing {needle:?} in {problems:#?}"
            );
        }
    }
}
