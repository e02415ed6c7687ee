//! The registry in SQL through sqlx: SQLite (a file, the default) or PostgreSQL (several
//! instances). An enum over the two pools rather than `AnyPool`, which fails at runtime on
//! several types; each method's SQL is written once with `$N` placeholders, which both accept,
//! and runs on whichever pool this is (`on_pool!`).

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{PgPool, Row, SqlitePool};

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

#[derive(Clone, Debug)]
pub enum Store {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs the same code on whichever pool this is; `$p` is the pool.
macro_rules! on_pool {
    ($store:expr, $p:ident => $body:expr) => {
        match $store {
            Store::Sqlite($p) => $body,
            Store::Postgres($p) => $body,
        }
    };
}

/// Begins a write transaction: `BEGIN IMMEDIATE` on SQLite, so concurrent writers queue on
/// the busy timeout instead of failing on a lock upgrade.
macro_rules! begin_write {
    (sqlite $p:ident) => {
        $p.begin_with("BEGIN IMMEDIATE").await?
    };
    (postgres $p:ident) => {
        $p.begin().await?
    };
}

/// Appends to the audit log inside the open transaction `$tx`.
macro_rules! audit {
    ($tx:ident, $at:expr, $actor:expr, $action:expr, $target:expr, $detail:expr, $reason:expr) => {
        // A reason is a short line: refused (and the transaction with it) when it is not.
        if let Some(reason) = $reason {
            super::model::check_text("reason", reason, 1_000).map_err(StoreError::Invalid)?;
        }
        sqlx::query("INSERT INTO audit (at_ms, actor, action, target, detail, reason) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind($at)
            .bind($actor)
            .bind($action)
            .bind($target)
            .bind($detail)
            .bind($reason)
            .execute(&mut *$tx)
            .await?
    };
}

/// Bumps the registry generation inside the open transaction `$tx`.
macro_rules! bump {
    ($tx:ident) => {
        sqlx::query("UPDATE registry_generation SET generation = generation + 1 WHERE id = 1")
            .execute(&mut *$tx)
            .await?
    };
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

fn version_of(row: &impl RowLike) -> Result<VersionRecord, sqlx::Error> {
    Ok(VersionRecord {
        client: row.get_str("client")?,
        endpoint: row.get_str("endpoint")?,
        version: row.get_i64("version")?,
        document: row.get_str("document")?,
        operation_name: row.get_opt_str("operation_name")?,
        script: row.get_opt_str("script")?,
        sha256: row.get_str("sha256")?,
        document_sha256: row.get_str("document_sha256")?,
        author: row.get_str("author")?,
        created_ms: row.get_i64("created_ms")?,
        sample_variables: row
            .get_opt_str("sample_variables")?
            .and_then(|text| serde_json::from_str(&text).ok()),
    })
}

fn rollout_of(row: &impl RowLike) -> Result<Rollout, sqlx::Error> {
    Ok(Rollout {
        stable: row.get_i64("stable")?,
        canary: row.get_opt_i64("canary")?,
        canary_percent: row.get_i64("canary_percent")?,
        previous_stable: row.get_opt_i64("previous_stable")?,
    })
}

/// Column access shared by SQLite and PostgreSQL rows.
trait RowLike {
    fn get_str(&self, col: &str) -> Result<String, sqlx::Error>;
    fn get_opt_str(&self, col: &str) -> Result<Option<String>, sqlx::Error>;
    fn get_i64(&self, col: &str) -> Result<i64, sqlx::Error>;
    fn get_opt_i64(&self, col: &str) -> Result<Option<i64>, sqlx::Error>;
}

macro_rules! row_like {
    ($row:ty) => {
        impl RowLike for $row {
            fn get_str(&self, col: &str) -> Result<String, sqlx::Error> {
                self.try_get(col)
            }
            fn get_opt_str(&self, col: &str) -> Result<Option<String>, sqlx::Error> {
                self.try_get(col)
            }
            fn get_i64(&self, col: &str) -> Result<i64, sqlx::Error> {
                self.try_get(col)
            }
            fn get_opt_i64(&self, col: &str) -> Result<Option<i64>, sqlx::Error> {
                self.try_get(col)
            }
        }
    };
}
row_like!(sqlx::sqlite::SqliteRow);
row_like!(sqlx::postgres::PgRow);

/// The columns of `versions`, for `concat!` (sqlx takes only literal SQL).
macro_rules! version_columns {
    () => {
        "client, endpoint, version, document, operation_name, script, sha256, document_sha256, author, created_ms, sample_variables"
    };
}

impl Store {
    /// Opens `sqlite://FILE` (created if missing) or `postgres://…`.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool =
                PgPoolOptions::new().max_connections(16).acquire_timeout(STORE_WAIT).connect(url).await?;
            return Ok(Store::Postgres(pool));
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
        Ok(Store::Sqlite(pool))
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// Applies pending migrations. Migrations applied by a newer binary are tolerated, so an
    /// older instance keeps running during a rolling deploy.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(p) => {
                let mut m = sqlx::migrate!("migrations/sqlite");
                m.set_ignore_missing(true);
                m.run(p).await?
            }
            Store::Postgres(p) => {
                let mut m = sqlx::migrate!("migrations/postgres");
                m.set_ignore_missing(true);
                m.run(p).await?
            }
        }
        Ok(())
    }

    pub async fn generation(&self) -> Result<i64, StoreError> {
        let sql = "SELECT generation FROM registry_generation WHERE id = 1";
        Ok(on_pool!(self, p => sqlx::query(sql).fetch_one(p).await?.try_get::<i64, _>("generation")?))
    }

    /// Who a token (by its hash) belongs to, if it is neither revoked nor expired. Records
    /// when it was last used, at most once a minute per token.
    pub async fn principal(&self, token_sha256: &str) -> Result<Option<Principal>, StoreError> {
        let now = now_ms();
        let sql = "SELECT id, kind, team, label, last_used_ms FROM tokens \
                   WHERE sha256 = $1 AND revoked_ms IS NULL AND (expires_ms IS NULL OR expires_ms > $2)";
        let row = on_pool!(self, p => match sqlx::query(sql).bind(token_sha256).bind(now).fetch_optional(p).await? {
            Some(r) => Some((r.get_i64("id")?, r.get_str("kind")?, r.get_opt_str("team")?, r.get_str("label")?, r.get_opt_i64("last_used_ms")?)),
            None => None,
        });
        let Some((id, kind, team, label, last_used)) = row else { return Ok(None) };
        if last_used.is_none_or(|t| now - t > 60_000) {
            let update = "UPDATE tokens SET last_used_ms = $2 WHERE id = $1";
            on_pool!(self, p => sqlx::query(update).bind(id).bind(now).execute(p).await.map(|_| ())?);
        }
        Ok(match (kind.as_str(), team) {
            ("admin", _) => Some(Principal::Admin { label }),
            (_, Some(team)) => Some(Principal::Team { team, label }),
            _ => None,
        })
    }

    /// Every stored token (admins), or one team's; newest first.
    pub async fn tokens(&self, team: Option<&str>) -> Result<Vec<TokenRecord>, StoreError> {
        let sql = "SELECT id, kind, team, label, created_ms, last_used_ms, expires_ms, revoked_ms FROM tokens \
                   WHERE $1 = '' OR team = $1 ORDER BY id DESC";
        Ok(on_pool!(self, p => sqlx::query(sql).bind(team.unwrap_or("")).fetch_all(p).await?.iter().map(|r| {
            Ok(TokenRecord {
                id: r.get_i64("id")?,
                kind: r.get_str("kind")?,
                team: r.get_opt_str("team")?,
                label: r.get_str("label")?,
                created_ms: r.get_i64("created_ms")?,
                last_used_ms: r.get_opt_i64("last_used_ms")?,
                expires_ms: r.get_opt_i64("expires_ms")?,
                revoked_ms: r.get_opt_i64("revoked_ms")?,
            })
        }).collect::<Result<_, sqlx::Error>>()?))
    }

    /// Revokes a token at once; `team` limits it to that team's tokens. Audited.
    pub async fn revoke_token(
        &self,
        id: i64,
        team: Option<&str>,
        actor: &str,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        macro_rules! body {
            ($kind:ident, $p:ident) => {{
                let mut tx = begin_write!($kind $p);
                let row = sqlx::query("SELECT label, team, revoked_ms FROM tokens WHERE id = $1")
                    .bind(id).fetch_optional(&mut *tx).await?;
                let Some(row) = row else { return Err(StoreError::NotFound(format!("unknown token {id}"))) };
                let (label, owner) = (row.get_str("label")?, row.get_opt_str("team")?);
                if team.is_some() && owner.as_deref() != team {
                    return Err(StoreError::NotFound(format!("unknown token {id}")));
                }
                if row.get_opt_i64("revoked_ms")?.is_some() {
                    return Err(StoreError::Conflict(format!("token {id} ({label}) is already revoked")));
                }
                sqlx::query("UPDATE tokens SET revoked_ms = $2 WHERE id = $1").bind(id).bind(now).execute(&mut *tx).await?;
                let detail = serde_json::json!({ "id": id, "team": owner, "label": label }).to_string();
                audit!(tx, now, actor, "token.revoke", &label, &detail, reason);
                tx.commit().await?;
            }};
        }
        match self {
            Store::Sqlite(p) => body!(sqlite, p),
            Store::Postgres(p) => body!(postgres, p),
        }
        Ok(())
    }

    pub async fn load(&self) -> Result<Loaded, StoreError> {
        let generation = self.generation().await?;
        // Only the versions devices can be served: each rollout's stable and live canary.
        let versions_sql = concat!(
            "SELECT ",
            version_columns!(),
            " FROM versions WHERE EXISTS (SELECT 1 FROM rollouts r WHERE r.client = versions.client \
             AND r.endpoint = versions.endpoint AND (versions.version = r.stable \
             OR (versions.version = r.canary AND r.canary_percent > 0))) ORDER BY client, endpoint, version"
        );
        on_pool!(self, p => {
            let clients = sqlx::query("SELECT name, team FROM clients")
                .fetch_all(p)
                .await?
                .iter()
                .map(|r| Ok((r.get_str("name")?, r.get_str("team")?)))
                .collect::<Result<_, sqlx::Error>>()?;
            let versions = sqlx::query(versions_sql).fetch_all(p).await?.iter().map(version_of).collect::<Result<_, _>>()?;
            let rollouts = sqlx::query("SELECT client, endpoint, stable, canary, canary_percent, previous_stable FROM rollouts")
                .fetch_all(p)
                .await?
                .iter()
                .map(|r| Ok((r.get_str("client")?, r.get_str("endpoint")?, rollout_of(r)?)))
                .collect::<Result<_, sqlx::Error>>()?;
            let schema = sqlx::query("SELECT a.version, s.sha256 FROM schema_active a JOIN schemas s ON s.version = a.version WHERE a.id = 1")
                .fetch_optional(p)
                .await?
                .map(|r| Ok::<_, sqlx::Error>((r.get_i64("version")?, r.get_str("sha256")?)))
                .transpose()?;
            let mut guards = std::collections::HashMap::new();
            for r in sqlx::query("SELECT client, endpoint, guard FROM rollouts WHERE guard IS NOT NULL").fetch_all(p).await? {
                let (client, endpoint) = (r.get_str("client")?, r.get_str("endpoint")?);
                match serde_json::from_str(&r.get_str("guard")?) {
                    Ok(g) => { guards.insert((client, endpoint), g); }
                    Err(e) => tracing::warn!(endpoint = %format!("{client}/{endpoint}"), error = %e, "unreadable canary guard; using the defaults"),
                }
            }
            Ok(Loaded { generation, clients, versions, rollouts, schema, guards })
        })
    }

    /// One stored schema version, or the active one with `None`.
    pub async fn schema(&self, version: Option<i64>) -> Result<Option<StoredSchema>, StoreError> {
        let sql = "SELECT version, sha256, files, author, reason, created_ms FROM schemas \
                   WHERE version = COALESCE($1, (SELECT version FROM schema_active WHERE id = 1))";
        let row = on_pool!(self, p => match sqlx::query(sql).bind(version).fetch_optional(p).await? {
            Some(r) => Some((r.get_i64("version")?, r.get_str("sha256")?, r.get_str("files")?, r.get_str("author")?, r.get_opt_str("reason")?, r.get_i64("created_ms")?)),
            None => None,
        });
        let Some((version, sha256, files, author, reason, created_ms)) = row else { return Ok(None) };
        let files: Vec<SchemaFileRow> = serde_json::from_str(&files).map_err(|e| {
            StoreError::Invalid(format!("schema version {version} has unreadable files: {e}"))
        })?;
        Ok(Some(StoredSchema {
            version,
            sha256,
            files: files.into_iter().map(|f| (f.name, f.text)).collect(),
            author,
            reason,
            created_ms,
        }))
    }

    /// Stores a schema version (or finds the one with the same SHA-256) and makes it the one
    /// every instance runs; audited, and the generation is bumped so instances switch.
    /// Returns the version and whether it was new.
    pub async fn publish_schema(
        &self,
        files: &[(String, String)],
        sha256: &str,
        actor: &str,
        reason: Option<&str>,
        detail: &Value,
    ) -> Result<(i64, bool), StoreError> {
        let now = now_ms();
        let rows: Vec<SchemaFileRow> = files
            .iter()
            .map(|(name, text)| SchemaFileRow { name: name.clone(), text: text.clone() })
            .collect();
        let json = serde_json::to_string(&rows).map_err(|e| StoreError::Invalid(e.to_string()))?;
        macro_rules! body {
            ($kind:ident, $p:ident) => {{
                let mut tx = begin_write!($kind $p);
                let existing = sqlx::query("SELECT version FROM schemas WHERE sha256 = $1").bind(sha256).fetch_optional(&mut *tx).await?;
                let (version, created) = match existing {
                    Some(r) => (r.get_i64("version")?, false),
                    None => {
                        let n = sqlx::query("SELECT COALESCE(MAX(version), 0) + 1 AS n FROM schemas").fetch_one(&mut *tx).await?.get_i64("n")?;
                        sqlx::query("INSERT INTO schemas (version, sha256, files, author, reason, created_ms) VALUES ($1, $2, $3, $4, $5, $6)")
                            .bind(n).bind(sha256).bind(&json).bind(actor).bind(reason).bind(now)
                            .execute(&mut *tx).await?;
                        (n, true)
                    }
                };
                sqlx::query("INSERT INTO schema_active (id, version, updated_ms) VALUES (1, $1, $2) ON CONFLICT (id) DO UPDATE SET version = $1, updated_ms = $2")
                    .bind(version).bind(now).execute(&mut *tx).await?;
                let mut detail = detail.clone();
                detail["version"] = Value::from(version);
                audit!(tx, now, actor, "schema.publish", "schema", &detail.to_string(), reason);
                bump!(tx);
                tx.commit().await?;
                Ok((version, created))
            }};
        }
        match self {
            Store::Sqlite(p) => body!(sqlite, p),
            Store::Postgres(p) => body!(postgres, p),
        }
    }

    /// Appends one entry to the audit log on its own (a change not kept in the registry,
    /// such as a schema reloaded from files).
    pub async fn record(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        detail: &Value,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let detail = detail.to_string();
        macro_rules! body {
            ($kind:ident, $p:ident) => {{
                let mut tx = $p.begin().await?;
                audit!(tx, now, actor, action, target, &detail, reason);
                tx.commit().await?;
                Ok(())
            }};
        }
        match self {
            Store::Sqlite(p) => body!(sqlite, p),
            Store::Postgres(p) => body!(postgres, p),
        }
    }

    /// Every stored version, served or not (`facade schema check --against-registry`).
    pub async fn all_versions(&self) -> Result<Vec<VersionRecord>, StoreError> {
        let sql = concat!("SELECT ", version_columns!(), " FROM versions ORDER BY client, endpoint, version");
        Ok(
            on_pool!(self, p => sqlx::query(sql).fetch_all(p).await?.iter().map(version_of).collect::<Result<_, _>>()?),
        )
    }

    pub async fn client_team(&self, client: &str) -> Result<Option<String>, StoreError> {
        let sql = "SELECT team FROM clients WHERE name = $1";
        Ok(on_pool!(self, p => match sqlx::query(sql).bind(client).fetch_optional(p).await? {
            Some(r) => Some(r.get_str("team")?),
            None => None,
        }))
    }

    pub async fn create_client(
        &self,
        name: &str,
        team: &str,
        actor: &str,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let detail = serde_json::json!({ "team": team }).to_string();
        macro_rules! body {
            ($kind:ident, $p:ident) => {{
                let mut tx = begin_write!($kind $p);
                let inserted = sqlx::query("INSERT INTO clients (name, team, created_ms) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING")
                    .bind(name).bind(team).bind(now).execute(&mut *tx).await?.rows_affected();
                if inserted == 0 {
                    return Err(StoreError::Conflict(format!("client {name} already exists")));
                }
                audit!(tx, now, actor, "client.create", name, &detail, reason);
                bump!(tx);
                tx.commit().await?;
            }};
        }
        match self {
            Store::Sqlite(p) => body!(sqlite, p),
            Store::Postgres(p) => body!(postgres, p),
        }
        Ok(())
    }

    /// Stores a token's hash; `team` is `None` for an admin token; `expires_ms` (Unix ms)
    /// ends it without a revoke. Returns the token's id.
    pub async fn create_token(
        &self,
        sha256: &str,
        team: Option<&str>,
        label: &str,
        expires_ms: Option<i64>,
        actor: &str,
    ) -> Result<i64, StoreError> {
        super::model::check_label(label).map_err(StoreError::Invalid)?;
        let now = now_ms();
        let kind = if team.is_some() { "team" } else { "admin" };
        let detail =
            serde_json::json!({ "kind": kind, "team": team, "label": label, "expiresMs": expires_ms })
                .to_string();
        let id;
        macro_rules! body {
            ($kind:ident, $p:ident) => {{
                let mut tx = begin_write!($kind $p);
                id = sqlx::query("INSERT INTO tokens (sha256, kind, team, label, created_ms, expires_ms) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id")
                    .bind(sha256).bind(kind).bind(team).bind(label).bind(now).bind(expires_ms).fetch_one(&mut *tx).await?.get_i64("id")?;
                audit!(tx, now, actor, "token.create", label, &detail, None::<&str>);
                tx.commit().await?;
            }};
        }
        match self {
            Store::Sqlite(p) => body!(sqlite, p),
            Store::Postgres(p) => body!(postgres, p),
        }
        Ok(id)
    }

    /// Stores a new version, or returns the existing one with identical content. The first
    /// version of an endpoint becomes its stable version.
    pub async fn publish(&self, v: &NewVersion<'_>) -> Result<(i64, bool), StoreError> {
        let now = now_ms();
        let lock = match self {
            Store::Sqlite(_) => "SELECT next_version FROM endpoints WHERE client = $1 AND name = $2",
            Store::Postgres(_) => {
                "SELECT next_version FROM endpoints WHERE client = $1 AND name = $2 FOR UPDATE"
            }
        };
        macro_rules! body {
            ($kind:ident, $p:ident) => {{
                let mut tx = begin_write!($kind $p);
                if sqlx::query("SELECT name FROM clients WHERE name = $1").bind(v.client).fetch_optional(&mut *tx).await?.is_none() {
                    return Err(StoreError::NotFound(format!("unknown client {}", v.client)));
                }
                sqlx::query("INSERT INTO endpoints (client, name, next_version, created_ms) VALUES ($1, $2, 1, $3) ON CONFLICT (client, name) DO NOTHING")
                    .bind(v.client).bind(v.endpoint).bind(now).execute(&mut *tx).await?;
                // Serializes publishes of one endpoint (row lock on PostgreSQL; SQLite's write
                // transaction already does), so numbers have no gaps and duplicates are seen.
                sqlx::query(lock).bind(v.client).bind(v.endpoint).fetch_one(&mut *tx).await?;
                let existing = sqlx::query("SELECT version FROM versions WHERE client = $1 AND endpoint = $2 AND sha256 = $3")
                    .bind(v.client).bind(v.endpoint).bind(v.sha256).fetch_optional(&mut *tx).await?;
                if let Some(row) = existing {
                    let n = row.get_i64("version")?;
                    tx.commit().await?;
                    return Ok((n, false));
                }
                let n = sqlx::query("UPDATE endpoints SET next_version = next_version + 1 WHERE client = $1 AND name = $2 RETURNING next_version - 1 AS version")
                    .bind(v.client).bind(v.endpoint).fetch_one(&mut *tx).await?.get_i64("version")?;
                let insert = concat!("INSERT INTO versions (", version_columns!(), ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)");
                sqlx::query(insert)
                    .bind(v.client).bind(v.endpoint).bind(n).bind(v.document).bind(v.operation_name).bind(v.script)
                    .bind(v.sha256).bind(v.document_sha256).bind(v.author).bind(now).bind(v.sample_variables)
                    .execute(&mut *tx).await?;
                if n == 1 {
                    sqlx::query("INSERT INTO rollouts (client, endpoint, stable, canary, canary_percent, previous_stable, updated_ms) VALUES ($1, $2, 1, NULL, 0, NULL, $3)")
                        .bind(v.client).bind(v.endpoint).bind(now).execute(&mut *tx).await?;
                }
                let target = format!("{}/{}", v.client, v.endpoint);
                let detail = serde_json::json!({ "version": n, "sha256": v.sha256 }).to_string();
                audit!(tx, now, v.author, "version.publish", &target, &detail, v.reason);
                bump!(tx);
                tx.commit().await?;
                Ok((n, true))
            }};
        }
        match self {
            Store::Sqlite(p) => body!(sqlite, p),
            Store::Postgres(p) => body!(postgres, p),
        }
    }

    /// What a team's clients hold: endpoints, characters of stored documents and scripts, and
    /// whether `client/endpoint` is one of the endpoints already.
    pub async fn team_usage(
        &self,
        team: &str,
        client: &str,
        endpoint: &str,
    ) -> Result<TeamUsage, StoreError> {
        let endpoints =
            "SELECT COUNT(*) AS n FROM endpoints e JOIN clients c ON c.name = e.client WHERE c.team = $1";
        let chars = "SELECT CAST(COALESCE(SUM(LENGTH(v.document) + COALESCE(LENGTH(v.script), 0)), 0) AS BIGINT) AS n \
                     FROM versions v JOIN clients c ON c.name = v.client WHERE c.team = $1";
        let exists = "SELECT COUNT(*) AS n FROM endpoints WHERE client = $1 AND name = $2";
        let (endpoints, chars, exists) = on_pool!(self, p => {
            let e: i64 = sqlx::query(endpoints).bind(team).fetch_one(p).await?.try_get("n")?;
            let c: i64 = sqlx::query(chars).bind(team).fetch_one(p).await?.try_get("n")?;
            let x: i64 = sqlx::query(exists).bind(client).bind(endpoint).fetch_one(p).await?.try_get("n")?;
            (e, c, x)
        });
        Ok(TeamUsage { endpoints: endpoints as u64, chars: chars as u64, endpoint_exists: exists > 0 })
    }

    pub async fn versions(&self, client: &str, endpoint: &str) -> Result<Vec<VersionRecord>, StoreError> {
        let sql = concat!(
            "SELECT ",
            version_columns!(),
            " FROM versions WHERE client = $1 AND endpoint = $2 ORDER BY version"
        );
        Ok(
            on_pool!(self, p => sqlx::query(sql).bind(client).bind(endpoint).fetch_all(p).await?.iter().map(version_of).collect::<Result<_, _>>()?),
        )
    }

    /// The rollouts of one client's endpoints, by endpoint name.
    pub async fn rollouts(&self, client: &str) -> Result<Vec<(String, Rollout)>, StoreError> {
        let sql = "SELECT endpoint, stable, canary, canary_percent, previous_stable FROM rollouts WHERE client = $1 ORDER BY endpoint";
        Ok(on_pool!(self, p => sqlx::query(sql).bind(client).fetch_all(p).await?.iter().map(|r| {
            Ok((r.get_str("endpoint")?, rollout_of(r)?))
        }).collect::<Result<_, sqlx::Error>>()?))
    }

    pub async fn rollout(&self, client: &str, endpoint: &str) -> Result<Option<Rollout>, StoreError> {
        let sql = "SELECT stable, canary, canary_percent, previous_stable FROM rollouts WHERE client = $1 AND endpoint = $2";
        Ok(on_pool!(self, p => match sqlx::query(sql).bind(client).bind(endpoint).fetch_optional(p).await? {
            Some(r) => Some(rollout_of(&r)?),
            None => None,
        }))
    }

    /// Changes a rollout with `change(current) -> new`, checking in the same transaction that
    /// every version it names exists; records `action` in the audit log.
    pub async fn update_rollout(
        &self,
        client: &str,
        endpoint: &str,
        actor: &str,
        action: &str,
        reason: Option<&str>,
        change: impl Fn(Rollout) -> Result<Rollout, StoreError>,
    ) -> Result<Rollout, StoreError> {
        self.update_rollout_with(client, endpoint, actor, action, reason, RolloutUpdate::default(), change)
            .await
    }

    /// [`Store::update_rollout`] with more written in the same transaction: figures for the
    /// audit entry's detail, and the canary guard (stored and audited with the change, or
    /// not at all).
    #[allow(clippy::too_many_arguments)]
    pub async fn update_rollout_with(
        &self,
        client: &str,
        endpoint: &str,
        actor: &str,
        action: &str,
        reason: Option<&str>,
        write: RolloutUpdate<'_>,
        change: impl Fn(Rollout) -> Result<Rollout, StoreError>,
    ) -> Result<Rollout, StoreError> {
        let RolloutUpdate { figures, guard } = write;
        let now = now_ms();
        let target = format!("{client}/{endpoint}");
        // The change is computed from the row as it is when locked: two instances changing
        // one rollout at once (an automatic rollback decided on both) apply one after the
        // other, and the second sees the first's result. SQLite's write transaction already
        // serializes; PostgreSQL needs the row lock.
        let read = match self {
            Store::Sqlite(_) => {
                "SELECT stable, canary, canary_percent, previous_stable FROM rollouts WHERE client = $1 AND endpoint = $2"
            }
            Store::Postgres(_) => {
                "SELECT stable, canary, canary_percent, previous_stable FROM rollouts WHERE client = $1 AND endpoint = $2 FOR UPDATE"
            }
        };
        macro_rules! body {
            ($kind:ident, $p:ident) => {{
                let mut tx = begin_write!($kind $p);
                let current = sqlx::query(read)
                    .bind(client).bind(endpoint).fetch_optional(&mut *tx).await?;
                let Some(current) = current else {
                    return Err(StoreError::NotFound(format!("unknown endpoint {target}")));
                };
                let current = rollout_of(&current)?;
                let next = change(current)?;
                for v in [Some(next.stable), next.canary].into_iter().flatten() {
                    let found = sqlx::query("SELECT version FROM versions WHERE client = $1 AND endpoint = $2 AND version = $3")
                        .bind(client).bind(endpoint).bind(v).fetch_optional(&mut *tx).await?;
                    if found.is_none() {
                        return Err(StoreError::Invalid(format!("{target} has no version {v}")));
                    }
                }
                sqlx::query("UPDATE rollouts SET stable = $3, canary = $4, canary_percent = $5, previous_stable = $6, updated_ms = $7 WHERE client = $1 AND endpoint = $2")
                    .bind(client).bind(endpoint).bind(next.stable).bind(next.canary).bind(next.canary_percent).bind(next.previous_stable).bind(now)
                    .execute(&mut *tx).await?;
                if let Some(guard) = guard {
                    sqlx::query("UPDATE rollouts SET guard = $3 WHERE client = $1 AND endpoint = $2")
                        .bind(client).bind(endpoint).bind(guard).execute(&mut *tx).await?;
                }
                let mut detail = serde_json::json!({ "from": current, "to": next });
                if let Some(f) = figures {
                    detail["figures"] = f.clone();
                }
                if let Some(guard) = guard {
                    detail["guard"] = serde_json::from_str(guard).unwrap_or(Value::Null);
                }
                let detail = detail.to_string();
                audit!(tx, now, actor, action, &target, &detail, reason);
                bump!(tx);
                tx.commit().await?;
                Ok(next)
            }};
        }
        match self {
            Store::Sqlite(p) => body!(sqlite, p),
            Store::Postgres(p) => body!(postgres, p),
        }
    }

    /// The newest audit entries first, optionally only those about one client's endpoints.
    pub async fn audit_log(&self, client: Option<&str>, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
        let (sql, prefix) = match client {
            Some(c) => (
                "SELECT id, at_ms, actor, action, target, detail, reason FROM audit WHERE target = $1 OR target LIKE $2 ESCAPE '\\' ORDER BY id DESC LIMIT $3",
                Some(c),
            ),
            None => (
                "SELECT id, at_ms, actor, action, target, detail, reason FROM audit WHERE $1 = $1 AND $2 = $2 ORDER BY id DESC LIMIT $3",
                None,
            ),
        };
        let exact = prefix.unwrap_or("");
        // `_` and `%` in a client name are literal, not wildcards.
        let like = prefix
            .map(|c| format!("{}/%", c.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")))
            .unwrap_or_default();
        Ok(
            on_pool!(self, p => sqlx::query(sql).bind(exact).bind(&like).bind(limit).fetch_all(p).await?.iter().map(|r| {
            Ok(AuditEntry {
                id: r.get_i64("id")?,
                at_ms: r.get_i64("at_ms")?,
                actor: r.get_str("actor")?,
                action: r.get_str("action")?,
                target: r.get_str("target")?,
                detail: serde_json::from_str(&r.get_str("detail")?).unwrap_or(Value::Null),
                reason: r.get_opt_str("reason")?,
            })
        }).collect::<Result<_, sqlx::Error>>()?),
        )
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
            .update_rollout("tv", "home", "test", "rollout.set", None, |_| {
                Err(StoreError::Invalid("no such version".into()))
            })
            .await;
        assert!(matches!(refused, Err(StoreError::Invalid(_))));
        assert_eq!(store.generation().await.unwrap(), generation, "nothing bumped");
        assert_eq!(store.audit_log(None, 100).await.unwrap().len(), audited, "nothing audited");
        // A change naming a version that does not exist is refused in the same transaction.
        let missing = store
            .update_rollout("tv", "home", "test", "rollout.set", None, |r| {
                Ok(Rollout { canary: Some(9), ..r })
            })
            .await;
        assert!(missing.is_err(), "{missing:?}");
        assert_eq!(store.rollout("tv", "home").await.unwrap().map(|r| r.canary), Some(None));
    }
}
