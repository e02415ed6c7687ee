//! Operator routes: liveness and the schema as SDL.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::AppState;

pub async fn healthz(State(state): State<AppState>) -> Json<Value> {
    let backends: Vec<&str> = state.engine.backends().names().collect();
    Json(json!({ "status": "ok", "backends": backends }))
}

/// The executable schema as SDL (without Facade's binding directives).
pub async fn schema_sdl(State(state): State<AppState>) -> String {
    state.engine.sdl()
}
