//! Operator routes: liveness and the schema as SDL.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::AppState;

pub async fn healthz(State(state): State<AppState>) -> Json<Value> {
    let backends: Vec<&str> = state.engine.backends().names().collect();
    Json(json!({ "status": "ok", "backends": backends, "scripts": { "trips": state.scripts.trips() } }))
}

/// Prometheus text: backend calls by outcome, breaker states, rejections, latencies.
pub async fn metrics(State(state): State<AppState>) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    // Breaker gauges are set on transitions; refresh them so a scrape always sees every backend.
    for backend in state.engine.backends().iter() {
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

/// The executable schema as SDL (without Facade's binding directives).
pub async fn schema_sdl(State(state): State<AppState>) -> String {
    state.engine.sdl()
}

/// The OpenAPI document of the admin API (kept beside the routes; a test checks it covers them).
pub async fn openapi() -> ([(axum::http::HeaderName, &'static str); 1], &'static str) {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], include_str!("openapi.json"))
}
