//! The endpoint call, the product's main use case, with no HTTP in it: pick the version a
//! device gets → read its variables → execute the document → run the transform → observe the
//! call (metrics, the canary guard's window). `http/device.rs` maps HTTP to [`DeviceCall`] and
//! [`Called`] back; a preview or a publish's trial runs the same [`run`] (version 0, nothing
//! observed).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::Registry;
use super::canary::Observed;
use super::model::{ClientName, EndpointName};
use crate::backends::FetchLog;
use crate::errors::Code;
use crate::graphql::{Answer, Engine, OperationKind, Prepared};
use crate::scripts::{Phases, Script, ScriptError, ScriptPool};
use crate::telemetry::metrics as m;

/// The `ctx` a transform is called with.
pub struct TransformCtx<'a> {
    pub variables: &'a Value,
    pub client: &'a str,
    pub endpoint: &'a str,
    /// 0 for a trial run before the version exists.
    pub version: i64,
    pub canary: bool,
    pub errors: Value,
    pub device_id: Option<&'a str>,
    pub device_headers: Map<String, Value>,
}

impl TransformCtx<'_> {
    pub fn to_json(self) -> Value {
        json!({
            "variables": self.variables,
            "client": self.client,
            "endpoint": self.endpoint,
            "version": self.version,
            "canary": self.canary,
            "errors": self.errors,
            "device": { "id": self.device_id, "headers": self.device_headers },
        })
    }
}

/// One run of a version: what to run, on which names, for which device.
pub struct Run<'a> {
    pub client: &'a ClientName,
    pub endpoint: &'a EndpointName,
    /// 0 for a version not stored yet (preview, publish trial).
    pub version: i64,
    pub canary: bool,
    pub prepared: &'a Prepared,
    pub script: Option<&'a Script>,
    pub variables: Map<String, Value>,
    pub device_id: Option<&'a str>,
    pub device_headers: Map<String, Value>,
    /// Where to record the backend calls, when someone asked to see them.
    pub log: Option<FetchLog>,
}

/// What one run gave: the engine's answer, the transform's result (when the version has one
/// and the document ran), and how long each part took.
pub struct Ran {
    pub answer: Answer,
    pub transformed: Option<Result<crate::scripts::Transformed, ScriptError>>,
    pub execute: Duration,
    pub transform: Duration,
}

impl Ran {
    /// The `extensions.code` of every error of the call, the transform's failure included.
    pub fn error_codes(&self) -> Vec<&'static str> {
        let mut codes = self.answer.error_codes.clone();
        if self.answer.request_error {
            codes.push(Code::GraphqlValidationFailed.as_str());
        }
        if matches!(self.transformed, Some(Err(_))) {
            codes.push(Code::ScriptError.as_str());
        }
        codes
    }
}

/// Executes the document, then the transform on its answer (not on a request error): the one
/// run-then-transform of device calls, previews and publish trials.
pub async fn run(engine: &Engine, scripts: &ScriptPool, r: Run<'_>) -> Ran {
    let ctx_variables = r.script.map(|_| Value::Object(r.variables.clone()));
    let started = Instant::now();
    let answer = engine.execute_prepared(r.prepared, r.variables, r.log).await;
    let execute = started.elapsed();
    let mut transformed = None;
    if let (Some(script), Some(variables), false) = (r.script, &ctx_variables, answer.request_error) {
        // `data` goes to the script as the text the projection wrote; only `errors` (usually
        // absent) is parsed, for `ctx.errors`.
        let (data, errors) = answer_parts(&answer);
        let ctx = TransformCtx {
            variables,
            client: r.client.as_str(),
            endpoint: r.endpoint.as_str(),
            version: r.version,
            canary: r.canary,
            errors,
            device_id: r.device_id,
            device_headers: r.device_headers,
        }
        .to_json();
        transformed = Some(scripts.transform(script, data.into_bytes(), ctx.to_string().into_bytes()).await);
    }
    Ran { answer, transformed, execute, transform: started.elapsed() - execute }
}

/// The `data` of an engine answer as JSON text, and its `errors` (null when there are none).
pub fn answer_parts(answer: &Answer) -> (String, Value) {
    let text =
        |r: &std::ops::Range<usize>| answer.body.get(r.clone()).and_then(|b| std::str::from_utf8(b).ok());
    match &answer.parts {
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
            let mut result: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
            let errors = result.get_mut("errors").map(Value::take).unwrap_or(Value::Null);
            (result.get_mut("data").map(Value::take).unwrap_or(Value::Null).to_string(), errors)
        }
    }
}

/// A device's call by endpoint ID, as the HTTP layer read it.
pub struct DeviceCall<'a> {
    pub client: &'a str,
    pub endpoint: &'a str,
    /// Whether the call may run a mutation (a POST).
    pub may_mutate: bool,
    /// Query-string parameters, typed by the document's variable declarations.
    pub params: Vec<(String, String)>,
    /// A JSON object of variables (empty: none), winning over the parameters.
    pub body: &'a [u8],
    pub device_id: Option<&'a str>,
    /// The request headers a transform sees (`ctx.device.headers`), read only when the
    /// version has one.
    pub device_headers: &'a (dyn Fn() -> Map<String, Value> + Sync),
    pub log: Option<FetchLog>,
}

/// Why a device call did not run.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// A malformed name or body.
    #[error("{0}")]
    BadRequest(String),
    #[error("unknown endpoint {0}")]
    UnknownEndpoint(String),
    /// The version that would serve cannot run on the live schema.
    #[error("{0}")]
    Unservable(String),
    /// A mutation called without a way to mutate (GET).
    #[error("{0} is a mutation: use POST")]
    MutationNeedsPost(String),
}

/// What a device call gave: the answer's body and kind, and which version and side served it.
pub struct Called {
    /// The body to send: the transform's output, the engine's answer, or one error.
    pub body: Bytes,
    pub outcome: CallOutcome,
    pub version: i64,
    pub canary: bool,
    /// The transform's timings, when it ran.
    pub phases: Option<Phases>,
}

/// How a device call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// An answer (field errors inside it are part of an answer).
    Answered,
    /// The document could not run with these variables (a request error).
    Refused,
    /// The transform failed.
    TransformFailed,
}

impl Registry {
    /// A device's call: see the module comment. Every call that ran is counted in the
    /// endpoint metrics and, when the server's side failed it, in the canary guard's window.
    pub async fn call(
        self: &Arc<Self>,
        scripts: &ScriptPool,
        c: DeviceCall<'_>,
    ) -> Result<Called, CallError> {
        let (client, endpoint) =
            Registry::parse_names(c.client, c.endpoint).map_err(CallError::BadRequest)?;
        let target = format!("{client}/{endpoint}");
        let snapshot = self.snapshot();
        let picked = snapshot.pick(client.as_str(), endpoint.as_str(), c.device_id).map_err(|e| match e {
            super::PickError::UnknownEndpoint(e) => CallError::UnknownEndpoint(e),
            super::PickError::Unservable(e) => CallError::Unservable(e),
        })?;
        let prepared = &picked.version.prepared;
        if !c.may_mutate && prepared.kind == OperationKind::Mutation {
            return Err(CallError::MutationNeedsPost(target));
        }
        let mut variables = Map::new();
        for (k, v) in c.params {
            if let Some(value) = prepared.variable_from_text(&k, &v) {
                variables.insert(k, value);
            }
        }
        if !c.body.is_empty() {
            match serde_json::from_slice::<Value>(c.body) {
                Ok(Value::Object(map)) => variables.extend(map),
                Ok(_) => {
                    return Err(CallError::BadRequest(format!(
                        "{target}: the body must be a JSON object of variables"
                    )));
                }
                Err(e) => {
                    return Err(CallError::BadRequest(format!("{target}: the body is not valid JSON: {e}")));
                }
            }
        }
        let started = Instant::now();
        let version = picked.version.version;
        let one = Run {
            client: &client,
            endpoint: &endpoint,
            version,
            canary: picked.canary,
            prepared,
            script: picked.version.script.as_ref(),
            variables,
            device_id: c.device_id,
            device_headers: if picked.version.script.is_some() { (c.device_headers)() } else { Map::new() },
            log: c.log,
        };
        let ran = run(&snapshot.engine, scripts, one).await;
        let error_codes = ran.error_codes();
        let (body, outcome, phases) = match ran.transformed {
            Some(Ok(shaped)) => (Bytes::from(shaped.json), CallOutcome::Answered, Some(shaped.phases)),
            Some(Err(e)) => {
                tracing::warn!(endpoint = %target, version, error = %e, "transform failed");
                let message = format!("transform of {target} version {version} failed: {e}");
                (
                    Bytes::from(crate::errors::body(Some(Code::ScriptError), message).to_string()),
                    CallOutcome::TransformFailed,
                    None,
                )
            }
            None if ran.answer.request_error => (ran.answer.body, CallOutcome::Refused, None),
            None => (ran.answer.body, CallOutcome::Answered, None),
        };
        let took = started.elapsed();
        record(&client, &endpoint, version, picked.canary, took, &error_codes);
        // The live window and the canary guard: only the server's side failing counts (a
        // caller's bad request does not: devices cannot steer a canary, probe 2 M1).
        let failed = error_codes.iter().any(|c| Code::of(c).is_some_and(Code::server_side));
        self.observe(Observed {
            client: client.as_str(),
            endpoint: endpoint.as_str(),
            version,
            latency: took,
            failed,
            device: c.device_id,
        });
        Ok(Called { body, outcome, version, canary: picked.canary, phases })
    }
}

/// Per endpoint version metrics of one call (names in `telemetry::metrics`).
fn record(
    client: &ClientName,
    endpoint: &EndpointName,
    version: i64,
    canary: bool,
    took: Duration,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transform_gets_the_data_text_as_written_and_the_errors_parsed() {
        let body = r#"{"data":{"a":[1,"é"]},"errors":[{"message":"x"}]}"#;
        let data = 8..body.find(",\"errors\"").unwrap();
        let errors = Some(data.end + 10..body.len() - 1);
        let answer =
            |parts| Answer { body: Bytes::from(body), request_error: false, error_codes: Vec::new(), parts };
        let written = answer_parts(&answer(Some(crate::graphql::project::Parts { data, errors })));
        assert_eq!(written, (r#"{"a":[1,"é"]}"#.to_owned(), json!([{"message": "x"}])));
        assert_eq!(answer_parts(&answer(None)), written, "parsing the body gives the same");
    }
}
