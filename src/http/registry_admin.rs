//! Admin routes of the registry: clients, tokens, endpoint versions, rollouts, the audit log.
//! Every route authorizes the [`Principal`] put there by `auth::authenticate`: admin tokens
//! may do anything; a team token only what concerns its own team's clients.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::{new_token, require_admin};
use super::error::ApiError;
use crate::registry::model::{
    ClientName, EndpointName, Principal, Rollout, RolloutChange, RolloutError, TeamName,
};
use crate::registry::publish;
use crate::registry::store::StoreError;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/clients", post(create_client).get(list_clients))
        .route("/admin/v1/tokens", post(create_token).get(list_tokens))
        .route("/admin/v1/tokens/{id}", axum::routing::delete(revoke_token))
        .route("/admin/v1/clients/{client}/endpoints", get(list_endpoints))
        .route("/admin/v1/clients/{client}/endpoints/{name}/versions", post(publish).get(list_versions))
        .route("/admin/v1/clients/{client}/endpoints/{name}/preview", post(preview))
        .route("/admin/v1/clients/{client}/endpoints/{name}/types", post(draft_types))
        .route("/admin/v1/clients/{client}/endpoints/{name}/versions/{n}", get(get_version))
        .route("/admin/v1/clients/{client}/endpoints/{name}/versions/{n}/types", get(get_types))
        .route("/admin/v1/clients/{client}/endpoints/{name}/rollout", put(put_rollout).get(get_rollout))
        .route("/admin/v1/clients/{client}/endpoints/{name}/promote", post(promote))
        .route("/admin/v1/clients/{client}/endpoints/{name}/rollback", post(rollback))
        .route("/admin/v1/audit", get(audit))
}

fn json_body<T>(body: Result<Json<T>, JsonRejection>, what: &str) -> Result<T, ApiError> {
    body.map(|Json(b)| b).map_err(|e| ApiError::BadRequest(format!("{what}: {}", e.body_text())))
}

/// The client, parsed, after checking it exists and `who` may manage it.
fn authorize(state: &AppState, who: &Principal, client: &str) -> Result<ClientName, ApiError> {
    let name = ClientName::parse(client).map_err(ApiError::BadRequest)?;
    let snapshot = state.registry.snapshot();
    let team = snapshot
        .client_team(name.as_str())
        .ok_or_else(|| ApiError::NotFound(format!("unknown client {name}")))?;
    if !who.may_manage(team) {
        return Err(ApiError::Forbidden(format!("client {name} belongs to another team")));
    }
    Ok(name)
}

fn endpoint_name(raw: &str) -> Result<EndpointName, ApiError> {
    EndpointName::parse(raw).map_err(ApiError::BadRequest)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewClient {
    name: String,
    team: String,
    reason: Option<String>,
}

async fn create_client(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    body: Result<Json<NewClient>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    require_admin(&who)?;
    let c = json_body(body, "new client")?;
    let name = ClientName::parse(&c.name).map_err(ApiError::BadRequest)?;
    let team = TeamName::parse(&c.team).map_err(ApiError::BadRequest)?;
    state
        .registry
        .store()
        .create_client(name.as_str(), team.as_str(), &who.actor(), c.reason.as_deref())
        .await?;
    state.registry.changed().await?;
    Ok((StatusCode::CREATED, Json(json!({ "name": name, "team": team }))))
}

async fn list_clients(State(state): State<AppState>, Extension(who): Extension<Principal>) -> Json<Value> {
    let snapshot = state.registry.snapshot();
    let mut clients: Vec<Value> = snapshot
        .clients()
        .filter(|(_, team)| who.may_manage(team))
        .map(|(name, team)| json!({ "name": name, "team": team }))
        .collect();
    clients.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Json(Value::Array(clients))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(rename_all = "camelCase")]
struct NewToken {
    /// A team token when set; an admin token when absent.
    team: Option<String>,
    label: Option<String>,
    /// Seconds until the token stops working by itself; none: until revoked.
    expires_in_secs: Option<u64>,
}

async fn create_token(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    body: Result<Json<NewToken>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    require_admin(&who)?;
    let t = json_body(body, "new token")?;
    let team = t.team.as_deref().map(TeamName::parse).transpose().map_err(ApiError::BadRequest)?;
    let label = t.label.unwrap_or_else(|| "unnamed".into());
    let expires_ms = match t.expires_in_secs {
        Some(0) => return Err(ApiError::BadRequest("expiresInSecs: must be at least 1".into())),
        Some(s) if s > 10 * 365 * 86_400 => {
            return Err(ApiError::BadRequest("expiresInSecs: at most ten years".into()));
        }
        Some(s) => Some(crate::registry::store::now_ms() + s as i64 * 1000),
        None => None,
    };
    let (token, hash) = new_token().map_err(|e| ApiError::Internal(format!("no randomness: {e}")))?;
    let id = state
        .registry
        .store()
        .create_token(&hash, team.as_ref().map(TeamName::as_str), &label, expires_ms, &who.actor())
        .await?;
    let kind = if team.is_some() { "team" } else { "admin" };
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": id,
            "expiresMs": expires_ms,
            "token": token,
            "kind": kind,
            "team": team,
            "label": label,
            "note": "the token is shown only now; the server keeps only its SHA-256",
        })),
    ))
}

/// Stored tokens (never the token or its hash): all of them for an admin, the team's own
/// for a team token.
async fn list_tokens(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    let team = match &who {
        Principal::Admin { .. } => None,
        Principal::Team { team, .. } => Some(team.as_str()),
    };
    let tokens = state.registry.store().tokens(team).await?;
    Ok(Json(json!(tokens)))
}

/// Revokes a token at once (an admin any, a team its own team's); audited.
async fn revoke_token(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    body: Option<Json<Reason>>,
) -> Result<Json<Value>, ApiError> {
    let id: i64 =
        id.parse().map_err(|_| ApiError::BadRequest(format!("token id must be a number, got {id:?}")))?;
    let team = match &who {
        Principal::Admin { .. } => None,
        Principal::Team { team, .. } => Some(team.as_str()),
    };
    state.registry.store().revoke_token(id, team, &who.actor(), reason_of(body).as_deref()).await?;
    // Revoked here: no request on this instance may use a kept answer for it (the others
    // ask the store again within `TOKEN_FRESH`).
    state.tokens.clear();
    Ok(Json(json!({ "id": id, "revoked": true })))
}

async fn list_endpoints(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(client): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let client = authorize(&state, &who, &client)?;
    let rollouts = state.registry.store().rollouts(client.as_str()).await?;
    let endpoints: Vec<Value> = rollouts.iter().map(|(e, r)| json!({ "name": e, "rollout": r })).collect();
    Ok(Json(Value::Array(endpoints)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Publish {
    document: String,
    operation_name: Option<String>,
    script: Option<String>,
    /// Variables to run the document with once, live, so the transform is tried on real data.
    sample_variables: Option<serde_json::Map<String, Value>>,
    reason: Option<String>,
}

async fn publish(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path((client, name)): Path<(String, String)>,
    body: Result<Json<Publish>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let client = authorize(&state, &who, &client)?;
    let name = endpoint_name(&name)?;
    let p = json_body(body, "publish")?;
    let target = format!("{client}/{name}");
    let author = who.actor();
    let published = publish::publish(
        &state.registry,
        &state.scripts,
        publish::PublishRequest {
            draft: publish::Draft {
                client: &client,
                endpoint: &name,
                document: &p.document,
                operation_name: p.operation_name.as_deref(),
                script: p.script.as_deref(),
                allow_introspection: state.introspection,
            },
            sample_variables: p.sample_variables.as_ref(),
            trial: true,
            author: &author,
            reason: p.reason.as_deref(),
        },
    )
    .await
    .map_err(publish_error)?;
    let status = if published.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((
        status,
        Json(json!({
            "endpoint": target,
            "version": published.version,
            "created": published.created,
            "sha256": published.sha256,
            "documentId": published.document_sha256,
        })),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PreviewBody {
    document: String,
    operation_name: Option<String>,
    variables: Option<serde_json::Map<String, Value>>,
    script: Option<String>,
}

/// Runs a document and transform on live backends without storing anything (the playground's
/// run button): the answer, the transformed answer or the script's error with line and
/// column, the backend calls, and timings.
async fn preview(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path((client, name)): Path<(String, String)>,
    body: Result<Json<PreviewBody>, JsonRejection>,
) -> Result<Json<publish::Preview>, ApiError> {
    let client = authorize(&state, &who, &client)?;
    let name = endpoint_name(&name)?;
    let p = json_body(body, "preview")?;
    let request = publish::PreviewRequest {
        draft: publish::Draft {
            client: &client,
            endpoint: &name,
            document: &p.document,
            operation_name: p.operation_name.as_deref(),
            script: p.script.as_deref(),
            allow_introspection: state.introspection,
        },
        variables: p.variables.unwrap_or_default(),
    };
    publish::preview(&state.registry, &state.scripts, request).await.map(Json).map_err(publish_error)
}

fn publish_error(e: publish::PublishError) -> ApiError {
    match e {
        publish::PublishError::TooLarge(m) => ApiError::TooLarge(m),
        publish::PublishError::Refused(m) => ApiError::BadRequest(m),
        publish::PublishError::Store(e) => e.into(),
    }
}

async fn list_versions(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path((client, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let client = authorize(&state, &who, &client)?;
    let name = endpoint_name(&name)?;
    let versions = state.registry.store().versions(client.as_str(), name.as_str()).await?;
    if versions.is_empty() {
        return Err(ApiError::NotFound(format!("unknown endpoint {client}/{name}")));
    }
    Ok(Json(serde_json::to_value(versions).unwrap_or(Value::Null)))
}

async fn get_version(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path((client, name, n)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let client = authorize(&state, &who, &client)?;
    let name = endpoint_name(&name)?;
    let n: i64 =
        n.parse().map_err(|_| ApiError::BadRequest(format!("bad version {n:?}: a positive number")))?;
    let versions = state.registry.store().versions(client.as_str(), name.as_str()).await?;
    let v = versions
        .into_iter()
        .find(|v| v.version == n)
        .ok_or_else(|| ApiError::NotFound(format!("{client}/{name} has no version {n}")))?;
    Ok(Json(serde_json::to_value(v).unwrap_or(Value::Null)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TypesBody {
    document: String,
    operation_name: Option<String>,
}

/// The TypeScript types of a draft document (not stored) on the schema served: what the
/// playground checks a transform against while it is written.
async fn draft_types(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path((client, name)): Path<(String, String)>,
    body: Result<Json<TypesBody>, JsonRejection>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let client = authorize(&state, &who, &client)?;
    let name = endpoint_name(&name)?;
    let b = json_body(body, "types")?;
    if b.document.len() > publish::MAX_DOCUMENT_BYTES {
        return Err(ApiError::TooLarge(format!(
            "the document is over {} bytes",
            publish::MAX_DOCUMENT_BYTES
        )));
    }
    let engine = state.registry.engine();
    let what = format!("{client}/{name} (draft)");
    let prepared = engine
        .prepare(&b.document, b.operation_name.as_deref())
        .await
        .map_err(|errors| ApiError::BadRequest(format!("{what}: {}", errors.join("; "))))?;
    let types = prepared
        .typescript(&what, engine.model())
        .map_err(|errors| ApiError::BadRequest(format!("{what}: {}", errors.join("; "))))?;
    Ok(([(axum::http::header::CONTENT_TYPE, "text/plain; charset=utf-8")], types).into_response())
}

/// The TypeScript types of a version's `data` and of its transform's `ctx`, compiled on the
/// schema being served (`n`: a version number, or `latest`).
async fn get_types(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path((client, name, n)): Path<(String, String, String)>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let client = authorize(&state, &who, &client)?;
    let name = endpoint_name(&name)?;
    let versions = state.registry.store().versions(client.as_str(), name.as_str()).await?;
    let v = if n == "latest" {
        versions.into_iter().max_by_key(|v| v.version)
    } else {
        let n: i64 = n
            .parse()
            .map_err(|_| ApiError::BadRequest(format!("bad version {n:?}: a positive number or latest")))?;
        versions.into_iter().find(|v| v.version == n)
    }
    .ok_or_else(|| ApiError::NotFound(format!("{client}/{name} has no version {n}")))?;
    let engine = state.registry.engine();
    let what = format!("{client}/{name}@{}", v.version);
    let prepared = engine.prepare(&v.document, v.operation_name.as_deref()).await.map_err(|errors| {
        ApiError::Conflict(format!("{what} does not compile on the schema served: {}", errors.join("; ")))
    })?;
    let types = prepared
        .typescript(&what, engine.model())
        .map_err(|errors| ApiError::Conflict(format!("{what}: {}", errors.join("; "))))?;
    Ok(([(axum::http::header::CONTENT_TYPE, "text/plain; charset=utf-8")], types).into_response())
}

/// A rollout as the API shows it: its versions and its canary guard.
fn rollout_view(
    state: &AppState,
    client: &ClientName,
    name: &EndpointName,
    rollout: &Rollout,
) -> Json<Value> {
    let mut v = serde_json::to_value(rollout).unwrap_or(Value::Null);
    let guard = state.registry.snapshot().guard_of(client.as_str(), name.as_str());
    v["guard"] = serde_json::to_value(guard).unwrap_or(Value::Null);
    Json(v)
}

async fn get_rollout(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path((client, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let client = authorize(&state, &who, &client)?;
    let name = endpoint_name(&name)?;
    let rollout = state.registry.rollout(client.as_str(), name.as_str()).await?;
    let rollout = rollout.ok_or_else(|| ApiError::NotFound(format!("unknown endpoint {client}/{name}")))?;
    Ok(rollout_view(&state, &client, &name, &rollout))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SetRollout {
    stable: i64,
    canary: Option<i64>,
    #[serde(default)]
    canary_percent: i64,
    reason: Option<String>,
    /// The canary guard's numbers to change (the others stay as they are).
    guard: Option<crate::registry::model::CanaryGuardPatch>,
}

async fn put_rollout(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path((client, name)): Path<(String, String)>,
    body: Result<Json<SetRollout>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let r = json_body(body, "rollout")?;
    let guard = match r.guard {
        Some(patch) => {
            // Checked before anything changes; stored in the same transaction as the versions
            // (a refused change stores neither), so the new canary is guarded from its first call.
            let c = authorize(&state, &who, &client)?;
            let n = endpoint_name(&name)?;
            let guard = patch.apply(state.registry.snapshot().guard_of(c.as_str(), n.as_str()));
            let problems = guard.check();
            if !problems.is_empty() {
                return Err(ApiError::BadRequest(format!("rollout of {c}/{n}: {}", problems.join("; "))));
            }
            Some(serde_json::to_string(&guard).map_err(|e| ApiError::Internal(e.to_string()))?)
        }
        None => None,
    };
    let change = RolloutChange::Set { stable: r.stable, canary: r.canary, canary_percent: r.canary_percent };
    change_rollout(&state, &who, &client, &name, change, r.reason.as_deref(), guard.as_deref()).await
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Reason {
    reason: Option<String>,
}

fn reason_of(body: Option<Json<Reason>>) -> Option<String> {
    body.and_then(|Json(r)| r.reason)
}

/// The canary becomes the stable version.
async fn promote(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path((client, name)): Path<(String, String)>,
    body: Option<Json<Reason>>,
) -> Result<Json<Value>, ApiError> {
    change_rollout(&state, &who, &client, &name, RolloutChange::Promote, reason_of(body).as_deref(), None)
        .await
}

/// Drops the canary if there is one; otherwise returns to the previous stable version.
async fn rollback(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path((client, name)): Path<(String, String)>,
    body: Option<Json<Reason>>,
) -> Result<Json<Value>, ApiError> {
    change_rollout(&state, &who, &client, &name, RolloutChange::Rollback, reason_of(body).as_deref(), None)
        .await
}

/// Authorizes and hands the change to the registry: the versions it would serve checked on
/// the running schema, the change, its guard and the audit entry in one store transaction,
/// then live.
async fn change_rollout(
    state: &AppState,
    who: &Principal,
    client: &str,
    name: &str,
    change: RolloutChange,
    reason: Option<&str>,
    guard: Option<&str>,
) -> Result<Json<Value>, ApiError> {
    let client = authorize(state, who, client)?;
    let name = endpoint_name(name)?;
    let target = format!("{client}/{name}");
    let apply = |cur| {
        change.apply(&target, cur).map_err(|e| match e {
            RolloutError::Invalid(m) => StoreError::Invalid(m),
            RolloutError::Conflict(m) => StoreError::Conflict(m),
        })
    };
    let next = state
        .registry
        .change_rollout(crate::registry::RolloutWrite {
            client: client.as_str(),
            endpoint: name.as_str(),
            actor: &who.actor(),
            action: change.action(),
            reason,
            guard,
            apply: &apply,
        })
        .await?;
    Ok(rollout_view(state, &client, &name, &next))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    client: Option<String>,
    limit: Option<i64>,
}

async fn audit(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    let client = match &q.client {
        Some(c) => Some(authorize(&state, &who, c)?),
        None => {
            require_admin(&who)?;
            None
        }
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let entries = state.registry.store().audit_log(client.as_ref().map(ClientName::as_str), limit).await?;
    Ok(Json(serde_json::to_value(entries).unwrap_or(Value::Null)))
}
