//! Multi-row inserts, which differ per backend: diesel renders SQLite's multi-row `INSERT`
//! only for its own synchronous connection, so on SQLite the statement runs on the wrapped
//! connection's blocking thread (inside the same transaction).
use diesel::{Insertable, SqliteConnection};
use diesel_async::{AsyncPgConnection, RunQueryDsl, sync_connection_wrapper::SyncConnectionWrapper};

use super::schema::{ledger, usage_records};

/// Rows per multi-row INSERT: far below both backends' bound-parameter limits.
pub const INSERT_CHUNK: usize = 1000;

/// A usage record to insert.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = usage_records, treat_none_as_default_value = false)]
pub struct NewUsage {
    /// Unique request id.
    pub request_id: String,
    /// The key used.
    pub key_id: i64,
    /// The account billed.
    pub account_id: i64,
    /// Model name as the client sent it.
    pub model: String,
    /// Channel name.
    pub channel: String,
    /// HTTP endpoint.
    pub endpoint: String,
    /// Uncached prompt tokens.
    pub input_tokens: i64,
    /// Prompt tokens read from a cache.
    pub cached_input_tokens: i64,
    /// Prompt tokens written to a cache.
    pub cache_write_tokens: i64,
    /// Completion tokens.
    pub output_tokens: i64,
    /// Nano-units billed.
    pub cost: i64,
    /// `ok`, `incomplete`, ...
    pub status: String,
    /// Whole request duration.
    pub duration_ms: i64,
    /// Time to the first upstream byte.
    pub first_byte_ms: i64,
    /// The reporting data plane.
    pub node_id: String,
    /// Unix micros.
    pub created_at: i64,
}

/// A ledger entry to insert.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = ledger, treat_none_as_default_value = false)]
pub struct NewLedgerEntry {
    /// The account.
    pub account_id: i64,
    /// `topup`, `redemption`, `usage` or `adjustment`.
    pub kind: &'static str,
    /// Signed amount.
    pub amount: i64,
    /// The balance after this entry.
    pub balance_after: i64,
    /// The billed request, for `usage`.
    pub request_id: Option<String>,
    /// Free text.
    pub note: String,
    /// Unix micros.
    pub created_at: i64,
}

/// Multi-row inserts on either backend.
pub trait BatchInsert: Send {
    /// Inserts usage records whose request id is not yet recorded (the others are skipped);
    /// returns the request ids inserted.
    fn insert_usage(
        &mut self,
        rows: Vec<NewUsage>,
    ) -> impl Future<Output = diesel::QueryResult<Vec<String>>> + Send;

    /// Appends ledger entries.
    fn insert_ledger(
        &mut self,
        rows: Vec<NewLedgerEntry>,
    ) -> impl Future<Output = diesel::QueryResult<()>> + Send;
}

impl BatchInsert for AsyncPgConnection {
    async fn insert_usage(&mut self, rows: Vec<NewUsage>) -> diesel::QueryResult<Vec<String>> {
        let mut inserted = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(INSERT_CHUNK) {
            let ids: Vec<String> = diesel::insert_into(usage_records::table)
                .values(chunk)
                .on_conflict(usage_records::request_id)
                .do_nothing()
                .returning(usage_records::request_id)
                .load(self)
                .await?;
            inserted.extend(ids);
        }
        Ok(inserted)
    }

    async fn insert_ledger(&mut self, rows: Vec<NewLedgerEntry>) -> diesel::QueryResult<()> {
        for chunk in rows.chunks(INSERT_CHUNK) {
            diesel::insert_into(ledger::table).values(chunk).execute(self).await?;
        }
        Ok(())
    }
}

impl BatchInsert for SyncConnectionWrapper<SqliteConnection> {
    async fn insert_usage(&mut self, rows: Vec<NewUsage>) -> diesel::QueryResult<Vec<String>> {
        self.spawn_blocking(move |conn| {
            let mut inserted = Vec::with_capacity(rows.len());
            for chunk in rows.chunks(INSERT_CHUNK) {
                let ids: Vec<String> = diesel::RunQueryDsl::load(
                    diesel::insert_into(usage_records::table)
                        .values(chunk)
                        .on_conflict(usage_records::request_id)
                        .do_nothing()
                        .returning(usage_records::request_id),
                    conn,
                )?;
                inserted.extend(ids);
            }
            Ok(inserted)
        })
        .await
    }

    async fn insert_ledger(&mut self, rows: Vec<NewLedgerEntry>) -> diesel::QueryResult<()> {
        self.spawn_blocking(move |conn| {
            for chunk in rows.chunks(INSERT_CHUNK) {
                diesel::RunQueryDsl::execute(diesel::insert_into(ledger::table).values(chunk), conn)?;
            }
            Ok(())
        })
        .await
    }
}
