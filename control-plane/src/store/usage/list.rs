//! Listing usage records: filters and keyset pages over `(created_at, request_id)`, newest
//! first. A page never skips over the records before it (no `OFFSET`): it starts from the
//! position of the last record of the page before, found through an index, so the millionth
//! page costs what the first does.
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::{
    db::{
        Db, TxConn,
        schema::{accounts, usage_records},
    },
    error::{StoreError, StoreResult},
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
    /// The request's id (`x-request-id`), unique.
    pub request_id: String,
    /// The key used.
    pub key_id: i64,
    /// The account billed.
    pub account_id: i64,
    /// Model name as billed.
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
    /// The upstream's usage was not believed and the local count was billed.
    pub usage_adjusted: bool,
    /// The name the client asked for, when it differs from `model` (an alias).
    pub requested_model: Option<String>,
    /// The protocol the client spoke (`chat`, `messages` …).
    pub client_protocol: String,
    /// The protocol the upstream spoke (differs from the client's when converted).
    pub upstream_protocol: String,
}

/// Where a record sits in the listing order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// Its time, unix micros.
    pub created_at: i64,
    /// Its request id (breaks ties between records of the same microsecond).
    pub request_id: String,
}

/// Which records to list.
#[derive(Debug, Clone, Default)]
pub struct UsageFilter<'a> {
    /// Only this account's (by name).
    pub account: Option<&'a str>,
    /// Only this account's (by id).
    pub account_id: Option<i64>,
    /// Only this key's.
    pub key_id: Option<i64>,
    /// Only records created at or after this time (unix micros).
    pub since: Option<i64>,
    /// Only records created before this time (unix micros).
    pub until: Option<i64>,
    /// Only this model's.
    pub model: Option<&'a str>,
    /// Only records with this status.
    pub status: Option<&'a str>,
    /// Only records listed after this position (older).
    pub before: Option<Position>,
    /// At most this many (default [`DEFAULT_LIMIT`], at most [`MAX_LIMIT`]).
    pub limit: Option<i64>,
}

/// One page of records (each with its account's name), newest first.
#[derive(Debug, Clone, Default)]
pub struct UsagePage {
    /// The records.
    pub records: Vec<(UsageRow, String)>,
    /// Whether more records match after the last one.
    pub more: bool,
}

impl UsagePage {
    /// The position to continue from, when more records match.
    pub fn next(&self) -> Option<Position> {
        let (row, _) = self.records.last().filter(|_| self.more)?;
        Some(Position { created_at: row.created_at, request_id: row.request_id.clone() })
    }
}

/// The page size a client asked for: `None` is [`DEFAULT_LIMIT`]; outside 1 to
/// [`MAX_LIMIT`] is refused, never cut.
pub fn page_limit(limit: Option<u32>) -> StoreResult<i64> {
    match limit.map(i64::from) {
        None => Ok(DEFAULT_LIMIT),
        Some(n @ 1..=MAX_LIMIT) => Ok(n),
        Some(n) => Err(StoreError::invalid(format!("limit must be 1 to {MAX_LIMIT}, not {n}"))),
    }
}

/// Where the record of `request_id` sits, for continuing a listing after it.
pub async fn position_of(db: &Db, request_id: &str) -> StoreResult<Position> {
    let created_at = with_conn!(db, |conn| {
        usage_records::table
            .filter(usage_records::request_id.eq(request_id))
            .select(usage_records::created_at)
            .first::<i64>(conn)
            .await
            .optional()?
    });
    let created_at =
        created_at.ok_or_else(|| StoreError::NotFound(format!("usage record {request_id:?}")))?;
    Ok(Position { created_at, request_id: request_id.to_owned() })
}

/// Records matching `filter`, newest first.
pub async fn list(db: &Db, filter: UsageFilter<'_>) -> StoreResult<UsagePage> {
    let limit = filter.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let mut records = with_conn!(db, |conn| {
        let mut query = usage_records::table
            .inner_join(accounts::table.on(accounts::id.eq(usage_records::account_id)))
            .select((UsageRow::as_select(), accounts::name))
            .order((usage_records::created_at.desc(), usage_records::request_id.desc()))
            // One more than asked tells whether another page follows.
            .limit(limit + 1)
            .into_boxed();
        if let Some(name) = filter.account {
            let id = conn.account_id(name).await?;
            query = query.filter(usage_records::account_id.eq(id));
        }
        if let Some(id) = filter.account_id {
            query = query.filter(usage_records::account_id.eq(id));
        }
        if let Some(key_id) = filter.key_id {
            query = query.filter(usage_records::key_id.eq(key_id));
        }
        if let Some(since) = filter.since {
            query = query.filter(usage_records::created_at.ge(since));
        }
        if let Some(until) = filter.until {
            query = query.filter(usage_records::created_at.lt(until));
        }
        if let Some(model) = filter.model {
            query = query.filter(usage_records::model.eq(model));
        }
        if let Some(status) = filter.status {
            query = query.filter(usage_records::status.eq(status));
        }
        if let Some(before) = &filter.before {
            // `created_at <= c` bounds the index range; the rest breaks ties within `c`.
            query = query.filter(usage_records::created_at.le(before.created_at)).filter(
                usage_records::created_at
                    .lt(before.created_at)
                    .or(usage_records::request_id.lt(before.request_id.clone())),
            );
        }
        query.load::<(UsageRow, String)>(conn).await?
    });
    let more = records.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    records.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(UsagePage { records, more })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_outside_the_range_are_refused_not_cut() {
        assert_eq!(page_limit(None).ok(), Some(DEFAULT_LIMIT));
        assert_eq!(page_limit(Some(1)).ok(), Some(1));
        assert_eq!(page_limit(Some(10_000)).ok(), Some(MAX_LIMIT));
        assert!(matches!(page_limit(Some(0)), Err(StoreError::Invalid(_))));
        let error = page_limit(Some(20_000)).err().map(|e| e.to_string());
        assert_eq!(error.as_deref(), Some("limit must be 1 to 10000, not 20000"));
    }
}
