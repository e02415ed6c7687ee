//! Limits on what one document and one operation may ask, in two passes:
//!
//! 1. [`analyze`], the moment a document is parsed and before anything else walks it: fragment
//!    cycles, how deep fragment spreads nest, and how many selections the document has once
//!    every fragment is expanded. Each fragment's expanded size is computed once (memoized)
//!    over the spread graph with an explicit stack, so the work is linear in the document's
//!    size whatever it holds, and it stops at the first count over its limit. Everything that
//!    walks the document later (async-graphql's validation, which expands fragments, and the
//!    compiler) is bounded by what this pass let through.
//! 2. [`check`], per request on the compiled plan (variables set): root fields, aliases and an
//!    estimated cost. The cost counts every field once per item of the lists above it; a list
//!    is as long as its limit argument (`first`, or the one its `@http(limit:)` names; the plan
//!    keeps it as a [`Count`]), or `default_list_size` when that is null or unset and the
//!    field has no default — the same number the fetch then asks for (`fetch.rs`).
//!
//! The settings are `[limits]` of the config ([`Limits`]), read as they are.

use std::collections::HashMap;

use async_graphql::parser::Positioned;
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use serde_json::{Map, Value};

use super::plan::{Count, Field, Plan};

use crate::config::Limits;

/// What [`analyze`] found, and the work it took (tests assert the work is linear).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Analysis {
    /// Selections of the largest definition, fragments expanded.
    pub expanded_selections: u64,
    /// Selection nodes and spread edges visited.
    pub visited: u64,
}

/// One definition's own selections, before its spreads are expanded.
struct Local<'a> {
    /// Selections written in the definition itself (nested ones included).
    own: u64,
    /// Fragment names it spreads, once per spread.
    spreads: Vec<&'a str>,
}

/// Counts a selection set's own nodes and lists its spreads. The nesting inside one
/// definition is bounded by the parser's recursion limit, so this recursion is too.
fn local<'a>(set: &'a Positioned<SelectionSet>, out: &mut Local<'a>, visited: &mut u64) {
    for selection in &set.node.items {
        *visited += 1;
        out.own += 1;
        match &selection.node {
            Selection::Field(f) => local(&f.node.selection_set, out, visited),
            Selection::InlineFragment(i) => local(&i.node.selection_set, out, visited),
            Selection::FragmentSpread(s) => out.spreads.push(s.node.fragment_name.node.as_str()),
        }
    }
}

enum Mark {
    Visiting,
    Done(u64),
}

/// A document [`analyze`] refused, with the work it took to find out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    pub message: String,
    pub visited: u64,
}

/// Checks the document's fragment structure and expanded size; see the module comment.
pub fn analyze(doc: &ExecutableDocument, limits: &Limits) -> Result<Analysis, Refused> {
    let mut visited = 0u64;
    match walk_document(doc, limits, &mut visited) {
        Ok(expanded_selections) => Ok(Analysis { expanded_selections, visited }),
        Err(message) => Err(Refused { message, visited }),
    }
}

fn walk_document<'a>(doc: &'a ExecutableDocument, limits: &Limits, visited: &mut u64) -> Result<u64, String> {
    let mut fragments: HashMap<&'a str, Local<'a>> = HashMap::with_capacity(doc.fragments.len());
    for (name, fragment) in &doc.fragments {
        let mut l = Local { own: 0, spreads: Vec::new() };
        local(&fragment.node.selection_set, &mut l, visited);
        fragments.insert(name.as_str(), l);
    }
    let mut marks: HashMap<&str, Mark> = HashMap::with_capacity(fragments.len());
    let mut expand = |root: &'a str, visited: &mut u64| expand(root, &fragments, &mut marks, limits, visited);
    let mut largest = 0u64;
    let names: Vec<&str> = fragments.keys().copied().collect();
    for name in names {
        largest = largest.max(expand(name, visited)?);
    }
    for (_, operation) in doc.operations.iter() {
        let mut l = Local { own: 0, spreads: Vec::new() };
        local(&operation.node.selection_set, &mut l, visited);
        let mut size = l.own;
        for s in &l.spreads {
            *visited += 1;
            if fragments.contains_key(s) {
                size = size.saturating_add(expand(s, visited)?);
            }
            if size > limits.max_selections {
                return Err(too_many(limits, size));
            }
        }
        if size > limits.max_selections {
            return Err(too_many(limits, size));
        }
        largest = largest.max(size);
    }
    Ok(largest)
}

/// The expanded size of one fragment, its spreads first, with an explicit stack (a chain of
/// 25,000 fragments must not become 25,000 stack frames).
fn expand<'a>(
    root: &'a str,
    fragments: &HashMap<&'a str, Local<'a>>,
    marks: &mut HashMap<&'a str, Mark>,
    limits: &Limits,
    visited: &mut u64,
) -> Result<u64, String> {
    if let Some(Mark::Done(n)) = marks.get(root) {
        return Ok(*n);
    }
    let mut stack: Vec<(&str, usize)> = vec![(root, 0)];
    marks.insert(root, Mark::Visiting);
    while let Some((name, next)) = stack.last_mut() {
        let name: &'a str = name;
        let l = &fragments[name];
        if let Some(child) = l.spreads.get(*next).copied() {
            *next += 1;
            *visited += 1;
            match marks.get(child) {
                Some(Mark::Done(_)) => {}
                Some(Mark::Visiting) => {
                    let from = stack.iter().position(|(n, _)| *n == child).unwrap_or(0);
                    let cycle: Vec<&str> = stack[from..].iter().map(|(n, _)| *n).chain([child]).collect();
                    return Err(format!("fragment {child} spreads itself: {}", cycle.join(" → ")));
                }
                None if fragments.contains_key(child) => {
                    if stack.len() >= limits.max_fragment_depth {
                        return Err(format!(
                            "fragment spreads nest deeper than {} (from fragment {root})",
                            limits.max_fragment_depth
                        ));
                    }
                    marks.insert(child, Mark::Visiting);
                    stack.push((child, 0));
                }
                None => {} // unknown fragment: validation names it
            }
        } else {
            let mut size = l.own;
            for s in &l.spreads {
                if let Some(Mark::Done(n)) = marks.get(s) {
                    size = size.saturating_add(*n);
                    if size > limits.max_selections {
                        return Err(too_many(limits, size));
                    }
                }
            }
            marks.insert(name, Mark::Done(size));
            stack.pop();
        }
    }
    match marks.get(root) {
        Some(Mark::Done(n)) => Ok(*n),
        _ => Ok(0),
    }
}

fn too_many(limits: &Limits, n: u64) -> String {
    format!(
        "the document has over {} selections once its fragments are expanded (at least {n}); the limit is {}",
        limits.max_selections, limits.max_selections
    )
}

/// Checks the plan that will run against the limits; `Err` names the limit and the figure.
/// The plan holds every field once (fragments inlined, same keys merged, `@skip`/`@include`
/// folded), so this reads it rather than the document; only list sizes given by variables
/// are read per request.
pub fn check(plan: &Plan, variables: &Map<String, Value>, limits: &Limits) -> Result<(), String> {
    if plan.root.len() > limits.max_root_fields {
        return Err(format!(
            "the operation selects {} root fields; the limit is {}",
            plan.root.len(),
            limits.max_root_fields
        ));
    }
    let tally = tally(&plan.root, variables, limits.default_list_size, 0);
    if tally.aliases > limits.max_aliases {
        return Err(format!(
            "the operation uses {} aliases; the limit is {}",
            tally.aliases, limits.max_aliases
        ));
    }
    if tally.cost > limits.max_cost {
        return Err(format!(
            "the operation's estimated cost is {}; the limit is {} (each field counts once per item of the \
             lists above it; a list counts its `first` argument, or {} without one)",
            tally.cost, limits.max_cost, limits.default_list_size
        ));
    }
    Ok(())
}

/// Aliases and estimated cost of some fields and everything below them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Tally {
    aliases: usize,
    cost: u64,
}

/// Each field counts once per item of the lists above it; under an interface or union, the
/// possible type that costs most. Recursion follows the plan's nesting, which validation's
/// depth limit bounds (`depth` guards against a plan that skipped it).
fn tally(fields: &[Field], variables: &Map<String, Value>, default_list_size: u64, depth: usize) -> Tally {
    let mut total = Tally::default();
    if depth > 64 {
        return total;
    }
    for field in fields {
        if *field.key != *field.name {
            total.aliases += 1;
        }
        let mut below = tally(&field.children, variables, default_list_size, depth + 1);
        for (_, fields) in &field.by_type {
            let each = tally(fields, variables, default_list_size, depth + 1);
            below.aliases = below.aliases.max(each.aliases);
            below.cost = below.cost.max(each.cost);
        }
        let items = match &field.count {
            Count::One => 1,
            Count::Fixed(n) => *n,
            Count::Default => default_list_size,
            Count::Variable(name) => {
                variables.get(&**name).and_then(Value::as_u64).unwrap_or(default_list_size)
            }
        };
        total.aliases += below.aliases;
        total.cost = total.cost.saturating_add(items.saturating_mul(1 + below.cost));
    }
    total
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::graphql::model::FacadeSchema;
    use crate::graphql::plan::Operation;
    use crate::graphql::sdl::{SchemaFile, analyze as analyze_sdl};

    /// The plan of a (valid) document on the demo schema, and the limits' verdict on it.
    fn judge(text: &str, variables: serde_json::Value, limits: &Limits) -> Result<(), String> {
        let schema: FacadeSchema = analyze_sdl(&[SchemaFile {
            name: "facade.graphql".into(),
            text: include_str!("../../schema/facade.graphql").to_owned(),
        }])
        .expect("the demo schema loads");
        let doc = async_graphql::parser::parse_query(text).expect("parses");
        let variables = variables.as_object().cloned().unwrap_or_default();
        let plan = Operation::new(Arc::new(doc), None, Arc::new(schema)).unwrap().plan(&variables).unwrap();
        check(&plan, &variables, limits)
    }

    /// The estimated cost of a document (read from the refusal at a limit of 0).
    fn cost(text: &str, variables: serde_json::Value) -> u64 {
        let e = judge(text, variables, &Limits { max_cost: 0, ..Limits::default() }).unwrap_err();
        let figure = e.strip_prefix("the operation's estimated cost is ").expect("a cost refusal");
        figure.split(';').next().unwrap().parse().unwrap()
    }

    #[test]
    fn the_cost_counts_each_field_once_per_item_of_the_lists_above_it() {
        let nested = r#"{ profile(id: 1) { rows(first: 3) { titles(first: 4) { id } } } }"#;
        // profile 1 × (1 + rows 3 × (1 + titles 4 × (1 + id)))
        assert_eq!(cost(nested, json!({})), 1 + 3 * (1 + 4 * 2));
        // A list without its argument counts the argument's declared default (rows: 10, titles: 20).
        assert_eq!(
            cost(r#"{ profile(id: 1) { rows { titles { id } } } }"#, json!({})),
            1 + 10 * (1 + 20 * 2)
        );
        // Null counts `default_list_size` (10), as the fetch asks for.
        let null = r#"{ profile(id: 1) { rows(first: 3) { titles(first: null) { id } } } }"#;
        assert_eq!(cost(null, json!({})), 1 + 3 * (1 + 10 * 2));
    }

    #[test]
    fn a_list_size_given_by_a_variable_is_read_per_request() {
        let q = r#"query($n: Int) { profile(id: 1) { rows(first: 3) { titles(first: $n) { id } } } }"#;
        assert_eq!(cost(q, json!({ "n": 2 })), 1 + 3 * (1 + 2 * 2));
        assert_eq!(cost(q, json!({ "n": 400 })), 1 + 3 * (1 + 400 * 2));
        assert_eq!(cost(q, json!({})), 1 + 3 * (1 + 10 * 2), "unset counts default_list_size");
        assert_eq!(cost(q, json!({ "n": null })), 1 + 3 * (1 + 10 * 2));
        let limits = Limits { max_cost: 100, ..Limits::default() };
        assert!(judge(q, json!({ "n": 2 }), &limits).is_ok());
        let e = judge(q, json!({ "n": 400 }), &limits).unwrap_err();
        assert!(e.contains("estimated cost is 2404; the limit is 100"), "{e}");
    }

    #[test]
    fn what_the_plan_merges_or_skips_is_not_counted_again() {
        // The same field twice, and once more through a fragment, is one field of the plan.
        let merged = r#"{ title(id: 1) { id id ...F } } fragment F on Title { id }"#;
        assert_eq!(cost(merged, json!({})), 2);
        let skipped = r#"query($s: Boolean!) { title(id: 1) { id name @skip(if: $s) } }"#;
        assert_eq!(cost(skipped, json!({ "s": true })), 2);
        assert_eq!(cost(skipped, json!({ "s": false })), 3);
    }

    #[test]
    fn aliases_and_root_fields_are_counted_on_the_plan() {
        let four = r#"{ a1: title(id: 1) { id } a2: title(id: 2) { id } a3: title(id: 3) { n: name } }"#;
        let limits = Limits { max_aliases: 3, max_root_fields: 2, ..Limits::default() };
        let e = judge(four, json!({}), &limits).unwrap_err();
        assert_eq!(e, "the operation selects 3 root fields; the limit is 2");
        let limits = Limits { max_aliases: 3, ..Limits::default() };
        let e = judge(four, json!({}), &limits).unwrap_err();
        assert_eq!(e, "the operation uses 4 aliases; the limit is 3");
        let e = judge(
            r#"{ a: title(id: 1) { id } a: title(id: 1) { id } }"#,
            json!({}),
            &Limits { max_aliases: 0, ..Limits::default() },
        )
        .unwrap_err();
        assert_eq!(e, "the operation uses 1 aliases; the limit is 0", "the same alias twice is one field");
    }

    fn analyze_text(text: &str) -> Result<Analysis, String> {
        let doc = async_graphql::parser::parse_query(text).unwrap();
        analyze(&doc, &Limits::default()).map_err(|e| e.message)
    }

    #[test]
    fn a_fragment_cycle_is_an_error_naming_the_cycle() {
        let e =
            analyze_text("{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }").unwrap_err();
        assert!(e.contains("spreads itself") && e.contains("→"), "{e}");
        let e = analyze_text("{ ...A } fragment A on Query { title(id: 1) { id } ...A }").unwrap_err();
        assert!(e.contains("fragment A spreads itself"), "{e}");
    }

    #[test]
    fn a_long_chain_is_refused_at_the_depth_limit_in_linear_work() {
        let n = 25_000;
        let mut text = String::from("{ ...f0 }");
        for i in 0..n {
            text.push_str(&format!(" fragment f{i} on Query {{ ...f{} }}", i + 1));
        }
        text.push_str(&format!(" fragment f{n} on Query {{ __typename }}"));
        let doc = async_graphql::parser::parse_query(&text).unwrap();
        let e = analyze(&doc, &Limits::default()).unwrap_err();
        assert!(e.message.contains("nest deeper than 16"), "{e}");
        assert!(e.visited <= 2 * (n as u64 + 2), "linear in the document: {}", e.visited);
    }

    #[test]
    fn fan_out_is_counted_once_per_fragment_and_stops_at_the_limit() {
        let n = 40;
        let mut text = String::from("{ ...F0 }");
        for i in 0..n {
            text.push_str(&format!(" fragment F{i} on Query {{ ...F{j} ...F{j} }}", j = i + 1));
        }
        text.push_str(&format!(" fragment F{n} on Query {{ title(id: 1) {{ id }} }}"));
        let doc = async_graphql::parser::parse_query(&text).unwrap();
        let limits = Limits { max_fragment_depth: 64, ..Limits::default() };
        let e = analyze(&doc, &limits).unwrap_err();
        assert!(e.message.contains("selections"), "{e}");
        // 2^40 expanded selections, found out in work linear in the document (~120 nodes).
        assert!(e.visited < 250, "{e:?}");
        let ok = analyze_text(
            "query { ...A ...A } fragment A on Query { title(id: 1) { ...B ...B } } fragment B on Title { id name }",
        )
        .unwrap();
        // Spreads count as selections: B = 2, A = title + 2 spreads + 2·B = 7, the operation 2 + 2·A.
        assert_eq!(ok.expanded_selections, 16);
        assert!(ok.visited < 20, "{ok:?}");
    }

    #[test]
    fn work_is_linear_in_the_document() {
        // Every fragment spreads every earlier one: quadratic edges, exponential expansion.
        let n = 300;
        let mut text = String::from("{ ...F0 }");
        for i in 0..n {
            let spreads: String = (i + 1..n.min(i + 6)).map(|j| format!(" ...F{j}")).collect();
            text.push_str(&format!(" fragment F{i} on Query {{ __typename{spreads} }}"));
        }
        let doc = async_graphql::parser::parse_query(&text).unwrap();
        let limits = Limits { max_fragment_depth: 1_000, ..Limits::default() };
        let r = analyze(&doc, &limits);
        let nodes = 1 + n * 6;
        let visited = match r {
            Err(e) => {
                assert!(e.message.contains("selections"), "{e}");
                e.visited
            }
            Ok(a) => a.visited,
        };
        assert!(visited <= 2 * nodes as u64, "{visited} visits for {nodes} nodes");
    }
}
