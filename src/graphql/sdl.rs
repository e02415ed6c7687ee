//! Reads `schema/*.graphql`, checks it, and produces the [`FacadeSchema`] model. Every
//! problem is collected with its `file:line:column` before giving up, so a schema owner
//! sees all of them at once.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_graphql::Value as GqlValue;
use async_graphql::parser::parse_schema;
use async_graphql::parser::types::{
    BaseType, ConstDirective, FieldDefinition, InputValueDefinition, ServiceDocument, Type, TypeKind,
    TypeSystemDefinition,
};
use async_graphql::parser::{Pos, Positioned};

use super::model::*;

mod supergraph;

/// One SDL file: the name it is reported under and its text.
#[derive(Debug, Clone)]
pub struct SchemaFile {
    pub name: String,
    pub text: String,
}

impl SchemaFile {
    /// The file's name without its folder: how the registry stores it.
    pub fn base_name(&self) -> &str {
        self.name.rsplit(['/', '\\']).next().unwrap_or(&self.name)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read schema folder {dir}: {source}")]
    ReadDir { dir: PathBuf, source: std::io::Error },
    #[error("cannot read schema file {file}: {source}")]
    ReadFile { file: PathBuf, source: std::io::Error },
    #[error("schema folder {0} has no *.graphql files")]
    Empty(PathBuf),
}

/// Reads every `*.graphql` file of `dir`, sorted by name.
pub fn load_dir(dir: &Path) -> Result<Vec<SchemaFile>, LoadError> {
    let entries =
        std::fs::read_dir(dir).map_err(|source| LoadError::ReadDir { dir: dir.to_owned(), source })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "graphql") && p.is_file())
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(LoadError::Empty(dir.to_owned()));
    }
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path)
                .map_err(|source| LoadError::ReadFile { file: path.clone(), source })?;
            Ok(SchemaFile { name: path.display().to_string(), text })
        })
        .collect()
}

/// Parses and checks the files; returns the model or every problem found.
pub fn analyze(files: &[SchemaFile]) -> Result<FacadeSchema, Diagnostics> {
    let mut cx = Analyzer::default();
    let mut docs = Vec::new();
    for file in files {
        let name: Arc<str> = Arc::from(file.name.as_str());
        match parse_schema(&file.text) {
            Ok(doc) => docs.push((name, doc)),
            Err(e) => {
                let pos = e.positions().next().unwrap_or(Pos { line: 1, column: 1 });
                let message = e.to_string().replace('\n', " ").trim().to_owned();
                cx.error(&name, pos, format!("syntax error: {message}"));
            }
        }
    }
    cx.collect(&docs);
    let schema = cx.convert();
    if cx.diagnostics.is_empty() { Ok(schema) } else { Err(Diagnostics(cx.diagnostics)) }
}

/// A type definition as written, kept with its file for positions.
struct RawType<'a> {
    file: Arc<str>,
    pos: Pos,
    description: Option<String>,
    kind: &'a TypeKind,
    directives: &'a [Positioned<ConstDirective>],
    /// Fields added by `extend type`, with their files.
    extra_fields: Vec<(Arc<str>, &'a Positioned<FieldDefinition>)>,
}

#[derive(Default)]
struct Analyzer<'a> {
    diagnostics: Vec<Diagnostic>,
    backends: Vec<BackendDecl>,
    raw: BTreeMap<String, RawType<'a>>,
    query: Option<String>,
    mutation: Option<String>,
    /// Every name an answer is read by (field names, keys, match fields, selects,
    /// discriminators), one shared text per spelling: the plan's kept names and its lookups
    /// then hold the same text, and finding a field in an answer compares addresses.
    names: std::collections::HashMap<String, Arc<str>>,
    /// A supergraph's subgraphs, when a file links the join spec (`supergraph.rs`).
    join: Option<supergraph::Join>,
    /// The `@join__field`s of the field being read: (graph, owner; `None` where external).
    join_fields: Vec<(Option<usize>, Option<Owner>)>,
    entity_keys: BTreeMap<String, Vec<EntityKey>>,
}

impl Analyzer<'_> {
    fn intern(&mut self, name: &str) -> Arc<str> {
        if let Some(shared) = self.names.get(name) {
            return shared.clone();
        }
        let shared: Arc<str> = Arc::from(name);
        self.names.insert(name.to_owned(), shared.clone());
        shared
    }
}

fn loc(file: &Arc<str>, pos: Pos) -> Loc {
    Loc { file: file.clone(), line: pos.line, column: pos.column }
}

use super::model::named_type as named;

fn is_list(ty: &Type) -> bool {
    matches!(ty.base, BaseType::List(_))
}

fn string_arg<'d>(
    directive: &'d ConstDirective,
    name: &str,
) -> Option<(&'d Positioned<async_graphql::Name>, &'d Positioned<GqlValue>)> {
    directive.arguments.iter().find(|(n, _)| n.node == name).map(|(n, v)| (n, v))
}

impl<'a> Analyzer<'a> {
    fn error(&mut self, file: &Arc<str>, pos: Pos, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic { loc: loc(file, pos), message: message.into() });
    }

    fn collect(&mut self, docs: &'a [(Arc<str>, ServiceDocument)]) {
        let mut extensions = Vec::new();
        let mut graphs = Vec::new();
        for (file, doc) in docs {
            for def in &doc.definitions {
                match def {
                    TypeSystemDefinition::Schema(s) => {
                        for d in &s.node.directives {
                            if d.node.name.node == "link" {
                                self.link(file, d);
                            } else {
                                self.schema_directive(file, d);
                            }
                        }
                        if let Some(q) = &s.node.query {
                            self.query = Some(q.node.to_string());
                        }
                        if let Some(m) = &s.node.mutation {
                            self.mutation = Some(m.node.to_string());
                        }
                        if let Some(sub) = &s.node.subscription {
                            self.error(file, sub.pos, "subscriptions are not supported");
                        }
                    }
                    TypeSystemDefinition::Type(t) if supergraph::is_spec_type(&t.node.name.node) => {
                        if t.node.name.node == "join__Graph" {
                            graphs.push((file, t));
                        }
                    }
                    TypeSystemDefinition::Type(t) if t.node.extend => extensions.push((file, t)),
                    TypeSystemDefinition::Type(t) => {
                        let name = t.node.name.node.to_string();
                        if let Some(prev) = self.raw.get(&name) {
                            let msg =
                                format!("type {name} is already defined at {}", loc(&prev.file, prev.pos));
                            self.error(file, t.node.name.pos, msg);
                            continue;
                        }
                        self.raw.insert(
                            name,
                            RawType {
                                file: file.clone(),
                                pos: t.pos,
                                description: t.node.description.as_ref().map(|d| d.node.clone()),
                                kind: &t.node.kind,
                                directives: &t.node.directives,
                                extra_fields: Vec::new(),
                            },
                        );
                    }
                    TypeSystemDefinition::Directive(_) => {}
                }
            }
        }
        for (file, t) in graphs {
            if self.join.as_ref().is_some_and(|j| j.file == *file) {
                self.graphs(file, t);
            } else {
                self.error(
                    file,
                    t.pos,
                    "join__Graph outside a supergraph (no @link to the join spec in this file)",
                );
            }
        }
        for (file, t) in extensions {
            let name = t.node.name.node.as_str();
            match (self.raw.get_mut(name), &t.node.kind) {
                (Some(raw), TypeKind::Object(obj)) if matches!(raw.kind, TypeKind::Object(_)) => {
                    raw.extra_fields.extend(obj.fields.iter().map(|f| (file.clone(), f)));
                }
                (Some(_), _) => {
                    self.error(file, t.pos, format!("extend type {name}: only object types can be extended"))
                }
                (None, _) => {
                    self.error(file, t.pos, format!("extend type {name}: no type {name} is defined"))
                }
            }
        }
    }

    fn schema_directive(&mut self, file: &Arc<str>, d: &Positioned<ConstDirective>) {
        if d.node.name.node != "backend" {
            let msg = format!("unknown schema directive @{} (known: @backend, @link)", d.node.name.node);
            self.error(file, d.pos, msg);
            return;
        }
        const NUMBERS: [&str; 7] = [
            "timeoutMs",
            "maxBatchSize",
            "maxConcurrent",
            "ratePerSec",
            "burst",
            "maxRetries",
            "maxBodyBytes",
        ];
        let mut name = None;
        let mut url = None;
        let mut numbers: HashMap<&'static str, u64> = HashMap::new();
        let mut share_in_flight = None;
        let mut subgraph = false;
        for (arg, value) in &d.node.arguments {
            let number = NUMBERS.iter().find(|k| **k == arg.node.as_str()).copied();
            match (arg.node.as_str(), &value.node, number) {
                ("name", GqlValue::String(s), _) => name = Some(s.clone()),
                ("url", GqlValue::String(s), _) => url = Some(s.clone()),
                ("name" | "url", _, _) => {
                    self.error(file, value.pos, format!("@backend argument {} must be a string", arg.node))
                }
                ("shareInFlight", GqlValue::Boolean(b), _) => share_in_flight = Some(*b),
                ("protocol", GqlValue::String(p), _) if p == "graphql" || p == "rest" => {
                    subgraph = p == "graphql"
                }
                ("protocol", _, _) => {
                    self.error(file, value.pos, "@backend argument protocol must be \"rest\" or \"graphql\"")
                }
                ("shareInFlight", _, _) => {
                    self.error(file, value.pos, "@backend argument shareInFlight must be true or false")
                }
                // maxRetries may be 0; every other number must be positive.
                (_, GqlValue::Number(n), Some(key))
                    if n.as_u64().is_some_and(|n| n > 0 || key == "maxRetries") =>
                {
                    numbers.insert(key, n.as_u64().unwrap_or(0));
                }
                (_, _, Some(_)) => self.error(
                    file,
                    value.pos,
                    format!("@backend argument {} must be a positive integer", arg.node),
                ),
                (other, _, None) => self.error(
                    file,
                    arg.pos,
                    format!(
                        "unknown @backend argument {other} (known: name, url, protocol, {}, shareInFlight)",
                        NUMBERS.join(", ")
                    ),
                ),
            }
        }
        let (Some(name), Some(url)) = (name, url) else {
            self.error(file, d.pos, "@backend needs both name and url");
            return;
        };
        if let Some(prev) = self.backends.iter().find(|b| b.name == name) {
            let msg = format!("backend {name:?} is already declared at {}", prev.loc);
            self.error(file, d.pos, msg);
            return;
        }
        if let Err(reason) = check_url(&url) {
            self.error(file, d.pos, format!("backend {name:?}: {reason}"));
        }
        let small = |key: &str| numbers.get(key).map(|n| u32::try_from(*n).unwrap_or(u32::MAX));
        let policy = crate::backends::policy::PolicyOverrides {
            timeout_ms: numbers.get("timeoutMs").copied(),
            max_batch_size: numbers.get("maxBatchSize").map(|n| usize::try_from(*n).unwrap_or(usize::MAX)),
            max_concurrent: numbers.get("maxConcurrent").map(|n| usize::try_from(*n).unwrap_or(usize::MAX)),
            rate_per_sec: small("ratePerSec"),
            burst: small("burst"),
            max_retries: small("maxRetries"),
            max_body_bytes: numbers.get("maxBodyBytes").copied(),
            share_in_flight,
            ..Default::default()
        };
        // The same ranges as config and the admin API.
        for problem in policy.check() {
            self.error(file, d.pos, format!("backend {name:?}: {problem}"));
        }
        self.backends.push(BackendDecl { name, url, policy, subgraph, loc: loc(file, d.pos) });
    }

    fn convert(&mut self) -> FacadeSchema {
        let query = self.query.clone().unwrap_or_else(|| "Query".to_owned());
        let mutation = self
            .mutation
            .clone()
            .or_else(|| self.raw.contains_key("Mutation").then(|| "Mutation".to_owned()));
        match self.raw.get(&query).map(|r| r.kind) {
            Some(TypeKind::Object(_)) => {}
            // A file that did not parse may well hold the root type: that error is enough.
            _ if !self.diagnostics.is_empty() => {}
            _ => {
                let file: Arc<str> =
                    self.raw.values().next().map_or_else(|| Arc::from("schema"), |r| r.file.clone());
                self.error(
                    &file,
                    Pos { line: 1, column: 1 },
                    format!("the query root type {query} is not defined as an object type"),
                );
            }
        }
        let mut types = BTreeMap::new();
        let names: Vec<String> = self.raw.keys().cloned().collect();
        for name in names {
            let raw = &self.raw[&name];
            let (file, description, kind) = (raw.file.clone(), raw.description.clone(), raw.kind);
            let (pos, directives) = (raw.pos, raw.directives);
            let extra: Vec<_> = raw.extra_fields.clone();
            // A type of the supergraph: the subgraphs that have it.
            let join = self.join.as_ref().is_some_and(|j| j.file == file);
            if join && matches!(kind, TypeKind::Interface(_) | TypeKind::Union(_)) {
                self.error(
                    &file,
                    pos,
                    format!("{name}: interfaces and unions in a supergraph are not supported yet"),
                );
                continue;
            }
            let graphs = (join && matches!(kind, TypeKind::Object(_)))
                .then(|| self.join_type(&file, &name, directives));
            if !join && matches!(kind, TypeKind::Object(_)) {
                self.entities(&file, &name, directives);
            }
            let def = match kind {
                TypeKind::Object(obj) => {
                    let all = obj.fields.iter().map(|f| (file.clone(), f)).chain(extra);
                    let mut fields: Vec<FieldDef> = Vec::new();
                    for (ffile, f) in all {
                        if fields.iter().any(|x| *x.name == *f.node.name.node.as_str()) {
                            self.error(
                                &ffile,
                                f.pos,
                                format!("field {name}.{} is defined twice", f.node.name.node),
                            );
                            continue;
                        }
                        let is_root = name == query || Some(&name) == mutation.as_ref();
                        let graphs = graphs.as_deref().filter(|_| ffile == file);
                        if let Some(field) = self.field(&ffile, &name, is_root, graphs, f) {
                            fields.push(field);
                        }
                    }
                    let implements = obj.implements.iter().map(|i| i.node.to_string()).collect();
                    TypeDef::Object { description, fields, implements }
                }
                TypeKind::Interface(iface) => {
                    let mut fields: Vec<FieldDef> = Vec::new();
                    for f in &iface.fields {
                        if let Some(field) = self.field(&file, &name, false, None, f) {
                            if !matches!(field.binding, Binding::Parent) {
                                self.error(
                                    &file,
                                    f.pos,
                                    format!(
                                        "{name}.{}: an interface field has no binding; put @http or @js on \
                                         the implementing types' fields",
                                        field.name
                                    ),
                                );
                            }
                            fields.push(field);
                        }
                    }
                    // Without one the schema is refused; keep the type to check the rest.
                    let discriminator = self
                        .discriminator(&file, &name, pos, directives)
                        .unwrap_or(Discriminator { field: Arc::from("") });
                    TypeDef::Interface { description, fields, discriminator }
                }
                TypeKind::Union(union) => {
                    let members: Vec<String> = union.members.iter().map(|m| m.node.to_string()).collect();
                    let bad: Vec<_> = union
                        .members
                        .iter()
                        .filter(|m| {
                            !matches!(
                                self.raw.get(m.node.as_str()).map(|r| r.kind),
                                Some(TypeKind::Object(_))
                            )
                        })
                        .collect();
                    for m in bad {
                        self.error(
                            &file,
                            m.pos,
                            format!("union {name}: member {} is not an object type", m.node),
                        );
                    }
                    // Without one the schema is refused; keep the type to check the rest.
                    let discriminator = self
                        .discriminator(&file, &name, pos, directives)
                        .unwrap_or(Discriminator { field: Arc::from("") });
                    TypeDef::Union { description, members, discriminator }
                }
                TypeKind::Enum(e) => TypeDef::Enum {
                    description,
                    values: e.values.iter().map(|v| v.node.value.node.to_string()).collect(),
                },
                TypeKind::Scalar => TypeDef::Scalar { description },
                TypeKind::InputObject(input) => {
                    let fields =
                        input.fields.iter().filter_map(|f| self.input_value(&file, &name, f)).collect();
                    TypeDef::Input { description, fields }
                }
            };
            types.insert(name, def);
        }
        self.check_implementations(&types);
        let entity_keys = std::mem::take(&mut self.entity_keys);
        FacadeSchema { backends: self.backends.clone(), types, query, mutation, entity_keys }
    }

    /// `@discriminator(field: "…")` of an interface or union: required, it says which JSON
    /// field of a backend value names its object type.
    fn discriminator(
        &mut self,
        file: &Arc<str>,
        name: &str,
        pos: Pos,
        directives: &[Positioned<ConstDirective>],
    ) -> Option<Discriminator> {
        let found = directives.iter().find(|d| d.node.name.node == "discriminator");
        for d in directives.iter().filter(|d| d.node.name.node != "discriminator") {
            self.error(
                file,
                d.pos,
                format!("{name}: unknown directive @{} (known: @discriminator)", d.node.name.node),
            );
        }
        match found.and_then(|d| string_arg(&d.node, "field")).map(|(_, v)| &v.node) {
            Some(GqlValue::String(field)) if !field.is_empty() => {
                Some(Discriminator { field: self.intern(field.as_str()) })
            }
            _ => {
                self.error(
                    file,
                    found.map_or(pos, |d| d.pos),
                    format!(
                        "{name}: an interface or union needs @discriminator(field: \"…\"), the backend JSON \
                         field that holds the object type's name"
                    ),
                );
                None
            }
        }
    }

    /// Every object declares each field of the interfaces it implements, with the same type.
    fn check_implementations(&mut self, types: &BTreeMap<String, TypeDef>) {
        for (name, def) in types {
            let TypeDef::Object { fields, implements, .. } = def else { continue };
            let Some(raw) = self.raw.get(name) else { continue };
            let (file, pos) = (raw.file.clone(), raw.pos);
            for iface in implements {
                let Some(TypeDef::Interface { fields: wanted, .. }) = types.get(iface) else {
                    self.error(
                        &file,
                        pos,
                        format!("type {name} implements {iface}, which is not an interface"),
                    );
                    continue;
                };
                for w in wanted {
                    match fields.iter().find(|f| f.name == w.name) {
                        None => self.error(
                            &file,
                            pos,
                            format!("type {name} implements {iface} but has no field {}", w.name),
                        ),
                        Some(f) if f.ty.to_string() != w.ty.to_string() => {
                            self.diagnostics.push(Diagnostic {
                                loc: f.loc.clone(),
                                message: format!(
                                    "{name}.{}: type {} differs from {iface}.{}: {}",
                                    f.name, f.ty, w.name, w.ty
                                ),
                            })
                        }
                        Some(_) => {}
                    }
                }
            }
        }
    }

    /// What kind of type `name` is: `None` when it is not defined.
    fn kind_of(&self, name: &str) -> Option<Kind> {
        if BUILTIN_SCALARS.contains(&name) {
            return Some(Kind::Leaf);
        }
        self.raw.get(name).map(|r| match r.kind {
            TypeKind::Scalar | TypeKind::Enum(_) => Kind::Leaf,
            TypeKind::InputObject(_) => Kind::Input,
            _ => Kind::Object,
        })
    }

    fn input_value(
        &mut self,
        file: &Arc<str>,
        owner: &str,
        v: &Positioned<InputValueDefinition>,
    ) -> Option<ArgDef> {
        let tname = named(&v.node.ty.node);
        match self.kind_of(tname) {
            None => {
                self.error(
                    file,
                    v.node.ty.pos,
                    format!("{owner}.{}: unknown type {tname}", v.node.name.node),
                );
                return None;
            }
            Some(Kind::Object) => {
                self.error(
                    file,
                    v.node.ty.pos,
                    format!(
                        "{owner}.{}: {tname} is an output type and cannot be an argument or input field",
                        v.node.name.node
                    ),
                );
                return None;
            }
            _ => {}
        }
        Some(ArgDef {
            name: v.node.name.node.to_string(),
            description: v.node.description.as_ref().map(|d| d.node.clone()),
            ty: v.node.ty.node.clone(),
            default: v.node.default_value.as_ref().map(|d| d.node.clone()),
        })
    }

    fn field(
        &mut self,
        file: &Arc<str>,
        owner: &str,
        is_root: bool,
        graphs: Option<&[usize]>,
        f: &Positioned<FieldDefinition>,
    ) -> Option<FieldDef> {
        self.join_fields.clear();
        let fname = self.intern(f.node.name.node.as_str());
        let path = format!("{owner}.{fname}");
        let tname = named(&f.node.ty.node);
        match self.kind_of(tname) {
            None => {
                self.error(file, f.node.ty.pos, format!("{path}: unknown type {tname}"));
                return None;
            }
            Some(Kind::Input) => {
                self.error(
                    file,
                    f.node.ty.pos,
                    format!("{path}: {tname} is an input type and cannot be a field's type"),
                );
                return None;
            }
            _ => {}
        }
        let args: Vec<ArgDef> =
            f.node.arguments.iter().filter_map(|a| self.input_value(file, &path, a)).collect();
        let mut binding = Binding::Parent;
        let mut deprecation = None;
        let mut fallback = None;
        for d in &f.node.directives {
            match d.node.name.node.as_str() {
                "http" => {
                    if let Some(http) = self.http(file, owner, &path, f, &args, &d.node, d.pos) {
                        binding = Binding::Http(Arc::new(http));
                    }
                }
                "js" => match string_arg(&d.node, "fn") {
                    Some((_, v)) => match &v.node {
                        GqlValue::String(name)
                            if !name.is_empty()
                                && name
                                    .chars()
                                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') =>
                        {
                            binding = Binding::Js { function: Arc::from(name.as_str()) };
                        }
                        _ => self.error(
                            file,
                            v.pos,
                            format!("{path}: @js fn must be the name of an exported function"),
                        ),
                    },
                    None => self.error(file, d.pos, format!("{path}: @js needs fn: \"NAME\"")),
                },
                "fallback" => match string_arg(&d.node, "value") {
                    None => self.error(file, d.pos, format!("{path}: @fallback needs a value")),
                    Some((_, v)) if v.node == GqlValue::Null && !f.node.ty.node.nullable => self.error(
                        file,
                        v.pos,
                        format!("{path}: type mismatch: @fallback value null for a non-null field"),
                    ),
                    Some((_, v)) => match v.node.clone().into_json() {
                        Ok(json) => fallback = Some(json),
                        Err(e) => self.error(file, v.pos, format!("{path}: bad @fallback value: {e}")),
                    },
                },
                "join__field" if graphs.is_some() => self.join_field(file, &path, d),
                "graphql" if graphs.is_none() => self.graphql_field(file, owner, &path, is_root, d),
                "deprecated" => {
                    let reason = string_arg(&d.node, "reason").and_then(|(_, v)| match &v.node {
                        GqlValue::String(s) => Some(s.clone()),
                        _ => None,
                    });
                    deprecation = Some(reason);
                }
                other => self.error(
                    file,
                    d.pos,
                    format!("{path}: unknown directive @{other} (known: @http, @graphql, @js, @fallback, @deprecated)"),
                ),
            }
        }
        if let Some(graphs) = graphs {
            if !matches!(binding, Binding::Parent) {
                self.error(file, f.pos, format!("{path}: a supergraph's field is bound by @join__field, not @http or @js (add such fields in another file with extend type)"));
            }
            binding = Binding::Subgraph(Arc::new(self.owners(file, &path, f.pos, graphs)));
        } else if !self.join_fields.is_empty() {
            if !matches!(binding, Binding::Parent) {
                self.error(file, f.pos, format!("{path}: @graphql and @http or @js on one field"));
            }
            binding = Binding::Subgraph(Arc::new(self.owners(file, &path, f.pos, &[])));
        }
        if is_root && !matches!(binding, Binding::Http(_) | Binding::Subgraph(_)) {
            self.error(
                file,
                f.pos,
                format!("{path}: a root field needs @http, it has no parent to read from"),
            );
        }
        Some(FieldDef {
            name: fname,
            description: f.node.description.as_ref().map(|d| d.node.clone()),
            args,
            ty: f.node.ty.node.clone(),
            binding,
            fallback,
            deprecation,
            loc: loc(file, f.pos),
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn http(
        &mut self,
        file: &Arc<str>,
        owner: &str,
        path: &str,
        f: &Positioned<FieldDefinition>,
        args: &[ArgDef],
        d: &ConstDirective,
        dpos: Pos,
    ) -> Option<HttpBinding> {
        let before = self.diagnostics.len();
        let mut strings: HashMap<&str, (String, Pos)> = HashMap::new();
        for (arg, value) in &d.arguments {
            let known = ["backend", "get", "post", "batch", "keys", "match", "select", "limit"];
            // The known name itself, 'static, keys the map.
            let Some(key) = known.into_iter().find(|k| *k == arg.node.as_str()) else {
                self.error(
                    file,
                    arg.pos,
                    format!("{path}: unknown @http argument {} (known: {})", arg.node, known.join(", ")),
                );
                continue;
            };
            match &value.node {
                GqlValue::String(s) => {
                    strings.insert(key, (s.clone(), value.pos));
                }
                _ => self.error(
                    file,
                    value.pos,
                    format!("{path}: @http argument {} must be a string", arg.node),
                ),
            }
        }
        let Some((backend_name, bpos)) = strings.get("backend").cloned() else {
            self.error(file, dpos, format!("{path}: @http needs a backend"));
            return None;
        };
        let backend = self.backends.iter().position(|b| b.name == backend_name);
        if backend.is_none() {
            let known: Vec<&str> = self.backends.iter().map(|b| b.name.as_str()).collect();
            self.error(
                file,
                bpos,
                format!(
                    "{path}: unknown backend {backend_name:?} (declared: {})",
                    if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                ),
            );
        }
        let routes: Vec<&str> =
            ["get", "post", "batch"].into_iter().filter(|k| strings.contains_key(k)).collect();
        if routes.len() != 1 {
            self.error(file, dpos, format!("{path}: @http needs exactly one of get, post or batch"));
            return None;
        }
        let route_kind = routes[0];
        let (route_text, rpos) = strings[route_kind].clone();
        let template = match parse_template(route_kind, &route_text) {
            Ok(mut t) => {
                for part in &mut t.parts {
                    if let Part::Parent(name) = part {
                        *name = self.intern(name);
                    }
                }
                Some(t)
            }
            Err(reason) => {
                self.error(file, rpos, format!("{path}: bad route {route_text:?}: {reason}"));
                None
            }
        };
        let returns_list = is_list(&f.node.ty.node);
        let return_type = named(&f.node.ty.node).to_owned();

        // Keys: only for batch, required there.
        let mut batch = None;
        match (route_kind, strings.get("keys").cloned()) {
            ("batch", None) => {
                self.error(file, dpos, format!("{path}: a batch route needs keys: \"$parent.FIELD\""))
            }
            ("batch", Some((keys, kpos))) => match keys.strip_prefix("$parent.") {
                None => {
                    self.error(file, kpos, format!("{path}: keys must be \"$parent.FIELD\", got {keys:?}"))
                }
                Some(field) => match self.parent_field_type(owner, field) {
                    None => self.error(
                        file,
                        kpos,
                        format!("{path}: missing key field: {owner} has no field {field} for keys"),
                    ),
                    Some(kty) => {
                        let keys_are_list = is_list(&kty);
                        if self.kind_of(named(&kty)) != Some(Kind::Leaf) {
                            self.error(
                                file,
                                kpos,
                                format!("{path}: type mismatch: key field {owner}.{field} must hold scalars"),
                            );
                        } else if keys_are_list != returns_list {
                            let msg = if keys_are_list {
                                format!(
                                    "{path}: type mismatch: keys {owner}.{field} is a list, so the field must return a list, not {return_type}"
                                )
                            } else {
                                format!(
                                    "{path}: type mismatch: keys {owner}.{field} is a single value, so the field must not return a list"
                                )
                            };
                            self.error(file, kpos, msg);
                        }
                        batch = Some(BatchSpec {
                            keys_from: self.intern(field),
                            keys_are_list,
                            match_field: strings
                                .get("match")
                                .map(|(m, _)| m.clone())
                                .map(|m| self.intern(&m)),
                        });
                    }
                },
            },
            (_, Some((_, kpos))) => self.error(file, kpos, format!("{path}: keys is only for batch routes")),
            _ => {}
        }
        if let (Some((m, mpos)), None) = (strings.get("match"), strings.get("select"))
            && let Some(TypeKind::Object(obj)) = self.raw.get(&return_type).map(|r| r.kind)
        {
            let extra = &self.raw[&return_type].extra_fields;
            let has = obj.fields.iter().any(|x| x.node.name.node == m.as_str())
                || extra.iter().any(|(_, x)| x.node.name.node == m.as_str());
            if !has {
                self.error(
                    file,
                    *mpos,
                    format!("{path}: missing key field: match field {m} is not a field of {return_type}"),
                );
            }
        }
        if route_kind != "batch" && strings.contains_key("match") {
            self.error(file, strings["match"].1, format!("{path}: match is only for batch routes"));
        }

        let mut limit_arg = None;
        if let Some((limit, lpos)) = strings.get("limit").cloned() {
            match limit.strip_prefix("$args.").and_then(|a| args.iter().find(|x| x.name == a)) {
                Some(a) if named(&a.ty) == "Int" && !is_list(&a.ty) => limit_arg = Some(a.name.clone()),
                Some(a) => self.error(file, lpos, format!("{path}: type mismatch: limit argument {} must be an Int", a.name)),
                None => self.error(file, lpos, format!("{path}: limit must be \"$args.NAME\" naming an Int argument of the field, got {limit:?}")),
            }
            if !returns_list {
                self.error(file, lpos, format!("{path}: limit applies only to fields that return a list"));
            }
        }

        if let Some(t) = &template {
            for part in &t.parts {
                match part {
                    Part::Arg(a) => match args.iter().find(|x| &x.name == a) {
                        None => self.error(file, rpos, format!("{path}: bad template variable {{$args.{a}}}: the field has no argument {a}")),
                        Some(x) if is_list(&x.ty) || self.kind_of(named(&x.ty)) != Some(Kind::Leaf) => self.error(
                            file,
                            rpos,
                            format!("{path}: type mismatch: argument {a} is not a scalar and cannot go in a route"),
                        ),
                        _ => {}
                    },
                    Part::Parent(p) => match self.parent_field_type(owner, p) {
                        None => self.error(file, rpos, format!("{path}: bad template variable {{$parent.{p}}}: {owner} has no field {p}")),
                        Some(ty) if is_list(&ty) || self.kind_of(named(&ty)) != Some(Kind::Leaf) => self.error(
                            file,
                            rpos,
                            format!("{path}: type mismatch: {owner}.{p} is not a scalar and cannot go in a route"),
                        ),
                        _ => {}
                    },
                    Part::Keys if route_kind != "batch" => {
                        self.error(file, rpos, format!("{path}: bad template variable {{$keys}}: only batch routes have keys"))
                    }
                    _ => {}
                }
            }
            if route_kind == "batch" && t.method == Method::Get && !t.parts.contains(&Part::Keys) {
                self.error(
                    file,
                    rpos,
                    format!("{path}: a GET batch route must place {{$keys}} in its path or query"),
                );
            }
        }
        if self.diagnostics.len() > before {
            return None;
        }
        Some(HttpBinding {
            backend: backend?,
            template: template?,
            batch,
            select: strings.get("select").map(|(s, _)| s.clone()).map(|s| self.intern(&s)),
            limit_arg,
        })
    }

    fn parent_field_type(&self, owner: &str, field: &str) -> Option<Type> {
        let raw = self.raw.get(owner)?;
        let TypeKind::Object(obj) = raw.kind else { return None };
        obj.fields
            .iter()
            .chain(raw.extra_fields.iter().map(|(_, f)| *f))
            .find(|f| f.node.name.node == field)
            .map(|f| f.node.ty.node.clone())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Leaf,
    Object,
    Input,
}

fn check_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("bad url {url:?}: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("url {url:?} must be http or https"));
    }
    Ok(())
}

/// Parses a route such as `GET /titles?ids={$keys}`. `get` and `post` routes take no method
/// prefix; `batch` routes may start with `GET ` (the default) or `POST `.
pub fn parse_template(kind: &str, text: &str) -> Result<Template, String> {
    let (method, rest) = match kind {
        "get" => (Method::Get, text),
        "post" => (Method::Post, text),
        _ => {
            if let Some(rest) = text.strip_prefix("POST ") {
                (Method::Post, rest)
            } else {
                (Method::Get, text.strip_prefix("GET ").unwrap_or(text))
            }
        }
    };
    let rest = rest.trim();
    if !rest.starts_with('/') {
        return Err("the path must start with /".to_owned());
    }
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '{' => {
                let var: String = chars.by_ref().take_while(|c| *c != '}').collect();
                if !lit.is_empty() {
                    parts.push(Part::Lit(std::mem::take(&mut lit)));
                }
                let part = if var == "$keys" {
                    if parts.contains(&Part::Keys) {
                        return Err("a route may hold {$keys} only once".to_owned());
                    }
                    Part::Keys
                } else if let Some(a) = var.strip_prefix("$args.").filter(|a| is_name(a)) {
                    Part::Arg(a.to_owned())
                } else if let Some(p) = var.strip_prefix("$parent.").filter(|p| is_name(p)) {
                    Part::Parent(Arc::from(p))
                } else {
                    return Err(format!(
                        "bad template variable {{{var}}} (use {{$args.NAME}}, {{$parent.NAME}} or {{$keys}})"
                    ));
                };
                parts.push(part);
            }
            '}' => return Err("unmatched }".to_owned()),
            c if c.is_whitespace() => return Err("spaces are not allowed in a route".to_owned()),
            c if c.is_control() => return Err("control characters are not allowed in a route".to_owned()),
            c => lit.push(c),
        }
    }
    if !lit.is_empty() {
        parts.push(Part::Lit(lit));
    }
    // The fixed path segments are the route's: none may be one a URL parser rewrites.
    let fixed: String = parts.iter().map(|p| if let Part::Lit(l) = p { l.as_str() } else { "x" }).collect();
    let path = fixed.split(['?', '#']).next().unwrap_or("");
    if path.split('/').any(|seg| {
        matches!(percent_encoding::percent_decode_str(seg).decode_utf8_lossy().as_ref(), "." | "..")
    }) || path.contains('\\')
    {
        return Err("the path must not hold . or .. segments or backslashes".to_owned());
    }
    Ok(Template { method, parts })
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(sdl: &str) -> Result<FacadeSchema, Vec<String>> {
        analyze(&[SchemaFile { name: "t.graphql".into(), text: sdl.into() }])
            .map_err(|d| d.0.iter().map(ToString::to_string).collect())
    }

    const HEAD: &str = "extend schema @backend(name: \"cat\", url: \"http://127.0.0.1:1\")\n";

    #[test]
    fn accepts_a_bound_schema() {
        let sdl = format!(
            "{HEAD}type Query {{ title(id: ID!): Title @http(backend: \"cat\", get: \"/titles/{{$args.id}}\") }}\n\
             type Title {{ id: ID! similarIds: [ID!]! similar(first: Int = 5): [Title!] @http(backend: \"cat\", batch: \"/titles?ids={{$keys}}\", keys: \"$parent.similarIds\", match: \"id\", limit: \"$args.first\") }}"
        );
        let schema = check(&sdl).unwrap();
        assert_eq!(schema.backends.len(), 1);
        assert!(schema.types.contains_key("Title"));
    }

    #[test]
    fn reports_every_problem_with_file_line_and_column() {
        let sdl = format!(
            "{HEAD}type Query {{\n  a: T @http(backend: \"nope\", get: \"/a\")\n  b: T @http(backend: \"cat\", get: \"/b/{{$args.x}}\")\n}}\n\
             type T {{ id: ID! xs: [T] @http(backend: \"cat\", batch: \"/t?ids={{$keys}}\", keys: \"$parent.id\", match: \"zz\") }}"
        );
        let errors = check(&sdl).unwrap_err();
        assert!(
            errors.iter().any(|e| e.starts_with("t.graphql:3:") && e.contains("unknown backend \"nope\"")),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("t.graphql:4:") && e.contains("bad template variable {$args.x}")),
            "{errors:?}"
        );
        assert!(errors.iter().any(|e| e.contains("type mismatch") && e.contains("T.xs")), "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("missing key field: match field zz")), "{errors:?}");
    }

    #[test]
    fn syntax_error_names_file_and_line() {
        let errors = check("type Query {\n  a: String\n  b: \n}").unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("t.graphql:4:"), "{errors:?}");
    }

    #[test]
    fn missing_key_field_and_unknown_type() {
        let sdl = format!(
            "{HEAD}type Query {{ a: [T] @http(backend: \"cat\", batch: \"/t?ids={{$keys}}\", keys: \"$parent.ids\") b: Nope @http(backend: \"cat\", get: \"/b\") }} type T {{ id: ID }}"
        );
        let errors = check(&sdl).unwrap_err();
        assert!(errors.iter().any(|e| e.contains("missing key field: Query has no field ids")), "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("unknown type Nope")), "{errors:?}");
    }

    #[test]
    fn templates() {
        let t = parse_template("batch", "POST /ratings/batch").unwrap();
        assert_eq!(t.method, Method::Post);
        let t = parse_template("batch", "/a/{$parent.id}?k={$keys}").unwrap();
        assert_eq!(
            t.parts,
            vec![Part::Lit("/a/".into()), Part::Parent("id".into()), Part::Lit("?k=".into()), Part::Keys]
        );
        assert!(parse_template("get", "/a/{$nope}").unwrap_err().contains("bad template variable"));
        assert!(parse_template("get", "a").is_err());
        // Found by fuzzing: a URL parser drops control characters, changing a fixed segment.
        assert!(parse_template("get", "/tit/tit\0le1\0").unwrap_err().contains("control characters"));
        assert!(parse_template("get", "/a/../b").unwrap_err().contains(".. segments"));
        assert!(parse_template("get", "/a/%2e%2E/b").is_err());
        // Found by fuzzing: a second {$keys} dropped the text between the two.
        assert!(parse_template("batch", "/a/{$keys}/b?ids={$keys}").unwrap_err().contains("only once"));
    }
}
