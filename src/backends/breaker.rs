//! A circuit breaker per backend, as a small state machine with an injected clock.
//!
//! Written here because no maintained crate has these semantics (`failsafe` 1.3 has a windowed
//! success rate and jittered backoff, but no paused clock, no trial slot freed on drop, and no
//! runtime settings change or forced state). They are Hystrix's, refined: a time-based rolling
//! window of 10 one-second buckets; it trips with at least 20 calls and at
//! least 50 % failures in the window; it stays open 5 s, doubling after each failed trial up to
//! 60 s, with ±20 % jitter; half-open admits exactly one trial, and a trial that is dropped
//! without an outcome (its request was cancelled) frees the slot so the breaker is never stuck.
//! Failures are connect errors, timeouts, 5xx and malformed bodies; a 4xx and every local
//! rejection are `Outcome::Ignored` and count for nothing.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// Where time comes from: tokio's clock in the server (pausable in tests), anything in unit tests.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
}

/// tokio's clock: real time, or virtual time under `start_paused`.
pub struct TokioClock;

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerSettings {
    pub window: Duration,
    pub buckets: u32,
    pub min_calls: u32,
    pub failure_ratio: f64,
    pub open_for: Duration,
    pub max_open_for: Duration,
    /// ±share of the open time drawn at random (0.2 = ±20 %).
    pub jitter: f64,
}

impl Default for BreakerSettings {
    /// The breaker's part of [`crate::config::BACKEND_DEFAULTS`], over its fixed window.
    fn default() -> Self {
        let d = crate::config::BACKEND_DEFAULTS;
        Self {
            window: Duration::from_secs(10),
            buckets: 10,
            min_calls: d.breaker_min_calls.unwrap_or(0),
            failure_ratio: d.breaker_failure_ratio.unwrap_or(0.0),
            open_for: Duration::from_millis(d.breaker_open_ms.unwrap_or(0)),
            max_open_for: Duration::from_millis(d.breaker_max_open_ms.unwrap_or(0)),
            jitter: 0.2,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }
}

/// How a call that passed the breaker ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    /// Neither: a 4xx, or a rejection before the backend was called.
    Ignored,
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Which window slot (time since start / bucket width) this bucket currently counts.
    epoch: u64,
    calls: u32,
    failures: u32,
}

#[derive(Debug)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { trial_in_flight: bool },
}

#[derive(Debug)]
struct Inner {
    /// Settings live under the lock so they can change at runtime.
    settings: BreakerSettings,
    phase: Phase,
    buckets: Vec<Bucket>,
    /// Base open time for the next trip; doubles after each failed trial.
    next_open_for: Duration,
    transitions: u64,
}

pub struct Breaker {
    clock: Arc<dyn Clock>,
    start: Instant,
    /// Returns a value in [-1, 1]; scaled by `settings.jitter`.
    random: Box<dyn Fn() -> f64 + Send + Sync>,
    /// A std mutex: held for a few arithmetic steps, never across an `.await`.
    inner: Mutex<Inner>,
    on_transition: Box<dyn Fn(State) + Send + Sync>,
}

/// Permission to call the backend. Record how it went; dropping it unrecorded is a cancel.
pub struct Permit<'a> {
    breaker: &'a Breaker,
    trial: bool,
    done: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected;

impl Breaker {
    pub fn new(settings: BreakerSettings, clock: Arc<dyn Clock>) -> Self {
        let start = clock.now();
        Self {
            clock,
            start,
            random: Box::new(|| fastrand::f64() * 2.0 - 1.0),
            inner: Mutex::new(Inner {
                settings,
                phase: Phase::Closed,
                buckets: vec![Bucket::default(); settings.buckets.max(1) as usize],
                next_open_for: settings.open_for,
                transitions: 0,
            }),
            on_transition: Box::new(|_| {}),
        }
    }

    /// Replaces the jitter source (tests make it deterministic).
    pub fn with_random(mut self, random: impl Fn() -> f64 + Send + Sync + 'static) -> Self {
        self.random = Box::new(random);
        self
    }

    /// Called with the new state on every transition (metrics hook).
    pub fn on_transition(mut self, hook: impl Fn(State) + Send + Sync + 'static) -> Self {
        self.on_transition = Box::new(hook);
        self
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn settings(&self) -> BreakerSettings {
        self.inner().settings
    }

    /// Changes the numbers; the state (open, closed, half-open) and the window are kept,
    /// except that a new bucket count starts an empty window.
    pub fn set_settings(&self, settings: BreakerSettings) {
        let mut inner = self.inner();
        if settings.buckets != inner.settings.buckets {
            inner.buckets = vec![Bucket::default(); settings.buckets.max(1) as usize];
        }
        inner.next_open_for =
            inner.next_open_for.clamp(settings.open_for, settings.max_open_for.max(settings.open_for));
        inner.settings = settings;
    }

    /// Operator controls: `trip` opens the breaker now (for the current open time), `reset`
    /// closes it and forgets the window and the backoff.
    pub fn force(&self, open: bool) {
        let now = self.clock.now();
        let mut inner = self.inner();
        if open {
            self.open(&mut inner, now);
        } else {
            inner.next_open_for = inner.settings.open_for;
            for b in &mut inner.buckets {
                *b = Bucket::default();
            }
            if !matches!(inner.phase, Phase::Closed) {
                self.transition(&mut inner, Phase::Closed);
            }
        }
    }

    pub fn state(&self) -> State {
        match self.inner().phase {
            Phase::Closed => State::Closed,
            Phase::Open { .. } => State::Open,
            Phase::HalfOpen { .. } => State::HalfOpen,
        }
    }

    /// How many state changes so far.
    pub fn transitions(&self) -> u64 {
        self.inner().transitions
    }

    /// Asks to call the backend: a permit, or `Rejected` while open (or while a trial runs).
    pub fn try_acquire(&self) -> Result<Permit<'_>, Rejected> {
        let now = self.clock.now();
        let mut inner = self.inner();
        match inner.phase {
            Phase::Closed => Ok(Permit { breaker: self, trial: false, done: false }),
            Phase::Open { until } if now >= until => {
                self.transition(&mut inner, Phase::HalfOpen { trial_in_flight: true });
                Ok(Permit { breaker: self, trial: true, done: false })
            }
            Phase::Open { .. } => Err(Rejected),
            Phase::HalfOpen { trial_in_flight: false } => {
                inner.phase = Phase::HalfOpen { trial_in_flight: true };
                Ok(Permit { breaker: self, trial: true, done: false })
            }
            Phase::HalfOpen { trial_in_flight: true } => Err(Rejected),
        }
    }

    /// Counts a call this breaker did not see but stands for: a read that joined another
    /// request's identical call and got its outcome (`backends/share.rs`). Without it, a
    /// hanging backend shared by every request would make too few calls to trip the breaker,
    /// and every request would wait for its timeout.
    pub fn observe(&self, outcome: Outcome) {
        self.record(false, outcome);
    }

    fn transition(&self, inner: &mut Inner, phase: Phase) {
        inner.phase = phase;
        inner.transitions += 1;
        let state = match inner.phase {
            Phase::Closed => State::Closed,
            Phase::Open { .. } => State::Open,
            Phase::HalfOpen { .. } => State::HalfOpen,
        };
        (self.on_transition)(state);
    }

    fn epoch(&self, settings: &BreakerSettings, now: Instant) -> u64 {
        let width = settings.window / settings.buckets.max(1);
        (now.duration_since(self.start).as_nanos() / width.as_nanos().max(1)) as u64
    }

    fn open(&self, inner: &mut Inner, now: Instant) {
        let base = inner.next_open_for;
        let jittered =
            base.mul_f64((1.0 + inner.settings.jitter * (self.random)().clamp(-1.0, 1.0)).max(0.0));
        for b in &mut inner.buckets {
            *b = Bucket::default();
        }
        self.transition(inner, Phase::Open { until: now + jittered });
    }

    fn record(&self, trial: bool, outcome: Outcome) {
        let now = self.clock.now();
        let mut inner = self.inner();
        if trial {
            match outcome {
                Outcome::Success => {
                    inner.next_open_for = inner.settings.open_for;
                    self.transition(&mut inner, Phase::Closed);
                }
                Outcome::Failure => {
                    inner.next_open_for = (inner.next_open_for * 2).min(inner.settings.max_open_for);
                    self.open(&mut inner, now);
                }
                Outcome::Ignored => inner.phase = Phase::HalfOpen { trial_in_flight: false },
            }
            return;
        }
        if outcome == Outcome::Ignored || !matches!(inner.phase, Phase::Closed) {
            return;
        }
        let epoch = self.epoch(&inner.settings, now);
        let len = inner.buckets.len() as u64;
        let bucket = &mut inner.buckets[(epoch % len) as usize];
        if bucket.epoch != epoch {
            *bucket = Bucket { epoch, calls: 0, failures: 0 };
        }
        bucket.calls += 1;
        if outcome == Outcome::Failure {
            bucket.failures += 1;
        }
        let (calls, failures) = inner
            .buckets
            .iter()
            .filter(|b| b.epoch + len > epoch)
            .fold((0u32, 0u32), |(c, f), b| (c + b.calls, f + b.failures));
        let settings = inner.settings;
        if calls >= settings.min_calls && f64::from(failures) >= settings.failure_ratio * f64::from(calls) {
            self.open(&mut inner, now);
        }
    }

    fn cancel_trial(&self) {
        let mut inner = self.inner();
        if let Phase::HalfOpen { trial_in_flight: true } = inner.phase {
            inner.phase = Phase::HalfOpen { trial_in_flight: false };
        }
    }
}

impl Permit<'_> {
    pub fn record(mut self, outcome: Outcome) {
        self.done = true;
        self.breaker.record(self.trial, outcome);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.done && self.trial {
            self.breaker.cancel_trial();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clock moved by hand.
    struct Manual(Mutex<Instant>);

    impl Manual {
        fn advance(&self, d: Duration) {
            *self.0.lock().unwrap() += d;
        }
    }

    impl Clock for Manual {
        fn now(&self) -> Instant {
            *self.0.lock().unwrap()
        }
    }

    fn breaker() -> (Arc<Manual>, Breaker) {
        let clock = Arc::new(Manual(Mutex::new(Instant::now())));
        let b = Breaker::new(BreakerSettings::default(), clock.clone()).with_random(|| 0.0);
        (clock, b)
    }

    fn calls(b: &Breaker, outcome: Outcome, n: usize) {
        for _ in 0..n {
            b.try_acquire().expect("closed").record(outcome);
        }
    }

    #[test]
    fn nineteen_failures_do_not_trip_twenty_do() {
        let (_, b) = breaker();
        calls(&b, Outcome::Failure, 19);
        assert_eq!(b.state(), State::Closed);
        calls(&b, Outcome::Failure, 1);
        assert_eq!(b.state(), State::Open);
        assert!(b.try_acquire().is_err());
    }

    #[test]
    fn forty_percent_failures_do_not_trip_fifty_do() {
        let (_, b) = breaker();
        calls(&b, Outcome::Success, 30);
        calls(&b, Outcome::Failure, 20);
        assert_eq!(b.state(), State::Closed, "20 of 50 is 40 %");
        calls(&b, Outcome::Failure, 10);
        assert_eq!(b.state(), State::Open, "30 of 60 is 50 %");
    }

    #[test]
    fn ignored_outcomes_count_for_nothing() {
        let (_, b) = breaker();
        calls(&b, Outcome::Ignored, 100);
        calls(&b, Outcome::Failure, 19);
        assert_eq!(b.state(), State::Closed);
    }

    #[test]
    fn old_buckets_leave_the_window() {
        let (clock, b) = breaker();
        calls(&b, Outcome::Failure, 15);
        clock.advance(Duration::from_secs(11));
        calls(&b, Outcome::Failure, 15);
        assert_eq!(b.state(), State::Closed, "the first 15 are out of the 10 s window");
        calls(&b, Outcome::Failure, 5);
        assert_eq!(b.state(), State::Open);
    }

    #[test]
    fn half_open_admits_exactly_one_trial_and_a_cancelled_trial_frees_it() {
        let (clock, b) = breaker();
        calls(&b, Outcome::Failure, 20);
        clock.advance(Duration::from_secs(5));
        let permits: Vec<_> = (0..100).filter_map(|_| b.try_acquire().ok()).collect();
        assert_eq!(permits.len(), 1);
        assert_eq!(b.state(), State::HalfOpen);
        drop(permits);
        let trial = b.try_acquire().expect("a cancelled trial frees the slot");
        assert!(b.try_acquire().is_err());
        trial.record(Outcome::Success);
        assert_eq!(b.state(), State::Closed);
        assert!(b.try_acquire().is_ok());
    }

    #[test]
    fn failed_trials_double_the_open_time_up_to_the_cap_one_transition_each() {
        let (clock, b) = breaker();
        calls(&b, Outcome::Failure, 20);
        assert_eq!(b.transitions(), 1);
        let mut expected = Duration::from_secs(5);
        for _ in 0..6 {
            clock.advance(expected - Duration::from_millis(1));
            assert!(b.try_acquire().is_err(), "still open just before {expected:?}");
            clock.advance(Duration::from_millis(1));
            b.try_acquire().expect("trial").record(Outcome::Failure);
            expected = (expected * 2).min(Duration::from_secs(60));
        }
        assert_eq!(expected, Duration::from_secs(60));
        // closed->open, then per failed trial: open->half-open, half-open->open.
        assert_eq!(b.transitions(), 1 + 6 * 2);
        clock.advance(expected);
        b.try_acquire().expect("trial").record(Outcome::Success);
        assert_eq!(b.state(), State::Closed);
        // Success resets the backoff: the next trip opens for 5 s again.
        calls(&b, Outcome::Failure, 20);
        clock.advance(Duration::from_secs(5));
        assert!(b.try_acquire().is_ok());
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let clock = Arc::new(Manual(Mutex::new(Instant::now())));
        let b = Breaker::new(BreakerSettings::default(), clock.clone()).with_random(|| 1.0);
        calls(&b, Outcome::Failure, 20);
        clock.advance(Duration::from_millis(5999));
        assert!(b.try_acquire().is_err());
        clock.advance(Duration::from_millis(1));
        assert!(b.try_acquire().is_ok(), "5 s + 20 % = 6 s");
    }
}
