//! The checked model of the facade schema: object types with their fields, each field bound
//! either to its parent's JSON or to a backend route. Built by `sdl.rs`; compiled against by
//! `plan.rs`; `validate.rs` builds async-graphql's dynamic schema (validation and
//! introspection only) from it. Values of this module are immutable once built.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_graphql::Value as GqlValue;
use async_graphql::parser::types::Type;

/// A place in a schema file, printed as `file:line:column`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc {
    pub file: Arc<str>,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// One problem found in the schema files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub loc: Loc,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.loc, self.message)
    }
}

/// Every problem found, in file order; displayed one per line.
#[derive(Debug, Clone, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// A backend declared with `@backend` on `extend schema`.
#[derive(Debug, Clone)]
pub struct BackendDecl {
    pub name: String,
    pub url: String,
    /// The numbers `@backend` sets (the schema owner's layer of the backend's policy).
    pub policy: crate::backends::policy::PolicyOverrides,
    /// A subgraph of a supergraph (a `join__Graph` value): called with GraphQL POSTs.
    pub subgraph: bool,
    pub loc: Loc,
}

/// The HTTP method of a route (owned by `backends/`, which makes the calls).
pub use crate::backends::Method;

/// A piece of a route template such as `/titles?ids={$keys}&size={$args.size}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Lit(String),
    Arg(String),
    Parent(Arc<str>),
    Keys,
}

#[derive(Debug, Clone)]
pub struct Template {
    pub method: Method,
    pub parts: Vec<Part>,
}

/// How a batched field finds its keys and matches the backend's answer back to them.
#[derive(Debug, Clone)]
pub struct BatchSpec {
    /// The parent field holding the key (or list of keys).
    pub keys_from: Arc<str>,
    /// Whether that parent field is a list; then the bound field is a list too.
    pub keys_are_list: bool,
    /// The field of each returned item that holds its key; without it the backend answers a
    /// JSON object keyed by key.
    pub match_field: Option<Arc<str>>,
}

/// A field fetched from a backend with `@http`.
#[derive(Debug, Clone)]
pub struct HttpBinding {
    pub backend: usize,
    pub template: Template,
    pub batch: Option<BatchSpec>,
    /// Reads this key of the fetched JSON instead of the whole body.
    pub select: Option<Arc<str>>,
    /// An `Int` argument capping how many keys are fetched (such as `first`).
    pub limit_arg: Option<String>,
}

/// A field of a supergraph type: the subgraphs that resolve it (`@join__field`, or every
/// subgraph of its type when it has none), each with what it needs and provides.
#[derive(Debug, Clone)]
pub struct SubgraphField {
    pub owners: Vec<Owner>,
}

/// One subgraph that resolves a field.
#[derive(Debug, Clone)]
pub struct Owner {
    /// The subgraph's backend index.
    pub graph: usize,
    /// Fields of the parent this subgraph needs sent with the entity (`requires:`).
    pub requires: Vec<Arc<str>>,
    /// Fields of the value's type this subgraph resolves at this field (`provides:`).
    pub provides: Vec<Arc<str>>,
}

impl SubgraphField {
    pub fn owner(&self, graph: usize) -> Option<&Owner> {
        self.owners.iter().find(|o| o.graph == graph)
    }
}

/// An entity's key in one subgraph (`@join__type(graph:, key:)`).
#[derive(Debug, Clone)]
pub struct EntityKey {
    pub graph: usize,
    pub fields: Vec<Arc<str>>,
    /// Whether the subgraph answers `_entities` for this type.
    pub resolvable: bool,
}

#[derive(Debug, Clone)]
pub enum Binding {
    /// Reads the same-named key of the parent JSON object.
    Parent,
    /// Resolved by subgraphs of a supergraph.
    Subgraph(Arc<SubgraphField>),
    Http(Arc<HttpBinding>),
    /// Computed by a function exported from `resolvers-js/*.js`, called as `f(parent, args)`.
    Js {
        function: Arc<str>,
    },
}

#[derive(Debug, Clone)]
pub struct ArgDef {
    pub name: String,
    pub description: Option<String>,
    pub ty: Type,
    pub default: Option<GqlValue>,
}

#[derive(Debug, Clone)]
pub struct FieldDef {
    /// Interned: one text per spelling across the schema (see the plan's kept names).
    pub name: Arc<str>,
    pub description: Option<String>,
    pub args: Vec<ArgDef>,
    pub ty: Type,
    pub binding: Binding,
    /// `@fallback(value: …)`: served instead of an error when the field's fetch fails.
    pub fallback: Option<serde_json::Value>,
    pub deprecation: Option<Option<String>>,
    pub loc: Loc,
}

/// How the concrete type of an interface or union value is read from backend JSON: the
/// value of `field` names the object type (`@discriminator(field: "kind")`).
#[derive(Debug, Clone)]
pub struct Discriminator {
    pub field: Arc<str>,
}

#[derive(Debug, Clone)]
pub enum TypeDef {
    Object {
        description: Option<String>,
        fields: Vec<FieldDef>,
        implements: Vec<String>,
    },
    /// Fields every implementing object type has; bindings live on the objects' fields.
    Interface {
        description: Option<String>,
        fields: Vec<FieldDef>,
        discriminator: Discriminator,
    },
    Union {
        description: Option<String>,
        members: Vec<String>,
        discriminator: Discriminator,
    },
    Enum {
        description: Option<String>,
        values: Vec<String>,
    },
    Scalar {
        description: Option<String>,
    },
    Input {
        description: Option<String>,
        fields: Vec<ArgDef>,
    },
}

/// The whole checked facade schema.
#[derive(Debug, Clone)]
pub struct FacadeSchema {
    pub backends: Vec<BackendDecl>,
    pub types: BTreeMap<String, TypeDef>,
    pub query: String,
    pub mutation: Option<String>,
    /// A supergraph's entity keys, by type name (empty for a REST-bound schema).
    pub entity_keys: BTreeMap<String, Vec<EntityKey>>,
}

impl FacadeSchema {
    /// The key `graph` resolves `type_name`'s entities by.
    pub fn entity_key(&self, type_name: &str, graph: usize) -> Option<&EntityKey> {
        self.entity_keys.get(type_name)?.iter().find(|k| k.graph == graph && k.resolvable)
    }

    pub fn backend_index(&self, name: &str) -> Option<usize> {
        self.backends.iter().position(|b| b.name == name)
    }

    /// The object types a value of `name` can be: itself for an object type, the
    /// implementing types of an interface, the members of a union (in name order).
    pub fn possible_types(&self, name: &str) -> Vec<&str> {
        match self.types.get_key_value(name) {
            Some((own, TypeDef::Object { .. })) => vec![own.as_str()],
            Some((_, TypeDef::Interface { .. })) => self
                .types
                .iter()
                .filter(|(_, t)| matches!(t, TypeDef::Object { implements, .. } if implements.iter().any(|i| i == name)))
                .map(|(n, _)| n.as_str())
                .collect(),
            Some((_, TypeDef::Union { members, .. })) => members.iter().map(String::as_str).collect(),
            _ => Vec::new(),
        }
    }

    /// A field selected on `type_name`: the object's own, an interface's, or, on an
    /// abstract type, the first possible type's that has it (a fragment's field).
    pub fn field_of(&self, type_name: &str, field: &str) -> Option<&FieldDef> {
        match self.types.get(type_name)? {
            TypeDef::Object { fields, .. } => fields.iter().find(|f| *f.name == *field),
            TypeDef::Interface { fields, .. } => fields
                .iter()
                .find(|f| *f.name == *field)
                .or_else(|| self.possible_types(type_name).into_iter().find_map(|t| self.field_of(t, field))),
            TypeDef::Union { members, .. } => members.iter().find_map(|t| self.field_of(t, field)),
            _ => None,
        }
    }

    /// Whether a fragment on `condition` applies to an object of type `concrete`.
    pub fn applies(&self, condition: &str, concrete: &str) -> bool {
        condition == concrete
            || match self.types.get(condition) {
                Some(TypeDef::Interface { .. }) => matches!(
                    self.types.get(concrete),
                    Some(TypeDef::Object { implements, .. }) if implements.iter().any(|i| i == condition)
                ),
                Some(TypeDef::Union { members, .. }) => members.iter().any(|m| m == concrete),
                _ => false,
            }
    }
}

/// The named type under any list and non-null wrappers.
pub fn named_type(ty: &Type) -> &str {
    let mut ty = ty;
    loop {
        match &ty.base {
            async_graphql::parser::types::BaseType::Named(n) => return n.as_str(),
            async_graphql::parser::types::BaseType::List(inner) => ty = inner,
        }
    }
}

/// The scalars every GraphQL schema has.
pub const BUILTIN_SCALARS: [&str; 5] = ["String", "Int", "Float", "Boolean", "ID"];
