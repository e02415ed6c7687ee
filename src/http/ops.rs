//! Operator routes: liveness (`/healthz`: the process answers), readiness (`/readyz`: the
//! registry store works too), metrics and the schema as SDL.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;

pub async fn healthz(State(state): State<AppState>) -> Json<Value> {
    let engine = state.registry.engine();
    let backends: Vec<&str> = engine.backends().names().collect();
    Json(json!({ "status": "ok", "backends": backends, "scripts": {
        "trips": state.scripts.trips(),
        "workersReplaced": state.scripts.workers_replaced(),
        "dropped": state.scripts.dropped(),
    } }))
}

/// Within a second: 200 while this instance serves (its snapshot), with the store's state in
/// the body (`ok`, or `unreachable` with the reason: PostgreSQL does not answer, so registry
/// writes answer 503 meanwhile and devices are served from the snapshot); 503 when writes
/// would be lost (the SQLite file is gone, replaced or read-only): a load balancer takes
/// the instance out. `/healthz` stays the process's liveness.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    use crate::registry::StoreState;
    let kind = state.registry.store().kind();
    let generation = state.registry.snapshot().generation;
    match state.registry.store_state().await {
        StoreState::Ok => (
            StatusCode::OK,
            Json(json!({ "status": "ready", "store": kind, "storeState": "ok", "generation": generation })),
        ),
        StoreState::Unreachable(reason) => {
            tracing::warn!(reason = %reason, "the registry store is unreachable; serving from the snapshot");
            (
                StatusCode::OK,
                Json(json!({
                    "status": "ready", "store": kind, "storeState": "unreachable", "reason": reason,
                    "generation": generation,
                })),
            )
        }
        StoreState::Lost(reason) => {
            tracing::warn!(reason = %reason, "not ready: the registry store is not usable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(
                    json!({ "status": "unavailable", "store": kind, "storeState": "lost", "reason": reason }),
                ),
            )
        }
    }
}

/// Prometheus text: backend calls by outcome, breaker states, rejections, latencies.
pub async fn metrics(State(state): State<AppState>) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    // Breaker gauges are set on transitions; refresh them so a scrape always sees every backend.
    for backend in state.registry.engine().backends().iter() {
        let current = backend.breaker().state();
        for s in [
            crate::backends::breaker::State::Closed,
            crate::backends::breaker::State::Open,
            crate::backends::breaker::State::HalfOpen,
        ] {
            metrics::gauge!(crate::telemetry::metrics::BREAKER_STATE, "backend" => backend.name().to_owned(), "state" => s.as_str())
                .set(if s == current { 1.0 } else { 0.0 });
        }
    }
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], crate::telemetry::metrics::render())
}

/// The executable schema as SDL (without Facade's binding directives), under the same rule
/// as introspection: with a token, or when `[graphql] introspection` lets devices see it.
pub async fn schema_sdl(State(state): State<AppState>, headers: HeaderMap) -> Result<String, ApiError> {
    if !state.introspection && !super::auth::Caller::of(&state, &headers).await.trusted() {
        return Err(ApiError::Unauthorized(
            "introspection is disabled for requests without a token: /schema.graphql needs one".into(),
        ));
    }
    Ok(state.registry.engine().sdl())
}

/// The OpenAPI document of the admin API (kept beside the routes; a test checks it covers them).
pub async fn openapi() -> ([(axum::http::HeaderName, &'static str); 1], &'static str) {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], include_str!("openapi.json"))
}
