//! Retention of raw usage records: with `--usage-retention-days N`, records older than N days
//! are deleted in the background, in small batches (each its own short transaction, so that
//! ingestion never waits long behind it). The hourly aggregates and the ledger stay: summaries,
//! balances and the billing history are unchanged.
//!
//! On PostgreSQL the records are partitioned by month (see the `usage_partitions` migration):
//! whole months past the cutoff are dropped at once, and only the month the cutoff falls in
//! (and the default partition) is deleted from row by row. Partitions are created ahead of
//! time, this month and the next two, each time maintenance runs.
use diesel::{QueryableByName, sql_types::BigInt, sql_types::Integer};
use diesel_async::RunQueryDsl;

use crate::{
    db::{Backend, Db, Pool},
    error::{StoreError, StoreResult},
    write_tx,
};

/// Records deleted per transaction.
pub const DELETE_BATCH: usize = 1_000;
/// Microseconds in a day.
const MICROS_PER_DAY: i64 = 86_400_000_000;
/// How far ahead partitions are created: this month's and the next two.
const PARTITIONS_AHEAD: i64 = 62 * MICROS_PER_DAY;

const DELETE_SQLITE: &str = "DELETE FROM usage_records WHERE rowid IN \
    (SELECT rowid FROM usage_records WHERE created_at < ? ORDER BY created_at LIMIT 1000)";
const DELETE_POSTGRES: &str = "DELETE FROM usage_records WHERE (created_at, request_id) IN \
    (SELECT created_at, request_id FROM usage_records WHERE created_at < $1 \
     ORDER BY created_at LIMIT 1000)";
const DELETE_IDS_POSTGRES: &str = "DELETE FROM usage_request_ids WHERE request_id IN \
    (SELECT request_id FROM usage_request_ids WHERE recorded_at < $1 LIMIT 1000)";

/// What one sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Monthly partitions dropped whole (PostgreSQL).
    pub partitions: i32,
    /// Records deleted one by one.
    pub records: u64,
    /// Request ids forgotten (PostgreSQL's `usage_request_ids`).
    pub request_ids: u64,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = Integer)]
    count: i32,
}

/// The time before which records go, for a retention of `days` at `now`; `None` keeps all.
pub fn cutoff(now: i64, days: u32) -> Option<i64> {
    (days > 0).then(|| now.saturating_sub(i64::from(days).saturating_mul(MICROS_PER_DAY)))
}

/// Creates the monthly partitions of `now`'s month and the next two that do not exist yet
/// (PostgreSQL; nothing to do on SQLite); returns how many it created.
pub async fn prepare(db: &Db, now: i64) -> StoreResult<i32> {
    let Pool::Postgres(pool) = db.pool() else { return Ok(0) };
    let mut conn = pool.get().await.map_err(StoreError::pool)?;
    let created: Count = diesel::sql_query("SELECT router_usage_partitions($1, $2) AS count")
        .bind::<BigInt, _>(now)
        .bind::<BigInt, _>(now.saturating_add(PARTITIONS_AHEAD))
        .get_result(&mut *conn)
        .await?;
    Ok(created.count)
}

/// Removes what a retention of `days` no longer keeps at `now` (nothing when `days` is 0).
pub async fn sweep(db: &Db, now: i64, days: u32) -> StoreResult<Swept> {
    let Some(cutoff) = cutoff(now, days) else { return Ok(Swept::default()) };
    let mut swept = Swept::default();
    if let Pool::Postgres(pool) = db.pool() {
        let mut conn = pool.get().await.map_err(StoreError::pool)?;
        let dropped: Count = diesel::sql_query("SELECT router_drop_usage_partitions($1) AS count")
            .bind::<BigInt, _>(cutoff)
            .get_result(&mut *conn)
            .await?;
        swept.partitions = dropped.count;
    }
    let delete = match db.backend() {
        Backend::Postgres => DELETE_POSTGRES,
        Backend::Sqlite => DELETE_SQLITE,
    };
    swept.records = delete_batches(db, delete, cutoff).await?;
    if db.backend() == Backend::Postgres {
        swept.request_ids = delete_batches(db, DELETE_IDS_POSTGRES, cutoff).await?;
    }
    Ok(swept)
}

/// Runs `statement` (deleting at most [`DELETE_BATCH`] rows older than `cutoff`) until it
/// deletes fewer; returns how many rows it deleted in all.
async fn delete_batches(db: &Db, statement: &'static str, cutoff: i64) -> StoreResult<u64> {
    let mut deleted = 0;
    loop {
        let count = write_tx!(db, |conn| {
            Ok(diesel::sql_query(statement).bind::<BigInt, _>(cutoff).execute(conn).await?)
        })?;
        deleted += count as u64;
        if count < DELETE_BATCH {
            return Ok(deleted);
        }
        // Let waiting writers (usage ingestion) have the database between batches.
        tokio::task::yield_now().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_days_keeps_everything() {
        assert_eq!(cutoff(10 * MICROS_PER_DAY, 0), None);
        assert_eq!(cutoff(10 * MICROS_PER_DAY, 3), Some(7 * MICROS_PER_DAY));
        assert_eq!(cutoff(MICROS_PER_DAY, 3), Some(-2 * MICROS_PER_DAY));
    }
}
