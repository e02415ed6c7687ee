//! The registry: clients, tokens, endpoints with immutable versions, rollouts and the audit
//! log, kept in SQL (`store.rs`) and served from an in-memory [`Snapshot`] that is rebuilt and
//! swapped whole after every change — at once on the instance that made it, and on the others
//! through PostgreSQL's LISTEN/NOTIFY, with a slow poll of the registry generation as a safety
//! net (`watch`).

pub mod call;
pub mod canary;
pub mod model;
pub mod publish;
pub mod samples;
pub mod schema;
pub mod store;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};

use crate::graphql::{Engine, Prepared};
use model::{ClientName, EndpointName, Rollout};
use store::{Store, StoreError};

/// PostgreSQL channel on which instances announce registry changes.
const CHANNEL: &str = "facade_registry";

/// A version that devices can be served.
#[derive(Clone)]
pub struct LiveVersion {
    pub version: i64,
    pub prepared: Arc<Prepared>,
    /// The version's transform, named `client/endpoint@version` in errors and logs.
    pub script: Option<crate::scripts::Script>,
}

struct LiveEndpoint {
    stable: Result<LiveVersion, String>,
    canary: Option<(Result<LiveVersion, String>, i64)>,
    guard: model::CanaryGuard,
}

/// The registry as devices see it, with the engine its versions were compiled on:
/// immutable, replaced whole (a schema swap replaces both at once).
pub struct Snapshot {
    pub generation: i64,
    pub engine: Arc<Engine>,
    clients: HashMap<String, String>,
    endpoints: HashMap<(String, String), LiveEndpoint>,
    /// Stored documents by the SHA-256 of their text: (text, operation name).
    documents: HashMap<String, (Arc<str>, Option<String>)>,
}

/// Which side of a rollout a request got.
pub struct Picked {
    pub version: LiveVersion,
    pub canary: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PickError {
    #[error("unknown endpoint {0}")]
    UnknownEndpoint(String),
    #[error("{0}")]
    Unservable(String),
}

/// Stable bucket 0..100 of a device for one endpoint: the same device always lands on the
/// same side, on every instance and across restarts.
pub fn device_bucket(client: &str, endpoint: &str, device: &str) -> u64 {
    let digest = Sha256::new()
        .chain_update(client)
        .chain_update("/")
        .chain_update(endpoint)
        .chain_update("#")
        .chain_update(device)
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first) % 100
}

pub fn sha256_hex(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update([0u8]);
        }
        h.update(p.as_bytes());
    }
    hex::encode(h.finalize())
}

impl Snapshot {
    pub fn client_team(&self, client: &str) -> Option<&str> {
        self.clients.get(client).map(String::as_str)
    }

    pub fn clients(&self) -> impl Iterator<Item = (&str, &str)> {
        self.clients.iter().map(|(c, t)| (c.as_str(), t.as_str()))
    }

    /// Whether `client/endpoint` is a published endpoint (servable or not).
    pub fn knows(&self, client: &str, endpoint: &str) -> bool {
        self.endpoints.contains_key(&(client.to_owned(), endpoint.to_owned()))
    }

    /// The version a device gets: the canary if the rollout has one and the device's bucket
    /// falls under its percent, else the stable version.
    pub fn pick(&self, client: &str, endpoint: &str, device: Option<&str>) -> Result<Picked, PickError> {
        let live = self
            .endpoints
            .get(&(client.to_owned(), endpoint.to_owned()))
            .ok_or_else(|| PickError::UnknownEndpoint(format!("{client}/{endpoint}")))?;
        if let (Some((canary, percent)), Some(device)) = (&live.canary, device)
            && device_bucket(client, endpoint, device) < *percent as u64
        {
            let version = canary.clone().map_err(PickError::Unservable)?;
            return Ok(Picked { version, canary: true });
        }
        let version = live.stable.clone().map_err(PickError::Unservable)?;
        Ok(Picked { version, canary: false })
    }

    /// A stored document by the SHA-256 of its text (persisted queries, safelist).
    pub fn document(&self, sha256: &str) -> Option<(Arc<str>, Option<String>)> {
        self.documents.get(sha256).cloned()
    }

    /// An endpoint's canary guard settings (the defaults for an unknown endpoint).
    pub fn guard_of(&self, client: &str, endpoint: &str) -> model::CanaryGuard {
        self.endpoints.get(&(client.to_owned(), endpoint.to_owned())).map(|l| l.guard).unwrap_or_default()
    }

    /// The canary guard of an endpoint with a live canary: (guard, stable version, canary
    /// version).
    pub fn guarded(&self, client: &str, endpoint: &str) -> Option<(model::CanaryGuard, i64, i64)> {
        let live = self.endpoints.get(&(client.to_owned(), endpoint.to_owned()))?;
        let stable = live.stable.as_ref().ok()?.version;
        let (canary, percent) = live.canary.as_ref()?;
        let canary = canary.as_ref().ok()?.version;
        (*percent > 0).then_some((live.guard, stable, canary))
    }

    /// Every servable version: (client, endpoint, side, version), sorted.
    pub fn live_versions(&self) -> Vec<(&str, &str, &'static str, &LiveVersion)> {
        let mut out: Vec<_> = self
            .endpoints
            .iter()
            .flat_map(|((client, endpoint), live)| {
                let stable =
                    live.stable.as_ref().ok().map(|v| (client.as_str(), endpoint.as_str(), "stable", v));
                let canary = live
                    .canary
                    .as_ref()
                    .and_then(|(c, _)| c.as_ref().ok())
                    .map(|v| (client.as_str(), endpoint.as_str(), "canary", v));
                stable.into_iter().chain(canary)
            })
            .collect();
        out.sort_by(|a, b| (a.0, a.1, a.3.version).cmp(&(b.0, b.1, b.3.version)));
        out
    }
}

pub struct Registry {
    store: Store,
    snapshot: ArcSwap<Snapshot>,
    /// Snapshot rebuilds (registry changes, schema swaps) one at a time, so none is lost.
    rebuild: tokio::sync::Mutex<()>,
    /// Where the schema comes from, what runs, and the last reload attempt.
    schema: schema::SchemaState,
    /// Device calls per live version: the last minute (ops stream, canary guard) and the
    /// last hour (schema usage).
    calls: canary::Calls,
    /// A SQLite registry's file and its identity when opened, so readiness can tell that the
    /// file was deleted or replaced under the open pool.
    sqlite_file: Option<(std::path::PathBuf, Option<u64>)>,
    /// Versions validated and compiled by reloads so far (a figure for tests): a version
    /// already live is carried over, not compiled again.
    compiled: std::sync::atomic::AtomicU64,
    /// What one team may store.
    quotas: Quotas,
}

/// What one team's clients may hold in the registry, in all (probe 2, L4: one team's
/// hundreds of large endpoints slowed every team's publishes, and each reload).
#[derive(Debug, Clone, Copy)]
pub struct Quotas {
    pub endpoints_per_team: u64,
    /// Characters of documents and scripts of every stored version.
    pub stored_chars_per_team: u64,
}

impl Default for Quotas {
    fn default() -> Self {
        let limits = crate::config::Limits::default();
        Self {
            endpoints_per_team: limits.max_endpoints_per_team,
            stored_chars_per_team: limits.max_stored_chars_per_team,
        }
    }
}

/// The file's identity (inode) where the platform has one.
fn file_identity(path: &std::path::Path) -> Option<u64> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().map(|m| m.ino())
    }
    #[cfg(not(unix))]
    {
        std::fs::metadata(path).ok().map(|_| 0)
    }
}

/// How long `/readyz` waits for the store.
pub const READY_WAIT: Duration = Duration::from_millis(800);

/// What [`Registry::store_state`] found.
pub enum StoreState {
    Ok,
    Lost(String),
    Unreachable(String),
}

impl Registry {
    /// Connects, migrates and loads the first snapshot, on `engine` (schema from files only).
    pub async fn open(url: &str, engine: Arc<Engine>) -> Result<Arc<Self>, StoreError> {
        Self::open_with(url, engine, schema::SchemaSettings::default(), Quotas::default()).await
    }

    /// Connects, migrates and loads the first snapshot. With the schema taken from the
    /// registry and a version published there, the engine is rebuilt from it first.
    pub async fn open_with(
        url: &str,
        engine: Arc<Engine>,
        settings: schema::SchemaSettings,
        quotas: Quotas,
    ) -> Result<Arc<Self>, StoreError> {
        let store = Store::connect(url).await?;
        store.migrate().await?;
        let sqlite_file = match store.postgres() {
            None => {
                use std::str::FromStr;
                let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)?;
                let path = options.get_filename().to_owned();
                let id = file_identity(&path);
                Some((path, id))
            }
            Some(_) => None,
        };
        let empty = Snapshot {
            generation: -1,
            engine,
            clients: HashMap::new(),
            endpoints: HashMap::new(),
            documents: HashMap::new(),
        };
        let registry = Arc::new(Self {
            store,
            snapshot: ArcSwap::from_pointee(empty),
            rebuild: tokio::sync::Mutex::new(()),
            schema: schema::SchemaState::new(settings),
            calls: canary::Calls::default(),
            sqlite_file,
            compiled: std::sync::atomic::AtomicU64::new(0),
            quotas,
        });
        registry.reload().await?;
        Ok(registry)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The store's state, within [`READY_WAIT`]: `Lost` when writes would be lost (the SQLite
    /// file is gone, replaced or read-only, or does not answer), `Unreachable` when
    /// PostgreSQL does not answer (the snapshot keeps serving; writes answer 503).
    pub async fn store_state(&self) -> StoreState {
        if let Some((path, opened)) = &self.sqlite_file {
            let now = file_identity(path);
            if now.is_none() {
                return StoreState::Lost(format!("the SQLite file {} is gone", path.display()));
            }
            if now != *opened {
                return StoreState::Lost(format!(
                    "the SQLite file {} was replaced after it was opened",
                    path.display()
                ));
            }
            if std::fs::metadata(path).is_ok_and(|m| m.permissions().readonly()) {
                return StoreState::Lost(format!("the SQLite file {} is read-only", path.display()));
            }
        }
        let answer = tokio::time::timeout(READY_WAIT, self.store.generation()).await;
        let reason = match answer {
            Ok(Ok(_)) => return StoreState::Ok,
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {} ms", READY_WAIT.as_millis()),
        };
        match self.store.postgres() {
            None => StoreState::Lost(reason),
            Some(_) => StoreState::Unreachable(reason),
        }
    }

    /// The engine of the current snapshot (a request that also picks a version should take
    /// both from one [`Registry::snapshot`]).
    pub fn engine(&self) -> Arc<Engine> {
        self.snapshot.load().engine.clone()
    }

    /// Versions validated and compiled by reloads so far.
    pub fn compiled_versions(&self) -> u64 {
        self.compiled.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Device calls per live version over the last minute.
    pub fn calls(&self) -> &canary::Calls {
        &self.calls
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Rebuilds the snapshot from the store and swaps it in; with the schema taken from the
    /// registry, switches to the version published there first (checked as any reload).
    pub async fn reload(&self) -> Result<(), StoreError> {
        let _one = self.rebuild.lock().await;
        self.reload_locked().await
    }

    /// [`Registry::reload`] for a caller that holds `rebuild`.
    async fn reload_locked(&self) -> Result<(), StoreError> {
        // Bounded: a connection that stopped answering fails the reload, not hangs it (the
        // snapshot serves on); an unreachable store fails at once (no connection in time).
        let loaded = store::bounded_by(store::LOAD_ANSWER, self.store.load()).await?;
        if let Some((version, sha)) = self.schema.follows_registry(&loaded)
            && sha != self.snapshot().engine.hash()
        {
            let attempt = self.switch_to_stored(version).await;
            if attempt.result != schema::SchemaOutcome::Refused {
                return Ok(());
            }
            // Refused: the old schema keeps serving, with the registry's other changes.
            let loaded = self.store.load().await?;
            return self.rebuild_on(self.snapshot().engine.clone(), loaded).await;
        }
        self.rebuild_on(self.snapshot().engine.clone(), loaded).await
    }

    async fn rebuild_on(&self, engine: Arc<Engine>, loaded: store::Loaded) -> Result<(), StoreError> {
        let previous = self.snapshot();
        let (snapshot, _) = self.build(engine, loaded, &previous).await;
        tracing::debug!(generation = snapshot.generation, "registry snapshot loaded");
        self.calls.keep_only(&snapshot);
        self.snapshot.store(Arc::new(snapshot));
        Ok(())
    }

    /// A snapshot of `loaded` on `engine`, and every live version that does not compile on
    /// it (`client/endpoint@n: reason`). Versions live in `previous` on the same engine are
    /// carried over as they are (versions never change once published).
    async fn build(
        &self,
        engine: Arc<Engine>,
        loaded: store::Loaded,
        previous: &Snapshot,
    ) -> (Snapshot, Vec<String>) {
        let same_engine = Arc::ptr_eq(&previous.engine, &engine);
        let carried = |client: &str, endpoint: &str, n: i64| -> Option<LiveVersion> {
            if !same_engine {
                return None;
            }
            let live = previous.endpoints.get(&(client.to_owned(), endpoint.to_owned()))?;
            let canary = live.canary.as_ref().and_then(|(c, _)| c.as_ref().ok());
            [live.stable.as_ref().ok(), canary].into_iter().flatten().find(|v| v.version == n).cloned()
        };
        let mut by_key: HashMap<(String, String, i64), &model::VersionRecord> = HashMap::new();
        let mut documents = HashMap::new();
        for v in &loaded.versions {
            by_key.insert((v.client.clone(), v.endpoint.clone(), v.version), v);
            documents.insert(
                v.document_sha256.clone(),
                (Arc::<str>::from(v.document.as_str()), v.operation_name.clone()),
            );
        }
        let mut failures = Vec::new();
        let mut endpoints = HashMap::new();
        for (client, endpoint, rollout) in &loaded.rollouts {
            let live = |n: i64| {
                let record = by_key.get(&(client.clone(), endpoint.clone(), n)).copied();
                let engine = &engine;
                async move {
                    let Some(record) = record else {
                        return Err(format!("{client}/{endpoint} has no version {n}"));
                    };
                    if let Some(live) = carried(client, endpoint, n) {
                        return Ok(live);
                    }
                    self.compiled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let prepared = engine
                        .prepare(&record.document, record.operation_name.as_deref())
                        .await
                        .map_err(|e| {
                        format!(
                            "{client}/{endpoint}@{n} no longer validates against the schema: {}",
                            e.join("; ")
                        )
                    })?;
                    let script = record
                        .script
                        .as_deref()
                        .map(|src| crate::scripts::Script::new(format!("{client}/{endpoint}@{n}"), src));
                    // Compiled to bytecode once, here, in a worker; calls load it. A version
                    // that fails to compile now (it compiled at publish) still serves, its
                    // calls reporting the error.
                    if let (Some(script), Some(pool)) = (&script, engine.script_pool())
                        && let Err(e) = pool.check(script, None).await
                    {
                        tracing::warn!(endpoint = %format!("{client}/{endpoint}"), version = n, error = %e, "transform not compiled");
                    }
                    Ok(LiveVersion { version: n, prepared: Arc::new(prepared), script })
                }
            };
            let stable = live(rollout.stable).await;
            let canary = match rollout.canary {
                Some(c) if rollout.canary_percent > 0 => Some((live(c).await, rollout.canary_percent)),
                _ => None,
            };
            for e in [stable.as_ref().err(), canary.as_ref().and_then(|(c, _)| c.as_ref().err())]
                .into_iter()
                .flatten()
            {
                tracing::warn!(error = %e, "endpoint version cannot be served");
                failures.push(e.clone());
            }
            let guard = loaded.guards.get(&(client.clone(), endpoint.clone())).copied().unwrap_or_default();
            endpoints.insert((client.clone(), endpoint.clone()), LiveEndpoint { stable, canary, guard });
        }
        let snapshot = Snapshot {
            generation: loaded.generation,
            engine,
            clients: loaded.clients.into_iter().collect(),
            endpoints,
            documents,
        };
        (snapshot, failures)
    }

    /// After a change made here: reload now and tell the other instances.
    pub async fn changed(&self) -> Result<(), StoreError> {
        self.reload().await?;
        store::bounded(self.tell_others()).await
    }

    /// Runs a write whose check depends on the running schema (a publish, a rollout change)
    /// with `rebuild` held: the engine it is handed serves until the write is live, so no
    /// schema reload passes between the check and the swap (probe 2, M5). Reloads and tells
    /// the other instances after a write that changed something (`changed`). The write and the
    /// notification are each [`store::bounded`] in time, the reload's read by `LOAD_ANSWER`.
    pub async fn write_checked<T, E: From<StoreError>>(
        &self,
        write: impl AsyncFnOnce(&Arc<Engine>) -> Result<(T, bool), E>,
    ) -> Result<T, E> {
        let (out, changed) = {
            let _one = self.rebuild.lock().await;
            // Bounded: with the store unreachable the write fails (503) within seconds.
            let (out, changed) = store::bounded(write(&self.engine())).await?;
            if changed {
                self.reload_locked().await?;
            }
            (out, changed)
        };
        if changed {
            store::bounded(self.tell_others()).await?;
        }
        Ok(out)
    }

    /// Whether version `n` of an endpoint can serve on `engine`: `Invalid` if it does not
    /// exist, `Conflict` with the reasons if its document does not validate. A version live
    /// on the same engine passes without being compiled again.
    pub async fn check_serves(
        &self,
        engine: &Arc<Engine>,
        client: &str,
        endpoint: &str,
        n: i64,
    ) -> Result<(), StoreError> {
        let snapshot = self.snapshot();
        let live = snapshot.endpoints.get(&(client.to_owned(), endpoint.to_owned()));
        let served = live.is_some_and(|l| {
            let canary = l.canary.as_ref().and_then(|(c, _)| c.as_ref().ok());
            [l.stable.as_ref().ok(), canary].into_iter().flatten().any(|v| v.version == n)
        });
        if served && Arc::ptr_eq(&snapshot.engine, engine) {
            return Ok(());
        }
        let versions = self.store.versions(client, endpoint).await?;
        let Some(record) = versions.iter().find(|v| v.version == n) else {
            return Err(StoreError::Invalid(format!("{client}/{endpoint} has no version {n}")));
        };
        match engine.prepare(&record.document, record.operation_name.as_deref()).await {
            Ok(_) => Ok(()),
            Err(e) => Err(StoreError::Conflict(format!(
                "{client}/{endpoint}: refused: version {n} does not validate against the running schema: {}",
                e.join("; ")
            ))),
        }
    }

    /// Refuses (`Conflict`) a new version of `client/endpoint` of `chars` characters that
    /// would take the client's team past its quotas.
    pub async fn check_quota(&self, client: &str, endpoint: &str, chars: u64) -> Result<(), StoreError> {
        let Some(team) = self.snapshot().client_team(client).map(str::to_owned) else {
            return Ok(()); // An unknown client is the store's to refuse.
        };
        let usage = self.store.team_usage(&team, client, endpoint).await?;
        let q = self.quotas;
        if !usage.endpoint_exists && usage.endpoints >= q.endpoints_per_team {
            return Err(StoreError::Conflict(format!(
                "{client}/{endpoint}: team {team} has {} endpoints, its quota ([limits] max_endpoints_per_team)",
                usage.endpoints
            )));
        }
        if usage.chars.saturating_add(chars) > q.stored_chars_per_team {
            return Err(StoreError::Conflict(format!(
                "{client}/{endpoint}: team {team} stores {} characters of documents and scripts; {chars} more would pass its quota of {} ([limits] max_stored_chars_per_team)",
                usage.chars, q.stored_chars_per_team
            )));
        }
        Ok(())
    }

    /// Tells the other instances (PostgreSQL) that the registry changed.
    async fn tell_others(&self) -> Result<(), StoreError> {
        if let Some(p) = self.store.postgres() {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(self.snapshot().generation.to_string())
                .execute(p)
                .await?;
        }
        Ok(())
    }

    /// Keeps this instance's snapshot current with changes made elsewhere: LISTEN/NOTIFY on
    /// PostgreSQL, and on every store a poll of the generation every `poll` as a safety net.
    /// Stops when the registry is dropped.
    pub fn watch(self: &Arc<Self>, poll: Duration) {
        let weak = Arc::downgrade(self);
        let listener_pool = self.store.postgres().cloned();
        tokio::spawn(async move {
            let mut listener = match listener_pool {
                Some(pool) => match sqlx::postgres::PgListener::connect_with(&pool).await {
                    Ok(mut l) => match l.listen(CHANNEL).await {
                        Ok(()) => Some(l),
                        Err(e) => {
                            tracing::warn!(error = %e, "registry LISTEN failed; polling only");
                            None
                        }
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "registry listener could not connect; polling only");
                        None
                    }
                },
                None => None,
            };
            let mut tick = tokio::time::interval(poll);
            tick.tick().await;
            loop {
                let notified = async {
                    match listener.as_mut() {
                        Some(l) => l.recv().await.is_ok(),
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = tick.tick() => {}
                    ok = notified => if !ok { tracing::warn!("registry notification stream failed"); }
                }
                let Some(registry) = weak.upgrade() else { return };
                let current = registry.snapshot().generation;
                match store::bounded(registry.store.generation()).await {
                    Ok(g) if g != current => {
                        if let Err(e) = registry.reload().await {
                            tracing::warn!(error = %e, "registry reload failed");
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "registry poll failed"),
                }
            }
        });
    }

    /// Names parsed at the edge.
    pub fn parse_names(client: &str, endpoint: &str) -> Result<(ClientName, EndpointName), String> {
        Ok((ClientName::parse(client)?, EndpointName::parse(endpoint)?))
    }

    pub async fn rollout(&self, client: &str, endpoint: &str) -> Result<Option<Rollout>, StoreError> {
        self.store.rollout(client, endpoint).await
    }

    /// Changes a rollout (and its canary guard, when given) in one store transaction and
    /// makes it live. Every version the rollout would serve is checked on the running schema
    /// first: a rollout, promote or rollback to one that no longer validates is refused with
    /// the reason, and nothing is stored (probe 2, M5 and L2).
    pub async fn change_rollout(&self, change: RolloutWrite<'_>) -> Result<Rollout, StoreError> {
        let RolloutWrite { client, endpoint, actor, action, reason, guard, apply } = change;
        let target = format!("{client}/{endpoint}");
        self.write_checked(async |engine: &Arc<Engine>| {
            let current = self
                .store
                .rollout(client, endpoint)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("unknown endpoint {target}")))?;
            let next = apply(current)?;
            let serves = |r: &Rollout| [Some(r.stable), r.canary.filter(|_| r.canary_percent > 0)];
            let checked = serves(&next);
            for n in checked.into_iter().flatten() {
                self.check_serves(engine, client, endpoint, n).await?;
            }
            let write = store::RolloutUpdate { figures: None, guard };
            let next = self
                .store
                .update_rollout_with(client, endpoint, actor, action, reason, write, &|cur: Rollout| {
                    let next = apply(cur)?;
                    // Another instance changed the rollout since the check: checked again.
                    if serves(&next).into_iter().flatten().any(|n| !checked.contains(&Some(n))) {
                        return Err(StoreError::Conflict(format!(
                            "{target} changed while the change was checked; try again"
                        )));
                    }
                    Ok(next)
                })
                .await?;
            Ok((next, true))
        })
        .await
    }
}

/// A rollout change for [`Registry::change_rollout`].
pub struct RolloutWrite<'a> {
    pub client: &'a str,
    pub endpoint: &'a str,
    pub actor: &'a str,
    /// The audit entry's action (`rollout.set`, `rollout.promote`, …).
    pub action: &'a str,
    pub reason: Option<&'a str>,
    /// The canary guard to store with the change (JSON), checked by the caller.
    pub guard: Option<&'a str>,
    /// The change, applied to the rollout as it is in the store.
    pub apply: &'a (dyn Fn(Rollout) -> Result<Rollout, StoreError> + Sync),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_stable_and_spread() {
        // Pinned: an upgrade that changed the hash would move devices between canary sides.
        let pinned: Vec<u64> =
            [("tv", "d-1"), ("tv", "d-2"), ("tv", "living-room-tv"), ("tv", ""), ("ios", "d-1")]
                .iter()
                .map(|(client, device)| device_bucket(client, "home", device))
                .collect();
        assert_eq!(pinned, [75, 77, 11, 9, 71], "the bucket of known device IDs moved");
        let under_10 =
            (0..10_000).filter(|i| device_bucket("tv", "home", &format!("device-{i}")) < 10).count();
        assert!((900..=1100).contains(&under_10), "{under_10}");
    }
}
