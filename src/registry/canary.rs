//! The canary guard: each instance compares a rollout's canary with its stable version over a
//! sliding window of its own device calls, and rolls a clearly worse canary back by itself.
//!
//! The decision is local (each instance judges the calls it served); the rollback is one
//! conditional update in the store — it applies only if the rollout still has that canary —
//! so with several instances on one PostgreSQL the first to decide rolls back and writes the
//! audit entry, and the others find nothing to do (their update is refused, nothing written).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::Registry;
use super::model::{CanaryGuard, RolloutChange, RolloutError};
use super::store::StoreError;
use crate::telemetry::window::{Hour, Summary, Window};

/// What the guard makes of a window.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Too few calls on one side to say.
    NotEnough,
    Healthy,
    /// Roll back, because (a sentence with the figures).
    RollBack(String),
}

/// The guard's judgement of a canary against stable over the same window: pure.
pub fn judge(guard: &CanaryGuard, stable: &Summary, canary: &Summary) -> Verdict {
    if !guard.enabled {
        return Verdict::Healthy;
    }
    let min = u64::from(guard.min_requests);
    if stable.calls < min || canary.calls < min {
        return Verdict::NotEnough;
    }
    let over = canary.error_pct - stable.error_pct;
    if over > guard.max_error_rate_increase_pct {
        return Verdict::RollBack(format!(
            "canary errors {:.1} % of {} calls vs stable {:.1} % of {} calls over {} s (more than {} points worse)",
            canary.error_pct,
            canary.calls,
            stable.error_pct,
            stable.calls,
            guard.window_secs,
            guard.max_error_rate_increase_pct
        ));
    }
    let limit = (stable.p99_ms * guard.max_p99_ratio).max(stable.p99_ms + guard.min_p99_increase_ms);
    if canary.p99_ms > limit {
        return Verdict::RollBack(format!(
            "canary p99 {:.1} ms vs stable {:.1} ms over {} s (limit {:.1} ms)",
            canary.p99_ms, stable.p99_ms, guard.window_secs, limit
        ));
    }
    Verdict::Healthy
}

/// One endpoint version's device calls: the last minute by second (what the guard judges and
/// the ops stream shows: at most [`DEVICE_SHARE`] calls of one device per 10 s), the last
/// hour by minute (every call).
#[derive(Default)]
pub struct VersionCalls {
    pub minute: Window,
    pub hour: Hour,
    devices: Mutex<DeviceShare>,
}

/// Calls of one device that count in a version's window per 10-second slot: one device (or
/// one attacker with one device ID) cannot fill a canary's window (probe 2, M1).
pub const DEVICE_SHARE: u16 = 10;
/// Devices tracked per version and slot; past that, calls of devices not yet seen in the slot
/// do not count (a flood of invented IDs cannot grow the map nor fill the window).
const DEVICES_TRACKED: usize = 50_000;

/// Calls per device in the current 10-second slot.
#[derive(Default)]
struct DeviceShare {
    slot: u64,
    calls: HashMap<u64, u16, foldhash::fast::FixedState>,
}

impl VersionCalls {
    /// Whether a call of `device` at second `now` still counts in the window (calls without a
    /// device ID always count: they are always served by the stable version).
    fn counts(&self, device: Option<&str>, now: u64) -> bool {
        let Some(device) = device else { return true };
        let key = {
            use std::hash::BuildHasher;
            foldhash::fast::FixedState::with_seed(7).hash_one(device)
        };
        let mut share = self.devices.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if share.slot != now / 10 {
            share.slot = now / 10;
            share.calls.clear();
        }
        let tracked = share.calls.len();
        match share.calls.get_mut(&key) {
            Some(n) if *n >= DEVICE_SHARE => false,
            Some(n) => {
                *n += 1;
                true
            }
            None if tracked >= DEVICES_TRACKED => false,
            None => {
                share.calls.insert(key, 1);
                true
            }
        }
    }
}

/// Device calls per endpoint version, and when each endpoint was last judged. Bounded:
/// versions no longer live are dropped at every snapshot rebuild.
#[derive(Default)]
pub struct Calls {
    windows: Mutex<HashMap<(String, String, i64), Arc<VersionCalls>>>,
    judged: Mutex<HashMap<(String, String), Instant>>,
    /// Automatic rollbacks this instance made, newest last (at most 20), for the ops stream.
    recent: Mutex<std::collections::VecDeque<Value>>,
}

/// How often one endpoint is judged, at most.
const JUDGE_EVERY: Duration = Duration::from_millis(500);

impl Calls {
    /// A version's calls (made empty on first use).
    pub fn of(&self, client: &str, endpoint: &str, version: i64) -> Arc<VersionCalls> {
        let mut map = self.windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry((client.to_owned(), endpoint.to_owned(), version)).or_default().clone()
    }

    /// A version's calls in the last hour (0 for one never called).
    pub fn last_hour(&self, client: &str, endpoint: &str, version: i64) -> u64 {
        let map = self.windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(&(client.to_owned(), endpoint.to_owned(), version)).map_or(0, |c| c.hour.total())
    }

    pub(super) fn keep_only(&self, snapshot: &super::Snapshot) {
        let live: std::collections::BTreeSet<(&str, &str, i64)> =
            snapshot.live_versions().into_iter().map(|(c, e, _, v)| (c, e, v.version)).collect();
        let mut map = self.windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.retain(|(c, e, v), _| live.contains(&(c.as_str(), e.as_str(), *v)));
        let mut judged = self.judged.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        judged.retain(|(c, e), _| live.iter().any(|(lc, le, _)| lc == c && le == e));
    }

    /// Whether it is time to judge this endpoint again (and marks it judged).
    fn due(&self, client: &str, endpoint: &str) -> bool {
        let mut judged = self.judged.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        match judged.get_mut(&(client.to_owned(), endpoint.to_owned())) {
            Some(last) if now.duration_since(*last) < JUDGE_EVERY => false,
            Some(last) => {
                *last = now;
                true
            }
            None => {
                judged.insert((client.to_owned(), endpoint.to_owned()), now);
                true
            }
        }
    }

    pub fn recent_rollbacks(&self) -> Vec<Value> {
        self.recent.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().cloned().collect()
    }
}

/// One device call, as the canary guard sees it.
pub struct Observed<'a> {
    pub client: &'a str,
    pub endpoint: &'a str,
    pub version: i64,
    pub latency: Duration,
    /// It failed on the server's side (see [`crate::errors::Code::server_side`]).
    pub failed: bool,
    pub device: Option<&'a str>,
}

impl Registry {
    /// Records one device call of an endpoint version (its latency, whether it failed on the
    /// server's side: a backend, a script, a timeout; never the caller's bad request) and
    /// judges the endpoint's canary if it has one. One device's calls count in the window
    /// up to its share.
    pub fn observe(self: &Arc<Self>, call: Observed<'_>) {
        let Observed { client, endpoint, version, latency, failed, device } = call;
        let calls = self.calls.of(client, endpoint, version);
        calls.hour.count();
        if !calls.counts(device, calls.minute.now()) {
            return;
        }
        calls.minute.record(latency, failed);
        let snapshot = self.snapshot();
        let Some((guard, stable, canary)) = snapshot.guarded(client, endpoint) else { return };
        if !guard.enabled || !self.calls.due(client, endpoint) {
            return;
        }
        let secs = guard.window_secs as usize;
        let s = self.calls.of(client, endpoint, stable).minute.recent(secs);
        let c = self.calls.of(client, endpoint, canary).minute.recent(secs);
        if let Verdict::RollBack(why) = judge(&guard, &s, &c) {
            let registry = self.clone();
            let (client, endpoint) = (client.to_owned(), endpoint.to_owned());
            let figures = json!({ "guard": guard, "stable": s, "canary": c, "stableVersion": stable, "canaryVersion": canary });
            tokio::spawn(async move {
                registry.roll_back_canary(&client, &endpoint, canary, &why, figures).await;
            });
        }
    }

    /// Rolls the canary back if the rollout still has it (a conditional update: done once
    /// whatever the number of instances that decided so).
    async fn roll_back_canary(&self, client: &str, endpoint: &str, canary: i64, why: &str, figures: Value) {
        let target = format!("{client}/{endpoint}");
        let result = self
            .store
            .update_rollout_with(
                client,
                endpoint,
                "canary-guard",
                "rollout.auto_rollback",
                Some(why),
                super::store::RolloutUpdate { figures: Some(&figures), guard: None },
                &|cur: super::model::Rollout| {
                    if cur.canary != Some(canary) || cur.canary_percent == 0 {
                        return Err(StoreError::Conflict(format!(
                            "{target}: canary {canary} is no longer live"
                        )));
                    }
                    RolloutChange::Rollback.apply(&target, cur).map_err(|e| match e {
                        RolloutError::Invalid(m) | RolloutError::Conflict(m) => StoreError::Conflict(m),
                    })
                },
            )
            .await;
        match result {
            Ok(_) => {
                tracing::warn!(endpoint = %target, canary, reason = why, "canary rolled back automatically");
                {
                    let mut recent =
                        self.calls.recent.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    recent.push_back(json!({
                        "atMs": super::store::now_ms(), "endpoint": target, "canary": canary, "reason": why, "figures": figures,
                    }));
                    while recent.len() > 20 {
                        recent.pop_front();
                    }
                }
                if let Err(e) = self.changed().await {
                    tracing::warn!(error = %e, "registry reload after an automatic rollback failed");
                }
            }
            Err(StoreError::Conflict(m)) => tracing::debug!(reason = %m, "automatic rollback not needed"),
            Err(e) => tracing::warn!(endpoint = %target, error = %e, "automatic rollback failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(calls: u64, errors: u64, p99_ms: f64) -> Summary {
        Summary {
            calls,
            errors,
            per_sec: 0.0,
            error_pct: errors as f64 * 100.0 / calls.max(1) as f64,
            p50_ms: p99_ms / 2.0,
            p99_ms,
        }
    }

    #[test]
    fn a_clearly_worse_canary_is_rolled_back_and_a_similar_one_is_not() {
        let g = CanaryGuard::default();
        assert_eq!(judge(&g, &side(1000, 0, 5.0), &side(10, 10, 5.0)), Verdict::NotEnough);
        assert!(
            matches!(judge(&g, &side(1000, 5, 5.0), &side(100, 30, 5.0)), Verdict::RollBack(why) if why.contains("30.0 %"))
        );
        assert_eq!(judge(&g, &side(1000, 10, 5.0), &side(100, 5, 5.0)), Verdict::Healthy);
        // Latency: twice stable's p99 and 50 ms more.
        assert_eq!(judge(&g, &side(1000, 0, 3.0), &side(100, 0, 20.0)), Verdict::Healthy, "noise");
        assert!(matches!(judge(&g, &side(1000, 0, 100.0), &side(100, 0, 260.0)), Verdict::RollBack(_)));
        assert_eq!(
            judge(&CanaryGuard { enabled: false, ..g }, &side(1000, 0, 1.0), &side(100, 100, 900.0)),
            Verdict::Healthy
        );
    }

    #[test]
    fn one_device_counts_at_most_its_share_per_slot() {
        let calls = VersionCalls::default();
        let counted = |device, now| (0..100).filter(|_| calls.counts(Some(device), now)).count();
        assert_eq!(counted("d-1", 0), usize::from(DEVICE_SHARE));
        assert_eq!(counted("d-2", 5), usize::from(DEVICE_SHARE), "another device has its own share");
        assert_eq!(counted("d-1", 9), 0, "same slot: spent");
        assert_eq!(counted("d-1", 10), usize::from(DEVICE_SHARE), "next slot: a new share");
        assert!((0..100).all(|_| calls.counts(None, 10)), "calls without a device ID always count");
    }

    #[test]
    fn guard_numbers_are_checked() {
        assert!(CanaryGuard::default().check().is_empty());
        let bad = CanaryGuard { window_secs: 100, max_p99_ratio: 0.5, ..CanaryGuard::default() };
        assert_eq!(bad.check().len(), 2);
    }
}
