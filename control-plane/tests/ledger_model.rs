//! Model-based property test of the ledger: random interleavings of grants, refills, usage
//! batches (some replayed, some with repeated ids, some from yesterday), expiries, day
//! changes, releases, top-ups and redemptions run against a real database, and after every
//! step the database must agree with a plain in-memory model, the balance must equal the sum
//! of the ledger, no request may be billed twice, and leases must never hold more than remains.
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
    db::{
        Db,
        schema::{accounts, api_keys, ledger, usage_records},
    },
    error::StoreResult,
    store::{
        accounts as account_store, codes,
        keys::{self, KeySpec},
        leases::{self, LEASE_TTL_MICROS, LeaseRequest, LeaseRow, Limit},
        ledger as ledger_store,
        limits::RateLimits,
        next_midnight, now_micros,
        rates::{self, CONCURRENCY_TTL_MICROS},
        usage::{self, Report},
        utc_day,
    },
    with_conn,
};

const NODES: [&str; 3] = ["n0", "n1", "n2"];
const KEYS: usize = 2;

/// One step of a scenario.
#[derive(Debug, Clone)]
enum Op {
    /// A data plane asks for quota, refilling its last lease for the key or not.
    Grant { node: usize, key: usize, refill: bool, want: i64, min: i64 },
    /// A usage batch: new reports, plus replays of earlier ones.
    Report { reports: Vec<NewReport>, replays: Vec<usize> },
    /// Time passes.
    Wait { micros: i64 },
    /// The clock moves to just before, or just past, the next midnight.
    Midnight { past: bool },
    /// A data plane ends its last lease for a key.
    Release { node: usize, key: usize },
    /// An operator credits the account.
    TopUp { amount: i64 },
    /// A key holder redeems a code.
    Redeem { amount: i64 },
}

#[derive(Debug, Clone)]
struct NewReport {
    key: usize,
    cost: i64,
    /// Report against the reporting node's lease for the key.
    node: Option<usize>,
    yesterday: bool,
    /// Repeat the previous report's id within the batch.
    repeat: bool,
}

fn op() -> impl Strategy<Value = Op> {
    let report = (
        0..KEYS,
        0_i64..300,
        proptest::option::of(0..NODES.len()),
        proptest::bool::weighted(0.1),
        proptest::bool::weighted(0.1),
    )
        .prop_map(|(key, cost, node, yesterday, repeat)| NewReport {
            key,
            cost,
            node,
            yesterday,
            repeat,
        });
    prop_oneof![
        4 => (0..NODES.len(), 0..KEYS, any::<bool>(), 0_i64..600, 0_i64..60)
            .prop_map(|(node, key, refill, want, min)| Op::Grant { node, key, refill, want, min }),
        3 => (proptest::collection::vec(report, 1..5), proptest::collection::vec(0_usize..1000, 0..3))
            .prop_map(|(reports, replays)| Op::Report { reports, replays }),
        2 => (0_i64..45_000_000).prop_map(|micros| Op::Wait { micros }),
        1 => any::<bool>().prop_map(|past| Op::Midnight { past }),
        1 => (0..NODES.len(), 0..KEYS).prop_map(|(node, key)| Op::Release { node, key }),
        1 => (1_i64..800).prop_map(|amount| Op::TopUp { amount }),
        1 => (1_i64..800).prop_map(|amount| Op::Redeem { amount }),
    ]
}

/// The limits of a scenario's account and keys.
#[derive(Debug, Clone)]
struct Setup {
    balance: i64,
    account_daily: Option<i64>,
    key_limits: [Option<i64>; KEYS],
    key_dailies: [Option<i64>; KEYS],
}

fn setup() -> impl Strategy<Value = Setup> {
    let limit = || proptest::option::of(0_i64..1500);
    (0_i64..1500, limit(), [limit(), limit()], [limit(), limit()]).prop_map(
        |(balance, account_daily, key_limits, key_dailies)| Setup {
            balance,
            account_daily,
            key_limits,
            key_dailies,
        },
    )
}

/// A daily counter: the day it counts and what was spent on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Daily {
    day: i64,
    spent: i64,
}

impl Daily {
    fn add(&mut self, day: i64, cost: i64) {
        if day > self.day {
            *self = Daily { day, spent: cost };
        } else if day == self.day {
            self.spent += cost;
        }
    }

    fn today(&self, today: i64) -> i64 {
        if self.day == today { self.spent } else { 0 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ModelLease {
    key: usize,
    node: usize,
    held: i64,
    day: i64,
    expires_at: i64,
}

impl ModelLease {
    fn is_live(&self, now: i64) -> bool {
        self.expires_at >= now && self.day >= utc_day(now)
    }
}

/// What the database should hold, computed the simple way.
#[derive(Debug)]
struct Model {
    setup: Setup,
    now: i64,
    balance: i64,
    account_daily: Daily,
    key_spent: [i64; KEYS],
    key_daily: [Daily; KEYS],
    leases: BTreeMap<String, ModelLease>,
    /// The last lease each (node, key) was given.
    last_lease: BTreeMap<(usize, usize), String>,
    /// Every report sent, in order.
    sent: Vec<Report>,
    recorded: HashSet<String>,
    billed: usize,
    next_id: usize,
}

impl Model {
    fn live(&self) -> impl Iterator<Item = &ModelLease> {
        self.leases.values().filter(|l| l.is_live(self.now))
    }

    /// The grant the control plane must make, as the specification states it.
    fn grant(&mut self, node: usize, key: usize, want: i64, min: i64) -> (i64, Option<Limit>) {
        let now = self.now;
        let today = utc_day(now);
        self.leases.retain(|_, l| l.is_live(now));
        let held_account: i64 = self.live().map(|l| l.held).sum();
        let held_key: i64 = self.live().filter(|l| l.key == key).map(|l| l.held).sum();
        let mut remainders = vec![(self.balance - held_account, Limit::Balance)];
        if let Some(limit) = self.setup.key_limits[key] {
            remainders.push((limit - self.key_spent[key] - held_key, Limit::KeyLimit));
        }
        if let Some(limit) = self.setup.key_dailies[key] {
            remainders.push((limit - self.key_daily[key].today(today) - held_key, Limit::KeyDailyLimit));
        }
        if let Some(limit) = self.setup.account_daily {
            remainders
                .push((limit - self.account_daily.today(today) - held_account, Limit::AccountDailyLimit));
        }
        let (mut room, mut binding) = remainders[0];
        for &(r, limit) in &remainders[1..] {
            if r < room {
                (room, binding) = (r, limit);
            }
        }
        let room = room.max(0);
        let others = self.live().any(|l| l.node != node);
        let mut grant = want.min(room);
        if others && room < 2 * want {
            grant = grant.min((room + 1) / 2);
        }
        if grant < min {
            grant = 0;
        }
        (grant, (grant < want).then_some(binding))
    }
}

/// The database's view of the scenario's account.
#[derive(Debug, PartialEq, Eq)]
struct Books {
    balance: i64,
    account_daily: Daily,
    keys: Vec<(i64, Daily)>,
    ledger_sum: i64,
    usage_debits: usize,
    billed_ids: usize,
    records: i64,
}

async fn books(db: &Db, account_id: i64) -> StoreResult<Books> {
    with_conn!(db, |conn| {
        let (balance, spent_today, spent_day) = accounts::table
            .find(account_id)
            .select((accounts::balance, accounts::spent_today, accounts::spent_day))
            .first::<(i64, i64, i64)>(conn)
            .await?;
        let keys = api_keys::table
            .filter(api_keys::account_id.eq(account_id))
            .order(api_keys::id)
            .select((api_keys::spent, api_keys::spent_today, api_keys::spent_day))
            .load::<(i64, i64, i64)>(conn)
            .await?;
        let entries = ledger::table
            .filter(ledger::account_id.eq(account_id))
            .select((ledger::kind, ledger::amount, ledger::request_id))
            .load::<(String, i64, Option<String>)>(conn)
            .await?;
        let records: i64 = usage_records::table
            .filter(usage_records::account_id.eq(account_id))
            .count()
            .get_result(conn)
            .await?;
        let usage: Vec<_> = entries.iter().filter(|(kind, _, _)| kind == "usage").collect();
        let billed: HashSet<_> = usage.iter().filter_map(|(_, _, id)| id.as_deref()).collect();
        Ok(Books {
            balance,
            account_daily: Daily { day: spent_day, spent: spent_today },
            keys: keys.into_iter().map(|(spent, today, day)| (spent, Daily { day, spent: today })).collect(),
            ledger_sum: entries.iter().map(|(_, amount, _)| amount).sum(),
            usage_debits: usage.len(),
            billed_ids: billed.len(),
            records,
        })
    })
}

fn check(condition: bool, message: impl FnOnce() -> String) -> Result<(), TestCaseError> {
    if condition { Ok(()) } else { Err(TestCaseError::fail(message())) }
}

/// Runs one scenario; fails on the first disagreement.
async fn scenario(db: &Db, setup: Setup, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let fail = |e: router_control_plane::error::StoreError| TestCaseError::fail(e.to_string());
    let name = format!("acct-{}", common::random_name(10));
    let account = account_store::add(db, &name, None, Some(setup.balance), setup.account_daily, None)
        .await
        .map_err(fail)?;
    let mut key_ids = Vec::new();
    for k in 0..KEYS {
        let spec = KeySpec {
            account: name.clone(),
            limit: setup.key_limits[k],
            daily_limit: setup.key_dailies[k],
            ..KeySpec::default()
        };
        key_ids.push(keys::create(db, spec).await.map_err(fail)?.0.id);
    }
    let start = now_micros();
    let day = Daily { day: utc_day(start), spent: 0 };
    let mut model = Model {
        setup: setup.clone(),
        now: start,
        balance: setup.balance,
        account_daily: day,
        key_spent: [0; KEYS],
        key_daily: [day; KEYS],
        leases: BTreeMap::new(),
        last_lease: BTreeMap::new(),
        sent: Vec::new(),
        recorded: HashSet::new(),
        billed: 0,
        next_id: 0,
    };

    for (step, op) in ops.into_iter().enumerate() {
        let now = model.now;
        match &op {
            Op::Grant { node, key, refill, want, min } => {
                let previous = if *refill { model.last_lease.get(&(*node, *key)).cloned() } else { None };
                let request = LeaseRequest {
                    node_id: NODES[*node],
                    key_id: key_ids[*key],
                    lease_id: previous.as_deref(),
                    want: *want,
                    min: *min,
                };
                let grant = leases::acquire(db, request, now).await.map_err(fail)?;
                let (granted, limited_by) = model.grant(*node, *key, *want, *min);
                check((grant.granted, grant.limited_by) == (granted, limited_by), || {
                    format!(
                        "step {step} {op:?}: granted {:?}, model {:?}",
                        (grant.granted, grant.limited_by),
                        (granted, limited_by)
                    )
                })?;
                let today = utc_day(now);
                let expires_at = (now + LEASE_TTL_MICROS).min(next_midnight(now));
                let reused = previous
                    .as_ref()
                    .and_then(|id| model.leases.get_mut(id))
                    .filter(|l| l.node == *node && l.key == *key && l.day == today);
                match reused {
                    Some(lease) => {
                        check(grant.lease_id == *previous.as_ref().unwrap(), || {
                            format!("step {step}: refill opened a new lease")
                        })?;
                        lease.held += granted;
                        lease.expires_at = expires_at;
                    }
                    None => {
                        check(Some(&grant.lease_id) != previous.as_ref(), || {
                            format!("step {step}: dead lease refilled")
                        })?;
                        let lease =
                            ModelLease { key: *key, node: *node, held: granted, day: today, expires_at };
                        model.leases.insert(grant.lease_id.clone(), lease);
                    }
                }
                model.last_lease.insert((*node, *key), grant.lease_id.clone());
                check(grant.held == model.leases[&grant.lease_id].held, || {
                    format!("step {step}: held {}", grant.held)
                })?;
                // Independent of the model: what live leases hold never exceeds what remains.
                if granted > 0 {
                    let books = books(db, account.id).await.map_err(fail)?;
                    let held: i64 = model.live().map(|l| l.held).sum();
                    check(held <= books.balance, || {
                        format!("step {step}: leases hold {held} > balance {}", books.balance)
                    })?;
                    let key_held: i64 = model.live().filter(|l| l.key == *key).map(|l| l.held).sum();
                    if let Some(limit) = setup.key_limits[*key] {
                        let left = limit - books.keys[*key].0;
                        check(key_held <= left, || {
                            format!("step {step}: key leases hold {key_held} > {left}")
                        })?;
                    }
                    if let Some(limit) = setup.key_dailies[*key] {
                        let left = limit - books.keys[*key].1.today(today);
                        check(key_held <= left, || {
                            format!("step {step}: key leases hold {key_held} > daily {left}")
                        })?;
                    }
                    if let Some(limit) = setup.account_daily {
                        let left = limit - books.account_daily.today(today);
                        check(held <= left, || format!("step {step}: leases hold {held} > daily {left}"))?;
                    }
                }
            }
            Op::Report { reports, replays } => {
                let mut batch: Vec<Report> = Vec::new();
                for r in reports {
                    let request_id = match (r.repeat, batch.last()) {
                        (true, Some(last)) => last.request_id.clone(),
                        _ => {
                            model.next_id += 1;
                            format!("{name}-{:05}", model.next_id)
                        }
                    };
                    let lease_id = r.node.and_then(|n| model.last_lease.get(&(n, r.key)).cloned());
                    batch.push(Report {
                        request_id,
                        key_id: key_ids[r.key],
                        cost: r.cost,
                        status: "ok".into(),
                        created_at: if r.yesterday { now - 86_400_000_000 } else { now },
                        lease_id,
                        ..Report::default()
                    });
                }
                for &i in replays {
                    if !model.sent.is_empty() {
                        batch.push(model.sent[i % model.sent.len()].clone());
                    }
                }
                let done = usage::ingest(db, "node", &batch, now).await.map_err(fail)?;
                let mut fresh = 0;
                for report in &batch {
                    if !model.recorded.insert(report.request_id.clone()) {
                        continue;
                    }
                    fresh += 1;
                    model.sent.push(report.clone());
                    if report.cost == 0 {
                        continue;
                    }
                    let key = key_ids.iter().position(|id| *id == report.key_id).unwrap();
                    let day = utc_day(report.created_at).min(utc_day(now));
                    model.billed += 1;
                    model.balance -= report.cost;
                    model.account_daily.add(day, report.cost);
                    model.key_spent[key] += report.cost;
                    model.key_daily[key].add(day, report.cost);
                    let lease = report.lease_id.as_ref().and_then(|id| model.leases.get_mut(id));
                    if let Some(lease) = lease.filter(|l| l.key == key) {
                        lease.held = (lease.held - report.cost).max(0);
                    }
                }
                check(
                    done.recorded == fresh && done.duplicates as usize == batch.len() - fresh as usize,
                    || format!("step {step}: ack {done:?}, model recorded {fresh} of {}", batch.len()),
                )?;
            }
            Op::Wait { micros } => model.now += micros,
            Op::Midnight { past } => {
                model.now = now.max(next_midnight(now) + if *past { 1 } else { -2_000_000 });
            }
            Op::Release { node, key } => {
                if let Some(id) = model.last_lease.get(&(*node, *key)) {
                    leases::release(db, id).await.map_err(fail)?;
                    model.leases.remove(id);
                }
            }
            Op::TopUp { amount } => {
                ledger_store::top_up(db, &name, *amount).await.map_err(fail)?;
                model.balance += amount;
            }
            Op::Redeem { amount } => {
                let code =
                    codes::create(db, *amount, 1).await.map_err(fail)?.remove(0).code.unwrap_or_default();
                codes::redeem(db, account.id, &code).await.map_err(fail)?;
                // A code works once.
                check(codes::redeem(db, account.id, &code).await.is_err(), || {
                    format!("step {step}: code redeemed twice")
                })?;
                model.balance += amount;
            }
        }

        let books = books(db, account.id).await.map_err(fail)?;
        check(books.balance == books.ledger_sum, || {
            format!("step {step} {op:?}: balance != ledger: {books:?}")
        })?;
        check(books.usage_debits == books.billed_ids, || format!("step {step}: a request was billed twice"))?;
        let expected = Books {
            balance: model.balance,
            account_daily: model.account_daily,
            keys: (0..KEYS).map(|k| (model.key_spent[k], model.key_daily[k])).collect(),
            ledger_sum: model.balance,
            usage_debits: model.billed,
            billed_ids: model.billed,
            records: i64::try_from(model.recorded.len()).unwrap(),
        };
        check(books == expected, || format!("step {step} {op:?}:\n db    {books:?}\n model {expected:?}"))?;
        let stored: BTreeMap<String, (i64, i64, i64, i64)> = leases::of_account(db, account.id)
            .await
            .map_err(fail)?
            .into_iter()
            .map(|l: LeaseRow| (l.id, (l.key_id, l.held, l.day, l.expires_at)))
            .collect();
        let modelled: BTreeMap<String, (i64, i64, i64, i64)> = model
            .leases
            .iter()
            .map(|(id, l)| (id.clone(), (key_ids[l.key], l.held, l.day, l.expires_at)))
            .collect();
        check(stored == modelled, || {
            format!("step {step} {op:?}: leases\n db    {stored:?}\n model {modelled:?}")
        })?;
    }
    Ok(())
}

fn run(backend: Backend, cases: u32) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let test_db = runtime.block_on(TestDb::create(backend));
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new(config);
    let strategy = (setup(), proptest::collection::vec(op(), 1..40));
    let result = runner.run(&strategy, |(setup, ops)| runtime.block_on(scenario(&test_db.db, setup, ops)));
    drop(test_db);
    if let Err(error) = result {
        panic!("{error}");
    }
}

#[test]
fn ledger_agrees_with_the_model_on_sqlite() {
    run(Backend::Sqlite, 48);
}

#[test]
fn ledger_agrees_with_the_model_on_postgres() {
    run(Backend::Postgres, 24);
}

/// One step of a rate scenario.
#[derive(Debug, Clone)]
enum RateOp {
    /// A data plane asks for requests, tokens and places in flight for a key, reporting what
    /// it used (a share of what it was granted) of its last grant in an earlier slot.
    Grant { node: usize, key: usize, requests: i64, tokens: i64, concurrent: i64, used_share: u8 },
    /// Time passes (within a slot, or across several: window rollovers and expiries).
    Wait { micros: i64 },
}

fn rate_op() -> impl Strategy<Value = RateOp> {
    prop_oneof![
        4 => (0..NODES.len(), 0..KEYS, 0_i64..30, 0_i64..300, 0_i64..4, 0_u8..=100).prop_map(
            |(node, key, requests, tokens, concurrent, used_share)| RateOp::Grant {
                node, key, requests, tokens, concurrent, used_share
            }
        ),
        1 => (0_i64..(3 * RATE_WINDOW / 6)).prop_map(|micros| RateOp::Wait { micros }),
        1 => Just(RateOp::Wait { micros: CONCURRENCY_TTL_MICROS }),
    ]
}

/// Rate window of the scenarios (six one-second slots).
const RATE_WINDOW: i64 = 6_000_000;

/// Limits of a rate scenario: `[key 0, key 1, account]` for requests, tokens and concurrency.
type RateSetup = ([Option<i64>; 3], [Option<i64>; 3], [Option<i64>; 3]);

fn rate_setup() -> impl Strategy<Value = RateSetup> {
    let limit = |most: i64| proptest::option::of(1..most);
    ([limit(60), limit(60), limit(80)], [limit(600), limit(600), limit(800)], [limit(5), limit(5), limit(6)])
}

async fn rate_scenario(db: &Db, setup: RateSetup, ops: Vec<RateOp>) -> Result<(), TestCaseError> {
    let fail = |e: router_control_plane::error::StoreError| TestCaseError::fail(e.to_string());
    let (rpm, tpm, concurrency) = setup;
    let name = format!("r{}", common::random_name(10));
    let limits = account_store::NewLimits {
        rates: RateLimits { rpm: rpm[2], tpm: tpm[2], max_concurrent: concurrency[2] },
        ..account_store::NewLimits::default()
    };
    account_store::add_limited(db, &name, None, Some(1), None, None, limits).await.map_err(fail)?;
    let mut key_ids = Vec::new();
    for k in 0..KEYS {
        let rates = RateLimits { rpm: rpm[k], tpm: tpm[k], max_concurrent: concurrency[k] };
        let spec = KeySpec { account: name.clone(), rates, ..KeySpec::default() };
        key_ids.push(keys::create(db, spec).await.map_err(fail)?.0.id);
    }
    let slot_len = rates::slot_micros(RATE_WINDOW);
    let mut now = now_micros();
    // What each (node, key) was granted per slot, lowered to what it reported using; and its
    // concurrency lease (held, expires at).
    let mut granted: BTreeMap<(usize, usize, i64), (i64, i64)> = BTreeMap::new();
    let mut last_slot: BTreeMap<(usize, usize), i64> = BTreeMap::new();
    let mut held: BTreeMap<(usize, usize), (i64, i64)> = BTreeMap::new();
    for (step, op) in ops.iter().enumerate() {
        match *op {
            RateOp::Wait { micros } => now += micros,
            RateOp::Grant { node, key, requests, tokens, concurrent, used_share } => {
                let slot = now.div_euclid(slot_len);
                let used = last_slot.get(&(node, key)).copied().filter(|s| *s < slot).map(|s| {
                    let entry = granted.entry((node, key, s)).or_default();
                    let share = |v: i64| v * i64::from(used_share) / 100;
                    *entry = (share(entry.0), share(entry.1));
                    (s, entry.0, entry.1)
                });
                let ask = rates::RateRequest {
                    node_id: NODES[node],
                    key_id: key_ids[key],
                    want_requests: requests,
                    want_tokens: tokens,
                    min_requests: 0,
                    min_tokens: 0,
                    want_concurrent: concurrent,
                    used,
                };
                let grant = rates::acquire(db, ask, now, RATE_WINDOW).await.map_err(fail)?;
                check(grant.slot == slot, || format!("step {step}: slot {} at {now}", grant.slot))?;
                check(grant.granted_requests <= requests && grant.granted_tokens <= tokens, || {
                    format!("step {step} {op:?}: more than wanted: {grant:?}")
                })?;
                let entry = granted.entry((node, key, slot)).or_default();
                entry.0 += grant.granted_requests;
                entry.1 += grant.granted_tokens;
                last_slot.insert((node, key), slot);
                held.insert((node, key), (grant.held_concurrent, now + CONCURRENCY_TTL_MICROS));
            }
        }
        // No window of SLOTS_PER_WINDOW + 1 consecutive slots holds more than any limit.
        let slots: HashSet<i64> = granted.keys().map(|k| k.2).collect();
        for &end in &slots {
            let in_window = |s: i64| s > end - rates::SLOTS_PER_WINDOW - 1 && s <= end;
            let sum = |key: Option<usize>, value: fn(&(i64, i64)) -> i64| {
                granted
                    .iter()
                    .filter(|((_, k, s), _)| in_window(*s) && key.is_none_or(|key| key == *k))
                    .map(|(_, v)| value(v))
                    .sum::<i64>()
            };
            for (limits, value, what) in [
                (rpm, (|v: &(i64, i64)| v.0) as fn(&(i64, i64)) -> i64, "requests"),
                (tpm, |v| v.1, "tokens"),
            ] {
                for (k, limit) in limits.iter().enumerate() {
                    let Some(limit) = limit else { continue };
                    let total = sum((k < KEYS).then_some(k), value);
                    check(total <= *limit, || {
                        format!(
                            "step {step} {op:?}: {total} {what} in the window ending at slot {end}, limit {limit}"
                        )
                    })?;
                }
            }
        }
        // Live concurrency leases never hold more than a limit.
        let live = |key: Option<usize>| {
            held.iter()
                .filter(|((_, k), (_, until))| *until > now && key.is_none_or(|key| key == *k))
                .map(|(_, (h, _))| *h)
                .sum::<i64>()
        };
        for (k, limit) in concurrency.iter().enumerate() {
            let Some(limit) = limit else { continue };
            let total = live((k < KEYS).then_some(k));
            check(total <= *limit, || format!("step {step} {op:?}: {total} in flight held, limit {limit}"))?;
        }
    }
    Ok(())
}

fn run_rates(backend: Backend, cases: u32) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let test_db = runtime.block_on(TestDb::create(backend));
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new(config);
    let strategy = (rate_setup(), proptest::collection::vec(rate_op(), 1..60));
    let result =
        runner.run(&strategy, |(setup, ops)| runtime.block_on(rate_scenario(&test_db.db, setup, ops)));
    drop(test_db);
    if let Err(error) = result {
        panic!("{error}");
    }
}

#[test]
fn rate_grants_never_exceed_a_window_on_sqlite() {
    run_rates(Backend::Sqlite, 48);
}

#[test]
fn rate_grants_never_exceed_a_window_on_postgres() {
    run_rates(Backend::Postgres, 24);
}
