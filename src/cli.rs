//! The tool commands of `facade` besides `serve`: migrations, tokens, and an admin-API client
//! for publishing endpoints and steering rollouts. `anyhow` is used here, as in `main.rs`.

use std::path::Path;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::config::Config;
use crate::registry::samples::read_dir;
use crate::registry::store::Store;

/// `facade schema check --against-registry`: every stored version must still validate against
/// the candidate schema in `schema_dir`. Lists each one that would break, with the reasons.
pub async fn check_against_registry(
    config: &Config,
    schema_dir: &Path,
    resolvers: &Path,
) -> anyhow::Result<()> {
    let pool = crate::scripts::ScriptPool::new(1, 16, crate::scripts::ScriptLimits::default())?;
    let js = crate::graphql::js::JsFunctions::load(resolvers, pool).await.map_err(anyhow::Error::msg)?;
    let options = crate::graphql::EngineOptions { js: Some(js), ..Default::default() };
    let engine = crate::graphql::Engine::load(schema_dir, &options)?;
    let store = Store::connect(&config.database.url).await.context("opening the registry database")?;
    store.migrate().await?;
    let mut broken = 0;
    let versions = store.all_versions().await?;
    for v in &versions {
        if let Err(errors) = engine.prepare(&v.document, v.operation_name.as_deref()).await {
            broken += 1;
            eprintln!("{}/{}@{}: {}", v.client, v.endpoint, v.version, errors.join("; "));
        }
    }
    if broken > 0 {
        bail!("{broken} of {} stored versions would break with this schema", versions.len());
    }
    println!(
        "{} stored versions in the {} registry validate against {}",
        versions.len(),
        store.kind(),
        schema_dir.display()
    );
    Ok(())
}

/// `facade migrate`: applies the registry migrations to the configured database.
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    let store = Store::connect(&config.database.url).await.context("opening the registry database")?;
    store.migrate().await?;
    println!("{} registry database is up to date", store.kind());
    Ok(())
}

/// `facade token create`: stores a new token's hash and prints the token, once.
pub async fn create_token(
    config: &Config,
    team: Option<&str>,
    label: &str,
    expires_in: Option<std::time::Duration>,
) -> anyhow::Result<()> {
    let team = team.map(crate::registry::model::TeamName::parse).transpose().map_err(anyhow::Error::msg)?;
    let store = Store::connect(&config.database.url).await.context("opening the registry database")?;
    store.migrate().await?;
    let (token, hash) = crate::http::auth::new_token().map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let expires_ms = expires_in.map(|d| crate::registry::store::now_ms() + d.as_millis() as i64);
    store.create_token(&hash, team.as_ref().map(|t| t.as_str()), label, expires_ms, "cli").await?;
    match &team {
        Some(t) => eprintln!("team token for {t} ({label}); it is shown only now:"),
        None => eprintln!("admin token ({label}); it is shown only now:"),
    }
    println!("{token}");
    Ok(())
}

/// A small client of the admin API.
pub struct AdminClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl AdminClient {
    pub fn new(url: &str, token: Option<String>) -> anyhow::Result<Self> {
        let token =
            token.context("no token: pass --token or set FACADE_TOKEN (see `facade token create`)")?;
        Ok(Self { base: url.trim_end_matches('/').to_owned(), token, http: reqwest::Client::new() })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut request =
            self.http.request(method, format!("{}/admin/v1{path}", self.base)).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.with_context(|| format!("cannot reach {}", self.base))?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
    }

    async fn ok(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let (status, body) = self.call(method, path, body).await?;
        if !(200..300).contains(&status) {
            bail!(
                "HTTP {status}: {}",
                body.get("error").and_then(Value::as_str).unwrap_or(&body.to_string())
            );
        }
        Ok(body)
    }
}

/// `facade publish DIR`: publishes every `<client>/<name>.graphql` (with `<name>.js` if
/// present). Unchanged files keep their version. Fails if any file is refused.
pub async fn publish(client: &AdminClient, dir: &Path, reason: Option<&str>) -> anyhow::Result<()> {
    let files = read_dir(dir).map_err(anyhow::Error::msg)?;
    if files.is_empty() {
        bail!("{} has no <client>/<name>.graphql files", dir.display());
    }
    let mut failed = 0;
    for f in files {
        let path = format!("/clients/{}/endpoints/{}/versions", f.client, f.name);
        let body = json!({ "document": f.document, "script": f.script, "reason": reason });
        match client.call(reqwest::Method::POST, &path, Some(body)).await? {
            (201, b) => println!("{}/{}: published version {}", f.client, f.name, b["version"]),
            (200, b) => println!("{}/{}: unchanged (version {})", f.client, f.name, b["version"]),
            (status, b) => {
                failed += 1;
                eprintln!(
                    "{}/{}: refused (HTTP {status}): {}",
                    f.client,
                    f.name,
                    b.get("error").and_then(Value::as_str).unwrap_or("")
                );
            }
        }
    }
    if failed > 0 {
        bail!("{failed} endpoint(s) refused");
    }
    Ok(())
}

/// `facade endpoints list`: every endpoint the token may see, with its rollout.
pub async fn list_endpoints(client: &AdminClient) -> anyhow::Result<()> {
    let clients = client.ok(reqwest::Method::GET, "/clients", None).await?;
    println!("{:<24} {:>7} {:>7} {:>8}", "ENDPOINT", "STABLE", "CANARY", "PERCENT");
    for c in clients.as_array().into_iter().flatten() {
        let name = c["name"].as_str().unwrap_or("");
        let endpoints = client.ok(reqwest::Method::GET, &format!("/clients/{name}/endpoints"), None).await?;
        for e in endpoints.as_array().into_iter().flatten() {
            let r = &e["rollout"];
            let canary = r["canary"].as_i64().map_or("-".to_owned(), |c| c.to_string());
            println!(
                "{:<24} {:>7} {:>7} {:>7}%",
                format!("{name}/{}", e["name"].as_str().unwrap_or("")),
                r["stable"],
                canary,
                r["canaryPercent"]
            );
        }
    }
    Ok(())
}

/// What `facade rollout` does to an endpoint.
pub enum RolloutChange {
    Set { stable: i64, canary: Option<i64>, percent: i64 },
    Promote,
    Rollback,
}

pub async fn rollout(
    client: &AdminClient,
    endpoint: &str,
    change: RolloutChange,
    reason: Option<&str>,
) -> anyhow::Result<()> {
    let (c, e) = endpoint.split_once('/').context("the endpoint is CLIENT/NAME, such as tv/home")?;
    let base = format!("/clients/{c}/endpoints/{e}");
    let result = match change {
        RolloutChange::Set { stable, canary, percent } => {
            let body =
                json!({ "stable": stable, "canary": canary, "canaryPercent": percent, "reason": reason });
            client.ok(reqwest::Method::PUT, &format!("{base}/rollout"), Some(body)).await?
        }
        RolloutChange::Promote => {
            client
                .ok(reqwest::Method::POST, &format!("{base}/promote"), Some(json!({ "reason": reason })))
                .await?
        }
        RolloutChange::Rollback => {
            client
                .ok(reqwest::Method::POST, &format!("{base}/rollback"), Some(json!({ "reason": reason })))
                .await?
        }
    };
    println!("{endpoint}: {result}");
    Ok(())
}
