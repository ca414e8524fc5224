//! SQLite's write path. SQLite has one writer at a time, so the pool keeps one write
//! connection, and writers queue for it without SQLite's busy handler (which sleeps a
//! millisecond or more each time it finds the database locked). That connection runs its
//! statements inline on the calling task instead of hopping to a blocking thread per
//! statement: a write transaction here takes tens of microseconds, less than two thread
//! switches, and executes within one poll, so it cannot be cancelled half-way.
use std::error::Error;

use diesel::{
    SqliteConnection,
    connection::{AnsiTransactionManager, TransactionManager},
};
use diesel_async::sync_connection_wrapper::{SpawnBlocking, SyncConnectionWrapper};
use futures::{FutureExt, future::BoxFuture};

use crate::error::StoreError;

/// Runs "blocking" tasks at once on the current thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct Inline;

impl SpawnBlocking for Inline {
    fn spawn_blocking<'a, R>(
        &mut self,
        task: impl FnOnce() -> R + Send + 'static,
    ) -> BoxFuture<'a, Result<R, Box<dyn Error + Send + Sync + 'static>>>
    where
        R: Send + 'static,
    {
        std::future::ready(Ok(task())).boxed()
    }

    fn get_runtime() -> Self {
        Inline
    }
}

/// The SQLite write connection.
pub type SqliteWriter = SyncConnectionWrapper<SqliteConnection, Inline>;

/// Runs `body` in a `BEGIN IMMEDIATE` transaction on the write connection, committed when it
/// returns `Ok`, rolled back otherwise.
pub async fn immediate_transaction<R, F>(conn: &mut SqliteWriter, body: F) -> Result<R, StoreError>
where
    F: AsyncFnOnce(&mut SqliteWriter) -> Result<R, StoreError>,
{
    conn.spawn_blocking(|c| AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")).await?;
    match body(conn).await {
        Ok(value) => {
            conn.spawn_blocking(AnsiTransactionManager::commit_transaction).await?;
            Ok(value)
        }
        Err(error) => {
            conn.spawn_blocking(AnsiTransactionManager::rollback_transaction).await?;
            Err(error)
        }
    }
}
