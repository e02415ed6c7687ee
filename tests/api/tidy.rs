//! Keeps ARCHITECTURE.md's "the module graph has no cycles" true: every `crate::`, `super::`
//! and `self::` path in `src/` (outside `#[cfg(test)]` modules and comments) is read as an
//! arrow from its file's module to the deepest module the path names, and a circle fails the
//! test, naming each arrow's file and path.
//!
//! A module's arrows to its own submodules are not counted: declaring and re-exporting them is
//! how a module is built (`backends/mod.rs` re-exports `batch`, which uses `super::FetchError`).
//! A path to a re-exported name is an arrow to the module that defines it (`crate::graphql::Engine`
//! reaches `graphql::engine`), so a façade hides no circle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

/// For each module, the modules it reaches and, for each, one path that reaches it.
type Graph = BTreeMap<Module, BTreeMap<Module, String>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/a/b.rs` → `[a, b]`; `src/a/mod.rs` → `[a]`; `src/lib.rs`, `src/main.rs` → `[]`.
fn module_of(src: &Path, file: &Path) -> Module {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    parts
}

/// The code of a file without comments and without its `#[cfg(test)]` modules (tests may
/// reach anywhere); code after a test module is kept.
fn code_of(text: &str) -> String {
    let mut code: String = text
        .lines()
        .map(|l| match l.find("//") {
            Some(at) if !l[..at].contains('"') => &l[..at],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    while let Some(start) = code.find("#[cfg(test)]\nmod ") {
        let Some(open) = code[start..].find('{').map(|i| start + i) else { break };
        let mut level = 0usize;
        let mut end = code.len();
        for (i, c) in code[open..].char_indices() {
            match c {
                '{' => level += 1,
                '}' => {
                    level -= 1;
                    if level == 0 {
                        end = open + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        code.replace_range(start..end, "");
    }
    code
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The paths written after `at` (`a::b::c`, or each branch of `a::{b, c::d}`), as segments.
fn paths_after(code: &str, at: usize, out: &mut Vec<Vec<String>>, prefix: &[String], depth: usize) {
    let mut segments = prefix.to_vec();
    let mut rest = &code[at..];
    loop {
        let ident: String = rest.chars().take_while(|&c| is_ident(c)).collect();
        if ident.is_empty() {
            if depth < 4
                && let Some(group) = rest.strip_prefix('{')
            {
                // A group: each branch at the top level of the braces.
                let mut level = 0;
                let mut start = 0;
                for (i, c) in group.char_indices() {
                    match c {
                        '{' => level += 1,
                        '}' if level == 0 => {
                            paths_after(group[start..i].trim_start(), 0, out, &segments, depth + 1);
                            return;
                        }
                        '}' => level -= 1,
                        ',' if level == 0 => {
                            paths_after(group[start..i].trim_start(), 0, out, &segments, depth + 1);
                            start = i + 1;
                        }
                        _ => {}
                    }
                }
            }
            break;
        }
        rest = &rest[ident.len()..];
        segments.push(ident);
        match rest.strip_prefix("::") {
            Some(r) => rest = r,
            None => break,
        }
    }
    out.push(segments);
}

/// The paths of `code` that start with `anchor` (`crate::`, `super::`, `self::`), each as the
/// module it starts from (from `from`), the segments after it, and the text written.
fn anchored_paths(code: &str, from: &Module) -> Vec<(Module, Vec<String>, String)> {
    let mut found = Vec::new();
    for (anchor, base) in [
        ("crate::", Vec::new()),
        ("super::", from[..from.len().saturating_sub(1)].to_vec()),
        ("self::", from.clone()),
    ] {
        let mut at = 0;
        while let Some(hit) = code[at..].find(anchor) {
            let start = at + hit;
            at = start + anchor.len();
            if code[..start].chars().next_back().is_some_and(|c| is_ident(c) || c == ':') {
                continue; // `super::super::` is read from its first `super::`
            }
            let mut base = base.clone();
            let mut after = at;
            while anchor == "super::" && code[after..].starts_with("super::") {
                base.pop();
                after += "super::".len();
            }
            let mut paths = Vec::new();
            paths_after(code, after, &mut paths, &[], 0);
            for segments in paths {
                let text = format!("{}{}", &code[start..after], segments.join("::"));
                found.push((base.clone(), segments, text));
            }
        }
    }
    found
}

/// The deepest module `segments` name from `base`, and the name after it, if any.
fn deepest(modules: &BTreeSet<Module>, base: &Module, segments: &[String]) -> (Module, Option<String>) {
    let mut target = base.clone();
    let (mut deepest, mut next) = (base.clone(), segments.first().cloned());
    for (i, s) in segments.iter().enumerate() {
        target.push(s.clone());
        if modules.contains(&target) {
            deepest = target.clone();
            next = segments.get(i + 1).cloned();
        }
    }
    (deepest, next)
}

/// The module graph of the crate in `src`.
fn graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeSet<Module> = files.iter().map(|f| module_of(src, f)).collect();
    let codes: Vec<(Module, String)> =
        files.iter().map(|f| (module_of(src, f), code_of(&std::fs::read_to_string(f).unwrap()))).collect();
    // What each module re-exports (`pub use a::b::Name;`), by name: the defining module.
    let mut reexports: BTreeMap<Module, BTreeMap<String, Module>> = BTreeMap::new();
    for (from, code) in &codes {
        for line in code.split(';').map(str::trim).filter(|l| l.starts_with("pub use ")) {
            let mut paths = Vec::new();
            paths_after(line, "pub use ".len(), &mut paths, &[], 0);
            for segments in paths {
                let (base, segments) = match segments.first().map(String::as_str) {
                    Some("crate") => (Vec::new(), &segments[1..]),
                    Some("super") => (from[..from.len().saturating_sub(1)].to_vec(), &segments[1..]),
                    Some("self") => (from.clone(), &segments[1..]),
                    _ => (from.clone(), &segments[..]),
                };
                let (module, _) = deepest(&modules, &base, segments);
                if let Some(name) = segments.last() {
                    reexports.entry(from.clone()).or_default().insert(name.clone(), module);
                }
            }
        }
    }
    let mut graph = Graph::new();
    for (from, code) in &codes {
        let edges = graph.entry(from.clone()).or_default();
        for (base, segments, text) in anchored_paths(code, from) {
            let (mut target, mut next) = deepest(&modules, &base, &segments);
            // Through re-exports to the defining module (a bounded number of hops).
            for _ in 0..4 {
                match next.as_ref().and_then(|n| reexports.get(&target)?.get(n)) {
                    Some(defining) if *defining != target => {
                        target = defining.clone();
                        next = None;
                    }
                    _ => break,
                }
            }
            // Not itself, not the crate root, not its own submodules.
            if target.is_empty() || target.starts_with(from) {
                continue;
            }
            edges.entry(target).or_insert(text);
        }
    }
    graph
}

/// One circle of `graph`, as its modules in order, if there is one.
fn a_circle(graph: &Graph) -> Option<Vec<Module>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(graph: &Graph, m: &Module, marks: &mut BTreeMap<Module, Mark>, stack: &mut Vec<Module>) -> bool {
        match marks.get(m) {
            Some(Mark::Done) => return false,
            Some(Mark::Open) => {
                let at = stack.iter().position(|s| s == m).unwrap();
                stack.drain(..at);
                return true;
            }
            None => {}
        }
        marks.insert(m.clone(), Mark::Open);
        stack.push(m.clone());
        for next in graph.get(m).into_iter().flat_map(|e| e.keys()) {
            if visit(graph, next, marks, stack) {
                return true;
            }
        }
        stack.pop();
        marks.insert(m.clone(), Mark::Done);
        false
    }
    let mut marks = BTreeMap::new();
    for m in graph.keys() {
        let mut stack = Vec::new();
        if visit(graph, m, &mut marks, &mut stack) {
            return Some(stack);
        }
    }
    None
}

fn describe(graph: &Graph, circle: &[Module]) -> String {
    let name = |m: &Module| m.join("::");
    let mut lines = Vec::new();
    for (i, m) in circle.iter().enumerate() {
        let next = &circle[(i + 1) % circle.len()];
        lines.push(format!("  {} -> {} (by `{}`)", name(m), name(next), graph[m][next]));
    }
    lines.join("\n")
}

#[test]
fn the_module_graph_has_no_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = graph(&src);
    // The reader sees the arrows it must (a sanity check that it reads anything at all).
    let module = |s: &str| s.split("::").map(str::to_owned).collect::<Module>();
    let reaches =
        |from: &str, to: &str| graph.get(&module(from)).is_some_and(|e| e.contains_key(&module(to)));
    assert!(reaches("graphql::engine", "graphql::operation"), "the reader missed a `use super::` arrow");
    assert!(reaches("backends::batch", "backends::json::tape"), "the reader missed an arrow in a group");
    assert!(reaches("http::device", "registry::call"), "the reader missed a `crate::` arrow");
    if let Some(circle) = a_circle(&graph) {
        panic!(
            "the modules import one another in a circle (ARCHITECTURE.md: the module graph has no cycles):\n{}",
            describe(&graph, &circle)
        );
    }
}

#[test]
fn the_circle_finder_finds_a_circle_and_names_its_arrows() {
    let m = |s: &str| s.split("::").map(str::to_owned).collect::<Module>();
    let mut graph = Graph::new();
    graph.entry(m("a")).or_default().insert(m("b"), "crate::b::f".into());
    graph.entry(m("b")).or_default().insert(m("c::d"), "super::c::d".into());
    graph.entry(m("c::d")).or_default();
    assert_eq!(a_circle(&graph), None);
    graph.entry(m("c::d")).or_default().insert(m("a"), "crate::a::X".into());
    let circle = a_circle(&graph).expect("a -> b -> c::d -> a");
    assert_eq!(circle.len(), 3);
    let text = describe(&graph, &circle);
    assert!(text.contains("c::d -> a (by `crate::a::X`)"), "{text}");
}

#[test]
fn a_group_import_reaches_each_of_its_modules() {
    let mut out = Vec::new();
    let code = "use super::{exec, input::{self, VarKind}, plan};";
    paths_after(code, code.find("super::").unwrap() + "super::".len(), &mut out, &[], 0);
    let joined: Vec<String> = out.iter().map(|p| p.join("::")).collect();
    assert_eq!(joined, ["exec", "input::self", "input::VarKind", "plan"]);
}
