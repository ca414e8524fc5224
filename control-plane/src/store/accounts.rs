//! Accounts: who pays. An account has a group, a balance (the sum of its ledger), optional
//! daily, weekly and monthly spend limits, optional rate limits shared by its keys, and what it
//! signs in to the console with (an email, a password hash) unless it is disabled.
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::{
    check_name, check_non_negative,
    groups::DEFAULT_GROUP,
    limits::{PeriodChange, PeriodLimits, RateChange, RateLimits, month_of_day, week_of_day},
    now_micros, spent_on, utc_day,
};
use crate::{
    db::{
        Db, Posting, TxConn,
        schema::{account_sessions, accounts, token_groups},
    },
    error::{StoreError, StoreResult, exists_as},
    password, read_tx, write_tx,
};

/// An account as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = accounts, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct AccountRow {
    /// Row id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// Token group.
    pub group_id: i64,
    /// Ledger balance in nano-units.
    pub balance: i64,
    /// Daily spend cap.
    pub daily_limit: Option<i64>,
    /// Spend on `spent_day`.
    pub spent_today: i64,
    /// The UTC day `spent_today` counts.
    pub spent_day: i64,
    /// Policy version of the last policy-relevant change.
    pub version: i64,
    /// Unix micros.
    pub created_at: i64,
    /// Console sign-in address, lowercase.
    pub email: Option<String>,
    /// Refused at sign-in.
    pub disabled: bool,
    /// Whether a console password is set.
    #[diesel(select_expression = accounts::password_hash.is_not_null())]
    #[diesel(select_expression_type = diesel::dsl::IsNotNull<accounts::password_hash>)]
    pub has_password: bool,
    /// Requests per rate window.
    pub rpm: Option<i64>,
    /// Tokens per rate window.
    pub tpm: Option<i64>,
    /// Requests in flight.
    pub max_concurrent: Option<i64>,
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

impl AccountRow {
    /// Its rate limits.
    pub fn rates(&self) -> RateLimits {
        RateLimits { rpm: self.rpm, tpm: self.tpm, max_concurrent: self.max_concurrent }
    }
}

/// An account as admins see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Row id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// Token group name.
    pub group: String,
    /// Ledger balance.
    pub balance: i64,
    /// Held in data planes' live leases (not subtracted from the balance).
    pub reserved: i64,
    /// Daily spend cap.
    pub daily_limit: Option<i64>,
    /// Spend in the current UTC day.
    pub spent_today: i64,
    /// Unix micros.
    pub created_at: i64,
    /// Console sign-in address, lowercase.
    pub email: Option<String>,
    /// Refused at sign-in.
    pub disabled: bool,
    /// Whether a console password is set.
    pub has_password: bool,
    /// Rate limits shared by its keys.
    pub rates: RateLimits,
    /// Weekly and monthly spend caps.
    pub periods: PeriodLimits,
    /// Spend in the current UTC week (from Monday).
    pub spent_this_week: i64,
    /// Spend in the current UTC month.
    pub spent_this_month: i64,
}

/// Limits of a new account besides its daily limit.
#[derive(Debug, Clone, Copy, Default)]
pub struct NewLimits {
    /// Rate limits.
    pub rates: RateLimits,
    /// Weekly and monthly spend caps.
    pub periods: PeriodLimits,
}

/// Changes to an account's limits besides its daily limit.
#[derive(Debug, Clone, Copy, Default)]
pub struct LimitChange {
    /// Rate limits.
    pub rates: RateChange,
    /// Weekly and monthly spend caps.
    pub periods: PeriodChange,
}

fn view(row: AccountRow, group: String, reserved: i64, now: i64) -> Account {
    let today = utc_day(now);
    let rates = row.rates();
    Account {
        rates,
        periods: PeriodLimits { weekly: row.weekly_limit, monthly: row.monthly_limit },
        spent_this_week: spent_on(week_of_day(today), row.spent_week_no, row.spent_week),
        spent_this_month: spent_on(month_of_day(today), row.spent_month_no, row.spent_month),
        id: row.id,
        name: row.name,
        group,
        balance: row.balance,
        reserved,
        daily_limit: row.daily_limit,
        spent_today: spent_on(today, row.spent_day, row.spent_today),
        created_at: row.created_at,
        email: row.email,
        disabled: row.disabled,
        has_password: row.has_password,
    }
}

/// A sign-in address as stored: trimmed and lowercase, so that uniqueness ignores case.
pub fn normalize_email(email: &str) -> StoreResult<String> {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control() || c == ',')
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty() && !domain.contains('@'));
    if !valid {
        return Err(StoreError::invalid(format!("{email:?} is not an email address")));
    }
    Ok(email)
}

fn email_taken(email: &str) -> impl FnOnce() -> String + '_ {
    move || format!("an account with email {email:?}")
}

/// Adds an account; an opening balance is posted to the ledger as a top-up.
pub async fn add(
    db: &Db,
    name: &str,
    group: Option<&str>,
    balance: Option<i64>,
    daily_limit: Option<i64>,
    email: Option<&str>,
) -> StoreResult<Account> {
    add_limited(db, name, group, balance, daily_limit, email, NewLimits::default()).await
}

/// Adds an account with rate and period limits too.
pub async fn add_limited(
    db: &Db,
    name: &str,
    group: Option<&str>,
    balance: Option<i64>,
    daily_limit: Option<i64>,
    email: Option<&str>,
    limits: NewLimits,
) -> StoreResult<Account> {
    check_name("account", name)?;
    let email = email.map(normalize_email).transpose()?;
    limits.rates.check()?;
    limits.periods.check()?;
    let balance = balance.unwrap_or(0);
    check_non_negative("balance", balance)?;
    if let Some(limit) = daily_limit {
        check_non_negative("daily limit", limit)?;
    }
    let group = group.unwrap_or(DEFAULT_GROUP);
    let now = now_micros();
    write_tx!(db, |conn| {
        let group_id = conn.group_id(group).await?;
        if let Some(email) = &email {
            let taken: Option<i64> = accounts::table
                .filter(accounts::email.eq(email))
                .select(accounts::id)
                .first(conn)
                .await
                .optional()?;
            if taken.is_some() {
                return Err(StoreError::AlreadyExists(email_taken(email)()));
            }
        }
        let version = conn.bump_policy_version().await?;
        let id: i64 = diesel::insert_into(accounts::table)
            .values((
                accounts::name.eq(name),
                accounts::group_id.eq(group_id),
                accounts::balance.eq(0),
                accounts::daily_limit.eq(daily_limit),
                accounts::spent_today.eq(0),
                accounts::spent_day.eq(utc_day(now)),
                accounts::version.eq(version),
                accounts::created_at.eq(now),
                accounts::email.eq(&email),
                accounts::rpm.eq(limits.rates.rpm),
                accounts::tpm.eq(limits.rates.tpm),
                accounts::max_concurrent.eq(limits.rates.max_concurrent),
                accounts::weekly_limit.eq(limits.periods.weekly),
                accounts::monthly_limit.eq(limits.periods.monthly),
                accounts::spent_week_no.eq(week_of_day(utc_day(now))),
                accounts::spent_month_no.eq(month_of_day(utc_day(now))),
            ))
            .returning(accounts::id)
            .get_result(conn)
            .await
            .map_err(exists_as(|| format!("account {name:?}")))?;
        if balance > 0 {
            let posting = Posting {
                account_id: id,
                kind: "topup",
                amount: balance,
                request_id: None,
                note: "opening balance",
                now,
            };
            conn.post(posting).await?;
        }
        Ok(())
    })?;
    get(db, name).await
}

/// What `update` changes; `None` leaves a setting as it is.
#[derive(Debug, Clone, Default)]
pub struct AccountUpdate<'a> {
    /// A new token group.
    pub group: Option<&'a str>,
    /// A new daily limit (`Some(None)` removes it).
    pub daily_limit: Option<Option<i64>>,
    /// A new sign-in email (`Some(None)` removes it).
    pub email: Option<Option<&'a str>>,
    /// Disable or enable; disabling ends the account's console sessions.
    pub disabled: Option<bool>,
    /// Rate limits and weekly/monthly caps.
    pub limits: LimitChange,
}

/// Changes an account; what `update` leaves `None` stays as it is.
pub async fn update(db: &Db, name: &str, update: AccountUpdate<'_>) -> StoreResult<Account> {
    let AccountUpdate { group, daily_limit, email, disabled, limits } = update;
    if let Some(Some(limit)) = daily_limit {
        check_non_negative("daily limit", limit)?;
    }
    let email = match email {
        Some(Some(email)) => Some(Some(normalize_email(email)?)),
        Some(None) => Some(None),
        None => None,
    };
    write_tx!(db, |conn| {
        let id = conn.account_id(name).await?;
        let target = accounts::table.find(id);
        if let Some(email) = &email {
            diesel::update(target)
                .set(accounts::email.eq(email))
                .execute(conn)
                .await
                .map_err(exists_as(email_taken(email.as_deref().unwrap_or_default())))?;
        }
        if let Some(disabled) = disabled {
            diesel::update(target).set(accounts::disabled.eq(disabled)).execute(conn).await?;
            if disabled {
                diesel::delete(account_sessions::table.filter(account_sessions::account_id.eq(id)))
                    .execute(conn)
                    .await?;
            }
        }
        if let Some(group) = group {
            let group_id = conn.group_id(group).await?;
            let version = conn.bump_policy_version().await?;
            diesel::update(target)
                .set((accounts::group_id.eq(group_id), accounts::version.eq(version)))
                .execute(conn)
                .await?;
        }
        if let Some(limit) = daily_limit {
            diesel::update(target).set(accounts::daily_limit.eq(limit)).execute(conn).await?;
        }
        let row: AccountRow = target.select(AccountRow::as_select()).first(conn).await?;
        let periods =
            limits.periods.apply(PeriodLimits { weekly: row.weekly_limit, monthly: row.monthly_limit })?;
        diesel::update(target)
            .set((accounts::weekly_limit.eq(periods.weekly), accounts::monthly_limit.eq(periods.monthly)))
            .execute(conn)
            .await?;
        if !limits.rates.is_empty() {
            // Data planes enforce rate limits: a policy change.
            let rates = limits.rates.apply(row.rates())?;
            let version = conn.bump_policy_version().await?;
            diesel::update(target)
                .set((
                    accounts::rpm.eq(rates.rpm),
                    accounts::tpm.eq(rates.tpm),
                    accounts::max_concurrent.eq(rates.max_concurrent),
                    accounts::version.eq(version),
                ))
                .execute(conn)
                .await?;
        }
        Ok(())
    })?;
    get(db, name).await
}

/// Sets the account's console password (hashed with argon2id) and ends its sessions.
pub async fn set_password(db: &Db, name: &str, password: &str) -> StoreResult<Account> {
    password::check_strength(password).map_err(StoreError::invalid)?;
    let hash = password::hash(password.to_owned()).await.map_err(StoreError::Unavailable)?;
    write_tx!(db, |conn| {
        let id = conn.account_id(name).await?;
        diesel::update(accounts::table.find(id)).set(accounts::password_hash.eq(&hash)).execute(conn).await?;
        diesel::delete(account_sessions::table.filter(account_sessions::account_id.eq(id)))
            .execute(conn)
            .await?;
        Ok(())
    })?;
    get(db, name).await
}

/// One account by name.
pub async fn get(db: &Db, name: &str) -> StoreResult<Account> {
    let now = now_micros();
    read_tx!(db, |conn| {
        let (row, group) = accounts::table
            .inner_join(token_groups::table)
            .filter(accounts::name.eq(name))
            .select((AccountRow::as_select(), token_groups::name))
            .first::<(AccountRow, String)>(conn)
            .await
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("account {name:?}")))?;
        let reserved = conn.reserved(Some(row.id), now).await?.get(&row.id).copied().unwrap_or(0);
        Ok(view(row, group, reserved, now))
    })
}

/// One account by id.
pub async fn get_by_id(db: &Db, id: i64) -> StoreResult<Account> {
    get_by_id_at(db, id, now_micros()).await
}

/// One account by id, its spend "today", "this week" and "this month" as of `now` (unix
/// micros): for tests with a clock of their own.
pub async fn get_by_id_at(db: &Db, id: i64, now: i64) -> StoreResult<Account> {
    read_tx!(db, |conn| {
        let (row, group) = accounts::table
            .inner_join(token_groups::table)
            .filter(accounts::id.eq(id))
            .select((AccountRow::as_select(), token_groups::name))
            .first::<(AccountRow, String)>(conn)
            .await
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("account {id}")))?;
        let reserved = conn.reserved(Some(id), now).await?.get(&id).copied().unwrap_or(0);
        Ok(view(row, group, reserved, now))
    })
}

/// All accounts, by name.
pub async fn list(db: &Db) -> StoreResult<Vec<Account>> {
    let now = now_micros();
    read_tx!(db, |conn| {
        let rows = accounts::table
            .inner_join(token_groups::table)
            .order(accounts::name)
            .select((AccountRow::as_select(), token_groups::name))
            .load::<(AccountRow, String)>(conn)
            .await?;
        let reserved = conn.reserved(None, now).await?;
        Ok(rows
            .into_iter()
            .map(|(row, group)| {
                let held = reserved.get(&row.id).copied().unwrap_or(0);
                view(row, group, held, now)
            })
            .collect())
    })
}
