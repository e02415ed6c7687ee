//! Reading a supergraph (Apollo Federation 2, `@link` join v0.3) as it is: each `join__Graph`
//! value becomes a backend called with GraphQL POSTs, `@join__type(graph:, key:)` gives each
//! entity's keys per subgraph, and `@join__field(graph:, requires:, provides:, external:)`
//! the subgraphs that resolve each field. The `join__*` and `link__*` definitions are left
//! out of the API schema. What the planner cannot do yet (`@override`, interface objects,
//! keys or field sets with nested selections, interfaces and unions) is refused here, each at
//! its `file:line:column`.

use std::sync::Arc;

use async_graphql::Value as GqlValue;
use async_graphql::parser::types::{ConstDirective, TypeDefinition, TypeKind};
use async_graphql::parser::{Pos, Positioned};

use super::{Analyzer, string_arg};
use crate::graphql::model::{BackendDecl, EntityKey, Owner, SubgraphField};

/// The join spec versions read.
const JOIN: &str = "https://specs.apollo.dev/join/v0.";

/// A supergraph being read: where it was declared, and its subgraphs by `join__Graph` value.
pub(super) struct Join {
    pub file: Arc<str>,
    /// `join__Graph` value → backend index.
    pub graphs: Vec<(String, usize)>,
}

/// One `@join__field` of a field.
struct JoinField {
    graph: Option<usize>,
    requires: Vec<Arc<str>>,
    provides: Vec<Arc<str>>,
    external: bool,
}

/// Whether a type definition is the join or link spec's own (kept out of the API schema).
pub(super) fn is_spec_type(name: &str) -> bool {
    name.starts_with("join__") || name.starts_with("link__")
}

/// The names of a field set such as `"price weight"`: only plain field names for now.
fn field_set(text: &str) -> Result<Vec<&str>, String> {
    let names: Vec<&str> = text.split_whitespace().collect();
    if names.is_empty() {
        return Err("an empty field set".to_owned());
    }
    match names.iter().find(|n| !super::is_name(n)) {
        Some(bad) => Err(format!(
            "field set {text:?}: {bad:?} is not a field name (nested selections in keys, requires and \
             provides are not supported yet)"
        )),
        None => Ok(names),
    }
}

impl Analyzer<'_> {
    /// `@link(url:)` on the schema: the join spec makes this file a supergraph; the link spec
    /// itself is read; any other spec is refused when it is for execution or security.
    pub(super) fn link(&mut self, file: &Arc<str>, d: &Positioned<ConstDirective>) {
        let url = match string_arg(&d.node, "url").map(|(_, v)| &v.node) {
            Some(GqlValue::String(url)) => url.clone(),
            _ => return self.error(file, d.pos, "@link needs url: \"…\""),
        };
        if let Some(version) = url.strip_prefix(JOIN) {
            if !matches!(version, "2" | "3") {
                let msg = format!("@link {url}: join v0.{version} is not supported (v0.2 and v0.3 are)");
                return self.error(file, d.pos, msg);
            }
            if let Some(first) = &self.join {
                let msg = format!("a second supergraph; the first is {}", first.file);
                return self.error(file, d.pos, msg);
            }
            self.join = Some(Join { file: file.clone(), graphs: Vec::new() });
            return;
        }
        // `@inaccessible` and `@tag` are read where they appear (refused, for now, if used).
        if ["link/v1.", "inaccessible/v0.", "tag/v0."]
            .iter()
            .any(|spec| url.starts_with(&format!("https://specs.apollo.dev/{spec}")))
        {
            return;
        }
        let purpose = d.node.arguments.iter().find(|(n, _)| n.node == "for").map(|(_, v)| v.node.to_string());
        if matches!(purpose.as_deref(), Some("EXECUTION" | "SECURITY")) {
            self.error(file, d.pos, format!("@link {url}: this spec is not supported"));
        }
    }

    /// `enum join__Graph { NAME @join__graph(name:, url:) … }`: one backend per value.
    pub(super) fn graphs(&mut self, file: &Arc<str>, def: &Positioned<TypeDefinition>) {
        let TypeKind::Enum(e) = &def.node.kind else {
            return self.error(file, def.pos, "join__Graph must be an enum");
        };
        for value in &e.values {
            let Some(d) = value.node.directives.iter().find(|d| d.node.name.node == "join__graph") else {
                let msg = format!("join__Graph.{} has no @join__graph(name:, url:)", value.node.value.node);
                self.error(file, value.pos, msg);
                continue;
            };
            let text = |arg: &str| match string_arg(&d.node, arg).map(|(_, v)| &v.node) {
                Some(GqlValue::String(s)) => Some(s.clone()),
                _ => None,
            };
            let (Some(name), Some(url)) = (text("name"), text("url")) else {
                self.error(file, d.pos, "@join__graph needs name and url strings");
                continue;
            };
            if let Some(prev) = self.backends.iter().find(|b| b.name == name) {
                let msg = format!("subgraph {name:?}: a backend of that name is declared at {}", prev.loc);
                self.error(file, d.pos, msg);
                continue;
            }
            if let Err(reason) = super::check_url(&url) {
                self.error(file, d.pos, format!("subgraph {name:?}: {reason}"));
            }
            let index = self.backends.len();
            self.backends.push(BackendDecl {
                name,
                url,
                policy: Default::default(),
                subgraph: true,
                loc: super::loc(file, d.pos),
            });
            if let Some(join) = &mut self.join {
                join.graphs.push((value.node.value.node.to_string(), index));
            }
        }
    }

    /// The backend a `graph:` argument names.
    fn graph_arg(&mut self, file: &Arc<str>, d: &Positioned<ConstDirective>) -> Option<usize> {
        let value = d.node.arguments.iter().find(|(n, _)| n.node == "graph").map(|(_, v)| v)?;
        let GqlValue::Enum(name) = &value.node else {
            self.error(file, value.pos, "graph: must be a join__Graph value");
            return None;
        };
        let found = self.join.as_ref()?.graphs.iter().find(|(g, _)| g == name.as_str()).map(|(_, i)| *i);
        if found.is_none() {
            self.error(file, value.pos, format!("graph: {name} is not a join__Graph value"));
        }
        found
    }

    /// A field set argument's names, interned; a problem reported at the argument.
    fn field_set_arg(&mut self, file: &Arc<str>, d: &ConstDirective, arg: &str) -> Vec<Arc<str>> {
        let Some((_, value)) = string_arg(d, arg) else { return Vec::new() };
        let GqlValue::String(text) = &value.node else {
            self.error(file, value.pos, format!("{arg}: must be a string"));
            return Vec::new();
        };
        match field_set(text) {
            Ok(names) => names.into_iter().map(|n| self.intern(n)).collect(),
            Err(why) => {
                self.error(file, value.pos, why);
                Vec::new()
            }
        }
    }

    fn flag(d: &ConstDirective, arg: &str) -> bool {
        matches!(string_arg(d, arg).map(|(_, v)| &v.node), Some(GqlValue::Boolean(true)))
    }

    /// A type's `@join__type`s: the subgraphs that have it and its keys in each.
    pub(super) fn join_type(
        &mut self,
        file: &Arc<str>,
        name: &str,
        directives: &[Positioned<ConstDirective>],
    ) -> Vec<usize> {
        let mut graphs = Vec::new();
        let mut keys = Vec::new();
        for d in directives.iter().filter(|d| d.node.name.node == "join__type") {
            if Self::flag(&d.node, "isInterfaceObject") {
                self.error(file, d.pos, format!("{name}: interface objects are not supported yet"));
                continue;
            }
            let Some(graph) = self.graph_arg(file, d) else { continue };
            if !graphs.contains(&graph) {
                graphs.push(graph);
            }
            if string_arg(&d.node, "key").is_some() {
                let fields = self.field_set_arg(file, &d.node, "key");
                let resolvable = !matches!(
                    string_arg(&d.node, "resolvable").map(|(_, v)| &v.node),
                    Some(GqlValue::Boolean(false))
                );
                if !fields.is_empty() {
                    keys.push(EntityKey { graph, fields, resolvable });
                }
            }
        }
        for d in directives.iter().filter(|d| !d.node.name.node.starts_with("join__")) {
            let msg = format!("{name}: unknown directive @{} in a supergraph", d.node.name.node);
            self.error(file, d.pos, msg);
        }
        if !keys.is_empty() {
            self.entity_keys.insert(name.to_owned(), keys);
        }
        graphs
    }

    /// Reads a `@join__field` of `path`.
    pub(super) fn join_field(&mut self, file: &Arc<str>, path: &str, d: &Positioned<ConstDirective>) {
        if string_arg(&d.node, "override").is_some() {
            return self.error(file, d.pos, format!("{path}: @override is not supported yet"));
        }
        let graph = if d.node.arguments.iter().any(|(n, _)| n.node == "graph") {
            match self.graph_arg(file, d) {
                Some(g) => Some(g),
                None => return,
            }
        } else {
            None
        };
        let field = JoinField {
            graph,
            requires: self.field_set_arg(file, &d.node, "requires"),
            provides: self.field_set_arg(file, &d.node, "provides"),
            external: Self::flag(&d.node, "external"),
        };
        self.join_fields.push(field_owner(field));
    }

    /// The subgraphs resolving a field of a type the subgraphs `graphs` have, from the
    /// `@join__field`s read for it (taken).
    pub(super) fn owners(
        &mut self,
        file: &Arc<str>,
        path: &str,
        pos: Pos,
        graphs: &[usize],
    ) -> SubgraphField {
        let read = std::mem::take(&mut self.join_fields);
        let owners: Vec<Owner> = if read.is_empty() {
            graphs.iter().map(|&graph| Owner { graph, requires: Vec::new(), provides: Vec::new() }).collect()
        } else {
            let mut owners = Vec::new();
            for (graph, owner) in read {
                match (graph, owner) {
                    (Some(g), Some(o)) => owners.push(Owner { graph: g, ..o }),
                    (None, Some(o)) => owners.extend(graphs.iter().map(|&g| Owner { graph: g, ..o.clone() })),
                    (_, None) => {}
                }
            }
            owners
        };
        if owners.is_empty() {
            self.error(
                file,
                pos,
                format!("{path}: no subgraph resolves it (every @join__field is external)"),
            );
        }
        SubgraphField { owners }
    }
}

/// The hand-written spelling (a facade schema of its own, no supergraph): a backend declared
/// `@backend(…, protocol: "graphql")` is a subgraph; `@entity(backend:, key:)` on an object
/// type gives its key there; `@graphql(backend:, requires:, provides:)` on a field says that
/// subgraph resolves it (fields without a directive are read from their parent's answer).
impl Analyzer<'_> {
    /// A subgraph backend named by a `backend:` argument.
    fn subgraph_arg(&mut self, file: &Arc<str>, what: &str, d: &Positioned<ConstDirective>) -> Option<usize> {
        let Some((_, value)) = string_arg(&d.node, "backend") else {
            self.error(file, d.pos, format!("{what} needs backend: \"NAME\""));
            return None;
        };
        let GqlValue::String(name) = &value.node else {
            self.error(file, value.pos, format!("{what}: backend must be a string"));
            return None;
        };
        match self.backends.iter().position(|b| b.name == *name) {
            Some(i) if self.backends[i].subgraph => Some(i),
            Some(_) => {
                let msg = format!(
                    "{what}: backend {name:?} is not a subgraph (declare it with protocol: \"graphql\")"
                );
                self.error(file, value.pos, msg);
                None
            }
            None => {
                self.error(file, value.pos, format!("{what}: no backend {name:?} is declared"));
                None
            }
        }
    }

    /// `@entity(backend:, key:)`s of an object type.
    pub(super) fn entities(
        &mut self,
        file: &Arc<str>,
        name: &str,
        directives: &[Positioned<ConstDirective>],
    ) {
        let mut keys = Vec::new();
        for d in directives.iter().filter(|d| d.node.name.node == "entity") {
            let what = format!("{name} @entity");
            let Some(graph) = self.subgraph_arg(file, &what, d) else { continue };
            if string_arg(&d.node, "key").is_none() {
                self.error(file, d.pos, format!("{what} needs key: \"FIELD …\""));
                continue;
            }
            let fields = self.field_set_arg(file, &d.node, "key");
            if !fields.is_empty() {
                keys.push(EntityKey { graph, fields, resolvable: true });
            }
        }
        if !keys.is_empty() {
            self.entity_keys.insert(name.to_owned(), keys);
        }
    }

    /// `@graphql(backend:, requires:, provides:)` of a field: one more subgraph resolving it.
    /// Below the root, the type must be an entity of that subgraph.
    pub(super) fn graphql_field(
        &mut self,
        file: &Arc<str>,
        owner: &str,
        path: &str,
        is_root: bool,
        d: &Positioned<ConstDirective>,
    ) {
        let Some(graph) = self.subgraph_arg(file, &format!("{path} @graphql"), d) else { return };
        let raw_entity = self.raw.get(owner).is_some_and(|r| {
            r.directives.iter().any(|e| {
                e.node.name.node == "entity"
                    && matches!(string_arg(&e.node, "backend").map(|(_, v)| &v.node), Some(GqlValue::String(b)) if *b == self.backends[graph].name)
            })
        });
        if !is_root && !raw_entity {
            let backend = &self.backends[graph].name;
            let msg = format!(
                "{path}: {owner} has no @entity(backend: {backend:?}, key: …): the subgraph cannot be asked for it"
            );
            self.error(file, d.pos, msg);
            return;
        }
        let owner = Owner {
            graph,
            requires: self.field_set_arg(file, &d.node, "requires"),
            provides: self.field_set_arg(file, &d.node, "provides"),
        };
        self.join_fields.push((Some(graph), Some(owner)));
    }
}

/// A `@join__field` as (its graph, the owner it makes: `None` when external there).
fn field_owner(f: JoinField) -> (Option<usize>, Option<Owner>) {
    let owner = (!f.external).then_some(Owner { graph: 0, requires: f.requires, provides: f.provides });
    (f.graph, owner)
}

#[cfg(test)]
mod tests {
    use crate::graphql::model::{Binding, TypeDef};
    use crate::graphql::sdl::{SchemaFile, analyze};

    const HEAD: &str = "schema\n  @link(url: \"https://specs.apollo.dev/link/v1.0\")\n  @link(url: \"https://specs.apollo.dev/join/v0.3\", for: EXECUTION)\n{\n  query: Query\n}\nenum join__Graph {\n  A @join__graph(name: \"a\", url: \"http://127.0.0.1:1/a\")\n  B @join__graph(name: \"b\", url: \"http://127.0.0.1:1/b\")\n}\nscalar join__FieldSet\n";

    fn check(body: &str) -> Result<crate::graphql::model::FacadeSchema, Vec<String>> {
        let file = SchemaFile { name: "super.graphql".into(), text: format!("{HEAD}{body}") };
        analyze(&[file]).map_err(|d| d.0.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn reads_subgraphs_keys_owners_and_leaves_the_specs_types_out() {
        let schema = check(
            "type Query @join__type(graph: A) {\n  t: T @join__field(graph: A)\n}\n\
             type T @join__type(graph: A, key: \"id\") @join__type(graph: B, key: \"id\") {\n  id: ID!\n  \
             x: Int @join__field(graph: B, requires: \"y\")\n  y: Int @join__field(graph: A) @join__field(graph: B, external: true)\n}\n",
        )
        .unwrap();
        let names: Vec<&str> = schema.backends.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(schema.backends.iter().all(|b| b.subgraph));
        assert!(!schema.types.keys().any(|t| t.starts_with("join__")), "{:?}", schema.types.keys());
        assert_eq!(
            schema.entity_key("T", 1).unwrap().fields.iter().map(|f| &**f).collect::<Vec<_>>(),
            ["id"]
        );
        let Some(TypeDef::Object { fields, .. }) = schema.types.get("T") else { panic!() };
        let owners = |name: &str| match &fields.iter().find(|f| &*f.name == name).unwrap().binding {
            Binding::Subgraph(sf) => {
                sf.owners.iter().map(|o| (o.graph, o.requires.len())).collect::<Vec<_>>()
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(owners("id"), [(0, 0), (1, 0)], "no @join__field: every subgraph of the type");
        assert_eq!(owners("x"), [(1, 1)]);
        assert_eq!(owners("y"), [(0, 0)], "external in B");
    }

    #[test]
    fn what_the_planner_cannot_do_yet_is_refused_at_its_place() {
        let errors = check(
            "type Query @join__type(graph: A) {\n  t: T @join__field(graph: A)\n}\n\
             type T @join__type(graph: A, key: \"id { a }\") {\n  id: ID!\n  \
             x: Int @join__field(graph: B, override: \"a\")\n  z: Int @join__field(graph: C)\n}\n\
             interface I @join__type(graph: A) {\n  id: ID!\n}\n",
        )
        .unwrap_err();
        let has = |text: &str| errors.iter().any(|e| e.contains(text));
        assert!(has("super.graphql:15:35: field set \"id { a }\""), "{errors:?}");
        assert!(has("super.graphql:17:10: T.x: @override is not supported yet"), "{errors:?}");
        assert!(has("super.graphql:18:30: graph: C is not a join__Graph value"), "{errors:?}");
        assert!(
            has("super.graphql:20:1: I: interfaces and unions in a supergraph are not supported yet"),
            "{errors:?}"
        );
    }
}
