//! The coordinator's modules form no import cycle: at every level of the module tree, the graph
//! "a file under sibling A names sibling B" (through `crate::` or `super::` paths, in `use`
//! lines or inline) is acyclic. Comments are not read.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir` except binaries (they sit outside the library's tree).
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "bin") {
                sources(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file: `fleet/mod.rs` -> [fleet], `fleet/plan.rs` -> [fleet, plan].
fn module_of(root: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(root).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

fn ident_at(text: &str) -> Option<&str> {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    (end > 0).then(|| &text[..end])
}

/// The comma-separated items of a `{...}` group (its text after the `{`), nested groups kept
/// whole.
fn top_level_items(group: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(&group[start..i]);
                return items;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&group[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&group[start..]);
    items
}

/// The module paths some code names, as absolute paths (possibly too long: only a prefix matters).
fn referenced(code: &str, here: &[String]) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(pos) = code[from..].find(start).map(|p| p + from) {
            from = pos + start.len();
            let before = code[..pos].chars().last();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let mut base: Vec<String> = if start == "crate::" {
                Vec::new()
            } else {
                here[..here.len().saturating_sub(1)].to_vec()
            };
            let mut rest = &code[from..];
            while let Some(r) = rest.strip_prefix("super::") {
                base.pop();
                rest = r;
            }
            let mut path = base;
            while let Some(id) = ident_at(rest) {
                path.push(id.to_owned());
                rest = &rest[id.len()..];
                match rest.strip_prefix("::") {
                    Some(r) => rest = r,
                    None => break,
                }
            }
            match rest.strip_prefix('{') {
                // `a::{b, c::d}`: each item's first name, one level below `a`.
                Some(group) => {
                    for item in top_level_items(group) {
                        if let Some(id) = ident_at(item.trim()) {
                            found.push([path.clone(), vec![id.to_owned()]].concat());
                        }
                    }
                }
                None => found.push(path),
            }
        }
    }
    found
}

/// Sibling edges per parent module: parent -> (from, to).
fn sibling_edges(root: &Path) -> BTreeMap<Vec<String>, BTreeSet<(String, String)>> {
    let mut files = Vec::new();
    sources(root, &mut files);
    let mut edges: BTreeMap<Vec<String>, BTreeSet<(String, String)>> = BTreeMap::new();
    for file in files {
        let here = module_of(root, &file);
        let text = std::fs::read_to_string(&file).unwrap();
        // Comments dropped; lines kept together so `use` groups spanning lines are read whole.
        let code: Vec<&str> = text
            .lines()
            .map(|line| line.split("//").next().unwrap_or(""))
            .collect();
        for target in referenced(&code.join("\n"), &here) {
            let common = here.iter().zip(&target).take_while(|(a, b)| a == b).count();
            if common < here.len() && common < target.len() {
                edges
                    .entry(here[..common].to_vec())
                    .or_default()
                    .insert((here[common].clone(), target[common].clone()));
            }
        }
    }
    edges
}

/// A cycle in `edges`, if there is one (depth-first search).
fn cycle(edges: &BTreeSet<(String, String)>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeSet<(String, String)>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == node) {
            return Some(path[i..].to_vec());
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for (_, to) in edges.iter().filter(|(from, _)| from == node) {
            if let Some(c) = visit(to, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .iter()
        .find_map(|(from, _)| visit(from, edges, &mut Vec::new(), &mut done))
}

#[test]
fn the_checker_finds_a_cycle() {
    let here = vec!["fleet".to_owned(), "plan".to_owned()];
    assert_eq!(
        referenced(
            "use crate::raft::{\n    Replica,\n    x::{y, z},\n};",
            &here
        ),
        [
            vec!["raft".to_owned(), "Replica".to_owned()],
            vec!["raft".to_owned(), "x".to_owned()]
        ]
    );
    assert_eq!(
        referenced("let a = super::registry::Nodes::default();", &here),
        [vec![
            "fleet".to_owned(),
            "registry".to_owned(),
            "Nodes".to_owned(),
            "default".to_owned()
        ]]
    );
    let edges: BTreeSet<_> = [("a", "b"), ("b", "c"), ("c", "a")]
        .into_iter()
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect();
    assert!(cycle(&edges).is_some());
    let acyclic: BTreeSet<_> = [("a", "b"), ("b", "c"), ("a", "c")]
        .into_iter()
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect();
    assert_eq!(cycle(&acyclic), None);
}

#[test]
fn no_module_cycle_at_any_level() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = sibling_edges(&root);
    assert!(
        edges.contains_key(&Vec::new()),
        "the crate's top level was read"
    );
    for (parent, edges) in &edges {
        if let Some(c) = cycle(edges) {
            let parent: String = parent.iter().map(|p| format!("::{p}")).collect();
            panic!("module cycle under crate{parent}: {}", c.join(" -> "));
        }
    }
}
