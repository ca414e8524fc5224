//! Usage summaries: requests, tokens and cost per day, hour, model, key or channel, read from
//! the hourly aggregates (never from the records), so a summary costs what the number of
//! aggregate rows in its range costs, however many requests they count.
use std::collections::{BTreeMap, HashMap};

use diesel::{dsl::sql, prelude::*, sql_types::BigInt};
use diesel_async::RunQueryDsl;
use time::{OffsetDateTime, macros::format_description};

use super::{MICROS_PER_HOUR, hour_of};
use crate::{
    db::{
        Db, TxConn,
        schema::{api_keys, usage_hourly},
    },
    error::{StoreError, StoreResult},
    store::utc_day,
    with_conn,
};

/// Most buckets one summary has.
pub const MAX_BUCKETS: usize = 10_000;
/// Microseconds in a UTC day.
const MICROS_PER_DAY: i64 = 24 * MICROS_PER_HOUR;

/// What a summary's buckets are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    /// UTC days.
    Day,
    /// UTC hours.
    Hour,
    /// Models.
    Model,
    /// Keys.
    Key,
    /// Channels.
    Channel,
}

impl By {
    /// Parses `day`, `hour`, `model`, `key` or `channel`.
    pub fn parse(text: &str) -> StoreResult<By> {
        match text {
            "day" => Ok(By::Day),
            "hour" => Ok(By::Hour),
            "model" => Ok(By::Model),
            "key" => Ok(By::Key),
            "channel" => Ok(By::Channel),
            "" => Err(StoreError::invalid("`by` is required: day, hour, model, key or channel")),
            other => Err(StoreError::invalid(format!(
                "`by` must be day, hour, model, key or channel, not {other:?}"
            ))),
        }
    }

    fn is_time(self) -> bool {
        matches!(self, By::Day | By::Hour)
    }
}

/// Requests, tokens and cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Requests.
    pub requests: i64,
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
}

impl Totals {
    /// Adds `other` (saturating: an aggregate never exceeds what an `i64` holds).
    pub fn add(&mut self, other: &Totals) {
        self.requests = self.requests.saturating_add(other.requests);
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.cached_input_tokens = self.cached_input_tokens.saturating_add(other.cached_input_tokens);
        self.cache_write_tokens = self.cache_write_tokens.saturating_add(other.cache_write_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
        self.cost = self.cost.saturating_add(other.cost);
    }
}

/// One bucket of a summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bucket {
    /// A UTC day `YYYY-MM-DD`, an hour `YYYY-MM-DDTHH:00:00Z`, a model, a key id or a channel.
    pub name: String,
    /// Days and hours: the bucket's first microsecond.
    pub start: Option<i64>,
    /// Keys: the key's id.
    pub key_id: Option<i64>,
    /// Keys: the key's name.
    pub key_name: String,
    /// What the bucket counts.
    pub totals: Totals,
}

/// Which usage to summarize, and how.
#[derive(Debug, Clone)]
pub struct SummaryFilter<'a> {
    /// Only this account's (by name).
    pub account: Option<&'a str>,
    /// Only this account's (by id).
    pub account_id: Option<i64>,
    /// Only this key's.
    pub key_id: Option<i64>,
    /// The buckets.
    pub by: By,
    /// Only hours starting at or after this time (unix micros).
    pub since: Option<i64>,
    /// Only hours starting before this time (unix micros).
    pub until: Option<i64>,
}

type Row<G> = (G, i64, i64, i64, i64, i64, i64);

fn totals<G>(row: &Row<G>) -> Totals {
    Totals {
        requests: row.1,
        input_tokens: row.2,
        cached_input_tokens: row.3,
        cache_write_tokens: row.4,
        output_tokens: row.5,
        cost: row.6,
    }
}

/// The hours a range covers: the first one starting at or after `since`, and the end
/// (exclusive). `None` when open on either side.
fn hours(since: Option<i64>, until: Option<i64>) -> Option<(i64, i64)> {
    let (since, until) = (since?, until?);
    let first = hour_of(since.saturating_add(MICROS_PER_HOUR - 1));
    Some((first, until))
}

/// How many buckets of `by` (a day or an hour) the hours from `first` to `end` fill.
fn bucket_count(by: By, first: i64, end: i64) -> i64 {
    if end <= first {
        return 0;
    }
    let last = hour_of(end - 1);
    match by {
        By::Hour => (last - first) / MICROS_PER_HOUR + 1,
        _ => utc_day(last) - utc_day(first) + 1,
    }
}

fn too_many(count: impl std::fmt::Display, by: By) -> StoreError {
    let hint =
        if by == By::Hour { "narrow the range, or sum by day" } else { "narrow the range or the selection" };
    StoreError::invalid(format!("the summary would have {count} buckets, more than {MAX_BUCKETS}: {hint}"))
}

/// Formats a time as a day or hour bucket name.
fn label(by: By, start: i64) -> String {
    let time = OffsetDateTime::from_unix_timestamp_nanos(i128::from(start) * 1000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let formatted = match by {
        By::Hour => time.format(format_description!("[year]-[month]-[day]T[hour]:00:00Z")),
        _ => time.format(format_description!("[year]-[month]-[day]")),
    };
    formatted.unwrap_or_default()
}

/// Reads grouped sums of the hourly aggregates matching the filter, grouped by `$column`.
macro_rules! grouped {
    ($conn:ident, $filter:ident, $account:ident, $column:expr, $group:ty) => {{
        let mut query = usage_hourly::table
            .group_by($column)
            .select((
                $column,
                sql::<BigInt>("CAST(SUM(requests) AS BIGINT)"),
                sql::<BigInt>("CAST(SUM(input_tokens) AS BIGINT)"),
                sql::<BigInt>("CAST(SUM(cached_input_tokens) AS BIGINT)"),
                sql::<BigInt>("CAST(SUM(cache_write_tokens) AS BIGINT)"),
                sql::<BigInt>("CAST(SUM(output_tokens) AS BIGINT)"),
                sql::<BigInt>("CAST(SUM(cost) AS BIGINT)"),
            ))
            .into_boxed();
        if let Some(id) = $account {
            query = query.filter(usage_hourly::account_id.eq(id));
        }
        if let Some(id) = $filter.account_id {
            query = query.filter(usage_hourly::account_id.eq(id));
        }
        if let Some(id) = $filter.key_id {
            query = query.filter(usage_hourly::key_id.eq(id));
        }
        if let Some(since) = $filter.since {
            query = query.filter(usage_hourly::hour.ge(since));
        }
        if let Some(until) = $filter.until {
            query = query.filter(usage_hourly::hour.lt(until));
        }
        if $filter.by != By::Day {
            // One more than allowed tells that there are too many.
            query = query.limit(MAX_BUCKETS as i64 + 1);
        }
        query.load::<Row<$group>>($conn).await?
    }};
}

/// Usage per bucket: days and hours oldest first (every one of the range, empty ones
/// included, when both `since` and `until` are given), the others by cost, highest first.
pub async fn summarize(db: &Db, filter: SummaryFilter<'_>) -> StoreResult<Vec<Bucket>> {
    if let (Some(since), Some(until)) = (filter.since, filter.until)
        && since > until
    {
        return Err(StoreError::invalid("`since` must not be later than `until`"));
    }
    let range = hours(filter.since, filter.until).filter(|_| filter.by.is_time());
    if let Some((first, end)) = range {
        let count = bucket_count(filter.by, first, end);
        if count > MAX_BUCKETS as i64 {
            return Err(too_many(count, filter.by));
        }
    }
    let by = filter.by;
    let mut buckets = match by {
        By::Day | By::Hour => {
            let rows = with_conn!(db, |conn| {
                let account = match filter.account {
                    Some(name) => Some(conn.account_id(name).await?),
                    None => None,
                };
                grouped!(conn, filter, account, usage_hourly::hour, i64)
            });
            time_buckets(by, rows, range)?
        }
        By::Model | By::Channel => {
            let rows = with_conn!(db, |conn| {
                let account = match filter.account {
                    Some(name) => Some(conn.account_id(name).await?),
                    None => None,
                };
                if by == By::Model {
                    grouped!(conn, filter, account, usage_hourly::model, String)
                } else {
                    grouped!(conn, filter, account, usage_hourly::channel, String)
                }
            });
            rows.iter()
                .map(|row| Bucket { name: row.0.clone(), totals: totals(row), ..Bucket::default() })
                .collect()
        }
        By::Key => {
            let (rows, names) = with_conn!(db, |conn| {
                let account = match filter.account {
                    Some(name) => Some(conn.account_id(name).await?),
                    None => None,
                };
                let rows = grouped!(conn, filter, account, usage_hourly::key_id, i64);
                let ids: Vec<i64> = rows.iter().map(|row| row.0).collect();
                let names: HashMap<i64, String> = api_keys::table
                    .filter(api_keys::id.eq_any(&ids))
                    .select((api_keys::id, api_keys::name))
                    .load::<(i64, String)>(conn)
                    .await?
                    .into_iter()
                    .collect();
                (rows, names)
            });
            rows.iter()
                .map(|row| Bucket {
                    name: row.0.to_string(),
                    key_id: Some(row.0),
                    key_name: names.get(&row.0).cloned().unwrap_or_default(),
                    totals: totals(row),
                    ..Bucket::default()
                })
                .collect()
        }
    };
    if buckets.len() > MAX_BUCKETS {
        return Err(too_many(format!("over {}", buckets.len() - 1), by));
    }
    if !by.is_time() {
        buckets.sort_by(|a, b| {
            (b.totals.cost, b.totals.requests)
                .cmp(&(a.totals.cost, a.totals.requests))
                .then(a.name.cmp(&b.name))
        });
    }
    Ok(buckets)
}

/// Day or hour buckets from per-hour rows, oldest first; with a closed `range`, every bucket
/// of it, empty ones included.
fn time_buckets(by: By, rows: Vec<Row<i64>>, range: Option<(i64, i64)>) -> StoreResult<Vec<Bucket>> {
    let start_of = |hour: i64| if by == By::Day { utc_day(hour) * MICROS_PER_DAY } else { hour };
    let step = if by == By::Day { MICROS_PER_DAY } else { MICROS_PER_HOUR };
    let mut sums: BTreeMap<i64, Totals> = BTreeMap::new();
    if let Some((first, end)) = range
        && end > first
    {
        let mut start = start_of(first);
        while start <= start_of(hour_of(end - 1)) {
            sums.insert(start, Totals::default());
            start += step;
        }
    }
    for row in &rows {
        sums.entry(start_of(row.0)).or_default().add(&totals(row));
        if sums.len() > MAX_BUCKETS {
            return Err(too_many(format!("over {MAX_BUCKETS}"), by));
        }
    }
    Ok(sums
        .into_iter()
        .map(|(start, totals)| Bucket {
            name: label(by, start),
            start: Some(start),
            totals,
            ..Bucket::default()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEC_1: i64 = 1_796_083_200_000_000;

    #[test]
    fn groupings_parse_and_bad_ones_are_named() {
        assert_eq!(By::parse("day").ok(), Some(By::Day));
        assert_eq!(By::parse("channel").ok(), Some(By::Channel));
        let error = By::parse("week").err().map(|e| e.to_string());
        assert_eq!(error.as_deref(), Some("`by` must be day, hour, model, key or channel, not \"week\""));
        assert!(matches!(By::parse(""), Err(StoreError::Invalid(_))));
    }

    #[test]
    fn ranges_count_whole_hours_and_the_days_they_touch() {
        let hour = MICROS_PER_HOUR;
        assert_eq!(hours(Some(DEC_1 + 1), Some(DEC_1 + 3 * hour)), Some((DEC_1 + hour, DEC_1 + 3 * hour)));
        assert_eq!(hours(Some(DEC_1), None), None);
        assert_eq!(bucket_count(By::Hour, DEC_1, DEC_1 + 3 * hour), 3);
        assert_eq!(bucket_count(By::Hour, DEC_1, DEC_1 + 3 * hour + 1), 4);
        assert_eq!(bucket_count(By::Hour, DEC_1, DEC_1), 0);
        assert_eq!(bucket_count(By::Day, DEC_1 + 23 * hour, DEC_1 + 25 * hour), 2);
        assert_eq!(bucket_count(By::Day, DEC_1, DEC_1 + 24 * hour), 1);
        assert_eq!(label(By::Day, DEC_1 + 5 * hour), "2026-12-01");
        assert_eq!(label(By::Hour, DEC_1 + 5 * hour), "2026-12-01T05:00:00Z");
    }

    #[test]
    fn time_buckets_fill_the_range_and_sum_days() {
        let hour = MICROS_PER_HOUR;
        let row = |h: i64, cost: i64| (DEC_1 + h * hour, 1, 10, 0, 0, 5, cost);
        let rows = vec![row(1, 3), row(2, 4), row(30, 5)];
        let days = time_buckets(By::Day, rows.clone(), Some((DEC_1, DEC_1 + 72 * hour))).unwrap();
        let costs: Vec<_> =
            days.iter().map(|b| (b.name.as_str(), b.totals.cost, b.totals.requests)).collect();
        assert_eq!(costs, [("2026-12-01", 7, 2), ("2026-12-02", 5, 1), ("2026-12-03", 0, 0)]);
        assert_eq!(days[1].start, Some(DEC_1 + 24 * hour));
        let open = time_buckets(By::Hour, rows, None).unwrap();
        assert_eq!(open.len(), 3, "no range: only hours with usage");
    }
}
