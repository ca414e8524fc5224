//! Usage summaries against a real database: random batches of reports (some re-delivered,
//! some repeated within a batch, some refused) are ingested, and every summary must equal the
//! sum of the raw usage records, which must equal what a plain model counted once per request.
//! Plus buckets and ranges, bad arguments, and the migration that backfills aggregates.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashSet};

use common::{Backend, TestDb};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use proptest::{
    prelude::*,
    test_runner::{Config, TestCaseError, TestRunner},
};
use router_control_plane::{
    db::{Db, schema::usage_records},
    error::{StoreError, StoreResult},
    store::{
        accounts as account_store,
        keys::{self, KeySpec},
        usage::{self, Bucket, By, MICROS_PER_HOUR, Report, SummaryFilter, Totals, hour_of},
        utc_day,
    },
    with_conn,
};

/// 2026-12-01T00:00:00Z in unix micros.
const DEC_1: i64 = 1_796_083_200_000_000;
const DAY: i64 = 24 * MICROS_PER_HOUR;
const MODELS: [&str; 3] = ["gpt-a", "gpt-b", "claude-c"];
const CHANNELS: [&str; 2] = ["up-1", "up-2"];
/// Keys 0 and 1 belong to the first account, key 2 to the second.
const KEYS: usize = 3;
const BYS: [By; 5] = [By::Day, By::Hour, By::Model, By::Key, By::Channel];

#[derive(Debug, Clone)]
struct NewReport {
    key: usize,
    model: usize,
    channel: usize,
    /// Micros after DEC_1 (within three days), or none: taken as ingestion time.
    offset: Option<i64>,
    tokens: [i64; 4],
    cost: i64,
    /// Repeat the previous report's id within the batch.
    repeat: bool,
}

#[derive(Debug, Clone)]
struct Batch {
    reports: Vec<NewReport>,
    /// Earlier reports sent again (indexes into everything sent so far).
    replays: Vec<usize>,
    /// A report naming an unknown key rides along (refused alone).
    poison: bool,
    /// Ingestion time: micros after DEC_1.
    now: i64,
}

fn batch() -> impl Strategy<Value = Batch> {
    let report = (
        0..KEYS,
        0..MODELS.len(),
        0..CHANNELS.len(),
        proptest::option::weighted(0.9, 0_i64..3 * DAY),
        [0_i64..5000, 0_i64..500, 0_i64..300, 0_i64..2000],
        0_i64..1_000_000,
        proptest::bool::weighted(0.1),
    )
        .prop_map(|(key, model, channel, offset, tokens, cost, repeat)| NewReport {
            key,
            model,
            channel,
            offset,
            tokens,
            cost,
            repeat,
        });
    (
        proptest::collection::vec(report, 1..12),
        proptest::collection::vec(0_usize..1000, 0..4),
        proptest::bool::weighted(0.15),
        0_i64..3 * DAY,
    )
        .prop_map(|(reports, replays, poison, now)| Batch { reports, replays, poison, now })
}

/// A usage record as the summaries see it.
#[derive(Debug, Clone)]
struct Raw {
    account_id: i64,
    key_id: i64,
    model: String,
    channel: String,
    created_at: i64,
    totals: Totals,
}

fn totals_of(report: &Report) -> Totals {
    Totals {
        requests: 1,
        input_tokens: report.input_tokens,
        cached_input_tokens: report.cached_input_tokens,
        cache_write_tokens: report.cache_write_tokens,
        output_tokens: report.output_tokens,
        cost: report.cost,
    }
}

async fn raw_records(db: &Db) -> StoreResult<Vec<Raw>> {
    type Columns = (i64, i64, String, String, i64, i64, i64, i64, i64, i64);
    let rows = with_conn!(db, |conn| {
        usage_records::table
            .select((
                usage_records::account_id,
                usage_records::key_id,
                usage_records::model,
                usage_records::channel,
                usage_records::created_at,
                usage_records::input_tokens,
                usage_records::cached_input_tokens,
                usage_records::cache_write_tokens,
                usage_records::output_tokens,
                usage_records::cost,
            ))
            .load::<Columns>(conn)
            .await?
    });
    Ok(rows
        .into_iter()
        .map(|r| Raw {
            account_id: r.0,
            key_id: r.1,
            model: r.2,
            channel: r.3,
            created_at: r.4,
            totals: Totals {
                requests: 1,
                input_tokens: r.5,
                cached_input_tokens: r.6,
                cache_write_tokens: r.7,
                output_tokens: r.8,
                cost: r.9,
            },
        })
        .collect())
}

/// What a summary must say, summed the simple way from raw records: the non-empty buckets,
/// in the summary's order.
fn expected(raws: &[Raw], filter: &SummaryFilter<'_>, key_names: &BTreeMap<i64, String>) -> Vec<Bucket> {
    let mut sums: BTreeMap<(i64, String), Totals> = BTreeMap::new();
    for raw in raws {
        let hour = hour_of(raw.created_at);
        let keep = filter.account_id.is_none_or(|id| raw.account_id == id)
            && filter.key_id.is_none_or(|id| raw.key_id == id)
            && filter.since.is_none_or(|since| hour >= since)
            && filter.until.is_none_or(|until| hour < until);
        if !keep {
            continue;
        }
        let group = match filter.by {
            By::Day => (utc_day(hour) * DAY, String::new()),
            By::Hour => (hour, String::new()),
            By::Model => (0, raw.model.clone()),
            By::Key => (raw.key_id, String::new()),
            By::Channel => (0, raw.channel.clone()),
        };
        sums.entry(group).or_default().add(&raw.totals);
    }
    let mut buckets: Vec<Bucket> = sums
        .into_iter()
        .map(|((number, text), totals)| match filter.by {
            By::Day | By::Hour => Bucket { start: Some(number), totals, ..Bucket::default() },
            By::Key => Bucket {
                name: number.to_string(),
                key_id: Some(number),
                key_name: key_names.get(&number).cloned().unwrap_or_default(),
                totals,
                ..Bucket::default()
            },
            By::Model | By::Channel => Bucket { name: text, totals, ..Bucket::default() },
        })
        .collect();
    if !matches!(filter.by, By::Day | By::Hour) {
        buckets.sort_by(|a, b| {
            (b.totals.cost, b.totals.requests)
                .cmp(&(a.totals.cost, a.totals.requests))
                .then(a.name.cmp(&b.name))
        });
    }
    buckets
}

fn check(condition: bool, message: impl FnOnce() -> String) -> Result<(), TestCaseError> {
    if condition { Ok(()) } else { Err(TestCaseError::fail(message())) }
}

/// Compares a summary with the raw records; time buckets compared by start (names are
/// checked in the deterministic tests), empty ones left out.
async fn agrees(
    db: &Db,
    raws: &[Raw],
    filter: SummaryFilter<'_>,
    key_names: &BTreeMap<i64, String>,
) -> Result<(), TestCaseError> {
    let summary =
        usage::summarize(db, filter.clone()).await.map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut got: Vec<Bucket> = summary.into_iter().filter(|b| b.totals.requests > 0).collect();
    for bucket in &mut got {
        if matches!(filter.by, By::Day | By::Hour) {
            bucket.name.clear();
        }
        // Other scenarios' keys (in the same database): their names are not this one's to check.
        if bucket.key_id.is_some_and(|id| !key_names.contains_key(&id)) {
            bucket.key_name.clear();
        }
    }
    let want = expected(raws, &filter, key_names);
    check(got == want, || format!("{filter:?}\n summary {got:?}\n records {want:?}"))
}

async fn scenario(db: &Db, batches: Vec<Batch>, range: (i64, i64)) -> Result<(), TestCaseError> {
    let fail = |e: StoreError| TestCaseError::fail(e.to_string());
    let names = [format!("a-{}", common::random_name(10)), format!("b-{}", common::random_name(10))];
    let mut accounts = Vec::new();
    for name in &names {
        accounts.push(
            account_store::add(db, name, None, Some(1_000_000_000_000), None, None).await.map_err(fail)?.id,
        );
    }
    let mut key_ids = Vec::new();
    let mut key_names = BTreeMap::new();
    for k in 0..KEYS {
        let name = format!("key-{k}");
        let spec = KeySpec {
            account: names[usize::from(k == 2)].clone(),
            name: Some(name.clone()),
            ..KeySpec::default()
        };
        let id = keys::create(db, spec).await.map_err(fail)?.0.id;
        key_ids.push(id);
        key_names.insert(id, name);
    }
    let prefix = common::random_name(8);
    // Every valid report sent, and the first of each request id: what must be counted.
    let mut sent: Vec<Report> = Vec::new();
    let mut counted: BTreeMap<String, (usize, Report)> = BTreeMap::new();
    let mut next_id = 0;
    for (step, b) in batches.iter().enumerate() {
        let now = DEC_1 + b.now;
        let mut reports: Vec<Report> = Vec::new();
        for r in &b.reports {
            let request_id = match (r.repeat, reports.last()) {
                (true, Some(last)) => last.request_id.clone(),
                _ => {
                    next_id += 1;
                    format!("{prefix}-{next_id:05}")
                }
            };
            reports.push(Report {
                request_id,
                key_id: key_ids[r.key],
                model: MODELS[r.model].into(),
                channel: CHANNELS[r.channel].into(),
                endpoint: "/v1/chat/completions".into(),
                input_tokens: r.tokens[0],
                cached_input_tokens: r.tokens[1],
                cache_write_tokens: r.tokens[2],
                output_tokens: r.tokens[3],
                cost: r.cost,
                status: if r.cost > 0 { "ok" } else { "upstream_error" }.into(),
                created_at: r.offset.map_or(0, |o| DEC_1 + o),
                ..Report::default()
            });
        }
        for &i in &b.replays {
            if !sent.is_empty() {
                // A re-delivery: the same report, at another ingestion time.
                reports.push(sent[i % sent.len()].clone());
            }
        }
        let valid = reports.len();
        if b.poison {
            next_id += 1;
            reports.insert(
                0,
                Report { request_id: format!("{prefix}-{next_id:05}"), key_id: -7, ..Report::default() },
            );
        }
        let ingested = usage::ingest(db, "n1", &reports, now).await.map_err(fail)?;
        check(ingested.refused.len() == usize::from(b.poison), || {
            format!("step {step}: refused {ingested:?}")
        })?;
        let mut fresh = 0;
        for report in reports.iter().filter(|r| r.key_id > 0) {
            if !counted.contains_key(&report.request_id) {
                let mut stored = report.clone();
                if stored.created_at == 0 {
                    stored.created_at = now;
                }
                counted.insert(report.request_id.clone(), (step, stored));
                fresh += 1;
            }
            sent.push(report.clone());
        }
        check(ingested.recorded as usize == fresh, || {
            format!("step {step}: recorded {} of {valid}, model {fresh}", ingested.recorded)
        })?;
    }

    let raws = raw_records(db).await.map_err(fail)?;
    // Exactly once: this scenario's records are the first report of each request id.
    let mine: HashSet<i64> = accounts.iter().copied().collect();
    let mut from_records: BTreeMap<(i64, String), Totals> = BTreeMap::new();
    for raw in raws.iter().filter(|r| mine.contains(&r.account_id)) {
        from_records.entry((raw.key_id, raw.model.clone())).or_default().add(&raw.totals);
    }
    let mut from_model: BTreeMap<(i64, String), Totals> = BTreeMap::new();
    for (_, report) in counted.values() {
        from_model.entry((report.key_id, report.model.clone())).or_default().add(&totals_of(report));
    }
    check(from_records == from_model, || format!("records {from_records:?}\n model {from_model:?}"))?;

    // Every summary equals the sum of the raw records, whatever the filter.
    let (since, until) = (DEC_1 + range.0, DEC_1 + range.0 + range.1);
    for by in BYS {
        let all =
            SummaryFilter { account: None, account_id: None, key_id: None, by, since: None, until: None };
        agrees(db, &raws, all.clone(), &key_names).await?;
        agrees(db, &raws, SummaryFilter { account_id: Some(accounts[0]), ..all.clone() }, &key_names).await?;
        agrees(db, &raws, SummaryFilter { account_id: Some(accounts[1]), ..all.clone() }, &key_names).await?;
        agrees(db, &raws, SummaryFilter { key_id: Some(key_ids[1]), ..all.clone() }, &key_names).await?;
        let ranged =
            SummaryFilter { account_id: Some(accounts[0]), since: Some(since), until: Some(until), ..all };
        agrees(db, &raws, ranged.clone(), &key_names).await?;
        agrees(db, &raws, SummaryFilter { until: None, ..ranged.clone() }, &key_names).await?;
        agrees(db, &raws, SummaryFilter { since: None, ..ranged }, &key_names).await?;
    }
    // By name as by id.
    let by_name = usage::summarize(
        db,
        SummaryFilter {
            account: Some(&names[0]),
            account_id: None,
            key_id: None,
            by: By::Model,
            since: None,
            until: None,
        },
    )
    .await
    .map_err(fail)?;
    let by_id = usage::summarize(
        db,
        SummaryFilter {
            account: None,
            account_id: Some(accounts[0]),
            key_id: None,
            by: By::Model,
            since: None,
            until: None,
        },
    )
    .await
    .map_err(fail)?;
    check(by_name == by_id, || format!("by name {by_name:?} != by id {by_id:?}"))
}

fn run(backend: Backend, cases: u32) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let test_db = runtime.block_on(TestDb::create(backend));
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new(config);
    let strategy = (proptest::collection::vec(batch(), 1..12), (0_i64..3 * DAY, 0_i64..2 * DAY));
    let result =
        runner.run(&strategy, |(batches, range)| runtime.block_on(scenario(&test_db.db, batches, range)));
    drop(test_db);
    if let Err(error) = result {
        panic!("{error}");
    }
}

#[test]
fn summaries_equal_the_records_counted_once_on_sqlite() {
    run(Backend::Sqlite, 32);
}

#[test]
fn summaries_equal_the_records_counted_once_on_postgres() {
    run(Backend::Postgres, 16);
}

fn filter(by: By) -> SummaryFilter<'static> {
    SummaryFilter { account: None, account_id: None, key_id: None, by, since: None, until: None }
}

fn report(id: &str, key_id: i64, model: &str, created_at: i64, cost: i64) -> Report {
    Report {
        request_id: id.into(),
        key_id,
        model: model.into(),
        channel: "up-1".into(),
        input_tokens: 10,
        cached_input_tokens: 2,
        cache_write_tokens: 1,
        output_tokens: 5,
        cost,
        status: "ok".into(),
        created_at,
        ..Report::default()
    }
}

fn shown(buckets: &[Bucket]) -> Vec<(String, i64, i64)> {
    buckets.iter().map(|b| (b.name.clone(), b.totals.requests, b.totals.cost)).collect()
}

fn named(rows: &[(&str, i64, i64)]) -> Vec<(String, i64, i64)> {
    rows.iter().map(|(name, requests, cost)| ((*name).to_owned(), *requests, *cost)).collect()
}

async fn buckets_ranges_and_bad_arguments(backend: Backend) {
    let test_db = TestDb::create(backend).await;
    let db = &test_db.db;
    let ann = account_store::add(db, "ann", None, Some(1_000_000), None, None).await.unwrap().id;
    account_store::add(db, "bob", None, Some(1_000_000), None, None).await.unwrap();
    let key = |account: &str, name: &str| KeySpec {
        account: account.into(),
        name: Some(name.into()),
        ..KeySpec::default()
    };
    let k1 = keys::create(db, key("ann", "laptop")).await.unwrap().0.id;
    let k2 = keys::create(db, key("ann", "ci")).await.unwrap().0.id;
    let k3 = keys::create(db, key("bob", "bob's")).await.unwrap().0.id;
    let h = MICROS_PER_HOUR;
    let reports = [
        report("r1", k1, "gpt-a", DEC_1 + h, 100),
        report("r2", k1, "gpt-a", DEC_1 + h + h / 2, 50),
        report("r3", k2, "gpt-b", DEC_1 + 2 * DAY + 5 * h, 30),
        report("r4", k3, "gpt-a", DEC_1 + h, 7),
    ];
    let now = DEC_1 + 3 * DAY;
    assert_eq!(usage::ingest(db, "n1", &reports, now).await.unwrap().recorded, 4);
    // Re-delivered: nothing changes.
    assert_eq!(usage::ingest(db, "n2", &reports, now + h).await.unwrap().duplicates, 4);
    let ann_filter = |by| SummaryFilter { account: Some("ann"), ..filter(by) };

    // Days of a closed range, empty ones included, oldest first.
    let days = SummaryFilter { since: Some(DEC_1), until: Some(DEC_1 + 3 * DAY), ..ann_filter(By::Day) };
    let got = usage::summarize(db, days.clone()).await.unwrap();
    assert_eq!(shown(&got), named(&[("2026-12-01", 2, 150), ("2026-12-02", 0, 0), ("2026-12-03", 1, 30)]));
    assert_eq!(got[1].start, Some(DEC_1 + DAY));
    let totals = got[0].totals;
    assert_eq!(
        (totals.input_tokens, totals.cached_input_tokens, totals.cache_write_tokens, totals.output_tokens),
        (20, 4, 2, 10)
    );
    // Open ranges: only the days with usage.
    let open = usage::summarize(db, SummaryFilter { until: None, ..days.clone() }).await.unwrap();
    assert_eq!(shown(&open), named(&[("2026-12-01", 2, 150), ("2026-12-03", 1, 30)]));
    // Hours count when they start in the range: 00:30 to 03:00 is the hours 01 and 02.
    let hours =
        SummaryFilter { since: Some(DEC_1 + h / 2), until: Some(DEC_1 + 3 * h), ..ann_filter(By::Hour) };
    let got = usage::summarize(db, hours).await.unwrap();
    assert_eq!(shown(&got), named(&[("2026-12-01T01:00:00Z", 2, 150), ("2026-12-01T02:00:00Z", 0, 0)]));
    assert_eq!(got[0].start, Some(DEC_1 + h));
    let empty = SummaryFilter { since: Some(DEC_1 + h), until: Some(DEC_1 + h), ..ann_filter(By::Hour) };
    assert_eq!(usage::summarize(db, empty).await.unwrap(), []);

    // Models, keys and channels: highest cost first.
    let got = usage::summarize(db, ann_filter(By::Model)).await.unwrap();
    assert_eq!(shown(&got), named(&[("gpt-a", 2, 150), ("gpt-b", 1, 30)]));
    let got = usage::summarize(db, filter(By::Model)).await.unwrap();
    assert_eq!(shown(&got), named(&[("gpt-a", 3, 157), ("gpt-b", 1, 30)]), "every account");
    let got = usage::summarize(db, filter(By::Key)).await.unwrap();
    let keyed: Vec<_> = got.iter().map(|b| (b.key_id, b.key_name.as_str(), b.totals.cost)).collect();
    assert_eq!(keyed, [(Some(k1), "laptop", 150), (Some(k2), "ci", 30), (Some(k3), "bob's", 7)]);
    assert_eq!(got[0].name, k1.to_string());
    let got = usage::summarize(db, SummaryFilter { key_id: Some(k2), ..filter(By::Channel) }).await.unwrap();
    assert_eq!(shown(&got), named(&[("up-1", 1, 30)]));
    // An account's summary never shows another account's key.
    let other = SummaryFilter { account_id: Some(ann), key_id: Some(k3), ..filter(By::Model) };
    assert_eq!(usage::summarize(db, other).await.unwrap(), []);

    // Bad arguments are refused with a reason.
    let backwards = SummaryFilter { since: Some(DEC_1 + h), until: Some(DEC_1), ..filter(By::Day) };
    let error = usage::summarize(db, backwards).await.unwrap_err();
    assert!(matches!(&error, StoreError::Invalid(m) if m.contains("`since` must not be later")), "{error}");
    let long = SummaryFilter { since: Some(DEC_1), until: Some(DEC_1 + 10_001 * h), ..filter(By::Hour) };
    let error = usage::summarize(db, long.clone()).await.unwrap_err();
    assert!(matches!(&error, StoreError::Invalid(m) if m.contains("10001 buckets")), "{error}");
    assert_eq!(usage::summarize(db, SummaryFilter { by: By::Day, ..long }).await.unwrap().len(), 417);
    let error = usage::summarize(db, SummaryFilter { account: Some("nobody"), ..filter(By::Day) }).await;
    assert!(matches!(error, Err(StoreError::NotFound(_))), "{error:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn buckets_ranges_and_bad_arguments_on_sqlite() {
    buckets_ranges_and_bad_arguments(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn buckets_ranges_and_bad_arguments_on_postgres() {
    buckets_ranges_and_bad_arguments(Backend::Postgres).await;
}

mod migrations {
    use diesel::{SqliteConnection, migration::MigrationSource};
    use diesel_async::{
        AsyncConnection, AsyncMigrationHarness, AsyncPgConnection, SimpleAsyncConnection,
        sync_connection_wrapper::SyncConnectionWrapper,
    };
    use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

    use super::*;

    const SQLITE: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");
    const POSTGRES: EmbeddedMigrations = embed_migrations!("../migrations/postgres");

    /// Runs the migrations up to and including the one whose name starts with `last`, then
    /// `sql`.
    async fn migrate_until<C>(mut conn: C, source: EmbeddedMigrations, last: &str, sql: &str)
    where
        C: AsyncConnection + SimpleAsyncConnection,
        AsyncMigrationHarness<C>: MigrationHarness<C::Backend>,
        EmbeddedMigrations: MigrationSource<C::Backend>,
    {
        conn = tokio::task::block_in_place(|| {
            let mut harness = AsyncMigrationHarness::new(conn);
            for migration in harness.pending_migrations(source).unwrap() {
                harness.run_migration(&*migration).unwrap();
                if migration.name().to_string().starts_with(last) {
                    break;
                }
            }
            harness.into_inner()
        });
        conn.batch_execute(sql).await.unwrap();
    }

    /// Creates a database migrated up to `last`, with `sql` run on it, then migrated fully.
    pub async fn database_with(backend: Backend, last: &str, sql: &str) -> TestDb {
        TestDb::create_then(backend, async |url: &str| match backend {
            Backend::Sqlite => {
                let path = url.strip_prefix("sqlite://").unwrap();
                let conn = SyncConnectionWrapper::<SqliteConnection>::establish(path).await.unwrap();
                migrate_until(conn, SQLITE, last, sql).await;
            }
            Backend::Postgres => {
                let conn = AsyncPgConnection::establish(url).await.unwrap();
                migrate_until(conn, POSTGRES, last, sql).await;
            }
        })
        .await
    }

    /// `INSERT` of a usage record of account 1.
    pub fn record(id: &str, key_id: i64, model: &str, created_at: i64, cost: i64) -> String {
        format!(
            "INSERT INTO usage_records (request_id, key_id, account_id, model, channel, endpoint, \
               input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, cost, status, \
               duration_ms, first_byte_ms, node_id, created_at, usage_adjusted) \
             VALUES ('{id}', {key_id}, 1, '{model}', 'up-1', '/v1/chat/completions', 10, 2, 1, 5, \
               {cost}, 'ok', 3, 1, 'n1', {created_at}, FALSE);"
        )
    }

    async fn aggregates_are_backfilled_from_existing_records(backend: Backend) {
        let h = MICROS_PER_HOUR;
        let sql = [
            record("old-1", 1, "gpt-a", DEC_1 + 10, 100),
            record("old-2", 1, "gpt-a", DEC_1 + h - 1, 50),
            record("old-3", 2, "gpt-b", DEC_1 + h, 30),
        ]
        .concat();
        let test_db = database_with(backend, "2026-12-01-093500", &sql).await;
        let db = &test_db.db;
        let got =
            usage::summarize(db, SummaryFilter { account_id: Some(1), ..filter(By::Hour) }).await.unwrap();
        assert_eq!(shown(&got), named(&[("2026-12-01T00:00:00Z", 2, 150), ("2026-12-01T01:00:00Z", 1, 30)]));
        assert_eq!(got[0].totals.output_tokens, 10);
        let got = usage::summarize(db, filter(By::Key)).await.unwrap();
        assert_eq!(
            got.iter().map(|b| (b.key_id, b.totals.requests)).collect::<Vec<_>>(),
            [(Some(1), 2), (Some(2), 1)]
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn aggregates_are_backfilled_from_existing_records_on_sqlite() {
        aggregates_are_backfilled_from_existing_records(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn aggregates_are_backfilled_from_existing_records_on_postgres() {
        aggregates_are_backfilled_from_existing_records(Backend::Postgres).await;
    }
}
