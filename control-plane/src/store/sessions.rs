//! Console sessions: sign-in with an email and a password, sessions kept by the SHA-256
//! digest of their random token (the token itself is handed out once), and the sign-in rate
//! limit (failed attempts per account and per client address within a window).
//!
//! A sign-in records its attempt before the password is checked and deletes it when the
//! password was right, so attempts running at the same time count against the limit too and
//! no more than [`MAX_FAILED_SIGN_INS`] guesses are ever checked per window.
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use sha2::{Digest, Sha256};

use super::accounts::{self as account_store, Account};
use crate::{
    db::{
        Db, Dialect,
        schema::{account_sessions, accounts, sign_in_attempts},
    },
    error::{StoreError, StoreResult},
    password, read_tx, write_tx,
};

/// Failed sign-ins per account or per client address within [`SIGN_IN_WINDOW`] after which
/// sign-in is refused.
pub const MAX_FAILED_SIGN_INS: i64 = 10;
/// The window failed sign-ins are counted over, in microseconds (15 minutes).
pub const SIGN_IN_WINDOW: i64 = 15 * 60 * 1_000_000;
/// How long a session lasts unless it ends sooner, in microseconds (7 days).
pub const DEFAULT_LIFETIME: i64 = 7 * 24 * 3600 * 1_000_000;
/// Longest client address kept (what the data plane sends is an IP address).
const MAX_ADDRESS_LEN: usize = 64;

/// A session just opened: the only time its token exists outside the browser.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// The secret the browser keeps in its cookie.
    pub token: String,
    /// What state-changing calls must echo in `x-csrf-token`.
    pub csrf_token: String,
    /// Unix micros.
    pub expires_at: i64,
    /// Who signed in.
    pub account: Account,
}

/// A live session.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// Whose session it is.
    pub account: Account,
    /// The session's CSRF token.
    pub csrf_token: String,
    /// Unix micros.
    pub expires_at: i64,
}

fn digest(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn random_hex() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Seconds until the oldest of `count` attempts since `oldest` leaves the window, if the count
/// has reached the limit.
fn wait_for(count: i64, oldest: Option<i64>, now: i64) -> Option<u64> {
    if count < MAX_FAILED_SIGN_INS {
        return None;
    }
    let left = oldest.unwrap_or(now).saturating_add(SIGN_IN_WINDOW).saturating_sub(now);
    Some(u64::try_from(left.saturating_add(999_999) / 1_000_000).unwrap_or(0).max(1))
}

/// The account signing in: id, password hash, disabled.
type Candidate = (i64, Option<String>, bool);

/// Signs in: checks the rate limit, then the password; opens a session of `lifetime`
/// microseconds. Errors: [`StoreError::RateLimited`], [`StoreError::Unauthenticated`] (wrong
/// email or password: which one is not said), [`StoreError::Forbidden`] (disabled account).
pub async fn login(
    db: &Db,
    email: &str,
    password: &str,
    address: &str,
    now: i64,
    lifetime: i64,
) -> StoreResult<NewSession> {
    let email = email.trim().to_lowercase();
    let address: String = address.chars().take(MAX_ADDRESS_LEN).collect();
    let since = now.saturating_sub(SIGN_IN_WINDOW);
    let (attempt, candidate) = write_tx!(db, |conn| {
        conn.lock_sign_ins().await?;
        diesel::delete(sign_in_attempts::table.filter(sign_in_attempts::created_at.lt(since)))
            .execute(conn)
            .await?;
        let candidate: Option<Candidate> = accounts::table
            .filter(accounts::email.eq(&email))
            .select((accounts::id, accounts::password_hash, accounts::disabled))
            .first(conn)
            .await
            .optional()?;
        let (count, oldest): (i64, Option<i64>) = sign_in_attempts::table
            .filter(sign_in_attempts::address.eq(&address))
            .select((diesel::dsl::count_star(), diesel::dsl::min(sign_in_attempts::created_at)))
            .first(conn)
            .await?;
        let mut wait = wait_for(count, oldest, now);
        if let Some((id, _, _)) = &candidate {
            let (count, oldest): (i64, Option<i64>) = sign_in_attempts::table
                .filter(sign_in_attempts::account_id.eq(id))
                .select((diesel::dsl::count_star(), diesel::dsl::min(sign_in_attempts::created_at)))
                .first(conn)
                .await?;
            wait = wait.max(wait_for(count, oldest, now));
        }
        if let Some(seconds) = wait {
            return Err(StoreError::RateLimited(seconds));
        }
        let attempt: i64 = diesel::insert_into(sign_in_attempts::table)
            .values((
                sign_in_attempts::account_id.eq(candidate.as_ref().map(|c| c.0)),
                sign_in_attempts::address.eq(&address),
                sign_in_attempts::created_at.eq(now),
            ))
            .returning(sign_in_attempts::id)
            .get_result(conn)
            .await?;
        Ok((attempt, candidate))
    })?;
    let hash = candidate.as_ref().and_then(|c| c.1.clone());
    let right = password::verify(password.to_owned(), hash).await;
    let Some((account_id, _, disabled)) = candidate.filter(|_| right) else {
        // The attempt stays recorded: it is a failed sign-in now.
        return Err(StoreError::Unauthenticated("wrong email or password".into()));
    };
    let (token, csrf_token) = (random_hex(), random_hex());
    let expires_at = now.saturating_add(lifetime);
    write_tx!(db, |conn| {
        // Right password: neither this attempt nor the account's earlier failures count.
        diesel::delete(sign_in_attempts::table.filter(diesel::BoolExpressionMethods::or(
            sign_in_attempts::id.eq(attempt),
            sign_in_attempts::account_id.eq(account_id),
        )))
        .execute(conn)
        .await?;
        if disabled {
            return Ok(());
        }
        diesel::delete(
            account_sessions::table
                .filter(account_sessions::account_id.eq(account_id))
                .filter(account_sessions::expires_at.le(now)),
        )
        .execute(conn)
        .await?;
        diesel::insert_into(account_sessions::table)
            .values((
                account_sessions::token_hash.eq(digest(&token)),
                account_sessions::account_id.eq(account_id),
                account_sessions::csrf_token.eq(&csrf_token),
                account_sessions::created_at.eq(now),
                account_sessions::expires_at.eq(expires_at),
            ))
            .execute(conn)
            .await?;
        Ok(())
    })?;
    if disabled {
        return Err(StoreError::Forbidden("the account is disabled".into()));
    }
    let account = account_store::get_by_id(db, account_id).await?;
    Ok(NewSession { token, csrf_token, expires_at, account })
}

/// The live session `token` opens: unknown, expired, or of a disabled account is
/// [`StoreError::Unauthenticated`].
pub async fn session(db: &Db, token: &str, now: i64) -> StoreResult<SessionInfo> {
    let hash = digest(token);
    let found: Option<(i64, String, i64)> = read_tx!(db, |conn| {
        Ok(account_sessions::table
            .inner_join(accounts::table)
            .filter(account_sessions::token_hash.eq(&hash))
            .filter(account_sessions::expires_at.gt(now))
            .filter(accounts::disabled.eq(false))
            .select((
                account_sessions::account_id,
                account_sessions::csrf_token,
                account_sessions::expires_at,
            ))
            .first(conn)
            .await
            .optional()?)
    })?;
    let Some((account_id, csrf_token, expires_at)) = found else {
        return Err(StoreError::Unauthenticated("not signed in, or the session has ended".into()));
    };
    let account = account_store::get_by_id(db, account_id).await?;
    Ok(SessionInfo { account, csrf_token, expires_at })
}

/// Ends the session `token` opens, if any.
pub async fn logout(db: &Db, token: &str) -> StoreResult<()> {
    let hash = digest(token);
    write_tx!(db, |conn| {
        diesel::delete(account_sessions::table.filter(account_sessions::token_hash.eq(&hash)))
            .execute(conn)
            .await?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_is_until_the_oldest_attempt_leaves_the_window() {
        assert_eq!(wait_for(9, Some(0), 1), None);
        assert_eq!(wait_for(10, Some(0), 0), Some(900));
        assert_eq!(wait_for(10, Some(0), 899_500_000), Some(1));
        assert_eq!(wait_for(10, Some(0), SIGN_IN_WINDOW), Some(1));
        assert_eq!(digest("a").len(), 64);
        assert_ne!(random_hex(), random_hex());
    }
}
