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
    let program = crate::scripts::WorkerProgram::this_executable()?;
    let pool = crate::scripts::ScriptPool::with_program(program, 1, crate::scripts::ScriptLimits::default())?;
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

/// The TypeScript types of `text` (an endpoint's document) on the schema folder `dir`,
/// without an engine: no backend is bound, no `@js` function is needed (`facade endpoints
/// types --document`).
pub async fn document_types(
    dir: &std::path::Path,
    text: &str,
    operation_name: Option<&str>,
    what: &str,
) -> Result<String, Vec<String>> {
    let model = std::sync::Arc::new(crate::graphql::check_dir(dir).map_err(|e| vec![e.to_string()])?);
    let limits = crate::config::Limits::default();
    let validator = crate::graphql::validate::Validator::new(&model, limits.max_depth)
        .map_err(|e| vec![e.to_string()])?;
    let operations =
        crate::graphql::operation::Operations::new(model.clone(), limits, std::sync::Arc::new(validator));
    operations.prepare(text, operation_name).await?.typescript(what, &model)
}

/// `facade endpoints types CLIENT/ENDPOINT[@VERSION]`: the version's TypeScript types, as
/// the server generates them on the schema it runs.
pub async fn endpoint_types(client: &AdminClient, endpoint: &str) -> anyhow::Result<String> {
    let (path, version) = endpoint.split_once('@').unwrap_or((endpoint, "latest"));
    let Some((c, e)) = path.split_once('/') else {
        bail!("{endpoint:?}: expected CLIENT/ENDPOINT or CLIENT/ENDPOINT@VERSION");
    };
    let (status, body) = client
        .call(reqwest::Method::GET, &format!("/clients/{c}/endpoints/{e}/versions/{version}/types"), None)
        .await?;
    match body {
        Value::String(types) if (200..300).contains(&status) => Ok(types),
        body => {
            bail!("HTTP {status}: {}", body.get("error").and_then(Value::as_str).unwrap_or(&body.to_string()))
        }
    }
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

/// One side of `facade schema diff`: a folder, or a registry version (`registry:N`, or
/// `registry` for the one instances run).
async fn schema_side(
    spec: &str,
    store: Option<&Store>,
) -> anyhow::Result<(String, Vec<crate::graphql::sdl::SchemaFile>)> {
    use crate::graphql::sdl::{SchemaFile, load_dir};
    let Some(rest) = spec.strip_prefix("registry") else {
        let files = load_dir(Path::new(spec))?;
        return Ok((spec.to_owned(), files));
    };
    let version = match rest.strip_prefix(':') {
        None if rest.is_empty() => None,
        Some(n) => Some(
            n.parse::<i64>().with_context(|| format!("{spec}: the version after registry: is a number"))?,
        ),
        None => bail!("{spec}: a side is a folder, `registry` or `registry:N`"),
    };
    let store = store
        .context("a registry version needs the registry: set [database] url (or FACADE_DATABASE__URL)")?;
    let stored = store.schema(version).await?.with_context(|| match version {
        Some(n) => format!("schema version {n} is not in the registry"),
        None => "no schema has been published to the registry".to_owned(),
    })?;
    let files = stored.files.into_iter().map(|(name, text)| SchemaFile { name, text }).collect();
    Ok((format!("registry:{}", stored.version), files))
}

/// The registry of the config, when there is one to read (a SQLite file is not created).
async fn existing_store(config: &Config) -> anyhow::Result<Option<Store>> {
    let url = &config.database.url;
    if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
        let file = path.split('?').next().unwrap_or(path);
        if !Path::new(file).exists() {
            return Ok(None);
        }
    }
    let store = Store::connect(url).await.context("opening the registry database")?;
    store.migrate().await?;
    Ok(Some(store))
}

/// `facade schema diff OLD NEW`: every change, classified, with the live endpoint versions
/// (stable and canary) that use what it changes. Fails when a breaking change affects one.
pub async fn schema_diff(config: &Config, old: &str, new: &str, as_json: bool) -> anyhow::Result<()> {
    use crate::graphql::diff::{Level, affected, diff};
    let store = existing_store(config).await?;
    let (old_name, old_files) = schema_side(old, store.as_ref()).await?;
    let (new_name, new_files) = schema_side(new, store.as_ref()).await?;
    let analyze = |name: &str, files: &[crate::graphql::sdl::SchemaFile]| {
        crate::graphql::sdl::analyze(files).map_err(|d| anyhow::anyhow!("{name} does not load:\n{d}"))
    };
    let old_model = analyze(&old_name, &old_files)?;
    let new_model = analyze(&new_name, &new_files)?;
    let changes = diff(&old_model, &new_model);
    // What each live version uses, read with the old schema.
    let mut usage = Vec::new();
    if let Some(store) = &store {
        for v in store.load().await?.versions {
            let target = format!("{}/{}@{}", v.client, v.endpoint, v.version);
            match crate::graphql::usage::of_text(&v.document, v.operation_name.as_deref(), &old_model) {
                Ok(used) => usage.push((target, used)),
                Err(e) => eprintln!("{target}: cannot read its document: {e}"),
            }
        }
    }
    let report =
        affected(&changes, |c| usage.iter().filter(|(_, u)| u.contains(c)).map(|(t, _)| t.clone()).collect());
    let breaking: usize =
        report.iter().filter(|(c, users)| c.level == Level::Breaking && !users.is_empty()).count();
    if as_json {
        let list: Vec<Value> = report
            .iter()
            .map(|(c, users)| json!({ "level": c.level, "coordinate": c.coordinate, "message": c.message, "affects": users }))
            .collect();
        let out = json!({
            "old": { "name": old_name, "hash": crate::graphql::schema_hash(&old_files) },
            "new": { "name": new_name, "hash": crate::graphql::schema_hash(&new_files) },
            "registry": store.as_ref().map(|_| config.database.url.split('?').next().unwrap_or_default().to_owned()),
            "liveVersions": usage.len(),
            "changes": list,
            "breakingAffectingLiveVersions": breaking,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        if store.is_none() {
            eprintln!("note: no registry at [database] url; the versions each change affects are not listed");
        }
        println!(
            "{old_name} → {new_name}: {} change(s), {} live version(s) checked",
            changes.len(),
            usage.len()
        );
        for (c, users) in &report {
            println!("{:<9} {:<32} {}", c.level.as_str(), c.coordinate, c.message);
            if !users.is_empty() {
                println!("{:<9} {:<32} affects {}", "", "", users.join(", "));
            }
        }
    }
    if breaking > 0 {
        bail!("{breaking} breaking change(s) affect live endpoint versions");
    }
    Ok(())
}

/// `facade schema publish DIR`: publishes the folder's `*.graphql` as the schema every
/// instance on the registry runs (`PUT /admin/v1/schema`).
pub async fn schema_publish(
    client: &AdminClient,
    dir: &Path,
    reason: Option<&str>,
    force: bool,
) -> anyhow::Result<()> {
    let files: serde_json::Map<String, Value> = crate::graphql::sdl::load_dir(dir)?
        .into_iter()
        .map(|f| (f.base_name().to_owned(), Value::String(f.text)))
        .collect();
    let body = json!({ "files": files, "reason": reason, "force": force });
    let (status, attempt) = client.call(reqwest::Method::PUT, "/schema", Some(body)).await?;
    print_attempt(status, &attempt)
}

/// `facade schema reload`: the server reads its schema again (`POST /admin/v1/schema/reload`).
pub async fn schema_reload(client: &AdminClient, reason: Option<&str>, force: bool) -> anyhow::Result<()> {
    let body = json!({ "reason": reason, "force": force });
    let (status, attempt) = client.call(reqwest::Method::POST, "/schema/reload", Some(body)).await?;
    print_attempt(status, &attempt)
}

fn print_attempt(status: u16, attempt: &Value) -> anyhow::Result<()> {
    if !matches!(status, 200 | 422) {
        bail!(
            "HTTP {status}: {}",
            attempt.get("error").and_then(Value::as_str).unwrap_or(&attempt.to_string())
        );
    }
    let result = attempt["result"].as_str().unwrap_or("?");
    println!(
        "{result}: schema {} ({} live versions checked, {} ms)",
        attempt["hash"].as_str().unwrap_or("-"),
        attempt["versionsChecked"],
        attempt["tookMs"]
    );
    for c in attempt["changes"].as_array().into_iter().flatten() {
        println!(
            "  {:<9} {:<32} {}",
            c["level"].as_str().unwrap_or(""),
            c["coordinate"].as_str().unwrap_or(""),
            c["message"].as_str().unwrap_or("")
        );
    }
    for r in attempt["reasons"].as_array().into_iter().flatten() {
        eprintln!("  {}", r.as_str().unwrap_or(""));
    }
    if result == "refused" {
        bail!("the schema was refused; the running one keeps serving");
    }
    Ok(())
}

/// `facade schema usage`: which live versions use each coordinate, with their traffic.
pub async fn schema_usage(client: &AdminClient, as_json: bool) -> anyhow::Result<()> {
    let usage = client.ok(reqwest::Method::GET, "/schema/usage", None).await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&usage)?);
        return Ok(());
    }
    println!("schema {}", usage["schema"].as_str().unwrap_or("-"));
    for (coordinate, users) in usage["coordinates"].as_object().into_iter().flatten() {
        let list: Vec<String> = users
            .as_array()
            .into_iter()
            .flatten()
            .map(|u| {
                format!(
                    "{} ({}, {}/h)",
                    u["version"].as_str().unwrap_or(""),
                    u["side"].as_str().unwrap_or(""),
                    u["requestsLastHour"]
                )
            })
            .collect();
        println!("{coordinate:<40} {}", list.join(", "));
    }
    let deprecated = usage["deprecatedInUse"].as_object().filter(|d| !d.is_empty());
    if let Some(deprecated) = deprecated {
        println!("\ndeprecated fields still in use:");
        for (coordinate, clients) in deprecated {
            for (client, versions) in clients.as_object().into_iter().flatten() {
                println!("  {coordinate:<38} {client}: {versions}");
            }
        }
    }
    Ok(())
}

/// `facade schema compose`: each `NAME=SOURCE` read (a file of SDL, or an `http(s)://` subgraph
/// asked for its `_service { sdl }`, whose URL is then its routing URL; `routing` gives a file's
/// as `NAME=URL`), composed, and the supergraph written to `out` (or printed). Every problem is
/// listed, each as `subgraph:line:column: reason`.
pub async fn schema_compose(specs: &[String], routing: &[String], out: Option<&Path>) -> anyhow::Result<()> {
    use crate::graphql::compose::{Subgraph, compose};
    let mut urls: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    for r in routing {
        let (name, url) = r.split_once('=').with_context(|| format!("--url {r:?}: expected NAME=URL"))?;
        urls.insert(name, url);
    }
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)).build()?;
    let mut subgraphs = Vec::with_capacity(specs.len());
    for spec in specs {
        let (name, source) =
            spec.split_once('=').with_context(|| format!("{spec:?}: expected NAME=SOURCE"))?;
        let (sdl, url) = if source.starts_with("http://") || source.starts_with("https://") {
            (service_sdl(&client, name, source).await?, Some(source.to_owned()))
        } else {
            let sdl = std::fs::read_to_string(source)
                .with_context(|| format!("subgraph {name}: cannot read {source}"))?;
            (sdl, urls.get(name).map(|u| (*u).to_owned()))
        };
        subgraphs.push(Subgraph { name: name.to_owned(), url, sdl });
    }
    if let Some(unknown) = urls.keys().find(|n| !subgraphs.iter().any(|s| s.name == **n)) {
        bail!("--url {unknown}=…: no subgraph {unknown} is given");
    }
    match compose(&subgraphs) {
        Ok(composed) => {
            for w in &composed.warnings {
                eprintln!("warning: {w}");
            }
            match out {
                Some(path) => {
                    std::fs::write(path, &composed.supergraph)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    eprintln!("composed {} subgraphs into {}", subgraphs.len(), path.display());
                }
                None => print!("{}", composed.supergraph),
            }
            Ok(())
        }
        Err(problems) => {
            for p in &problems {
                eprintln!("{p}");
            }
            bail!("composition failed with {} problem(s)", problems.len())
        }
    }
}

/// A running subgraph's SDL, as it gives it (`{ _service { sdl } }`).
async fn service_sdl(client: &reqwest::Client, name: &str, url: &str) -> anyhow::Result<String> {
    let r = client
        .post(url)
        .json(&json!({ "query": "{ _service { sdl } }" }))
        .send()
        .await
        .with_context(|| format!("subgraph {name}: cannot reach {url}"))?;
    let status = r.status();
    let body: Value =
        r.json().await.with_context(|| format!("subgraph {name}: {url} answered {status} without JSON"))?;
    match body["data"]["_service"]["sdl"].as_str() {
        Some(sdl) => Ok(sdl.to_owned()),
        None => bail!("subgraph {name}: {url} gave no _service {{ sdl }} ({status}): {body}"),
    }
}
