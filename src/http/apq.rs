//! The automatic-persisted-query cache: query texts that clients registered by sending them
//! with their SHA-256, kept in a bounded LRU so later requests may send the hash alone.

use std::num::NonZeroUsize;
use std::sync::{Mutex, PoisonError};

use lru::LruCache;

/// Texts by SHA-256 (hex). A std mutex: held for a map lookup or insert, never across `.await`.
pub struct ApqCache(Mutex<LruCache<String, String>>);

impl ApqCache {
    pub fn new(capacity: usize) -> Self {
        Self(Mutex::new(LruCache::new(NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN))))
    }

    pub fn get(&self, hash: &str) -> Option<String> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).get(hash).cloned()
    }

    pub fn put(&self, hash: String, text: String) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).put(hash, text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_least_recently_used_first_out() {
        let cache = ApqCache::new(2);
        cache.put("a".into(), "A".into());
        cache.put("b".into(), "B".into());
        assert_eq!(cache.get("a").as_deref(), Some("A"));
        cache.put("c".into(), "C".into());
        assert_eq!(cache.get("b"), None, "b was least recently used");
        assert_eq!(cache.get("a").as_deref(), Some("A"));
    }
}
