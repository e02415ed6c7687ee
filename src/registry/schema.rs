//! Schema evolution: the facade schema changes while Facade serves. A reload (file watch,
//! SIGHUP, `POST /admin/v1/schema/reload`) or a publish (`PUT /admin/v1/schema`) builds the
//! new engine beside the running one, checks it against every live endpoint version (each
//! must compile on it, and no breaking change may touch what it uses), and swaps engine and
//! versions in one snapshot; requests in flight finish on the old one. A refused schema
//! changes nothing. With `schema.source = "registry"` the schema is a registry version that
//! every instance switches to (the registry's notify path).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::{Value, json};

use super::Registry;
use super::store::{Loaded, StoreError, now_ms};
use crate::config::SchemaSource;
use crate::graphql::EngineError;
use crate::graphql::diff::{self, Change, Level};
use crate::graphql::sdl::{self, SchemaFile};

#[derive(Debug, Clone)]
pub struct SchemaSettings {
    pub dir: PathBuf,
    pub source: SchemaSource,
}

impl Default for SchemaSettings {
    fn default() -> Self {
        Self { dir: PathBuf::from("schema"), source: SchemaSource::Dir }
    }
}

/// What a reload or publish did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SchemaOutcome {
    /// The new schema serves.
    Applied,
    /// It was the schema already running.
    Unchanged,
    /// It failed to load or would break a live version: the old one keeps serving.
    Refused,
    /// It would break live versions and was applied anyway (`force`, audited).
    Forced,
}

impl SchemaOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            SchemaOutcome::Applied => "applied",
            SchemaOutcome::Unchanged => "unchanged",
            SchemaOutcome::Refused => "refused",
            SchemaOutcome::Forced => "forced",
        }
    }
}

/// One change of a reload, with the live versions it affects.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeView {
    #[serde(flatten)]
    pub change: Change,
    /// `client/endpoint@version` of every live version using the changed coordinate.
    pub affects: Vec<String>,
}

/// One reload or publish attempt.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    pub at_ms: i64,
    /// `file-watch`, `sighup`, `admin`, `publish` or `registry`.
    pub trigger: String,
    pub result: SchemaOutcome,
    /// The candidate schema's hash, when its files could be read.
    pub hash: Option<String>,
    /// Why it was refused (or what `force` overrode): `file:line:column: …` for a schema
    /// that does not load, `client/endpoint@version: …` for a version it would break.
    pub reasons: Vec<String>,
    pub changes: Vec<ChangeView>,
    /// Live versions checked against it.
    pub versions_checked: usize,
    pub took_ms: u64,
    /// The registry's schema version, for a published one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stored_version: Option<i64>,
}

struct Status {
    loaded_at_ms: i64,
    stored_version: Option<i64>,
    last: Option<Attempt>,
}

pub struct SchemaState {
    settings: SchemaSettings,
    status: Mutex<Status>,
}

impl SchemaState {
    pub fn new(settings: SchemaSettings) -> Self {
        Self {
            settings,
            status: Mutex::new(Status { loaded_at_ms: now_ms(), stored_version: None, last: None }),
        }
    }

    /// The published schema version to run, when this instance follows the registry.
    pub fn follows_registry(&self, loaded: &Loaded) -> Option<(i64, String)> {
        (self.settings.source == SchemaSource::Registry).then(|| loaded.schema.clone()).flatten()
    }

    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A schema that does not load, as reasons.
fn load_reasons(e: &EngineError) -> Vec<String> {
    match e {
        EngineError::Schema(d) => d.0.iter().map(ToString::to_string).collect(),
        other => vec![other.to_string()],
    }
}

/// A built and checked candidate, not yet serving.
struct Candidate {
    snapshot: super::Snapshot,
    reasons: Vec<String>,
    changes: Vec<ChangeView>,
    checked: usize,
}

/// Who asked for a schema change and how.
pub struct Request<'a> {
    pub trigger: &'a str,
    pub actor: &'a str,
    pub reason: Option<&'a str>,
    /// Apply even if live versions break (admin only; audited).
    pub force: bool,
}

impl Registry {
    pub fn schema_source(&self) -> SchemaSource {
        self.schema.settings.source
    }

    /// The running schema and the last attempt to change it (`GET /admin/v1/schema`).
    pub fn schema_status(&self) -> Value {
        let engine = self.engine();
        let status = self.schema.status();
        json!({
            "hash": engine.hash(),
            "source": self.schema.settings.source,
            "dir": (self.schema.settings.source == SchemaSource::Dir).then(|| self.schema.settings.dir.display().to_string()),
            "storedVersion": status.stored_version,
            "loadedAtMs": status.loaded_at_ms,
            "files": engine.files().iter().map(|f| f.base_name()).collect::<Vec<_>>(),
            "lastAttempt": status.last,
        })
    }

    /// Builds `files` beside the running engine and checks it against every live version.
    /// `Err`: the files do not load.
    async fn candidate(&self, files: Vec<SchemaFile>) -> Result<Candidate, Vec<String>> {
        let current = self.snapshot();
        let engine = current.engine.rebuilt(files).map_err(|e| load_reasons(&e))?;
        let changes = diff::diff(current.engine.model(), engine.model());
        let live = current.live_versions();
        let usage: Vec<(String, BTreeSet<String>)> = live
            .iter()
            .map(|(c, e, _, v)| (format!("{c}/{e}@{}", v.version), v.prepared.usage(current.engine.model())))
            .collect();
        let changes: Vec<ChangeView> = diff::affected(&changes, |coordinate| {
            usage.iter().filter(|(_, used)| used.contains(coordinate)).map(|(t, _)| t.clone()).collect()
        })
        .into_iter()
        .map(|(change, affects)| ChangeView { change: change.clone(), affects })
        .collect();
        let mut reasons: Vec<String> = changes
            .iter()
            .filter(|c| c.change.level == Level::Breaking)
            .flat_map(|c| c.affects.iter().map(move |t| format!("{t}: {}", c.change.message)))
            .collect();
        let loaded = self.store.load().await.map_err(|e| vec![format!("registry: {e}")])?;
        let (snapshot, failures) = self.build(Arc::new(engine), loaded, &current).await;
        reasons.extend(failures);
        reasons.sort();
        reasons.dedup();
        Ok(Candidate { snapshot, reasons, changes, checked: live.len() })
    }

    /// Applies or refuses a candidate built from `files`; the caller holds `rebuild`.
    async fn try_swap(
        &self,
        files: Result<Vec<SchemaFile>, Vec<String>>,
        request: &Request<'_>,
        stored: Option<i64>,
        before_swap: impl AsyncFnOnce(&Candidate) -> Result<Option<i64>, StoreError>,
    ) -> Attempt {
        let started = std::time::Instant::now();
        let mut attempt = Attempt {
            at_ms: now_ms(),
            trigger: request.trigger.to_owned(),
            result: SchemaOutcome::Refused,
            hash: None,
            reasons: Vec::new(),
            changes: Vec::new(),
            versions_checked: 0,
            took_ms: 0,
            stored_version: stored,
        };
        let running = self.snapshot().engine.hash().to_owned();
        let mut swap_in = None;
        match files {
            Err(reasons) => attempt.reasons = reasons,
            Ok(files) => {
                let hash = crate::graphql::schema_hash(&files);
                attempt.hash = Some(hash.clone());
                if hash == running {
                    attempt.result = SchemaOutcome::Unchanged;
                    // A publish of the running schema still records it in the registry.
                    if let Err(e) = record_unchanged_publish(self, request).await {
                        attempt.result = SchemaOutcome::Refused;
                        attempt.reasons = vec![format!("registry: {e}")];
                    }
                } else {
                    match self.candidate(files).await {
                        Err(reasons) => attempt.reasons = reasons,
                        Ok(candidate) => {
                            attempt.reasons = candidate.reasons.clone();
                            attempt.changes = candidate.changes.clone();
                            attempt.versions_checked = candidate.checked;
                            if candidate.reasons.is_empty() || request.force {
                                match before_swap(&candidate).await {
                                    Err(e) => attempt.reasons.push(format!("registry: {e}")),
                                    Ok(version) => {
                                        attempt.stored_version = version.or(stored);
                                        attempt.result = if candidate.reasons.is_empty() {
                                            SchemaOutcome::Applied
                                        } else {
                                            SchemaOutcome::Forced
                                        };
                                        swap_in = Some(candidate.snapshot);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        attempt.took_ms = started.elapsed().as_millis() as u64;
        // Status and audit first: whoever sees the new schema serve also sees them.
        self.settle(request, &running, &attempt).await;
        if let Some(snapshot) = swap_in {
            self.calls.keep_only(&snapshot);
            self.snapshot.store(Arc::new(snapshot));
        }
        attempt
    }

    /// Records an attempt: status, metric, log, and the audit log for a change that serves.
    async fn settle(&self, request: &Request<'_>, from: &str, attempt: &Attempt) {
        metrics::counter!(crate::telemetry::metrics::SCHEMA_RELOADS, "result" => attempt.result.as_str())
            .increment(1);
        {
            let mut status = self.schema.status();
            if matches!(attempt.result, SchemaOutcome::Applied | SchemaOutcome::Forced) {
                status.loaded_at_ms = attempt.at_ms;
            }
            if attempt.result != SchemaOutcome::Refused && attempt.stored_version.is_some() {
                status.stored_version = attempt.stored_version;
            }
            status.last = Some(attempt.clone());
        }
        match attempt.result {
            SchemaOutcome::Refused => {
                tracing::warn!(trigger = %attempt.trigger, reasons = %attempt.reasons.join("\n"), "schema refused; the running schema keeps serving");
            }
            SchemaOutcome::Unchanged => {}
            SchemaOutcome::Applied | SchemaOutcome::Forced => {
                tracing::info!(trigger = %attempt.trigger, hash = ?attempt.hash, forced = attempt.result == SchemaOutcome::Forced, took_ms = attempt.took_ms, "schema swapped");
                let detail = json!({
                    "from": from,
                    "to": attempt.hash,
                    "trigger": attempt.trigger,
                    "forced": attempt.result == SchemaOutcome::Forced,
                    "overridden": attempt.reasons,
                    "changes": attempt.changes.len(),
                });
                // Publishing audited it already, in its transaction (once, not per instance).
                if !matches!(attempt.trigger.as_str(), "publish" | "registry")
                    && let Err(e) = self
                        .store
                        .record(request.actor, "schema.reload", "schema", &detail, request.reason)
                        .await
                {
                    tracing::warn!(error = %e, "could not audit a schema swap");
                }
            }
        }
    }

    /// Reads the schema again from where this instance takes it and swaps it in if it passes.
    pub async fn reload_schema(&self, request: Request<'_>) -> Attempt {
        let _one = self.rebuild.lock().await;
        match self.schema.settings.source {
            SchemaSource::Dir => {
                let files = sdl::load_dir(&self.schema.settings.dir).map_err(|e| vec![e.to_string()]);
                self.try_swap(files, &request, None, async |_| Ok(None)).await
            }
            SchemaSource::Registry => {
                let stored = self.store.schema(None).await;
                let (files, version) = match stored {
                    Ok(Some(s)) => (Ok(stored_files(&s.files)), Some(s.version)),
                    Ok(None) => {
                        (Err(vec!["no schema has been published to the registry yet".to_owned()]), None)
                    }
                    Err(e) => (Err(vec![format!("registry: {e}")]), None),
                };
                self.try_swap(files, &request, version, async |_| Ok(None)).await
            }
        }
    }

    /// Switches to the registry's published schema version (another instance published it);
    /// the caller holds `rebuild`.
    pub(super) async fn switch_to_stored(&self, version: i64) -> Attempt {
        let request = Request { trigger: "registry", actor: "registry", reason: None, force: false };
        let files = match self.store.schema(Some(version)).await {
            Ok(Some(s)) => Ok(stored_files(&s.files)),
            Ok(None) => Err(vec![format!("schema version {version} is not in the registry")]),
            Err(e) => Err(vec![format!("registry: {e}")]),
        };
        self.try_swap(files, &request, Some(version), async |_| Ok(None)).await
    }

    /// Publishes a schema to the registry for every instance: checked here first against
    /// every live version; stored and activated only if it passes (or `force`); this
    /// instance switches at once, the others on the registry's notification.
    pub async fn publish_schema(&self, files: Vec<(String, String)>, request: Request<'_>) -> Attempt {
        let request = Request { trigger: "publish", ..request };
        let attempt = {
            let _one = self.rebuild.lock().await;
            let schema_files: Vec<SchemaFile> = files
                .iter()
                .map(|(name, text)| SchemaFile { name: name.clone(), text: text.clone() })
                .collect();
            let sha = crate::graphql::schema_hash(&schema_files);
            let files_ref = &files;
            let sha_ref = &sha;
            let request_ref = &request;
            self.try_swap(Ok(schema_files), &request, None, async move |candidate: &Candidate| {
                let detail = json!({
                    "sha256": sha_ref,
                    "forced": !candidate.reasons.is_empty(),
                    "overridden": candidate.reasons,
                    "changes": candidate.changes.len(),
                });
                let (version, _) = self
                    .store
                    .publish_schema(files_ref, sha_ref, request_ref.actor, request_ref.reason, &detail)
                    .await?;
                Ok(Some(version))
            })
            .await
        };
        if matches!(attempt.result, SchemaOutcome::Applied | SchemaOutcome::Forced | SchemaOutcome::Unchanged)
            && let Err(e) = self.tell_others().await
        {
            tracing::warn!(error = %e, "could not notify the other instances of a schema publish");
        }
        attempt
    }
}

/// Stored (name, text) pairs as schema files.
fn stored_files(files: &[(String, String)]) -> Vec<SchemaFile> {
    files.iter().map(|(name, text)| SchemaFile { name: name.clone(), text: text.clone() }).collect()
}

/// A publish of the schema already running: stored (and activated) all the same, so the
/// registry says what runs.
async fn record_unchanged_publish(registry: &Registry, request: &Request<'_>) -> Result<(), StoreError> {
    if request.trigger != "publish" {
        return Ok(());
    }
    let engine = registry.engine();
    let files: Vec<(String, String)> =
        engine.files().iter().map(|f| (f.base_name().to_owned(), f.text.clone())).collect();
    let detail = json!({ "sha256": engine.hash(), "forced": false, "changes": 0 });
    let (version, _) =
        registry.store.publish_schema(&files, engine.hash(), request.actor, request.reason, &detail).await?;
    registry.schema.status().stored_version = Some(version);
    Ok(())
}

/// Which live versions use each coordinate of the running schema, with their calls in the
/// last hour; and the deprecated fields still in use, by client.
pub fn usage_report(registry: &Registry, visible: impl Fn(&str) -> bool) -> Value {
    let snapshot = registry.snapshot();
    let model = snapshot.engine.model();
    let mut by_coordinate: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut versions = Vec::new();
    for (client, endpoint, side, live) in snapshot.live_versions() {
        if !visible(client) {
            continue;
        }
        let calls = registry.calls.last_hour(client, endpoint, live.version);
        let target = format!("{client}/{endpoint}@{}", live.version);
        let used = live.prepared.usage(model);
        versions
            .push(json!({ "version": target, "side": side, "requestsLastHour": calls, "uses": used.len() }));
        for c in used {
            by_coordinate
                .entry(c)
                .or_default()
                .push(json!({ "version": target, "side": side, "requestsLastHour": calls }));
        }
    }
    let mut deprecated: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for (type_name, t) in &model.types {
        let fields = match t {
            crate::graphql::model::TypeDef::Object { fields, .. }
            | crate::graphql::model::TypeDef::Interface { fields, .. } => fields,
            _ => continue,
        };
        for f in fields.iter().filter(|f| f.deprecation.is_some()) {
            let coordinate = format!("{type_name}.{}", f.name);
            for user in by_coordinate.get(&coordinate).into_iter().flatten() {
                let version = user["version"].as_str().unwrap_or_default();
                let client = version.split('/').next().unwrap_or_default().to_owned();
                deprecated
                    .entry(coordinate.clone())
                    .or_default()
                    .entry(client)
                    .or_default()
                    .push(version.to_owned());
            }
        }
    }
    json!({
        "schema": snapshot.engine.hash(),
        "versions": versions,
        "coordinates": by_coordinate,
        "deprecatedInUse": deprecated,
    })
}

/// Reloads the schema on SIGHUP (from where this instance takes it) and, with `watch`, when
/// a file in `dir` changes (after `settle` without further changes). Stops when the
/// registry is dropped.
pub fn watch_dir(registry: &Arc<Registry>, dir: &std::path::Path, watch: bool, settle: std::time::Duration) {
    use notify::Watcher;
    let weak = Arc::downgrade(registry);
    // One pending signal is enough: a reload reads the whole folder.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    let watcher = if watch {
        let tx = tx.clone();
        let handler = move |event: notify::Result<notify::Event>| {
            if event.is_ok_and(|e| !e.kind.is_access() && !e.kind.is_other()) {
                let _ = tx.try_send(());
            }
        };
        match notify::recommended_watcher(handler) {
            Ok(mut w) => match w.watch(dir, notify::RecursiveMode::NonRecursive) {
                Ok(()) => Some(w),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the schema folder; reload with SIGHUP or the admin API");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "no file watcher; reload the schema with SIGHUP or the admin API");
                None
            }
        }
    } else {
        None
    };
    tokio::spawn(async move {
        let _watcher = watcher;
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut alive = tokio::time::interval(std::time::Duration::from_secs(2));
        loop {
            #[cfg(unix)]
            let hangup = async {
                match hup.as_mut() {
                    Some(s) => s.recv().await.is_some(),
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let hangup = std::future::pending::<bool>();
            let trigger = tokio::select! {
                Some(()) = rx.recv() => {
                    // Wait for the folder to be quiet: a save is often several events.
                    while let Ok(Some(())) = tokio::time::timeout(settle, rx.recv()).await {}
                    "file-watch"
                }
                true = hangup => "sighup",
                _ = alive.tick() => {
                    if weak.strong_count() == 0 { return; }
                    continue;
                }
            };
            let Some(registry) = weak.upgrade() else { return };
            let attempt =
                registry.reload_schema(Request { trigger, actor: trigger, reason: None, force: false }).await;
            tracing::debug!(trigger, result = attempt.result.as_str(), "schema reload");
        }
    });
}
