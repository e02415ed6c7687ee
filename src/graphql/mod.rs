//! The engine: reads the facade SDL (`sdl.rs`), checks it into a model (`model.rs`), builds an
//! executable `async_graphql::dynamic::Schema` from it (`build.rs`), and executes requests.
//! Only this module knows async-graphql types; callers hand in query text and JSON and get
//! JSON back.

pub mod build;
pub mod diff;
pub mod exec;
mod fetch;
pub mod js;
pub mod limits;
pub mod model;
pub mod plan;
pub mod project;
pub mod route;
pub mod sdl;
pub mod usage;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::dynamic::Schema;
use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, OperationType};
use async_graphql::{Request, ServerError, Variables};
use serde_json::{Map, Value, json};

use crate::backends::policy::Resilience;
use crate::backends::{BackendSettings, Backends, Batcher, ClientError};
use crate::config::{BackendConfig, EngineConfig};
pub use build::QueryLimits;
use model::{Diagnostics, FacadeSchema};
pub use sdl::LoadError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("the schema has {count} problem(s):\n{0}", count = .0.0.len())]
    Schema(Diagnostics),
    #[error("the schema could not be built: {0}")]
    Build(String),
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// How the engine is built beyond what the SDL says.
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// Per-backend settings that win over `@backend` (from config; URLs in demo mode).
    pub overrides: HashMap<String, BackendConfig>,
    /// Defaults for what neither the override nor `@backend` sets.
    pub defaults: EngineConfig,
    pub limits: QueryLimits,
    pub operation_limits: limits::OperationLimits,
    /// Functions for `@js` fields; a schema with `@js` fields needs them.
    pub js: Option<js::JsFunctions>,
}

/// One backend's settings: its policy layered config `[backends.NAME]` over `@backend` over
/// the engine defaults (one merge, `PolicyOverrides::over`), checked with the same ranges the
/// admin API uses. `Err` names the layer at fault.
fn backend_settings(decl: &model::BackendDecl, options: &EngineOptions) -> Result<BackendSettings, String> {
    let config = options.overrides.get(&decl.name).cloned().unwrap_or_default();
    let problems = config.policy.check();
    if !problems.is_empty() {
        return Err(format!("config [backends.{}]: {}", decl.name, problems.join("; ")));
    }
    let policy = config.policy.over(&decl.policy).over(&options.defaults.policy_defaults());
    let problems = policy.check();
    if !problems.is_empty() {
        return Err(format!(
            "backend {} (config over @backend at {}): {}",
            decl.name,
            decl.loc,
            problems.join("; ")
        ));
    }
    Ok(BackendSettings {
        name: decl.name.clone(),
        url: config.url.unwrap_or_else(|| decl.url.clone()),
        resilience: policy.apply(Resilience::default()),
    })
}

/// Reads and checks the schema folder without building clients: `facade schema check`.
pub fn check_dir(dir: &Path) -> Result<FacadeSchema, EngineError> {
    let files = sdl::load_dir(dir)?;
    sdl::analyze(&files).map_err(EngineError::Schema)
}

/// `@js` functions that no `*.js` file in `resolvers_dir` exports (a textual check, for
/// `facade schema check`; startup also asks the script pool).
pub fn check_js_functions(model: &FacadeSchema, resolvers_dir: &Path) -> Result<(), EngineError> {
    let mut exported = std::collections::BTreeSet::new();
    if let Ok(entries) = std::fs::read_dir(resolvers_dir) {
        for path in entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "js"))
        {
            if let Ok(source) = std::fs::read_to_string(&path) {
                exported.extend(js::exported_functions(&source));
            }
        }
    }
    let known: Vec<&str> = exported.iter().map(String::as_str).collect();
    missing_js_functions(model, |f| exported.contains(f), &known)
}

/// Every `@js` field whose function `exists` denies, as one schema error listing them all.
fn missing_js_functions(
    model: &FacadeSchema,
    exists: impl Fn(&str) -> bool,
    known: &[&str],
) -> Result<(), EngineError> {
    let missing: Vec<model::Diagnostic> = model
        .types
        .values()
        .filter_map(|t| match t {
            model::TypeDef::Object { fields, .. } => Some(fields),
            _ => None,
        })
        .flatten()
        .filter_map(|f| match &f.binding {
            model::Binding::Js { function } if !exists(function) => Some(model::Diagnostic {
                loc: f.loc.clone(),
                message: format!(
                    "{}: @js fn {function} is not exported by resolvers-js/*.js (exported: {})",
                    f.name,
                    known.join(", ")
                ),
            }),
            _ => None,
        })
        .collect();
    if missing.is_empty() { Ok(()) } else { Err(EngineError::Schema(Diagnostics(missing))) }
}

/// A GraphQL request as it arrives over HTTP.
#[derive(Debug, Clone)]
pub struct GraphqlRequest {
    pub query: String,
    pub operation_name: Option<String>,
    pub variables: Option<Map<String, Value>>,
    /// Whether introspection fields (`__schema`, `__type`) may be asked.
    pub introspection: bool,
    /// Where to record the backend calls, when someone asked to see them.
    pub fetch_log: Option<crate::backends::FetchLog>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationKind {
    Query,
    Mutation,
    Subscription,
}

/// A request whose document parsed and passed [`limits::analyze`].
pub struct Parsed {
    request: GraphqlRequest,
    document: Arc<ExecutableDocument>,
    /// The compiled operation, when this text was compiled before.
    operation: Option<Arc<plan::Operation>>,
    /// Selections with every fragment expanded (from [`limits::analyze`]): what compiling it
    /// would weigh in the cache.
    selections: u64,
}

impl Parsed {
    /// The kind of the operation that will run, when the document makes it unambiguous.
    pub fn operation_kind(&self) -> Option<OperationKind> {
        let ty = match (&self.document.operations, self.request.operation_name.as_deref()) {
            (DocumentOperations::Single(op), None) => op.node.ty,
            (DocumentOperations::Single(_), Some(_)) => return None,
            (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name)?.node.ty,
            (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops.values().next()?.node.ty,
            (DocumentOperations::Multiple(_), None) => return None,
        };
        Some(match ty {
            OperationType::Query => OperationKind::Query,
            OperationType::Mutation => OperationKind::Mutation,
            OperationType::Subscription => OperationKind::Subscription,
        })
    }
}

/// How a variable's value is read from a query-string parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarKind {
    Int,
    Float,
    Boolean,
    /// String, ID, enums and custom scalars: the text as it is.
    Text,
    /// Lists and input objects: the text is JSON.
    Json,
}

/// A stored document, parsed and validated once (at publish or load), run many times.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub text: String,
    pub operation_name: Option<String>,
    pub kind: OperationKind,
    document: Arc<ExecutableDocument>,
    variables: Vec<(String, VarKind)>,
    operation: Arc<plan::Operation>,
}

impl Prepared {
    /// Whether the document asks `__schema` or `__type` anywhere.
    pub fn uses_introspection(&self) -> bool {
        limits::uses_introspection(&self.document)
    }

    /// The schema coordinates this document uses, read with `model` (`usage.rs`).
    pub fn usage(&self, model: &FacadeSchema) -> std::collections::BTreeSet<String> {
        usage::of(&self.document, self.operation_name.as_deref(), model)
    }

    /// A query-string parameter as the JSON value of the variable it names: numbers and
    /// booleans are parsed by the variable's declared type; unknown names are ignored.
    pub fn variable_from_text(&self, name: &str, raw: &str) -> Option<Value> {
        let (_, kind) = self.variables.iter().find(|(n, _)| n == name)?;
        Some(match kind {
            VarKind::Int => {
                raw.parse::<i64>().map(Value::from).unwrap_or_else(|_| Value::String(raw.to_owned()))
            }
            VarKind::Float => {
                raw.parse::<f64>().map(Value::from).unwrap_or_else(|_| Value::String(raw.to_owned()))
            }
            VarKind::Boolean => match raw {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                other => Value::String(other.to_owned()),
            },
            VarKind::Text => Value::String(raw.to_owned()),
            VarKind::Json => serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned())),
        })
    }
}

/// The JSON body of a GraphQL response, and whether it is a request error (no execution
/// happened: the document did not parse or validate), which GraphQL over HTTP answers with 400.
#[derive(Debug)]
pub struct Outcome {
    /// The serialized JSON body.
    pub body: bytes::Bytes,
    pub request_error: bool,
    /// The `extensions.code` of each field error (for metrics), without parsing the body.
    pub error_codes: Vec<&'static str>,
    /// Where `data` and `errors` sit in `body`, when the projection wrote it (a transform
    /// takes them from there without parsing the body).
    pub parts: Option<project::Parts>,
}

impl Outcome {
    fn request_errors(errors: Vec<ServerError>) -> Self {
        Self {
            body: json!({ "errors": errors }).to_string().into(),
            request_error: true,
            error_codes: Vec::new(),
            parts: None,
        }
    }

    /// A request error with one message.
    pub fn request_error(message: &str) -> Self {
        Self::request_errors(vec![ServerError::new(message, None)])
    }
}

/// An executable facade schema bound to its backends. Immutable; swapped whole on reload.
pub struct Engine {
    schema: Schema,
    js: Option<js::JsFunctions>,
    operation_limits: limits::OperationLimits,
    request_timeout: Duration,
    backends: Arc<Backends>,
    model: Arc<FacadeSchema>,
    /// Ad-hoc documents compiled, by text and operation name (this engine's schema only).
    operations: std::sync::Mutex<OperationCache>,
    /// The size of the last response, to pre-size the next one's buffer.
    last_size: std::sync::atomic::AtomicUsize,
    /// What this engine was built from, to build the next one beside it on a reload.
    options: EngineOptions,
    files: Arc<[sdl::SchemaFile]>,
    /// The schema version: [`schema_hash`] of the files.
    hash: String,
}

/// The version of a schema: SHA-256 over its files' names (without their folder) and texts,
/// so one schema has one hash whether it is read from a folder or from the registry.
pub fn schema_hash(files: &[sdl::SchemaFile]) -> String {
    use sha2::{Digest, Sha256};
    let mut sorted: Vec<&sdl::SchemaFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.base_name().cmp(b.base_name()));
    let mut h = Sha256::new();
    for f in sorted {
        h.update(f.base_name().as_bytes());
        h.update([0u8]);
        h.update(f.text.as_bytes());
        h.update([0u8]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn introspection_refused() -> Outcome {
    Outcome::request_error("introspection is disabled for requests without a token")
}

/// An ad-hoc document's text and operation name, hashed (a hit checks the text).
type OperationKey = u64;

fn operation_key(text: &str, operation_name: Option<&str>) -> OperationKey {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::default().hash_one((text, operation_name))
}

/// How much compiled ad-hoc work the cache keeps, in expanded selections times the plans an
/// operation may hold (about 200 bytes each): a few thousand home screens, ~50 MiB at most.
const OPERATION_CACHE_WEIGHT: usize = 250_000;

/// The compiled ad-hoc operations, least recently used out first, bounded by weight: an
/// operation weighs its expanded selections times the plans it may keep (one per assignment
/// of its `@skip`/`@include` variables), so large or many-conditioned texts cannot fill memory.
struct OperationCache {
    lru: lru::LruCache<OperationKey, (Arc<plan::Operation>, usize)>,
    weight: usize,
}

impl OperationCache {
    fn get(&mut self, key: &OperationKey) -> Option<Arc<plan::Operation>> {
        self.lru.get(key).map(|(op, _)| op.clone())
    }

    fn put(&mut self, key: OperationKey, op: Arc<plan::Operation>, weight: usize) {
        if weight > OPERATION_CACHE_WEIGHT {
            return;
        }
        if let Some((_, old)) = self.lru.pop(&key) {
            self.weight -= old;
        }
        while self.weight + weight > OPERATION_CACHE_WEIGHT {
            let Some((_, (_, w))) = self.lru.pop_lru() else { break };
            self.weight -= w;
        }
        self.weight += weight;
        self.lru.put(key, (op, weight));
    }
}

impl Engine {
    /// Loads `dir`, checks it, binds it to backends and builds the executable schema.
    pub fn load(dir: &Path, options: &EngineOptions) -> Result<Self, EngineError> {
        Self::from_files(sdl::load_dir(dir)?, options, None)
    }

    /// Checks the files and builds an engine from them. With `previous`, backends declared
    /// exactly as before are kept (breaker state and runtime numbers carry over).
    pub fn from_files(
        files: Vec<sdl::SchemaFile>,
        options: &EngineOptions,
        previous: Option<&Engine>,
    ) -> Result<Self, EngineError> {
        let model = sdl::analyze(&files).map_err(EngineError::Schema)?;
        Self::from_model(model, files, options, previous)
    }

    /// The next engine from other files, built with this one's options beside it.
    pub fn rebuilt(&self, files: Vec<sdl::SchemaFile>) -> Result<Self, EngineError> {
        Self::from_files(files, &self.options, Some(self))
    }

    fn from_model(
        model: FacadeSchema,
        files: Vec<sdl::SchemaFile>,
        options: &EngineOptions,
        previous: Option<&Engine>,
    ) -> Result<Self, EngineError> {
        let known = options.js.as_ref().map(|j| j.names()).unwrap_or_default();
        missing_js_functions(&model, |f| options.js.as_ref().is_some_and(|j| j.get(f).is_some()), &known)?;
        let settings = model
            .backends
            .iter()
            .map(|b| backend_settings(b, options))
            .collect::<Result<_, _>>()
            .map_err(EngineError::Build)?;
        let backends = Arc::new(Backends::carrying(settings, previous.map(|p| &*p.backends))?);
        let mut limits = options.limits;
        limits.default_list_size = options.operation_limits.default_list_size;
        let schema = build::build_schema(&model, limits).map_err(|e| EngineError::Build(e.0))?;
        let request_timeout = Duration::from_millis(options.defaults.request_timeout_ms);
        Ok(Self {
            schema,
            js: options.js.clone(),
            operation_limits: options.operation_limits,
            request_timeout,
            backends,
            model: Arc::new(model),
            operations: std::sync::Mutex::new(OperationCache { lru: lru::LruCache::unbounded(), weight: 0 }),
            last_size: std::sync::atomic::AtomicUsize::new(0),
            options: options.clone(),
            hash: schema_hash(&files),
            files: files.into(),
        })
    }

    /// The schema version this engine runs ([`schema_hash`]).
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The SDL files this engine was built from.
    pub fn files(&self) -> &[sdl::SchemaFile] {
        &self.files
    }

    /// The script pool this engine's `@js` fields run in (also the one transforms are
    /// compiled in when a registry snapshot is built).
    pub fn script_pool(&self) -> Option<&crate::scripts::ScriptPool> {
        self.js.as_ref().map(|j| &j.pool)
    }

    pub fn model(&self) -> &FacadeSchema {
        &self.model
    }

    pub fn backends(&self) -> &Backends {
        &self.backends
    }

    /// The schema as SDL, without Facade's directives.
    pub fn sdl(&self) -> String {
        self.schema.sdl()
    }

    /// Parses the document and checks its structure ([`limits::analyze`]: fragment cycles,
    /// nesting, expanded size) before anything else walks it; a failure is a request error.
    /// The cost is estimated after validation, during [`Engine::execute`].
    pub fn parse(&self, request: GraphqlRequest) -> Result<Parsed, Outcome> {
        // A text compiled before is not parsed again (it passed every check then); whether
        // this request may introspect is its own.
        if let Some(operation) = self.cached_operation(&request) {
            if !request.introspection && operation.uses_introspection {
                return Err(introspection_refused());
            }
            let document = operation.document.clone();
            return Ok(Parsed { request, document, operation: Some(operation), selections: 0 });
        }
        let document = async_graphql::parser::parse_query(&request.query)
            .map_err(|e| Outcome::request_errors(vec![e.into()]))?;
        let analysis = limits::analyze(&document, &self.operation_limits)
            .map_err(|e| Outcome::request_errors(vec![ServerError::new(e.message, None)]))?;
        if !request.introspection && limits::uses_introspection(&document) {
            return Err(introspection_refused());
        }
        let selections = analysis.expanded_selections;
        Ok(Parsed { request, document: Arc::new(document), operation: None, selections })
    }

    /// Parses `text`, picks its operation and validates it against this schema without
    /// running it. Every problem comes back, with line:column where there is one.
    /// The operation limits are checked too, with the variables unset (so the limit
    /// arguments count their defaults): a document that could never run is refused here.
    pub async fn prepare(&self, text: &str, operation_name: Option<&str>) -> Result<Prepared, Vec<String>> {
        let document = async_graphql::parser::parse_query(text).map_err(|e| {
            let at = e.positions().next().map(|p| format!("{}:{}: ", p.line, p.column)).unwrap_or_default();
            vec![format!("{at}{}", e.to_string().replace('\n', " ").trim())]
        })?;
        limits::analyze(&document, &self.operation_limits).map_err(|e| vec![e.message])?;
        let operation = match (&document.operations, operation_name) {
            (DocumentOperations::Single(op), None) => op,
            (DocumentOperations::Single(_), Some(name)) => {
                return Err(vec![format!(
                    "operation {name:?} is not in the document (it has one unnamed operation)"
                )]);
            }
            (DocumentOperations::Multiple(ops), Some(name)) => {
                ops.get(name).ok_or_else(|| vec![format!("operation {name:?} is not in the document")])?
            }
            (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops.values().next().expect("one"),
            (DocumentOperations::Multiple(_), None) => {
                return Err(vec!["the document has several operations: give operationName".to_owned()]);
            }
        };
        let kind = match operation.node.ty {
            OperationType::Query => OperationKind::Query,
            OperationType::Mutation => OperationKind::Mutation,
            OperationType::Subscription => return Err(vec!["subscriptions cannot be endpoints".to_owned()]),
        };
        let variables = operation
            .node
            .variable_definitions
            .iter()
            .map(|v| {
                let ty = &v.node.var_type.node;
                let kind = match &ty.base {
                    async_graphql::parser::types::BaseType::List(_) => VarKind::Json,
                    async_graphql::parser::types::BaseType::Named(n) => {
                        match (n.as_str(), self.model.types.get(n.as_str())) {
                            ("Int", _) => VarKind::Int,
                            ("Float", _) => VarKind::Float,
                            ("Boolean", _) => VarKind::Boolean,
                            (_, Some(model::TypeDef::Input { .. })) => VarKind::Json,
                            _ => VarKind::Text,
                        }
                    }
                };
                (v.node.name.node.to_string(), kind)
            })
            .collect();
        let errors: Vec<String> = self
            .validate(text, &document, operation_name)
            .await
            .iter()
            .map(|e| match e.locations.first() {
                Some(p) => format!("{}:{}: {}", p.line, p.column, e.message),
                None => e.message.clone(),
            })
            .collect();
        if !errors.is_empty() {
            return Err(errors);
        }
        limits::check(&document, operation_name, &self.model, &Map::new(), self.operation_limits)
            .map_err(|e| vec![e])?;
        let document = Arc::new(document);
        let operation = self.compile(&document, operation_name, None).map_err(|e| vec![e])?;
        Ok(Prepared {
            text: text.to_owned(),
            operation_name: operation_name.map(str::to_owned),
            kind,
            document,
            variables,
            operation,
        })
    }

    /// Validates a parsed document against this schema without running it (in
    /// introspection-only mode no resolver runs). Errors that depend on variable values are
    /// left to the request (variables are coerced per request).
    async fn validate(
        &self,
        text: &str,
        document: &ExecutableDocument,
        operation_name: Option<&str>,
    ) -> Vec<ServerError> {
        let mut request = Request::new(text).only_introspection();
        if let Some(name) = operation_name {
            request = request.operation_name(name);
        }
        request.set_parsed_query(document.clone());
        let response = self.schema.execute(request).await;
        response
            .errors
            .into_iter()
            .filter(|e| {
                // Validation runs without variables; introspection run there reads them.
                let unset_variable = e.message.starts_with("Variable ")
                    && e.message.ends_with(" is not defined.")
                    && !e.message.contains('"');
                !e.message.contains("is not provided")
                    && !e.message.starts_with("Invalid value for argument")
                    && !unset_variable
            })
            .collect()
    }

    /// The compiled operation for a validated document.
    fn compile(
        &self,
        document: &Arc<ExecutableDocument>,
        operation_name: Option<&str>,
        text: Option<&str>,
    ) -> Result<Arc<plan::Operation>, String> {
        let op = plan::pick(document, operation_name)?;
        if op.ty == OperationType::Subscription {
            return Err("subscriptions are not supported".to_owned());
        }
        let mut op =
            plan::Operation::new(document.clone(), operation_name.map(str::to_owned), self.model.clone())?;
        op.text = text.map(str::to_owned);
        op.check().map_err(|conflicts| conflicts.join("\n"))?;
        Ok(Arc::new(op))
    }

    /// The compiled operation of this text and operation name, if the cache holds it.
    fn cached_operation(&self, request: &GraphqlRequest) -> Option<Arc<plan::Operation>> {
        let key = operation_key(&request.query, request.operation_name.as_deref());
        let mut cache = self.operations.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let op = cache.get(&key)?;
        (op.text.as_deref() == Some(request.query.as_str())
            && op.operation_name.as_deref() == request.operation_name.as_deref())
        .then(|| op.clone())
    }

    /// The compiled operation of an ad-hoc request: from the cache, or validated and compiled
    /// now. `Err`: the request error to answer.
    async fn operation_of(&self, parsed: &Parsed) -> Result<Arc<plan::Operation>, Outcome> {
        if let Some(op) = &parsed.operation {
            return Ok(op.clone());
        }
        let key = operation_key(&parsed.request.query, parsed.request.operation_name.as_deref());
        let name = parsed.request.operation_name.as_deref();
        let errors = self.validate(&parsed.request.query, &parsed.document, name).await;
        if !errors.is_empty() {
            return Err(Outcome::request_errors(errors));
        }
        let op = self
            .compile(&parsed.document, name, Some(&parsed.request.query))
            .map_err(|e| Outcome::request_error(&e))?;
        let selections = usize::try_from(parsed.selections).unwrap_or(usize::MAX);
        let weight = selections.saturating_mul(op.max_plans()).max(1);
        self.operations.lock().unwrap_or_else(std::sync::PoisonError::into_inner).put(
            key,
            op.clone(),
            weight,
        );
        Ok(op)
    }

    /// Runs a compiled operation: variables coerced, limits checked, steps executed, the
    /// response written.
    async fn run(
        &self,
        op: &plan::Operation,
        variables: Map<String, Value>,
        fetch_log: Option<crate::backends::FetchLog>,
    ) -> Outcome {
        use tracing::Instrument;
        if !crate::telemetry::otel::traced() {
            return self.run_inner(op, variables, fetch_log).await;
        }
        let span = tracing::info_span!(
            "graphql execute",
            graphql.operation.name = op.operation_name.as_deref().unwrap_or(""),
        );
        self.run_inner(op, variables, fetch_log).instrument(span).await
    }

    async fn run_inner(
        &self,
        op: &plan::Operation,
        variables: Map<String, Value>,
        fetch_log: Option<crate::backends::FetchLog>,
    ) -> Outcome {
        let coerced = match exec::coerce_variables(op.definition(), &self.model, &variables) {
            Ok(v) => v,
            Err(problems) => {
                return Outcome::request_errors(
                    problems.into_iter().map(|m| ServerError::new(m, None)).collect(),
                );
            }
        };
        if let Err(e) = limits::check(
            &op.document,
            op.operation_name.as_deref(),
            &self.model,
            &variables,
            self.operation_limits,
        ) {
            return Outcome::request_error(&e);
        }
        let plan = match op.plan(&coerced) {
            Ok(plan) => plan,
            Err(conflicts) => {
                return Outcome::request_errors(
                    conflicts.into_iter().map(|m| ServerError::new(m, None)).collect(),
                );
            }
        };
        let nulls: Vec<ServerError> = plan
            .required
            .iter()
            .filter(|(v, _)| coerced.get(v).is_none_or(Value::is_null))
            .map(|(v, place)| {
                ServerError::new(format!("variable ${v} is null where {place} needs a value"), None)
            })
            .collect();
        if !nulls.is_empty() {
            return Outcome::request_errors(nulls);
        }
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        let batcher = Batcher::new(self.backends.clone(), deadline).with_log(fetch_log);
        let ctx = exec::Context {
            batcher: &batcher,
            js: self.js.as_ref(),
            variables: &coerced,
            default_list_size: self.operation_limits.default_list_size as usize,
        };
        let (store, introspection) =
            tokio::join!(exec::run(&plan, &ctx), self.introspect(op, &plan, &coerced));
        let hint = self.last_size.load(std::sync::atomic::Ordering::Relaxed);
        let response = project::write(&plan, &store, introspection.as_ref(), hint + hint / 8);
        self.last_size.store(response.body.len(), std::sync::atomic::Ordering::Relaxed);
        Outcome {
            body: response.body.into(),
            request_error: false,
            error_codes: project::error_codes(&response.errors),
            parts: Some(response.parts),
        }
    }

    /// The answers of the operation's `__schema` and `__type` fields, from async-graphql's
    /// introspection (which resolves nothing else), by response key.
    async fn introspect(
        &self,
        op: &plan::Operation,
        plan: &plan::Plan,
        variables: &Map<String, Value>,
    ) -> Option<Map<String, Value>> {
        if !plan.introspection {
            return None;
        }
        let mut request = Request::new(op.text.clone().unwrap_or_default())
            .only_introspection()
            .variables(Variables::from_json(Value::Object(variables.clone())));
        if let Some(name) = &op.operation_name {
            request = request.operation_name(name);
        }
        request.set_parsed_query(ExecutableDocument::clone(&op.document));
        match self.schema.execute(request).await.data.into_json() {
            Ok(Value::Object(map)) => Some(map),
            _ => Some(Map::new()),
        }
    }

    /// Runs a prepared document with these variables (operation limits checked first).
    /// `fetch_log` records the backend calls, when someone asked to see them.
    pub async fn execute_prepared(
        &self,
        prepared: &Prepared,
        variables: Map<String, Value>,
        fetch_log: Option<crate::backends::FetchLog>,
    ) -> Outcome {
        self.run(&prepared.operation, variables, fetch_log).await
    }

    pub async fn execute(&self, parsed: Parsed) -> Outcome {
        match self.operation_of(&parsed).await {
            Err(outcome) => outcome,
            Ok(op) => {
                let variables = parsed.request.variables.unwrap_or_default();
                self.run(&op, variables, parsed.request.fetch_log).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn operation() -> Arc<plan::Operation> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema");
        let schema = Arc::new(check_dir(&dir).unwrap());
        let doc = Arc::new(async_graphql::parser::parse_query("{ title(id: 1) { name } }").unwrap());
        Arc::new(plan::Operation::new(doc, None, schema).unwrap())
    }

    #[test]
    fn the_operation_cache_is_bounded_by_weight_not_count() {
        let op = operation();
        let mut cache = OperationCache { lru: lru::LruCache::unbounded(), weight: 0 };
        let heavy = OPERATION_CACHE_WEIGHT / 4;
        for key in 0..10 {
            cache.put(key, op.clone(), heavy);
            assert!(cache.weight <= OPERATION_CACHE_WEIGHT);
        }
        // The four most recent fit; the older ones went, least recently used first.
        assert_eq!(cache.lru.len(), 4);
        assert!(cache.get(&9).is_some() && cache.get(&5).is_none());
        // Too heavy alone: not kept, and nothing else is pushed out for it.
        cache.put(99, op.clone(), OPERATION_CACHE_WEIGHT + 1);
        assert!(cache.get(&99).is_none() && cache.lru.len() == 4);
        // Putting a key again replaces its weight.
        cache.put(9, op, 1);
        assert_eq!(cache.weight, 3 * heavy + 1);
    }
}
