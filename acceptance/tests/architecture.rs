//! The module graphs of the edge, the connector and the provider, read from their source: no
//! file imports another that (directly or through others) imports it back, and every
//! dependency between top-level modules is one that `docs/guides/architecture.md` allows.
//!
//! A file depends on another when it names a path into it: in a `use`, in code, or inside a
//! macro call (`crate::…`, `super::…`, `self::…`, or a child module's name). A parent that
//! declares a child module depends on it, so a child that names its parent's items closes a
//! cycle. Test modules (`#[cfg(test)]`) are left out; binaries (`main.rs`, `bin/`) are not
//! part of the library's graph.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

/// One crate's library: its source folder and the name of its graph in `docs/guides/architecture.md`.
struct Library {
    name: &'static str,
    src: &'static str,
}

const EDGE: Library = Library {
    name: "edge",
    src: "edge/src",
};
const RUNTIME: Library = Library {
    name: "runtime",
    src: "runtime/src",
};
const PROVIDER: Library = Library {
    name: "provider",
    src: "provider/src",
};

#[test]
fn the_edge_has_no_module_cycle_and_follows_the_documented_graph() {
    check(&EDGE);
}

#[test]
fn the_connector_has_no_module_cycle_and_follows_the_documented_graph() {
    check(&RUNTIME);
}

#[test]
fn the_provider_has_no_module_cycle_and_follows_the_documented_graph() {
    check(&PROVIDER);
}

#[test]
fn a_cycle_is_found_and_named() {
    let graph = Graph::from_sources(&[
        ("lib.rs", "mod a; mod b;"),
        ("a.rs", "use crate::b::Thing; pub struct Other;"),
        (
            "b.rs",
            "pub struct Thing; fn f() { let _ = crate::a::Other; }",
        ),
    ]);
    let cycles = graph.cycles();
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    assert!(cycles[0].contains(&"a.rs".to_string()) && cycles[0].contains(&"b.rs".to_string()));
}

#[test]
fn a_child_naming_its_parents_items_is_a_cycle_and_tests_are_not() {
    let graph = Graph::from_sources(&[
        ("lib.rs", "mod proxy;"),
        (
            "proxy.rs",
            "mod error; pub type Body = (); #[cfg(test)] mod tests;",
        ),
        ("proxy/error.rs", "fn f() -> super::Body {}"),
        ("proxy/tests.rs", "use super::*;"),
    ]);
    assert_eq!(graph.cycles().len(), 1);
    let graph = Graph::from_sources(&[
        ("lib.rs", "mod proxy; mod body;"),
        ("body.rs", "pub type Body = ();"),
        (
            "proxy.rs",
            "mod error; #[cfg(test)] mod tests { use super::*; }",
        ),
        (
            "proxy/error.rs",
            "fn f() -> crate::body::Body { tracing::info!(x = %crate::body::X); }",
        ),
    ]);
    assert!(graph.cycles().is_empty(), "{:?}", graph.cycles());
    assert!(
        graph
            .module_edges()
            .contains_key(&("proxy".to_string(), "body".to_string()))
    );
}

#[test]
fn the_documented_graph_is_read_from_its_table() {
    let text = "x\n<!-- module-graph: edge -->\n| module | may use |\n| --- | --- |\n\
                | `proxy` | `tunnel`, `body` |\n| `tunnel` | `body` |\n| `body` | |\n\nafter\n";
    let allowed = documented_graph(text, "edge");
    assert_eq!(
        allowed["proxy"],
        BTreeSet::from(["tunnel".into(), "body".into()])
    );
    assert!(allowed["body"].is_empty());
    assert!(documented_cycle(&allowed).is_none());
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the acceptance crate sits in the workspace")
        .to_path_buf()
}

fn check(library: &Library) {
    let root = workspace();
    let graph = Graph::read(&root.join(library.src));
    let mut problems = Vec::new();
    for cycle in graph.cycles() {
        let mut text = format!("files that import each other in a circle: {cycle:?}\n");
        let mut shown = BTreeSet::new();
        for (from, to, path) in &graph.edges {
            if cycle.contains(from) && cycle.contains(to) && shown.insert((from, to)) {
                text.push_str(&format!("    {from} -> {to} (names `{path}`)\n"));
            }
        }
        problems.push(text);
    }
    let architecture = std::fs::read_to_string(root.join("docs/guides/architecture.md"))
        .expect("docs/guides/architecture.md is readable");
    let allowed = documented_graph(&architecture, library.name);
    if allowed.is_empty() {
        problems.push(format!(
            "docs/guides/architecture.md has no `<!-- module-graph: {} -->` table",
            library.name
        ));
    }
    if let Some(cycle) = documented_cycle(&allowed) {
        problems.push(format!(
            "the documented graph of {} has a cycle: {cycle:?}",
            library.name
        ));
    }
    for module in graph.top_modules() {
        if !allowed.contains_key(&module) {
            problems.push(format!(
                "module `{module}` of {} is not in docs/guides/architecture.md's graph",
                library.name
            ));
        }
    }
    for ((from, to), path) in graph.module_edges() {
        let permitted = allowed.get(&from).is_some_and(|uses| uses.contains(&to));
        if allowed.contains_key(&from) && !permitted {
            problems.push(format!(
                "`{from}` uses `{to}` (`{path}`), which docs/guides/architecture.md does not allow"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} ({}):\n{}",
        library.name,
        library.src,
        problems.join("\n")
    );
}

// === the graph read from the source ===

/// Files (by path under the source folder) and what they name of each other.
#[derive(Debug, Default)]
struct Graph {
    /// Every file of the library, with its module path (`proxy::peer`).
    files: BTreeMap<String, Vec<String>>,
    /// Module path -> file that holds it (inline modules map to their file).
    modules: BTreeMap<Vec<String>, String>,
    /// (from file, to file, the path that made the edge).
    edges: BTreeSet<(String, String, String)>,
}

/// A file to read: where it is and which module it is.
struct Pending {
    file: String,
    module: Vec<String>,
    source: String,
}

impl Graph {
    /// Reads the library whose root is `src/lib.rs`.
    fn read(src: &Path) -> Self {
        let load = |file: &str| std::fs::read_to_string(src.join(file)).ok();
        Self::build(&load)
    }

    /// A graph of in-memory files (for the checker's own tests).
    fn from_sources(sources: &[(&str, &str)]) -> Self {
        let map: BTreeMap<String, String> = sources
            .iter()
            .map(|(path, text)| (path.to_string(), text.to_string()))
            .collect();
        Self::build(&|file: &str| map.get(file).cloned())
    }

    fn build(load: &dyn Fn(&str) -> Option<String>) -> Self {
        let mut graph = Graph::default();
        let mut references: Vec<(String, Vec<String>, Vec<String>)> = Vec::new();
        let mut pending = vec![Pending {
            file: "lib.rs".into(),
            module: Vec::new(),
            source: load("lib.rs").expect("the library has a lib.rs"),
        }];
        while let Some(next) = pending.pop() {
            let parsed = syn::parse_file(&next.source)
                .unwrap_or_else(|e| panic!("{} does not parse: {e}", next.file));
            graph.modules.insert(next.module.clone(), next.file.clone());
            graph.files.insert(next.file.clone(), next.module.clone());
            let mut reader = Reader {
                module: next.module.clone(),
                children: Vec::new(),
                paths: Vec::new(),
                inline: Vec::new(),
            };
            reader.read_items(&parsed.items);
            for inline in &reader.inline {
                graph.modules.insert(inline.clone(), next.file.clone());
            }
            for child in &reader.children {
                let mut module = next.module.clone();
                module.push(child.clone());
                let folder = child_folder(&next.file);
                let candidates = [
                    format!("{folder}{child}.rs"),
                    format!("{folder}{child}/mod.rs"),
                ];
                let Some((file, source)) = candidates
                    .iter()
                    .find_map(|c| load(c).map(|s| (c.clone(), s)))
                else {
                    panic!("{}: module `{child}` has no file", next.file);
                };
                // Declaring a child is depending on it.
                let mut declared = vec!["crate".to_string()];
                declared.extend(module.iter().cloned());
                references.push((next.file.clone(), next.module.clone(), declared));
                pending.push(Pending {
                    file,
                    module,
                    source,
                });
            }
            for (scope, path) in reader.paths {
                references.push((next.file.clone(), scope, path));
            }
        }
        for (file, scope, path) in references {
            let Some(absolute) = graph.resolve(&scope, &path) else {
                continue;
            };
            let Some((target, _)) = graph.longest_module(&absolute) else {
                continue;
            };
            if target != file {
                graph.edges.insert((file, target, absolute.join("::")));
            }
        }
        graph
    }

    /// The path as seen from module `scope`, made absolute; `None` for paths outside the crate.
    fn resolve(&self, scope: &[String], path: &[String]) -> Option<Vec<String>> {
        let first = path.first()?;
        let (mut base, rest) = match first.as_str() {
            "crate" => (Vec::new(), &path[1..]),
            "self" => (scope.to_vec(), &path[1..]),
            "super" => {
                let mut base = scope.to_vec();
                let mut rest = path;
                while rest.first().map(String::as_str) == Some("super") {
                    base.pop()?;
                    rest = &rest[1..];
                }
                (base, rest)
            }
            name => {
                // A child module of the scope (or of the file's module, for inline modules).
                let mut child = scope.to_vec();
                child.push(name.to_string());
                if self.modules.contains_key(&child) {
                    (scope.to_vec(), path)
                } else {
                    return None;
                }
            }
        };
        base.extend(rest.iter().cloned());
        Some(base)
    }

    /// The file of the longest module prefix of `path`.
    fn longest_module(&self, path: &[String]) -> Option<(String, usize)> {
        (0..=path.len())
            .rev()
            .find_map(|n| self.modules.get(&path[..n]).map(|file| (file.clone(), n)))
    }

    /// Groups of files that import each other in a circle (strongly connected components of
    /// more than one file), each sorted.
    fn cycles(&self) -> Vec<Vec<String>> {
        let nodes: Vec<&String> = self.files.keys().collect();
        let index: BTreeMap<&String, usize> =
            nodes.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        let mut next: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
        for (from, to, _) in &self.edges {
            if let (Some(f), Some(t)) = (index.get(from), index.get(to)) {
                next[*f].push(*t);
            }
        }
        strongly_connected(&next)
            .into_iter()
            .filter(|c| c.len() > 1)
            .map(|c| {
                let mut names: Vec<String> = c.into_iter().map(|i| nodes[i].clone()).collect();
                names.sort();
                names
            })
            .collect()
    }

    /// The top-level modules (first path segment; the crate root is not one).
    fn top_modules(&self) -> BTreeSet<String> {
        self.files
            .values()
            .filter_map(|module| module.first().cloned())
            .collect()
    }

    /// Dependencies between different top-level modules, with one path that makes each.
    fn module_edges(&self) -> BTreeMap<(String, String), String> {
        let mut edges = BTreeMap::new();
        for (from, to, path) in &self.edges {
            let top = |file: &String| self.files.get(file).and_then(|m| m.first().cloned());
            if let (Some(a), Some(b)) = (top(from), top(to))
                && a != b
            {
                edges.entry((a, b)).or_insert_with(|| path.clone());
            }
        }
        edges
    }
}

/// Where a file's child modules live: `x.rs` -> `x/`, `lib.rs` and `x/mod.rs` -> beside them.
fn child_folder(file: &str) -> String {
    let path = Path::new(file);
    let parent = path
        .parent()
        .map(|p| p.to_string_lossy().to_string())
        .unwrap_or_default();
    let parent = if parent.is_empty() {
        String::new()
    } else {
        format!("{parent}/")
    };
    match path.file_name().and_then(|n| n.to_str()) {
        Some("lib.rs") | Some("mod.rs") => parent,
        _ => format!("{}/", file.trim_end_matches(".rs")),
    }
}

/// Tarjan's algorithm, iterative enough for these small graphs (recursion depth = files).
fn strongly_connected(next: &[Vec<usize>]) -> Vec<Vec<usize>> {
    struct State<'a> {
        next: &'a [Vec<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        counter: usize,
        components: Vec<Vec<usize>>,
    }
    fn visit(s: &mut State<'_>, v: usize) {
        s.index[v] = Some(s.counter);
        s.low[v] = s.counter;
        s.counter += 1;
        s.stack.push(v);
        s.on_stack[v] = true;
        for &w in &s.next[v] {
            match s.index[w] {
                None => {
                    visit(s, w);
                    s.low[v] = s.low[v].min(s.low[w]);
                }
                Some(index) if s.on_stack[w] => s.low[v] = s.low[v].min(index),
                Some(_) => {}
            }
        }
        if Some(s.low[v]) == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack[w] = false;
                component.push(w);
                if w == v {
                    break;
                }
            }
            s.components.push(component);
        }
    }
    let n = next.len();
    let mut state = State {
        next,
        index: vec![None; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: Vec::new(),
        counter: 0,
        components: Vec::new(),
    };
    for v in 0..n {
        if state.index[v].is_none() {
            visit(&mut state, v);
        }
    }
    state.components
}

/// Collects, for one file, the child modules it declares and every path it names.
struct Reader {
    /// The module being read (the file's, or an inline module inside it).
    module: Vec<String>,
    /// Child modules in files of their own.
    children: Vec<String>,
    /// (module the path was written in, path segments).
    paths: Vec<(Vec<String>, Vec<String>)>,
    /// Inline modules, by module path.
    inline: Vec<Vec<String>>,
}

impl Reader {
    fn read_items(&mut self, items: &[syn::Item]) {
        for item in items {
            match item {
                syn::Item::Mod(module) if is_test(&module.attrs) => {}
                syn::Item::Mod(module) => match &module.content {
                    None => self.children.push(module.ident.to_string()),
                    Some((_, items)) => {
                        let outer = self.module.clone();
                        self.module.push(module.ident.to_string());
                        self.inline.push(self.module.clone());
                        self.read_items(items);
                        self.module = outer;
                    }
                },
                syn::Item::Use(item) => {
                    let mut prefix = Vec::new();
                    self.read_use(&item.tree, &mut prefix);
                }
                other if is_test(attrs_of(other)) => {}
                other => self.visit_item(other),
            }
        }
    }

    fn read_use(&mut self, tree: &syn::UseTree, prefix: &mut Vec<String>) {
        match tree {
            syn::UseTree::Path(path) => {
                prefix.push(path.ident.to_string());
                self.read_use(&path.tree, prefix);
                prefix.pop();
            }
            syn::UseTree::Name(name) => self.push_use(prefix, &name.ident),
            syn::UseTree::Rename(rename) => self.push_use(prefix, &rename.ident),
            syn::UseTree::Glob(_) => self.push_path(prefix.clone()),
            syn::UseTree::Group(group) => {
                for tree in &group.items {
                    self.read_use(tree, prefix);
                }
            }
        }
    }

    fn push_use(&mut self, prefix: &[String], ident: &syn::Ident) {
        let mut path = prefix.to_vec();
        if ident != "self" {
            path.push(ident.to_string());
        }
        self.push_path(path);
    }

    fn push_path(&mut self, path: Vec<String>) {
        if !path.is_empty() {
            self.paths.push((self.module.clone(), path));
        }
    }

    /// Paths written inside a macro call: `crate :: a :: b`, `super :: x`, `self :: x`.
    fn read_tokens(&mut self, tokens: TokenStream) {
        let trees: Vec<TokenTree> = tokens.into_iter().collect();
        let mut i = 0;
        while i < trees.len() {
            match &trees[i] {
                TokenTree::Group(group) => self.read_tokens(group.stream()),
                TokenTree::Ident(ident)
                    if (ident == "crate" || ident == "super" || ident == "self")
                        && (i == 0 || !is_colon(&trees[i - 1])) =>
                {
                    let mut path = vec![ident.to_string()];
                    let mut j = i + 1;
                    while j + 2 < trees.len() && is_colon(&trees[j]) && is_colon(&trees[j + 1]) {
                        match trees.get(j + 2) {
                            Some(TokenTree::Ident(next)) => {
                                path.push(next.to_string());
                                j += 3;
                            }
                            _ => break,
                        }
                    }
                    if path.len() > 1 {
                        self.push_path(path);
                    }
                    i = j;
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
    }
}

fn is_colon(tree: &TokenTree) -> bool {
    matches!(tree, TokenTree::Punct(p) if p.as_char() == ':')
}

impl<'ast> Visit<'ast> for Reader {
    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        self.push_path(segments);
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.visit_path(&mac.path);
        self.read_tokens(mac.tokens.clone());
    }

    fn visit_item_mod(&mut self, module: &'ast syn::ItemMod) {
        // Reached only for modules nested in other items; read like top-level ones.
        if !is_test(&module.attrs) {
            self.read_items(std::slice::from_ref(&syn::Item::Mod(module.clone())));
        }
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        let mut prefix = Vec::new();
        self.read_use(&item.tree, &mut prefix);
    }

    fn visit_visibility(&mut self, _visibility: &'ast syn::Visibility) {
        // `pub(super)` names where an item may be seen, not something it uses.
    }

    fn visit_attribute(&mut self, _attribute: &'ast syn::Attribute) {
        // Doc comments and attributes (intra-doc links) are not dependencies.
    }

    fn visit_impl_item_fn(&mut self, function: &'ast syn::ImplItemFn) {
        if !is_test(&function.attrs) {
            syn::visit::visit_impl_item_fn(self, function);
        }
    }
}

/// Whether the attributes put an item under `#[cfg(test)]` (or make it a `#[test]`).
fn is_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|attr| {
        if attr.path().is_ident("test") {
            return true;
        }
        if !attr.path().is_ident("cfg") {
            return false;
        }
        let text = attr
            .meta
            .require_list()
            .map(|list| list.tokens.to_string())
            .unwrap_or_default();
        text == "test"
            || (text.starts_with("any") && text.contains("test") && !text.contains("feature"))
    })
}

fn attrs_of(item: &syn::Item) -> &[syn::Attribute] {
    match item {
        syn::Item::Const(i) => &i.attrs,
        syn::Item::Enum(i) => &i.attrs,
        syn::Item::ExternCrate(i) => &i.attrs,
        syn::Item::Fn(i) => &i.attrs,
        syn::Item::ForeignMod(i) => &i.attrs,
        syn::Item::Impl(i) => &i.attrs,
        syn::Item::Macro(i) => &i.attrs,
        syn::Item::Mod(i) => &i.attrs,
        syn::Item::Static(i) => &i.attrs,
        syn::Item::Struct(i) => &i.attrs,
        syn::Item::Trait(i) => &i.attrs,
        syn::Item::TraitAlias(i) => &i.attrs,
        syn::Item::Type(i) => &i.attrs,
        syn::Item::Union(i) => &i.attrs,
        syn::Item::Use(i) => &i.attrs,
        _ => &[],
    }
}

// === the graph documented in docs/guides/architecture.md ===

/// The table after `<!-- module-graph: NAME -->`: `| `module` | `a`, `b` |` rows, module ->
/// the modules it may use.
fn documented_graph(text: &str, name: &str) -> BTreeMap<String, BTreeSet<String>> {
    let marker = format!("<!-- module-graph: {name} -->");
    let mut graph = BTreeMap::new();
    let Some(start) = text.find(&marker) else {
        return graph;
    };
    let rows = text[start + marker.len()..]
        .lines()
        .skip_while(|line| line.trim().is_empty())
        .take_while(|line| line.trim_start().starts_with('|'));
    for row in rows {
        let cells: Vec<&str> = row.trim().trim_matches('|').split('|').collect();
        let Some(module) = cells
            .first()
            .map(|c| c.trim().trim_matches('`').to_string())
        else {
            continue;
        };
        if module.is_empty() || module == "module" || module.starts_with("---") {
            continue;
        }
        let uses: BTreeSet<String> = cells
            .get(1)
            .map(|c| {
                c.split(',')
                    .map(|m| m.trim().trim_matches('`').to_string())
                    .filter(|m| !m.is_empty() && m != "—" && m != "-")
                    .collect()
            })
            .unwrap_or_default();
        graph.insert(module, uses);
    }
    graph
}

/// A cycle in the documented graph, if it has one.
fn documented_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    let names: Vec<&String> = graph.keys().collect();
    let index: BTreeMap<&String, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let next: Vec<Vec<usize>> = names
        .iter()
        .map(|n| {
            graph[*n]
                .iter()
                .filter_map(|m| index.get(m).copied())
                .collect()
        })
        .collect();
    strongly_connected(&next)
        .into_iter()
        .find(|c| c.len() > 1 || c.first().is_some_and(|v| next[*v].contains(v)))
        .map(|c| c.into_iter().map(|i| names[i].clone()).collect())
}
