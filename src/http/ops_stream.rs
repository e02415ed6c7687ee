//! `GET /ops/stream`: a live snapshot every second as server-sent events, for the ops page
//! (or `curl -N`). Any valid token: every backend, and the endpoint versions of the clients
//! the token may manage. Bounded ([`StreamSlots`]): at most [`MAX_STREAMS`] at once, the last
//! [`ADMIN_SLOTS`] of them for admin tokens, [`PER_TOKEN`] per token. The token is checked
//! again every [`RECHECK`]: a revoked or expired token's stream ends (with an `end` event).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use crate::registry::model::Principal;

/// Streams open at once, at most.
pub const MAX_STREAMS: usize = 64;
/// Of those, slots only admin tokens may take (a team cannot lock the operators out).
pub const ADMIN_SLOTS: usize = 8;
/// Streams one token may hold open at once.
pub const PER_TOKEN: usize = 4;
/// How often an open stream's token is checked again.
pub const RECHECK: Duration = Duration::from_secs(5);
/// Seconds a snapshot's rates and percentiles cover.
const SECS: usize = 10;

/// The open streams: how many, and how many per token (by its hash).
#[derive(Default)]
pub struct StreamSlots {
    open: Mutex<(usize, HashMap<String, usize>)>,
}

/// One stream's slot, given back when the stream ends.
pub struct Slot {
    slots: Arc<StreamSlots>,
    token: String,
}

impl StreamSlots {
    /// A slot for a stream of `token_hash`, or why not (`Unavailable`: none left for this
    /// kind of token; `TooMany`: this token holds its share).
    pub fn take(self: &Arc<Self>, token_hash: &str, admin: bool) -> Result<Slot, ApiError> {
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (total, per_token) = &mut *open;
        let mine = per_token.get(token_hash).copied().unwrap_or(0);
        if mine >= PER_TOKEN {
            return Err(ApiError::TooMany(format!("this token has {PER_TOKEN} ops streams open already")));
        }
        let limit = if admin { MAX_STREAMS } else { MAX_STREAMS - ADMIN_SLOTS };
        if *total >= limit {
            return Err(ApiError::Unavailable(format!(
                "{total} ops streams are open already (at most {limit} for {} tokens)",
                if admin { "admin" } else { "team" }
            )));
        }
        *total += 1;
        per_token.insert(token_hash.to_owned(), mine + 1);
        Ok(Slot { slots: self.clone(), token: token_hash.to_owned() })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (total, per_token) = &mut *open;
        *total = total.saturating_sub(1);
        if let Some(n) = per_token.get_mut(&self.token) {
            *n -= 1;
            if *n == 0 {
                per_token.remove(&self.token);
            }
        }
    }
}

/// One snapshot: per backend and per live endpoint version the token may see.
pub fn snapshot(state: &AppState, who: &Principal) -> Value {
    let registry = &state.registry;
    let snap = registry.snapshot();
    let backends: Vec<Value> = snap
        .engine
        .backends()
        .iter()
        .map(|b| {
            let live = b.live();
            let s = live.calls.summary(SECS);
            let (in_flight, bulkhead) = b.in_flight();
            json!({
                "name": b.name(),
                "callsPerSec": s.per_sec,
                "errorPct": s.error_pct,
                "p50Ms": s.p50_ms,
                "p99Ms": s.p99_ms,
                "breaker": b.breaker().state().as_str(),
                "inFlight": in_flight,
                "bulkhead": bulkhead,
                "rejectedPerSec": {
                    "circuitOpen": live.circuit_open.summary(SECS).per_sec,
                    "rateLimited": live.rate_limited.summary(SECS).per_sec,
                    "bulkheadFull": live.bulkhead_full.summary(SECS).per_sec,
                },
                "sharedPerSec": live.shared.summary(SECS).per_sec,
                "rates": live.calls.rates(crate::telemetry::window::SECONDS - 1),
            })
        })
        .collect();
    let visible = |client: &str| snap.client_team(client).is_some_and(|team| who.may_manage(team));
    let endpoints: Vec<Value> = snap
        .live_versions()
        .into_iter()
        .filter(|(c, ..)| visible(c))
        .map(|(client, endpoint, side, v)| {
            let s = registry.calls().of(client, endpoint, v.version).minute.summary(SECS);
            let guard = snap.guarded(client, endpoint);
            json!({
                "client": client,
                "endpoint": endpoint,
                "version": v.version,
                "side": side,
                "requestsPerSec": s.per_sec,
                "errorPct": s.error_pct,
                "p99Ms": s.p99_ms,
                "guarded": guard.is_some_and(|(g, ..)| g.enabled),
            })
        })
        .collect();
    let rollbacks: Vec<Value> = registry
        .calls()
        .recent_rollbacks()
        .into_iter()
        .filter(|r| r["endpoint"].as_str().and_then(|e| e.split('/').next()).is_some_and(visible))
        .collect();
    json!({
        "atMs": crate::registry::store::now_ms(),
        "windowSecs": SECS,
        "backends": backends,
        "endpoints": endpoints,
        "rollbacks": rollbacks,
    })
}

pub async fn stream(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    // The middleware let the request in with a valid token; the stream keeps only its hash.
    let hash = super::auth::bearer(&headers).map(super::auth::token_hash).unwrap_or_default();
    let slot = state.ops_streams.take(&hash, who.is_admin())?;
    let ticks = tokio::time::interval(Duration::from_secs(1));
    let checked = tokio::time::Instant::now();
    let open = Open { ticks, state, who, hash, checked, slot: Some(slot) };
    let events = futures_util::stream::unfold(open, |mut open| async move {
        open.slot.as_ref()?;
        open.ticks.tick().await;
        if open.checked.elapsed() >= RECHECK {
            open.checked = tokio::time::Instant::now();
            if let Some(reason) = open.revoked().await {
                open.slot = None;
                let event = Event::default().event("end").json_data(json!({ "reason": reason }));
                return Some((Ok(event.unwrap_or_default()), open));
            }
        }
        let event = Event::default().event("snapshot").json_data(snapshot(&open.state, &open.who));
        Some((Ok(event.unwrap_or_default()), open))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// An open stream's state.
struct Open {
    ticks: tokio::time::Interval,
    state: AppState,
    who: Principal,
    hash: String,
    checked: tokio::time::Instant,
    /// Taken away when the stream ends (the next poll ends it and frees the slot).
    slot: Option<Slot>,
}

impl Open {
    /// Why the stream must end, if it must: the token is no longer valid, or is someone
    /// else now. A registry that cannot be asked keeps the stream open (the token's last
    /// answer stands; nothing can be revoked there meanwhile).
    async fn revoked(&self) -> Option<String> {
        match super::auth::principal_of_hash(&self.state, &self.hash).await {
            Ok(Some(p)) if p == self.who => None,
            Ok(_) => Some("the token was revoked or has expired".to_owned()),
            Err(_) => None,
        }
    }
}
