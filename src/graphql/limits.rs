//! Limits on what one document and one operation may ask, in two passes:
//!
//! 1. [`analyze`], the moment a document is parsed and before anything else walks it: fragment
//!    cycles, how deep fragment spreads nest, and how many selections the document has once
//!    every fragment is expanded. Each fragment's expanded size is computed once (memoized)
//!    over the spread graph with an explicit stack, so the work is linear in the document's
//!    size whatever it holds, and it stops at the first count over its limit. Everything that
//!    walks the document later (async-graphql's validation, which expands fragments, and the
//!    cost below) is bounded by what this pass let through.
//! 2. [`check`], after validation, per request (variables set): aliases, root fields and an estimated
//!    cost. The cost counts every field once per item of the lists above it; a list is as
//!    long as its limit argument (`first`, or the one its `@http(limit:)` names), or
//!    `default_list_size` when that is null or unset and the field has no default — the same
//!    number the fetch then asks for (`fetch.rs`).

use std::collections::HashMap;

use async_graphql::Value as GqlValue;
use async_graphql::parser::Positioned;
use async_graphql::parser::types::{ExecutableDocument, Field, OperationType, Selection, SelectionSet};
use serde_json::{Map, Value};

use super::model::{Binding, FacadeSchema, FieldDef};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OperationLimits {
    pub max_aliases: usize,
    pub max_root_fields: usize,
    pub max_cost: u64,
    pub default_list_size: u64,
    /// Most selections (fields, inline fragments, spreads) in one definition with every
    /// fragment expanded.
    pub max_selections: u64,
    /// Deepest chain of fragment spreads (`...A` whose `A` spreads `...B`, …).
    pub max_fragment_depth: usize,
}

impl From<&crate::config::Limits> for OperationLimits {
    fn from(l: &crate::config::Limits) -> Self {
        Self {
            max_aliases: l.max_aliases,
            max_root_fields: l.max_root_fields,
            max_cost: l.max_cost,
            default_list_size: l.default_list_size,
            max_selections: l.max_selections,
            max_fragment_depth: l.max_fragment_depth,
        }
    }
}

/// `[limits]`'s defaults (written there once).
impl Default for OperationLimits {
    fn default() -> Self {
        Self::from(&crate::config::Limits::default())
    }
}

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
pub fn analyze(doc: &ExecutableDocument, limits: &OperationLimits) -> Result<Analysis, Refused> {
    let mut visited = 0u64;
    match walk_document(doc, limits, &mut visited) {
        Ok(expanded_selections) => Ok(Analysis { expanded_selections, visited }),
        Err(message) => Err(Refused { message, visited }),
    }
}

fn walk_document<'a>(
    doc: &'a ExecutableDocument,
    limits: &OperationLimits,
    visited: &mut u64,
) -> Result<u64, String> {
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
    limits: &OperationLimits,
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

fn too_many(limits: &OperationLimits, n: u64) -> String {
    format!(
        "the document has over {} selections once its fragments are expanded (at least {n}); the limit is {}",
        limits.max_selections, limits.max_selections
    )
}

struct Walk<'a> {
    doc: &'a ExecutableDocument,
    schema: &'a FacadeSchema,
    variables: &'a Map<String, Value>,
    limits: OperationLimits,
    aliases: usize,
}

/// Checks the operation that will run; `Err` names the limit and the figure. The document
/// must have passed [`analyze`] (and validation), which bounds this walk.
pub fn check(
    doc: &ExecutableDocument,
    operation_name: Option<&str>,
    schema: &FacadeSchema,
    variables: &Map<String, Value>,
    limits: OperationLimits,
) -> Result<(), String> {
    // An operation the document does not have is refused before this runs (`plan::pick`).
    let Ok(operation) = super::document::pick(doc, operation_name) else { return Ok(()) };
    let root = match operation.ty {
        OperationType::Mutation => schema.mutation.as_deref().unwrap_or("Mutation"),
        _ => schema.query.as_str(),
    };
    let mut walk = Walk { doc, schema, variables, limits, aliases: 0 };
    let mut roots = Vec::new();
    walk.fields(&operation.selection_set, 0, &mut roots);
    if roots.len() > limits.max_root_fields {
        return Err(format!(
            "the operation selects {} root fields; the limit is {}",
            roots.len(),
            limits.max_root_fields
        ));
    }
    let cost = walk.cost(&operation.selection_set, root, 0)?;
    if walk.aliases > limits.max_aliases {
        return Err(format!(
            "the operation uses {} aliases; the limit is {}",
            walk.aliases, limits.max_aliases
        ));
    }
    if cost > limits.max_cost {
        return Err(format!(
            "the operation's estimated cost is {cost}; the limit is {} (each field counts once per item of the \
             lists above it; a list counts its `first` argument, or {} without one)",
            limits.max_cost, limits.default_list_size
        ));
    }
    Ok(())
}

impl<'a> Walk<'a> {
    /// The fields of a selection set, fragments expanded (their nesting is bounded by
    /// [`analyze`]; `depth` guards against a document that skipped it).
    fn fields(&self, set: &'a Positioned<SelectionSet>, depth: usize, out: &mut Vec<&'a Field>) {
        if depth > self.limits.max_fragment_depth + 1 {
            return;
        }
        for selection in &set.node.items {
            match &selection.node {
                Selection::Field(field) => out.push(&field.node),
                Selection::InlineFragment(inline) => self.fields(&inline.node.selection_set, depth + 1, out),
                Selection::FragmentSpread(spread) => {
                    if let Some(fragment) = self.doc.fragments.get(&spread.node.fragment_name.node) {
                        self.fields(&fragment.node.selection_set, depth + 1, out);
                    }
                }
            }
        }
    }

    /// The cost of a selection set; stops with the error as soon as it passes the limit.
    fn cost(
        &mut self,
        set: &'a Positioned<SelectionSet>,
        type_name: &str,
        depth: usize,
    ) -> Result<u64, String> {
        if depth > 64 {
            return Ok(0); // async-graphql's depth limit refused such a query already
        }
        let mut fields = Vec::new();
        self.fields(set, 0, &mut fields);
        let mut total: u64 = 0;
        for field in fields {
            if field.alias.is_some() {
                self.aliases += 1;
                if self.aliases > self.limits.max_aliases {
                    return Err(format!(
                        "the operation uses at least {} aliases; the limit is {}",
                        self.aliases, self.limits.max_aliases
                    ));
                }
            }
            let def = self.schema.field_of(type_name, field.name.node.as_str());
            let Some(def) = def else {
                total = total.saturating_add(1);
                continue;
            };
            let is_list = matches!(def.ty.base, async_graphql::parser::types::BaseType::List(_));
            let size = if is_list {
                list_size(def, field, self.variables, self.limits.default_list_size)
            } else {
                1
            };
            let children = if field.selection_set.node.items.is_empty() {
                0
            } else {
                self.cost(&field.selection_set, named(&def.ty), depth + 1)?
            };
            total = total.saturating_add(size.saturating_mul(1 + children));
            if total > self.limits.max_cost {
                return Err(format!(
                    "the operation's estimated cost is over {}; the limit is {} (each field counts once per item of \
                     the lists above it; a list counts its `first` argument, or {} without one)",
                    self.limits.max_cost, self.limits.max_cost, self.limits.default_list_size
                ));
            }
        }
        Ok(total)
    }
}

/// The argument that caps a list field's length: the one its `@http(limit:)` names, else
/// `first`.
pub fn limit_argument(def: &FieldDef) -> &str {
    match &def.binding {
        Binding::Http(http) => http.limit_arg.as_deref().unwrap_or("first"),
        _ => "first",
    }
}

/// How many items a list field is counted as: its limit argument's value; the argument's
/// default when the argument is not written; `default_list_size` for null, an unset variable
/// (which the executor passes on as null) or no value. The fetch asks for the same.
fn list_size(def: &FieldDef, field: &Field, variables: &Map<String, Value>, default_list_size: u64) -> u64 {
    let arg = limit_argument(def);
    let declared_default =
        || def.args.iter().find(|a| a.name == arg).and_then(|a| a.default.as_ref()).and_then(gql_u64);
    let Some((_, value)) = field.arguments.iter().find(|(n, _)| n.node == arg) else {
        return declared_default().unwrap_or(default_list_size);
    };
    let mut unset = false;
    let resolved = value.node.clone().into_const_with(|name| match variables.get(name.as_str()) {
        Some(v) => GqlValue::from_json(v.clone()).map_err(|_| ()),
        None => {
            unset = true;
            Ok(GqlValue::Null)
        }
    });
    match resolved {
        _ if unset => default_list_size,
        Ok(v) => gql_u64(&v).unwrap_or(default_list_size),
        Err(()) => default_list_size,
    }
}

fn gql_u64(v: &GqlValue) -> Option<u64> {
    match v {
        GqlValue::Number(n) => n.as_u64(),
        _ => None,
    }
}

use super::model::named_type as named;

/// Whether any operation asks `__schema` or `__type`, at any depth (fragments included).
/// The document must have passed [`analyze`], which bounds the walk.
pub fn uses_introspection(doc: &ExecutableDocument) -> bool {
    fn any(doc: &ExecutableDocument, set: &Positioned<SelectionSet>, depth: usize) -> bool {
        depth < 128
            && set.node.items.iter().any(|s| match &s.node {
                Selection::Field(f) => {
                    matches!(f.node.name.node.as_str(), "__schema" | "__type")
                        || any(doc, &f.node.selection_set, depth + 1)
                }
                Selection::InlineFragment(i) => any(doc, &i.node.selection_set, depth + 1),
                Selection::FragmentSpread(sp) => doc
                    .fragments
                    .get(&sp.node.fragment_name.node)
                    .is_some_and(|f| any(doc, &f.node.selection_set, depth + 1)),
            })
    }
    doc.operations.iter().any(|(_, op)| any(doc, &op.node.selection_set, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn analyze_text(text: &str) -> Result<Analysis, String> {
        let doc = async_graphql::parser::parse_query(text).unwrap();
        analyze(&doc, &OperationLimits::default()).map_err(|e| e.message)
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
        let e = analyze(&doc, &OperationLimits::default()).unwrap_err();
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
        let limits = OperationLimits { max_fragment_depth: 64, ..OperationLimits::default() };
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
        let limits = OperationLimits { max_fragment_depth: 1_000, ..OperationLimits::default() };
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
