//! The only outbound code: one HTTP client per declared backend, and the per-request
//! [`Batcher`] that coalesces keys and identical fetches. Knows nothing of GraphQL types;
//! it takes routes and keys and hands back JSON or a [`FetchError`].

mod batch;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tracing::Instrument;

pub use batch::{BatchRoute, Batcher, Key, SingleRequest};

use crate::graphql::model::Method;

/// Why a fetch failed. Cheap to clone: one failed batch is reported on every path it served.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    #[error("backend {backend}: {method} {path} failed to connect: {reason}")]
    Connect { backend: Arc<str>, method: &'static str, path: String, reason: String },
    #[error("backend {backend}: {method} {path} timed out after {after_ms} ms")]
    Timeout { backend: Arc<str>, method: &'static str, path: String, after_ms: u64 },
    #[error("backend {backend}: {method} {path} answered HTTP {status}")]
    Status { backend: Arc<str>, method: &'static str, path: String, status: u16 },
    #[error("backend {backend}: {method} {path} sent a malformed body: {reason}")]
    Body { backend: Arc<str>, method: &'static str, path: String, reason: String },
    #[error("backend {backend}: fetch was cancelled")]
    Cancelled { backend: Arc<str> },
}

impl FetchError {
    /// The `extensions.code` a GraphQL error for this failure carries.
    pub fn code(&self) -> &'static str {
        match self {
            FetchError::Timeout { .. } => "TIMEOUT",
            _ => "BACKEND_ERROR",
        }
    }
}

/// Settings of one backend client.
#[derive(Debug, Clone)]
pub struct BackendSettings {
    pub name: String,
    pub url: String,
    pub timeout: Duration,
    pub max_batch_size: usize,
}

#[derive(Debug)]
pub struct Backend {
    name: Arc<str>,
    base: String,
    client: reqwest::Client,
    timeout: Duration,
    max_batch_size: usize,
}

/// Longest path shown in an error message or span; batch URLs can be long.
const SHOWN_PATH: usize = 120;

fn shown(path: &str) -> String {
    if path.len() <= SHOWN_PATH {
        return path.to_owned();
    }
    let mut end = SHOWN_PATH;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &path[..end])
}

impl Backend {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn max_batch_size(&self) -> usize {
        self.max_batch_size
    }

    /// One HTTP call; the body must be JSON. The span is the unit operators trace.
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, FetchError> {
        let span = tracing::info_span!(
            "backend fetch",
            backend = %self.name,
            http.request.method = method.as_str(),
            url.path = %shown(path),
            http.response.status_code = tracing::field::Empty,
        );
        self.call_inner(method, path, body).instrument(span).await
    }

    async fn call_inner(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, FetchError> {
        let url = format!("{}{}", self.base, path);
        let m = method.as_str();
        let mut request = match method {
            Method::Get => self.client.get(&url),
            Method::Post => self.client.post(&url),
        };
        if let Some(body) = body {
            request = request.json(body);
        }
        let backend = self.name.clone();
        let timeout = self.timeout;
        let work = async {
            let response = request.send().await.map_err(|e| FetchError::Connect {
                backend: backend.clone(),
                method: m,
                path: shown(path),
                reason: e.to_string(),
            })?;
            let status = response.status();
            tracing::Span::current().record("http.response.status_code", status.as_u16());
            if !status.is_success() {
                return Err(FetchError::Status {
                    backend: backend.clone(),
                    method: m,
                    path: shown(path),
                    status: status.as_u16(),
                });
            }
            let bytes = response.bytes().await.map_err(|e| FetchError::Connect {
                backend: backend.clone(),
                method: m,
                path: shown(path),
                reason: e.to_string(),
            })?;
            serde_json::from_slice(&bytes).map_err(|e| FetchError::Body {
                backend: backend.clone(),
                method: m,
                path: shown(path),
                reason: e.to_string(),
            })
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout {
                backend,
                method: m,
                path: shown(path),
                after_ms: timeout.as_millis() as u64,
            }),
        }
    }
}

/// Every declared backend, by index (the index the schema model uses).
#[derive(Debug)]
pub struct Backends {
    list: Vec<Backend>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client for backend {backend}: {reason}")]
pub struct ClientError {
    backend: String,
    reason: String,
}

impl Backends {
    pub fn new(settings: Vec<BackendSettings>) -> Result<Self, ClientError> {
        let list = settings
            .into_iter()
            .map(|s| {
                let client = reqwest::Client::builder()
                    .pool_max_idle_per_host(256)
                    .tcp_nodelay(true)
                    .build()
                    .map_err(|e| ClientError { backend: s.name.clone(), reason: e.to_string() })?;
                Ok(Backend {
                    name: Arc::from(s.name.as_str()),
                    base: s.url.trim_end_matches('/').to_owned(),
                    client,
                    timeout: s.timeout,
                    max_batch_size: s.max_batch_size.max(1),
                })
            })
            .collect::<Result<_, ClientError>>()?;
        Ok(Self { list })
    }

    pub fn get(&self, index: usize) -> &Backend {
        &self.list[index]
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.list.iter().map(|b| b.name())
    }
}

/// What one batch dispatch produced: per key, the matched item or the failure of its chunk.
/// A key absent from both maps was not returned by the backend.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// Set when the whole dispatch was lost (its task panicked or was cancelled).
    pub all_failed: Option<FetchError>,
    pub found: HashMap<String, Value>,
    pub failed: HashMap<String, FetchError>,
}

/// Text form of a key as matched against the backend's answer: numbers and strings alike.
pub fn key_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}
