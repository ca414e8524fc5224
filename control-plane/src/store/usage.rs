//! Usage records: one per request that was forwarded upstream, and their ingestion.
//!
//! A batch of reports is recorded in one write transaction: every new usage record, one
//! `usage` ledger debit per billed request, the balance and the key and account spend counters,
//! and what the reporting leases still hold. A request id already recorded (a replayed batch)
//! is a duplicate and changes nothing: the usage record's unique index decides, so two
//! control-plane replicas ingesting the same batch at once still bill it once.
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use diesel::{dsl::case_when, prelude::*, sql_types::BigInt};
use diesel_async::RunQueryDsl;

use super::{DayTotal, utc_day};
use crate::{
    db::{
        BatchInsert, Db, NewUsage, TxConn, UsageDebit,
        schema::{accounts, api_keys, leases, usage_records},
    },
    error::{StoreError, StoreResult},
    with_conn, write_tx,
};

/// Most reports one batch may carry.
pub const MAX_BATCH_REPORTS: usize = 10_000;
/// Longest request id accepted.
const MAX_REQUEST_ID_BYTES: usize = 128;

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

/// One finished request as a data plane reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Unique id (UUIDv7, the `x-request-id`).
    pub request_id: String,
    /// The key used.
    pub key_id: i64,
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
    /// Nano-units to bill.
    pub cost: i64,
    /// `ok`, `incomplete`, `upstream_error`, ...
    pub status: String,
    /// When the request was served, unix micros (0: unknown, taken as ingestion time).
    pub created_at: i64,
    /// Whole request duration.
    pub duration_ms: i64,
    /// Time to the first upstream byte.
    pub first_byte_ms: i64,
    /// The lease the request was reserved from.
    pub lease_id: Option<String>,
}

impl Report {
    /// Refuses a report no retry could make valid.
    pub fn check(&self) -> StoreResult<()> {
        let id = &self.request_id;
        if id.is_empty() || id.len() > MAX_REQUEST_ID_BYTES || id.chars().any(char::is_control) {
            return Err(StoreError::invalid(format!(
                "request id {id:?} must be 1 to {MAX_REQUEST_ID_BYTES} bytes without control characters"
            )));
        }
        let numbers = [
            ("input_tokens", self.input_tokens),
            ("cached_input_tokens", self.cached_input_tokens),
            ("cache_write_tokens", self.cache_write_tokens),
            ("output_tokens", self.output_tokens),
            ("cost", self.cost),
            ("duration_ms", self.duration_ms),
            ("first_byte_ms", self.first_byte_ms),
        ];
        if let Some((field, _)) = numbers.iter().find(|(_, value)| *value < 0) {
            return Err(StoreError::invalid(format!("report {id:?}: {field} must not be negative")));
        }
        Ok(())
    }

    /// When it happened: its own time, or `now` when it carries none.
    fn time(&self, now: i64) -> i64 {
        if self.created_at > 0 { self.created_at } else { now }
    }

    /// The UTC day its cost counts on: never later than today, so that a data plane whose
    /// clock runs ahead cannot start tomorrow's daily counters early.
    fn day(&self, now: i64) -> i64 {
        utc_day(self.time(now)).min(utc_day(now))
    }
}

/// What one batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ingested {
    /// Reports recorded now.
    pub recorded: u32,
    /// Reports whose request id was recorded before (or earlier in the same batch).
    pub duplicates: u32,
}

/// Billed requests of one account within a batch.
#[derive(Debug, Default)]
struct AccountSpend<'a> {
    entries: Vec<(&'a str, i64)>,
    day: DayTotal,
}

/// Spend of one key within a batch.
#[derive(Debug, Default)]
struct KeySpend {
    total: i64,
    day: DayTotal,
}

/// Records a batch of reports from data plane `node_id` at time `now` (unix micros), exactly
/// once per request id, in one transaction. Refuses the whole batch when a report is invalid
/// or names an unknown key: retrying cannot fix that.
pub async fn ingest(db: &Db, node_id: &str, reports: &[Report], now: i64) -> StoreResult<Ingested> {
    if reports.len() > MAX_BATCH_REPORTS {
        return Err(StoreError::invalid(format!("a batch carries at most {MAX_BATCH_REPORTS} reports")));
    }
    reports.iter().try_for_each(Report::check)?;
    // First of each request id, ordered by it: UUIDv7 ids sort by time, which gives the ledger
    // a natural order, and every transaction takes unique-index locks in the same order.
    let mut unique: Vec<&Report> = Vec::with_capacity(reports.len());
    let mut seen = HashSet::with_capacity(reports.len());
    for report in reports {
        if seen.insert(report.request_id.as_str()) {
            unique.push(report);
        }
    }
    unique.sort_by(|a, b| a.request_id.cmp(&b.request_id));
    let key_ids: Vec<i64> = unique.iter().map(|r| r.key_id).collect::<BTreeSet<_>>().into_iter().collect();
    let total = u32::try_from(reports.len()).unwrap_or(u32::MAX);

    let recorded = write_tx!(db, |conn| {
        let owners: HashMap<i64, i64> = api_keys::table
            .filter(api_keys::id.eq_any(&key_ids))
            .select((api_keys::id, api_keys::account_id))
            .load::<(i64, i64)>(conn)
            .await?
            .into_iter()
            .collect();
        if let Some(report) = unique.iter().find(|r| !owners.contains_key(&r.key_id)) {
            return Err(StoreError::invalid(format!(
                "report {:?} names unknown key {}",
                report.request_id, report.key_id
            )));
        }
        let rows: Vec<NewUsage> = unique
            .iter()
            .map(|r| NewUsage {
                request_id: r.request_id.clone(),
                key_id: r.key_id,
                account_id: owners.get(&r.key_id).copied().unwrap_or_default(),
                model: r.model.clone(),
                channel: r.channel.clone(),
                endpoint: r.endpoint.clone(),
                input_tokens: r.input_tokens,
                cached_input_tokens: r.cached_input_tokens,
                cache_write_tokens: r.cache_write_tokens,
                output_tokens: r.output_tokens,
                cost: r.cost,
                status: r.status.clone(),
                duration_ms: r.duration_ms,
                first_byte_ms: r.first_byte_ms,
                node_id: node_id.to_owned(),
                created_at: r.time(now),
            })
            .collect();
        let fresh: HashSet<String> = conn.insert_usage(rows).await?.into_iter().collect();

        // Aggregate the billed requests; maps ordered by id so that concurrent batches lock
        // rows in one order (accounts, then keys, then leases) and cannot deadlock.
        let mut debits: BTreeMap<i64, AccountSpend<'_>> = BTreeMap::new();
        let mut keys: BTreeMap<i64, KeySpend> = BTreeMap::new();
        let mut held: BTreeMap<(&str, i64), i64> = BTreeMap::new();
        for report in unique.iter().filter(|r| r.cost > 0 && fresh.contains(&r.request_id)) {
            let (cost, day) = (report.cost, report.day(now));
            let account_id = owners.get(&report.key_id).copied().unwrap_or_default();
            let debit = debits.entry(account_id).or_default();
            debit.entries.push((report.request_id.as_str(), cost));
            debit.day.add(day, cost);
            let key = keys.entry(report.key_id).or_default();
            key.total = key.total.saturating_add(cost);
            key.day.add(day, cost);
            if let Some(lease_id) = &report.lease_id {
                let spent = held.entry((lease_id.as_str(), report.key_id)).or_default();
                *spent = spent.saturating_add(cost);
            }
        }
        for (account_id, spend) in &debits {
            let debit = UsageDebit {
                account_id: *account_id,
                entries: &spend.entries,
                day: spend.day.day,
                day_total: spend.day.total,
                now,
            };
            conn.post_usage(debit).await?;
        }
        for (key_id, spend) in &keys {
            let (day, day_total, total) = (spend.day.day, spend.day.total, spend.total);
            let updated = diesel::update(
                api_keys::table
                    .filter(api_keys::id.eq(key_id))
                    .filter(api_keys::spent.le(i64::MAX - total))
                    .filter(api_keys::spent_today.le(i64::MAX - day_total)),
            )
            .set((
                api_keys::spent.eq(api_keys::spent + total),
                api_keys::spent_today.eq(case_when(
                    api_keys::spent_day.eq(day),
                    api_keys::spent_today + day_total,
                )
                .when(api_keys::spent_day.lt(day), day_total.into_sql::<BigInt>())
                .otherwise(api_keys::spent_today)),
                api_keys::spent_day.eq(case_when(api_keys::spent_day.lt(day), day.into_sql::<BigInt>())
                    .otherwise(api_keys::spent_day)),
            ))
            .execute(conn)
            .await?;
            if updated == 0 {
                return Err(StoreError::Conflict(format!("the spend of key {key_id} would overflow")));
            }
        }
        for ((lease_id, key_id), cost) in &held {
            // The lease may have ended already: then there is nothing left to lower.
            diesel::update(leases::table.filter(leases::id.eq(*lease_id)).filter(leases::key_id.eq(key_id)))
                .set((
                    leases::held.eq(case_when(leases::held.gt(cost), leases::held - cost).otherwise(0_i64)),
                    leases::updated_at.eq(now),
                ))
                .execute(conn)
                .await?;
        }
        Ok(fresh.len())
    })?;
    let recorded = u32::try_from(recorded).unwrap_or(u32::MAX);
    Ok(Ingested { recorded, duplicates: total - recorded })
}
