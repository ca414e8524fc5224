//! Usage records: one per request that was forwarded upstream.
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::{
    db::{
        Db, TxConn,
        schema::{accounts, usage_records},
    },
    error::StoreResult,
    with_conn,
};

/// Records listed when no limit is given.
pub const DEFAULT_LIMIT: i64 = 50;
/// Most records one call returns.
pub const MAX_LIMIT: i64 = 10_000;

/// A usage record as stored.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = usage_records, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct UsageRow {
    /// Row id (insertion order).
    pub id: i64,
    /// The request's id (`x-request-id`), unique.
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
    /// `ok`, `incomplete`, `upstream_error`, ...
    pub status: String,
    /// Whole request duration.
    pub duration_ms: i64,
    /// Time to the first upstream byte.
    pub first_byte_ms: i64,
    /// The data plane that served it.
    pub node_id: String,
    /// Unix micros.
    pub created_at: i64,
}

/// Which records to list.
#[derive(Debug, Clone, Default)]
pub struct UsageFilter<'a> {
    /// Only this account's.
    pub account: Option<&'a str>,
    /// Only this key's.
    pub key_id: Option<i64>,
    /// At most this many (default [`DEFAULT_LIMIT`]).
    pub limit: Option<i64>,
}

/// Usage records with their account's name, newest first.
pub async fn list(db: &Db, filter: UsageFilter<'_>) -> StoreResult<Vec<(UsageRow, String)>> {
    let limit = filter.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    with_conn!(db, |conn| {
        let mut query = usage_records::table
            .inner_join(accounts::table.on(accounts::id.eq(usage_records::account_id)))
            .select((UsageRow::as_select(), accounts::name))
            .order(usage_records::id.desc())
            .limit(limit)
            .into_boxed();
        if let Some(name) = filter.account {
            let id = conn.account_id(name).await?;
            query = query.filter(usage_records::account_id.eq(id));
        }
        if let Some(key_id) = filter.key_id {
            query = query.filter(usage_records::key_id.eq(key_id));
        }
        Ok(query.load::<(UsageRow, String)>(conn).await?)
    })
}
