//! Redemption codes: single-use vouchers that top up the account that redeems them.
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use rand::{Rng, distr::Alphanumeric};

use super::now_micros;
use crate::{
    db::{
        Db, Posted, Posting, TxConn,
        schema::{accounts, redemption_codes},
    },
    error::{StoreError, StoreResult},
    with_conn, write_tx,
};

/// Most codes one call may create.
pub const MAX_CODES_PER_CALL: u32 = 1000;
/// Random characters in a code (about 143 bits).
const CODE_CHARS: usize = 24;

/// A code as admins see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Code {
    /// The voucher text.
    pub code: String,
    /// What it credits.
    pub amount: i64,
    /// The account that redeemed it.
    pub redeemed_by: Option<String>,
    /// Unix micros.
    pub redeemed_at: Option<i64>,
    /// Unix micros.
    pub created_at: i64,
}

fn generate_code() -> String {
    rand::rng().sample_iter(Alphanumeric).take(CODE_CHARS).map(char::from).collect()
}

/// Creates `count` codes worth `amount` each.
pub async fn create(db: &Db, amount: i64, count: u32) -> StoreResult<Vec<Code>> {
    if amount <= 0 {
        return Err(StoreError::invalid("code amount must be positive"));
    }
    if count == 0 || count > MAX_CODES_PER_CALL {
        return Err(StoreError::invalid(format!("count must be between 1 and {MAX_CODES_PER_CALL}")));
    }
    let now = now_micros();
    let codes: Vec<String> = (0..count).map(|_| generate_code()).collect();
    write_tx!(db, |conn| {
        // One statement per code: diesel's SQLite backend has no multi-row INSERT.
        for code in &codes {
            diesel::insert_into(redemption_codes::table)
                .values((
                    redemption_codes::code.eq(code),
                    redemption_codes::amount.eq(amount),
                    redemption_codes::created_at.eq(now),
                ))
                .execute(conn)
                .await?;
        }
        Ok(())
    })?;
    Ok(codes
        .into_iter()
        .map(|code| Code { code, amount, redeemed_by: None, redeemed_at: None, created_at: now })
        .collect())
}

/// All codes, newest first.
pub async fn list(db: &Db) -> StoreResult<Vec<Code>> {
    with_conn!(db, |conn| {
        let rows = redemption_codes::table
            .left_join(accounts::table)
            .select((
                redemption_codes::code,
                redemption_codes::amount,
                accounts::name.nullable(),
                redemption_codes::redeemed_at,
                redemption_codes::created_at,
            ))
            .order(redemption_codes::id.desc())
            .load::<(String, i64, Option<String>, Option<i64>, i64)>(conn)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(code, amount, redeemed_by, redeemed_at, created_at)| Code {
                code,
                amount,
                redeemed_by,
                redeemed_at,
                created_at,
            })
            .collect())
    })
}

/// Redeems `code` for account `account_id`; returns the amount credited and the posting. Exactly one of any number of concurrent
/// redemptions of one code wins: the transaction starts by claiming the code with a
/// conditional update, which only one writer can make.
pub async fn redeem(db: &Db, account_id: i64, code: &str) -> StoreResult<(i64, Posted)> {
    let code = code.trim();
    if code.is_empty() {
        return Err(StoreError::invalid("code must not be empty"));
    }
    let now = now_micros();
    write_tx!(db, |conn| {
        let claimed: Option<i64> = diesel::update(
            redemption_codes::table
                .filter(redemption_codes::code.eq(code))
                .filter(redemption_codes::redeemed_by.is_null()),
        )
        .set((redemption_codes::redeemed_by.eq(account_id), redemption_codes::redeemed_at.eq(now)))
        .returning(redemption_codes::amount)
        .get_result(conn)
        .await
        .optional()?;
        let Some(amount) = claimed else {
            let exists: i64 = redemption_codes::table
                .filter(redemption_codes::code.eq(code))
                .count()
                .get_result(conn)
                .await?;
            return Err(if exists > 0 {
                StoreError::Conflict("this code has already been redeemed".into())
            } else {
                StoreError::NotFound("redemption code".into())
            });
        };
        let posting = Posting { account_id, kind: "redemption", amount, request_id: None, note: "", now };
        Ok((amount, conn.post(posting).await?))
    })
}
