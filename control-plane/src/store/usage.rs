//! Usage records: one per request that was forwarded upstream, and their ingestion.
//!
//! A batch of reports is recorded in one write transaction: every new usage record, one
//! `usage` ledger debit per billed request, the balance and the key and account spend counters,
//! what the reporting leases still hold, and the hourly aggregates that summaries read. A
//! request id already recorded (a replayed batch) is a duplicate and changes nothing: a unique
//! index decides (the usage record's on SQLite, `usage_request_ids` on PostgreSQL), so two
//! control-plane replicas ingesting the same batch at once still bill it once.
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

mod list;
pub mod retention;
mod summary;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

pub use self::list::{
    DEFAULT_LIMIT, MAX_LIMIT, Position, UsageFilter, UsagePage, UsageRow, list, page_limit, position_of,
};
pub use self::summary::{Bucket, By, MAX_BUCKETS, SummaryFilter, Totals, summarize};
use super::{limits::PeriodTotals, utc_day};
use crate::{
    db::{Db, Dialect, HourlyUsage, KeyUsage, LeaseUsage, NewUsage, TxConn, UsageDebit, schema::api_keys},
    error::{StoreError, StoreResult},
    write_tx,
};

/// Most reports one batch may carry.
pub const MAX_BATCH_REPORTS: usize = 10_000;
/// Longest request id accepted.
const MAX_REQUEST_ID_BYTES: usize = 128;
/// Longest model, channel, endpoint, status or lease id accepted.
const MAX_TEXT_BYTES: usize = 1024;
/// More tokens of one kind than any request can use (the largest context windows are a few
/// million tokens): a report claiming this many is not believable, whoever computed it.
pub const MAX_REPORT_TOKENS: i64 = 1_000_000_000;

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
    /// The upstream's usage was not believed and the local count was billed.
    pub usage_adjusted: bool,
    /// The name the client asked for, when it differs from `model` (an alias); empty: the same.
    pub requested_model: String,
    /// The protocol the client spoke (`chat`, `messages` …).
    pub client_protocol: String,
    /// The protocol the upstream spoke (differs from the client's when converted).
    pub upstream_protocol: String,
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
        if let Some((field, value)) = numbers[..4].iter().find(|(_, value)| *value > MAX_REPORT_TOKENS) {
            return Err(StoreError::invalid(format!(
                "report {id:?}: {field} {value} is more than any request can use ({MAX_REPORT_TOKENS})"
            )));
        }
        if self.created_at < 0 {
            return Err(StoreError::invalid(format!("report {id:?}: created_at must not be negative")));
        }
        let texts = [
            ("model", self.model.as_str()),
            ("requested_model", self.requested_model.as_str()),
            ("channel", self.channel.as_str()),
            ("endpoint", self.endpoint.as_str()),
            ("client_protocol", self.client_protocol.as_str()),
            ("upstream_protocol", self.upstream_protocol.as_str()),
            ("status", self.status.as_str()),
            ("lease_id", self.lease_id.as_deref().unwrap_or_default()),
        ];
        // PostgreSQL refuses NUL in text: a report carrying one could never be stored.
        if let Some((field, _)) =
            texts.iter().find(|(_, text)| text.len() > MAX_TEXT_BYTES || text.chars().any(char::is_control))
        {
            return Err(StoreError::invalid(format!(
                "report {id:?}: {field} must be at most {MAX_TEXT_BYTES} bytes without control characters"
            )));
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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ingested {
    /// Reports recorded now.
    pub recorded: u32,
    /// Reports whose request id was recorded before (or earlier in the same batch).
    pub duplicates: u32,
    /// Reports refused as invalid, by their index in the batch, with the reason: no retry
    /// could record them, and nothing of them was recorded (the caller quarantines them).
    pub refused: Vec<(usize, String)>,
}

/// What a batch's newly recorded, billed requests change: account debits (with their ledger
/// entries), key counters and lease holds, each ordered by id so that concurrent batches lock
/// rows in one order (accounts, then keys, then leases) and cannot deadlock.
#[derive(Debug, Default)]
struct Changes<'a> {
    debits: Vec<UsageDebit<'a>>,
    keys: Vec<KeyUsage>,
    leases: Vec<LeaseUsage>,
}

/// An account's billed requests in a batch, and their spend as its daily counter sees it.
#[derive(Debug, Default)]
struct AccountSpend<'a> {
    entries: Vec<(&'a str, i64)>,
    periods: PeriodTotals,
}

/// Sums `billed` (report, its account) per account, key and lease.
fn changes<'a>(billed: impl Iterator<Item = (&'a Report, i64)>, now: i64) -> Changes<'a> {
    let mut debits: BTreeMap<i64, AccountSpend<'a>> = BTreeMap::new();
    let mut keys: BTreeMap<i64, (i64, PeriodTotals)> = BTreeMap::new();
    let mut leases: BTreeMap<(&str, i64), i64> = BTreeMap::new();
    for (report, account_id) in billed {
        let (cost, day) = (report.cost, report.day(now));
        let debit = debits.entry(account_id).or_default();
        debit.entries.push((report.request_id.as_str(), cost));
        debit.periods.add(day, cost);
        let key = keys.entry(report.key_id).or_default();
        key.0 = key.0.saturating_add(cost);
        key.1.add(day, cost);
        if let Some(lease_id) = &report.lease_id {
            let spent = leases.entry((lease_id.as_str(), report.key_id)).or_default();
            *spent = spent.saturating_add(cost);
        }
    }
    Changes {
        debits: debits
            .into_iter()
            .map(|(account_id, spend)| UsageDebit {
                account_id,
                entries: spend.entries,
                day: spend.periods.day.day,
                day_total: spend.periods.day.total,
                week: spend.periods.week.day,
                week_total: spend.periods.week.total,
                month: spend.periods.month.day,
                month_total: spend.periods.month.total,
            })
            .collect(),
        keys: keys
            .into_iter()
            .map(|(key_id, (total, p))| KeyUsage {
                key_id,
                total,
                day: p.day.day,
                day_total: p.day.total,
                week: p.week.day,
                week_total: p.week.total,
                month: p.month.day,
                month_total: p.month.total,
            })
            .collect(),
        leases: leases
            .into_iter()
            .map(|((lease_id, key_id), spent)| LeaseUsage { lease_id: lease_id.to_owned(), key_id, spent })
            .collect(),
    }
}

/// Microseconds in an hour.
pub const MICROS_PER_HOUR: i64 = 3_600_000_000;

/// The first microsecond of the hour `unix_micros` falls in.
pub fn hour_of(unix_micros: i64) -> i64 {
    unix_micros - unix_micros.rem_euclid(MICROS_PER_HOUR)
}

/// Sums newly recorded requests (report, its account, its time) into hourly aggregates,
/// ordered by the table's key; refuses a sum that would overflow.
fn hourly<'a>(recorded: impl Iterator<Item = (&'a Report, i64, i64)>) -> StoreResult<Vec<HourlyUsage>> {
    let overflow = || StoreError::Conflict("a usage total would overflow".into());
    let mut sums: BTreeMap<(i64, i64, i64, &str, &str), HourlyUsage> = BTreeMap::new();
    for (report, account_id, time) in recorded {
        let hour = hour_of(time);
        let key = (account_id, hour, report.key_id, report.model.as_str(), report.channel.as_str());
        let sum = sums.entry(key).or_insert_with(|| HourlyUsage {
            account_id,
            key_id: report.key_id,
            model: report.model.clone(),
            channel: report.channel.clone(),
            hour,
            ..HourlyUsage::default()
        });
        let add =
            |total: &mut i64, value: i64| total.checked_add(value).map(|v| *total = v).ok_or_else(overflow);
        add(&mut sum.requests, 1)?;
        add(&mut sum.input_tokens, report.input_tokens)?;
        add(&mut sum.cached_input_tokens, report.cached_input_tokens)?;
        add(&mut sum.cache_write_tokens, report.cache_write_tokens)?;
        add(&mut sum.output_tokens, report.output_tokens)?;
        add(&mut sum.cost, report.cost)?;
    }
    Ok(sums.into_values().collect())
}

/// Records a batch of reports from data plane `node_id` at time `now` (unix micros), exactly
/// once per request id. Reports that can never be recorded (invalid, naming an unknown key, or
/// whose cost would overflow a balance or counter) are refused one by one and the rest are
/// recorded: one poison report never blocks the others. Only a batch over the size limit is
/// refused whole; any other error is transient and nothing of the batch is acknowledged.
pub async fn ingest(db: &Db, node_id: &str, reports: &[Report], now: i64) -> StoreResult<Ingested> {
    if reports.len() > MAX_BATCH_REPORTS {
        return Err(StoreError::invalid(format!("a batch carries at most {MAX_BATCH_REPORTS} reports")));
    }
    let mut refused = Vec::new();
    let mut valid: Vec<(usize, &Report)> = Vec::with_capacity(reports.len());
    for (index, report) in reports.iter().enumerate() {
        match report.check() {
            Ok(()) => valid.push((index, report)),
            Err(error) => refused.push((index, error.to_string())),
        }
    }
    // Usually one transaction. When a report spoils it (unknown key, overflow), the batch is
    // halved until each such report stands alone: every other report is still recorded.
    let mut recorded = 0;
    let mut parts: Vec<&[(usize, &Report)]> = vec![&valid];
    while let Some(part) = parts.pop() {
        match record(db, node_id, part, now).await {
            Ok(count) => recorded += count,
            Err(error @ (StoreError::Invalid(_) | StoreError::Conflict(_))) => match part {
                [] => {}
                [(index, _)] => refused.push((*index, error.to_string())),
                _ => {
                    let (first, second) = part.split_at(part.len() / 2);
                    parts.push(second);
                    parts.push(first);
                }
            },
            Err(error) => return Err(error),
        }
    }
    refused.sort_unstable();
    let duplicates = reports.len() - recorded - refused.len();
    Ok(Ingested {
        recorded: u32::try_from(recorded).unwrap_or(u32::MAX),
        duplicates: u32::try_from(duplicates).unwrap_or(u32::MAX),
        refused,
    })
}

/// Records checked reports in one transaction; refuses them all when one names an unknown
/// key or a sum would overflow. Returns how many were recorded now.
async fn record(db: &Db, node_id: &str, reports: &[(usize, &Report)], now: i64) -> StoreResult<usize> {
    if reports.is_empty() {
        return Ok(0);
    }
    // First of each request id, ordered by it: UUIDv7 ids sort by time, which gives the ledger
    // a natural order, and every transaction takes unique-index locks in the same order.
    let mut unique: Vec<&Report> = Vec::with_capacity(reports.len());
    let mut seen = HashSet::with_capacity(reports.len());
    for (_, report) in reports {
        if seen.insert(report.request_id.as_str()) {
            unique.push(report);
        }
    }
    unique.sort_by(|a, b| a.request_id.cmp(&b.request_id));
    let key_ids: Vec<i64> = unique.iter().map(|r| r.key_id).collect::<BTreeSet<_>>().into_iter().collect();
    write_tx!(db, |conn| {
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
                usage_adjusted: r.usage_adjusted,
                requested_model: Some(&r.requested_model)
                    .filter(|name| !name.is_empty() && **name != r.model)
                    .cloned(),
                client_protocol: r.client_protocol.clone(),
                upstream_protocol: r.upstream_protocol.clone(),
            })
            .collect();
        let fresh: HashSet<String> = conn.insert_usage(rows, now).await?.into_iter().collect();

        let billed = unique
            .iter()
            .filter(|r| r.cost > 0 && fresh.contains(&r.request_id))
            .map(|r| (*r, owners.get(&r.key_id).copied().unwrap_or_default()));
        let changes = changes(billed, now);
        conn.post_usage(&changes.debits, now).await?;
        let key_count = changes.keys.len();
        if conn.charge_keys(changes.keys).await? != key_count {
            return Err(StoreError::Conflict("a key's spend would overflow".into()));
        }
        // A lease may have ended already: then there is nothing left to lower.
        conn.spend_leases(changes.leases, now).await?;
        // Last: the busiest rows of all (every data plane's requests for a key and model in
        // this hour) stay locked for the shortest time.
        let recorded = unique
            .iter()
            .filter(|r| fresh.contains(&r.request_id))
            .map(|r| (*r, owners.get(&r.key_id).copied().unwrap_or_default(), r.time(now)));
        let hourly = hourly(recorded)?;
        let rows = hourly.len();
        if conn.add_hourly(hourly).await? != rows {
            return Err(StoreError::Conflict("a usage total would overflow".into()));
        }
        Ok(fresh.len())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000_000;

    fn report(id: &str, key_id: i64, cost: i64, created_at: i64, lease_id: Option<&str>) -> Report {
        Report {
            request_id: id.into(),
            key_id,
            cost,
            created_at,
            lease_id: lease_id.map(str::to_owned),
            ..Report::default()
        }
    }

    #[test]
    fn invalid_reports_are_refused() {
        assert!(report("a", 1, 0, 0, None).check().is_ok());
        assert!(report("", 1, 0, 0, None).check().is_err());
        assert!(report("a\nb", 1, 0, 0, None).check().is_err());
        assert!(report(&"x".repeat(129), 1, 0, 0, None).check().is_err());
        assert!(report("a", 1, -1, 0, None).check().is_err());
        assert!(Report { output_tokens: -1, ..report("a", 1, 0, 0, None) }.check().is_err());
        assert!(Report { first_byte_ms: -1, ..report("a", 1, 0, 0, None) }.check().is_err());
        let claimed = 4_500_000_000_000_000;
        assert!(Report { output_tokens: claimed, ..report("a", 1, 0, 0, None) }.check().is_err());
        assert!(Report { cached_input_tokens: claimed, ..report("a", 1, 0, 0, None) }.check().is_err());
        assert!(Report { output_tokens: MAX_REPORT_TOKENS, ..report("a", 1, 0, 0, None) }.check().is_ok());
        assert!(Report { model: "m\0".into(), ..report("a", 1, 0, 0, None) }.check().is_err());
        assert!(Report { status: "x".repeat(2000), ..report("a", 1, 0, 0, None) }.check().is_err());
        assert!(Report { created_at: -1, ..report("a", 1, 0, 0, None) }.check().is_err());
    }

    #[test]
    fn reports_count_on_their_day_but_never_after_today() {
        let now = 10 * DAY + 5;
        assert_eq!(report("a", 1, 1, 9 * DAY + 7, None).day(now), 9);
        assert_eq!(report("a", 1, 1, 0, None).day(now), 10, "no time: ingestion time");
        assert_eq!(report("a", 1, 1, 11 * DAY, None).day(now), 10, "a clock running ahead");
        assert_eq!(report("a", 1, 1, 0, None).time(now), now);
    }

    #[test]
    fn changes_are_summed_per_account_key_and_lease() {
        let now = 10 * DAY;
        let reports = [
            report("r1", 1, 5, now, Some("L1")),
            report("r2", 2, 7, now, Some("L1")),
            report("r3", 1, 11, now - DAY, Some("L1")),
            report("r4", 3, 13, now, None),
        ];
        // Keys 1 and 2 belong to account 100, key 3 to account 200.
        let owner = |key: i64| if key == 3 { 200 } else { 100 };
        let changes = changes(reports.iter().map(|r| (r, owner(r.key_id))), now);
        let debits: Vec<_> =
            changes.debits.iter().map(|d| (d.account_id, d.entries.clone(), d.day, d.day_total)).collect();
        assert_eq!(
            debits,
            [(100, vec![("r1", 5), ("r2", 7), ("r3", 11)], 10, 12), (200, vec![("r4", 13)], 10, 13)]
        );
        let keys: Vec<_> = changes.keys.iter().map(|k| (k.key_id, k.total, k.day, k.day_total)).collect();
        assert_eq!(keys, [(1, 16, 10, 5), (2, 7, 10, 7), (3, 13, 10, 13)]);
        let leases: Vec<_> =
            changes.leases.iter().map(|l| (l.lease_id.as_str(), l.key_id, l.spent)).collect();
        assert_eq!(
            leases,
            [("L1", 1, 16), ("L1", 2, 7)],
            "per lease and key: the update lowers a lease only for its own key"
        );
    }
}
