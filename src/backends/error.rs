//! Why a backend call failed ([`FetchError`]), as the engine reports it on every path the call
//! served, with its `extensions.code` and whether it counts against the breaker.

use std::sync::Arc;

use super::breaker::Outcome;
use crate::errors::Code;

/// Why a fetch failed. Cheap to clone: one failed batch is reported on every path it served.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FetchError {
    #[error("backend {backend}: {method} {path} failed to connect: {reason}")]
    Connect { backend: Arc<str>, method: &'static str, path: String, reason: String },
    #[error("backend {backend}: {method} {path} timed out after {after_ms} ms")]
    Timeout { backend: Arc<str>, method: &'static str, path: String, after_ms: u64 },
    #[error("backend {backend}: {method} {path} answered HTTP {status}")]
    Status { backend: Arc<str>, method: &'static str, path: String, status: u16 },
    #[error("backend {backend}: {method} {path} sent a malformed body: {reason}")]
    Body { backend: Arc<str>, method: &'static str, path: String, reason: String },
    #[error("backend {backend}: circuit open, not called")]
    CircuitOpen { backend: Arc<str> },
    #[error("backend {backend}: bulkhead full ({max} calls in flight), not called")]
    BulkheadFull { backend: Arc<str>, max: usize },
    #[error("backend {backend}: rate limited, not called")]
    RateLimited { backend: Arc<str> },
    #[error("backend {backend}: the request's deadline passed before the call")]
    Deadline { backend: Arc<str> },
    #[error("backend {backend}: fetch was cancelled")]
    Cancelled { backend: Arc<str> },
}

impl FetchError {
    /// The `extensions.code` a GraphQL error for this failure carries.
    pub fn code(&self) -> Code {
        match self {
            FetchError::Timeout { .. } | FetchError::Deadline { .. } => Code::Timeout,
            FetchError::CircuitOpen { .. } => Code::CircuitOpen,
            FetchError::BulkheadFull { .. } => Code::BulkheadFull,
            FetchError::RateLimited { .. } => Code::RateLimited,
            _ => Code::BackendError,
        }
    }

    /// What the breaker makes of it: 4xx and local rejections count for nothing.
    pub(super) fn breaker_outcome(&self) -> Outcome {
        match self {
            FetchError::Status { status, .. } if *status < 500 => Outcome::Ignored,
            FetchError::Connect { .. }
            | FetchError::Timeout { .. }
            | FetchError::Status { .. }
            | FetchError::Body { .. } => Outcome::Failure,
            _ => Outcome::Ignored,
        }
    }

    /// Worth another attempt (for a read): the backend may answer next time.
    pub(super) fn retryable(&self) -> bool {
        match self {
            FetchError::Status { status, .. } => *status >= 500,
            FetchError::Connect { .. } | FetchError::Timeout { .. } => true,
            _ => false,
        }
    }
}
