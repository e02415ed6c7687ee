//! The one place that wires modules together: config → demo backends (in demo mode) →
//! engine → HTTP router → listener. `App::build` binds (port 0 in tests) so callers learn
//! the address before serving; `run_until` serves until the shutdown future resolves.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use std::collections::HashMap;

use crate::config::{BackendConfig, Config};
use crate::demo::{DemoBackends, DemoError, DemoOptions};
use crate::graphql::js::JsFunctions;
use crate::graphql::{Engine, EngineError, EngineOptions};
use crate::http::{self, AppState};
use crate::registry::Registry;
use crate::scripts::{PoolSettings, ScriptLimits, ScriptPool, WorkerProgram};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Demo(#[from] DemoError),
    #[error("resolvers-js: {0}")]
    Resolvers(String),
    #[error("cannot start the script pool: {0}")]
    Scripts(std::io::Error),
    #[error("registry: {0}")]
    Registry(#[from] crate::registry::store::StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

/// The serving threads `[server] workers` asks for (checked by `Config::check`): 0 is one per
/// core.
fn serving_threads(configured: usize) -> usize {
    match configured {
        0 => std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(crate::config::MAX_SERVING_THREADS),
        n => n,
    }
}

/// A bound, ready-to-serve Facade instance.
pub struct App {
    listener: TcpListener,
    router: axum::Router,
    demo: Option<Arc<DemoBackends>>,
    timeouts: http::serve::Timeouts,
    /// Threads serving connections.
    workers: usize,
    grace: Duration,
}

/// Engine options from the config, plus the demo backends' addresses in demo mode.
pub fn engine_options(
    config: &Config,
    demo: Option<&DemoBackends>,
    js: Option<JsFunctions>,
) -> EngineOptions {
    let mut overrides: HashMap<String, BackendConfig> = config.backends.clone().into_iter().collect();
    if let Some(demo) = demo {
        for (name, url) in demo.urls() {
            overrides.entry(name.to_owned()).or_default().url = Some(url);
        }
    }
    EngineOptions { overrides, defaults: config.engine.clone(), limits: config.limits, js }
}

impl App {
    pub async fn build(config: &Config) -> Result<Self, AppError> {
        // A bad setting, then a taken port, fail the start before anything else is touched.
        config.check()?;
        let workers = serving_threads(config.server.workers);
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| AppError::Listen { addr: config.listen, source })?;
        // The metrics recorder before the backends: each registers its per-call series once,
        // with whichever recorder is installed then.
        crate::telemetry::metrics::handle();
        let demo = if config.demo.enabled {
            let options = DemoOptions { seed: config.demo.seed, ..DemoOptions::default() };
            Some(Arc::new(DemoBackends::start(&options).await?))
        } else {
            None
        };
        let program = match &config.scripts.worker_program {
            Some(path) => WorkerProgram(path.clone()),
            None => WorkerProgram::this_executable().map_err(AppError::Scripts)?,
        };
        let scripts = ScriptPool::start(PoolSettings {
            program,
            workers: config.scripts.workers,
            queue: config.scripts.queue,
            max_wait: Duration::from_millis(config.scripts.max_wait_ms),
            limits: ScriptLimits::from(&config.scripts),
            address_space: config.scripts.worker_address_space_mib * 1024 * 1024,
        })
        .map_err(AppError::Scripts)?;
        let js = JsFunctions::load(&config.scripts.resolvers_dir, scripts.clone())
            .await
            .map_err(AppError::Resolvers)?;
        let engine =
            Arc::new(Engine::load(&config.schema_dir, &engine_options(config, demo.as_deref(), Some(js)))?);

        let settings = crate::registry::schema::SchemaSettings {
            dir: config.schema_dir.clone(),
            source: config.schema.source,
        };
        let quotas = crate::registry::Quotas {
            endpoints_per_team: config.limits.max_endpoints_per_team,
            stored_chars_per_team: config.limits.max_stored_chars_per_team,
        };
        let registry = Registry::open_with(&config.database.url, engine, settings, quotas).await?;
        registry.watch(Duration::from_secs(config.database.poll_secs));
        // SIGHUP reloads in either mode; the folder is watched only when it is the source.
        crate::registry::schema::watch_dir(
            &registry,
            &config.schema_dir,
            config.schema.watch && config.schema.source == crate::config::SchemaSource::Dir,
            Duration::from_millis(config.schema.watch_settle_ms),
        );
        let admin_tokens = http::auth::AdminTokens(Arc::new(
            config.admin.token_sha256.iter().map(|h| h.trim().to_ascii_lowercase()).collect(),
        ));
        let state = AppState {
            registry: registry.clone(),
            admin_tokens,
            tokens: Arc::new(http::auth::TokenCache::default()),
            apq: Arc::new(http::apq::ApqCache::new(
                config.graphql.apq_capacity,
                config.graphql.apq_max_bytes,
            )),
            safelist: config.graphql.safelist,
            introspection: config.graphql.introspection,
            scripts: scripts.clone(),
            device_headers: Arc::new(
                config.scripts.device_headers.iter().map(|h| h.to_ascii_lowercase()).collect(),
            ),
            demo: demo.clone(),
            ops_streams: Arc::new(http::ops_stream::StreamSlots::default()),
            shared_requests: config
                .graphql
                .share_identical_requests
                .then(|| Arc::new(http::graphql::SharedRequests::new(http::graphql::MAX_SHARED_REQUESTS))),
        };
        if config.demo.enabled {
            crate::registry::samples::publish_samples(&registry, &scripts).await?;
        }
        crate::alloc::tune_for_server();
        let door = http::door::Door::new(
            http::door::DoorLimits {
                client_rate: config.limits.client_rate_per_sec,
                client_burst: config.limits.client_burst,
                device_rate: config.limits.device_rate_per_sec,
                device_burst: config.limits.device_burst,
            },
            {
                let registry = registry.clone();
                Arc::new(move |client: &str, endpoint: &str| registry.snapshot().knows(client, endpoint))
            },
        );
        let timeouts = http::serve::Timeouts {
            header_read: Duration::from_millis(config.server.header_read_timeout_ms),
            idle: Duration::from_millis(config.server.idle_timeout_ms),
            body: Duration::from_millis(config.server.body_timeout_ms),
            request: Duration::from_millis(config.server.request_timeout_ms),
        };
        let router = http::router(state, config.limits.body_bytes, door, timeouts);

        Ok(Self {
            listener,
            router,
            demo,
            timeouts,
            workers,
            grace: Duration::from_secs(config.shutdown_grace_secs),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    pub fn demo(&self) -> Option<&Arc<DemoBackends>> {
        self.demo.as_ref()
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish for the grace
    /// period before returning.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let (stopping_tx, mut stopping) = tokio::sync::watch::channel(false);
        let server =
            http::serve::serve(self.listener, self.router, self.timeouts, self.workers, async move {
                shutdown.await;
                tracing::info!("shutting down: finishing in-flight requests");
                let _ = stopping_tx.send(true);
            });
        let grace = self.grace;
        tokio::select! {
            result = server => result,
            _ = async move {
                let _ = stopping.wait_for(|s| *s).await;
                tokio::time::sleep(grace).await;
            } => {
                tracing::warn!(grace_secs = grace.as_secs(), "grace period over; dropping in-flight requests");
                Ok(())
            }
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serving_threads_default_to_the_cores_and_are_bounded() {
        assert!((1..=crate::config::MAX_SERVING_THREADS).contains(&serving_threads(0)));
        assert_eq!(serving_threads(3), 3);
        let mut config = Config::default();
        config.server.workers = crate::config::MAX_SERVING_THREADS + 1;
        config.scripts.deadline_ms = 0;
        let error = config.check().unwrap_err().to_string();
        assert!(error.contains("server.workers must be at most 256"), "{error}");
        assert!(error.contains("scripts.deadline_ms must be at least 1, got 0"), "{error}");
    }
}
