//! The admin API's backend routes (`/admin/v1/backends`): policy numbers at runtime, breaker
//! trip/reset; admin tokens only. Authentication is `auth.rs`; the registry routes are in
//! `registry_admin.rs`.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::require_admin;
use super::error::ApiError;
use crate::backends::Backend;
use crate::backends::policy::PolicyOverrides;
use crate::registry::model::Principal;

/// The backend routes; `http::router` puts them behind `auth::authenticate`.
pub fn routes() -> Router<AppState> {
    use axum::routing::{get, post};
    Router::new()
        .route("/admin/v1/backends", get(list_backends))
        .route("/admin/v1/backends/{name}", get(get_backend).patch(patch_backend))
        .route("/admin/v1/backends/{name}/breaker", post(breaker_action))
}

fn view(b: &Backend) -> Value {
    let r = b.resilience();
    json!({
        "name": b.name(),
        "url": b.base_url(),
        "maxBatchSize": b.max_batch_size(),
        "policy": {
            "timeoutMs": r.attempt_timeout.as_millis() as u64,
            "maxConcurrent": r.max_concurrent,
            "ratePerSec": r.rate_per_sec.map(|n| n.get()),
            "burst": r.burst.map(|n| n.get()),
            "maxRetries": r.max_retries,
            "retryRatio": r.retry_ratio,
            "retryFloorPerSec": r.retry_floor_per_sec,
            "breakerMinCalls": r.breaker.min_calls,
            "breakerFailureRatio": r.breaker.failure_ratio,
            "breakerOpenMs": r.breaker.open_for.as_millis() as u64,
            "breakerMaxOpenMs": r.breaker.max_open_for.as_millis() as u64,
            "shareInFlight": r.share_in_flight,
        },
        "breaker": { "state": b.breaker().state().as_str(), "transitions": b.breaker().transitions() },
    })
}

fn find(state: &AppState, name: &str) -> Result<std::sync::Arc<Backend>, ApiError> {
    let engine = state.registry.engine();
    engine.backends().find(name).ok_or_else(|| {
        let known: Vec<&str> = engine.backends().names().collect();
        ApiError::NotFound(format!("unknown backend {name:?} (known: {})", known.join(", ")))
    })
}

async fn list_backends(State(state): State<AppState>) -> Json<Vec<Value>> {
    Json(state.registry.engine().backends().iter().map(view).collect())
}

async fn get_backend(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(view(&*find(&state, &name)?)))
}

/// Changes a backend's numbers at runtime: the body is the same [`PolicyOverrides`] as
/// `@backend` and config (camelCase here), checked with the same ranges; absent fields stay
/// as they are; `ratePerSec: 0` removes the rate limit.
async fn patch_backend(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
    body: Result<Json<PolicyOverrides>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    require_admin(&who)?;
    let backend = find(&state, &name)?;
    let Json(patch) = body.map_err(|e| ApiError::BadRequest(format!("backend {name}: {}", e.body_text())))?;
    let bad =
        |problems: Vec<String>| ApiError::BadRequest(format!("backend {name}: {}", problems.join("; ")));
    let problems = patch.check();
    if !problems.is_empty() {
        return Err(bad(problems));
    }
    let r = patch.apply(backend.resilience());
    if r.breaker.max_open_for < r.breaker.open_for {
        return Err(bad(vec![format!(
            "breakerMaxOpenMs ({}) must not be below breakerOpenMs ({})",
            r.breaker.max_open_for.as_millis(),
            r.breaker.open_for.as_millis()
        )]));
    }
    let before = view(&backend)["policy"].take();
    backend.set_resilience(r);
    tracing::info!(backend = %name, "backend policy changed through the admin API");
    let after = view(&backend);
    audit(&state, &who, "backend.policy", &name, json!({ "from": before, "to": after["policy"] }), None)
        .await;
    Ok(Json(after))
}

/// Writes a backend change to the audit log (probe 2, L2). The change is made first and
/// stands whatever the store says: tripping a breaker must work while the registry is down;
/// an entry that could not be written is logged instead.
async fn audit(
    state: &AppState,
    who: &Principal,
    action: &str,
    backend: &str,
    detail: Value,
    reason: Option<&str>,
) {
    let (target, actor) = (format!("backend:{backend}"), who.actor());
    let write = state.registry.store().record(&actor, action, &target, &detail, reason);
    if let Err(e) = crate::registry::store::bounded(write).await {
        tracing::warn!(backend = %backend, action = %action, detail = %detail, error = %e, "could not audit a backend change");
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerAction {
    action: String,
    /// Why, for the audit log.
    reason: Option<String>,
}

async fn breaker_action(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
    body: Result<Json<BreakerAction>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    require_admin(&who)?;
    let backend = find(&state, &name)?;
    let Json(a) = body.map_err(|e| ApiError::BadRequest(format!("breaker of {name}: {}", e.body_text())))?;
    if let Some(r) = &a.reason {
        crate::registry::model::check_text("reason", r, 1_000).map_err(ApiError::BadRequest)?;
    }
    match a.action.as_str() {
        "trip" => backend.breaker().force(true),
        "reset" => backend.breaker().force(false),
        other => {
            return Err(ApiError::BadRequest(format!(
                "breaker of {name}: unknown action {other:?} (trip, reset)"
            )));
        }
    }
    tracing::info!(backend = %name, action = %a.action, "breaker forced through the admin API");
    let action = format!("backend.breaker.{}", a.action);
    audit(
        &state,
        &who,
        &action,
        &name,
        json!({ "state": backend.breaker().state().as_str() }),
        a.reason.as_deref(),
    )
    .await;
    Ok(Json(view(&backend)))
}
