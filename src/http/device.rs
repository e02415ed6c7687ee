//! Device calls by endpoint ID: `GET` and `POST /v1/{client}/{endpoint}`. Variables come from
//! the query string (typed by the document's variable declarations) or a JSON object body; an
//! `X-Device-Id` header picks the side of a canary rollout by a stable hash. The call itself is
//! `registry::call`; this file maps HTTP to it and back. Response headers name the endpoint,
//! and for token holders and debug requests the version and side that served it.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::AppState;
use super::door::DEVICE_HEADER;
use crate::errors::Code;
use crate::registry::call::{CallError, CallOutcome, DeviceCall};

fn error(status: StatusCode, message: String) -> Response {
    (status, axum::Json(crate::errors::body(None, message))).into_response()
}

pub async fn call(
    State(state): State<AppState>,
    method: Method,
    Path((client, endpoint)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    let device = headers.get(DEVICE_HEADER).and_then(|v| v.to_str().ok());
    // Read only when the version has a transform (the headers go to its `ctx`).
    let device_headers = || -> Map<String, Value> {
        state
            .device_headers
            .iter()
            .filter_map(|h| {
                Some((h.clone(), Value::String(headers.get(h.as_str())?.to_str().ok()?.to_owned())))
            })
            .collect()
    };
    // Who is asking, once (a device sends no token and costs no lookup).
    let caller = super::auth::Caller::of(&state, &headers).await;
    let trace = super::debug::requested(&state, &headers, &caller, Some(client.as_str()));
    let call = DeviceCall {
        client: &client,
        endpoint: &endpoint,
        may_mutate: method == Method::POST,
        params: form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes()).into_owned().collect(),
        body: &body,
        device_id: device,
        device_headers: &device_headers,
        log: trace.as_ref().map(|t| t.log.clone()),
    };
    let called = match state.registry.call(&state.scripts, call).await {
        Ok(called) => called,
        Err(e @ CallError::BadRequest(_)) => return error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e @ CallError::UnknownEndpoint(_)) => return error(StatusCode::NOT_FOUND, e.to_string()),
        Err(e @ CallError::Unservable(_)) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e @ CallError::MutationNeedsPost(_)) => {
            let mut r = error(StatusCode::METHOD_NOT_ALLOWED, e.to_string());
            r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
            return r;
        }
    };
    let status = match called.outcome {
        CallOutcome::Answered => StatusCode::OK,
        CallOutcome::Refused => StatusCode::BAD_REQUEST,
        CallOutcome::TransformFailed => super::error::status_of(Code::ScriptError),
    };
    // With a debug trace the answer is wrapped: `{"answer": …, "debug": {traceId, fetches}}`.
    let body = match &trace {
        Some(t) => {
            let answer: Value = serde_json::from_slice(&called.body).unwrap_or(Value::Null);
            let mut debug = t.to_json();
            if let Some(p) = &called.phases {
                debug["transform"] = p.to_json();
            }
            bytes::Bytes::from(json!({ "answer": answer, "debug": debug }).to_string())
        }
        None => called.body,
    };
    let mut response = (status, body).into_response();
    if let Some(v) = trace.as_ref().and_then(super::debug::DebugTrace::header) {
        response.headers_mut().insert(super::debug::TRACE_ID_HEADER, v);
    }
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    if let Ok(v) = HeaderValue::from_str(&format!("{client}/{endpoint}")) {
        h.insert("x-facade-endpoint", v);
    }
    // The version and side only to token holders and debug requests: a device cannot learn
    // which of its IDs reach a canary (probe 2, M1). Devices send no token, so they pay no
    // token check.
    let shows_side = trace.is_some() || caller.trusted();
    if shows_side {
        let h = response.headers_mut();
        h.insert("x-facade-endpoint-version", HeaderValue::from(called.version));
        h.insert(
            "x-facade-rollout",
            HeaderValue::from_static(if called.canary { "canary" } else { "stable" }),
        );
    }
    response
}
