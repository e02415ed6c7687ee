//! The engine: one facade schema bound to its backends, built (and rebuilt beside the old one
//! on a reload, backends that did not change carried over) from SDL files, and the one `run`
//! every caller's operation goes through: variables coerced, limits checked, the plan's steps
//! executed against the backends, the response written. Preparing an operation is
//! `operation.rs`; validation and introspection `validate.rs`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::ServerError;
use serde_json::{Map, Value};

use super::answer::Answer;
use super::model::{self, Diagnostics, FacadeSchema};
use super::operation::{GraphqlRequest, Operations, Parsed, Prepared};
use super::sdl::{self, LoadError};
use super::validate::Validator;
use super::{exec, input, js, limits, plan, project};
use crate::backends::policy::Resilience;
use crate::backends::{BackendSettings, Backends, Batcher, ClientError};
use crate::config::{BackendConfig, EngineConfig, Limits};

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
    /// `[limits]`: validation's depth, the operation limits, the default list size.
    pub limits: Limits,
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

/// An executable facade schema bound to its backends. Immutable; swapped whole on reload.
pub struct Engine {
    validator: Arc<Validator>,
    operations: Operations,
    js: Option<js::JsFunctions>,
    limits: Limits,
    request_timeout: Duration,
    backends: Arc<Backends>,
    model: Arc<FacadeSchema>,
    /// Ad-hoc documents compiled, by text and operation name (this engine's schema only).
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
        let validator =
            Arc::new(Validator::new(&model, options.limits.max_depth).map_err(|e| EngineError::Build(e.0))?);
        let model = Arc::new(model);
        let operations = Operations::new(model.clone(), options.limits, validator.clone());
        let request_timeout = Duration::from_millis(options.defaults.request_timeout_ms);
        Ok(Self {
            validator,
            operations,
            js: options.js.clone(),
            limits: options.limits,
            request_timeout,
            backends,
            model,
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
        self.validator.sdl()
    }

    /// Runs a compiled operation: variables coerced, limits checked, steps executed, the
    /// response written.
    pub async fn run(
        &self,
        op: &plan::Operation,
        variables: Map<String, Value>,
        fetch_log: Option<crate::backends::FetchLog>,
    ) -> Answer {
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
    ) -> Answer {
        let coerced = match input::coerce_variables(op.definition(), &self.model, &variables) {
            Ok(v) => v,
            Err(problems) => {
                return Answer::request_errors(
                    problems.into_iter().map(|m| ServerError::new(m, None)).collect(),
                );
            }
        };
        let plan = match op.plan(&coerced) {
            Ok(plan) => plan,
            Err(conflicts) => {
                return Answer::request_errors(
                    conflicts.into_iter().map(|m| ServerError::new(m, None)).collect(),
                );
            }
        };
        if let Err(e) = limits::check(&plan, &coerced, &self.limits) {
            return Answer::request_error(&e);
        }
        let nulls: Vec<ServerError> = plan
            .required
            .iter()
            .filter(|(v, _)| coerced.get(v).is_none_or(Value::is_null))
            .map(|(v, place)| {
                ServerError::new(format!("variable ${v} is null where {place} needs a value"), None)
            })
            .collect();
        if !nulls.is_empty() {
            return Answer::request_errors(nulls);
        }
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        let batcher = Batcher::new(self.backends.clone(), deadline).with_log(fetch_log);
        let ctx = exec::Context {
            batcher: &batcher,
            js: self.js.as_ref(),
            variables: &coerced,
            default_list_size: self.limits.default_list_size as usize,
        };
        let (store, introspection) =
            tokio::join!(exec::run(&plan, &ctx), self.validator.introspect(op, &plan, &coerced));
        let hint = self.last_size.load(std::sync::atomic::Ordering::Relaxed);
        let response = project::write(&plan, &store, introspection.as_ref(), hint + hint / 8);
        self.last_size.store(response.body.len(), std::sync::atomic::Ordering::Relaxed);
        Answer {
            body: response.body.into(),
            request_error: false,
            error_codes: project::error_codes(&response.errors),
            parts: Some(response.parts),
        }
    }

    /// Parses an ad-hoc request and bounds its structure (see [`Operations::parse`]).
    pub fn parse(&self, request: GraphqlRequest) -> Result<Parsed, Answer> {
        self.operations.parse(request)
    }

    /// Prepares a stored document (see [`Operations::prepare`]).
    pub async fn prepare(&self, text: &str, operation_name: Option<&str>) -> Result<Prepared, Vec<String>> {
        self.operations.prepare(text, operation_name).await
    }

    /// Runs a prepared document with these variables (operation limits checked first).
    /// `fetch_log` records the backend calls, when someone asked to see them.
    pub async fn execute_prepared(
        &self,
        prepared: &Prepared,
        variables: Map<String, Value>,
        fetch_log: Option<crate::backends::FetchLog>,
    ) -> Answer {
        self.run(prepared.operation(), variables, fetch_log).await
    }

    pub async fn execute(&self, parsed: Parsed) -> Answer {
        match self.operations.operation_of(&parsed).await {
            Err(outcome) => outcome,
            Ok(op) => {
                let (variables, fetch_log) = parsed.into_inputs();
                self.run(&op, variables, fetch_log).await
            }
        }
    }
}
