//! The typed configuration tree: defaults here, then `facade.toml` (or `--config FILE`), then
//! `FACADE_*` environment variables (`__` separates levels: `FACADE_LOG__FORMAT=json`), then
//! command-line flags. Unknown keys are errors, so a typo never passes silently.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// The whole configuration of one Facade instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the HTTP server listens on.
    pub listen: SocketAddr,
    /// Folder holding the facade schema (`*.graphql`).
    pub schema_dir: PathBuf,
    /// Where the schema comes from and how it reloads.
    pub schema: SchemaConfig,
    /// Limits on what a request may ask.
    pub limits: Limits,
    /// Engine-wide defaults for backends that do not set their own.
    pub engine: EngineConfig,
    /// Per-backend overrides of what `@backend` declares, by backend name.
    pub backends: BTreeMap<String, BackendConfig>,
    /// Logging.
    pub log: LogConfig,
    /// Traces over OpenTelemetry (off unless an endpoint is set here or in
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub telemetry: TelemetryConfig,
    /// Demo mode: starts the demo backends in-process and binds the schema to them.
    pub demo: DemoConfig,
    /// Seconds in-flight requests get to finish after SIGTERM or Ctrl-C.
    pub shutdown_grace_secs: u64,
    /// The admin API.
    pub admin: AdminConfig,
    /// Where the registry (clients, endpoints, versions, rollouts, tokens) lives.
    pub database: DatabaseConfig,
    /// What devices may send to `/graphql`.
    pub graphql: GraphqlConfig,
    /// The QuickJS pool for transforms and `@js` fields.
    pub scripts: ScriptsConfig,
    /// Connection and request timeouts of the HTTP server.
    pub server: ServerConfig,
}

/// Timeouts that keep a slow or silent client from holding a connection (slowloris).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Time a request's headers may take to arrive, in milliseconds, counted from when the
    /// connection is ready for the request (so it also closes an HTTP/1.1 keep-alive
    /// connection that stays silent that long).
    pub header_read_timeout_ms: u64,
    /// A connection on which no byte moves either way for this long is closed, in
    /// milliseconds (HTTP/1.1 and HTTP/2). Keep it above `request_timeout_ms`.
    pub idle_timeout_ms: u64,
    /// A request body that sends no data for this long fails with 408, in milliseconds.
    pub body_timeout_ms: u64,
    /// Time one request may take in all, body included, in milliseconds; then 408.
    pub request_timeout_ms: u64,
    /// Threads that serve connections, each with its own event loop (0: one per core). A
    /// connection stays on the thread it was handed to; the threads take turns.
    pub workers: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            body_timeout_ms: 10_000,
            request_timeout_ms: 30_000,
            workers: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScriptsConfig {
    /// Script worker processes, each running one call at a time (0: one per core).
    #[serde(alias = "threads")]
    pub workers: usize,
    /// Calls waiting for a worker at most; more are refused at once.
    pub queue: usize,
    /// Longest a call may wait for a worker, in milliseconds; it is refused after that.
    pub max_wait_ms: u64,
    /// CPU time one call may use, in milliseconds (the script's own, not wall time). A call
    /// past it is stopped, in a native built-in too (its worker is ended and replaced).
    pub deadline_ms: u64,
    /// QuickJS heap one worker may use, in MiB.
    pub memory_mib: usize,
    /// Address space one worker process may map beyond what it has once started, in MiB (an
    /// OS limit beside the QuickJS heap limit, for memory QuickJS does not count; 0: none).
    pub worker_address_space_mib: u64,
    /// The program workers run as `PROGRAM script-worker` (default: this executable).
    pub worker_program: Option<PathBuf>,
    /// Stack one call may use, in KiB.
    pub stack_kib: usize,
    /// Request headers a transform sees in `ctx.device.headers` (lower case).
    pub device_headers: Vec<String>,
    /// Folder whose `*.js` files export the functions of `@js` fields.
    pub resolvers_dir: PathBuf,
}

impl Default for ScriptsConfig {
    fn default() -> Self {
        Self {
            workers: 0,
            queue: 1024,
            max_wait_ms: 1000,
            deadline_ms: 50,
            memory_mib: 16,
            worker_address_space_mib: 256,
            worker_program: None,
            stack_kib: 512,
            device_headers: vec!["user-agent".into(), "accept-language".into(), "x-device-model".into()],
            resolvers_dir: PathBuf::from("resolvers-js"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GraphqlConfig {
    /// Safelist mode: requests without an admin or team token may run only published
    /// documents (by `documentId` or persisted-query hash). Turn on in production.
    pub safelist: bool,
    /// Whether requests without a token may use introspection. Turn off in production.
    pub introspection: bool,
    /// Automatic persisted queries kept in memory, at most.
    pub apq_capacity: usize,
    /// Bytes of automatic-persisted-query text kept in memory, at most (least recently
    /// used out first). One text may be at most 64 KiB.
    pub apq_max_bytes: usize,
    /// Identical queries in flight at the same moment (same text, operation name, variables
    /// and introspection right; no debug trace) run once, and every request waiting gets the
    /// same answer. Off by default: each request then runs on its own (identical backend
    /// calls are still shared, per backend's `shareInFlight`). Never a mutation.
    pub share_identical_requests: bool,
}

impl Default for GraphqlConfig {
    fn default() -> Self {
        Self {
            safelist: false,
            introspection: true,
            apq_capacity: 10_000,
            apq_max_bytes: 16 * 1024 * 1024,
            share_identical_requests: false,
        }
    }
}

/// How the facade schema is found and reloaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchemaConfig {
    /// `dir` (the default): `schema_dir` on this machine, reloaded when a file in it changes
    /// and on SIGHUP. `registry`: the version published with `facade schema publish`; every
    /// instance on the same registry switches to a new one within a second.
    pub source: SchemaSource,
    /// Watch `schema_dir` for changes (with `source = "dir"`).
    pub watch: bool,
    /// Quiet time after the last file change before a reload, in milliseconds (an editor's
    /// save is several events).
    pub watch_settle_ms: u64,
}

impl Default for SchemaConfig {
    fn default() -> Self {
        Self { source: SchemaSource::Dir, watch: true, watch_settle_ms: 100 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://FILE` (created and migrated on first start) or `postgres://…` for several
    /// instances sharing one registry.
    pub url: String,
    /// Seconds between checks for changes made by other instances (PostgreSQL also pushes
    /// them at once with LISTEN/NOTIFY).
    pub poll_secs: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self { url: "sqlite://facade.db".to_owned(), poll_secs: 5 }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// SHA-256 (hex) of each admin token; `facade token new` makes a token and its hash.
    /// Empty: the admin API answers 403.
    pub token_sha256: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            schema_dir: PathBuf::from("schema"),
            schema: SchemaConfig::default(),
            limits: Limits::default(),
            engine: EngineConfig::default(),
            backends: BTreeMap::new(),
            log: LogConfig::default(),
            telemetry: TelemetryConfig::default(),
            demo: DemoConfig::default(),
            shutdown_grace_secs: 10,
            admin: AdminConfig::default(),
            database: DatabaseConfig::default(),
            graphql: GraphqlConfig::default(),
            scripts: ScriptsConfig::default(),
            server: ServerConfig::default(),
        }
    }
}

/// Read as they are by the engine (`graphql::limits`, validation) and the HTTP layer: no
/// second struct restates them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body accepted, in bytes; larger ones get 413.
    pub body_bytes: usize,
    /// Deepest selection nesting a query may have.
    pub max_depth: usize,
    /// Most aliases in one operation.
    pub max_aliases: usize,
    /// Most root fields in one operation.
    pub max_root_fields: usize,
    /// Highest estimated cost: each field once per item of the lists above it.
    pub max_cost: u64,
    /// List length the cost assumes, and the fetch then asks for, when a list field's
    /// limit argument (`first`) is null or unset and has no default.
    pub default_list_size: u64,
    /// Most selections one operation or fragment may have with every fragment expanded;
    /// checked before anything else walks a document.
    pub max_selections: u64,
    /// Deepest chain of fragment spreads (`...A` whose `A` spreads `...B`, …).
    pub max_fragment_depth: usize,
    /// Requests per second per client (`X-Facade-Client`, or the endpoint's client).
    pub client_rate_per_sec: u32,
    /// Burst per client.
    pub client_burst: u32,
    /// Requests per second per device (`X-Device-Id`).
    pub device_rate_per_sec: u32,
    /// Burst per device.
    pub device_burst: u32,
    /// Endpoints one team's clients may have in all; a publish that would add one more is
    /// refused (409).
    pub max_endpoints_per_team: u64,
    /// Characters of documents and scripts one team's stored versions may hold in all; a
    /// publish past it is refused (409).
    pub max_stored_chars_per_team: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            body_bytes: 1024 * 1024,
            max_depth: 16,
            max_aliases: 30,
            max_root_fields: 20,
            max_cost: 50_000,
            default_list_size: 10,
            max_selections: 10_000,
            max_fragment_depth: 16,
            client_rate_per_sec: 5_000,
            client_burst: 10_000,
            device_rate_per_sec: 20,
            device_burst: 40,
            max_endpoints_per_team: 200,
            max_stored_chars_per_team: 64 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Most keys sent in one batched backend call; more keys are split over several calls.
    pub max_batch_size: usize,
    /// Time allowed for one attempt of a backend call, in milliseconds.
    pub timeout_ms: u64,
    /// Time allowed for a whole request; backend attempts get what is left of it.
    pub request_timeout_ms: u64,
    /// Default bulkhead: most calls in flight per backend.
    pub max_concurrent: usize,
    /// Default retries of a failed read per backend call.
    pub max_retries: u32,
    /// Largest answer body read from a backend, in bytes (a larger one fails its call).
    pub max_body_bytes: u64,
}

impl EngineConfig {
    /// The engine-wide defaults as the bottom layer of every backend's policy.
    pub fn policy_defaults(&self) -> PolicyOverrides {
        PolicyOverrides {
            timeout_ms: Some(self.timeout_ms),
            max_batch_size: Some(self.max_batch_size),
            max_concurrent: Some(self.max_concurrent),
            max_retries: Some(self.max_retries),
            max_body_bytes: Some(self.max_body_bytes),
            ..PolicyOverrides::default()
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_batch_size: BACKEND_DEFAULTS.max_batch_size.unwrap_or(0),
            timeout_ms: BACKEND_DEFAULTS.timeout_ms.unwrap_or(0),
            request_timeout_ms: 5000,
            max_concurrent: BACKEND_DEFAULTS.max_concurrent.unwrap_or(0),
            max_retries: BACKEND_DEFAULTS.max_retries.unwrap_or(0),
            max_body_bytes: BACKEND_DEFAULTS.max_body_bytes.unwrap_or(0),
        }
    }
}

/// One backend's config: where it is, and its policy numbers (the same type `@backend` and
/// the admin API use; see [`PolicyOverrides`] for each number and its range).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "figment::value::Dict")]
pub struct BackendConfig {
    /// Base URL, replacing the one in `@backend`.
    pub url: Option<String>,
    /// Policy numbers, winning over `@backend`.
    #[serde(flatten)]
    pub policy: PolicyOverrides,
}

/// Read by hand because serde's `flatten` lets unknown keys through: `url`, then the rest as
/// a [`PolicyOverrides`], whose unknown keys are errors.
impl TryFrom<figment::value::Dict> for BackendConfig {
    type Error = String;

    fn try_from(mut table: figment::value::Dict) -> Result<Self, String> {
        let url = match table.remove("url") {
            None => None,
            Some(v) => Some(v.into_string().ok_or("url must be a string")?),
        };
        let policy =
            PolicyOverrides::deserialize(&figment::value::Value::from(table)).map_err(|e| e.to_string())?;
        Ok(Self { url, policy })
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    pub otlp: OtlpConfig,
}

/// The OTLP trace exporter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpConfig {
    /// The collector's base URL, such as `http://127.0.0.1:4318` (traces go to `/v1/traces`).
    /// Empty: `OTEL_EXPORTER_OTLP_ENDPOINT` if set, else no traces.
    pub endpoint: String,
    /// `http/protobuf` or `http/json` (`OTEL_EXPORTER_OTLP_PROTOCOL` when unset here).
    pub protocol: Option<String>,
    /// Share of requests traced, 0.0 to 1.0.
    pub sampling_ratio: f64,
    /// A caller's `traceparent` with the sampled flag forces its request to be traced (and
    /// one without it leaves it out), whatever `sampling_ratio` says. Off by default: turn
    /// it on only where the callers are your own services, not devices.
    pub trust_caller_sampling: bool,
    /// Pass a caller's `tracestate` on to the backends. Off by default (it is vendor data the
    /// caller chose).
    pub forward_tracestate: bool,
    /// `service.name` of the spans (`OTEL_SERVICE_NAME` wins; default `facade`).
    pub service_name: String,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            protocol: None,
            sampling_ratio: 1.0,
            trust_caller_sampling: false,
            forward_tracestate: false,
            service_name: "facade".to_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// An env-filter directive such as `info` or `facade=debug,info`; `RUST_LOG` wins if set.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Text, filter: "info".to_owned() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DemoConfig {
    /// Start the demo backends and bind every backend of the schema to them.
    pub enabled: bool,
    /// Seed of the demo data.
    pub seed: u64,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self { enabled: false, seed: 1 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    Missing(PathBuf),
    #[error("bad configuration: {0}")]
    Invalid(#[from] Box<figment::Error>),
    /// Settings out of their range, each named: `scripts.deadline_ms must be at least 1, got 0`.
    #[error("bad configuration: {}", .0.join("; "))]
    OutOfRange(Vec<String>),
}

impl Config {
    /// Loads defaults, then the file (`facade.toml` if present when `file` is `None`), then
    /// `FACADE_*` environment variables.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) if !path.exists() => return Err(ConfigError::Missing(path.to_owned())),
            Some(path) => figment = figment.merge(Toml::file_exact(path)),
            None if Path::new("facade.toml").exists() => {
                figment = figment.merge(Toml::file_exact("facade.toml"))
            }
            None => {}
        }
        // FACADE_TEST_* variables belong to the test suite, and FACADE_URL / FACADE_TOKEN to
        // the admin-API client commands, not to the server's config.
        let env = Env::prefixed("FACADE_").split("__").filter(|key| {
            let k = key.as_str();
            !k.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("test_"))
                && !k.eq_ignore_ascii_case("url")
                && !k.eq_ignore_ascii_case("token")
        });
        let config: Config = figment.merge(env).extract().map_err(|e| ConfigError::Invalid(Box::new(e)))?;
        config.check()?;
        Ok(config)
    }

    /// Every setting out of its range, named as the file spells it; the one check at start-up
    /// (`load`, and `App::build` for a config made in code). Nothing is clamped silently.
    pub fn check(&self) -> Result<(), ConfigError> {
        let mut bad = Vec::new();
        let mut at_least = |name: &str, value: u64, min: u64| {
            if value < min {
                bad.push(format!("{name} must be at least {min}, got {value}"));
            }
        };
        at_least("scripts.max_wait_ms", self.scripts.max_wait_ms, 1);
        at_least("scripts.deadline_ms", self.scripts.deadline_ms, 1);
        at_least("scripts.memory_mib", self.scripts.memory_mib as u64, 1);
        at_least("scripts.stack_kib", self.scripts.stack_kib as u64, 64);
        at_least("database.poll_secs", self.database.poll_secs, 1);
        at_least("server.header_read_timeout_ms", self.server.header_read_timeout_ms, 1);
        at_least("server.idle_timeout_ms", self.server.idle_timeout_ms, 1);
        at_least("server.body_timeout_ms", self.server.body_timeout_ms, 1);
        at_least("server.request_timeout_ms", self.server.request_timeout_ms, 1);
        at_least("engine.request_timeout_ms", self.engine.request_timeout_ms, 1);
        if self.server.workers > MAX_SERVING_THREADS {
            bad.push(format!(
                "server.workers must be at most {MAX_SERVING_THREADS} (each holds a runtime and its own backend pools), got {}",
                self.server.workers
            ));
        }
        for problem in self.engine.policy_defaults().check() {
            bad.push(format!("config [engine]: {problem}"));
        }
        for (name, backend) in &self.backends {
            for problem in backend.policy.check() {
                bad.push(format!("config [backends.{name}]: {problem}"));
            }
        }
        if bad.is_empty() { Ok(()) } else { Err(ConfigError::OutOfRange(bad)) }
    }
}

/// Serving threads at most (`[server] workers`).
pub const MAX_SERVING_THREADS: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::result_large_err, reason = "figment::Jail's closure returns figment::Error")]
    fn file_then_env_override_defaults_and_unknown_keys_fail() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "facade.toml",
                "listen = \"127.0.0.1:9000\"\n[engine]\nmax_batch_size = 50\n[backends.catalog]\nurl = \"http://127.0.0.1:1\"\n",
            )?;
            jail.set_env("FACADE_LOG__FORMAT", "json");
            jail.set_env("FACADE_TEST_DATABASE_URL", "postgres://ignored");
            let config = Config::load(None).expect("loads");
            assert_eq!(config.listen.port(), 9000);
            assert_eq!(config.engine.max_batch_size, 50);
            assert_eq!(config.log.format, LogFormat::Json);
            assert_eq!(config.backends["catalog"].url.as_deref(), Some("http://127.0.0.1:1"));
            assert_eq!(config.limits, Limits::default());

            jail.create_file("bad.toml", "lisen = \"127.0.0.1:1\"\n")?;
            let error = Config::load(Some(Path::new("bad.toml"))).unwrap_err().to_string();
            assert!(error.contains("lisen"), "{error}");
            assert!(matches!(Config::load(Some(Path::new("nope.toml"))), Err(ConfigError::Missing(_))));

            // A backend's policy numbers: snake_case (or the API's camelCase); a typo fails.
            jail.create_file("b.toml", "[backends.catalog]\ntimeout_ms = 300\nmaxRetries = 2\n")?;
            let config = Config::load(Some(Path::new("b.toml"))).expect("loads");
            let policy = &config.backends["catalog"].policy;
            assert_eq!((policy.timeout_ms, policy.max_retries), (Some(300), Some(2)));
            jail.create_file("t.toml", "[backends.catalog]\ntiemout_ms = 300\n")?;
            let error = Config::load(Some(Path::new("t.toml"))).unwrap_err().to_string();
            assert!(error.contains("tiemout_ms"), "{error}");
            Ok(())
        });
    }
}

/// Where an instance takes its schema from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SchemaSource {
    /// The schema folder (one machine; reloads on file change and SIGHUP).
    #[default]
    Dir,
    /// The version published in the registry (every instance runs the same one).
    Registry,
}

/// Each default of a backend's policy, written here once: the bottom layer under `[engine]`,
/// `@backend`, `[backends.NAME]` and the admin API (the engine's `Resilience::default` and
/// [`EngineConfig::default`] read it). No rate limit by default.
pub const BACKEND_DEFAULTS: PolicyOverrides = PolicyOverrides {
    timeout_ms: Some(1000),
    max_batch_size: Some(200),
    max_concurrent: Some(64),
    rate_per_sec: None,
    burst: None,
    max_retries: Some(1),
    retry_ratio: Some(0.2),
    retry_floor_per_sec: Some(10),
    breaker_min_calls: Some(20),
    breaker_failure_ratio: Some(0.5),
    breaker_open_ms: Some(5_000),
    breaker_max_open_ms: Some(60_000),
    max_body_bytes: Some(16 * 1024 * 1024),
    share_in_flight: Some(true),
};

/// Every number of a backend's policy that may be set: by a schema owner (`@backend`), in
/// config (`[engine]` defaults and `[backends.NAME]`), or by an operator at runtime (admin
/// `PATCH`). One type for all four, one [`PolicyOverrides::over`] to layer them, one
/// [`PolicyOverrides::check`] for their ranges, and [`PolicyOverrides::apply`] to turn them
/// into the [`Resilience`] in force. Field names are snake_case (config); the camelCase
/// names of the SDL and the admin API are accepted as aliases.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyOverrides {
    /// Time allowed for one attempt, in milliseconds (1–600,000).
    #[serde(alias = "timeoutMs")]
    pub timeout_ms: Option<u64>,
    /// Most keys in one batched call (1–100,000).
    #[serde(alias = "maxBatchSize")]
    pub max_batch_size: Option<usize>,
    /// Bulkhead: most calls in flight (1–100,000).
    #[serde(alias = "maxConcurrent")]
    pub max_concurrent: Option<usize>,
    /// Rate limit: calls per second; 0 removes the limit.
    #[serde(alias = "ratePerSec")]
    pub rate_per_sec: Option<u32>,
    /// Rate limit burst (at least 1; default: `rate_per_sec`).
    pub burst: Option<u32>,
    /// Retries of a failed read (0–10).
    #[serde(alias = "maxRetries")]
    pub max_retries: Option<u32>,
    /// Retry budget: share of the last 10 s of requests that retries may add (0.0–1.0).
    #[serde(alias = "retryRatio")]
    pub retry_ratio: Option<f64>,
    /// Retry budget floor, retries per second.
    #[serde(alias = "retryFloorPerSec")]
    pub retry_floor_per_sec: Option<u32>,
    /// Circuit breaker: fewest calls in the 10 s window before it may trip (at least 1).
    #[serde(alias = "breakerMinCalls")]
    pub breaker_min_calls: Option<u32>,
    /// Circuit breaker: failure share that trips it (0.0–1.0).
    #[serde(alias = "breakerFailureRatio")]
    pub breaker_failure_ratio: Option<f64>,
    /// Circuit breaker: first open time in milliseconds (at least 1; doubles on failed trials).
    #[serde(alias = "breakerOpenMs")]
    pub breaker_open_ms: Option<u64>,
    /// Circuit breaker: longest open time in milliseconds (not below `breaker_open_ms`).
    #[serde(alias = "breakerMaxOpenMs")]
    pub breaker_max_open_ms: Option<u64>,
    /// Largest answer body read from the backend, in bytes (1 KiB–1 GiB); a larger one fails
    /// the call, and nothing past the limit is read.
    #[serde(alias = "maxBodyBytes")]
    pub max_body_bytes: Option<u64>,
    /// Identical reads in flight at once (same method, path, body) made once, their answer
    /// handed to every request waiting for it. Never a mutation's call or a single POST.
    #[serde(alias = "shareInFlight")]
    pub share_in_flight: Option<bool>,
}

impl PolicyOverrides {
    /// `self` layered over `base`: each number set here wins.
    pub fn over(&self, base: &PolicyOverrides) -> PolicyOverrides {
        macro_rules! pick {
            ($($f:ident),*) => { PolicyOverrides { $($f: self.$f.or(base.$f)),* } };
        }
        pick!(
            timeout_ms,
            max_batch_size,
            max_concurrent,
            rate_per_sec,
            burst,
            max_retries,
            retry_ratio,
            retry_floor_per_sec,
            breaker_min_calls,
            breaker_failure_ratio,
            breaker_open_ms,
            breaker_max_open_ms,
            max_body_bytes,
            share_in_flight
        )
    }

    /// Every number out of its range, each named as the admin API and the SDL spell it.
    pub fn check(&self) -> Vec<String> {
        let mut bad = Vec::new();
        let mut range = |name: &str, v: Option<f64>, lo: f64, hi: f64| {
            if let Some(v) = v
                && !(lo..=hi).contains(&v)
            {
                bad.push(format!("{name} must be between {lo} and {hi}, got {v}"));
            }
        };
        range("timeoutMs", self.timeout_ms.map(|v| v as f64), 1.0, 600_000.0);
        range("maxBatchSize", self.max_batch_size.map(|v| v as f64), 1.0, 100_000.0);
        range("maxConcurrent", self.max_concurrent.map(|v| v as f64), 1.0, 100_000.0);
        range("burst", self.burst.map(f64::from), 1.0, f64::from(u32::MAX));
        range("maxRetries", self.max_retries.map(f64::from), 0.0, 10.0);
        range("retryRatio", self.retry_ratio, 0.0, 1.0);
        range("breakerMinCalls", self.breaker_min_calls.map(f64::from), 1.0, f64::from(u32::MAX));
        range("breakerFailureRatio", self.breaker_failure_ratio, 0.0, 1.0);
        range("breakerOpenMs", self.breaker_open_ms.map(|v| v as f64), 1.0, 3_600_000.0);
        range("breakerMaxOpenMs", self.breaker_max_open_ms.map(|v| v as f64), 1.0, 3_600_000.0);
        range("maxBodyBytes", self.max_body_bytes.map(|v| v as f64), 1024.0, (1u64 << 30) as f64);
        if let (Some(open), Some(max)) = (self.breaker_open_ms, self.breaker_max_open_ms)
            && max < open
        {
            bad.push(format!("breakerMaxOpenMs ({max}) must not be below breakerOpenMs ({open})"));
        }
        bad
    }
}
