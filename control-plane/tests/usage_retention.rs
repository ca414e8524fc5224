//! Retention of raw usage records, with the clock under the test's control: records older than
//! the retention go (on PostgreSQL whole monthly partitions are dropped), aggregates, ledger and
//! balances stay, keyset pages and exactly-once ingestion still hold, and partitions are made
//! ahead of time (a record of a month without one moves into it when it is made).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;

use common::{Backend, TestDb};
use diesel::{QueryableByName, sql_types::Text};
use diesel_async::RunQueryDsl;
use router_control_plane::{
    db::{Db, Pool},
    store::{
        accounts as account_store,
        keys::{self, KeySpec},
        ledger as ledger_store,
        usage::{self, By, Report, SummaryFilter, UsageFilter, retention},
    },
};

const DAY: i64 = 86_400_000_000;
/// 2020-08-01T00:00:00Z, and the first days of the months after it, in unix micros (long ago:
/// the migrations made partitions around the real time, which these months stay clear of).
const AUG_1: i64 = 1_596_240_000_000_000;
const SEP_1: i64 = 1_598_918_400_000_000;
const OCT_1: i64 = 1_601_510_400_000_000;
const NOV_1: i64 = 1_604_188_800_000_000;
const DEC_1: i64 = 1_606_780_800_000_000;
const JAN_1: i64 = 1_609_459_200_000_000;
const FEB_1: i64 = 1_612_137_600_000_000;
const MAR_1: i64 = 1_614_556_800_000_000;

fn report(id: &str, key_id: i64, created_at: i64, cost: i64) -> Report {
    Report {
        request_id: id.into(),
        key_id,
        model: "gpt-a".into(),
        channel: "up".into(),
        input_tokens: 100,
        output_tokens: 10,
        cost,
        status: "ok".into(),
        created_at,
        ..Report::default()
    }
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

/// PostgreSQL: the usage partitions, by name; where the record `request_id` lives.
async fn partitions(db: &Db, request_id: &str) -> (Vec<String>, String) {
    let Pool::Postgres(pool) = db.pool() else { panic!("not PostgreSQL") };
    let mut conn = pool.get().await.unwrap();
    let names: Vec<Name> = diesel::sql_query(
        "SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = 'usage_records'::regclass ORDER BY 1",
    )
    .load(&mut *conn)
    .await
    .unwrap();
    let home: Name =
        diesel::sql_query("SELECT tableoid::regclass::text AS name FROM usage_records WHERE request_id = $1")
            .bind::<Text, _>(request_id)
            .get_result(&mut *conn)
            .await
            .unwrap();
    (names.into_iter().map(|n| n.name).collect(), home.name)
}

/// Every record, page by page (keysets of 7), newest first.
async fn every_record(db: &Db) -> Vec<String> {
    let mut ids = Vec::new();
    let mut before = None;
    loop {
        let page =
            usage::list(db, UsageFilter { limit: Some(7), before, ..UsageFilter::default() }).await.unwrap();
        ids.extend(page.records.iter().map(|(row, _)| row.request_id.clone()));
        before = page.next();
        if before.is_none() {
            return ids;
        }
    }
}

fn by_day() -> SummaryFilter<'static> {
    SummaryFilter { account: None, account_id: None, key_id: None, by: By::Day, since: None, until: None }
}

async fn retention_keeps_aggregates_and_the_ledger(backend: Backend) {
    let test_db = TestDb::create(backend).await;
    let db = &test_db.db;
    let postgres = backend == Backend::Postgres;
    account_store::add(db, "ann", None, Some(1_000_000_000), None, None).await.unwrap();
    let key = keys::create(db, KeySpec { account: "ann".into(), ..KeySpec::default() }).await.unwrap().0.id;

    // The control plane, run on Aug 1, makes Aug to Oct.
    assert_eq!(retention::prepare(db, AUG_1).await.unwrap(), if postgres { 3 } else { 0 });
    assert_eq!(retention::prepare(db, AUG_1 + DAY).await.unwrap(), 0, "made once");
    // Records over five months (Nov and Dec have no partition yet: the default one takes
    // them), many on Dec 20 to page through, and one from a clock far ahead.
    let mut sent = vec![
        report("aug", key, AUG_1 + 9 * DAY, 100),
        report("sep", key, SEP_1 + 9 * DAY, 200),
        report("oct", key, OCT_1 + 9 * DAY, 300),
        report("nov", key, NOV_1 + 9 * DAY, 400),
        report("dec-10", key, DEC_1 + 9 * DAY, 500),
    ];
    sent.extend((0..30).map(|i| report(&format!("dec-20-{i:02}"), key, DEC_1 + 19 * DAY + i % 4, 10)));
    sent.push(report("mar", key, MAR_1 + 2 * DAY, 1));
    for r in &sent {
        // Each ingested when it happened.
        assert_eq!(
            usage::ingest(db, "n1", std::slice::from_ref(r), r.created_at + 1_000).await.unwrap().recorded,
            1
        );
    }
    let all: Vec<String> = every_record(db).await;
    assert_eq!(all.len(), sent.len());
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), sent.len(), "each record once");
    let summary = usage::summarize(db, by_day()).await.unwrap();
    let ledger = ledger_store::list(db, Some("ann"), 1000).await.unwrap();
    let balance = account_store::get(db, "ann").await.unwrap().balance;
    assert_eq!(balance, 1_000_000_000 - 1801);

    if postgres {
        let (names, home) = partitions(db, "nov").await;
        assert_eq!(home, "usage_records_default");
        for month in ["p202008", "p202009", "p202010"] {
            assert!(names.contains(&format!("usage_records_{month}")), "{month}: {names:?}");
        }
        assert_eq!(partitions(db, "dec-10").await.1, "usage_records_default");
        // Dec 1: Dec to Feb are made, and December's records move into their partition.
        assert_eq!(retention::prepare(db, DEC_1).await.unwrap(), 3);
        assert_eq!(partitions(db, "dec-10").await.1, "usage_records_p202012");
        assert_eq!(partitions(db, "dec-20-07").await.1, "usage_records_p202012");
        // Feb 1: March and April are made, and March's record moves too.
        assert_eq!(retention::prepare(db, FEB_1).await.unwrap(), 2);
        assert_eq!(partitions(db, "mar").await.1, "usage_records_p202103");
        assert_eq!(every_record(db).await, all, "moving records between partitions changes no listing");
    }

    // Retention 0 keeps everything.
    assert_eq!(retention::sweep(db, MAR_1, 0).await.unwrap(), retention::Swept::default());
    assert_eq!(every_record(db).await.len(), sent.len());

    // Jan 15 with 30 days: everything before Dec 16 goes.
    let now = JAN_1 + 14 * DAY;
    let swept = retention::sweep(db, now, 30).await.unwrap();
    if postgres {
        // Aug to Oct whole; Nov (default partition) and Dec 10 row by row.
        assert_eq!((swept.partitions, swept.records), (3, 2), "{swept:?}");
        assert_eq!(swept.request_ids, 5);
        let (names, _) = partitions(db, "mar").await;
        assert!(!names.iter().any(|n| n.contains("p20200") || n.contains("p202010")), "{names:?}");
        assert!(names.contains(&"usage_records_p202012".to_owned()), "{names:?}");
    } else {
        assert_eq!((swept.partitions, swept.records), (0, 5), "{swept:?}");
    }
    let kept = every_record(db).await;
    let want: Vec<String> =
        all.iter().filter(|id| id.starts_with("dec-20") || *id == "mar").cloned().collect();
    assert_eq!(kept, want, "keyset pages over what is left, in order, each once");
    assert_eq!(
        retention::sweep(db, now, 30).await.unwrap(),
        retention::Swept::default(),
        "nothing left to do"
    );

    // Summaries, the ledger and the balance are what they were.
    assert_eq!(usage::summarize(db, by_day()).await.unwrap(), summary);
    assert_eq!(ledger_store::list(db, Some("ann"), 1000).await.unwrap(), ledger);
    assert_eq!(account_store::get(db, "ann").await.unwrap().balance, balance);

    // Exactly once still: a kept record re-delivered is a duplicate; a deleted one's request is
    // remembered by the ledger and refused, never billed twice.
    let again = usage::ingest(db, "n2", &[sent[10].clone(), sent[4].clone()], now).await.unwrap();
    assert_eq!((again.recorded, again.duplicates), (0, 1), "{again:?}");
    assert_eq!(again.refused.len(), 1);
    assert!(again.refused[0].1.contains("billed before"), "{again:?}");
    assert_eq!(account_store::get(db, "ann").await.unwrap().balance, balance);
    assert_eq!(usage::summarize(db, by_day()).await.unwrap(), summary);
    // New usage is recorded as ever.
    let fresh = usage::ingest(db, "n1", &[report("jan", key, now, 5)], now).await.unwrap();
    assert_eq!(fresh.recorded, 1);
    assert_eq!(every_record(db).await.len(), want.len() + 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_keeps_aggregates_and_the_ledger_on_sqlite() {
    retention_keeps_aggregates_and_the_ledger(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_keeps_aggregates_and_the_ledger_on_postgres() {
    retention_keeps_aggregates_and_the_ledger(Backend::Postgres).await;
}
