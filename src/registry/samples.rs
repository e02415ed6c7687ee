//! Sample endpoints for the demo: `resolvers-js/endpoints/<client>/<name>.graphql`, published
//! on `serve --demo` start for clients `tv`, `ios` and `web` (teams `<client>-team`), each with
//! its transform (`<name>.ts` or `<name>.js`) and sample variables (`<name>.variables.json`)
//! when present.
//! Publishing identical content again keeps the existing version, so restarts add nothing.

use std::path::Path;

use super::Registry;
use super::model::{ClientName, EndpointName};
use super::store::StoreError;

/// Where the sample endpoints live, relative to the working directory.
pub const SAMPLES_DIR: &str = "resolvers-js/endpoints";

/// A `<client>/<name>.graphql` file (and an optional transform, `<name>.ts` or `<name>.js`,
/// and `<name>.variables.json` beside it).
pub struct EndpointFile {
    pub client: ClientName,
    pub name: EndpointName,
    pub document: String,
    pub script: Option<String>,
    pub sample_variables: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Reads `<dir>/<client>/<name>.graphql` files; bad names are errors naming the file.
pub fn read_dir(dir: &Path) -> Result<Vec<EndpointFile>, String> {
    let mut out = Vec::new();
    let clients = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for client_dir in clients.filter_map(Result::ok).filter(|e| e.path().is_dir()) {
        let client_raw = client_dir.file_name().to_string_lossy().into_owned();
        let client =
            ClientName::parse(&client_raw).map_err(|e| format!("{}: {e}", client_dir.path().display()))?;
        for file in std::fs::read_dir(client_dir.path()).map_err(|e| e.to_string())?.filter_map(Result::ok) {
            let path = file.path();
            if path.extension().is_none_or(|e| e != "graphql") {
                continue;
            }
            let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let name = EndpointName::parse(&stem).map_err(|e| format!("{}: {e}", path.display()))?;
            let document = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let script = match (
                std::fs::read_to_string(path.with_extension("ts")).ok(),
                std::fs::read_to_string(path.with_extension("js")).ok(),
            ) {
                (Some(_), Some(_)) => {
                    let stem = path.with_extension("");
                    return Err(format!(
                        "{0}.ts and {0}.js: one transform per endpoint (TypeScript or JavaScript)",
                        stem.display()
                    ));
                }
                (ts, js) => ts.or(js),
            };
            let variables_path = path.with_extension("variables.json");
            let sample_variables = match std::fs::read_to_string(&variables_path) {
                Err(_) => None,
                Ok(text) => Some(
                    serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&text)
                        .map_err(|e| format!("{}: not a JSON object: {e}", variables_path.display()))?,
                ),
            };
            out.push(EndpointFile { client: client.clone(), name, document, script, sample_variables });
        }
    }
    out.sort_by(|a, b| (a.client.as_str(), a.name.as_str()).cmp(&(b.client.as_str(), b.name.as_str())));
    Ok(out)
}

pub async fn publish_samples(
    registry: &Registry,
    scripts: &crate::scripts::ScriptPool,
) -> Result<(), StoreError> {
    let files = match read_dir(Path::new(SAMPLES_DIR)) {
        Ok(files) => files,
        Err(e) => {
            tracing::warn!(error = %e, "no sample endpoints published");
            return Ok(());
        }
    };
    let store = registry.store();
    for f in files {
        if store.client_team(f.client.as_str()).await?.is_none() {
            let team = format!("{}-team", f.client);
            store.create_client(f.client.as_str(), &team, "demo", Some("demo sample")).await?;
        }
        let request = super::publish::PublishRequest {
            draft: super::publish::Draft {
                client: &f.client,
                endpoint: &f.name,
                document: &f.document,
                operation_name: None,
                script: f.script.as_deref(),
                allow_introspection: true,
            },
            sample_variables: f.sample_variables.as_ref(),
            trial: false,
            author: "demo",
            reason: Some("demo sample"),
        };
        match super::publish::publish(registry, scripts, request).await {
            Ok(p) if p.created => {
                tracing::info!(endpoint = %format!("{}/{}", f.client, f.name), version = p.version, "sample endpoint published")
            }
            Ok(_) => {}
            Err(super::publish::PublishError::Store(e)) => return Err(e),
            Err(e) => {
                tracing::warn!(endpoint = %format!("{}/{}", f.client, f.name), error = %e, "sample endpoint refused")
            }
        }
    }
    registry.changed().await
}
