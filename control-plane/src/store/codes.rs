//! Redemption codes: single-use vouchers that top up the account that redeems them.
//!
//! A code is stored hashed (`sha256:` + the hex SHA-256 of its text), like a key: its text is
//! shown once, when it is created; a redemption looks it up by its hash; listings show its id
//! and first characters. A code of high entropy needs no slow hash: the generated ones have
//! about 143 bits, and imported ones are what their system made (new-api: 128-bit UUIDs).
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

/// Characters of a code kept in clear, for listings.
pub const PREFIX_CHARS: usize = 4;
/// What marks a stored hash (a stored value without it is a code in clear from before the
/// hashing migration, hashed at start by [`hash_stored_plaintext`]).
const HASHED: &str = "sha256:";

/// How a code is stored.
pub fn stored_form(code: &str) -> String {
    format!("{HASHED}{}", super::keys::sha256_hex(code.as_bytes()))
}

/// The part of a code listings show.
pub fn prefix(code: &str) -> String {
    code.chars().take(PREFIX_CHARS).collect()
}

/// A code as admins see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Code {
    /// Its id.
    pub id: i64,
    /// The voucher text: only when just created (it is stored hashed).
    pub code: Option<String>,
    /// Its first characters.
    pub prefix: String,
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
    let ids = write_tx!(db, |conn| {
        let mut ids = Vec::with_capacity(codes.len());
        // One statement per code: diesel's SQLite backend has no multi-row INSERT.
        for code in &codes {
            let id: i64 = diesel::insert_into(redemption_codes::table)
                .values((
                    redemption_codes::code.eq(stored_form(code)),
                    redemption_codes::code_prefix.eq(prefix(code)),
                    redemption_codes::amount.eq(amount),
                    redemption_codes::created_at.eq(now),
                ))
                .returning(redemption_codes::id)
                .get_result(conn)
                .await?;
            ids.push(id);
        }
        Ok(ids)
    })?;
    Ok(codes
        .into_iter()
        .zip(ids)
        .map(|(code, id)| Code {
            id,
            prefix: prefix(&code),
            code: Some(code),
            amount,
            redeemed_by: None,
            redeemed_at: None,
            created_at: now,
        })
        .collect())
}

/// Hashes the codes still stored in clear (SQLite databases from before the hashing
/// migration, which SQL there cannot hash), then scrubs the table so their text does not
/// linger in the database files. Returns how many there were.
pub async fn hash_stored_plaintext(db: &Db) -> StoreResult<usize> {
    let hashed = write_tx!(db, |conn| {
        let clear: Vec<(i64, String)> = redemption_codes::table
            .filter(redemption_codes::code.not_like(format!("{HASHED}%")))
            .select((redemption_codes::id, redemption_codes::code))
            .load(conn)
            .await?;
        for (id, code) in &clear {
            diesel::update(redemption_codes::table.find(id))
                .set((
                    redemption_codes::code.eq(stored_form(code)),
                    redemption_codes::code_prefix.eq(prefix(code)),
                ))
                .execute(conn)
                .await?;
        }
        Ok(clear.len())
    })?;
    if hashed > 0 {
        db.scrub("redemption_codes").await;
    }
    Ok(hashed)
}

/// All codes, newest first.
pub async fn list(db: &Db) -> StoreResult<Vec<Code>> {
    with_conn!(db, |conn| {
        let rows = redemption_codes::table
            .left_join(accounts::table)
            .select((
                redemption_codes::id,
                redemption_codes::code_prefix,
                redemption_codes::amount,
                accounts::name.nullable(),
                redemption_codes::redeemed_at,
                redemption_codes::created_at,
            ))
            .order(redemption_codes::id.desc())
            .load::<(i64, String, i64, Option<String>, Option<i64>, i64)>(conn)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(id, prefix, amount, redeemed_by, redeemed_at, created_at)| Code {
                id,
                code: None,
                prefix,
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
    let code = stored_form(code);
    let code = code.as_str();
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
