//! `postern-docs`: writes the provider's registry documentation under `docs/` from its schema
//! descriptions and the examples. `postern-docs --check` exits 1 when `docs/` is stale.

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let check = std::env::args().any(|a| a == "--check");
    let files =
        terraform_provider_postern::docs::generate(&terraform_provider_postern::registry(), &root);
    let mut stale = Vec::new();
    for (path, text) in &files {
        let target = root.join(path);
        if std::fs::read_to_string(&target).ok().as_deref() == Some(text.as_str()) {
            continue;
        }
        stale.push(path.display().to_string());
        if !check {
            if let Some(dir) = target.parent()
                && let Err(error) = std::fs::create_dir_all(dir)
            {
                eprintln!("error: cannot create {}: {error}", dir.display());
                return ExitCode::FAILURE;
            }
            if let Err(error) = std::fs::write(&target, text) {
                eprintln!("error: cannot write {}: {error}", target.display());
                return ExitCode::FAILURE;
            }
        }
    }
    match (check, stale.is_empty()) {
        (_, true) => {
            eprintln!("docs/ is current ({} files)", files.len());
            ExitCode::SUCCESS
        }
        (true, false) => {
            eprintln!(
                "docs/ is stale: {}\nrun: cargo run -p terraform-provider-postern --bin postern-docs",
                stale.join(", ")
            );
            ExitCode::FAILURE
        }
        (false, false) => {
            eprintln!("wrote {}", stale.join(", "));
            ExitCode::SUCCESS
        }
    }
}
