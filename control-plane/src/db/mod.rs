//! The database: one pool of either backend, chosen at run time from `DATABASE_URL`.
//!
//! Released diesel has no async `MultiConnection`, so the per-backend difference lives here and
//! nowhere else: [`Pool`] is an enum, and the [`with_conn!`] / [`write_tx!`] macros expand the
//! same diesel code once per backend. Write transactions on SQLite run one at a time on a
//! single write connection and start with `BEGIN IMMEDIATE` (a deferred transaction that reads
//! and then writes fails with "database is locked" under concurrency); on PostgreSQL, code
//! that must serialize on a row takes a row lock itself. Statements that must differ per
//! backend live in [`Dialect`].
mod dialect;
mod quota;
pub mod schema;
pub mod sqlite;
mod tx;

use std::{path::Path, time::Duration};

use anyhow::{Context, bail};
use diesel::{SqliteConnection, migration::MigrationSource};
use diesel_async::{
    AsyncConnection, AsyncMigrationHarness, AsyncPgConnection, SimpleAsyncConnection,
    pooled_connection::{AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod, deadpool},
    sync_connection_wrapper::{SpawnBlocking, SyncConnectionWrapper},
};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use futures::FutureExt;

pub use dialect::{
    AccountUsage, Dialect, HourlyUsage, INSERT_CHUNK, KeyUsage, LeaseUsage, NewLedgerEntry, NewUsage,
};
pub use quota::{AccountQuota, GrantBasis, KeyQuota, LeaseRow};
pub use tx::{Posted, Posting, TxConn, UsageDebit};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");

/// An SQLite connection driven from async code (diesel's sync connection on a blocking thread).
pub type SqliteConn = SyncConnectionWrapper<SqliteConnection>;

/// A connection pool of one backend.
#[derive(Clone)]
pub enum Pool {
    /// PostgreSQL, for production and several control-plane replicas.
    Postgres(deadpool::Pool<AsyncPgConnection>),
    /// Embedded SQLite (bundled), the single-node default.
    Sqlite(SqlitePools),
}

/// SQLite's readers and its one writer (see [`sqlite`]).
#[derive(Clone)]
pub struct SqlitePools {
    /// Reads, on blocking threads, several at once (WAL).
    pub read: deadpool::Pool<SqliteConn>,
    /// Write transactions, one at a time.
    pub write: deadpool::Pool<sqlite::SqliteWriter>,
}

/// Which backend a [`Db`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL.
    Postgres,
    /// SQLite.
    Sqlite,
}

/// The control plane's database handle; cheap to clone.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    /// PostgreSQL's URL, for connections outside the pool (LISTEN).
    postgres_url: Option<std::sync::Arc<str>>,
}

/// Where a `DATABASE_URL` points.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Postgres(String),
    Sqlite(String),
}

fn parse_url(url: &str) -> anyhow::Result<Target> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Target::Postgres(url.to_owned()));
    }
    if let Some(path) = url.strip_prefix("sqlite://") {
        if path.is_empty() {
            bail!("database URL {url:?} names no file (use sqlite://router.db or sqlite:///abs/path.db)");
        }
        return Ok(Target::Sqlite(path.to_owned()));
    }
    bail!("unsupported database URL {url:?}: expected sqlite://PATH or postgres://…")
}

impl Db {
    /// Connects to the database named by `url` and applies pending migrations.
    pub async fn connect(url: &str) -> anyhow::Result<Db> {
        let db = match parse_url(url)? {
            Target::Postgres(url) => {
                Db { pool: Pool::Postgres(postgres_pool(&url)?), postgres_url: Some(url.into()) }
            }
            Target::Sqlite(path) => Db { pool: Pool::Sqlite(sqlite_pools(&path)?), postgres_url: None },
        };
        db.migrate().await?;
        Ok(db)
    }

    /// The pool, for the dispatch macros.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// PostgreSQL: a new connection of its own, outside the pool (for `LISTEN`, which holds a
    /// connection for as long as it listens), named `application_name` in `pg_stat_activity`.
    /// `None` on SQLite.
    pub async fn dedicated_postgres(
        &self,
        application_name: &str,
    ) -> Option<anyhow::Result<AsyncPgConnection>> {
        let url = self.postgres_url.as_deref()?;
        let separator = if url.contains('?') { '&' } else { '?' };
        let url = format!("{url}{separator}application_name={application_name}");
        Some(AsyncPgConnection::establish(&url).await.context("cannot connect to PostgreSQL"))
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Postgres(_) => Backend::Postgres,
            Pool::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Makes sure replaced or deleted rows of `table` (an old secret) are not left behind in
    /// the database's files: SQLite overwrites freed content (`secure_delete`) and its
    /// write-ahead log is checkpointed and truncated; PostgreSQL rewrites the table
    /// (`VACUUM FULL`, which drops the old file). Best effort: a failure is logged.
    pub async fn scrub(&self, table: &'static str) {
        let done = match &self.pool {
            Pool::Postgres(pool) => match pool.get().await {
                Ok(mut conn) => {
                    conn.batch_execute(&format!("VACUUM FULL {table}")).await.map_err(|e| e.to_string())
                }
                Err(error) => Err(error.to_string()),
            },
            Pool::Sqlite(pools) => match pools.write.get().await {
                Ok(mut conn) => {
                    conn.batch_execute("PRAGMA wal_checkpoint(TRUNCATE)").await.map_err(|e| e.to_string())
                }
                Err(error) => Err(error.to_string()),
            },
        };
        if let Err(error) = done {
            tracing::warn!(table, %error, "cannot scrub replaced rows from the database files");
        }
    }

    async fn migrate(&self) -> anyhow::Result<()> {
        match &self.pool {
            Pool::Postgres(pool) => {
                // Replicas starting together must not run the same migration twice: hold a
                // session-level advisory lock on one connection while another migrates.
                let mut lock = pool.get().await.context("cannot connect to PostgreSQL")?;
                lock.batch_execute("SELECT pg_advisory_lock(7215150001)").await?;
                let conn = pool.get().await.context("cannot connect to PostgreSQL")?;
                let result = run_migrations(conn, POSTGRES_MIGRATIONS);
                lock.batch_execute("SELECT pg_advisory_unlock(7215150001)").await?;
                result
            }
            Pool::Sqlite(pools) => {
                let conn = pools.read.get().await.context("cannot open the SQLite database")?;
                run_migrations(conn, SQLITE_MIGRATIONS)
            }
        }
    }
}

/// Applies pending migrations (blocking in place: needs the multi-threaded runtime).
fn run_migrations<C>(conn: C, migrations: EmbeddedMigrations) -> anyhow::Result<()>
where
    C: AsyncConnection,
    AsyncMigrationHarness<C>: MigrationHarness<C::Backend>,
    EmbeddedMigrations: MigrationSource<C::Backend>,
{
    AsyncMigrationHarness::new(conn)
        .run_pending_migrations(migrations)
        .map_err(|e| anyhow::anyhow!("migrations failed: {e}"))?;
    Ok(())
}

fn postgres_pool(url: &str) -> anyhow::Result<deadpool::Pool<AsyncPgConnection>> {
    // No test query per checkout (a round trip per use): a connection whose server went away
    // is closed, and closed connections are not handed out again.
    let mut config = ManagerConfig::default();
    config.recycling_method = RecyclingMethod::Fast;
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, config);
    deadpool::Pool::builder(manager)
        .max_size(16)
        .wait_timeout(Some(Duration::from_secs(10)))
        .runtime(::deadpool::Runtime::Tokio1)
        .build()
        .context("cannot build the PostgreSQL pool")
}

fn sqlite_pools(path: &str) -> anyhow::Result<SqlitePools> {
    if let Some(dir) = Path::new(path).parent().filter(|d| !d.as_os_str().is_empty() && !d.is_dir()) {
        bail!("cannot open SQLite database {path:?}: directory {} does not exist", dir.display());
    }
    Ok(SqlitePools {
        read: sqlite_pool(path, 8, "").context("cannot build the SQLite pool")?,
        // The writer touches every index of the usage and ledger tables: a page cache of
        // 64 MiB instead of 2 keeps their upper levels in memory.
        write: sqlite_pool(path, 1, "PRAGMA cache_size = -65536;").context("cannot build the SQLite pool")?,
    })
}

/// A pool of SQLite connections set up for concurrent use (WAL, busy timeout, foreign keys).
fn sqlite_pool<S>(
    path: &str,
    size: usize,
    pragmas: &'static str,
) -> anyhow::Result<deadpool::Pool<SyncConnectionWrapper<SqliteConnection, S>>>
where
    S: SpawnBlocking + Send + Sync + 'static,
{
    let mut config = ManagerConfig::default();
    config.recycling_method = RecyclingMethod::Fast;
    config.custom_setup = Box::new(move |path| {
        let path = path.to_owned();
        async move {
            let mut conn = SyncConnectionWrapper::<SqliteConnection, S>::establish(&path).await?;
            conn.batch_execute(&format!(
                "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; \
                 PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; PRAGMA secure_delete = ON; \
                 {pragmas}"
            ))
            .await
            .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
            Ok(conn)
        }
        .boxed()
    });
    let manager = AsyncDieselConnectionManager::new_with_config(path, config);
    Ok(deadpool::Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(Duration::from_secs(10)))
        .runtime(::deadpool::Runtime::Tokio1)
        .build()?)
}

/// Runs `$body` with `$conn` bound to a pooled connection of whichever backend `$db` uses.
/// The body is expanded once per backend, so it must be diesel code both accept.
#[macro_export]
macro_rules! with_conn {
    ($db:expr, |$conn:ident| $body:expr) => {
        match $db.pool() {
            $crate::db::Pool::Postgres(pool) => {
                let mut pooled = pool.get().await.map_err($crate::error::StoreError::pool)?;
                let $conn = &mut *pooled;
                $body
            }
            $crate::db::Pool::Sqlite(pools) => {
                let mut pooled = pools.read.get().await.map_err($crate::error::StoreError::pool)?;
                let $conn = &mut *pooled;
                $body
            }
        }
    };
}

/// Runs `$body` in a write transaction (`BEGIN IMMEDIATE` on SQLite), committed when it
/// returns `Ok`. The body is expanded once per backend and returns `Result<_, StoreError>`.
#[macro_export]
macro_rules! write_tx {
    ($db:expr, |$conn:ident| $body:expr) => {
        match $db.pool() {
            $crate::db::Pool::Postgres(pool) => {
                let mut pooled = pool.get().await.map_err($crate::error::StoreError::pool)?;
                diesel_async::AsyncConnection::transaction(
                    &mut *pooled,
                    async |$conn| -> Result<_, $crate::error::StoreError> { $body },
                )
                .await
            }
            $crate::db::Pool::Sqlite(pools) => {
                let mut pooled = pools.write.get().await.map_err($crate::error::StoreError::pool)?;
                $crate::db::sqlite::immediate_transaction(
                    &mut *pooled,
                    async |$conn| -> Result<_, $crate::error::StoreError> { $body },
                )
                .await
            }
        }
    };
}

/// Runs `$body` in a read-only transaction that sees one consistent snapshot of the database
/// (`REPEATABLE READ` on PostgreSQL; a deferred read transaction in SQLite's WAL mode).
#[macro_export]
macro_rules! read_tx {
    ($db:expr, |$conn:ident| $body:expr) => {
        match $db.pool() {
            $crate::db::Pool::Postgres(pool) => {
                let mut pooled = pool.get().await.map_err($crate::error::StoreError::pool)?;
                pooled
                    .build_transaction()
                    .repeatable_read()
                    .read_only()
                    .run(async |$conn| -> Result<_, $crate::error::StoreError> { $body })
                    .await
            }
            $crate::db::Pool::Sqlite(pools) => {
                let mut pooled = pools.read.get().await.map_err($crate::error::StoreError::pool)?;
                diesel_async::AsyncConnection::transaction(
                    &mut *pooled,
                    async |$conn| -> Result<_, $crate::error::StoreError> { $body },
                )
                .await
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_database_urls() {
        assert_eq!(parse_url("sqlite://router.db").ok(), Some(Target::Sqlite("router.db".into())));
        assert_eq!(parse_url("sqlite:///var/lib/r.db").ok(), Some(Target::Sqlite("/var/lib/r.db".into())));
        assert!(matches!(parse_url("postgres://u@h/db"), Ok(Target::Postgres(_))));
        assert!(matches!(parse_url("postgresql://u@h/db"), Ok(Target::Postgres(_))));
        assert!(parse_url("mysql://x").is_err());
        assert!(parse_url("sqlite://").is_err());
        assert!(parse_url("router.db").is_err());
    }
}
