//! Demo backends: a Netflix-like set of REST/JSON services (members, lists, catalog, artwork,
//! ratings, history) over deterministic data, each on its own loopback listener with fault
//! knobs (latency, jitter, error rate, hang) and a request counter.
//!
//! Used by `facade serve --demo`, `facade demo-backends`, the tests and the benchmarks. This
//! module knows nothing of GraphQL or of the engine; the engine reaches it only over HTTP.

mod data;
mod routes;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use data::{DemoData, MAX_ROWS, PROFILES, TITLES, TITLES_PER_ROW};

/// The demo services, in the order the home screen reaches them.
pub const BACKEND_NAMES: [&str; 6] = ["members", "lists", "catalog", "artwork", "ratings", "history"];

/// Default first port of `facade demo-backends`; backends take consecutive ports.
pub const DEFAULT_BASE_PORT: u16 = 7101;

/// Most keys a demo batch route accepts in one call, like a real service would cap it.
pub const MAX_BATCH_KEYS: usize = 500;

/// What a demo backend does wrong, settable at start and at runtime.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Faults {
    /// Added latency for every request, in milliseconds.
    pub latency_ms: u64,
    /// Extra latency drawn uniformly from `0..=jitter_ms` per request.
    pub jitter_ms: u64,
    /// Share of requests answered with HTTP 500, from 0.0 to 1.0.
    pub error_rate: f64,
    /// Requests wait without answering until `hang` is turned off again.
    pub hang: bool,
    /// The next this-many requests fail (with `errorStatus`), then faults go back to the rest.
    pub fail_next: u32,
    /// Status of injected failures (default 500); 429 carries `Retry-After: retryAfterSecs`.
    pub error_status: Option<u16>,
    /// `Retry-After` seconds sent with an injected 429.
    pub retry_after_secs: Option<u32>,
}

impl Faults {
    /// Rejects values no backend could act on, naming the field at fault.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err(format!("errorRate must be between 0.0 and 1.0, got {}", self.error_rate));
        }
        const HOUR_MS: u64 = 3_600_000;
        if self.latency_ms > HOUR_MS || self.jitter_ms > HOUR_MS {
            return Err("latencyMs and jitterMs must be at most 3600000 (one hour)".to_owned());
        }
        if let Some(status) = self.error_status
            && !(400..=599).contains(&status)
        {
            return Err(format!("errorStatus must be a 4xx or 5xx status, got {status}"));
        }
        Ok(())
    }
}

/// The live state of one demo backend, shared by its request handlers.
#[derive(Debug)]
pub struct BackendState {
    name: &'static str,
    data: DemoData,
    requests: AtomicU64,
    faults: watch::Sender<Faults>,
    /// Injected failures still owed from `fail_next`.
    fail_next: std::sync::atomic::AtomicU32,
    /// What mutations wrote, on top of the seeded data (which never changes).
    pub(crate) writes: std::sync::Mutex<Writes>,
    /// The W3C `traceparent` of the last request that carried one (trace propagation shows).
    pub(crate) last_traceparent: std::sync::Mutex<Option<String>>,
    /// Seeded records' JSON, made on first use (see [`Memo`]).
    pub(crate) memo: Memo,
}

/// The JSON of the catalog's titles and of the artwork, each made the first time it is asked
/// for and kept: the seeded data never changes, they are most of a home screen's bytes, and
/// making them anew (names formatted, then serialized) cost the demo more than Facade spent
/// on the whole request. Bounded by the catalog: one slot per title (per size for artwork),
/// allocated only by the backend that serves them.
#[derive(Debug, Default)]
pub(crate) struct Memo {
    pub titles: Box<[std::sync::OnceLock<Box<[u8]>>]>,
    /// `SIZES.len()` slots per title, size-major.
    pub artwork: Box<[std::sync::OnceLock<Box<[u8]>>]>,
    /// Seeded ratings (a title with votes cast is written live instead).
    pub ratings: Box<[std::sync::OnceLock<Box<[u8]>>]>,
}

impl Memo {
    fn for_backend(name: &str) -> Self {
        let slots = |n: u64| (0..n).map(|_| std::sync::OnceLock::new()).collect();
        match name {
            "catalog" => Memo { titles: slots(TITLES), ..Memo::default() },
            "artwork" => Memo { artwork: slots(TITLES * data::SIZES.len() as u64), ..Memo::default() },
            "ratings" => Memo { ratings: slots(TITLES), ..Memo::default() },
            _ => Memo::default(),
        }
    }
}

/// Most entries each kind of demo write keeps; a write beyond it is refused (507).
pub const MAX_WRITES: usize = 10_000;

/// Demo writes: votes per title, saved bookmarks, My List per profile. Bounded by
/// [`MAX_WRITES`] entries each.
#[derive(Debug, Default)]
pub(crate) struct Writes {
    /// Per title: (sum of stars, votes).
    pub votes: std::collections::HashMap<u64, (u64, u64)>,
    /// Per (profile, title): position in seconds.
    pub bookmarks: std::collections::HashMap<(u64, u64), u32>,
    /// Per profile: title IDs, oldest first (each at most once).
    pub my_list: std::collections::HashMap<u64, Vec<u64>>,
}

impl BackendState {
    fn new(name: &'static str, data: DemoData, faults: Faults) -> Self {
        Self {
            name,
            data,
            requests: AtomicU64::new(0),
            fail_next: std::sync::atomic::AtomicU32::new(faults.fail_next),
            faults: watch::Sender::new(faults),
            writes: std::sync::Mutex::new(Writes::default()),
            last_traceparent: std::sync::Mutex::new(None),
            memo: Memo::for_backend(name),
        }
    }

    /// Requests served so far (control routes excluded).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub fn faults(&self) -> Faults {
        *self.faults.borrow()
    }

    /// What mutations wrote (a std mutex, held for one map update).
    pub(crate) fn writes(&self) -> std::sync::MutexGuard<'_, Writes> {
        self.writes.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn set_faults(&self, faults: Faults) {
        self.fail_next.store(faults.fail_next, Ordering::Relaxed);
        self.faults.send_replace(faults);
    }
}

/// One running demo backend, as reported by `GET /demo/backends`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendInfo {
    pub name: &'static str,
    pub base_url: String,
    pub requests: u64,
    pub faults: Faults,
    /// The `traceparent` of the last request that carried one.
    pub last_traceparent: Option<String>,
}

/// The running demo backends. Dropping it stops them.
#[derive(Debug)]
pub struct DemoBackends {
    backends: Vec<(Arc<BackendState>, SocketAddr)>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for DemoBackends {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Where and how to start the demo backends.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Seed of the generated data.
    pub seed: u64,
    /// First port; backends take consecutive ports. 0 lets the OS pick each port.
    pub base_port: u16,
    /// Faults every backend starts with.
    pub faults: Faults,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self { seed: 1, base_port: 0, faults: Faults::default() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot listen for demo backend {name} on {addr}: {source}")]
    Bind { name: &'static str, addr: SocketAddr, source: std::io::Error },
    #[error("unknown demo backend {0:?} (known: {known})", known = BACKEND_NAMES.join(", "))]
    UnknownBackend(String),
    #[error("{0}")]
    BadFaults(String),
}

impl DemoBackends {
    /// Binds every demo backend on 127.0.0.1 and serves it on the current tokio runtime.
    pub async fn start(options: &DemoOptions) -> Result<Self, DemoError> {
        options.faults.validate().map_err(DemoError::BadFaults)?;
        let data = DemoData::new(options.seed);
        let mut backends = Vec::new();
        let mut tasks = Vec::new();
        for (i, name) in BACKEND_NAMES.into_iter().enumerate() {
            let port = if options.base_port == 0 { 0 } else { options.base_port + i as u16 };
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let listener =
                TcpListener::bind(addr).await.map_err(|source| DemoError::Bind { name, addr, source })?;
            let local = listener.local_addr().map_err(|source| DemoError::Bind { name, addr, source })?;
            let state = Arc::new(BackendState::new(name, data, options.faults));
            let router = routes::router(state.clone());
            tasks.push(tokio::spawn(async move {
                if let Err(error) = axum::serve(listener, router).await {
                    tracing::error!(backend = name, %error, "demo backend stopped");
                }
            }));
            backends.push((state, local));
        }
        Ok(Self { backends, tasks })
    }

    /// Base URL of each backend by name, for binding the schema to them.
    pub fn urls(&self) -> impl Iterator<Item = (&'static str, String)> + '_ {
        self.backends.iter().map(|(s, addr)| (s.name, format!("http://{addr}")))
    }

    pub fn info(&self) -> Vec<BackendInfo> {
        self.backends
            .iter()
            .map(|(s, addr)| BackendInfo {
                name: s.name,
                base_url: format!("http://{addr}"),
                requests: s.requests(),
                faults: s.faults(),
                last_traceparent: s
                    .last_traceparent
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone(),
            })
            .collect()
    }

    pub fn set_faults(&self, name: &str, faults: Faults) -> Result<(), DemoError> {
        faults.validate().map_err(DemoError::BadFaults)?;
        let (state, _) = self
            .backends
            .iter()
            .find(|(s, _)| s.name == name)
            .ok_or_else(|| DemoError::UnknownBackend(name.to_owned()))?;
        state.set_faults(faults);
        Ok(())
    }
}
