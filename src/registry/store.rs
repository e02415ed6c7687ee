//! The registry in SQL through sqlx: SQLite (a file, the default) or PostgreSQL (several
//! instances). Each transaction is written once, generic over the database (`Sql<D>` for any
//! [`Dialect`]: what differs is how a write begins, which reads lock their row, and the
//! migrations), with its SQL in constants using `$N` placeholders, which both accept; a
//! [`Store`] holds one behind [`Transactions`]. Not `AnyPool`, which fails at runtime on
//! several types (DEPENDENCIES.md).

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::Value;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{
    ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, PgPool, Pool, Postgres, Row, Sqlite,
    Transaction, Type,
};

use super::model::{AuditEntry, Principal, Rollout, TokenRecord, VersionRecord};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The store did not answer in time ([`bounded`]).
    #[error("{0}")]
    Unavailable(String),
}

impl StoreError {
    /// Whether the store could not be reached (no connection in time, the network, a
    /// timeout), as opposed to a refused or failed statement: worth a retry later.
    pub fn unavailable(&self) -> bool {
        match self {
            StoreError::Unavailable(_) => true,
            StoreError::Db(e) => matches!(
                e,
                sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::Io(_)
                    | sqlx::Error::Tls(_)
            ),
            _ => false,
        }
    }
}

/// How long a caller waits for a connection from the pool (PostgreSQL): when the database is
/// unreachable, every store call fails within this instead of hanging.
pub const STORE_WAIT: Duration = Duration::from_millis(1500);

/// How long a bounded store operation may take in all ([`bounded`]).
pub const STORE_ANSWER: Duration = Duration::from_millis(STORE_WAIT.as_millis() as u64 + 500);

/// A store operation bounded in time: a statement stuck on a connection that stopped
/// answering (the network cut mid-query) fails with `Unavailable` after [`STORE_ANSWER`];
/// the operation's transaction, dropped, is rolled back.
pub async fn bounded<T, E: From<StoreError>>(op: impl Future<Output = Result<T, E>>) -> Result<T, E> {
    bounded_by(STORE_ANSWER, op).await
}

/// How long reading the whole registry may take (a snapshot's load: every client, rollout and
/// live version's document; large registries take a while, a hung connection never ends).
pub const LOAD_ANSWER: Duration = Duration::from_secs(30);

/// [`bounded`] with a limit of its own.
pub async fn bounded_by<T, E: From<StoreError>>(
    limit: Duration,
    op: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    tokio::time::timeout(limit, op).await.unwrap_or_else(|_| {
        Err(StoreError::Unavailable(format!(
            "the registry store did not answer within {} ms",
            limit.as_millis()
        ))
        .into())
    })
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// What a publish stores.
pub struct NewVersion<'a> {
    pub client: &'a str,
    pub endpoint: &'a str,
    pub document: &'a str,
    pub operation_name: Option<&'a str>,
    pub script: Option<&'a str>,
    pub sha256: &'a str,
    pub document_sha256: &'a str,
    pub author: &'a str,
    pub reason: Option<&'a str>,
    /// The sample variables as a JSON object's text, kept with the version.
    pub sample_variables: Option<&'a str>,
}

/// Everything the in-memory snapshot is built from.
/// What one team's clients hold ([`Store::team_usage`]).
pub struct TeamUsage {
    pub endpoints: u64,
    pub chars: u64,
    pub endpoint_exists: bool,
}

/// What [`Store::update_rollout_with`] writes besides the rollout itself.
#[derive(Default)]
pub struct RolloutUpdate<'a> {
    /// Added to the audit entry's detail (an automatic rollback's window figures).
    pub figures: Option<&'a Value>,
    /// The canary guard (JSON) to store with the change.
    pub guard: Option<&'a str>,
}

pub struct Loaded {
    pub generation: i64,
    pub clients: Vec<(String, String)>,
    pub versions: Vec<VersionRecord>,
    pub rollouts: Vec<(String, String, Rollout)>,
    /// The schema version instances should run, when one was published: (version, SHA-256).
    pub schema: Option<(i64, String)>,
    /// Canary guard settings of the rollouts that set any.
    pub guards: std::collections::HashMap<(String, String), super::model::CanaryGuard>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SchemaFileRow {
    name: String,
    text: String,
}

/// A stored schema version.
#[derive(Debug, Clone)]
pub struct StoredSchema {
    pub version: i64,
    pub sha256: String,
    /// (file name, SDL text), by name.
    pub files: Vec<(String, String)>,
    pub author: String,
    pub reason: Option<String>,
    pub created_ms: i64,
}

// ---- The SQL, written once: `$N` placeholders, which SQLite and PostgreSQL both accept. ----

const SELECT_GENERATION: &str = "SELECT generation FROM registry_generation WHERE id = 1";
const BUMP_GENERATION: &str = "UPDATE registry_generation SET generation = generation + 1 WHERE id = 1";
const INSERT_AUDIT: &str =
    "INSERT INTO audit (at_ms, actor, action, target, detail, reason) VALUES ($1, $2, $3, $4, $5, $6)";
const SELECT_PRINCIPAL: &str = "SELECT id, kind, team, label, last_used_ms FROM tokens \
     WHERE sha256 = $1 AND revoked_ms IS NULL AND (expires_ms IS NULL OR expires_ms > $2)";
const TOUCH_TOKEN: &str = "UPDATE tokens SET last_used_ms = $2 WHERE id = $1";
const SELECT_TOKENS: &str = "SELECT id, kind, team, label, created_ms, last_used_ms, expires_ms, revoked_ms \
     FROM tokens WHERE $1 = '' OR team = $1 ORDER BY id DESC";
const SELECT_TOKEN: &str = "SELECT label, team, revoked_ms FROM tokens WHERE id = $1";
const REVOKE_TOKEN: &str = "UPDATE tokens SET revoked_ms = $2 WHERE id = $1";
const INSERT_TOKEN: &str = "INSERT INTO tokens (sha256, kind, team, label, created_ms, expires_ms) \
     VALUES ($1, $2, $3, $4, $5, $6) RETURNING id";
const SELECT_CLIENTS: &str = "SELECT name, team FROM clients";
const SELECT_CLIENT_TEAM: &str = "SELECT team FROM clients WHERE name = $1";
/// Returns the name when the client is new (nothing on a conflict).
const INSERT_CLIENT: &str = "INSERT INTO clients (name, team, created_ms) VALUES ($1, $2, $3) \
     ON CONFLICT (name) DO NOTHING RETURNING name";
/// Only the versions devices can be served: each rollout's stable and live canary.
const SELECT_SERVED_VERSIONS: &str = "SELECT client, endpoint, version, document, operation_name, script, sha256, \
     document_sha256, author, created_ms, sample_variables FROM versions WHERE EXISTS (SELECT 1 FROM rollouts r \
     WHERE r.client = versions.client AND r.endpoint = versions.endpoint AND (versions.version = r.stable \
     OR (versions.version = r.canary AND r.canary_percent > 0))) ORDER BY client, endpoint, version";
const SELECT_ALL_VERSIONS: &str = "SELECT client, endpoint, version, document, operation_name, script, sha256, \
     document_sha256, author, created_ms, sample_variables FROM versions ORDER BY client, endpoint, version";
const SELECT_VERSIONS: &str = "SELECT client, endpoint, version, document, operation_name, script, sha256, \
     document_sha256, author, created_ms, sample_variables FROM versions \
     WHERE client = $1 AND endpoint = $2 ORDER BY version";
const INSERT_VERSION: &str = "INSERT INTO versions (client, endpoint, version, document, operation_name, script, \
     sha256, document_sha256, author, created_ms, sample_variables) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
const SELECT_VERSION_BY_SHA: &str =
    "SELECT version FROM versions WHERE client = $1 AND endpoint = $2 AND sha256 = $3";
const SELECT_VERSION: &str =
    "SELECT version FROM versions WHERE client = $1 AND endpoint = $2 AND version = $3";
const INSERT_ENDPOINT: &str = "INSERT INTO endpoints (client, name, next_version, created_ms) \
     VALUES ($1, $2, 1, $3) ON CONFLICT (client, name) DO NOTHING";
const TAKE_VERSION_NUMBER: &str = "UPDATE endpoints SET next_version = next_version + 1 \
     WHERE client = $1 AND name = $2 RETURNING next_version - 1 AS version";
const INSERT_FIRST_ROLLOUT: &str = "INSERT INTO rollouts (client, endpoint, stable, canary, canary_percent, \
     previous_stable, updated_ms) VALUES ($1, $2, 1, NULL, 0, NULL, $3)";
const SELECT_ROLLOUTS_ALL: &str =
    "SELECT client, endpoint, stable, canary, canary_percent, previous_stable FROM rollouts";
const SELECT_ROLLOUTS: &str = "SELECT endpoint, stable, canary, canary_percent, previous_stable FROM rollouts \
     WHERE client = $1 ORDER BY endpoint";
const SELECT_ROLLOUT: &str = "SELECT stable, canary, canary_percent, previous_stable FROM rollouts WHERE client = $1 AND endpoint = $2";
const UPDATE_ROLLOUT: &str = "UPDATE rollouts SET stable = $3, canary = $4, canary_percent = $5, \
     previous_stable = $6, updated_ms = $7 WHERE client = $1 AND endpoint = $2";
const UPDATE_GUARD: &str = "UPDATE rollouts SET guard = $3 WHERE client = $1 AND endpoint = $2";
const SELECT_GUARDS: &str = "SELECT client, endpoint, guard FROM rollouts WHERE guard IS NOT NULL";
const SELECT_ACTIVE_SCHEMA: &str =
    "SELECT a.version, s.sha256 FROM schema_active a JOIN schemas s ON s.version = a.version WHERE a.id = 1";
const SELECT_SCHEMA: &str = "SELECT version, sha256, files, author, reason, created_ms FROM schemas \
     WHERE version = COALESCE($1, (SELECT version FROM schema_active WHERE id = 1))";
const SELECT_SCHEMA_BY_SHA: &str = "SELECT version FROM schemas WHERE sha256 = $1";
const NEXT_SCHEMA_VERSION: &str = "SELECT COALESCE(MAX(version), 0) + 1 AS n FROM schemas";
const INSERT_SCHEMA: &str = "INSERT INTO schemas (version, sha256, files, author, reason, created_ms) \
     VALUES ($1, $2, $3, $4, $5, $6)";
const ACTIVATE_SCHEMA: &str = "INSERT INTO schema_active (id, version, updated_ms) VALUES (1, $1, $2) \
     ON CONFLICT (id) DO UPDATE SET version = $1, updated_ms = $2";
const COUNT_TEAM_ENDPOINTS: &str =
    "SELECT COUNT(*) AS n FROM endpoints e JOIN clients c ON c.name = e.client WHERE c.team = $1";
const SUM_TEAM_CHARS: &str = "SELECT CAST(COALESCE(SUM(LENGTH(v.document) + COALESCE(LENGTH(v.script), 0)), 0) \
     AS BIGINT) AS n FROM versions v JOIN clients c ON c.name = v.client WHERE c.team = $1";
const COUNT_ENDPOINT: &str = "SELECT COUNT(*) AS n FROM endpoints WHERE client = $1 AND name = $2";
const SELECT_AUDIT_OF_CLIENT: &str = "SELECT id, at_ms, actor, action, target, detail, reason FROM audit \
     WHERE target = $1 OR target LIKE $2 ESCAPE '\\' ORDER BY id DESC LIMIT $3";
const SELECT_AUDIT: &str = "SELECT id, at_ms, actor, action, target, detail, reason FROM audit \
     WHERE $1 = $1 AND $2 = $2 ORDER BY id DESC LIMIT $3";

/// What differs between the two databases: how a write transaction begins, which reads lock
/// the row they read, and the migrations.
pub trait Dialect: Database {
    /// `BEGIN IMMEDIATE` on SQLite, so concurrent writers queue on the busy timeout instead of
    /// failing on a lock upgrade.
    const BEGIN_WRITE: &'static str;
    /// Serializes publishes of one endpoint (a row lock on PostgreSQL; SQLite's write
    /// transaction already does), so numbers have no gaps and duplicates are seen.
    const LOCK_ENDPOINT: &'static str;
    /// A rollout read to be changed in the same transaction, locked where rows lock.
    const LOCK_ROLLOUT: &'static str;
    fn migrate(pool: &Pool<Self>) -> BoxFuture<'_, Result<(), sqlx::migrate::MigrateError>>;
}

impl Dialect for Sqlite {
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    const LOCK_ENDPOINT: &'static str = "SELECT next_version FROM endpoints WHERE client = $1 AND name = $2";
    const LOCK_ROLLOUT: &'static str = SELECT_ROLLOUT;
    fn migrate(pool: &Pool<Self>) -> BoxFuture<'_, Result<(), sqlx::migrate::MigrateError>> {
        Box::pin(async move {
            let mut m = sqlx::migrate!("migrations/sqlite");
            m.set_ignore_missing(true);
            m.run(pool).await
        })
    }
}

impl Dialect for Postgres {
    const BEGIN_WRITE: &'static str = "BEGIN";
    const LOCK_ENDPOINT: &'static str =
        "SELECT next_version FROM endpoints WHERE client = $1 AND name = $2 FOR UPDATE";
    const LOCK_ROLLOUT: &'static str = "SELECT stable, canary, canary_percent, previous_stable FROM rollouts \
         WHERE client = $1 AND endpoint = $2 FOR UPDATE";
    fn migrate(pool: &Pool<Self>) -> BoxFuture<'_, Result<(), sqlx::migrate::MigrateError>> {
        Box::pin(async move {
            let mut m = sqlx::migrate!("migrations/postgres");
            m.set_ignore_missing(true);
            m.run(pool).await
        })
    }
}

/// A rollout change: the current rollout in, the new one out (or why not).
pub type RolloutChangeFn<'a> = &'a (dyn Fn(Rollout) -> Result<Rollout, StoreError> + Send + Sync);

/// The registry's transactions, each written once ([`Sql`] implements them for both
/// databases). Migrations applied by a newer binary are tolerated, so an older instance keeps
/// running during a rolling deploy.
pub trait Transactions: Send + Sync {
    fn migrate(&self) -> BoxFuture<'_, Result<(), StoreError>>;
    fn generation(&self) -> BoxFuture<'_, Result<i64, StoreError>>;
    /// Who a token (by its hash) belongs to, if it is neither revoked nor expired. Records
    /// when it was last used, at most once a minute per token.
    fn principal<'a>(&'a self, token_sha256: &'a str)
    -> BoxFuture<'a, Result<Option<Principal>, StoreError>>;
    /// Every stored token (admins), or one team's; newest first.
    fn tokens<'a>(&'a self, team: Option<&'a str>) -> BoxFuture<'a, Result<Vec<TokenRecord>, StoreError>>;
    /// Revokes a token at once; `team` limits it to that team's tokens. Audited.
    fn revoke_token<'a>(
        &'a self,
        id: i64,
        team: Option<&'a str>,
        actor: &'a str,
        reason: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Everything the in-memory snapshot is built from.
    fn load(&self) -> BoxFuture<'_, Result<Loaded, StoreError>>;
    /// One stored schema version, or the active one with `None`.
    fn schema(&self, version: Option<i64>) -> BoxFuture<'_, Result<Option<StoredSchema>, StoreError>>;
    /// Stores a schema version (or finds the one with the same SHA-256) and makes it the one
    /// every instance runs; audited, and the generation is bumped so instances switch.
    /// Returns the version and whether it was new.
    fn publish_schema<'a>(
        &'a self,
        files: &'a [(String, String)],
        sha256: &'a str,
        actor: &'a str,
        reason: Option<&'a str>,
        detail: &'a Value,
    ) -> BoxFuture<'a, Result<(i64, bool), StoreError>>;
    /// Appends one entry to the audit log on its own (a change not kept in the registry,
    /// such as a schema reloaded from files).
    fn record<'a>(
        &'a self,
        actor: &'a str,
        action: &'a str,
        target: &'a str,
        detail: &'a Value,
        reason: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Every stored version, served or not (`facade schema check --against-registry`).
    fn all_versions(&self) -> BoxFuture<'_, Result<Vec<VersionRecord>, StoreError>>;
    fn client_team<'a>(&'a self, client: &'a str) -> BoxFuture<'a, Result<Option<String>, StoreError>>;
    fn create_client<'a>(
        &'a self,
        name: &'a str,
        team: &'a str,
        actor: &'a str,
        reason: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Stores a token's hash; `team` is `None` for an admin token; `expires_ms` (Unix ms)
    /// ends it without a revoke. Returns the token's id.
    fn create_token<'a>(
        &'a self,
        sha256: &'a str,
        team: Option<&'a str>,
        label: &'a str,
        expires_ms: Option<i64>,
        actor: &'a str,
    ) -> BoxFuture<'a, Result<i64, StoreError>>;
    /// Stores a new version, or returns the existing one with identical content. The first
    /// version of an endpoint becomes its stable version.
    fn publish<'a>(&'a self, v: &'a NewVersion<'a>) -> BoxFuture<'a, Result<(i64, bool), StoreError>>;
    /// What a team's clients hold: endpoints, characters of stored documents and scripts, and
    /// whether `client/endpoint` is one of the endpoints already.
    fn team_usage<'a>(
        &'a self,
        team: &'a str,
        client: &'a str,
        endpoint: &'a str,
    ) -> BoxFuture<'a, Result<TeamUsage, StoreError>>;
    fn versions<'a>(
        &'a self,
        client: &'a str,
        endpoint: &'a str,
    ) -> BoxFuture<'a, Result<Vec<VersionRecord>, StoreError>>;
    /// The rollouts of one client's endpoints, by endpoint name.
    fn rollouts<'a>(&'a self, client: &'a str) -> BoxFuture<'a, Result<Vec<(String, Rollout)>, StoreError>>;
    fn rollout<'a>(
        &'a self,
        client: &'a str,
        endpoint: &'a str,
    ) -> BoxFuture<'a, Result<Option<Rollout>, StoreError>>;
    /// Changes a rollout with `change(current) -> new`, computed from the row as it is when
    /// locked (two instances changing one rollout at once apply one after the other), checking
    /// in the same transaction that every version it names exists; records `action` in the
    /// audit log, with `write`'s figures and the canary guard (stored with the change, or not
    /// at all).
    #[allow(clippy::too_many_arguments)]
    fn update_rollout_with<'a>(
        &'a self,
        client: &'a str,
        endpoint: &'a str,
        actor: &'a str,
        action: &'a str,
        reason: Option<&'a str>,
        write: RolloutUpdate<'a>,
        change: RolloutChangeFn<'a>,
    ) -> BoxFuture<'a, Result<Rollout, StoreError>>;
    /// [`Transactions::update_rollout_with`] writing nothing more than the change.
    fn update_rollout<'a>(
        &'a self,
        client: &'a str,
        endpoint: &'a str,
        actor: &'a str,
        action: &'a str,
        reason: Option<&'a str>,
        change: RolloutChangeFn<'a>,
    ) -> BoxFuture<'a, Result<Rollout, StoreError>> {
        self.update_rollout_with(client, endpoint, actor, action, reason, RolloutUpdate::default(), change)
    }
    /// The newest audit entries first, optionally only those about one client's endpoints.
    fn audit_log<'a>(
        &'a self,
        client: Option<&'a str>,
        limit: i64,
    ) -> BoxFuture<'a, Result<Vec<AuditEntry>, StoreError>>;
}

/// One database's pool; implements [`Transactions`] once for both databases.
pub struct Sql<D: Database> {
    pool: Pool<D>,
}

impl<D: Dialect> Sql<D>
where
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    for<'q> &'q str: Encode<'q, D> + Type<D>,
    for<'q> i64: Encode<'q, D> + Decode<'q, D> + Type<D>,
    for<'q> String: Decode<'q, D> + Type<D>,
    for<'q> Option<&'q str>: Encode<'q, D> + Type<D>,
    for<'q> Option<i64>: Encode<'q, D> + Decode<'q, D> + Type<D>,
    for<'q> Option<String>: Decode<'q, D> + Type<D>,
    for<'r> &'r str: ColumnIndex<D::Row>,
    D::Arguments: IntoArguments<D>,
{
    /// Appends to the audit log inside the open transaction. A reason is a short line: refused
    /// (and the transaction with it) when it is not.
    async fn audit(
        tx: &mut Transaction<'_, D>,
        at: i64,
        actor: &str,
        action: &str,
        target: &str,
        detail: &str,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        if let Some(reason) = reason {
            super::model::check_text("reason", reason, 1_000).map_err(StoreError::Invalid)?;
        }
        sqlx::query(INSERT_AUDIT)
            .bind(at)
            .bind(actor)
            .bind(action)
            .bind(target)
            .bind(detail)
            .bind(reason)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Bumps the registry generation inside the open transaction (instances reload on it).
    async fn bump(tx: &mut Transaction<'_, D>) -> Result<(), StoreError> {
        sqlx::query(BUMP_GENERATION).execute(&mut **tx).await?;
        Ok(())
    }

    async fn begin_write(&self) -> Result<Transaction<'_, D>, StoreError> {
        Ok(self.pool.begin_with(D::BEGIN_WRITE).await?)
    }

    fn version_of(row: &D::Row) -> Result<VersionRecord, sqlx::Error> {
        Ok(VersionRecord {
            client: row.try_get("client")?,
            endpoint: row.try_get("endpoint")?,
            version: row.try_get("version")?,
            document: row.try_get("document")?,
            operation_name: row.try_get("operation_name")?,
            script: row.try_get("script")?,
            sha256: row.try_get("sha256")?,
            document_sha256: row.try_get("document_sha256")?,
            author: row.try_get("author")?,
            created_ms: row.try_get("created_ms")?,
            sample_variables: row
                .try_get::<Option<String>, _>("sample_variables")?
                .and_then(|text| serde_json::from_str(&text).ok()),
        })
    }

    fn rollout_of(row: &D::Row) -> Result<Rollout, sqlx::Error> {
        Ok(Rollout {
            stable: row.try_get("stable")?,
            canary: row.try_get("canary")?,
            canary_percent: row.try_get("canary_percent")?,
            previous_stable: row.try_get("previous_stable")?,
        })
    }
}

impl<D: Dialect> Transactions for Sql<D>
where
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    for<'q> &'q str: Encode<'q, D> + Type<D>,
    for<'q> i64: Encode<'q, D> + Decode<'q, D> + Type<D>,
    for<'q> String: Decode<'q, D> + Type<D>,
    for<'q> Option<&'q str>: Encode<'q, D> + Type<D>,
    for<'q> Option<i64>: Encode<'q, D> + Decode<'q, D> + Type<D>,
    for<'q> Option<String>: Decode<'q, D> + Type<D>,
    for<'r> &'r str: ColumnIndex<D::Row>,
    D::Arguments: IntoArguments<D>,
{
    fn migrate(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move { Ok(D::migrate(&self.pool).await?) })
    }

    fn generation(&self) -> BoxFuture<'_, Result<i64, StoreError>> {
        Box::pin(async move {
            let mut conn = self.pool.acquire().await?;
            Ok(sqlx::query(SELECT_GENERATION).fetch_one(&mut *conn).await?.try_get("generation")?)
        })
    }

    fn principal<'a>(
        &'a self,
        token_sha256: &'a str,
    ) -> BoxFuture<'a, Result<Option<Principal>, StoreError>> {
        Box::pin(async move {
            let now = now_ms();
            let mut conn = self.pool.acquire().await?;
            let row =
                sqlx::query(SELECT_PRINCIPAL).bind(token_sha256).bind(now).fetch_optional(&mut *conn).await?;
            let Some(r) = row else { return Ok(None) };
            let (id, kind, team, label, last_used): (i64, String, Option<String>, String, Option<i64>) = (
                r.try_get("id")?,
                r.try_get("kind")?,
                r.try_get("team")?,
                r.try_get("label")?,
                r.try_get("last_used_ms")?,
            );
            if last_used.is_none_or(|t| now - t > 60_000) {
                sqlx::query(TOUCH_TOKEN).bind(id).bind(now).execute(&mut *conn).await?;
            }
            Ok(match (kind.as_str(), team) {
                ("admin", _) => Some(Principal::Admin { label }),
                (_, Some(team)) => Some(Principal::Team { team, label }),
                _ => None,
            })
        })
    }

    fn tokens<'a>(&'a self, team: Option<&'a str>) -> BoxFuture<'a, Result<Vec<TokenRecord>, StoreError>> {
        Box::pin(async move {
            let mut conn = self.pool.acquire().await?;
            let rows = sqlx::query(SELECT_TOKENS).bind(team.unwrap_or("")).fetch_all(&mut *conn).await?;
            let tokens = rows
                .iter()
                .map(|r| {
                    Ok(TokenRecord {
                        id: r.try_get("id")?,
                        kind: r.try_get("kind")?,
                        team: r.try_get("team")?,
                        label: r.try_get("label")?,
                        created_ms: r.try_get("created_ms")?,
                        last_used_ms: r.try_get("last_used_ms")?,
                        expires_ms: r.try_get("expires_ms")?,
                        revoked_ms: r.try_get("revoked_ms")?,
                    })
                })
                .collect::<Result<_, sqlx::Error>>()?;
            Ok(tokens)
        })
    }

    fn revoke_token<'a>(
        &'a self,
        id: i64,
        team: Option<&'a str>,
        actor: &'a str,
        reason: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let now = now_ms();
            let mut tx = self.begin_write().await?;
            let row = sqlx::query(SELECT_TOKEN).bind(id).fetch_optional(&mut *tx).await?;
            let Some(row) = row else { return Err(StoreError::NotFound(format!("unknown token {id}"))) };
            let (label, owner): (String, Option<String>) = (row.try_get("label")?, row.try_get("team")?);
            if team.is_some() && owner.as_deref() != team {
                return Err(StoreError::NotFound(format!("unknown token {id}")));
            }
            if row.try_get::<Option<i64>, _>("revoked_ms")?.is_some() {
                return Err(StoreError::Conflict(format!("token {id} ({label}) is already revoked")));
            }
            sqlx::query(REVOKE_TOKEN).bind(id).bind(now).execute(&mut *tx).await?;
            let detail = serde_json::json!({ "id": id, "team": owner, "label": label }).to_string();
            Self::audit(&mut tx, now, actor, "token.revoke", &label, &detail, reason).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn load(&self) -> BoxFuture<'_, Result<Loaded, StoreError>> {
        Box::pin(async move {
            let generation = self.generation().await?;
            let mut conn = self.pool.acquire().await?;
            let clients = sqlx::query(SELECT_CLIENTS)
                .fetch_all(&mut *conn)
                .await?
                .iter()
                .map(|r| Ok((r.try_get("name")?, r.try_get("team")?)))
                .collect::<Result<_, sqlx::Error>>()?;
            let versions = sqlx::query(SELECT_SERVED_VERSIONS)
                .fetch_all(&mut *conn)
                .await?
                .iter()
                .map(Self::version_of)
                .collect::<Result<_, _>>()?;
            let rollouts = sqlx::query(SELECT_ROLLOUTS_ALL)
                .fetch_all(&mut *conn)
                .await?
                .iter()
                .map(|r| Ok((r.try_get("client")?, r.try_get("endpoint")?, Self::rollout_of(r)?)))
                .collect::<Result<_, sqlx::Error>>()?;
            let schema = sqlx::query(SELECT_ACTIVE_SCHEMA)
                .fetch_optional(&mut *conn)
                .await?
                .map(|r| Ok::<_, sqlx::Error>((r.try_get("version")?, r.try_get("sha256")?)))
                .transpose()?;
            let mut guards = std::collections::HashMap::new();
            for r in sqlx::query(SELECT_GUARDS).fetch_all(&mut *conn).await? {
                let (client, endpoint): (String, String) = (r.try_get("client")?, r.try_get("endpoint")?);
                match serde_json::from_str(&r.try_get::<String, _>("guard")?) {
                    Ok(g) => {
                        guards.insert((client, endpoint), g);
                    }
                    Err(e) => tracing::warn!(
                        endpoint = %format!("{client}/{endpoint}"),
                        error = %e,
                        "unreadable canary guard; using the defaults"
                    ),
                }
            }
            Ok(Loaded { generation, clients, versions, rollouts, schema, guards })
        })
    }

    fn schema(&self, version: Option<i64>) -> BoxFuture<'_, Result<Option<StoredSchema>, StoreError>> {
        Box::pin(async move {
            let mut conn = self.pool.acquire().await?;
            let Some(r) = sqlx::query(SELECT_SCHEMA).bind(version).fetch_optional(&mut *conn).await? else {
                return Ok(None);
            };
            let version: i64 = r.try_get("version")?;
            let files: Vec<SchemaFileRow> =
                serde_json::from_str(&r.try_get::<String, _>("files")?).map_err(|e| {
                    StoreError::Invalid(format!("schema version {version} has unreadable files: {e}"))
                })?;
            Ok(Some(StoredSchema {
                version,
                sha256: r.try_get("sha256")?,
                files: files.into_iter().map(|f| (f.name, f.text)).collect(),
                author: r.try_get("author")?,
                reason: r.try_get("reason")?,
                created_ms: r.try_get("created_ms")?,
            }))
        })
    }

    fn publish_schema<'a>(
        &'a self,
        files: &'a [(String, String)],
        sha256: &'a str,
        actor: &'a str,
        reason: Option<&'a str>,
        detail: &'a Value,
    ) -> BoxFuture<'a, Result<(i64, bool), StoreError>> {
        Box::pin(async move {
            let now = now_ms();
            let rows: Vec<SchemaFileRow> = files
                .iter()
                .map(|(name, text)| SchemaFileRow { name: name.clone(), text: text.clone() })
                .collect();
            let json = serde_json::to_string(&rows).map_err(|e| StoreError::Invalid(e.to_string()))?;
            let mut tx = self.begin_write().await?;
            let existing = sqlx::query(SELECT_SCHEMA_BY_SHA).bind(sha256).fetch_optional(&mut *tx).await?;
            let (version, created) = match existing {
                Some(r) => (r.try_get("version")?, false),
                None => {
                    let n: i64 = sqlx::query(NEXT_SCHEMA_VERSION).fetch_one(&mut *tx).await?.try_get("n")?;
                    sqlx::query(INSERT_SCHEMA)
                        .bind(n)
                        .bind(sha256)
                        .bind(json.as_str())
                        .bind(actor)
                        .bind(reason)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    (n, true)
                }
            };
            sqlx::query(ACTIVATE_SCHEMA).bind(version).bind(now).execute(&mut *tx).await?;
            let mut detail = detail.clone();
            detail["version"] = Value::from(version);
            Self::audit(&mut tx, now, actor, "schema.publish", "schema", &detail.to_string(), reason).await?;
            Self::bump(&mut tx).await?;
            tx.commit().await?;
            Ok((version, created))
        })
    }

    fn record<'a>(
        &'a self,
        actor: &'a str,
        action: &'a str,
        target: &'a str,
        detail: &'a Value,
        reason: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            Self::audit(&mut tx, now_ms(), actor, action, target, &detail.to_string(), reason).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn all_versions(&self) -> BoxFuture<'_, Result<Vec<VersionRecord>, StoreError>> {
        Box::pin(async move {
            let mut conn = self.pool.acquire().await?;
            let rows = sqlx::query(SELECT_ALL_VERSIONS).fetch_all(&mut *conn).await?;
            Ok(rows.iter().map(Self::version_of).collect::<Result<_, _>>()?)
        })
    }

    fn client_team<'a>(&'a self, client: &'a str) -> BoxFuture<'a, Result<Option<String>, StoreError>> {
        Box::pin(async move {
            let mut conn = self.pool.acquire().await?;
            let row = sqlx::query(SELECT_CLIENT_TEAM).bind(client).fetch_optional(&mut *conn).await?;
            Ok(row.map(|r| r.try_get("team")).transpose()?)
        })
    }

    fn create_client<'a>(
        &'a self,
        name: &'a str,
        team: &'a str,
        actor: &'a str,
        reason: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let now = now_ms();
            let detail = serde_json::json!({ "team": team }).to_string();
            let mut tx = self.begin_write().await?;
            let inserted =
                sqlx::query(INSERT_CLIENT).bind(name).bind(team).bind(now).fetch_optional(&mut *tx).await?;
            if inserted.is_none() {
                return Err(StoreError::Conflict(format!("client {name} already exists")));
            }
            Self::audit(&mut tx, now, actor, "client.create", name, &detail, reason).await?;
            Self::bump(&mut tx).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn create_token<'a>(
        &'a self,
        sha256: &'a str,
        team: Option<&'a str>,
        label: &'a str,
        expires_ms: Option<i64>,
        actor: &'a str,
    ) -> BoxFuture<'a, Result<i64, StoreError>> {
        Box::pin(async move {
            super::model::check_label(label).map_err(StoreError::Invalid)?;
            let now = now_ms();
            let kind = if team.is_some() { "team" } else { "admin" };
            let detail =
                serde_json::json!({ "kind": kind, "team": team, "label": label, "expiresMs": expires_ms })
                    .to_string();
            let mut tx = self.begin_write().await?;
            let id: i64 = sqlx::query(INSERT_TOKEN)
                .bind(sha256)
                .bind(kind)
                .bind(team)
                .bind(label)
                .bind(now)
                .bind(expires_ms)
                .fetch_one(&mut *tx)
                .await?
                .try_get("id")?;
            Self::audit(&mut tx, now, actor, "token.create", label, &detail, None).await?;
            tx.commit().await?;
            Ok(id)
        })
    }

    fn publish<'a>(&'a self, v: &'a NewVersion<'a>) -> BoxFuture<'a, Result<(i64, bool), StoreError>> {
        Box::pin(async move {
            let now = now_ms();
            let mut tx = self.begin_write().await?;
            if sqlx::query(SELECT_CLIENT_TEAM).bind(v.client).fetch_optional(&mut *tx).await?.is_none() {
                return Err(StoreError::NotFound(format!("unknown client {}", v.client)));
            }
            sqlx::query(INSERT_ENDPOINT).bind(v.client).bind(v.endpoint).bind(now).execute(&mut *tx).await?;
            sqlx::query(D::LOCK_ENDPOINT).bind(v.client).bind(v.endpoint).fetch_one(&mut *tx).await?;
            let existing = sqlx::query(SELECT_VERSION_BY_SHA)
                .bind(v.client)
                .bind(v.endpoint)
                .bind(v.sha256)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(row) = existing {
                let n: i64 = row.try_get("version")?;
                tx.commit().await?;
                return Ok((n, false));
            }
            let n: i64 = sqlx::query(TAKE_VERSION_NUMBER)
                .bind(v.client)
                .bind(v.endpoint)
                .fetch_one(&mut *tx)
                .await?
                .try_get("version")?;
            sqlx::query(INSERT_VERSION)
                .bind(v.client)
                .bind(v.endpoint)
                .bind(n)
                .bind(v.document)
                .bind(v.operation_name)
                .bind(v.script)
                .bind(v.sha256)
                .bind(v.document_sha256)
                .bind(v.author)
                .bind(now)
                .bind(v.sample_variables)
                .execute(&mut *tx)
                .await?;
            if n == 1 {
                sqlx::query(INSERT_FIRST_ROLLOUT)
                    .bind(v.client)
                    .bind(v.endpoint)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            let target = format!("{}/{}", v.client, v.endpoint);
            let detail = serde_json::json!({ "version": n, "sha256": v.sha256 }).to_string();
            Self::audit(&mut tx, now, v.author, "version.publish", &target, &detail, v.reason).await?;
            Self::bump(&mut tx).await?;
            tx.commit().await?;
            Ok((n, true))
        })
    }

    fn team_usage<'a>(
        &'a self,
        team: &'a str,
        client: &'a str,
        endpoint: &'a str,
    ) -> BoxFuture<'a, Result<TeamUsage, StoreError>> {
        Box::pin(async move {
            let mut conn = self.pool.acquire().await?;
            let e: i64 =
                sqlx::query(COUNT_TEAM_ENDPOINTS).bind(team).fetch_one(&mut *conn).await?.try_get("n")?;
            let c: i64 = sqlx::query(SUM_TEAM_CHARS).bind(team).fetch_one(&mut *conn).await?.try_get("n")?;
            let x: i64 = sqlx::query(COUNT_ENDPOINT)
                .bind(client)
                .bind(endpoint)
                .fetch_one(&mut *conn)
                .await?
                .try_get("n")?;
            Ok(TeamUsage { endpoints: e as u64, chars: c as u64, endpoint_exists: x > 0 })
        })
    }

    fn versions<'a>(
        &'a self,
        client: &'a str,
        endpoint: &'a str,
    ) -> BoxFuture<'a, Result<Vec<VersionRecord>, StoreError>> {
        Box::pin(async move {
            let mut conn = self.pool.acquire().await?;
            let rows = sqlx::query(SELECT_VERSIONS).bind(client).bind(endpoint).fetch_all(&mut *conn).await?;
            Ok(rows.iter().map(Self::version_of).collect::<Result<_, _>>()?)
        })
    }

    fn rollouts<'a>(&'a self, client: &'a str) -> BoxFuture<'a, Result<Vec<(String, Rollout)>, StoreError>> {
        Box::pin(async move {
            let mut conn = self.pool.acquire().await?;
            let rows = sqlx::query(SELECT_ROLLOUTS).bind(client).fetch_all(&mut *conn).await?;
            Ok(rows
                .iter()
                .map(|r| Ok((r.try_get("endpoint")?, Self::rollout_of(r)?)))
                .collect::<Result<_, sqlx::Error>>()?)
        })
    }

    fn rollout<'a>(
        &'a self,
        client: &'a str,
        endpoint: &'a str,
    ) -> BoxFuture<'a, Result<Option<Rollout>, StoreError>> {
        Box::pin(async move {
            let mut conn = self.pool.acquire().await?;
            let row =
                sqlx::query(SELECT_ROLLOUT).bind(client).bind(endpoint).fetch_optional(&mut *conn).await?;
            Ok(row.as_ref().map(Self::rollout_of).transpose()?)
        })
    }

    fn update_rollout_with<'a>(
        &'a self,
        client: &'a str,
        endpoint: &'a str,
        actor: &'a str,
        action: &'a str,
        reason: Option<&'a str>,
        write: RolloutUpdate<'a>,
        change: RolloutChangeFn<'a>,
    ) -> BoxFuture<'a, Result<Rollout, StoreError>> {
        Box::pin(async move {
            let RolloutUpdate { figures, guard } = write;
            let now = now_ms();
            let target = format!("{client}/{endpoint}");
            let mut tx = self.begin_write().await?;
            let current =
                sqlx::query(D::LOCK_ROLLOUT).bind(client).bind(endpoint).fetch_optional(&mut *tx).await?;
            let Some(current) = current else {
                return Err(StoreError::NotFound(format!("unknown endpoint {target}")));
            };
            let current = Self::rollout_of(&current)?;
            let next = change(current)?;
            for v in [Some(next.stable), next.canary].into_iter().flatten() {
                let found = sqlx::query(SELECT_VERSION)
                    .bind(client)
                    .bind(endpoint)
                    .bind(v)
                    .fetch_optional(&mut *tx)
                    .await?;
                if found.is_none() {
                    return Err(StoreError::Invalid(format!("{target} has no version {v}")));
                }
            }
            sqlx::query(UPDATE_ROLLOUT)
                .bind(client)
                .bind(endpoint)
                .bind(next.stable)
                .bind(next.canary)
                .bind(next.canary_percent)
                .bind(next.previous_stable)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            if let Some(guard) = guard {
                sqlx::query(UPDATE_GUARD).bind(client).bind(endpoint).bind(guard).execute(&mut *tx).await?;
            }
            let mut detail = serde_json::json!({ "from": current, "to": next });
            if let Some(f) = figures {
                detail["figures"] = f.clone();
            }
            if let Some(guard) = guard {
                detail["guard"] = serde_json::from_str(guard).unwrap_or(Value::Null);
            }
            Self::audit(&mut tx, now, actor, action, &target, &detail.to_string(), reason).await?;
            Self::bump(&mut tx).await?;
            tx.commit().await?;
            Ok(next)
        })
    }

    fn audit_log<'a>(
        &'a self,
        client: Option<&'a str>,
        limit: i64,
    ) -> BoxFuture<'a, Result<Vec<AuditEntry>, StoreError>> {
        Box::pin(async move {
            let sql = if client.is_some() { SELECT_AUDIT_OF_CLIENT } else { SELECT_AUDIT };
            let exact = client.unwrap_or("");
            // `_` and `%` in a client name are literal, not wildcards.
            let like = client
                .map(|c| format!("{}/%", c.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")))
                .unwrap_or_default();
            let mut conn = self.pool.acquire().await?;
            let rows =
                sqlx::query(sql).bind(exact).bind(like.as_str()).bind(limit).fetch_all(&mut *conn).await?;
            Ok(rows
                .iter()
                .map(|r| {
                    Ok(AuditEntry {
                        id: r.try_get("id")?,
                        at_ms: r.try_get("at_ms")?,
                        actor: r.try_get("actor")?,
                        action: r.try_get("action")?,
                        target: r.try_get("target")?,
                        detail: serde_json::from_str(&r.try_get::<String, _>("detail")?)
                            .unwrap_or(Value::Null),
                        reason: r.try_get("reason")?,
                    })
                })
                .collect::<Result<_, sqlx::Error>>()?)
        })
    }
}

/// The registry store: SQLite (a file, the default) or PostgreSQL (several instances), its
/// transactions through [`Transactions`] whichever it is.
#[derive(Clone)]
pub struct Store {
    sql: Arc<dyn Transactions>,
    /// PostgreSQL's pool, for LISTEN/NOTIFY; `None` on SQLite.
    postgres: Option<PgPool>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("kind", &self.kind()).finish()
    }
}

impl std::ops::Deref for Store {
    type Target = dyn Transactions;
    fn deref(&self) -> &Self::Target {
        &*self.sql
    }
}

impl Store {
    /// Opens `sqlite://FILE` (created if missing) or `postgres://…`.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool =
                PgPoolOptions::new().max_connections(16).acquire_timeout(STORE_WAIT).connect(url).await?;
            return Ok(Store { sql: Arc::new(Sql { pool: pool.clone() }), postgres: Some(pool) });
        }
        if !url.starts_with("sqlite:") {
            return Err(StoreError::Invalid(format!(
                "database url must start with sqlite: or postgres://, got {:?}",
                url.split(':').next().unwrap_or("")
            )));
        }
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new().max_connections(8).connect_with(options).await?;
        Ok(Store { sql: Arc::new(Sql { pool }), postgres: None })
    }

    pub fn kind(&self) -> &'static str {
        if self.postgres.is_some() { "postgres" } else { "sqlite" }
    }

    /// PostgreSQL's pool (LISTEN/NOTIFY between instances); `None` on SQLite.
    pub fn postgres(&self) -> Option<&PgPool> {
        self.postgres.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&format!("sqlite://{}", dir.path().join("s.db").display())).await.unwrap();
        store.migrate().await.unwrap();
        (store, dir)
    }

    fn version<'a>(document: &'a str, sha256: &'a str) -> NewVersion<'a> {
        NewVersion {
            client: "tv",
            endpoint: "home",
            document,
            operation_name: None,
            script: None,
            sha256,
            document_sha256: sha256,
            author: "test",
            reason: None,
            sample_variables: Some(r#"{"profileId":"1"}"#),
        }
    }

    #[tokio::test]
    async fn versions_are_numbered_without_gaps_and_identical_content_is_found_again() {
        let (store, _dir) = store().await;
        let before = store.generation().await.unwrap();
        assert!(matches!(store.publish(&version("{ a }", "x1")).await, Err(StoreError::NotFound(_))));
        store.create_client("tv", "tv-team", "test", None).await.unwrap();
        assert!(matches!(
            store.create_client("tv", "other", "test", None).await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(store.publish(&version("{ a }", "x1")).await.unwrap(), (1, true));
        assert_eq!(store.publish(&version("{ b }", "x2")).await.unwrap(), (2, true));
        assert_eq!(store.publish(&version("{ a }", "x1")).await.unwrap(), (1, false), "same content");
        let versions = store.versions("tv", "home").await.unwrap();
        assert_eq!(versions.iter().map(|v| v.version).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(versions[0].sample_variables, Some(serde_json::json!({"profileId": "1"})));
        // The first version became stable; every write bumped the generation and was audited.
        assert_eq!(store.rollout("tv", "home").await.unwrap().map(|r| r.stable), Some(1));
        assert!(store.generation().await.unwrap() >= before + 3);
        let actions: Vec<String> =
            store.audit_log(Some("tv"), 10).await.unwrap().into_iter().map(|e| e.action).collect();
        assert!(actions.iter().filter(|a| *a == "version.publish").count() == 2, "{actions:?}");
        let usage = store.team_usage("tv-team", "tv", "home").await.unwrap();
        assert_eq!((usage.endpoints, usage.chars, usage.endpoint_exists), (1, 10, true));
    }

    #[tokio::test]
    async fn a_refused_rollout_change_writes_nothing() {
        let (store, _dir) = store().await;
        store.create_client("tv", "tv-team", "test", None).await.unwrap();
        store.publish(&version("{ a }", "x1")).await.unwrap();
        let generation = store.generation().await.unwrap();
        let audited = store.audit_log(None, 100).await.unwrap().len();
        let refused = store
            .update_rollout("tv", "home", "test", "rollout.set", None, &|_| {
                Err(StoreError::Invalid("no such version".into()))
            })
            .await;
        assert!(matches!(refused, Err(StoreError::Invalid(_))));
        assert_eq!(store.generation().await.unwrap(), generation, "nothing bumped");
        assert_eq!(store.audit_log(None, 100).await.unwrap().len(), audited, "nothing audited");
        // A change naming a version that does not exist is refused in the same transaction.
        let missing = store
            .update_rollout("tv", "home", "test", "rollout.set", None, &|r| {
                Ok(Rollout { canary: Some(9), ..r })
            })
            .await;
        assert!(missing.is_err(), "{missing:?}");
        assert_eq!(store.rollout("tv", "home").await.unwrap().map(|r| r.canary), Some(None));
    }
}
