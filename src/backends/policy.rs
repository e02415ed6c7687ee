//! The per-backend policies other than the breaker: bulkhead, rate limit (with a backend's
//! own 429 Retry-After), retry budget and backoff. Each is small; they are assembled in one
//! place, `Backend::call` in `mod.rs`, whose comment gives the order.

use std::num::NonZeroU32;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;

pub use crate::config::{BACKEND_DEFAULTS, PolicyOverrides};

/// Applying the numbers is the engine's business; defining and layering them is config's.
impl PolicyOverrides {
    /// The numbers in force: these overrides applied to `r`. Call [`check`](Self::check) first.
    pub fn apply(&self, mut r: Resilience) -> Resilience {
        if let Some(ms) = self.timeout_ms {
            r.attempt_timeout = Duration::from_millis(ms);
        }
        if let Some(n) = self.max_batch_size {
            r.max_batch_size = n;
        }
        if let Some(n) = self.max_body_bytes {
            r.max_body_bytes = n;
        }
        if let Some(on) = self.share_in_flight {
            r.share_in_flight = on;
        }
        if let Some(n) = self.max_concurrent {
            r.max_concurrent = n;
        }
        if let Some(n) = self.rate_per_sec {
            r.rate_per_sec = NonZeroU32::new(n);
        }
        if let Some(n) = self.burst {
            r.burst = NonZeroU32::new(n);
        }
        if let Some(n) = self.max_retries {
            r.max_retries = n;
        }
        if let Some(v) = self.retry_ratio {
            r.retry_ratio = v;
        }
        if let Some(n) = self.retry_floor_per_sec {
            r.retry_floor_per_sec = n;
        }
        if let Some(n) = self.breaker_min_calls {
            r.breaker.min_calls = n;
        }
        if let Some(v) = self.breaker_failure_ratio {
            r.breaker.failure_ratio = v;
        }
        if let Some(ms) = self.breaker_open_ms {
            r.breaker.open_for = Duration::from_millis(ms);
        }
        if let Some(ms) = self.breaker_max_open_ms {
            r.breaker.max_open_for = Duration::from_millis(ms);
        }
        r
    }
}

/// The numbers of one backend's policy stack.
#[derive(Debug, Clone, PartialEq)]
pub struct Resilience {
    /// Time allowed per attempt (within what is left of the request's deadline).
    pub attempt_timeout: Duration,
    /// Most keys in one batched call; more are split over several calls.
    pub max_batch_size: usize,
    /// Largest answer body read, in bytes.
    pub max_body_bytes: u64,
    /// Bulkhead: most calls in flight; more are rejected at once, never queued.
    pub max_concurrent: usize,
    /// Rate limit: sustained calls per second and burst; `None` for no limit.
    pub rate_per_sec: Option<NonZeroU32>,
    pub burst: Option<NonZeroU32>,
    /// Retries of a failed read (GET or batch read); mutations are never retried.
    pub max_retries: u32,
    /// Retry budget: retries may add this share of the requests of the last 10 s...
    pub retry_ratio: f64,
    /// ...and at least this many per second.
    pub retry_floor_per_sec: u32,
    /// Full-jitter backoff: a retry waits a random time up to `backoff_base × 2^attempt`.
    pub backoff_base: Duration,
    pub breaker: super::breaker::BreakerSettings,
    /// Identical reads in flight at once are made once (`share.rs`).
    pub share_in_flight: bool,
}

impl Default for Resilience {
    /// [`BACKEND_DEFAULTS`] (each default written there once) over the numbers no layer sets.
    fn default() -> Self {
        BACKEND_DEFAULTS.apply(Self {
            attempt_timeout: Duration::ZERO,
            max_batch_size: 0,
            max_body_bytes: 0,
            max_concurrent: 0,
            rate_per_sec: None,
            burst: None,
            max_retries: 0,
            retry_ratio: 0.0,
            retry_floor_per_sec: 0,
            backoff_base: Duration::from_millis(20),
            breaker: Default::default(),
            share_in_flight: false,
        })
    }
}

/// Rate limiting for one backend: a governor quota, plus the pause a backend asked for with
/// 429 and Retry-After.
pub struct Limiter {
    quota: Option<DefaultDirectRateLimiter>,
    /// A std mutex: read and written in a few steps, never across an `.await`.
    paused_until: Mutex<Option<Instant>>,
}

impl Limiter {
    pub fn new(rate: Option<NonZeroU32>, burst: Option<NonZeroU32>) -> Self {
        let quota = rate.map(|r| RateLimiter::direct(Quota::per_second(r).allow_burst(burst.unwrap_or(r))));
        Self { quota, paused_until: Mutex::new(None) }
    }

    /// Whether a call may go now.
    pub fn admit(&self) -> bool {
        let paused = self.paused_until.lock().unwrap_or_else(PoisonError::into_inner);
        if paused.is_some_and(|until| Instant::now() < until) {
            return false;
        }
        drop(paused);
        self.quota.as_ref().is_none_or(|q| q.check().is_ok())
    }

    /// Honours a backend's `429 Retry-After`: no call goes out until then.
    pub fn pause_for(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut paused = self.paused_until.lock().unwrap_or_else(PoisonError::into_inner);
        if paused.is_none_or(|p| p < until) {
            *paused = Some(until);
        }
    }
}

/// A retry budget over a rolling 10 s window, after Finagle's and Linkerd's: retries may add
/// `ratio` of the window's requests, plus `floor_per_sec` per second of the window, so a
/// failing backend sees at most that much extra load however many callers retry.
pub struct RetryBudget {
    ratio: f64,
    floor: f64,
    /// (second, requests, retries) per one-second bucket; a std mutex, never held across `.await`.
    buckets: Mutex<[(u64, u32, u32); 10]>,
    start: Instant,
}

impl RetryBudget {
    pub fn new(ratio: f64, floor_per_sec: u32) -> Self {
        Self {
            ratio,
            floor: f64::from(floor_per_sec) * 10.0,
            buckets: Mutex::new([(0, 0, 0); 10]),
            start: Instant::now(),
        }
    }

    fn with_bucket<T>(&self, f: impl FnOnce(&mut (u64, u32, u32), u32, u32) -> T) -> T {
        let second = Instant::now().duration_since(self.start).as_secs();
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let (requests, retries) = buckets
            .iter()
            .filter(|b| b.0 + 10 > second && b.0 <= second)
            .fold((0, 0), |(q, r), b| (q + b.1, r + b.2));
        let bucket = &mut buckets[(second % 10) as usize];
        if bucket.0 != second {
            *bucket = (second, 0, 0);
        }
        f(bucket, requests, retries)
    }

    pub fn record_request(&self) {
        self.with_bucket(|b, _, _| b.1 += 1);
    }

    /// Takes one retry from the budget if there is one left.
    pub fn try_withdraw(&self) -> bool {
        self.with_bucket(|b, requests, retries| {
            let allowed = self.floor + self.ratio * f64::from(requests);
            let ok = f64::from(retries) < allowed;
            if ok {
                b.2 += 1;
            }
            ok
        })
    }
}

/// Full-jitter backoff before retry `attempt` (1-based).
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    let cap = base.saturating_mul(1 << attempt.min(10));
    cap.mul_f64(fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_policy_model_layers_checks_and_applies() {
        let defaults = PolicyOverrides { timeout_ms: Some(1000), max_retries: Some(1), ..Default::default() };
        let schema =
            PolicyOverrides { timeout_ms: Some(300), max_batch_size: Some(50), ..Default::default() };
        let config = PolicyOverrides { timeout_ms: Some(250), ..Default::default() };
        let merged = config.over(&schema).over(&defaults);
        assert_eq!(
            (merged.timeout_ms, merged.max_batch_size, merged.max_retries),
            (Some(250), Some(50), Some(1))
        );
        let r = merged.apply(Resilience::default());
        assert_eq!((r.attempt_timeout, r.max_batch_size, r.max_retries), (Duration::from_millis(250), 50, 1));
        assert!(merged.check().is_empty());
        let bad = PolicyOverrides {
            max_concurrent: Some(0),
            retry_ratio: Some(1.5),
            max_retries: Some(11),
            breaker_open_ms: Some(5000),
            breaker_max_open_ms: Some(10),
            ..Default::default()
        };
        let problems = bad.check().join("\n");
        for field in ["maxConcurrent", "retryRatio", "maxRetries", "breakerMaxOpenMs"] {
            assert!(problems.contains(field), "{field} in {problems}");
        }
        let unlimited = PolicyOverrides { rate_per_sec: Some(0), ..Default::default() };
        assert!(
            unlimited.check().is_empty() && unlimited.apply(Resilience::default()).rate_per_sec.is_none()
        );
        // The admin API's camelCase and config's snake_case are one type.
        let camel: PolicyOverrides = serde_json::from_str(r#"{"timeoutMs": 5, "max_retries": 2}"#).unwrap();
        assert_eq!((camel.timeout_ms, camel.max_retries), (Some(5), Some(2)));
        assert!(serde_json::from_str::<PolicyOverrides>(r#"{"url": "http://elsewhere"}"#).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn budget_allows_floor_plus_ratio() {
        let budget = RetryBudget::new(0.2, 1);
        for _ in 0..100 {
            budget.record_request();
        }
        let granted = (0..1000).filter(|_| budget.try_withdraw()).count();
        assert_eq!(granted, 10 + 20, "floor of 1/s over 10 s plus 20 % of 100");
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!((0..1000).filter(|_| budget.try_withdraw()).count(), 10, "old requests left the window");
    }

    #[tokio::test(start_paused = true)]
    async fn limiter_pauses_for_retry_after() {
        let limiter = Limiter::new(None, None);
        assert!(limiter.admit());
        limiter.pause_for(Duration::from_secs(2));
        assert!(!limiter.admit());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(limiter.admit());
    }

    #[test]
    fn quota_admits_exactly_the_burst() {
        let limiter = Limiter::new(NonZeroU32::new(1), NonZeroU32::new(5));
        assert_eq!((0..20).filter(|_| limiter.admit()).count(), 5);
    }

    #[test]
    fn backoff_is_bounded_by_the_exponential_cap() {
        for attempt in 1..5 {
            let d = backoff(Duration::from_millis(10), attempt);
            assert!(d <= Duration::from_millis(10 * (1 << attempt)));
        }
    }
}
