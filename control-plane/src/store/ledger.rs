//! Balance changes made by operators (top-ups, adjustments) and the ledger that records every
//! balance change.
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::now_micros;
use crate::{
    db::{
        Db, Posted, Posting, TxConn,
        schema::{accounts, ledger},
    },
    error::{StoreError, StoreResult},
    with_conn, write_tx,
};

/// A ledger entry as admins see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Row id.
    pub id: i64,
    /// Account name.
    pub account: String,
    /// `topup`, `redemption`, `usage` or `adjustment`.
    pub kind: String,
    /// Signed amount.
    pub amount: i64,
    /// Balance after this entry.
    pub balance_after: i64,
    /// The billed request, for `usage`.
    pub request_id: Option<String>,
    /// Free text.
    pub note: String,
    /// Unix micros.
    pub created_at: i64,
}

/// Credits an account.
pub async fn top_up(db: &Db, account: &str, amount: i64) -> StoreResult<Posted> {
    if amount <= 0 {
        return Err(StoreError::invalid("top-up amount must be positive"));
    }
    post_to(db, account, "topup", amount, "").await
}

/// Credits (positive) or debits (negative) an account by an operator's decision.
pub async fn adjust(db: &Db, account: &str, amount: i64, note: &str) -> StoreResult<Posted> {
    if amount == 0 {
        return Err(StoreError::invalid("adjustment amount must not be zero"));
    }
    post_to(db, account, "adjustment", amount, note).await
}

async fn post_to(db: &Db, account: &str, kind: &'static str, amount: i64, note: &str) -> StoreResult<Posted> {
    let now = now_micros();
    write_tx!(db, |conn| {
        let account_id = conn.account_id(account).await?;
        conn.post(Posting { account_id, kind, amount, request_id: None, note, now }).await
    })
}

/// Ledger entries, newest first.
pub async fn list(db: &Db, account: Option<&str>, limit: i64) -> StoreResult<Vec<Entry>> {
    with_conn!(db, |conn| {
        let mut query = ledger::table
            .inner_join(accounts::table)
            .select((
                ledger::id,
                accounts::name,
                ledger::kind,
                ledger::amount,
                ledger::balance_after,
                ledger::request_id,
                ledger::note,
                ledger::created_at,
            ))
            .order(ledger::id.desc())
            .limit(limit)
            .into_boxed();
        if let Some(name) = account {
            conn.account_id(name).await?;
            query = query.filter(accounts::name.eq(name));
        }
        let rows = query.load::<(i64, String, String, i64, i64, Option<String>, String, i64)>(conn).await?;
        Ok(rows
            .into_iter()
            .map(|(id, account, kind, amount, balance_after, request_id, note, created_at)| Entry {
                id,
                account,
                kind,
                amount,
                balance_after,
                request_id,
                note,
                created_at,
            })
            .collect())
    })
}

/// The sum of an account's ledger entries and its stored balance, to check they agree.
pub async fn audit(db: &Db, account: &str) -> StoreResult<(i64, i64)> {
    with_conn!(db, |conn| {
        let id = conn.account_id(account).await?;
        let amounts: Vec<i64> =
            ledger::table.filter(ledger::account_id.eq(id)).select(ledger::amount).load(conn).await?;
        let balance: i64 = accounts::table.find(id).select(accounts::balance).first(conn).await?;
        Ok((amounts.iter().sum(), balance))
    })
}
