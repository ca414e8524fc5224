//! What a grant reads: the account (locked), the key and the account's leases.
use diesel::{Queryable, Selectable};

use super::schema::{accounts, api_keys, leases};
use crate::store::utc_day;

/// What a grant needs of an account, read while holding the account's row lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = accounts, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct AccountQuota {
    /// Row id.
    pub id: i64,
    /// Ledger balance.
    pub balance: i64,
    /// Daily spend cap.
    pub daily_limit: Option<i64>,
    /// Spend on `spent_day`.
    pub spent_today: i64,
    /// The UTC day `spent_today` counts.
    pub spent_day: i64,
    /// Weekly spend cap.
    pub weekly_limit: Option<i64>,
    /// Monthly spend cap.
    pub monthly_limit: Option<i64>,
    /// Spend in the UTC week `spent_week_no`.
    pub spent_week: i64,
    /// The UTC week `spent_week` counts.
    pub spent_week_no: i64,
    /// Spend in the UTC month `spent_month_no`.
    pub spent_month: i64,
    /// The UTC month `spent_month` counts.
    pub spent_month_no: i64,
}

/// What a grant needs of a key.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = api_keys, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct KeyQuota {
    /// Row id.
    pub id: i64,
    /// Total spend cap.
    pub spend_limit: Option<i64>,
    /// Total spend.
    pub spent: i64,
    /// Daily spend cap.
    pub daily_limit: Option<i64>,
    /// Spend on `spent_day`.
    pub spent_today: i64,
    /// The UTC day `spent_today` counts.
    pub spent_day: i64,
    /// Weekly spend cap.
    pub weekly_limit: Option<i64>,
    /// Monthly spend cap.
    pub monthly_limit: Option<i64>,
    /// Spend in the UTC week `spent_week_no`.
    pub spent_week: i64,
    /// The UTC week `spent_week` counts.
    pub spent_week_no: i64,
    /// Spend in the UTC month `spent_month_no`.
    pub spent_month: i64,
    /// The UTC month `spent_month` counts.
    pub spent_month_no: i64,
    /// Unix micros.
    pub expires_at: Option<i64>,
    /// Revoked keys get nothing.
    pub revoked: bool,
}

/// A lease as stored.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = leases, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct LeaseRow {
    /// Random id.
    pub id: String,
    /// The key.
    pub key_id: i64,
    /// The data plane holding it.
    pub node_id: String,
    /// Set aside and not yet spent by a reported request.
    pub held: i64,
    /// The UTC day it holds on.
    pub day: i64,
    /// Unix micros.
    pub expires_at: i64,
}

impl LeaseRow {
    /// Whether it still holds at `now`. A lease dated later than today (a replica whose clock
    /// runs ahead) counts as live: holding too much is safe, too little is not.
    pub fn is_live(&self, now: i64) -> bool {
        self.expires_at >= now && self.day >= utc_day(now)
    }
}

/// Everything a grant decides from, read after the account's row lock was taken.
#[derive(Debug, Clone)]
pub struct GrantBasis {
    /// The key's account.
    pub account: AccountQuota,
    /// The key.
    pub key: KeyQuota,
    /// All of the account's leases, live or not.
    pub leases: Vec<LeaseRow>,
}
