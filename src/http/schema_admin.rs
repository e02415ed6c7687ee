//! The admin API's schema routes (`/admin/v1/schema`): what runs and the last attempt to
//! change it, reload, publish to the registry, and usage. The work is in
//! `registry/schema.rs`; this file maps it to HTTP.

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::Value;

use super::AppState;
use super::auth::require_admin;
use super::error::ApiError;
use crate::config::SchemaSource;
use crate::registry::model::{Principal, check_text};
use crate::registry::schema::{Attempt, Request, SchemaOutcome, usage_report};

/// Most files a published schema may have, and the most bytes in all.
const MAX_FILES: usize = 256;
const MAX_BYTES: usize = 4 * 1024 * 1024;

pub fn routes() -> Router<AppState> {
    use axum::routing::{get, post};
    Router::new()
        .route("/admin/v1/schema", get(status).put(publish))
        .route("/admin/v1/schema/reload", post(reload))
        .route("/admin/v1/schema/usage", get(usage))
}

/// The running schema and the last attempt to change it. A team token sees the attempt's
/// reasons and affected versions of its own clients only (probe 2, L1); reasons about the
/// schema's files stay.
async fn status(State(state): State<AppState>, Extension(who): Extension<Principal>) -> Json<Value> {
    let mut status = state.registry.schema_status();
    if !who.is_admin() {
        let snapshot = state.registry.snapshot();
        let visible = |text: &str| match version_client(text) {
            Some(client) => snapshot.client_team(client).is_some_and(|team| who.may_manage(team)),
            None => true,
        };
        let last = &mut status["lastAttempt"];
        if let Some(reasons) = last["reasons"].as_array_mut() {
            reasons.retain(|r| r.as_str().is_none_or(visible));
        }
        for change in last["changes"].as_array_mut().into_iter().flatten() {
            if let Some(affects) = change["affects"].as_array_mut() {
                affects.retain(|a| a.as_str().is_none_or(visible));
            }
        }
    }
    Json(status)
}

/// The client of a text that starts with a version (`client/endpoint@n…`), if it does.
fn version_client(text: &str) -> Option<&str> {
    let head = text.split([':', ' ']).next()?;
    let (client, rest) = head.split_once('/')?;
    (rest.contains('@') || text.contains(" has no version ")).then_some(client)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ReloadBody {
    #[serde(default)]
    force: bool,
    reason: Option<String>,
}

/// 200 with the attempt when the schema serves (applied, unchanged or forced); 422 with it
/// when it was refused and the old schema keeps serving.
fn answer(attempt: Attempt) -> (StatusCode, Json<Value>) {
    let status = if attempt.result == SchemaOutcome::Refused {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    (status, Json(serde_json::to_value(attempt).unwrap_or(Value::Null)))
}

fn check_force(who: &Principal, force: bool, reason: Option<&str>) -> Result<(), ApiError> {
    require_admin(who)?;
    if let Some(r) = reason {
        check_text("reason", r, 1_000).map_err(ApiError::BadRequest)?;
    }
    if force && reason.is_none_or(|r| r.trim().is_empty()) {
        return Err(ApiError::BadRequest("force needs a reason, for the audit log".into()));
    }
    Ok(())
}

/// Reads the schema again (the folder, or the registry's published version) and swaps it in
/// if every live version still works on it.
async fn reload(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    body: Option<Json<Value>>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body: ReloadBody = match body {
        None => ReloadBody::default(),
        Some(Json(v)) => {
            serde_json::from_value(v).map_err(|e| ApiError::BadRequest(format!("schema reload: {e}")))?
        }
    };
    check_force(&who, body.force, body.reason.as_deref())?;
    let actor = who.actor();
    let attempt = state
        .registry
        .reload_schema(Request {
            trigger: "admin",
            actor: &actor,
            reason: body.reason.as_deref(),
            force: body.force,
        })
        .await;
    Ok(answer(attempt))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PublishBody {
    /// SDL files by name (`*.graphql`, no folders).
    files: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    force: bool,
    reason: Option<String>,
}

/// Publishes a schema version to the registry: every instance on it switches.
async fn publish(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    body: Result<Json<PublishBody>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    require_admin(&who)?;
    let Json(body) = body.map_err(|e| ApiError::BadRequest(format!("schema publish: {}", e.body_text())))?;
    check_force(&who, body.force, body.reason.as_deref())?;
    if state.registry.schema_source() != SchemaSource::Registry {
        return Err(ApiError::Conflict(
            "this instance reads its schema from its schema folder: publishing needs [schema] source = \"registry\" \
             (or edit the folder: it reloads by itself)"
                .into(),
        ));
    }
    if body.files.is_empty() || body.files.len() > MAX_FILES {
        return Err(ApiError::BadRequest(format!("schema publish: give 1 to {MAX_FILES} files")));
    }
    for name in body.files.keys() {
        let plain = !name.contains(['/', '\\']) && !name.starts_with('.');
        if !plain || !name.ends_with(".graphql") || name.len() > 200 {
            return Err(ApiError::BadRequest(format!(
                "schema publish: file name {name:?} must be a plain NAME.graphql, without folders"
            )));
        }
    }
    let bytes: usize = body.files.iter().map(|(n, t)| n.len() + t.len()).sum();
    if bytes > MAX_BYTES {
        return Err(ApiError::TooLarge(format!(
            "schema publish: {bytes} bytes is over the {MAX_BYTES}-byte limit"
        )));
    }
    let actor = who.actor();
    let files = body.files.into_iter().collect();
    let attempt = state
        .registry
        .publish_schema(
            files,
            Request { trigger: "publish", actor: &actor, reason: body.reason.as_deref(), force: body.force },
        )
        .await;
    Ok(answer(attempt))
}

/// Which live versions use each type, field and argument, with their calls in the last hour;
/// a team token sees its own clients' versions only.
async fn usage(State(state): State<AppState>, Extension(who): Extension<Principal>) -> Json<Value> {
    let snapshot = state.registry.snapshot();
    Json(usage_report(&state.registry, |client| {
        snapshot.client_team(client).is_some_and(|team| who.may_manage(team))
    }))
}
