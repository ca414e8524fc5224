//! API keys: random secrets shown once; the database keeps only their SHA-256 digest.
use std::collections::HashMap;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use rand::{Rng, distr::Alphanumeric};
use sha2::{Digest, Sha256};

use super::{
    check_non_negative, clean_names, json_list,
    limits::{PeriodChange, PeriodLimits, RateChange, RateLimits, month_of_day, week_of_day},
    now_micros, parse_json_list, spent_on, utc_day,
};
use crate::{
    db::{
        Db, TxConn,
        schema::{accounts, api_keys, leases, token_groups},
    },
    error::{StoreError, StoreResult},
    read_tx, write_tx,
};

/// Random characters after `sk-`: 48 alphanumerics carry about 285 bits.
const SECRET_CHARS: usize = 48;
/// Characters of the secret kept as its visible prefix (`sk-` and 8 more, about 48 bits).
const PREFIX_CHARS: usize = 11;

/// A new random key secret.
pub fn generate_secret() -> String {
    let random: String = rand::rng().sample_iter(Alphanumeric).take(SECRET_CHARS).map(char::from).collect();
    format!("sk-{random}")
}

/// The stored form of a secret: hex SHA-256 (the secret is high-entropy, so no slow hash).
pub fn hash_secret(secret: &str) -> String {
    sha256_hex(secret.as_bytes())
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A key as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = api_keys, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct KeyRow {
    /// Row id, the key's public id.
    pub id: i64,
    /// Owning account.
    pub account_id: i64,
    /// Free name.
    pub name: String,
    /// Visible start of the secret.
    pub prefix: String,
    /// Hex SHA-256 of the secret.
    pub secret_hash: String,
    /// Own group; `None`: the account's.
    pub group_id: Option<i64>,
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
    /// JSON allow-list of models.
    pub models: String,
    /// Unix micros.
    pub expires_at: Option<i64>,
    /// Revoked keys are refused.
    pub revoked: bool,
    /// Policy version of the last change.
    pub version: i64,
    /// Unix micros.
    pub created_at: i64,
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

impl KeyRow {
    /// Its own rate limits (its group's apply where it has none).
    pub fn rates(&self) -> RateLimits {
        RateLimits { rpm: self.rpm, tpm: self.tpm, max_concurrent: self.max_concurrent }
    }
}

/// A key as admins see it (never its secret or hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// Public id.
    pub id: i64,
    /// Free name.
    pub name: String,
    /// Visible start of the secret.
    pub prefix: String,
    /// Owning account's id.
    pub account_id: i64,
    /// Owning account's name.
    pub account: String,
    /// Own group name.
    pub group: Option<String>,
    /// The group in force.
    pub effective_group: String,
    /// Total spend cap.
    pub limit: Option<i64>,
    /// Total spend.
    pub spent: i64,
    /// Daily spend cap.
    pub daily_limit: Option<i64>,
    /// Spend in the current UTC day.
    pub spent_today: i64,
    /// Allow-list (empty: all the group reaches).
    pub models: Vec<String>,
    /// Unix micros.
    pub expires_at: Option<i64>,
    /// Revoked.
    pub revoked: bool,
    /// Unix micros.
    pub created_at: i64,
    /// Its own rate limits.
    pub rates: RateLimits,
    /// Weekly and monthly spend caps.
    pub periods: PeriodLimits,
    /// Spend in the current UTC week.
    pub spent_this_week: i64,
    /// Spend in the current UTC month.
    pub spent_this_month: i64,
}

/// Options of a new key.
#[derive(Debug, Clone, Default)]
pub struct KeySpec {
    /// Owning account's name.
    pub account: String,
    /// Free name.
    pub name: Option<String>,
    /// Own group name.
    pub group: Option<String>,
    /// Total spend cap.
    pub limit: Option<i64>,
    /// Daily spend cap.
    pub daily_limit: Option<i64>,
    /// Allow-list.
    pub models: Vec<String>,
    /// Unix micros.
    pub expires_at: Option<i64>,
    /// Own rate limits.
    pub rates: RateLimits,
    /// Weekly and monthly spend caps.
    pub periods: PeriodLimits,
}

/// Changes to a key; the outer `None` leaves a field alone, `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct KeyUpdate {
    /// New name.
    pub name: Option<String>,
    /// New own group.
    pub group: Option<Option<String>>,
    /// New total cap.
    pub limit: Option<Option<i64>>,
    /// New daily cap.
    pub daily_limit: Option<Option<i64>>,
    /// New allow-list (empty: none).
    pub models: Option<Vec<String>>,
    /// New expiry.
    pub expires_at: Option<Option<i64>>,
    /// New own rate limits.
    pub rates: RateChange,
    /// New weekly and monthly caps.
    pub periods: PeriodChange,
}

fn check_limits(limit: Option<i64>, daily_limit: Option<i64>) -> StoreResult<()> {
    if let Some(limit) = limit {
        check_non_negative("key limit", limit)?;
    }
    if let Some(limit) = daily_limit {
        check_non_negative("key daily limit", limit)?;
    }
    Ok(())
}

/// Creates a key; returns it with its secret, which is not kept.
pub async fn create(db: &Db, spec: KeySpec) -> StoreResult<(Key, String)> {
    check_limits(spec.limit, spec.daily_limit)?;
    spec.rates.check()?;
    spec.periods.check()?;
    let models = json_list(&clean_names("model", &spec.models)?);
    let secret = generate_secret();
    let hash = hash_secret(&secret);
    let prefix = secret[..PREFIX_CHARS].to_owned();
    let now = now_micros();
    let id = write_tx!(db, |conn| {
        let account_id = conn.account_id(&spec.account).await?;
        let group_id = match &spec.group {
            Some(group) => Some(conn.group_id(group).await?),
            None => None,
        };
        let version = conn.bump_policy_version().await?;
        Ok(diesel::insert_into(api_keys::table)
            .values((
                api_keys::account_id.eq(account_id),
                api_keys::name.eq(spec.name.as_deref().unwrap_or("")),
                api_keys::prefix.eq(&prefix),
                api_keys::secret_hash.eq(&hash),
                api_keys::group_id.eq(group_id),
                api_keys::spend_limit.eq(spec.limit),
                api_keys::spent.eq(0),
                api_keys::daily_limit.eq(spec.daily_limit),
                api_keys::spent_today.eq(0),
                api_keys::spent_day.eq(utc_day(now)),
                api_keys::models.eq(&models),
                api_keys::expires_at.eq(spec.expires_at),
                api_keys::revoked.eq(false),
                api_keys::version.eq(version),
                api_keys::created_at.eq(now),
                api_keys::rpm.eq(spec.rates.rpm),
                api_keys::tpm.eq(spec.rates.tpm),
                api_keys::max_concurrent.eq(spec.rates.max_concurrent),
                api_keys::weekly_limit.eq(spec.periods.weekly),
                api_keys::monthly_limit.eq(spec.periods.monthly),
                api_keys::spent_week_no.eq(week_of_day(utc_day(now))),
                api_keys::spent_month_no.eq(month_of_day(utc_day(now))),
            ))
            .returning(api_keys::id)
            .get_result::<i64>(conn)
            .await?)
    })?;
    Ok((get(db, id).await?, secret))
}

/// Changes a key's name, group, limits, allow-list or expiry.
pub async fn update(db: &Db, id: i64, update: KeyUpdate) -> StoreResult<Key> {
    check_limits(update.limit.flatten(), update.daily_limit.flatten())?;
    let models =
        update.models.as_deref().map(|m| clean_names("model", m)).transpose()?.map(|m| json_list(&m));
    write_tx!(db, |conn| {
        let mut row: KeyRow = api_keys::table
            .find(id)
            .select(KeyRow::as_select())
            .first(conn)
            .await
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("key {id}")))?;
        if let Some(name) = update.name {
            row.name = name;
        }
        if let Some(group) = update.group {
            row.group_id = match group {
                Some(group) => Some(conn.group_id(&group).await?),
                None => None,
            };
        }
        if let Some(limit) = update.limit {
            row.spend_limit = limit;
        }
        if let Some(limit) = update.daily_limit {
            row.daily_limit = limit;
        }
        if let Some(models) = models {
            row.models = models;
        }
        if let Some(expires_at) = update.expires_at {
            row.expires_at = expires_at;
        }
        let rates = update.rates.apply(row.rates())?;
        let periods =
            update.periods.apply(PeriodLimits { weekly: row.weekly_limit, monthly: row.monthly_limit })?;
        let version = conn.bump_policy_version().await?;
        diesel::update(api_keys::table.find(id))
            .set((
                api_keys::name.eq(row.name),
                api_keys::group_id.eq(row.group_id),
                api_keys::spend_limit.eq(row.spend_limit),
                api_keys::daily_limit.eq(row.daily_limit),
                api_keys::models.eq(row.models),
                api_keys::expires_at.eq(row.expires_at),
                api_keys::version.eq(version),
                api_keys::rpm.eq(rates.rpm),
                api_keys::tpm.eq(rates.tpm),
                api_keys::max_concurrent.eq(rates.max_concurrent),
                api_keys::weekly_limit.eq(periods.weekly),
                api_keys::monthly_limit.eq(periods.monthly),
            ))
            .execute(conn)
            .await?;
        Ok(())
    })?;
    get(db, id).await
}

/// Revokes a key: it is refused from the next policy version on.
pub async fn revoke(db: &Db, id: i64) -> StoreResult<Key> {
    write_tx!(db, |conn| {
        let version = conn.bump_policy_version().await?;
        let changed = diesel::update(api_keys::table.find(id))
            .set((api_keys::revoked.eq(true), api_keys::version.eq(version)))
            .execute(conn)
            .await?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("key {id}")));
        }
        conn.record_removal(version, "key", id).await?;
        // What its leases held goes back to the account's other keys at once.
        diesel::delete(leases::table.filter(leases::key_id.eq(id))).execute(conn).await?;
        Ok(())
    })?;
    get(db, id).await
}

/// One key by id.
pub async fn get(db: &Db, id: i64) -> StoreResult<Key> {
    let mut keys = load(db, Filter::Id(id)).await?;
    keys.pop().ok_or_else(|| StoreError::NotFound(format!("key {id}")))
}

/// Keys, newest first, optionally of one account.
pub async fn list(db: &Db, account: Option<&str>) -> StoreResult<Vec<Key>> {
    match account {
        Some(name) => load(db, Filter::Account(name)).await,
        None => load(db, Filter::All).await,
    }
}

enum Filter<'a> {
    All,
    Id(i64),
    Account(&'a str),
}

async fn load(db: &Db, filter: Filter<'_>) -> StoreResult<Vec<Key>> {
    let today = utc_day(now_micros());
    let (week, month) = (week_of_day(today), month_of_day(today));
    read_tx!(db, |conn| {
        let groups: HashMap<i64, String> = token_groups::table
            .select((token_groups::id, token_groups::name))
            .load::<(i64, String)>(conn)
            .await?
            .into_iter()
            .collect();
        let mut query = api_keys::table
            .inner_join(accounts::table)
            .select((KeyRow::as_select(), accounts::name, accounts::group_id))
            .order(api_keys::id.desc())
            .into_boxed();
        match filter {
            Filter::All => {}
            Filter::Id(id) => query = query.filter(api_keys::id.eq(id)),
            Filter::Account(name) => {
                conn.account_id(name).await?;
                query = query.filter(accounts::name.eq(name));
            }
        }
        let rows = query.load::<(KeyRow, String, i64)>(conn).await?;
        let group_name = |id: i64| groups.get(&id).cloned().unwrap_or_default();
        Ok(rows
            .into_iter()
            .map(|(row, account, account_group)| Key {
                rates: row.rates(),
                periods: PeriodLimits { weekly: row.weekly_limit, monthly: row.monthly_limit },
                spent_this_week: spent_on(week, row.spent_week_no, row.spent_week),
                spent_this_month: spent_on(month, row.spent_month_no, row.spent_month),
                id: row.id,
                name: row.name,
                prefix: row.prefix,
                account_id: row.account_id,
                account,
                group: row.group_id.map(group_name),
                effective_group: group_name(row.group_id.unwrap_or(account_group)),
                limit: row.spend_limit,
                spent: row.spent,
                daily_limit: row.daily_limit,
                spent_today: spent_on(today, row.spent_day, row.spent_today),
                models: parse_json_list(&row.models),
                expires_at: row.expires_at,
                revoked: row.revoked,
                created_at: row.created_at,
            })
            .collect())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_random_and_hashed() {
        let (a, b) = (generate_secret(), generate_secret());
        assert_ne!(a, b);
        assert!(a.starts_with("sk-") && a.len() == 3 + SECRET_CHARS);
        assert_eq!(hash_secret(&a).len(), 64);
        assert_eq!(hash_secret(&a), hash_secret(&a));
        assert_ne!(hash_secret(&a), hash_secret(&b));
        // Known vector: SHA-256("abc").
        assert_eq!(hash_secret("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
