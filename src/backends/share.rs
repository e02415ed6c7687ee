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

/// What makes two calls the same call: method, path, body and the fields kept of the answer
/// (by identity: the same plan's fetches share it). Held once (`Arc`) by the map and the
/// leader, and hashed once when made (a batch path can be a kilobyte long).
#[derive(Debug, Clone)]
pub(super) struct CallKey {
    call: Arc<Call>,
    hash: u64,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) struct Call {
    pub method: Method,
    pub path: String,
    pub body: Option<Bytes>,
    pub keep: Option<KeepRef>,
}

impl CallKey {
    pub fn new(call: Call) -> Self {
        use std::hash::BuildHasher;
        let hash = HASHER.hash_one((&call.method, &call.path, &call.body, &call.keep));
        Self { call: Arc::new(call), hash }
    }

    pub fn call(&self) -> &Call {
        &self.call
    }
}

impl PartialEq for CallKey {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && (Arc::ptr_eq(&self.call, &other.call) || self.call == other.call)
    }
}

impl Eq for CallKey {}

impl std::hash::Hash for CallKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// One fixed hasher: keys are hashed once, in [`CallKey::new`].
static HASHER: std::sync::LazyLock<foldhash::fast::RandomState> =
    std::sync::LazyLock::new(foldhash::fast::RandomState::default);

pub(super) type Answer = Result<Arc<Tape>, FetchError>;

/// One backend's reads in flight that an identical read may join.
pub(super) type InFlight = crate::flight::InFlight<CallKey, Answer>;
