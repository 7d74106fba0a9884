//! The Terraform registry documentation (`docs/index.md`, `docs/resources/<name>.md`,
//! `docs/data-sources/<name>.md`, `docs/ephemeral-resources/<name>.md`), generated from the
//! provider's schema descriptions and the examples under `examples/{provider,resources,
//! data-sources,ephemeral-resources}/`. `postern-docs` writes it; a test fails when the
//! committed files are stale.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// One kind of page: directory, label, example file name, and the schemas of that kind.
type PageKind<'a> = (
    &'static str,
    &'static str,
    &'static str,
    Vec<(&'a String, &'a Schema)>,
);

/// A section of the schema list and which attributes belong in it.
type Group = (&'static str, fn(&Attribute) -> bool);

use crate::framework::{
    Attribute, AttributeKind, Attributes, Nesting, Provider, Registry, Schema, Type,
};

/// Every documentation file, by path relative to the repository root.
pub fn generate<P: Provider>(registry: &Registry<P>, root: &Path) -> BTreeMap<PathBuf, String> {
    let mut files = BTreeMap::new();
    files.insert(
        PathBuf::from("docs/index.md"),
        index_page(&registry.provider_schema, root),
    );
    let kinds: [PageKind<'_>; 3] = [
        (
            "resources",
            "Resource",
            "resource.tf",
            registry
                .resources
                .iter()
                .map(|(n, r)| (n, &r.schema))
                .collect(),
        ),
        (
            "data-sources",
            "Data Source",
            "data-source.tf",
            registry
                .data_sources
                .iter()
                .map(|(n, r)| (n, &r.schema))
                .collect(),
        ),
        (
            "ephemeral-resources",
            "Ephemeral Resource",
            "ephemeral-resource.tf",
            registry
                .ephemeral_resources
                .iter()
                .map(|(n, r)| (n, &r.schema))
                .collect(),
        ),
    ];
    for (dir, label, example, entries) in kinds {
        for (name, schema) in entries {
            let examples = root.join("examples").join(dir).join(name);
            let page = type_page(name, label, schema, &examples, example);
            files.insert(
                PathBuf::from(format!("docs/{dir}/{}.md", short_name(name))),
                page,
            );
        }
    }
    files
}

/// `postern_tunnel` → `tunnel`, as the registry names pages.
fn short_name(name: &str) -> &str {
    name.strip_prefix("postern_").unwrap_or(name)
}

fn index_page(schema: &Schema, root: &Path) -> String {
    let mut page = String::new();
    let _ = writeln!(
        page,
        "---\npage_title: \"Provider: Postern\"\ndescription: |-\n  {}\n---\n",
        first_line(schema.description())
    );
    let _ = writeln!(page, "# Postern Provider\n\n{}\n", schema.description());
    if let Some(example) = read(&root.join("examples/provider/provider.tf")) {
        let _ = writeln!(page, "## Example Usage\n\n```terraform\n{}```\n", example);
    }
    page.push_str("## Schema\n\n");
    write_attributes(&mut page, schema.attributes(), "");
    page
}

fn type_page(name: &str, label: &str, schema: &Schema, examples: &Path, example: &str) -> String {
    let mut page = String::new();
    let _ = writeln!(
        page,
        "---\npage_title: \"{name} {label} - postern\"\nsubcategory: \"\"\ndescription: |-\n  {}\n---\n",
        first_line(schema.description())
    );
    let _ = writeln!(page, "# {name} ({label})\n\n{}\n", schema.description());
    if let Some(text) = read(&examples.join(example)) {
        let _ = writeln!(page, "## Example Usage\n\n```terraform\n{text}```\n");
    }
    page.push_str("## Schema\n\n");
    write_attributes(&mut page, schema.attributes(), "");
    if let Some(text) = read(&examples.join("import.sh")) {
        let _ = writeln!(
            page,
            "## Import\n\nImport is supported using the following syntax:\n\n```shell\n{text}```\n"
        );
    }
    if let Some(text) = read(&examples.join("import-by-block.tf")) {
        let _ = writeln!(
            page,
            "In Terraform 1.5 and later, use an `import` block:\n\n```terraform\n{text}```\n"
        );
    }
    page.trim_end().to_string() + "\n"
}

/// Writes the Required / Optional / Read-Only lists of `attributes`, then a section per nested
/// attribute. `anchor` is the path of the parent (empty at the top).
fn write_attributes(page: &mut String, attributes: &Attributes, anchor: &str) {
    let groups: [Group; 3] = [
        ("Required", |a| a.is_required()),
        ("Optional", |a| a.is_optional()),
        ("Read-Only", |a| !a.is_required() && !a.is_optional()),
    ];
    let heading = if anchor.is_empty() { "###" } else { "####" };
    for (title, belongs) in groups {
        let members: Vec<_> = attributes.iter().filter(|(_, a)| belongs(a)).collect();
        if members.is_empty() {
            continue;
        }
        let _ = writeln!(page, "{heading} {title}\n");
        for (name, attribute) in members {
            let mut tags = vec![type_label(attribute)];
            if attribute.is_sensitive() {
                tags.push("Sensitive".into());
            }
            if attribute.is_write_only() {
                tags.push("Write-only".into());
            }
            let mut line = format!(
                "- `{name}` ({}) {}",
                tags.join(", "),
                attribute.description()
            );
            if attribute.is_requires_replace() {
                line.push_str(" Changing it replaces the object.");
            }
            let says_default = attribute.description().to_lowercase().contains("default");
            if let Some(default) = attribute
                .default_value()
                .filter(|_| !says_default)
                .map(|v| v.to_json())
            {
                let _ = write!(line, " Defaults to `{default}`.");
            }
            if let AttributeKind::Nested(_, _) = attribute.kind() {
                let _ = write!(
                    line,
                    " (see [below for nested schema](#nestedatt--{}))",
                    join(anchor, name)
                );
            }
            let _ = writeln!(page, "{line}");
        }
        page.push('\n');
    }
    for (name, attribute) in attributes.iter() {
        if let AttributeKind::Nested(_, nested) = attribute.kind() {
            let path = join(anchor, name);
            let _ = writeln!(
                page,
                "<a id=\"nestedatt--{path}\"></a>\n### Nested Schema for `{}`\n",
                path.replace("--", ".")
            );
            write_attributes(page, nested, &path);
        }
    }
}

fn join(anchor: &str, name: &str) -> String {
    if anchor.is_empty() {
        name.to_string()
    } else {
        format!("{anchor}--{name}")
    }
}

fn type_label(attribute: &Attribute) -> String {
    match attribute.kind() {
        AttributeKind::Typed(ty) => type_name(ty),
        AttributeKind::Nested(Nesting::Single, _) => "Attributes".into(),
        AttributeKind::Nested(Nesting::List, _) => "Attributes List".into(),
    }
}

fn type_name(ty: &Type) -> String {
    match ty {
        Type::String => "String".into(),
        Type::Number => "Number".into(),
        Type::Bool => "Boolean".into(),
        Type::Dynamic => "Dynamic".into(),
        Type::List(e) => format!("List of {}", type_name(e)),
        Type::Set(e) => format!("Set of {}", type_name(e)),
        Type::Map(e) => format!("Map of {}", type_name(e)),
        Type::Object(_) => "Object".into(),
        Type::Tuple(_) => "Tuple".into(),
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

fn read(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(if text.ends_with('\n') {
        text
    } else {
        text + "\n"
    })
}
