//! Publishing an endpoint version, in one place for the admin API, the demo samples and the
//! CLI (through the API): size limits, the document against the schema and the operation
//! limits, the introspection rule, the script's compile and a trial run on live data, the
//! hashes, the store, and the snapshot refresh. A refused publish changes nothing anywhere.
//! A preview and a publish's trial run a version as a device call does (`call.rs`).

use serde_json::{Map, Value, json};

use std::sync::Arc;

use super::Registry;
use super::model::{ClientName, EndpointName};
use super::sha256_hex;
use super::store::{NewVersion, StoreError};
use crate::graphql::Engine;
use crate::scripts::{Script, ScriptPool};

/// Largest document or script accepted by a publish (and the largest APQ text).
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;

/// A version not stored yet: what a publish and a preview both check the same way.
pub struct Draft<'a> {
    pub client: &'a ClientName,
    pub endpoint: &'a EndpointName,
    pub document: &'a str,
    pub operation_name: Option<&'a str>,
    pub script: Option<&'a str>,
    /// Whether devices may introspect; when not, a document asking `__schema` is refused.
    pub allow_introspection: bool,
}

impl Draft<'_> {
    /// `client/endpoint`, as errors name it.
    fn target(&self) -> String {
        format!("{}/{}", self.client, self.endpoint)
    }

    /// The sizes, then the document prepared on the live engine (one engine for the compile
    /// and the run that may follow: a schema swap in between cannot mix them).
    async fn checked(
        &self,
        registry: &Registry,
    ) -> Result<(Arc<Engine>, crate::graphql::Prepared), PublishError> {
        let target = self.target();
        check_sizes(&target, self.document, self.script)?;
        let engine = registry.engine();
        let prepared =
            prepare(&engine, &target, self.document, self.operation_name, self.allow_introspection).await?;
        Ok((engine, prepared))
    }
}

/// What a publish asks for.
pub struct PublishRequest<'a> {
    pub draft: Draft<'a>,
    /// Variables to run the document with once, live, so the transform is tried on real data
    /// (see `trial`); kept with the version either way.
    pub sample_variables: Option<&'a Map<String, Value>>,
    /// Whether the sample variables run a trial (the demo's own samples, read from files at
    /// start, do not: their backend calls would count in every backend's windows).
    pub trial: bool,
    pub author: &'a str,
    pub reason: Option<&'a str>,
}

/// What a publish stored (or found stored with the same content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub version: i64,
    pub created: bool,
    pub sha256: String,
    pub document_sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The document and script within [`MAX_DOCUMENT_BYTES`].
fn check_sizes(target: &str, document: &str, script: Option<&str>) -> Result<(), PublishError> {
    for (what, text) in [("document", Some(document)), ("script", script)] {
        if let Some(text) = text
            && text.len() > MAX_DOCUMENT_BYTES
        {
            return Err(PublishError::TooLarge(format!(
                "{target}: the {what} is {} bytes; at most {MAX_DOCUMENT_BYTES}",
                text.len()
            )));
        }
    }
    Ok(())
}

/// What a preview runs: a document (and a transform) not yet published.
pub struct PreviewRequest<'a> {
    pub draft: Draft<'a>,
    pub variables: Map<String, Value>,
}

/// A preview's result: the GraphQL answer, the transformed one or the script's error, the
/// backend calls and the time each part took. Nothing is stored.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Preview {
    pub data: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transformed: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub script_error: Option<Value>,
    pub trace: Value,
    pub timings: Value,
}

/// The checks a document passes before it runs for a publish or a preview.
async fn prepare(
    engine: &crate::graphql::Engine,
    target: &str,
    document: &str,
    operation_name: Option<&str>,
    allow_introspection: bool,
) -> Result<crate::graphql::Prepared, PublishError> {
    let prepared = engine.prepare(document, operation_name).await.map_err(|errors| {
        PublishError::Refused(format!("{target}: the document was refused: {}", errors.join("; ")))
    })?;
    if !allow_introspection && prepared.uses_introspection() {
        return Err(PublishError::Refused(format!(
            "{target}: the document asks __schema or __type, and introspection is off for devices"
        )));
    }
    Ok(prepared)
}

/// One run of a version that is not stored, as a device call would have it (version 0,
/// nothing observed): its answer split into data and errors, the transform's result, timings.
struct Trial {
    data: Value,
    errors: Option<Value>,
    transformed: Option<Result<crate::scripts::Transformed, crate::scripts::ScriptError>>,
    execute_ms: f64,
    transform_ms: f64,
}

/// Runs `prepared` on live backends with `variables`, then `script` on the answer
/// ([`super::call::run`]); shared by a preview and a publish's trial run.
async fn trial(
    engine: &crate::graphql::Engine,
    scripts: &ScriptPool,
    (client, endpoint): (&ClientName, &EndpointName),
    prepared: &crate::graphql::Prepared,
    variables: Map<String, Value>,
    script: Option<&Script>,
    log: Option<crate::backends::FetchLog>,
) -> Trial {
    let run = super::call::Run {
        client,
        endpoint,
        version: 0,
        canary: false,
        prepared,
        script,
        variables,
        device_id: None,
        device_headers: Map::new(),
        log,
    };
    let ran = super::call::run(engine, scripts, run).await;
    let (data, errors) = super::call::answer_parts(&ran.answer);
    Trial {
        data: serde_json::from_str(&data).unwrap_or(Value::Null),
        errors: (!errors.is_null()).then_some(errors),
        transformed: ran.transformed,
        execute_ms: ran.execute.as_secs_f64() * 1e3,
        transform_ms: ran.transform.as_secs_f64() * 1e3,
    }
}

/// Runs a document, and its transform in the same pool under the same limits as devices get,
/// on live backends; stores nothing. A document that would be refused at publish is refused
/// here (`PublishError::Refused`); a failing transform is part of the answer (`scriptError`,
/// with line and column where QuickJS gives them).
pub async fn preview(
    registry: &Registry,
    scripts: &ScriptPool,
    r: PreviewRequest<'_>,
) -> Result<Preview, PublishError> {
    let target = r.draft.target();
    let (engine, prepared) = r.draft.checked(registry).await?;
    // A preview runs on live backends: a mutation would change their data each time (L3).
    if prepared.kind == crate::graphql::OperationKind::Mutation {
        return Err(PublishError::Refused(format!(
            "{target}: the document is a mutation; preview does not run mutations (they would change backend data). Call the published endpoint with POST to try it"
        )));
    }
    let started = std::time::Instant::now();
    let log = crate::backends::FetchLog::default();
    let script = r.draft.script.map(|source| Script::new(format!("{target}@preview"), source));
    let names = (r.draft.client, r.draft.endpoint);
    let trial =
        trial(&engine, scripts, names, &prepared, r.variables, script.as_ref(), Some(log.clone())).await;
    let script_error = match &trial.transformed {
        Some(Err(e)) => {
            let (line, column) = e.position().unzip();
            Some(json!({ "message": e.to_string(), "line": line, "column": column }))
        }
        _ => None,
    };
    let Trial { data, errors, transformed, execute_ms, transform_ms } = trial;
    let phases = transformed.as_ref().and_then(|t| t.as_ref().ok()).map(|t| t.phases.to_json());
    let transformed =
        transformed.and_then(Result::ok).map(|t| serde_json::from_slice(&t.json).unwrap_or(Value::Null));
    Ok(Preview {
        data,
        errors,
        transformed,
        script_error,
        trace: json!({ "fetches": log.records() }),
        timings: json!({
            "totalMs": started.elapsed().as_secs_f64() * 1e3,
            "executeMs": execute_ms,
            "transformMs": transform_ms,
            "transformPhases": phases,
        }),
    })
}

/// Checks, stores and makes live a version; see the module comment.
pub async fn publish(
    registry: &Registry,
    scripts: &ScriptPool,
    r: PublishRequest<'_>,
) -> Result<Published, PublishError> {
    let d = &r.draft;
    let target = d.target();
    let (engine, prepared) = d.checked(registry).await?;
    if let Some(source) = d.script {
        let script = Script::new(format!("{target}@new"), source);
        let refused = |e: crate::scripts::ScriptError| {
            PublishError::Refused(format!("{target}: the script was refused: {e}"))
        };
        scripts.check(&script, None).await.map_err(refused)?;
        // The trial runs on live backends: never a mutation (it would change their data at
        // every publish, L3); its script is compiled and checked above all the same.
        let runs = prepared.kind != crate::graphql::OperationKind::Mutation;
        if let Some(vars) = r.sample_variables.filter(|_| runs && r.trial) {
            let names = (d.client, d.endpoint);
            let trial = trial(&engine, scripts, names, &prepared, vars.clone(), Some(&script), None).await;
            if let Some(Err(e)) = trial.transformed {
                return Err(refused(e));
            }
        }
    }
    let sha256 = sha256_hex(&[d.document, d.operation_name.unwrap_or(""), d.script.unwrap_or("")]);
    let document_sha256 = sha256_hex(&[d.document]);
    let sample_variables = r.sample_variables.map(|v| Value::Object(v.clone()).to_string());
    // Stored and made live with the rebuild lock held, on the schema that serves then: a
    // reload that swapped the schema since the checks above validates the document again.
    let (version, created) = registry
        .write_checked(async |live: &Arc<Engine>| {
            if !Arc::ptr_eq(live, &engine) {
                prepare(live, &target, d.document, d.operation_name, d.allow_introspection).await?;
            }
            let chars = d.document.chars().count() + d.script.map_or(0, |s| s.chars().count());
            registry.check_quota(d.client.as_str(), d.endpoint.as_str(), chars as u64).await?;
            let (version, created) = registry
                .store()
                .publish(&NewVersion {
                    client: d.client.as_str(),
                    endpoint: d.endpoint.as_str(),
                    document: d.document,
                    operation_name: d.operation_name,
                    script: d.script,
                    sha256: &sha256,
                    document_sha256: &document_sha256,
                    author: r.author,
                    reason: r.reason,
                    sample_variables: sample_variables.as_deref(),
                })
                .await?;
            Ok::<_, PublishError>(((version, created), created))
        })
        .await?;
    Ok(Published { version, created, sha256, document_sha256 })
}
