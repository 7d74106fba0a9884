//! The committed registry docs (`docs/index.md`, `docs/resources/`, `docs/data-sources/`) are
//! what `postern-docs` generates from the current schemas and examples.

use std::path::Path;

#[test]
fn committed_docs_are_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let files =
        terraform_provider_postern::docs::generate(&terraform_provider_postern::registry(), &root);
    assert!(
        files.len() >= 7,
        "expected index, 3 resources and 3 data sources"
    );
    let stale: Vec<String> = files
        .iter()
        .filter(|(path, text)| {
            std::fs::read_to_string(root.join(path)).ok().as_deref() != Some(text.as_str())
        })
        .map(|(path, _)| path.display().to_string())
        .collect();
    assert!(
        stale.is_empty(),
        "docs are stale: {stale:?}\nregenerate with: cargo run -p terraform-provider-postern --bin postern-docs"
    );
}

#[test]
fn every_page_has_an_example_and_every_resource_page_an_import_section() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let files =
        terraform_provider_postern::docs::generate(&terraform_provider_postern::registry(), &root);
    for (path, text) in &files {
        let path = path.display().to_string();
        assert!(text.contains("## Example Usage"), "{path} has no example");
        if path.starts_with("docs/resources/") {
            assert!(text.contains("## Import"), "{path} has no import section");
        }
    }
}
