//! The automatic-persisted-query cache: query texts that clients registered by sending them
//! with their SHA-256, kept so later requests may send the hash alone. Bounded twice: by
//! entries and by the bytes of the texts it holds (least recently used out first), and one
//! text may be at most [`MAX_TEXT_BYTES`]. Callers store a text only once it parsed and
//! validated (`graphql.rs`).

use std::num::NonZeroUsize;
use std::sync::{Mutex, PoisonError};

use lru::LruCache;

/// The largest text the cache takes: the same cap as a published document.
pub const MAX_TEXT_BYTES: usize = crate::registry::publish::MAX_DOCUMENT_BYTES;

struct Inner {
    texts: LruCache<String, String>,
    bytes: usize,
}

/// Texts by SHA-256 (hex). A std mutex: held for a map lookup or insert, never across `.await`.
pub struct ApqCache {
    inner: Mutex<Inner>,
    max_bytes: usize,
}

impl ApqCache {
    pub fn new(capacity: usize, max_bytes: usize) -> Self {
        let texts = LruCache::new(NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN));
        Self { inner: Mutex::new(Inner { texts, bytes: 0 }), max_bytes }
    }

    pub fn get(&self, hash: &str) -> Option<String> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).texts.get(hash).cloned()
    }

    /// Stores a text, evicting the least recently used until the bytes fit. A text over
    /// [`MAX_TEXT_BYTES`] or the whole budget is not stored.
    pub fn put(&self, hash: String, text: String) {
        let size = hash.len() + text.len();
        if text.len() > MAX_TEXT_BYTES || size > self.max_bytes {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((k, v)) = inner.texts.push(hash, text) {
            inner.bytes -= k.len() + v.len();
        }
        inner.bytes += size;
        while inner.bytes > self.max_bytes {
            match inner.texts.pop_lru() {
                Some((k, v)) => inner.bytes -= k.len() + v.len(),
                None => break,
            }
        }
    }

    /// Bytes of text held (hashes included).
    pub fn bytes(&self) -> usize {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_least_recently_used_first_out() {
        let cache = ApqCache::new(2, 1 << 20);
        cache.put("a".into(), "A".into());
        cache.put("b".into(), "B".into());
        assert_eq!(cache.get("a").as_deref(), Some("A"));
        cache.put("c".into(), "C".into());
        assert_eq!(cache.get("b"), None, "b was least recently used");
        assert_eq!(cache.get("a").as_deref(), Some("A"));
        assert_eq!(cache.bytes(), 4);
    }

    #[test]
    fn bounded_in_bytes() {
        let cache = ApqCache::new(10_000, 10_000);
        for i in 0..100 {
            cache.put(format!("{i:04}"), "x".repeat(996));
            assert!(cache.bytes() <= 10_000, "{}", cache.bytes());
        }
        assert_eq!(cache.bytes(), 10_000, "ten texts of 1,000 bytes");
        assert!(cache.get("0099").is_some() && cache.get("0089").is_none());
        cache.put("0099".into(), "y".repeat(10));
        assert_eq!(cache.bytes(), 9 * 1000 + 14, "a replaced text gives its bytes back");
        cache.put("big".into(), "z".repeat(MAX_TEXT_BYTES + 1));
        assert!(cache.get("big").is_none(), "over the one-text cap");
    }
}
