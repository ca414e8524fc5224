//! Quota leases: amounts set aside for one key on one data plane out of every remainder that
//! applies (account balance, key limit, key and account daily, weekly and monthly limits),
//! net of what the
//! account's other live leases hold.
//!
//! Grants for one account are serialized (the account row is locked, see
//! [`Dialect::grant_basis`](crate::db::Dialect::grant_basis)), so data planes and control-plane replicas cannot together
//! set aside more than remains. `held` is never subtracted from the balance: usage reports
//! debit the balance and lower `held` by what the request cost, and a lease that ends
//! (expires, passes midnight, is released) simply stops holding, with nothing to refund.
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use rand::{Rng, distr::Alphanumeric};

use super::{
    limits::{month_of_day, week_of_day},
    next_midnight, spent_on, utc_day,
};
pub use crate::db::{AccountQuota, KeyQuota, LeaseRow};
use crate::{
    db::{Db, Dialect, GrantBasis, schema::leases},
    error::{StoreError, StoreResult},
    with_conn, write_tx,
};

/// How long a lease lives without a refill.
pub const LEASE_TTL_MICROS: i64 = 30_000_000;
/// How long after expiry [`sweep`] leaves a lease alone (clocks of replicas may differ).
const SWEEP_GRACE_MICROS: i64 = 60_000_000;
/// Random alphanumerics in a lease id (about 143 bits).
const LEASE_ID_CHARS: usize = 24;
/// Longest node id accepted.
const MAX_NODE_ID_BYTES: usize = 200;

/// A data plane's request for quota.
#[derive(Debug, Clone, Copy)]
pub struct LeaseRequest<'a> {
    /// The asking data plane.
    pub node_id: &'a str,
    /// The key the lease is for.
    pub key_id: i64,
    /// The lease to refill; `None` (or a lease that is no longer live): open a new one.
    pub lease_id: Option<&'a str>,
    /// How much to add to what the lease holds.
    pub want: i64,
    /// Below this a grant is useless: grant nothing instead.
    pub min: i64,
}

/// Why less than wanted was granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The account balance.
    Balance,
    /// The key's total spend limit.
    KeyLimit,
    /// The key's daily limit.
    KeyDailyLimit,
    /// The account's daily limit.
    AccountDailyLimit,
    /// The key's weekly limit.
    KeyWeeklyLimit,
    /// The key's monthly limit.
    KeyMonthlyLimit,
    /// The account's weekly limit.
    AccountWeeklyLimit,
    /// The account's monthly limit.
    AccountMonthlyLimit,
    /// The key is revoked (or unknown).
    Revoked,
    /// The key has expired.
    Expired,
}

impl Limit {
    /// The wire name (`Lease.limited_by`).
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Balance => "balance",
            Limit::KeyLimit => "key_limit",
            Limit::KeyDailyLimit => "key_daily_limit",
            Limit::AccountDailyLimit => "account_daily_limit",
            Limit::KeyWeeklyLimit => "key_weekly_limit",
            Limit::KeyMonthlyLimit => "key_monthly_limit",
            Limit::AccountWeeklyLimit => "account_weekly_limit",
            Limit::AccountMonthlyLimit => "account_monthly_limit",
            Limit::Revoked => "revoked",
            Limit::Expired => "expired",
        }
    }
}

/// The answer to a [`LeaseRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The lease (empty when the key cannot be served at all).
    pub lease_id: String,
    /// The key.
    pub key_id: i64,
    /// What this call added.
    pub granted: i64,
    /// What the lease holds in all.
    pub held: i64,
    /// Unix micros.
    pub expires_at: i64,
    /// Set whenever less than wanted was granted.
    pub limited_by: Option<Limit>,
}

/// The remainders that apply to a grant, each already net of what live leases hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Remainders {
    /// Balance minus the account's held.
    pub balance: i64,
    /// Key limit minus spent minus the key's held.
    pub key_limit: Option<i64>,
    /// Key daily limit minus spent today minus the key's held.
    pub key_daily_limit: Option<i64>,
    /// Account daily limit minus spent today minus the account's held.
    pub account_daily_limit: Option<i64>,
    /// Key weekly limit minus spent this week minus the key's held.
    pub key_weekly_limit: Option<i64>,
    /// Key monthly limit minus spent this month minus the key's held.
    pub key_monthly_limit: Option<i64>,
    /// Account weekly limit minus spent this week minus the account's held.
    pub account_weekly_limit: Option<i64>,
    /// Account monthly limit minus spent this month minus the account's held.
    pub account_monthly_limit: Option<i64>,
}

impl Remainders {
    /// What the account and key have left, net of `live` leases (all of the account's).
    pub fn of(account: &AccountQuota, key: &KeyQuota, live: &[LeaseRow], today: i64) -> Remainders {
        let held_account = live.iter().fold(0_i64, |sum, l| sum.saturating_add(l.held));
        let held_key =
            live.iter().filter(|l| l.key_id == key.id).fold(0_i64, |sum, l| sum.saturating_add(l.held));
        let key_spent_today = spent_on(today, key.spent_day, key.spent_today);
        let account_spent_today = spent_on(today, account.spent_day, account.spent_today);
        let (week, month) = (week_of_day(today), month_of_day(today));
        let room = |limit: Option<i64>, spent: i64, held: i64| {
            limit.map(|l| l.saturating_sub(spent).saturating_sub(held))
        };
        Remainders {
            balance: account.balance.saturating_sub(held_account),
            key_limit: key.spend_limit.map(|l| l.saturating_sub(key.spent).saturating_sub(held_key)),
            key_daily_limit: key
                .daily_limit
                .map(|l| l.saturating_sub(key_spent_today).saturating_sub(held_key)),
            account_daily_limit: account
                .daily_limit
                .map(|l| l.saturating_sub(account_spent_today).saturating_sub(held_account)),
            key_weekly_limit: room(
                key.weekly_limit,
                spent_on(week, key.spent_week_no, key.spent_week),
                held_key,
            ),
            key_monthly_limit: room(
                key.monthly_limit,
                spent_on(month, key.spent_month_no, key.spent_month),
                held_key,
            ),
            account_weekly_limit: room(
                account.weekly_limit,
                spent_on(week, account.spent_week_no, account.spent_week),
                held_account,
            ),
            account_monthly_limit: room(
                account.monthly_limit,
                spent_on(month, account.spent_month_no, account.spent_month),
                held_account,
            ),
        }
    }

    /// The smallest remainder (zero when one is exhausted or overdrawn) and which it is; on
    /// a tie, the first in the order balance, key limit, key daily, account daily, key weekly,
    /// key monthly, account weekly, account monthly.
    pub fn room(&self) -> (i64, Limit) {
        let mut room = (self.balance, Limit::Balance);
        for (remainder, limit) in [
            (self.key_limit, Limit::KeyLimit),
            (self.key_daily_limit, Limit::KeyDailyLimit),
            (self.account_daily_limit, Limit::AccountDailyLimit),
            (self.key_weekly_limit, Limit::KeyWeeklyLimit),
            (self.key_monthly_limit, Limit::KeyMonthlyLimit),
            (self.account_weekly_limit, Limit::AccountWeeklyLimit),
            (self.account_monthly_limit, Limit::AccountMonthlyLimit),
        ] {
            if let Some(remainder) = remainder.filter(|r| *r < room.0) {
                room = (remainder, limit);
            }
        }
        (room.0.max(0), room.1)
    }
}

/// How much of `room` to grant to a request for `want` (at least `min`). When other data
/// planes hold leases on the account and the room is short, a grant takes at most half of it,
/// so that each of them can still be served.
pub fn size_grant(want: i64, min: i64, room: i64, others_hold: bool) -> i64 {
    let mut grant = want.min(room);
    if others_hold && room / 2 < want {
        // ceil(room / 2), without overflow.
        grant = grant.min(room / 2 + room % 2);
    }
    if grant < min { 0 } else { grant }
}

/// A new random lease id.
pub fn generate_lease_id() -> String {
    rand::rng().sample_iter(Alphanumeric).take(LEASE_ID_CHARS).map(char::from).collect()
}

fn check(request: &LeaseRequest<'_>) -> StoreResult<()> {
    if request.want < 0 || request.min < 0 {
        return Err(StoreError::invalid("want and min must not be negative"));
    }
    if request.node_id.is_empty() || request.node_id.len() > MAX_NODE_ID_BYTES {
        return Err(StoreError::invalid(format!("node id must be 1 to {MAX_NODE_ID_BYTES} bytes")));
    }
    Ok(())
}

fn refused(key_id: i64, limit: Limit, now: i64) -> Grant {
    Grant { lease_id: String::new(), key_id, granted: 0, held: 0, expires_at: now, limited_by: Some(limit) }
}

/// Grants quota to a data plane for one key at time `now` (unix micros), refilling its lease
/// or opening a new one, in one transaction serialized per account. The transaction commits
/// without a disk flush: a grant lost in a database crash frees its room twice, once, which
/// is not worth a flush per grant (a PostgreSQL commit waits 1-4 ms for one here).
pub async fn acquire(db: &Db, request: LeaseRequest<'_>, now: i64) -> StoreResult<Grant> {
    check(&request)?;
    let today = utc_day(now);
    let key_id = request.key_id;
    let new_id = generate_lease_id();
    write_tx!(db, |conn| {
        let Some(GrantBasis { account, key, leases: mut live }) = conn.grant_basis(key_id).await? else {
            return Ok(refused(key_id, Limit::Revoked, now));
        };
        let unusable = if key.revoked {
            Some(Limit::Revoked)
        } else if key.expires_at.is_some_and(|at| at <= now) {
            Some(Limit::Expired)
        } else {
            None
        };
        if let Some(limit) = unusable {
            // Whatever the key's leases held goes back to the account's other keys.
            diesel::delete(leases::table.filter(leases::key_id.eq(key_id))).execute(conn).await?;
            return Ok(refused(key_id, limit, now));
        }
        if live.iter().any(|l| !l.is_live(now)) {
            diesel::delete(
                leases::table
                    .filter(leases::account_id.eq(account.id))
                    .filter(leases::expires_at.lt(now).or(leases::day.lt(today))),
            )
            .execute(conn)
            .await?;
            live.retain(|l| l.is_live(now));
        }

        let (room, binding) = Remainders::of(&account, &key, &live, today).room();
        let others_hold = live.iter().any(|l| l.node_id != request.node_id);
        let granted = size_grant(request.want, request.min, room, others_hold);
        let limited_by = (granted < request.want).then_some(binding);
        let expires_at = (now.saturating_add(LEASE_TTL_MICROS))
            .min(next_midnight(now))
            .min(key.expires_at.unwrap_or(i64::MAX));

        let refill = request.lease_id.and_then(|id| {
            live.iter()
                .find(|l| l.id == id && l.node_id == request.node_id && l.key_id == key_id && l.day == today)
        });
        if let Some(lease) = refill {
            let held = lease.held.saturating_add(granted);
            // A concurrent release may have deleted it since it was read: then open a new one.
            let updated = diesel::update(leases::table.find(&lease.id))
                .set((leases::held.eq(held), leases::expires_at.eq(expires_at), leases::updated_at.eq(now)))
                .execute(conn)
                .await?;
            if updated == 1 {
                return Ok(Grant {
                    lease_id: lease.id.clone(),
                    key_id,
                    granted,
                    held,
                    expires_at,
                    limited_by,
                });
            }
        }
        diesel::insert_into(leases::table)
            .values((
                leases::id.eq(&new_id),
                leases::key_id.eq(key_id),
                leases::account_id.eq(account.id),
                leases::node_id.eq(request.node_id),
                leases::held.eq(granted),
                leases::day.eq(today),
                leases::expires_at.eq(expires_at),
                leases::created_at.eq(now),
                leases::updated_at.eq(now),
            ))
            .execute(conn)
            .await?;
        Ok(Grant { lease_id: new_id.clone(), key_id, granted, held: granted, expires_at, limited_by })
    })
}

/// Ends a lease: what it held is no longer set aside. Unknown ids are fine (already ended).
pub async fn release(db: &Db, lease_id: &str) -> StoreResult<bool> {
    write_tx!(db, |conn| {
        conn.commit_without_flush().await?;
        let deleted = diesel::delete(leases::table.find(lease_id)).execute(conn).await?;
        Ok(deleted > 0)
    })
}

/// Deletes leases that expired more than a minute before `now`. Grants drop an account's dead
/// leases anyway; this removes those of accounts that no longer ask.
pub async fn sweep(db: &Db, now: i64) -> StoreResult<usize> {
    write_tx!(db, |conn| {
        conn.commit_without_flush().await?;
        Ok(diesel::delete(
            leases::table.filter(leases::expires_at.lt(now.saturating_sub(SWEEP_GRACE_MICROS))),
        )
        .execute(conn)
        .await?)
    })
}

/// Every lease of an account, live or not (for tests and diagnostics).
pub async fn of_account(db: &Db, account_id: i64) -> StoreResult<Vec<LeaseRow>> {
    with_conn!(db, |conn| {
        Ok(leases::table
            .filter(leases::account_id.eq(account_id))
            .order(leases::created_at)
            .select(LeaseRow::as_select())
            .load(conn)
            .await?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000_000;

    fn account(balance: i64, daily_limit: Option<i64>, spent_today: i64, spent_day: i64) -> AccountQuota {
        AccountQuota {
            id: 1,
            balance,
            daily_limit,
            spent_today,
            spent_day,
            weekly_limit: None,
            monthly_limit: None,
            spent_week: 0,
            spent_week_no: 0,
            spent_month: 0,
            spent_month_no: 0,
        }
    }

    fn key(spend_limit: Option<i64>, spent: i64, daily_limit: Option<i64>, spent_today: i64) -> KeyQuota {
        KeyQuota {
            id: 7,
            spend_limit,
            spent,
            daily_limit,
            spent_today,
            spent_day: 10,
            weekly_limit: None,
            monthly_limit: None,
            spent_week: 0,
            spent_week_no: 0,
            spent_month: 0,
            spent_month_no: 0,
            expires_at: None,
            revoked: false,
        }
    }

    fn lease(key_id: i64, node: &str, held: i64) -> LeaseRow {
        LeaseRow {
            id: generate_lease_id(),
            key_id,
            node_id: node.into(),
            held,
            day: 10,
            expires_at: 10 * DAY + 1,
        }
    }

    #[test]
    fn every_remainder_can_bind() {
        let live = [lease(7, "a", 10), lease(8, "b", 5)];
        let r = Remainders::of(&account(100, None, 0, 10), &key(None, 0, None, 0), &live, 10);
        assert_eq!(r.room(), (85, Limit::Balance));
        let r = Remainders::of(&account(100, None, 0, 10), &key(Some(50), 30, None, 0), &live, 10);
        assert_eq!(r.room(), (10, Limit::KeyLimit));
        let r = Remainders::of(&account(100, None, 0, 10), &key(None, 0, Some(40), 25), &live, 10);
        assert_eq!(r.room(), (5, Limit::KeyDailyLimit));
        let r = Remainders::of(&account(100, Some(30), 20, 10), &key(None, 0, None, 0), &live, 10);
        assert_eq!(r.room(), (0, Limit::AccountDailyLimit), "overdrawn counts as zero");
        // Yesterday's spend does not count against today's limits.
        let r = Remainders::of(&account(100, Some(30), 20, 9), &key(None, 0, Some(40), 25), &[], 11);
        assert_eq!(r.room(), (30, Limit::AccountDailyLimit));
        // A negative balance (overspend) leaves no room.
        let r = Remainders::of(&account(-5, None, 0, 10), &key(None, 0, None, 0), &[], 10);
        assert_eq!(r.room(), (0, Limit::Balance));
    }

    #[test]
    fn weekly_and_monthly_limits_bind_in_their_own_period_only() {
        let today = 20_422; // Tuesday 2025-11-25
        let (week, month) = (week_of_day(today), month_of_day(today));
        let mut a = account(100, None, 0, today);
        a.weekly_limit = Some(50);
        a.spent_week = 45;
        a.spent_week_no = week;
        let r = Remainders::of(&a, &key(None, 0, None, 0), &[], today);
        assert_eq!(r.room(), (5, Limit::AccountWeeklyLimit));
        a.spent_week_no = week - 1;
        let r = Remainders::of(&a, &key(None, 0, None, 0), &[], today);
        assert_eq!(r.room(), (50, Limit::AccountWeeklyLimit), "last week's spend is gone");
        let mut k = key(None, 0, None, 0);
        k.monthly_limit = Some(30);
        k.spent_month = 30;
        k.spent_month_no = month;
        let r = Remainders::of(&a, &k, &[], today);
        assert_eq!(r.room(), (0, Limit::KeyMonthlyLimit));
        k.weekly_limit = Some(40);
        k.spent_month_no = month - 1;
        let r = Remainders::of(&a, &k, &[lease(7, "a", 12)], today);
        assert_eq!(r.room(), (18, Limit::KeyMonthlyLimit), "held counts against every period");
    }

    #[test]
    fn grants_are_sized_and_split() {
        assert_eq!(size_grant(100, 10, 1000, false), 100);
        assert_eq!(size_grant(100, 10, 60, false), 60);
        assert_eq!(size_grant(100, 10, 5, false), 0, "below min");
        assert_eq!(size_grant(100, 10, 1000, true), 100, "plenty: no split");
        assert_eq!(size_grant(100, 10, 150, true), 75, "short: half");
        assert_eq!(size_grant(100, 10, 151, true), 76, "rounded up");
        assert_eq!(size_grant(100, 10, 200, true), 100);
        assert_eq!(size_grant(100, 10, 15, true), 0, "half is below min");
        assert_eq!(size_grant(0, 0, 15, true), 0);
        assert_eq!(size_grant(i64::MAX, 0, i64::MAX, true), i64::MAX / 2 + 1);
    }

    #[test]
    fn leases_die_at_expiry_and_midnight() {
        let l = lease(7, "a", 1);
        assert!(l.is_live(10 * DAY));
        assert!(l.is_live(10 * DAY + 1));
        assert!(!l.is_live(10 * DAY + 2), "expired");
        let l = LeaseRow { expires_at: i64::MAX, ..lease(7, "a", 1) };
        assert!(!l.is_live(11 * DAY), "a lease holds on its own day only");
    }
}
