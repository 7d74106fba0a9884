//! The connector's module graph: which module of `runtime/src` may use which. Every
//! `crate::` path outside `#[cfg(test)]` code must be an edge drawn in [`GRAPH`], and the
//! graph has no cycle, so a module never calls back into one that uses it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The intended graph, top layer first: a module may use the modules it lists (a child
/// module, such as `origin::pool`, counts as its own node; using its parent counts too).
const GRAPH: &[(&str, &[&str])] = &[
    // Keeps the connections up: enrols, dials, reconnects, rebalances, renews, drains.
    (
        "supervisor",
        &["connection", "connector", "identity", "rebalance", "tls"],
    ),
    // One tunnel connection: dial, TLS, HTTP/2, control and visitor streams.
    ("connection", &["connector", "origin", "body", "tls"]),
    // What every connection of the process shares.
    (
        "connector",
        &["identity", "orchestrator", "origin", "metrics"],
    ),
    ("rebalance", &["tls"]),
    ("identity", &["tls"]),
    ("origin", &["orchestrator", "body", "tls"]),
    ("origin::pool", &["body"]),
    ("metrics", &["body"]),
    ("hello_world", &["body"]),
    ("orchestrator", &[]),
    ("quick", &[]),
    ("config", &[]),
    ("tls", &[]),
    ("body", &[]),
];

/// The module a source file defines: `origin/pool.rs` is `origin::pool`.
fn module_of(relative: &Path) -> String {
    relative
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("::")
}

/// The modules `source` uses outside its tests and comments: `crate::x` names `x` (or
/// `x::y` when `x/y.rs` exists), `super::` names the parent of `module`; its own children do
/// not count.
fn uses(module: &str, source: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    for line in source.lines() {
        let code = line.trim_start();
        if code.starts_with("#[cfg(test)]") {
            // Tests sit last in a file (style.md): nothing after this is production code.
            break;
        }
        if code.starts_with("//") {
            continue;
        }
        for (at, _) in code.match_indices("crate::") {
            let path: Vec<&str> = code[at + "crate::".len()..]
                .split("::")
                .map(|part| {
                    part.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .next()
                        .unwrap_or("")
                })
                .take(2)
                .collect();
            let nested = path.join("::");
            if modules.contains(&nested) {
                used.insert(nested);
            } else if let Some(first) = path.first().filter(|m| modules.contains(**m)) {
                used.insert((*first).to_string());
            }
        }
        if code.contains("super::")
            && let Some((parent, _)) = module.rsplit_once("::")
        {
            used.insert(parent.to_string());
        }
    }
    // A module using its own children is structure, not an edge.
    let children = format!("{module}::");
    used.retain(|target| target != module && !target.starts_with(&children));
    used
}

fn source_files(dir: &Path, root: &Path, found: &mut Vec<std::path::PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("runtime/src is readable")
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            source_files(&path, root, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path.strip_prefix(root).expect("under src").to_path_buf());
        }
    }
}

/// The graph the code has now: module → modules it uses.
fn actual_graph() -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    source_files(&root, &root, &mut files);
    let files: Vec<_> = files
        .into_iter()
        .filter(|f| f != Path::new("lib.rs") && f != Path::new("main.rs"))
        .collect();
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(f)).collect();
    files
        .iter()
        .map(|file| {
            let module = module_of(file);
            let source = std::fs::read_to_string(root.join(file)).expect("readable source");
            let used = uses(&module, &source, &modules);
            (module, used)
        })
        .collect()
}

#[test]
fn every_module_uses_only_what_the_graph_allows() {
    let allowed: BTreeMap<&str, BTreeSet<&str>> = GRAPH
        .iter()
        .map(|(module, uses)| (*module, uses.iter().copied().collect()))
        .collect();
    let mut problems = Vec::new();
    for (module, used) in actual_graph() {
        let Some(may_use) = allowed.get(module.as_str()) else {
            problems.push(format!(
                "{module} is not in the graph: add it to GRAPH in this file"
            ));
            continue;
        };
        for target in used {
            if !may_use.contains(target.as_str()) {
                problems.push(format!(
                    "{module} uses {target}, which the graph does not allow"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_graph_has_no_cycle() {
    // Kahn's algorithm: peel off modules nothing left uses; whatever remains is in a cycle.
    let mut remaining: BTreeMap<&str, BTreeSet<&str>> = GRAPH
        .iter()
        .map(|(module, uses)| (*module, uses.iter().copied().collect()))
        .collect();
    loop {
        let leaves: Vec<&str> = remaining
            .iter()
            .filter(|(_, uses)| uses.iter().all(|u| !remaining.contains_key(u)))
            .map(|(module, _)| *module)
            .collect();
        if leaves.is_empty() {
            break;
        }
        for leaf in leaves {
            remaining.remove(leaf);
        }
    }
    assert!(
        remaining.is_empty(),
        "these modules use each other in a circle: {:?}",
        remaining.keys().collect::<Vec<_>>()
    );
}

#[test]
fn the_scanner_sees_a_cycle_through_a_parent() {
    let modules: BTreeSet<String> = ["origin", "origin::pool", "body"]
        .into_iter()
        .map(String::from)
        .collect();
    let child = "use super::ClientKey;\nuse crate::body::BoxBody;\n#[cfg(test)]\nmod tests { use crate::origin::x; }\n";
    assert_eq!(
        uses("origin::pool", child, &modules),
        ["body", "origin"].into_iter().map(String::from).collect()
    );
    let parent = "// see crate::body\nmod pool;\nuse crate::origin::pool::Pool;\n";
    assert_eq!(uses("origin", parent, &modules), BTreeSet::new());
}
