//! Identical read calls in flight at the same moment, made once: a call that finds the same
//! call (backend, method, path, body, and the same fields kept of the answer) already in
//! flight for another request waits for that call's answer instead of making its own, so a
//! burst of devices asking for the same screen costs each backend one call per distinct
//! route. Only reads share: a GET, or a batch read (the batcher says which); a mutation's
//! call and a single POST never do. The map holds only calls in flight (an entry leaves when
//! its call ends) and at most [`MAX_IN_FLIGHT`] of them; past that, a call is made on its own.
//!
//! Why not a crate: the in-flight de-duplicators on crates.io (`async_singleflight` and the
//! like) key by string and hand back clones of the answer; here the answer is one shared tape
//! (`Arc`), the key holds the plan's keep by identity, and an abandoned call (every waiter
//! gone) must not linger, which `futures`' `Shared`/`WeakShared` give directly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use foldhash::fast::RandomState as Fast;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared, WeakShared};

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
type Call = Shared<BoxFuture<'static, Answer>>;
/// A registered call: its id (so that only it removes its entry) and a weak handle.
type Entry = (u64, WeakShared<BoxFuture<'static, Answer>>);

/// One backend's calls in flight that others may join.
#[derive(Default)]
pub(super) struct InFlight {
    /// Weak: a call every waiter has dropped is dropped too, and its entry is then stale
    /// (replaced by the next identical call, or swept when the map is full).
    calls: Mutex<HashMap<CallKey, Entry, Fast>>,
    next_id: std::sync::atomic::AtomicU64,
}

/// A call to wait for, and whether it is another request's (a shared call).
pub(super) struct Joined {
    pub call: Call,
    pub shared: bool,
}

impl InFlight {
    /// The call in flight for `key`, or the one `start` makes (registered so that others may
    /// join it until it ends; it removes itself then). `None` when the map is full: make the
    /// call alone.
    pub fn join_or_start(
        self: &Arc<Self>,
        key: CallKey,
        start: impl FnOnce(&CallKey) -> BoxFuture<'static, Answer>,
    ) -> Option<Joined> {
        let mut calls = self.calls.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, weak)) = calls.get(&key)
            && let Some(call) = weak.upgrade()
        {
            return Some(Joined { call, shared: true });
        }
        if calls.len() >= MAX_IN_FLIGHT {
            calls.retain(|_, (_, weak)| weak.upgrade().is_some());
            if calls.len() >= MAX_IN_FLIGHT {
                return None;
            }
        }
        let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let inner = start(&key);
        let me = Arc::downgrade(self);
        let ended_key = key.clone();
        let call = async move {
            let answer = inner.await;
            // Ended: later calls are new calls. (Only this call's entry: a stale one may have
            // been replaced by a newer call of the same key.)
            if let Some(me) = me.upgrade() {
                let mut calls = me.calls.lock().unwrap_or_else(PoisonError::into_inner);
                if calls.get(&ended_key).is_some_and(|(entry, _)| *entry == id) {
                    calls.remove(&ended_key);
                }
            }
            answer
        }
        .boxed()
        .shared();
        let weak = call.downgrade().expect("a call not yet polled has its future");
        calls.insert(key, (id, weak));
        Some(Joined { call, shared: false })
    }

    /// Calls registered now (tests; stale entries included).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(path: &str) -> CallKey {
        CallKey { method: Method::Get, path: Arc::from(path), body: None, keep: None }
    }

    #[tokio::test]
    async fn an_identical_call_in_flight_is_joined_and_leaves_when_it_ends() {
        let flights = Arc::new(InFlight::default());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let started = std::sync::atomic::AtomicUsize::new(0);
        let start = |_: &CallKey| {
            started.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            async move {
                let _ = rx.await;
                Ok(Arc::new(Tape::default()))
            }
            .boxed()
        };
        let first = flights.join_or_start(key("/a"), start).unwrap();
        assert!(!first.shared);
        let second = flights.join_or_start(key("/a"), |_| unreachable!("joined, not started")).unwrap();
        assert!(second.shared);
        // Another path, or another method, is another call.
        let other = flights.join_or_start(key("/b"), |_| async { Ok(Arc::new(Tape::default())) }.boxed());
        assert!(!other.unwrap().shared);
        let post = CallKey { method: Method::Post, ..key("/a") };
        assert!(
            !flights.join_or_start(post, |_| async { Ok(Arc::new(Tape::default())) }.boxed()).unwrap().shared
        );
        tx.send(()).unwrap();
        let (a, b) = tokio::join!(first.call, second.call);
        assert!(Arc::ptr_eq(&a.unwrap(), &b.unwrap()), "one answer, shared");
        assert_eq!(started.load(std::sync::atomic::Ordering::Relaxed), 1);
        // Ended: the next identical call is a new one.
        let again = flights.join_or_start(key("/a"), |_| async { Ok(Arc::new(Tape::default())) }.boxed());
        assert!(!again.unwrap().shared);
    }

    #[tokio::test]
    async fn a_call_every_waiter_dropped_is_not_joined_and_the_map_stays_bounded() {
        let flights = Arc::new(InFlight::default());
        let pending = |_: &CallKey| futures_util::future::pending::<Answer>().boxed();
        let abandoned = flights.join_or_start(key("/x"), pending).unwrap();
        drop(abandoned);
        let fresh = flights.join_or_start(key("/x"), pending).unwrap();
        assert!(!fresh.shared, "a dropped call is not joined");
        let mut held = vec![fresh];
        for i in 0..MAX_IN_FLIGHT + 10 {
            if let Some(j) = flights.join_or_start(key(&format!("/{i}")), pending) {
                held.push(j);
            }
        }
        assert!(flights.len() <= MAX_IN_FLIGHT, "{}", flights.len());
        assert_eq!(held.len(), MAX_IN_FLIGHT, "past the bound, calls go alone");
        // Once the held calls are dropped, their stale entries are swept for new calls.
        held.clear();
        assert!(!flights.join_or_start(key("/new"), pending).unwrap().shared);
        assert!(flights.len() <= 1, "{}", flights.len());
    }
}
