//! Leases and usage ingestion at the storage layer, with an explicit clock: expiry, the day
//! boundary, refills, revocation, and what a batch changes (on SQLite and PostgreSQL).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use common::{Backend, TestDb};
use router_control_plane::{
    db::Db,
    error::StoreError,
    store::{
        accounts,
        keys::{self, KeySpec},
        leases::{self, LEASE_TTL_MICROS, LeaseRequest, Limit},
        ledger,
        limits::PeriodLimits,
        now_micros, usage,
        usage::{Report, UsageFilter},
    },
};

const DAY: i64 = 86_400_000_000;

on_both_backends!(
    expired_and_past_day_leases_stop_holding,
    refills_add_to_the_lease_they_name,
    unusable_keys_get_nothing_and_free_their_leases,
    reports_bill_once_and_move_every_counter,
    invalid_reports_are_refused_alone,
    weekly_and_monthly_limits_roll_over_at_utc_boundaries,
);

/// An account with `balance` and one key with the given limits; returns (account id, key id).
async fn setup(
    db: &Db,
    balance: i64,
    daily_limit: Option<i64>,
    key_limit: Option<i64>,
    key_daily_limit: Option<i64>,
) -> (i64, i64) {
    let name = format!("acct-{}", common::random_name(8));
    let account = accounts::add(db, &name, None, Some(balance), daily_limit, None).await.unwrap();
    let spec =
        KeySpec { account: name, limit: key_limit, daily_limit: key_daily_limit, ..KeySpec::default() };
    let (key, _) = keys::create(db, spec).await.unwrap();
    (account.id, key.id)
}

fn ask<'a>(node_id: &'a str, key_id: i64, lease_id: Option<&'a str>, want: i64) -> LeaseRequest<'a> {
    LeaseRequest { node_id, key_id, lease_id, want, min: 1 }
}

fn report(request_id: &str, key_id: i64, cost: i64, created_at: i64, lease_id: Option<&str>) -> Report {
    Report {
        request_id: request_id.to_owned(),
        key_id,
        model: "m".into(),
        channel: "c".into(),
        endpoint: "/v1/chat/completions".into(),
        input_tokens: 10,
        output_tokens: 5,
        cost,
        status: "ok".into(),
        created_at,
        lease_id: lease_id.map(str::to_owned),
        ..Report::default()
    }
}

async fn expired_and_past_day_leases_stop_holding(backend: Backend) {
    let t = TestDb::create(backend).await;
    let (account_id, key_id) = setup(&t.db, 100, None, None, None).await;
    let now = now_micros();
    let a = leases::acquire(&t.db, ask("a", key_id, None, 60), now).await.unwrap();
    assert_eq!((a.granted, a.held, a.limited_by), (60, 60, None));
    assert_eq!(a.expires_at, (now + LEASE_TTL_MICROS).min(common_midnight(now)));
    // Another node sees the room left (40) and, since it is short, gets half of it.
    let b = leases::acquire(&t.db, ask("b", key_id, None, 60), now).await.unwrap();
    assert_eq!((b.granted, b.limited_by), (20, Some(Limit::Balance)));
    assert_eq!(accounts::get_by_id(&t.db, account_id).await.unwrap().reserved, 80);

    // Past their expiry both stop holding: the whole balance is there again.
    let later = now + LEASE_TTL_MICROS + 1;
    let c = leases::acquire(&t.db, ask("c", key_id, None, 100), later).await.unwrap();
    assert_eq!((c.granted, c.limited_by), (100, None));
    let rows = leases::of_account(&t.db, account_id).await.unwrap();
    assert_eq!(
        rows.iter().map(|l| l.id.as_str()).collect::<Vec<_>>(),
        [c.lease_id.as_str()],
        "dead leases dropped"
    );
    // A refill of an expired lease opens a new one instead.
    let a2 = leases::acquire(&t.db, ask("a", key_id, Some(&a.lease_id), 10), later).await.unwrap();
    assert_ne!(a2.lease_id, a.lease_id);
    assert_eq!(a2.granted, 0, "c holds everything");

    // A lease never outlives its UTC day, and the next day it holds nothing.
    let midnight = common_midnight(now) + 5 * DAY;
    let evening = leases::acquire(&t.db, ask("a", key_id, None, 10), midnight - 1_000_000).await.unwrap();
    assert_eq!(evening.expires_at, midnight);
    assert_eq!(evening.granted, 10, "yesterday's leases are long dead");
    let morning = leases::acquire(&t.db, ask("b", key_id, None, 100), midnight).await.unwrap();
    assert_eq!((morning.granted, morning.limited_by), (100, None), "yesterday's lease no longer holds");
}

/// The first microsecond of the next UTC day.
fn common_midnight(now: i64) -> i64 {
    (now.div_euclid(DAY) + 1) * DAY
}

async fn refills_add_to_the_lease_they_name(backend: Backend) {
    let t = TestDb::create(backend).await;
    let (account_id, key_id) = setup(&t.db, 1_000, None, None, None).await;
    let (_, other_key) = {
        let account = accounts::get_by_id(&t.db, account_id).await.unwrap();
        let spec = KeySpec { account: account.name, ..KeySpec::default() };
        let (key, _) = keys::create(&t.db, spec).await.unwrap();
        ((), key.id)
    };
    let now = now_micros();
    let first = leases::acquire(&t.db, ask("a", key_id, None, 100), now).await.unwrap();
    let refill = leases::acquire(&t.db, ask("a", key_id, Some(&first.lease_id), 50), now + 10).await.unwrap();
    assert_eq!(refill.lease_id, first.lease_id);
    assert_eq!((refill.granted, refill.held), (50, 150));
    assert!(refill.expires_at > first.expires_at, "a refill extends the lease");
    // Another node, another key or an unknown id cannot refill it: each opens its own lease.
    let other = leases::acquire(&t.db, ask("b", key_id, Some(&first.lease_id), 50), now).await.unwrap();
    let wrong_key =
        leases::acquire(&t.db, ask("a", other_key, Some(&first.lease_id), 50), now).await.unwrap();
    let unknown = leases::acquire(&t.db, ask("a", key_id, Some("no-such-lease"), 50), now).await.unwrap();
    for grant in [&other, &wrong_key, &unknown] {
        assert_ne!(grant.lease_id, first.lease_id);
        assert_eq!(grant.held, 50);
    }
    assert_eq!(accounts::get_by_id(&t.db, account_id).await.unwrap().reserved, 300);
    // Nothing below min.
    let tiny =
        leases::acquire(&t.db, LeaseRequest { min: 800, ..ask("a", key_id, None, 900) }, now).await.unwrap();
    assert_eq!((tiny.granted, tiny.limited_by), (0, Some(Limit::Balance)));
    // Releasing gives the room back; releasing twice (or an unknown id) is fine.
    assert!(leases::release(&t.db, &first.lease_id).await.unwrap());
    assert!(!leases::release(&t.db, &first.lease_id).await.unwrap());
    assert_eq!(accounts::get_by_id(&t.db, account_id).await.unwrap().reserved, 150 + tiny.held);
    let bad = leases::acquire(&t.db, ask("a", key_id, None, -1), now).await.unwrap_err();
    assert!(matches!(bad, StoreError::Invalid(_)), "{bad:?}");
    let anonymous = leases::acquire(&t.db, ask("", key_id, None, 1), now).await.unwrap_err();
    assert!(matches!(anonymous, StoreError::Invalid(_)), "{anonymous:?}");
}

async fn unusable_keys_get_nothing_and_free_their_leases(backend: Backend) {
    let t = TestDb::create(backend).await;
    let (account_id, key_id) = setup(&t.db, 1_000, None, None, None).await;
    let now = now_micros();
    leases::acquire(&t.db, ask("a", key_id, None, 400), now).await.unwrap();
    keys::revoke(&t.db, key_id).await.unwrap();
    assert_eq!(
        accounts::get_by_id(&t.db, account_id).await.unwrap().reserved,
        0,
        "revoking frees its leases"
    );
    let revoked = leases::acquire(&t.db, ask("a", key_id, None, 10), now).await.unwrap();
    assert_eq!(
        (revoked.granted, revoked.lease_id.as_str(), revoked.limited_by),
        (0, "", Some(Limit::Revoked))
    );
    let unknown = leases::acquire(&t.db, ask("a", 987_654, None, 10), now).await.unwrap();
    assert_eq!((unknown.granted, unknown.limited_by), (0, Some(Limit::Revoked)));

    let account = accounts::get_by_id(&t.db, account_id).await.unwrap();
    let spec = KeySpec { account: account.name, expires_at: Some(now + 5_000_000), ..KeySpec::default() };
    let (expiring, _) = keys::create(&t.db, spec).await.unwrap();
    let grant = leases::acquire(&t.db, ask("a", expiring.id, None, 10), now).await.unwrap();
    assert_eq!(grant.expires_at, now + 5_000_000, "a lease ends with its key");
    let expired = leases::acquire(&t.db, ask("a", expiring.id, None, 10), now + 5_000_000).await.unwrap();
    assert_eq!((expired.granted, expired.limited_by), (0, Some(Limit::Expired)));
}

async fn reports_bill_once_and_move_every_counter(backend: Backend) {
    let t = TestDb::create(backend).await;
    let (account_id, key_id) = setup(&t.db, 10_000, Some(5_000), Some(8_000), Some(6_000)).await;
    let now = now_micros();
    let lease = leases::acquire(&t.db, ask("a", key_id, None, 1_000), now).await.unwrap();
    let batch: Vec<Report> = (0..20)
        .map(|i| report(&format!("req-{i:03}"), key_id, 10 + i, now - 1_000, Some(&lease.lease_id)))
        .chain([report("free", key_id, 0, now, None), report("req-000", key_id, 999, now, None)])
        .collect();
    let total: i64 = (0..20).map(|i| 10 + i).sum();
    let done = usage::ingest(&t.db, "node-a", &batch, now).await.unwrap();
    assert_eq!((done.recorded, done.duplicates), (21, 1), "a request id repeated in a batch counts once");

    let account = accounts::get_by_id(&t.db, account_id).await.unwrap();
    assert_eq!(account.balance, 10_000 - total);
    assert_eq!(account.spent_today, total);
    assert_eq!(account.reserved, 1_000 - total, "the lease holds what its requests did not spend");
    let key = keys::get(&t.db, key_id).await.unwrap();
    assert_eq!((key.spent, key.spent_today), (total, total));
    let (sum, balance) = ledger::audit(&t.db, &account.name).await.unwrap();
    assert_eq!(sum, balance);
    let entries = ledger::list(&t.db, Some(&account.name), 100).await.unwrap();
    let debits: Vec<_> = entries.iter().filter(|e| e.kind == "usage").collect();
    assert_eq!(debits.len(), 20, "one ledger debit per billed request, none for a free one");
    // Newest first: each entry's balance is the next one's plus its amount.
    for pair in entries.windows(2) {
        assert_eq!(pair[0].balance_after, pair[1].balance_after + pair[0].amount, "{pair:?}");
    }
    let records =
        usage::list(&t.db, UsageFilter { key_id: Some(key_id), limit: Some(100), ..UsageFilter::default() })
            .await
            .unwrap()
            .records;
    assert_eq!(records.len(), 21);
    assert!(records.iter().all(|(r, _)| r.node_id == "node-a"));
    let first = records.iter().find(|(r, _)| r.request_id == "req-000").unwrap();
    assert_eq!(first.0.cost, 10, "the first report of an id is the one recorded");

    // The same batch again, later: all duplicates, nothing moves.
    let again = usage::ingest(&t.db, "node-b", &batch, now + 5).await.unwrap();
    assert_eq!((again.recorded, again.duplicates), (0, 22));
    assert_eq!(accounts::get_by_id(&t.db, account_id).await.unwrap(), account);

    // A report from yesterday counts in the totals but not today's counters; spending more
    // than a lease holds leaves it at zero.
    let late = [
        report("yesterday", key_id, 100, now - DAY, None),
        report("big", key_id, 5_000, now, Some(&lease.lease_id)),
    ];
    usage::ingest(&t.db, "node-a", &late, now).await.unwrap();
    let after = accounts::get_by_id(&t.db, account_id).await.unwrap();
    assert_eq!(after.balance, 10_000 - total - 5_100);
    assert_eq!(after.spent_today, total + 5_000);
    assert_eq!(after.reserved, 0);
    let key = keys::get(&t.db, key_id).await.unwrap();
    assert_eq!((key.spent, key.spent_today), (total + 5_100, total + 5_000));
    // Overspend is possible (bounded by in-flight requests) and then nothing more is granted.
    usage::ingest(&t.db, "node-a", &[report("over", key_id, 9_000, now, None)], now).await.unwrap();
    let broke = accounts::get_by_id(&t.db, account_id).await.unwrap();
    assert!(broke.balance < 0);
    let none = leases::acquire(&t.db, ask("a", key_id, None, 1), now).await.unwrap();
    assert_eq!(none.granted, 0);
    let (sum, balance) = ledger::audit(&t.db, &broke.name).await.unwrap();
    assert_eq!(sum, balance);
}

async fn invalid_reports_are_refused_alone(backend: Backend) {
    let t = TestDb::create(backend).await;
    let (account_id, key_id) = setup(&t.db, 10_000, None, None, None).await;
    let now = now_micros();
    let good = report("good", key_id, 10, now, None);
    let bad_batches = [
        vec![good.clone(), Report { cost: -1, ..report("neg", key_id, 0, now, None) }],
        vec![good.clone(), Report { output_tokens: -5, ..report("neg-tokens", key_id, 1, now, None) }],
        vec![good.clone(), report("", key_id, 1, now, None)],
        vec![good.clone(), report("ghost", 987_654, 1, now, None)],
        vec![
            Report { output_tokens: 4_500_000_000_000_000, ..report("lie", key_id, 1, now, None) },
            good.clone(),
        ],
    ];
    for (n, batch) in bad_batches.iter().enumerate() {
        let done = usage::ingest(&t.db, "a", batch, now).await.unwrap();
        let bad = usize::from(batch[0].request_id == "good");
        assert_eq!(done.refused.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [bad], "{done:?}");
        assert_eq!((done.recorded, done.duplicates), (u32::from(n == 0), u32::from(n > 0)), "{done:?}");
    }
    let account = accounts::get_by_id(&t.db, account_id).await.unwrap();
    assert_eq!(account.balance, 10_000 - 10, "the valid report is billed, once; the invalid ones not at all");
    let records = usage::list(&t.db, UsageFilter::default()).await.unwrap().records;
    assert_eq!(records.len(), 1);
}

async fn weekly_and_monthly_limits_roll_over_at_utc_boundaries(backend: Backend) {
    let t = TestDb::create(backend).await;
    let name = format!("acct-{}", common::random_name(8));
    let limits = accounts::NewLimits {
        periods: PeriodLimits { weekly: Some(100), monthly: Some(150) },
        ..accounts::NewLimits::default()
    };
    let account = accounts::add_limited(&t.db, &name, None, Some(10_000), None, None, limits).await.unwrap();
    let (key, _) = keys::create(&t.db, KeySpec { account: name, ..KeySpec::default() }).await.unwrap();
    // Sunday 2027-03-28 12:00, then just past Monday 00:00 (a new week), then just past
    // Thursday 2027-04-01 00:00 (a new month, the same week), UTC: later than the account's
    // creation, whose counters start at the real today.
    let (sunday, monday, april) = (1_806_235_200_000_000, 1_806_278_401_000_000, 1_806_537_601_000_000);
    usage::ingest(&t.db, "a", &[report("sun", key.id, 100, sunday, None)], sunday).await.unwrap();
    let seen = accounts::get_by_id_at(&t.db, account.id, sunday).await.unwrap();
    assert_eq!((seen.spent_this_week, seen.spent_this_month), (100, 100));
    let refused = leases::acquire(&t.db, ask("a", key.id, None, 10), sunday).await.unwrap();
    assert_eq!((refused.granted, refused.limited_by), (0, Some(Limit::AccountWeeklyLimit)));

    // Monday: the week's spend is gone, the month's is not.
    let seen = accounts::get_by_id_at(&t.db, account.id, monday).await.unwrap();
    assert_eq!((seen.spent_this_week, seen.spent_this_month), (0, 100));
    let granted = leases::acquire(&t.db, ask("a", key.id, None, 10), monday).await.unwrap();
    assert_eq!((granted.granted, granted.limited_by), (10, None));
    usage::ingest(&t.db, "a", &[report("mon", key.id, 40, monday, None)], monday).await.unwrap();
    let short = leases::acquire(&t.db, ask("b", key.id, None, 10), monday).await.unwrap();
    assert_eq!(
        (short.granted, short.limited_by),
        (0, Some(Limit::AccountMonthlyLimit)),
        "150 - 140 - 10 held"
    );

    // April: a new month; the week still counts Monday's 40 (Monday's lease is dead).
    let seen = accounts::get_by_id_at(&t.db, account.id, april).await.unwrap();
    assert_eq!((seen.spent_this_week, seen.spent_this_month), (40, 0));
    let big = leases::acquire(&t.db, ask("b", key.id, None, 100), april).await.unwrap();
    assert_eq!((big.granted, big.limited_by), (60, Some(Limit::AccountWeeklyLimit)));

    // A key's own weekly limit binds the same way.
    let mut update = keys::KeyUpdate::default();
    update.periods.weekly = Some(Some(45));
    keys::update(&t.db, key.id, update).await.unwrap();
    let capped = leases::acquire(&t.db, ask("c", key.id, None, 100), april).await.unwrap();
    assert_eq!((capped.granted, capped.limited_by), (0, Some(Limit::KeyWeeklyLimit)), "45 - 40 - 60 held");
}
