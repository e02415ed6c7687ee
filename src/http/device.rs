//! Device calls by endpoint ID: `GET` and `POST /v1/{client}/{endpoint}`. Variables come from
//! the query string (typed by the document's variable declarations) or a JSON object body; an
//! `X-Device-Id` header picks the side of a canary rollout by a stable hash; response headers
//! name the endpoint, version and side that served the request.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::AppState;
use super::door::DEVICE_HEADER;
use crate::errors::Code;
use crate::graphql::OperationKind;
use crate::registry::model::{ClientName, EndpointName};
use crate::registry::{PickError, Registry};
use crate::telemetry::metrics as m;

/// Per endpoint version metrics of one call (names in `telemetry::metrics`).
fn record(
    client: &ClientName,
    endpoint: &EndpointName,
    version: i64,
    canary: bool,
    took: std::time::Duration,
    error_codes: &[&str],
) {
    let labels = [
        ("client", client.as_str().to_owned()),
        ("endpoint", endpoint.as_str().to_owned()),
        ("version", version.to_string()),
        ("side", if canary { "canary" } else { "stable" }.to_owned()),
    ];
    metrics::counter!(m::ENDPOINT_REQUESTS, &labels).increment(1);
    metrics::histogram!(m::ENDPOINT_LATENCY, &labels).record(took.as_secs_f64());
    for code in error_codes {
        let mut with_code = labels.to_vec();
        with_code.push(("code", (*code).to_owned()));
        metrics::counter!(m::ENDPOINT_ERRORS, &with_code).increment(1);
    }
}

fn error(status: StatusCode, message: String) -> Response {
    (status, axum::Json(json!({ "errors": [{ "message": message }] }))).into_response()
}

pub async fn call(
    State(state): State<AppState>,
    method: Method,
    Path((client, endpoint)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    let (client, endpoint) = match Registry::parse_names(&client, &endpoint) {
        Ok(names) => names,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let target = format!("{client}/{endpoint}");
    let device = headers.get(DEVICE_HEADER).and_then(|v| v.to_str().ok());
    let snapshot = state.registry.snapshot();
    let picked = match snapshot.pick(client.as_str(), endpoint.as_str(), device) {
        Ok(p) => p,
        Err(PickError::UnknownEndpoint(e)) => {
            return error(StatusCode::NOT_FOUND, format!("unknown endpoint {e}"));
        }
        Err(PickError::Unservable(e)) => return error(StatusCode::SERVICE_UNAVAILABLE, e),
    };
    let prepared = &picked.version.prepared;
    if method == Method::GET && prepared.kind == OperationKind::Mutation {
        let mut r = error(StatusCode::METHOD_NOT_ALLOWED, format!("{target} is a mutation: use POST"));
        r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
        return r;
    }
    let mut variables = Map::new();
    for (k, v) in form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes()) {
        if let Some(value) = prepared.variable_from_text(&k, &v) {
            variables.insert(k.into_owned(), value);
        }
    }
    if !body.is_empty() {
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(map)) => variables.extend(map),
            Ok(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("{target}: the body must be a JSON object of variables"),
                );
            }
            Err(e) => {
                return error(StatusCode::BAD_REQUEST, format!("{target}: the body is not valid JSON: {e}"));
            }
        }
    }
    let transform_vars = picked.version.script.as_ref().map(|_| Value::Object(variables.clone()));
    let started = std::time::Instant::now();
    let trace = super::debug::requested(&state, &headers, Some(client.as_str())).await;
    let outcome =
        snapshot.engine.execute_prepared(prepared, variables, trace.as_ref().map(|t| t.log.clone())).await;
    let mut error_codes: Vec<&str> = outcome.error_codes.clone();
    if outcome.request_error {
        error_codes.push(Code::GraphqlValidationFailed.as_str());
    }
    let mut phases = None;
    let (status, body) = match (&picked.version.script, outcome.request_error, transform_vars) {
        (Some(script), false, Some(vars)) => {
            // `data` goes to the script as the text the projection wrote; only `errors` (usually
            // absent) is parsed, for `ctx.errors`.
            let (data, errors) = answer_parts(&outcome);
            let device_headers: Map<String, Value> = state
                .device_headers
                .iter()
                .filter_map(|h| {
                    Some((h.clone(), Value::String(headers.get(h.as_str())?.to_str().ok()?.to_owned())))
                })
                .collect();
            let ctx = crate::registry::publish::TransformCtx {
                variables: &vars,
                client: client.as_str(),
                endpoint: endpoint.as_str(),
                version: picked.version.version,
                canary: picked.canary,
                errors,
                device_id: device,
                device_headers,
            }
            .to_json();
            match state.scripts.transform(script, data.into_bytes(), ctx.to_string().into_bytes()).await {
                Ok(shaped) => {
                    phases = Some(shaped.phases);
                    (StatusCode::OK, bytes::Bytes::from(shaped.json))
                }
                Err(e) => {
                    tracing::warn!(endpoint = %target, version = picked.version.version, error = %e, "transform failed");
                    let code = Code::ScriptError;
                    error_codes.push(code.as_str());
                    let message =
                        format!("transform of {target} version {} failed: {e}", picked.version.version);
                    let body = json!({ "errors": [code.error_json(message)] });
                    (super::error::status_of(code), bytes::Bytes::from(body.to_string()))
                }
            }
        }
        (_, true, _) => (StatusCode::BAD_REQUEST, outcome.body),
        _ => (StatusCode::OK, outcome.body),
    };
    record(&client, &endpoint, picked.version.version, picked.canary, started.elapsed(), &error_codes);
    // The live window and the canary guard: only the server's side failing counts (a
    // caller's bad request does not: devices cannot steer a canary, probe 2 M1).
    let failed = error_codes.iter().any(|c| Code::of(c).is_some_and(Code::server_side));
    state.registry.observe(crate::registry::canary::Observed {
        client: client.as_str(),
        endpoint: endpoint.as_str(),
        version: picked.version.version,
        latency: started.elapsed(),
        failed,
        device,
    });
    // With a debug trace the answer is wrapped: `{"answer": …, "debug": {traceId, fetches}}`.
    let body = match &trace {
        Some(t) => {
            let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let mut debug = t.to_json();
            if let Some(p) = &phases {
                debug["transform"] = p.to_json();
            }
            bytes::Bytes::from(json!({ "answer": answer, "debug": debug }).to_string())
        }
        None => body,
    };
    let mut response = (status, body).into_response();
    if let Some(v) = trace.as_ref().and_then(super::debug::DebugTrace::header) {
        response.headers_mut().insert(super::debug::TRACE_ID_HEADER, v);
    }
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    if let Ok(v) = HeaderValue::from_str(&target) {
        h.insert("x-facade-endpoint", v);
    }
    // The version and side only to token holders and debug requests: a device cannot learn
    // which of its IDs reach a canary (probe 2, M1). Devices send no token, so they pay no
    // token check.
    let shows_side = trace.is_some()
        || (headers.contains_key(header::AUTHORIZATION)
            && super::auth::has_valid_token(&state, &headers).await);
    if shows_side {
        let h = response.headers_mut();
        h.insert("x-facade-endpoint-version", HeaderValue::from(picked.version.version));
        h.insert(
            "x-facade-rollout",
            HeaderValue::from_static(if picked.canary { "canary" } else { "stable" }),
        );
    }
    response
}

/// The `data` of an engine answer as JSON text, and its `errors` (null when there are none).
fn answer_parts(outcome: &crate::graphql::Answer) -> (String, Value) {
    let text =
        |r: &std::ops::Range<usize>| outcome.body.get(r.clone()).and_then(|b| std::str::from_utf8(b).ok());
    match &outcome.parts {
        Some(parts) => {
            let data = text(&parts.data).unwrap_or("null").to_owned();
            let errors = parts
                .errors
                .as_ref()
                .and_then(text)
                .and_then(|t| serde_json::from_str(t).ok())
                .unwrap_or(Value::Null);
            (data, errors)
        }
        None => {
            let mut result: Value = serde_json::from_slice(&outcome.body).unwrap_or(Value::Null);
            let errors = result.get_mut("errors").map(Value::take).unwrap_or(Value::Null);
            (result.get_mut("data").map(Value::take).unwrap_or(Value::Null).to_string(), errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transform_gets_the_data_text_as_written_and_the_errors_parsed() {
        let body = r#"{"data":{"a":[1,"é"]},"errors":[{"message":"x"}]}"#;
        let data = 8..body.find(",\"errors\"").unwrap();
        let errors = Some(data.end + 10..body.len() - 1);
        let outcome = |parts| crate::graphql::Answer {
            body: bytes::Bytes::from(body),
            request_error: false,
            error_codes: Vec::new(),
            parts,
        };
        let written = answer_parts(&outcome(Some(crate::graphql::project::Parts { data, errors })));
        assert_eq!(written, (r#"{"a":[1,"é"]}"#.to_owned(), json!([{"message": "x"}])));
        assert_eq!(answer_parts(&outcome(None)), written, "parsing the body gives the same");
    }
}
