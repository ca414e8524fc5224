//! Bulk insertion of API keys straight into a control plane's SQLite database: creating a
//! million keys one `routerctl key create` at a time would take hours.
//!
//! Rows are written exactly as `router_control_plane::store::keys::create` writes them (random
//! `sk-` secret, its SHA-256 hex and visible prefix, never the secret itself), in large
//! multi-row statements. Every transaction bumps the policy version once and stamps its rows
//! with it, as an admin change would, so a running control plane's policy feed sees the change
//! and a snapshot carries the rows.

use std::path::Path;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use router_control_plane::db::schema::{accounts, api_keys, policy_state};
use router_control_plane::store::keys::{generate_secret, hash_secret};
use router_control_plane::store::{now_micros, utc_day};

/// Rows per `INSERT`: 15 bound columns each stays well under SQLite's 32,766 variables.
const ROWS_PER_STATEMENT: usize = 1_000;
/// Rows per transaction (and per policy version).
const ROWS_PER_TRANSACTION: usize = 100_000;
/// Characters of the secret kept as its visible prefix, as the control plane keeps them.
const PREFIX_CHARS: usize = 11;

/// One `api_keys` row, every column bound (no `DEFAULT`, so SQLite takes a multi-row insert).
#[derive(Debug, Insertable)]
#[diesel(table_name = api_keys, treat_none_as_default_value = false)]
struct NewKey {
    account_id: i64,
    name: String,
    prefix: String,
    secret_hash: String,
    group_id: Option<i64>,
    spend_limit: Option<i64>,
    spent: i64,
    daily_limit: Option<i64>,
    spent_today: i64,
    spent_day: i64,
    models: &'static str,
    expires_at: Option<i64>,
    revoked: bool,
    version: i64,
    created_at: i64,
}

/// What a bulk insertion did.
#[derive(Debug)]
pub struct Inserted {
    /// The secret of the last key written, if any (the only secret kept).
    pub last_secret: Option<String>,
    /// Wall time of the insertion, commits included.
    pub elapsed: Duration,
}

/// Inserts `count` enabled keys without limits, expiry or allow-list for the account called
/// `account` into the SQLite database at `db_path` (already migrated). Blocking.
pub fn insert_keys(db_path: &Path, account: &str, count: usize) -> anyhow::Result<Inserted> {
    let started = Instant::now();
    let url = db_path.to_str().ok_or_else(|| anyhow::anyhow!("non-UTF-8 database path"))?;
    let mut conn = SqliteConnection::establish(url)?;
    // The control plane may be running: wait for its writer rather than fail, and give the
    // random-order unique index on `secret_hash` a page cache it fits in.
    diesel::connection::SimpleConnection::batch_execute(
        &mut conn,
        "PRAGMA busy_timeout = 10000; PRAGMA cache_size = -262144;",
    )?;
    let account_id: i64 = accounts::table
        .filter(accounts::name.eq(account))
        .select(accounts::id)
        .first(&mut conn)
        .optional()?
        .ok_or_else(|| anyhow::anyhow!("no account {account:?} to give the keys to"))?;
    let now = now_micros();
    let mut last_secret = None;
    let mut written = 0;
    while written < count {
        let in_transaction = (count - written).min(ROWS_PER_TRANSACTION);
        last_secret = conn.immediate_transaction(|conn| -> QueryResult<Option<String>> {
            let version: i64 = diesel::update(policy_state::table.filter(policy_state::id.eq(1)))
                .set(policy_state::version.eq(policy_state::version + 1))
                .returning(policy_state::version)
                .get_result(conn)?;
            let mut last = None;
            let mut done = 0;
            while done < in_transaction {
                let rows = (in_transaction - done).min(ROWS_PER_STATEMENT);
                let mut secrets: Vec<String> = (0..rows).map(|_| generate_secret()).collect();
                let batch: Vec<NewKey> = secrets
                    .iter()
                    .enumerate()
                    .map(|(i, secret)| NewKey {
                        account_id,
                        name: format!("bulk-{}", written + done + i),
                        prefix: secret[..PREFIX_CHARS].to_owned(),
                        secret_hash: hash_secret(secret),
                        group_id: None,
                        spend_limit: None,
                        spent: 0,
                        daily_limit: None,
                        spent_today: 0,
                        spent_day: utc_day(now),
                        models: "[]",
                        expires_at: None,
                        revoked: false,
                        version,
                        created_at: now,
                    })
                    .collect();
                diesel::insert_into(api_keys::table).values(&batch).execute(conn)?;
                last = secrets.pop();
                done += rows;
            }
            Ok(last)
        })?;
        written += in_transaction;
    }
    Ok(Inserted { last_secret, elapsed: started.elapsed() })
}
