//! Demo mode routes: see the demo backends with their request counts, and steer their faults.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};

use super::AppState;
use super::error::ApiError;
use crate::demo::{BackendInfo, Faults};

pub async fn list(State(state): State<AppState>) -> Json<Vec<BackendInfo>> {
    Json(state.demo.as_ref().map(|d| d.info()).unwrap_or_default())
}

pub async fn set_faults(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<Json<Faults>, JsonRejection>,
) -> Result<Json<Faults>, ApiError> {
    let Json(faults) =
        body.map_err(|e| ApiError::BadRequest(format!("faults for {name}: {}", e.body_text())))?;
    let demo = state.demo.as_ref().ok_or_else(|| ApiError::NotFound("demo mode is off".to_owned()))?;
    demo.set_faults(&name, faults)?;
    Ok(Json(faults))
}
