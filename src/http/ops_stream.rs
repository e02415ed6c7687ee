//! `GET /ops/stream`: a live snapshot every second as server-sent events, for the ops page
//! (or `curl -N`). Any valid token: every backend, and the endpoint versions of the clients
//! the token may manage. At most [`MAX_STREAMS`] at once (503 beyond).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::{Extension, Json};
use futures_util::Stream;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use crate::registry::model::Principal;

/// Streams open at once, at most.
pub const MAX_STREAMS: usize = 64;
/// Seconds a snapshot's rates and percentiles cover.
const SECS: usize = 10;

/// Who the token is, so the page offers only what it may do.
pub async fn me(Extension(who): Extension<Principal>) -> Json<Value> {
    Json(match &who {
        Principal::Admin { label } => json!({ "kind": "admin", "label": label }),
        Principal::Team { team, label } => json!({ "kind": "team", "team": team, "label": label }),
    })
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
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let Ok(permit) = state.ops_streams.clone().try_acquire_owned() else {
        return Err(ApiError::Unavailable(format!("{MAX_STREAMS} ops streams are open already")));
    };
    let who = Arc::new(who);
    let ticks = tokio::time::interval(Duration::from_secs(1));
    let events = futures_util::stream::unfold(
        (ticks, state, who, permit),
        |(mut ticks, state, who, permit)| async move {
            ticks.tick().await;
            let event =
                Event::default().event("snapshot").json_data(snapshot(&state, &who)).unwrap_or_default();
            Some((Ok(event), (ticks, state, who, permit)))
        },
    );
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
