//! Planning a supergraph's fields: which subgraph fetches each selected field, and the
//! GraphQL documents the subgraphs are sent.
//!
//! The compiler walks the client's selection with a *current subgraph* (`At`: the step
//! whose answer holds the object, and the node of that step's document the object's fields
//! go under). A field the current subgraph resolves (it owns it, it is one of its keys, or
//! the field that led here provides it) joins the current document and is read from the
//! answer's object (`Source::Parent`). The other fields of the object are grouped by the
//! subgraph chosen for them (one already chosen for this object if it can, else the first
//! owner with a key for the type): each group is one entity step (`_entities`), whose
//! representation (`__typename`, the key, the `@requires` fields) is read from the current
//! answer — hidden fields added to the current document — or, when the current subgraph
//! cannot give a required field, from another group's entity at the same object, fetched
//! first. Such a field is read from the entity (`Source::Fetched`: the chain of steps from
//! the parent object to the entity). At the root, each subgraph's root fields make one root
//! fetch (a mutation: one per field, run in order).
//!
//! After compiling, [`calls`] puts the subgraph steps of one wave (steps as far from the
//! root) to one subgraph into one call: entity steps of the same type and selection share
//! one aliased `_entities` (their representations deduplicated at run time), the others get
//! one alias each. So a query costs one call per subgraph per wave.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::parser::types::OperationDefinition;
use async_graphql_value::Value as DocValue;

use super::{Base, Compiler, Count, Field, KeyJson, Merged, Out, Source, Step, StepKind, named, out_type};
use crate::backends::json::keep::{Keep, KeepRef};
use crate::graphql::model::{Binding, FieldDef, SubgraphField, TypeDef};

/// Where an object's fields are compiled inside a subgraph's document.
pub struct At {
    /// The subgraph step whose answer holds the object.
    step: usize,
    /// The node of that step's document the object's fields go under.
    node: usize,
    graph: usize,
    /// Fields of the object the field that led here provides in this subgraph.
    provided: Vec<Arc<str>>,
}

/// One subgraph step's part of a call.
#[derive(Debug, Clone)]
pub struct SubgraphStep {
    /// Its call (`Plan::calls`).
    pub call: usize,
    /// Its `_entities` alias in the call; `None` for a root fetch (its value is `data`).
    pub alias: Option<usize>,
    /// An entity's `__typename`, as JSON text with its key: `{"__typename":"Product"`.
    pub typename: Box<[u8]>,
    /// The representation's fields: the key its producer's answer holds it under, and the
    /// field's name, written `,"name":` once.
    pub representation: Vec<(Arc<str>, Box<[u8]>)>,
}

/// One call to a subgraph: the steps of one wave it serves.
#[derive(Debug, Clone)]
pub struct SubgraphCall {
    pub backend: usize,
    /// `{"query":"…","variables":{`: the document, escaped once.
    pub head: Box<[u8]>,
    /// The client's variables the document uses, each written `"name":` once.
    pub variables: Vec<(String, Box<[u8]>)>,
    /// The `_entities` aliases, in order (`_e0`, `_e1`…).
    pub aliases: Vec<Arc<str>>,
    /// The steps it serves.
    pub members: Vec<usize>,
    /// What of the answer to keep: `data` as the documents select it, and `errors`.
    pub keep: KeepRef,
    pub data: Arc<str>,
    pub errors: Arc<str>,
    /// A mutation's root field: made once, never retried or shared.
    pub write: bool,
    /// What the call is, for errors, traces and the waterfall (`products: query`,
    /// `reviews: _entities(User, Product)`).
    pub name: Arc<str>,
}

/// A subgraph step's document: node 0 is the fetched object (the root, or the entity).
#[derive(Debug)]
pub struct SubDoc {
    graph: usize,
    /// The entity type; `None` for a root fetch.
    typename: Option<Arc<str>>,
    nodes: Vec<Node>,
    /// The client's variables its arguments use.
    variables: Vec<String>,
}

#[derive(Debug)]
struct Node {
    /// The response key (an alias where it differs from `name`).
    key: Arc<str>,
    name: Arc<str>,
    /// `(a:1,b:$x)`, or empty.
    args: String,
    children: Vec<usize>,
    object: bool,
}

impl SubDoc {
    fn new(graph: usize, typename: Option<Arc<str>>) -> Self {
        let top = Node {
            key: Arc::from(""),
            name: Arc::from(""),
            args: String::new(),
            children: Vec::new(),
            object: true,
        };
        Self { graph, typename, nodes: vec![top], variables: Vec::new() }
    }

    /// The field asked under `key` below `parent`, added if it is not there yet.
    fn add(&mut self, parent: usize, key: &Arc<str>, name: &Arc<str>, args: String, object: bool) -> usize {
        if let Some(&c) = self.nodes[parent].children.iter().find(|&&c| *self.nodes[c].key == **key) {
            return c;
        }
        self.nodes.push(Node { key: key.clone(), name: name.clone(), args, children: Vec::new(), object });
        let id = self.nodes.len() - 1;
        self.nodes[parent].children.push(id);
        id
    }

    /// A field the planner reads (a key, a required field) below `parent`: the key it is
    /// asked under — its name, unless the client's selection uses that key for something
    /// else.
    fn hidden(&mut self, parent: usize, name: &Arc<str>) -> Arc<str> {
        let plain = |n: &Node| *n.name == **name && n.args.is_empty() && !n.object;
        match self.nodes[parent].children.iter().map(|&c| &self.nodes[c]).find(|n| *n.key == **name) {
            Some(n) if plain(n) => n.key.clone(),
            Some(_) => {
                let key: Arc<str> = Arc::from(format!("_facade_{name}"));
                let c = self.add(parent, &key, name, String::new(), false);
                self.nodes[c].key.clone()
            }
            None => {
                self.add(parent, name, name, String::new(), false);
                name.clone()
            }
        }
    }

    /// The selection of `node`'s children, as GraphQL text.
    fn render(&self, node: usize, out: &mut String) {
        out.push('{');
        let children = &self.nodes[node].children;
        if children.is_empty() {
            out.push_str("__typename");
        }
        for (i, &c) in children.iter().enumerate() {
            let n = &self.nodes[c];
            if i > 0 {
                out.push(' ');
            }
            if n.key != n.name {
                out.push_str(&n.key);
                out.push(':');
            }
            out.push_str(&n.name);
            out.push_str(&n.args);
            if n.object {
                self.render(c, out);
            }
        }
        out.push('}');
    }

    /// What of the answer at `node` anything reads: every field the document asks.
    fn keep(&self, node: usize) -> Keep {
        let n = &self.nodes[node];
        if !n.object {
            return Keep::All;
        }
        n.children
            .iter()
            .fold(Keep::nothing(), |k, &c| k.union(Keep::field(self.nodes[c].key.clone(), self.keep(c))))
    }
}

/// Where one selected field of an object comes from.
enum From {
    /// Compiled as any facade field (`__typename`, `@http`, `@js`).
    Own,
    /// Cannot be planned (reported).
    Skip,
    /// The current subgraph's document.
    Here,
    /// The group (an entity step, or a root fetch) of this index.
    Group(usize),
}

/// Where a field is read: asked in `step`'s document under `node` (of subgraph `graph`),
/// read from the parent object (`chain` `None`) or from the object the chain of steps gives
/// for it; `report`: it writes the subgraph's errors for that object.
struct Read {
    step: usize,
    node: usize,
    graph: usize,
    chain: Option<Vec<usize>>,
    report: bool,
}

/// The fields of one object one subgraph step fetches.
struct Group {
    graph: usize,
    /// Another group at the same object whose entity its representation is read from.
    after: Option<usize>,
    step: usize,
}

impl<'a> Compiler<'a> {
    /// Compiles the fields selected on a supergraph type (`producer` and `via` say where
    /// the object is, as for any field; `sub` the document it is fetched with).
    pub(super) fn federated(
        &mut self,
        type_name: &str,
        sets: &[&'a async_graphql::parser::Positioned<async_graphql::parser::types::SelectionSet>],
        producer: Option<(usize, usize)>,
        via: &[(Arc<str>, usize)],
        sub: Option<&At>,
        out: &mut Vec<Field>,
    ) {
        let Some(TypeDef::Object { fields: defs, .. }) = self.schema.types.get(type_name) else { return };
        let merged = self.merge(sets, type_name);
        let root = sub.is_none() && producer.is_none() && via.is_empty();
        let def_of = |m: &Merged<'_>| defs.iter().find(|d| *d.name == *m.first.node.name.node.as_str());
        // Which subgraph each field comes from.
        let mut groups: Vec<(usize, Option<usize>)> = Vec::new(); // (graph, after)
        let mut from = Vec::with_capacity(merged.len());
        for m in &merged {
            let f = match def_of(m).map(|d| (d, &d.binding)) {
                Some((def, Binding::Subgraph(sf))) => {
                    if sub.is_some_and(|s| self.resolves(type_name, s.graph, &s.provided, &def.name)) {
                        From::Here
                    } else {
                        match self.pick(type_name, sf, &groups, root) {
                            Ok(Some(g)) => From::Group(g),
                            Ok(None) => {
                                groups.push((sf.owners[0].graph, None));
                                From::Group(groups.len() - 1)
                            }
                            // Its first owner has no key for the type: another owner may.
                            Err(()) => match self.pick_owner(type_name, sf, root) {
                                Some(g) => {
                                    groups.push((g, None));
                                    From::Group(groups.len() - 1)
                                }
                                None => {
                                    self.unplannable(
                                        m,
                                        type_name,
                                        "no subgraph that resolves it has a key for the type",
                                    );
                                    From::Skip
                                }
                            },
                        }
                    }
                }
                Some((_, Binding::Parent)) if sub.is_some() => From::Here,
                _ => From::Own,
            };
            from.push(f);
        }
        if !root && !groups.is_empty() && sub.is_none() {
            if let Some(m) = merged.first() {
                self.unplannable(
                    m,
                    type_name,
                    "subgraph fields below a field that is not fetched from a subgraph",
                );
            }
            return;
        }
        // Each entity group's representation: what the current subgraph cannot give comes
        // from another group's entity at this object.
        let mut g = 0;
        while g < groups.len() && !root {
            let graph = groups[g].0;
            let needs = self.needs(type_name, defs, &merged, &from, g, graph);
            let here = sub.map_or(&[][..], |s| &s.provided[..]);
            let missing: Vec<Arc<str>> = needs
                .iter()
                .filter(|n| !sub.is_some_and(|s| self.resolves(type_name, s.graph, here, n)))
                .cloned()
                .collect();
            if !missing.is_empty() {
                let key =
                    self.schema.entity_key(type_name, graph).map(|k| k.fields.clone()).unwrap_or_default();
                let gives = |c: &Compiler<'_>, h: usize| {
                    missing.iter().chain(key.iter()).all(|n| c.resolves(type_name, h, &[], n))
                };
                let found = groups
                    .iter()
                    .enumerate()
                    .find(|&(h, (hg, after))| h != g && after.is_none() && gives(self, *hg))
                    .map(|(h, _)| h);
                let after = found.or_else(|| {
                    let owner = self.owners_of(type_name, &missing[0]).into_iter().find(|&o| {
                        gives(self, o)
                            && self.schema.entity_key(type_name, o).is_some_and(|k| {
                                k.fields
                                    .iter()
                                    .all(|n| sub.is_some_and(|s| self.resolves(type_name, s.graph, here, n)))
                            })
                    })?;
                    groups.push((owner, None));
                    Some(groups.len() - 1)
                });
                match after {
                    Some(h) => groups[g].1 = Some(h),
                    None => {
                        if let Some((m, _)) =
                            merged.iter().zip(&from).find(|(_, f)| matches!(f, From::Group(x) if *x == g))
                        {
                            let why = format!(
                                "no subgraph can give {} for its representation",
                                missing.iter().map(|m| &**m).collect::<Vec<_>>().join(", ")
                            );
                            self.unplannable(m, type_name, &why);
                        }
                        return;
                    }
                }
            }
            g += 1;
        }
        // The steps, each group's after the group it reads from.
        let mut made: Vec<Option<Group>> = groups.iter().map(|_| None).collect();
        for g in 0..groups.len() {
            self.make_group(type_name, defs, &merged, &from, &groups, g, producer, via, sub, &mut made);
        }
        // The fields, in selection order.
        let mut reported = vec![false; groups.len()];
        for (m, f) in merged.iter().zip(&from) {
            match f {
                From::Skip => {}
                From::Own => self.own_field(type_name, defs, m, producer, via, &[], sub, out),
                From::Here => {
                    let Some(sub) = sub else { continue };
                    let def = def_of(m).expect("a subgraph field has its definition");
                    let read =
                        Read { step: sub.step, node: sub.node, graph: sub.graph, chain: None, report: false };
                    let field = self.fetched_field(type_name, def, m, read, producer, via);
                    out.push(field);
                }
                From::Group(g) => {
                    let Some(group) = &made[*g] else { continue };
                    let def = def_of(m).expect("a subgraph field has its definition");
                    let mut chain = vec![group.step];
                    if let Some(h) = group.after.and_then(|h| made[h].as_ref()) {
                        chain.insert(0, h.step);
                    }
                    // The first field read from a group's object writes its errors.
                    let report = !std::mem::replace(&mut reported[*g], true);
                    let step = group.step;
                    let read = Read { step, node: 0, graph: group.graph, chain: Some(chain), report };
                    let field = self.fetched_field(type_name, def, m, read, Some((step, 0)), &[]);
                    out.push(field);
                }
            }
        }
    }

    /// Adds what an `@http` route reads of its parent (`$parent.x`, the batch keys) to the
    /// subgraph document its parent comes from, under the names the route reads.
    pub(super) fn parent_reads(&mut self, http: &crate::graphql::model::HttpBinding, sub: &At) {
        let names = http
            .template
            .parts
            .iter()
            .filter_map(|p| match p {
                crate::graphql::model::Part::Parent(name) => Some(name.clone()),
                _ => None,
            })
            .chain(http.batch.as_ref().map(|b| b.keys_from.clone()));
        let names: Vec<Arc<str>> = names.collect();
        let doc = self.subdocs.get_mut(&sub.step).expect("a subgraph step has its document");
        for name in names {
            if *doc.hidden(sub.node, &name) != *name {
                self.conflicts.borrow_mut().push(format!(
                    "the route of an @http field reads {name} of its parent, which the query selects                      under that key for another field"
                ));
            }
        }
    }

    /// Reports a field no subgraph plan can fetch.
    fn unplannable(&self, m: &Merged<'_>, type_name: &str, why: &str) {
        let pos = m.first.pos;
        let name = m.first.node.name.node.as_str();
        self.conflicts
            .borrow_mut()
            .push(format!("{}:{}: cannot plan {type_name}.{name}: {why}", pos.line, pos.column));
    }

    /// Whether `graph` resolves `type_name.name` at an object where the field that led
    /// there provides `provided`: it owns the field, or it is one of its keys.
    fn resolves(&self, type_name: &str, graph: usize, provided: &[Arc<str>], name: &str) -> bool {
        let Some(def) = self.schema.field_of(type_name, name) else { return false };
        match &def.binding {
            Binding::Subgraph(sf) => {
                sf.owner(graph).is_some()
                    || provided.iter().any(|p| **p == *name)
                    || self.schema.entity_keys.get(type_name).is_some_and(|keys| {
                        keys.iter().any(|k| k.graph == graph && k.fields.iter().any(|f| **f == *name))
                    })
            }
            Binding::Parent => true,
            _ => false,
        }
    }

    fn owners_of(&self, type_name: &str, name: &str) -> Vec<usize> {
        match self.schema.field_of(type_name, name).map(|d| &d.binding) {
            Some(Binding::Subgraph(sf)) => sf.owners.iter().map(|o| o.graph).collect(),
            _ => Vec::new(),
        }
    }

    /// The group a remote field joins: one already chosen for this object whose subgraph
    /// owns it (`Ok(Some)`), a new one for its first owner (`Ok(None)`), or `Err` when that
    /// owner has no key for the type (another owner may).
    fn pick(
        &self,
        type_name: &str,
        sf: &SubgraphField,
        groups: &[(usize, Option<usize>)],
        root: bool,
    ) -> Result<Option<usize>, ()> {
        // A mutation's root fields are fetched one by one.
        if !(root && self.serial)
            && let Some(g) = groups.iter().position(|(g, _)| sf.owner(*g).is_some())
        {
            return Ok(Some(g));
        }
        let first = sf.owners[0].graph;
        if root || self.schema.entity_key(type_name, first).is_some() { Ok(None) } else { Err(()) }
    }

    /// The first owner that has a key for the type.
    fn pick_owner(&self, type_name: &str, sf: &SubgraphField, root: bool) -> Option<usize> {
        sf.owners.iter().map(|o| o.graph).find(|&g| root || self.schema.entity_key(type_name, g).is_some())
    }

    /// The fields group `g`'s representation needs: the key, then its fields' `@requires`.
    fn needs(
        &self,
        type_name: &str,
        defs: &[FieldDef],
        merged: &[Merged<'_>],
        from: &[From],
        g: usize,
        graph: usize,
    ) -> Vec<Arc<str>> {
        let mut needs: Vec<Arc<str>> =
            self.schema.entity_key(type_name, graph).map(|k| k.fields.clone()).unwrap_or_default();
        for (m, f) in merged.iter().zip(from) {
            if !matches!(f, From::Group(x) if *x == g) {
                continue;
            }
            let def = defs.iter().find(|d| *d.name == *m.first.node.name.node.as_str());
            if let Some(Binding::Subgraph(sf)) = def.map(|d| &d.binding)
                && let Some(owner) = sf.owner(graph)
            {
                for r in &owner.requires {
                    if !needs.contains(r) {
                        needs.push(r.clone());
                    }
                }
            }
        }
        needs
    }

    /// Makes group `g`'s step (after the group it reads from).
    #[allow(clippy::too_many_arguments)]
    fn make_group(
        &mut self,
        type_name: &str,
        defs: &[FieldDef],
        merged: &[Merged<'_>],
        from: &[From],
        groups: &[(usize, Option<usize>)],
        g: usize,
        producer: Option<(usize, usize)>,
        via: &[(Arc<str>, usize)],
        sub: Option<&At>,
        made: &mut Vec<Option<Group>>,
    ) {
        if made[g].is_some() {
            return;
        }
        let (graph, after) = groups[g];
        if let Some(h) = after {
            self.make_group(type_name, defs, merged, from, groups, h, producer, via, sub, made);
        }
        let root = sub.is_none();
        let typename: Option<Arc<str>> = (!root).then(|| Arc::from(type_name));
        let backend = &self.schema.backends[graph].name;
        let path_name: Arc<str> = match &typename {
            Some(t) => Arc::from(format!("{t}@{backend}")),
            None => Arc::from(backend.as_str()),
        };
        // Where the representation is read: the entity of the group it follows, or the
        // current document's object.
        let (source_step, source_node, step_producer, step_via) =
            match (after.and_then(|h| made[h].as_ref()), sub) {
                (Some(h), _) => (Some(h.step), 0, Some(h.step), Vec::new()),
                (None, Some(s)) => (Some(s.step), s.node, producer.map(|(p, _)| p), via.to_vec()),
                (None, None) => (None, 0, None, Vec::new()),
            };
        let mut representation = Vec::new();
        if let Some(source) = source_step {
            let needs = self.needs(type_name, defs, merged, from, g, graph);
            let doc = self.subdocs.get_mut(&source).expect("a subgraph step has its document");
            for name in needs {
                let key = doc.hidden(source_node, &name);
                let written: Box<[u8]> =
                    [b",", &serde_json::to_vec(&*name).expect("a string")[..], b":"].concat().into();
                representation.push((key, written));
            }
        }
        let id = self.steps.len();
        let typename_json: Box<[u8]> = match &typename {
            Some(t) => {
                [b"{\"__typename\":", &serde_json::to_vec(&**t).expect("a string")[..]].concat().into()
            }
            None => Box::default(),
        };
        self.steps.push(Step {
            kind: StepKind::Subgraph(SubgraphStep {
                call: 0,
                alias: None,
                typename: typename_json,
                representation,
            }),
            args: Vec::new(),
            producer: step_producer,
            via: step_via,
            guards: Vec::new(),
            path_name,
            out: Out { nullable: vec![true], base: Base::Object },
            fallback: None,
            children: Vec::new(),
            write: self.serial && root,
            keep: None,
        });
        if let Some(p) = step_producer {
            self.steps[p].children.push(id);
        }
        self.subdocs.insert(id, SubDoc::new(graph, typename));
        made[g] = Some(Group { graph, after, step: id });
    }

    /// A field read from a subgraph's answer (see [`Read`]).
    fn fetched_field(
        &mut self,
        type_name: &str,
        def: &FieldDef,
        m: &Merged<'a>,
        read: Read,
        producer: Option<(usize, usize)>,
        via: &[(Arc<str>, usize)],
    ) -> Field {
        let Read { step, node, graph, chain, report } = read;
        let doc_field = &m.first.node;
        let path_name: Arc<str> = Arc::from(format!("{type_name}.{}", def.name));
        self.check_literals(doc_field, def, &path_name);
        for (arg, value) in &doc_field.arguments {
            if let DocValue::Variable(v) = &value.node
                && def.args.iter().any(|a| a.name == arg.node.as_str() && !a.ty.nullable)
            {
                self.require(v, format!("argument {} of {path_name}", arg.node));
            }
        }
        // Asked under the client's key: the answer then holds the value under it.
        let key: Arc<str> = if m.key == &*def.name { def.name.clone() } else { Arc::from(m.key) };
        let mut args = String::new();
        let mut variables = Vec::new();
        for (i, (name, value)) in doc_field.arguments.iter().enumerate() {
            args.push(if i == 0 { '(' } else { ',' });
            args.push_str(&format!("{}:{}", name.node, value.node));
            variables_in(&value.node, &mut variables);
        }
        if !args.is_empty() {
            args.push(')');
        }
        let out_ty = out_type(self.schema, &def.ty);
        let object = matches!(out_ty.base, Base::Object);
        let doc = self.subdocs.get_mut(&step).expect("a subgraph step has its document");
        for v in variables {
            if !doc.variables.contains(&v) {
                doc.variables.push(v);
            }
        }
        let child = doc.add(node, &key, &def.name, args, object);
        let mut field = Field {
            key: Arc::from(m.key),
            key_json: KeyJson::new(m.key),
            name: key.clone(),
            path_name,
            pos: m.first.pos,
            source: chain.map_or(Source::Parent, |c| Source::Fetched { chain: c.into_boxed_slice(), report }),
            out: out_ty.clone(),
            children: Vec::new(),
            by_type: Vec::new(),
            count: Count::of(def, doc_field),
            conditional: m.conditional,
        };
        if object {
            let provided = match &def.binding {
                Binding::Subgraph(sf) => sf.owner(graph).map(|o| o.provides.clone()).unwrap_or_default(),
                _ => Vec::new(),
            };
            let at = At { step, node: child, graph, provided };
            let mut via = via.to_vec();
            via.push((key, out_ty.list_depth()));
            let child_type = named(&def.ty).to_owned();
            self.fields(&child_type, &m.sets, producer, &via, &[], Some(&at), &mut field.children);
        }
        field
    }
}

/// The variables a value uses.
fn variables_in(value: &DocValue, out: &mut Vec<String>) {
    match value {
        DocValue::Variable(v) => out.push(v.to_string()),
        DocValue::List(items) => items.iter().for_each(|i| variables_in(i, out)),
        DocValue::Object(fields) => fields.values().for_each(|v| variables_in(v, out)),
        _ => {}
    }
}

/// Puts the subgraph steps into calls: one per subgraph per wave (a mutation's, one per
/// step), entity steps of the same type and selection under one alias.
pub(super) fn calls(
    steps: &mut [Step],
    subdocs: HashMap<usize, SubDoc>,
    op: &OperationDefinition,
    serial: bool,
) -> Vec<SubgraphCall> {
    if subdocs.is_empty() {
        return Vec::new();
    }
    let mut wave = vec![0usize; steps.len()];
    for i in 0..steps.len() {
        wave[i] = steps[i].producer.map_or(0, |p| wave[p] + 1);
    }
    let data: Arc<str> = Arc::from("data");
    let errors: Arc<str> = Arc::from("errors");
    // (graph, wave) → call index
    let mut by_wave: Vec<((usize, usize), usize)> = Vec::new();
    // Per call: its subgraph, its members, per alias (type, selection text), its variables.
    type Built = (usize, Vec<usize>, Vec<(Arc<str>, String)>, Vec<String>);
    let mut built: Vec<Built> = Vec::new();
    for (id, step) in steps.iter_mut().enumerate() {
        let StepKind::Subgraph(s) = &mut step.kind else { continue };
        let doc = &subdocs[&id];
        let call = match by_wave.iter().find(|(k, _)| *k == (doc.graph, wave[id])) {
            Some((_, c)) if !serial => *c,
            _ => {
                built.push((doc.graph, Vec::new(), Vec::new(), Vec::new()));
                by_wave.push(((doc.graph, wave[id]), built.len() - 1));
                built.len() - 1
            }
        };
        let (_, members, aliases, variables) = &mut built[call];
        members.push(id);
        s.call = call;
        for v in &doc.variables {
            if !variables.contains(v) {
                variables.push(v.clone());
            }
        }
        if let Some(t) = &doc.typename {
            let mut text = String::new();
            doc.render(0, &mut text);
            s.alias = Some(match aliases.iter().position(|(at, sel)| at == t && *sel == text) {
                Some(a) => a,
                None => {
                    aliases.push((t.clone(), text));
                    aliases.len() - 1
                }
            });
        }
    }
    built
        .into_iter()
        .map(|(graph, members, aliases, variables)| {
            // A mutation's root fields write; what is fetched below them is read.
            let write = steps[members[0]].write;
            let mut text = String::from(if write { "mutation" } else { "query" });
            let mut defs: Vec<String> = (0..aliases.len()).map(|a| format!("$r{a}:[_Any!]!")).collect();
            for v in &variables {
                if let Some(d) = op.variable_definitions.iter().find(|d| d.node.name.node.as_str() == v) {
                    defs.push(format!("${v}:{}", d.node.var_type.node));
                }
            }
            if !defs.is_empty() {
                text.push('(');
                text.push_str(&defs.join(","));
                text.push(')');
            }
            let alias_names: Vec<Arc<str>> =
                (0..aliases.len()).map(|a| Arc::from(format!("_e{a}"))).collect();
            let mut data_keep = Keep::nothing();
            if aliases.is_empty() {
                // A root fetch (one per call).
                let doc = &subdocs[&members[0]];
                doc.render(0, &mut text);
                data_keep = doc.keep(0);
            } else {
                text.push('{');
                for (a, (t, sel)) in aliases.iter().enumerate() {
                    if a > 0 {
                        text.push(' ');
                    }
                    text.push_str(&format!("_e{a}:_entities(representations:$r{a}){{...on {t}{sel}}}"));
                    let keep = members
                        .iter()
                        .filter(|m| matches!(&steps[**m].kind, StepKind::Subgraph(s) if s.alias == Some(a)))
                        .fold(Keep::nothing(), |k, m| k.union(subdocs[m].keep(0)));
                    data_keep = data_keep.union(Keep::field(alias_names[a].clone(), keep));
                }
                text.push('}');
            }
            let mut head = b"{\"query\":".to_vec();
            head.extend_from_slice(&serde_json::to_vec(&text).expect("a string"));
            head.extend_from_slice(b",\"variables\":{");
            let keep = Keep::field(data.clone(), data_keep).union(Keep::field(errors.clone(), Keep::All));
            // `products: query`, `reviews: _entities(User, Product)`.
            let graph_name = &steps[members[0]].path_name;
            let graph_name = graph_name.rsplit('@').next().unwrap_or(graph_name);
            let name: Arc<str> = if aliases.is_empty() {
                Arc::from(format!("{graph_name}: {}", if write { "mutation" } else { "query" }))
            } else {
                let types: Vec<&str> = aliases.iter().map(|(t, _)| &**t).collect();
                Arc::from(format!("{graph_name}: _entities({})", types.join(", ")))
            };
            SubgraphCall {
                backend: graph,
                head: head.into(),
                variables: variables
                    .into_iter()
                    .map(|v| {
                        let key = [&serde_json::to_vec(&v).expect("a string")[..], b":"].concat().into();
                        (v, key)
                    })
                    .collect(),
                aliases: alias_names,
                members,
                keep: KeepRef(Arc::new(keep)),
                data: data.clone(),
                errors: errors.clone(),
                write,
                name,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::{Operation, Plan, Source, StepKind};

    fn supergraph() -> Arc<crate::graphql::model::FacadeSchema> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/federation");
        let text = std::fs::read_to_string(dir.join("supergraph.graphql")).unwrap();
        let file = crate::graphql::sdl::SchemaFile { name: "supergraph.graphql".into(), text };
        Arc::new(crate::graphql::sdl::analyze(&[file]).unwrap())
    }

    fn plan(text: &str) -> Arc<Plan> {
        let doc = Arc::new(async_graphql::parser::parse_query(text).unwrap());
        Operation::new(doc, None, supergraph()).unwrap().plan(&serde_json::Map::new()).unwrap()
    }

    /// Each call as `subgraph: document`, and the wave it runs in (steps from the root).
    fn calls(plan: &Plan) -> Vec<(usize, String, String)> {
        let schema = supergraph();
        let wave = |mut s: usize| {
            let mut n = 0;
            while let Some(p) = plan.steps[s].producer {
                s = p;
                n += 1;
            }
            n
        };
        plan.calls
            .iter()
            .map(|c| {
                let head: serde_json::Value = serde_json::from_slice(&[&c.head[..], b"}}"].concat()).unwrap();
                let doc = head["query"].as_str().unwrap().to_owned();
                (wave(c.members[0]), schema.backends[c.backend].name.clone(), doc)
            })
            .collect()
    }

    #[test]
    fn the_benchmark_query_costs_seven_calls_in_four_waves() {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/federation/query.graphql"),
        )
        .unwrap();
        let p = plan(&text);
        let calls = calls(&p);
        for c in &calls {
            eprintln!("{c:?}");
        }
        let mut shape: Vec<(usize, &str)> = calls.iter().map(|(w, g, _)| (*w, g.as_str())).collect();
        shape.sort();
        assert_eq!(
            shape,
            [
                (0, "accounts"),
                (0, "products"),
                (1, "inventory"),
                (1, "reviews"),
                (2, "accounts"),
                (2, "products"),
                (3, "inventory")
            ]
        );
        // The reviews call serves both roots' entities, one alias per type.
        let reviews = &calls.iter().find(|c| c.1 == "reviews").unwrap().2;
        assert!(reviews.contains("_e0:_entities") && reviews.contains("_e1:_entities"), "{reviews}");
        // `username` is provided by reviews: no accounts entity asks it.
        for (_, graph, doc) in &calls {
            if graph == "accounts" && doc.contains("_entities") {
                assert!(!doc.contains("username"), "{doc}");
            }
        }
        // shippingEstimate's inventory step reads price and weight from the products step.
        let last = calls.iter().find(|c| c.0 == 3).unwrap();
        assert!(last.2.contains("shippingEstimate") && last.2.contains("inStock"), "{last:?}");
    }

    #[test]
    fn fields_of_one_subgraph_stay_in_its_document_and_others_become_entity_steps() {
        let p = plan("{ topProducts(first: 2) { upc name inStock reviews { body } } }");
        let calls = calls(&p);
        assert_eq!(calls.len(), 3, "{calls:?}");
        assert_eq!(calls[0].2, "query{topProducts(first:2){upc name}}");
        let top = &p.root[0];
        assert!(matches!(top.source, Source::Fetched { ref chain, report: true } if chain.len() == 1));
        let [upc, name, in_stock, reviews] = &top.children[..] else { panic!("{:?}", top.children) };
        assert!(matches!(upc.source, Source::Parent) && matches!(name.source, Source::Parent));
        assert!(
            matches!(in_stock.source, Source::Fetched { report: true, .. })
                && matches!(reviews.source, Source::Fetched { report: true, .. })
        );
        assert!(p.steps.iter().all(|s| matches!(s.kind, StepKind::Subgraph(_))));
        // Of two fields read from one entity, the first writes the subgraph's errors for it.
        let p = plan("{ topProducts { inStock shippingEstimate } }");
        let [a, b] = &p.root[0].children[..] else { panic!() };
        assert!(matches!(a.source, Source::Fetched { report: true, .. }));
        assert!(matches!(b.source, Source::Fetched { report: false, .. }));
        // shippingEstimate @requires price and weight: its representation carries them.
        let inventory = p.steps.iter().find_map(|s| match &s.kind {
            StepKind::Subgraph(sub) if !sub.representation.is_empty() => Some(sub),
            _ => None,
        });
        let names: Vec<&str> = inventory.unwrap().representation.iter().map(|(k, _)| &**k).collect();
        assert_eq!(names, ["upc", "price", "weight"]);
    }
}
