//! Steps shared by many write transactions, implemented once for each backend's connection
//! (the statements that differ per backend are in [`Dialect`](super::Dialect)).
use std::collections::HashMap;

use diesel::{
    ExpressionMethods, OptionalExtension, QueryDsl, QueryResult, SqliteConnection, result::DatabaseErrorKind,
};
use diesel_async::{
    AsyncConnection, AsyncPgConnection, RunQueryDsl, sync_connection_wrapper::SyncConnectionWrapper,
};

use super::{
    dialect::{AccountUsage, Dialect, NewLedgerEntry},
    schema::{accounts, leases, ledger, policy_removals, policy_state, token_groups},
    sqlite::SqliteWriter,
};
use crate::error::{StoreError, StoreResult};

/// A balance change to post: the account row and the ledger move together.
#[derive(Debug, Clone)]
pub struct Posting<'a> {
    /// The account credited (positive) or debited (negative).
    pub account_id: i64,
    /// `topup`, `redemption`, `usage` or `adjustment`.
    pub kind: &'static str,
    /// Signed amount in nano-units.
    pub amount: i64,
    /// The request billed, for `usage`.
    pub request_id: Option<&'a str>,
    /// Free text for operators.
    pub note: &'a str,
    /// Unix micros.
    pub now: i64,
}

/// The row a [`Posting`] wrote.
#[derive(Debug, Clone, Copy)]
pub struct Posted {
    /// The ledger entry's id.
    pub ledger_id: i64,
    /// The account's balance after the change.
    pub balance: i64,
}

/// The usage debits of one batch for one account: posted as one balance change and one
/// ledger entry per request.
#[derive(Debug, Clone, Default)]
pub struct UsageDebit<'a> {
    /// The account debited.
    pub account_id: i64,
    /// `(request id, cost)` of every billed request, in ledger order; costs are positive.
    pub entries: Vec<(&'a str, i64)>,
    /// The latest UTC day among the requests (see [`DayTotal`](crate::store::DayTotal)).
    pub day: i64,
    /// What the requests of `day` cost.
    pub day_total: i64,
    /// The latest UTC week among the requests, and what its requests cost.
    pub week: i64,
    /// What the requests of `week` cost.
    pub week_total: i64,
    /// The latest UTC month among the requests.
    pub month: i64,
    /// What the requests of `month` cost.
    pub month_total: i64,
}

/// Transaction steps every backend's connection can run.
pub trait TxConn: AsyncConnection + Dialect + Send {
    /// Increments the policy version and returns it. Holding this row (it is written) orders
    /// all policy changes: versions are assigned in commit order.
    fn bump_policy_version(&mut self) -> impl Future<Output = QueryResult<i64>> + Send;

    /// Notes that entity `id` of `kind` left the policy at `version`.
    fn record_removal(
        &mut self,
        version: i64,
        kind: &'static str,
        id: i64,
    ) -> impl Future<Output = QueryResult<()>> + Send;

    /// The id of the group called `name`.
    fn group_id(&mut self, name: &str) -> impl Future<Output = StoreResult<i64>> + Send;

    /// The id of the account called `name`.
    fn account_id(&mut self, name: &str) -> impl Future<Output = StoreResult<i64>> + Send;

    /// Applies `posting` to the account's balance and appends its ledger entry, refusing a
    /// change that would overflow the balance.
    fn post(&mut self, posting: Posting<'_>) -> impl Future<Output = StoreResult<Posted>> + Send;

    /// Debits accounts for a batch's requests: one balance update per account (which also
    /// advances its daily counter) and one `usage` ledger entry per request, each with the
    /// balance after it. A balance may go below zero (bounded overspend), never overflow.
    fn post_usage(
        &mut self,
        debits: &[UsageDebit<'_>],
        now: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// What live leases (see [`LeaseRow::is_live`](crate::store::leases::LeaseRow::is_live)) hold, per account; only
    /// of `account` when given.
    fn reserved(
        &mut self,
        account: Option<i64>,
        now: i64,
    ) -> impl Future<Output = QueryResult<HashMap<i64, i64>>> + Send;
}

macro_rules! impl_tx_conn {
    ($conn:ty) => {
        impl TxConn for $conn {
            async fn bump_policy_version(&mut self) -> QueryResult<i64> {
                diesel::update(policy_state::table.filter(policy_state::id.eq(1)))
                    .set(policy_state::version.eq(policy_state::version + 1))
                    .returning(policy_state::version)
                    .get_result(self)
                    .await
            }

            async fn record_removal(&mut self, version: i64, kind: &'static str, id: i64) -> QueryResult<()> {
                diesel::insert_into(policy_removals::table)
                    .values((
                        policy_removals::version.eq(version),
                        policy_removals::kind.eq(kind),
                        policy_removals::entity_id.eq(id),
                    ))
                    .execute(self)
                    .await
                    .map(drop)
            }

            async fn group_id(&mut self, name: &str) -> StoreResult<i64> {
                token_groups::table
                    .filter(token_groups::name.eq(name))
                    .select(token_groups::id)
                    .first(self)
                    .await
                    .optional()?
                    .ok_or_else(|| StoreError::NotFound(format!("group {name:?}")))
            }

            async fn account_id(&mut self, name: &str) -> StoreResult<i64> {
                accounts::table
                    .filter(accounts::name.eq(name))
                    .select(accounts::id)
                    .first(self)
                    .await
                    .optional()?
                    .ok_or_else(|| StoreError::NotFound(format!("account {name:?}")))
            }

            async fn post(&mut self, posting: Posting<'_>) -> StoreResult<Posted> {
                let amount = posting.amount;
                // SQLite turns an overflowing integer sum into a float, so the bound is checked
                // in the statement itself rather than trusted to the database.
                let target = accounts::table.filter(accounts::id.eq(posting.account_id));
                let updated = if amount >= 0 {
                    diesel::update(target.filter(accounts::balance.le(i64::MAX - amount)))
                        .set(accounts::balance.eq(accounts::balance + amount))
                        .returning(accounts::balance)
                        .get_result::<i64>(self)
                        .await
                } else {
                    diesel::update(target.filter(accounts::balance.ge(i64::MIN - amount)))
                        .set(accounts::balance.eq(accounts::balance + amount))
                        .returning(accounts::balance)
                        .get_result::<i64>(self)
                        .await
                };
                let balance = match updated {
                    Ok(balance) => balance,
                    Err(diesel::result::Error::NotFound) => {
                        return Err(StoreError::Conflict("the balance would overflow".into()));
                    }
                    Err(e) => return Err(e.into()),
                };
                let ledger_id = diesel::insert_into(ledger::table)
                    .values((
                        ledger::account_id.eq(posting.account_id),
                        ledger::kind.eq(posting.kind),
                        ledger::amount.eq(amount),
                        ledger::balance_after.eq(balance),
                        ledger::request_id.eq(posting.request_id),
                        ledger::note.eq(posting.note),
                        ledger::created_at.eq(posting.now),
                    ))
                    .returning(ledger::id)
                    .get_result::<i64>(self)
                    .await?;
                Ok(Posted { ledger_id, balance })
            }

            async fn post_usage(&mut self, debits: &[UsageDebit<'_>], now: i64) -> StoreResult<()> {
                let overflow = || StoreError::Conflict("the balance would overflow".into());
                let mut updates = Vec::with_capacity(debits.len());
                for debit in debits {
                    let total = debit
                        .entries
                        .iter()
                        .try_fold(0_i64, |sum, (_, cost)| sum.checked_add(*cost))
                        .ok_or_else(overflow)?;
                    updates.push(AccountUsage {
                        account_id: debit.account_id,
                        total,
                        floor: i64::MIN + total,
                        day: debit.day,
                        day_total: debit.day_total,
                        week: debit.week,
                        week_total: debit.week_total,
                        month: debit.month,
                        month_total: debit.month_total,
                    });
                }
                let balances: HashMap<i64, i64> =
                    self.debit_accounts(updates.clone()).await?.into_iter().collect();
                let mut rows = Vec::new();
                for (debit, update) in debits.iter().zip(&updates) {
                    let balance = balances.get(&debit.account_id).copied().ok_or_else(overflow)?;
                    // Entries carry the running balance as if posted one by one, in order.
                    let mut running = balance + update.total;
                    for (request_id, cost) in &debit.entries {
                        running -= cost;
                        rows.push(NewLedgerEntry {
                            account_id: debit.account_id,
                            kind: "usage",
                            amount: -cost,
                            balance_after: running,
                            request_id: Some((*request_id).to_owned()),
                            note: String::new(),
                            created_at: now,
                        });
                    }
                }
                // The ledger remembers every billed request for good, also when retention has
                // deleted its usage record (and with it what made a re-delivery a duplicate).
                self.insert_ledger(rows).await.map_err(|error| match error {
                    diesel::result::Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                        StoreError::Conflict("the request was billed before".into())
                    }
                    other => other.into(),
                })?;
                Ok(())
            }

            async fn reserved(&mut self, account: Option<i64>, now: i64) -> QueryResult<HashMap<i64, i64>> {
                let mut query = leases::table
                    .filter(leases::day.ge(crate::store::utc_day(now)))
                    .filter(leases::expires_at.ge(now))
                    .select((leases::account_id, leases::held))
                    .into_boxed();
                if let Some(id) = account {
                    query = query.filter(leases::account_id.eq(id));
                }
                let mut reserved = HashMap::new();
                for (account_id, held) in query.load::<(i64, i64)>(self).await? {
                    let sum = reserved.entry(account_id).or_insert(0_i64);
                    *sum = sum.saturating_add(held);
                }
                Ok(reserved)
            }
        }
    };
}

impl_tx_conn!(AsyncPgConnection);
impl_tx_conn!(SyncConnectionWrapper<SqliteConnection>);
impl_tx_conn!(SqliteWriter);
