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
//! gone) must not linger.
//!
//! The one who starts the work does it on its own task, as it would without sharing (no
//! boxed, shared future between it and its work: that cost every backend call ~5,000
//! instructions, docs/benchmarks-history.md §27), and publishes the result when done; the
//! others wait on its slot (woken only when there are any). A leader dropped before it
//! finishes marks its slot abandoned: its followers then do the work themselves.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use foldhash::fast::RandomState as Fast;
use tokio::sync::Notify;

/// Where a leader puts its result for its followers.
pub struct Slot<V> {
    result: OnceLock<V>,
    /// The leader went away without a result.
    abandoned: AtomicBool,
    /// Followers waiting: the leader wakes them only if there are any (a wake with nobody to
    /// wake still costs).
    followers: AtomicUsize,
    notify: Notify,
}

impl<V> Slot<V> {
    fn new() -> Self {
        Self {
            result: OnceLock::new(),
            abandoned: AtomicBool::new(false),
            followers: AtomicUsize::new(0),
            notify: Notify::new(),
        }
    }

    fn wake(&self) {
        if self.followers.load(Ordering::Acquire) > 0 {
            self.notify.notify_waiters();
        }
    }
}

/// A leader's id (so that only it removes its entry) and its slot.
type Entry<V> = (u64, Arc<Slot<V>>);

/// Work in flight by key.
pub struct InFlight<K, V> {
    calls: Mutex<HashMap<K, Entry<V>, Fast>>,
    next_id: AtomicU64,
    max: usize,
}

/// What an ask for work gets.
pub enum Ticket<K: Eq + Hash, V> {
    /// Nobody does this work now: do it, then [`Lead::finish`] with the result.
    Lead(Lead<K, V>),
    /// Someone does: [`follow`] waits for their result.
    Follow(Arc<Slot<V>>),
    /// As many pieces of work in flight as the map holds: do it alone.
    Alone,
}

/// The one doing a piece of work others may wait for. Dropped without [`Lead::finish`] (its
/// request cancelled), it leaves and its followers do the work themselves.
pub struct Lead<K: Eq + Hash, V> {
    flights: Arc<InFlight<K, V>>,
    key: Option<K>,
    id: u64,
    slot: Arc<Slot<V>>,
}

impl<K: Eq + Hash, V> Lead<K, V> {
    /// Hands the result to every follower; later asks start anew.
    pub fn finish(self, result: V) {
        let _ = self.slot.result.set(result);
        self.slot.wake();
    }
}

impl<K: Eq + Hash, V> Drop for Lead<K, V> {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else { return };
        {
            let mut calls = self.flights.calls.lock().unwrap_or_else(PoisonError::into_inner);
            if calls.get(&key).is_some_and(|(id, _)| *id == self.id) {
                calls.remove(&key);
            }
        }
        if self.slot.result.get().is_none() {
            self.slot.abandoned.store(true, Ordering::Release);
            self.slot.wake();
        }
    }
}

/// The leader's result; `None` when the leader left without one (do the work yourself).
pub async fn follow<V: Clone>(slot: Arc<Slot<V>>) -> Option<V> {
    slot.followers.fetch_add(1, Ordering::AcqRel);
    loop {
        // Registered before the checks, so a wake between a check and the wait is not lost.
        let notified = slot.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(result) = slot.result.get() {
            return Some(result.clone());
        }
        if slot.abandoned.load(Ordering::Acquire) {
            return None;
        }
        notified.await;
    }
}

impl<K, V> InFlight<K, V>
where
    K: Eq + Hash + Clone,
{
    /// At most `max` distinct pieces of work shared at once.
    pub fn new(max: usize) -> Self {
        Self { calls: Mutex::new(HashMap::default()), next_id: AtomicU64::new(0), max }
    }

    /// Joins the work in flight for `key`, or leads it.
    pub fn join(self: &Arc<Self>, key: &K) -> Ticket<K, V> {
        let mut calls = self.calls.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, slot)) = calls.get(key) {
            return Ticket::Follow(slot.clone());
        }
        if calls.len() >= self.max {
            return Ticket::Alone;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot::new());
        calls.insert(key.clone(), (id, slot.clone()));
        Ticket::Lead(Lead { flights: self.clone(), key: Some(key.clone()), id, slot })
    }

    /// Whether no work is in flight (tests: every leader left its entry).
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner).is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Flights = InFlight<&'static str, Arc<u32>>;

    fn lead(t: Ticket<&'static str, Arc<u32>>) -> Lead<&'static str, Arc<u32>> {
        match t {
            Ticket::Lead(l) => l,
            _ => panic!("expected to lead"),
        }
    }

    fn follower(t: Ticket<&'static str, Arc<u32>>) -> Arc<Slot<Arc<u32>>> {
        match t {
            Ticket::Follow(rx) => rx,
            _ => panic!("expected to follow"),
        }
    }

    #[tokio::test]
    async fn identical_work_in_flight_is_joined_and_leaves_when_it_ends() {
        let flights = Arc::new(Flights::new(64));
        let first = lead(flights.join(&"/a"));
        let second = follower(flights.join(&"/a"));
        let third = follower(flights.join(&"/a"));
        let other = lead(flights.join(&"/b"));
        first.finish(Arc::new(7));
        let (a, b) = (follow(second).await.unwrap(), follow(third).await.unwrap());
        assert!(Arc::ptr_eq(&a, &b), "one result, shared");
        assert_eq!(*a, 7);
        // Ended: the next identical ask leads anew; another key was other work all along.
        let again = lead(flights.join(&"/a"));
        drop((again, other));
        assert!(flights.is_empty(), "every leader left its entry");
    }

    #[tokio::test]
    async fn a_leader_that_leaves_without_a_result_lets_its_followers_work_alone() {
        let flights = Arc::new(Flights::new(64));
        let leader = lead(flights.join(&"/x"));
        let waiting = follower(flights.join(&"/x"));
        drop(leader);
        assert_eq!(follow(waiting).await, None, "the follower learns it must do the work");
        assert!(flights.is_empty());
        let _next = lead(flights.join(&"/x"));
    }

    #[test]
    fn past_the_bound_work_goes_alone() {
        let flights = Arc::new(Flights::new(2));
        let held = [lead(flights.join(&"/1")), lead(flights.join(&"/2"))];
        assert!(matches!(flights.join(&"/3"), Ticket::Alone));
        assert!(matches!(flights.join(&"/1"), Ticket::Follow(_)), "joining needs no room");
        drop(held);
        assert!(matches!(flights.join(&"/3"), Ticket::Lead(_)));
    }
}
