//! Source-layout rules checked over the workspace's own files (issue 13's bar): no module import
//! cycle at any level of any crate's module tree, and no non-test source file over
//! [`MAX_SOURCE_LINES`]. Pure functions over file texts, so they are tested on small synthetic
//! trees; `tests/tests/layering.rs` runs them on the real workspace.
//!
//! A module "imports" a sibling when any file inside it names a path into that sibling
//! (`crate::a::b`, `super::b`, in `use` lines, grouped `use` trees or inline paths). Two siblings
//! that import each other, directly or around a longer loop, form a cycle: neither can be
//! understood, tested or moved without the other.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Longest non-test source file allowed (lines before the file's `#[cfg(test)]` block).
pub const MAX_SOURCE_LINES: usize = 500;

/// A module path inside one crate: `[]` is the crate root, `["fleet", "hub"]` is `fleet::hub`.
pub type ModPath = Vec<String>;

/// One source file of a crate, as the module it defines.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Where the file is (for messages).
    pub path: PathBuf,
    /// The module the file defines.
    pub module: ModPath,
    /// Whether the file is `mod.rs`/`lib.rs`/`main.rs` (its `super` is its module's parent).
    pub is_dir_module: bool,
    /// The file's text.
    pub text: String,
}

/// A reference from one sibling module to another, under a common parent.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Edge {
    /// The module both siblings live in.
    pub parent: ModPath,
    /// The sibling whose file names the other.
    pub from: String,
    /// The sibling named.
    pub to: String,
    /// One place that names it (`file:line`).
    pub example: String,
}

/// Reads every `.rs` file under a crate's `src/` (not `src/bin/`, whose files are crate roots of
/// their own and reach the library only through its public paths).
pub fn read_crate(src: &Path) -> std::io::Result<Vec<SourceFile>> {
    let mut files = Vec::new();
    walk(src, src, &mut files)?;
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<SourceFile>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            if dir == root && path.file_name().is_some_and(|n| n == "bin") {
                continue;
            }
            walk(root, &path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(root).unwrap_or(&path);
            let (module, is_dir_module) = module_of(rel);
            out.push(SourceFile {
                text: std::fs::read_to_string(&path)?,
                path,
                module,
                is_dir_module,
            });
        }
    }
    Ok(())
}

/// The module a file defines, from its path relative to `src/`.
pub fn module_of(rel: &Path) -> (ModPath, bool) {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    let last = parts.pop().unwrap_or_default();
    match last.as_str() {
        "mod" => (parts, true),
        "lib" | "main" if parts.is_empty() => (parts, true),
        _ => {
            parts.push(last);
            (parts, false)
        }
    }
}

/// Lines of a file that count against [`MAX_SOURCE_LINES`]: everything before its first
/// `#[cfg(test)]` (inline unit tests do not make a file harder to read as code).
pub fn code_lines(text: &str) -> usize {
    code_part(text).lines().count()
}

/// The file up to its first `#[cfg(test)]` line.
fn code_part(text: &str) -> String {
    text.lines()
        .take_while(|l| l.trim() != "#[cfg(test)]")
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Whether a file is test code as a whole (named `tests.rs`, `*_tests.rs`, or under `tests/`).
pub fn is_test_file(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    name == "tests.rs"
        || name.ends_with("_tests.rs")
        || path.iter().any(|p| p == "tests" || p == "testing")
}

/// Every sibling-to-sibling reference in a crate.
pub fn edges(files: &[SourceFile]) -> Vec<Edge> {
    let modules: BTreeSet<ModPath> = files.iter().map(|f| f.module.clone()).collect();
    let mut out = BTreeMap::new();
    // Unit tests (a `tests` module file, or a file's `#[cfg(test)]` tail) may reach anywhere.
    for file in files
        .iter()
        .filter(|f| !f.module.last().is_some_and(|m| m.ends_with("tests")))
    {
        let code = strip_comments(&code_part(&file.text));
        for (line, target) in references(&code, file) {
            let Some(target) = longest_module(&modules, &target) else {
                continue;
            };
            if let Some((parent, from, to)) = siblings(&file.module, &target) {
                out.entry((parent.clone(), from.clone(), to.clone()))
                    .or_insert_with(|| Edge {
                        parent,
                        from,
                        to,
                        example: format!("{}:{}", file.path.display(), line),
                    });
            }
        }
    }
    out.into_values().collect()
}

/// Cycles among siblings: each is the list of siblings on the loop, with the edges that close it.
pub fn cycles(edges: &[Edge]) -> Vec<Vec<Edge>> {
    let mut by_parent: BTreeMap<&ModPath, Vec<&Edge>> = BTreeMap::new();
    for e in edges {
        by_parent.entry(&e.parent).or_default().push(e);
    }
    let mut found = Vec::new();
    for group in by_parent.values() {
        for component in strongly_connected(group) {
            let inside: Vec<Edge> = group
                .iter()
                .filter(|e| component.contains(&e.from) && component.contains(&e.to))
                .map(|e| (*e).clone())
                .collect();
            found.push(inside);
        }
    }
    found
}

/// Components of more than one sibling (Tarjan's algorithm, iterative over a small graph).
fn strongly_connected(edges: &[&Edge]) -> Vec<BTreeSet<String>> {
    let nodes: BTreeSet<&String> = edges.iter().flat_map(|e| [&e.from, &e.to]).collect();
    let reach = |from: &String| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(n) = stack.pop() {
            for e in edges.iter().filter(|e| e.from == n) {
                if seen.insert(e.to.clone()) {
                    stack.push(e.to.clone());
                }
            }
        }
        seen
    };
    // The graphs are tens of siblings: mutual reachability is clear and fast enough.
    let reaches: BTreeMap<&String, BTreeSet<String>> =
        nodes.iter().map(|n| (*n, reach(n))).collect();
    let mut components: Vec<BTreeSet<String>> = Vec::new();
    for n in &nodes {
        if components.iter().any(|c| c.contains(*n)) {
            continue;
        }
        let component: BTreeSet<String> = nodes
            .iter()
            .filter(|m| reaches[n].contains(**m) && reaches[**m].contains(*n))
            .map(|m| (*m).clone())
            .collect();
        if component.len() > 1 {
            components.push(component);
        }
    }
    components
}

/// The parent and the two distinct siblings under it on the way from `from` to `to`, if any.
fn siblings(from: &ModPath, to: &ModPath) -> Option<(ModPath, String, String)> {
    let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
    let a = from.get(common)?;
    let b = to.get(common)?;
    Some((from[..common].to_vec(), a.clone(), b.clone()))
}

/// The longest known module that is a prefix of `path` (the rest names items in it).
fn longest_module(modules: &BTreeSet<ModPath>, path: &ModPath) -> Option<ModPath> {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| modules.contains(p))
}

/// Every `crate::`/`super::`/`self::` path in the code, resolved to an absolute path, with its
/// line number. Grouped `use` trees are expanded.
fn references(code: &str, file: &SourceFile) -> Vec<(usize, ModPath)> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let mut line = 1;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\n' {
            line += 1;
            i += 1;
            continue;
        }
        let boundary = i == 0 || !is_ident(bytes[i - 1]) && bytes[i - 1] != b':';
        let rest = &code[i..];
        let start = ["crate::", "super::", "self::"]
            .iter()
            .find(|p| boundary && rest.starts_with(**p));
        if let Some(prefix) = start {
            let (paths, used) = parse_path_tree(rest);
            for p in paths {
                if let Some(abs) = resolve(&p, file) {
                    out.push((line, abs));
                }
            }
            line += rest[..used].matches('\n').count();
            i += used.max(prefix.len());
        } else {
            i += 1;
        }
    }
    out
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Parses `a::b::{c, d::e}` from the start of `s` into its leaf paths, and the bytes it used.
fn parse_path_tree(s: &str) -> (Vec<Vec<String>>, usize) {
    let bytes = s.as_bytes();
    let mut segments = Vec::new();
    let mut i = 0;
    loop {
        let start = i;
        while i < bytes.len() && is_ident(bytes[i]) {
            i += 1;
        }
        if i == start {
            break;
        }
        segments.push(s[start..i].to_string());
        if !s[i..].starts_with("::") {
            return (vec![segments], i);
        }
        i += 2;
        if s[i..].starts_with('{') {
            let mut leaves = Vec::new();
            i += 1;
            loop {
                while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b',') {
                    i += 1;
                }
                if i >= bytes.len() || bytes[i] == b'}' {
                    return (prefixed(&segments, leaves), (i + 1).min(bytes.len()));
                }
                let (sub, used) = parse_path_tree(&s[i..]);
                if used == 0 {
                    // `*` or `self as x`: the group names the prefix itself.
                    leaves.push(Vec::new());
                    i += 1;
                } else {
                    leaves.extend(sub);
                    i += used;
                }
                // Skip `as name` and anything else up to the next separator.
                while i < bytes.len() && bytes[i] != b',' && bytes[i] != b'}' {
                    i += 1;
                }
            }
        }
    }
    (vec![segments], i)
}

fn prefixed(prefix: &[String], leaves: Vec<Vec<String>>) -> Vec<Vec<String>> {
    leaves
        .into_iter()
        .map(|leaf| prefix.iter().cloned().chain(leaf).collect())
        .collect()
}

/// Turns `crate::`/`super::`/`self::` segments into an absolute module path.
fn resolve(segments: &[String], file: &SourceFile) -> Option<ModPath> {
    let mut base = file.module.clone();
    let mut rest = segments;
    match segments.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &segments[1..];
        }
        Some("self") => rest = &segments[1..],
        Some("super") => {
            while rest.first().is_some_and(|s| s == "super") {
                base.pop()?;
                rest = &rest[1..];
            }
        }
        _ => return None,
    }
    // `self` inside a group (`use super::x::{self, Y}`) names the prefix.
    Some(
        base.into_iter()
            .chain(rest.iter().filter(|s| *s != "self").cloned())
            .collect(),
    )
}

/// Removes `//` and `/* */` comments and string literals' contents, so paths in docs and
/// messages are not counted as references. Newlines are kept (line numbers stay right).
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut last = ' ';
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                    }
                    if last == '*' && c == '/' {
                        break;
                    }
                    last = c;
                }
            }
            '"' => {
                out.push('"');
                let mut escaped = false;
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                    }
                    if !escaped && c == '"' {
                        break;
                    }
                    escaped = !escaped && c == '\\';
                }
                out.push('"');
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, text: &str) -> SourceFile {
        let (module, is_dir_module) = module_of(Path::new(path));
        SourceFile {
            path: PathBuf::from(path),
            module,
            is_dir_module,
            text: text.to_string(),
        }
    }

    #[test]
    fn a_loop_through_a_grouped_use_and_super_is_a_cycle() {
        let files = [
            file("lib.rs", "pub mod a; pub mod b; pub mod c;"),
            file("a/mod.rs", "use crate::{b::Thing, c};"),
            file("b.rs", "pub struct Thing;"),
            file("c/mod.rs", "mod inner;"),
            file("c/inner.rs", "fn f() { super::super::a::g() }"),
        ];
        let found = cycles(&edges(&files));
        assert_eq!(found.len(), 1, "{found:?}");
        let names: BTreeSet<&str> = found[0].iter().map(|e| e.from.as_str()).collect();
        assert_eq!(names, BTreeSet::from(["a", "c"]));
    }

    #[test]
    fn one_way_references_comments_and_strings_are_not_cycles() {
        let files = [
            file("lib.rs", "pub mod a; pub mod b;"),
            file("a.rs", "use crate::b::X; // crate::b::Y\nfn f() {}"),
            file(
                "b.rs",
                "/// see [`crate::a::f`]\nconst S: &str = \"crate::a::f\";",
            ),
        ];
        let e = edges(&files);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(cycles(&e).is_empty());
    }

    #[test]
    fn nested_siblings_are_checked_under_their_own_parent() {
        let files = [
            file("lib.rs", "pub mod raft;"),
            file("raft/mod.rs", "mod driver; mod replica;"),
            file("raft/driver.rs", "use super::replica::Handle;"),
            file("raft/replica.rs", "use crate::raft::driver::Driver;"),
        ];
        let found = cycles(&edges(&files));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0][0].parent, vec!["raft".to_string()]);
    }

    #[test]
    fn unit_tests_may_reach_anywhere() {
        let files = [
            file("lib.rs", "pub mod a; pub mod b;"),
            file(
                "a.rs",
                "use crate::b::X;\n#[cfg(test)]\nmod tests { use crate::a::Y; }",
            ),
            file("b.rs", "#[cfg(test)]\nmod tests { use crate::a::Y; }"),
            file("b/more_tests.rs", "use crate::a::Y;"),
        ];
        assert!(cycles(&edges(&files)).is_empty());
    }

    #[test]
    fn inline_tests_do_not_count_against_the_line_limit() {
        let text = format!("{}#[cfg(test)]\n{}", "x\n".repeat(10), "y\n".repeat(1000));
        assert_eq!(code_lines(&text), 10);
        assert!(is_test_file(Path::new(
            "coordinator/src/raft/storage_tests.rs"
        )));
        assert!(!is_test_file(Path::new("coordinator/src/raft/storage.rs")));
    }
}
