//! Identical work in flight at the same moment, done once: whoever asks for work that is
//! already in flight for someone else (same key) waits for that work's result instead of
//! doing it again. Backend reads use it (`backends::share`: the same call of two requests),
//! and so does `/graphql` when `[server] share_identical_requests` is on (the same query of
//! two devices). The map holds only work in flight (an entry leaves when its work ends) and
//! at most `max` entries; past that, the work is done alone.
//!
//! Why not a crate: the in-flight de-duplicators on crates.io (`async_singleflight` and the
//! like) key by string and hand back clones of the result; here keys hold values compared by
//! identity (a plan's keep), results are shared `Arc`s, and abandoned work (every waiter
//! gone) must not linger, which `futures`' `Shared`/`WeakShared` give directly.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use foldhash::fast::RandomState as Fast;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared, WeakShared};

/// Work in flight that others may join, and how a joiner waits for it.
pub type Flight<V> = Shared<BoxFuture<'static, V>>;
/// A registered piece of work: its id (so that only it removes its entry) and a weak handle.
type Entry<V> = (u64, WeakShared<BoxFuture<'static, V>>);

/// Work in flight by key.
pub struct InFlight<K, V> {
    /// Weak: work every waiter has dropped is dropped too, and its entry is then stale
    /// (replaced by the next identical ask, or swept when the map is full).
    calls: Mutex<HashMap<K, Entry<V>, Fast>>,
    next_id: AtomicU64,
    max: usize,
}

/// Work to wait for, and whether someone else started it (shared).
pub struct Joined<V> {
    pub call: Flight<V>,
    pub shared: bool,
}

impl<K, V> InFlight<K, V>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// At most `max` distinct pieces of work shared at once.
    pub fn new(max: usize) -> Self {
        Self { calls: Mutex::new(HashMap::default()), next_id: AtomicU64::new(0), max }
    }

    /// The work in flight for `key`, or the one `start` makes (registered so that others may
    /// join it until it ends; it removes itself then). `None` when the map is full: do the
    /// work alone.
    pub fn join_or_start(
        self: &Arc<Self>,
        key: K,
        start: impl FnOnce(&K) -> BoxFuture<'static, V>,
    ) -> Option<Joined<V>> {
        let mut calls = self.calls.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, weak)) = calls.get(&key)
            && let Some(call) = weak.upgrade()
        {
            return Some(Joined { call, shared: true });
        }
        if calls.len() >= self.max {
            calls.retain(|_, (_, weak)| weak.upgrade().is_some());
            if calls.len() >= self.max {
                return None;
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let inner = start(&key);
        let me = Arc::downgrade(self);
        let ended_key = key.clone();
        let call = async move {
            let result = inner.await;
            // Ended: later asks start anew. (Only this work's entry: a stale one may have
            // been replaced by newer work of the same key.)
            if let Some(me) = me.upgrade() {
                let mut calls = me.calls.lock().unwrap_or_else(PoisonError::into_inner);
                if calls.get(&ended_key).is_some_and(|(entry, _)| *entry == id) {
                    calls.remove(&ended_key);
                }
            }
            result
        }
        .boxed()
        .shared();
        let weak = call.downgrade().expect("work not yet polled has its future");
        calls.insert(key, (id, weak));
        Some(Joined { call, shared: false })
    }

    /// Entries now (tests; stale ones included).
    pub fn len(&self) -> usize {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Whether nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Flights = InFlight<&'static str, Arc<u32>>;
    const MAX: usize = 64;

    fn ready(v: u32) -> BoxFuture<'static, Arc<u32>> {
        async move { Arc::new(v) }.boxed()
    }

    #[tokio::test]
    async fn identical_work_in_flight_is_joined_and_leaves_when_it_ends() {
        let flights = Arc::new(Flights::new(MAX));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let started = std::sync::atomic::AtomicUsize::new(0);
        let start = |_: &&str| {
            started.fetch_add(1, Ordering::Relaxed);
            async move {
                let _ = rx.await;
                Arc::new(7)
            }
            .boxed()
        };
        let first = flights.join_or_start("/a", start).unwrap();
        assert!(!first.shared);
        let second = flights.join_or_start("/a", |_| unreachable!("joined, not started")).unwrap();
        assert!(second.shared);
        assert!(!flights.join_or_start("/b", |_| ready(1)).unwrap().shared, "another key is other work");
        tx.send(()).unwrap();
        let (a, b) = tokio::join!(first.call, second.call);
        assert!(Arc::ptr_eq(&a, &b), "one result, shared");
        assert_eq!(started.load(Ordering::Relaxed), 1);
        // Ended: the next identical ask is new work.
        assert!(!flights.join_or_start("/a", |_| ready(2)).unwrap().shared);
    }

    #[tokio::test]
    async fn work_every_waiter_dropped_is_not_joined_and_the_map_stays_bounded() {
        let flights: Arc<InFlight<String, Arc<u32>>> = Arc::new(InFlight::new(MAX));
        let pending = |_: &String| futures_util::future::pending::<Arc<u32>>().boxed();
        drop(flights.join_or_start("/x".to_owned(), pending).unwrap());
        let fresh = flights.join_or_start("/x".to_owned(), pending).unwrap();
        assert!(!fresh.shared, "dropped work is not joined");
        let mut held = vec![fresh];
        for i in 0..MAX + 10 {
            if let Some(j) = flights.join_or_start(format!("/{i}"), pending) {
                held.push(j);
            }
        }
        assert!(flights.len() <= MAX, "{}", flights.len());
        assert_eq!(held.len(), MAX, "past the bound, work goes alone");
        // Once the held work is dropped, the stale entries are swept for new work.
        held.clear();
        assert!(!flights.join_or_start("/new".to_owned(), pending).unwrap().shared);
        assert!(flights.len() <= 1, "{}", flights.len());
    }
}
