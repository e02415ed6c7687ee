//! Identical read calls in flight at the same moment, made once: a call that finds the same
//! call (backend, method, path, body, and the same fields kept of the answer) already in
//! flight for another request waits for that call's answer instead of making its own, so a
//! burst of devices asking for the same screen costs each backend one call per distinct
//! route. Only reads share: a GET, or a batch read (the batcher says which); a mutation's
//! call and a single POST never do. At most [`MAX_IN_FLIGHT`] distinct calls are shared at
//! once per backend; past that, a call is made on its own (`crate::flight`).

use std::sync::Arc;

use bytes::Bytes;

use super::error::FetchError;
use super::json::keep::KeepRef;
use super::json::tape::Tape;
use super::transport::Method;

/// Most distinct calls shared at once per backend (a bound on the map, not on calls).
pub const MAX_IN_FLIGHT: usize = 4_096;

/// What makes two calls the same call.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct CallKey {
    pub method: Method,
    pub path: Arc<str>,
    pub body: Option<Bytes>,
    /// The fields kept of the answer, by identity: the same plan's fetches share it.
    pub keep: Option<KeepRef>,
}

pub(super) type Answer = Result<Arc<Tape>, FetchError>;

/// One backend's reads in flight that an identical read may join.
pub(super) type InFlight = crate::flight::InFlight<CallKey, Answer>;
