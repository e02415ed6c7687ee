//! The checked model of the facade schema: object types with their fields, each field bound
//! either to its parent's JSON or to a backend route. Built by `sdl.rs`, turned into an
//! executable schema by `build.rs`. Values of this module are immutable once built.

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
    pub loc: Loc,
}

/// The HTTP method of a route (owned by `backends/`, which makes the calls).
pub use crate::backends::Method;

/// A piece of a route template such as `/titles?ids={$keys}&size={$args.size}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Lit(String),
    Arg(String),
    Parent(String),
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
    pub keys_from: String,
    /// Whether that parent field is a list; then the bound field is a list too.
    pub keys_are_list: bool,
    /// The field of each returned item that holds its key; without it the backend answers a
    /// JSON object keyed by key.
    pub match_field: Option<String>,
}

/// A field fetched from a backend with `@http`.
#[derive(Debug, Clone)]
pub struct HttpBinding {
    pub backend: usize,
    pub template: Template,
    pub batch: Option<BatchSpec>,
    /// Reads this key of the fetched JSON instead of the whole body.
    pub select: Option<String>,
    /// An `Int` argument capping how many keys are fetched (such as `first`).
    pub limit_arg: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Binding {
    /// Reads the same-named key of the parent JSON object.
    Parent,
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
    pub name: String,
    pub description: Option<String>,
    pub args: Vec<ArgDef>,
    pub ty: Type,
    pub binding: Binding,
    /// `@fallback(value: …)`: served instead of an error when the field's fetch fails.
    pub fallback: Option<serde_json::Value>,
    pub deprecation: Option<Option<String>>,
    pub loc: Loc,
}

#[derive(Debug, Clone)]
pub enum TypeDef {
    Object { description: Option<String>, fields: Vec<FieldDef> },
    Enum { description: Option<String>, values: Vec<String> },
    Scalar { description: Option<String> },
    Input { description: Option<String>, fields: Vec<ArgDef> },
}

/// The whole checked facade schema.
#[derive(Debug, Clone)]
pub struct FacadeSchema {
    pub backends: Vec<BackendDecl>,
    pub types: BTreeMap<String, TypeDef>,
    pub query: String,
    pub mutation: Option<String>,
}

impl FacadeSchema {
    pub fn backend_index(&self, name: &str) -> Option<usize> {
        self.backends.iter().position(|b| b.name == name)
    }
}

/// The scalars every GraphQL schema has.
pub const BUILTIN_SCALARS: [&str; 5] = ["String", "Int", "Float", "Boolean", "ID"];
