//! A sliding window of the last minute, one-second buckets: calls, errors and a latency
//! histogram, for the live ops stream and the canary guard (Prometheus keeps the totals).
//! Bounded: 60 buckets of fixed size whatever the traffic.

use std::sync::Mutex;
use std::time::Duration;

/// Seconds a window keeps.
pub const SECONDS: usize = 60;

/// Latency buckets: bucket `i` holds latencies up to `BASE_US × GROWTH^i` microseconds
/// (50 µs … ~70 s), about 15 % apart, so a percentile is known within 15 %.
const BUCKETS: usize = 100;
const BASE_US: f64 = 50.0;
const GROWTH: f64 = 1.15;

#[derive(Clone, Copy)]
struct Second {
    /// Seconds since the window's clock started; a slot whose second is old is empty.
    at: u64,
    calls: u32,
    errors: u32,
    latency: [u32; BUCKETS],
}

const EMPTY: Second = Second { at: u64::MAX, calls: 0, errors: 0, latency: [0; BUCKETS] };

/// What a window saw over its last `n` seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub calls: u64,
    pub errors: u64,
    pub per_sec: f64,
    pub error_pct: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

pub struct Window {
    started: std::time::Instant,
    slots: Mutex<[Second; SECONDS]>,
}

impl Default for Window {
    fn default() -> Self {
        Self { started: std::time::Instant::now(), slots: Mutex::new([EMPTY; SECONDS]) }
    }
}

fn bucket(latency: Duration) -> usize {
    let us = latency.as_secs_f64() * 1e6;
    if us <= BASE_US {
        return 0;
    }
    ((us / BASE_US).ln() / GROWTH.ln()).ceil().min((BUCKETS - 1) as f64) as usize
}

fn upper_ms(i: usize) -> f64 {
    BASE_US * GROWTH.powi(i as i32) / 1e3
}

impl Window {
    /// Seconds since the window was made.
    pub fn now(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    pub fn record(&self, latency: Duration, error: bool) {
        self.record_at(self.now(), latency, error);
    }

    fn record_at(&self, at: u64, latency: Duration, error: bool) {
        let mut slots = self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let slot = &mut slots[(at % SECONDS as u64) as usize];
        if slot.at != at {
            *slot = Second { at, ..EMPTY };
        }
        slot.calls += 1;
        slot.errors += u32::from(error);
        slot.latency[bucket(latency)] += 1;
    }

    /// The last `secs` whole seconds (the current, partial one excluded), at most a minute.
    pub fn summary(&self, secs: usize) -> Summary {
        self.summary_at(self.now(), secs)
    }

    fn summary_at(&self, now: u64, secs: usize) -> Summary {
        let secs = secs.clamp(1, SECONDS - 1);
        let slots = self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (mut calls, mut errors, mut latency) = (0u64, 0u64, [0u64; BUCKETS]);
        for s in slots.iter().filter(|s| s.at != u64::MAX && s.at < now && now - s.at <= secs as u64) {
            calls += u64::from(s.calls);
            errors += u64::from(s.errors);
            for (total, n) in latency.iter_mut().zip(s.latency) {
                *total += u64::from(n);
            }
        }
        drop(slots);
        let quantile = |q: f64| {
            if calls == 0 {
                return 0.0;
            }
            let rank = (q * calls as f64).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, n) in latency.iter().enumerate() {
                seen += n;
                if seen >= rank {
                    return upper_ms(i);
                }
            }
            upper_ms(BUCKETS - 1)
        };
        Summary {
            calls,
            errors,
            per_sec: calls as f64 / secs as f64,
            error_pct: if calls == 0 { 0.0 } else { errors as f64 * 100.0 / calls as f64 },
            p50_ms: quantile(0.50),
            p99_ms: quantile(0.99),
        }
    }

    /// The last `secs` seconds including the current one (what a decision should see at once).
    pub fn recent(&self, secs: usize) -> Summary {
        self.summary_at(self.now() + 1, secs)
    }

    /// Calls per second for each of the last `secs` whole seconds, oldest first (sparklines).
    pub fn rates(&self, secs: usize) -> Vec<u32> {
        let now = self.now();
        let secs = secs.clamp(1, SECONDS - 1) as u64;
        let slots = self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        (1..=secs)
            .rev()
            .map(|back| {
                let at = now.saturating_sub(back);
                let s = &slots[(at % SECONDS as u64) as usize];
                if s.at == at && now >= back { s.calls } else { 0 }
            })
            .collect()
    }
}

/// Calls over the last hour, by minute (schema usage).
pub struct Hour {
    /// Counts by minute, and the minute (since the epoch) of the newest slot.
    ring: Mutex<([u32; 60], i64)>,
}

impl Default for Hour {
    fn default() -> Self {
        Self { ring: Mutex::new(([0; 60], Self::minute())) }
    }
}

impl Hour {
    fn minute() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64 / 60)
    }

    /// Empties the slots of the minutes between the newest and `minute`.
    fn advance(ring: &mut ([u32; 60], i64), minute: i64) {
        let gap = (minute - ring.1).clamp(0, 60);
        for m in 1..=gap {
            ring.0[((ring.1 + m).rem_euclid(60)) as usize] = 0;
        }
        ring.1 = ring.1.max(minute);
    }

    pub fn count(&self) {
        let minute = Self::minute();
        let mut ring = self.ring.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Self::advance(&mut ring, minute);
        let slot = &mut ring.0[minute.rem_euclid(60) as usize];
        *slot = slot.saturating_add(1);
    }

    /// Calls in the last hour.
    pub fn total(&self) -> u64 {
        let mut ring = self.ring.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Self::advance(&mut ring, Self::minute());
        ring.0.iter().map(|&c| u64::from(c)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_count_whole_seconds_and_forget_old_ones() {
        let w = Window::default();
        for i in 0..100u64 {
            w.record_at(10, Duration::from_millis(1 + i % 10), i % 4 == 0);
        }
        w.record_at(11, Duration::from_millis(500), true);
        let s = w.summary_at(12, 10);
        assert_eq!((s.calls, s.errors), (101, 26));
        assert!((s.error_pct - 25.74).abs() < 0.01, "{s:?}");
        // Ten calls each of 1..10 ms and one of 500 ms: the 51st is 6 ms, the 100th 10 ms,
        // each read as its bucket's upper bound (at most 15 % above).
        assert!((6.0..=6.9).contains(&s.p50_ms), "{s:?}");
        assert!((10.0..=11.5).contains(&s.p99_ms), "{s:?}");
        // The current second is not counted; a minute later all of it is gone.
        assert_eq!(w.summary_at(11, 10).calls, 100);
        assert_eq!(w.summary_at(80, 30).calls, 0);
        // A slot reused a minute later starts empty.
        w.record_at(70, Duration::from_millis(1), false);
        assert_eq!(w.summary_at(71, 1).calls, 1);
    }

    #[test]
    fn an_hour_counts_calls_and_forgets_old_minutes() {
        let hour = Hour::default();
        hour.count();
        hour.count();
        assert_eq!(hour.total(), 2);
        // An hour later (the newest minute moved back by the test) nothing is left.
        hour.ring.lock().unwrap().1 -= 61;
        assert_eq!(hour.total(), 0);
    }

    #[test]
    fn buckets_grow_geometrically() {
        assert_eq!(bucket(Duration::from_micros(10)), 0);
        let b = bucket(Duration::from_millis(100));
        assert!(upper_ms(b) >= 100.0 && upper_ms(b - 1) < 100.0);
        assert_eq!(bucket(Duration::from_secs(3600)), BUCKETS - 1);
    }
}
