//! Conversions between framework types and tfplugin6 messages: schemas, diagnostics
//! and attribute paths.

use super::proto::tfplugin6 as tf;
use crate::framework::{
    Attribute, AttributeKind, AttributePath, Attributes, Diagnostic, Diagnostics, Nesting,
    PathStep, Schema, Severity,
};

/// A framework schema as a tfplugin6 schema.
pub(crate) fn schema(schema: &Schema) -> tf::Schema {
    tf::Schema {
        version: schema.schema_version(),
        block: Some(tf::schema::Block {
            version: schema.schema_version(),
            attributes: attributes(schema.attributes()),
            block_types: Vec::new(),
            description: schema.description().to_owned(),
            description_kind: tf::StringKind::Markdown.into(),
            deprecated: false,
        }),
    }
}

fn attributes(attributes: &Attributes) -> Vec<tf::schema::Attribute> {
    attributes
        .iter()
        .map(|(name, attr)| attribute(name, attr))
        .collect()
}

fn attribute(name: &str, attr: &Attribute) -> tf::schema::Attribute {
    let (ty, nested_type) = match attr.kind() {
        AttributeKind::Typed(ty) => (ty.to_json_bytes(), None),
        AttributeKind::Nested(nesting, nested) => {
            let nesting = match nesting {
                Nesting::Single => tf::schema::object::NestingMode::Single,
                Nesting::List => tf::schema::object::NestingMode::List,
            };
            #[allow(deprecated)] // min_items / max_items: unused by Terraform, left 0.
            let object = tf::schema::Object {
                attributes: attributes(nested),
                nesting: nesting.into(),
                min_items: 0,
                max_items: 0,
            };
            (Vec::new(), Some(object))
        }
    };
    tf::schema::Attribute {
        name: name.to_owned(),
        r#type: ty,
        nested_type,
        description: attr.description().to_owned(),
        required: attr.is_required(),
        optional: attr.is_optional(),
        computed: attr.is_computed(),
        sensitive: attr.is_sensitive(),
        description_kind: tf::StringKind::Markdown.into(),
        deprecated: attr.deprecation().is_some(),
        write_only: attr.is_write_only(),
    }
}

/// Framework diagnostics as tfplugin6 diagnostics.
pub(crate) fn diagnostics(diagnostics: &Diagnostics) -> Vec<tf::Diagnostic> {
    diagnostics.iter().map(diagnostic).collect()
}

/// One framework diagnostic as a tfplugin6 diagnostic.
pub(crate) fn diagnostic(diagnostic: &Diagnostic) -> tf::Diagnostic {
    let severity = match diagnostic.severity {
        Severity::Error => tf::diagnostic::Severity::Error,
        Severity::Warning => tf::diagnostic::Severity::Warning,
    };
    tf::Diagnostic {
        severity: severity.into(),
        summary: diagnostic.summary.clone(),
        detail: diagnostic.detail.clone(),
        attribute: diagnostic
            .path
            .as_ref()
            .filter(|p| !p.is_empty())
            .map(attribute_path),
    }
}

/// A framework path as a tfplugin6 path.
pub(crate) fn attribute_path(path: &AttributePath) -> tf::AttributePath {
    use tf::attribute_path::{Step, step::Selector};
    tf::AttributePath {
        steps: path
            .steps()
            .iter()
            .map(|step| Step {
                selector: Some(match step {
                    PathStep::Attribute(name) => Selector::AttributeName(name.clone()),
                    PathStep::Key(key) => Selector::ElementKeyString(key.clone()),
                    PathStep::Index(index) => Selector::ElementKeyInt(*index),
                }),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Type;

    #[test]
    fn schemas_carry_flags_types_and_nesting() {
        let schema = Schema::new("A tunnel.")
            .version(2)
            .attribute(
                "origin",
                Attribute::single_nested(
                    Attributes::new().with("port", Attribute::number("Port.").optional()),
                    "Origin.",
                )
                .optional()
                .sensitive(),
            )
            .attribute(
                "labels",
                Attribute::map(Type::String, "Labels.")
                    .optional()
                    .computed(),
            );
        let proto = super::schema(&schema);
        assert_eq!(proto.version, 2);
        let block = proto.block.unwrap_or_default();
        assert_eq!(block.attributes.len(), 2);
        let labels = &block.attributes[0];
        assert_eq!(labels.name, "labels");
        assert_eq!(labels.r#type, br#"["map","string"]"#.to_vec());
        assert!(labels.optional && labels.computed && !labels.required);
        let origin = &block.attributes[1];
        assert!(origin.r#type.is_empty() && origin.sensitive);
        let nested = origin.nested_type.clone().unwrap_or_default();
        assert_eq!(
            nested.nesting,
            tf::schema::object::NestingMode::Single as i32
        );
        assert_eq!(nested.attributes[0].r#type, br#""number""#.to_vec());
    }

    #[test]
    fn paths_keep_every_step() {
        use tf::attribute_path::step::Selector;
        let path = AttributePath::root("routes")
            .index(1)
            .attribute("selector")
            .key("release");
        let selectors: Vec<Option<Selector>> = attribute_path(&path)
            .steps
            .into_iter()
            .map(|step| step.selector)
            .collect();
        assert_eq!(
            selectors,
            vec![
                Some(Selector::AttributeName("routes".into())),
                Some(Selector::ElementKeyInt(1)),
                Some(Selector::AttributeName("selector".into())),
                Some(Selector::ElementKeyString("release".into())),
            ]
        );
        let d = diagnostic(&Diagnostic::warning("w", "d").at(path));
        assert_eq!(d.severity, tf::diagnostic::Severity::Warning as i32);
        assert_eq!(d.attribute.map(|a| a.steps.len()), Some(4));
    }
}
