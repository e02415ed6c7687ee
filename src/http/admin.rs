//! The admin API (`/admin/v1`), bearer-token protected: authentication for all of it, and the
//! backend routes (policy numbers at runtime, breaker trip/reset; admin tokens only). The
//! registry routes are in `registry_admin.rs`.
//!
//! Tokens are never stored: the store keeps their SHA-256 (`facade token create`), and config
//! may list more admin hashes (`[admin] token_sha256`, `facade token new`). A presented token
//! is hashed and compared.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::AppState;
use super::error::ApiError;
use crate::backends::Backend;
use crate::backends::policy::PolicyOverrides;
use crate::registry::model::Principal;

/// SHA-256 of a token, lower-case hex.
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// A new random admin token (256 bits) and its hash.
pub fn new_token() -> Result<(String, String), getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    let token = format!("fcd_{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>());
    let hash = token_hash(&token);
    Ok((token, hash))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Admin token hashes from config (bootstrap and break-glass); the store holds the others.
#[derive(Clone, Default)]
pub struct AdminTokens(pub Arc<Vec<String>>);

/// The bearer token of a request, if any (the scheme is case-insensitive, RFC 7235).
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim_start();
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// Whether the request carries a valid admin or team token (devices carry none).
pub async fn has_valid_token(state: &AppState, headers: &axum::http::HeaderMap) -> bool {
    match bearer(headers) {
        Some(token) => matches!(principal(state, token).await, Ok(Some(_))),
        None => false,
    }
}

/// Who a token belongs to: an admin token from config, or a token from the store.
pub async fn principal(state: &AppState, token: &str) -> Result<Option<Principal>, ApiError> {
    let hash = token_hash(token);
    if state.admin_tokens.0.iter().any(|h| constant_time_eq(h.as_bytes(), hash.as_bytes())) {
        return Ok(Some(Principal::Admin { label: "config".into() }));
    }
    state.registry.store().principal(&hash).await.map_err(ApiError::from)
}

/// 401 without a valid `Authorization: Bearer` token; puts the [`Principal`] in the request's
/// extensions for the handlers to authorize. The token is never logged nor echoed.
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(token) = bearer(request.headers()) else {
        return Err(ApiError::Unauthorized("missing bearer token".into()));
    };
    let Some(principal) = principal(&state, token).await? else {
        return Err(ApiError::Unauthorized("invalid token".into()));
    };
    request.extensions_mut().insert(principal);
    Ok(next.run(request).await)
}

pub fn require_admin(principal: &Principal) -> Result<(), ApiError> {
    if principal.is_admin() { Ok(()) } else { Err(ApiError::Forbidden("this needs an admin token".into())) }
}

pub fn routes(state: AppState) -> Router<AppState> {
    use axum::routing::{get, post};
    Router::new()
        .route("/admin/v1/backends", get(list_backends))
        .route("/admin/v1/backends/{name}", get(get_backend).patch(patch_backend))
        .route("/admin/v1/backends/{name}/breaker", post(breaker_action))
        .merge(super::registry_admin::routes())
        .route_layer(axum::middleware::from_fn_with_state(state, authenticate))
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
        },
        "breaker": { "state": b.breaker().state().as_str(), "transitions": b.breaker().transitions() },
    })
}

fn find<'a>(state: &'a AppState, name: &str) -> Result<&'a Backend, ApiError> {
    state.engine.backends().iter().find(|b| b.name() == name).ok_or_else(|| {
        let known: Vec<&str> = state.engine.backends().names().collect();
        ApiError::NotFound(format!("unknown backend {name:?} (known: {})", known.join(", ")))
    })
}

async fn list_backends(State(state): State<AppState>) -> Json<Vec<Value>> {
    Json(state.engine.backends().iter().map(view).collect())
}

async fn get_backend(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(view(find(&state, &name)?)))
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
    backend.set_resilience(r);
    tracing::info!(backend = %name, "backend policy changed through the admin API");
    Ok(Json(view(backend)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerAction {
    action: String,
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
    Ok(Json(view(backend)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_hash_and_compare() {
        let (token, hash) = new_token().unwrap();
        assert!(token.starts_with("fcd_") && token.len() == 68);
        assert_eq!(token_hash(&token), hash);
        assert_eq!(token_hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert!(constant_time_eq(b"ab", b"ab"));
        assert!(!constant_time_eq(b"ab", b"ac") && !constant_time_eq(b"ab", b"abc"));
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        let with = |v: &str| {
            let mut h = axum::http::HeaderMap::new();
            h.insert(header::AUTHORIZATION, v.parse().unwrap());
            bearer(&h).map(str::to_owned)
        };
        for v in ["Bearer fcd_1", "bearer fcd_1", "BEARER  fcd_1 "] {
            assert_eq!(with(v).as_deref(), Some("fcd_1"), "{v}");
        }
        assert_eq!(with("Basic fcd_1"), None);
        assert_eq!(with("Bearer "), None);
        assert_eq!(with("Bearerfcd_1"), None);
    }
}
