//! The statements that differ per backend: row locks, commit durability, and statements over
//! many rows at once. On PostgreSQL each of the latter is one statement (multi-row `INSERT`,
//! `unnest` of arrays for updates) to save round trips. On SQLite inserts are multi-row
//! statements too, and updates one statement over `json_each` of one parameter (a statement
//! per row costs more in diesel than SQLite's work for it).
use std::collections::HashSet;

use diesel::{
    ExpressionMethods, Insertable, OptionalExtension, QueryDsl, QueryableByName, SelectableHelper,
    SqliteConnection,
    sql_types::{Array, BigInt, Text},
};
use diesel_async::{
    AsyncPgConnection, RunQueryDsl,
    sync_connection_wrapper::{SpawnBlocking, SyncConnectionWrapper},
};

use super::{
    AccountQuota, GrantBasis, KeyQuota, LeaseRow,
    schema::{accounts, api_keys, leases, ledger, usage_records},
};

/// Rows per multi-row INSERT: far below both backends' bound-parameter limits.
pub const INSERT_CHUNK: usize = 1000;

/// A usage record to insert.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = usage_records, treat_none_as_default_value = false)]
pub struct NewUsage {
    /// Unique request id.
    pub request_id: String,
    /// The key used.
    pub key_id: i64,
    /// The account billed.
    pub account_id: i64,
    /// Model name as the client sent it.
    pub model: String,
    /// Channel name.
    pub channel: String,
    /// HTTP endpoint.
    pub endpoint: String,
    /// Uncached prompt tokens.
    pub input_tokens: i64,
    /// Prompt tokens read from a cache.
    pub cached_input_tokens: i64,
    /// Prompt tokens written to a cache.
    pub cache_write_tokens: i64,
    /// Completion tokens.
    pub output_tokens: i64,
    /// Nano-units billed.
    pub cost: i64,
    /// `ok`, `incomplete`, ...
    pub status: String,
    /// Whole request duration.
    pub duration_ms: i64,
    /// Time to the first upstream byte.
    pub first_byte_ms: i64,
    /// The reporting data plane.
    pub node_id: String,
    /// Unix micros.
    pub created_at: i64,
    /// The upstream's usage was not believed.
    pub usage_adjusted: bool,
    /// The name the client asked for, when it differs from `model` (an alias).
    pub requested_model: Option<String>,
    /// The protocol the client spoke (`chat`, `messages` …).
    pub client_protocol: String,
    /// The protocol the upstream spoke (differs from the client's when converted).
    pub upstream_protocol: String,
}

/// A ledger entry to insert.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = ledger, treat_none_as_default_value = false)]
pub struct NewLedgerEntry {
    /// The account.
    pub account_id: i64,
    /// `topup`, `redemption`, `usage` or `adjustment`.
    pub kind: &'static str,
    /// Signed amount.
    pub amount: i64,
    /// The balance after this entry.
    pub balance_after: i64,
    /// The billed request, for `usage`.
    pub request_id: Option<String>,
    /// Free text.
    pub note: String,
    /// Unix micros.
    pub created_at: i64,
}

/// What a batch adds to one hourly aggregate (see the `usage_hourly` table).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct HourlyUsage {
    /// The account billed.
    pub account_id: i64,
    /// The key used.
    pub key_id: i64,
    /// Model name as billed.
    pub model: String,
    /// Channel name.
    pub channel: String,
    /// The UTC hour's first microsecond.
    pub hour: i64,
    /// Requests recorded.
    pub requests: i64,
    /// Uncached prompt tokens.
    pub input_tokens: i64,
    /// Prompt tokens read from a cache.
    pub cached_input_tokens: i64,
    /// Prompt tokens written to a cache.
    pub cache_write_tokens: i64,
    /// Completion tokens.
    pub output_tokens: i64,
    /// Nano-units billed.
    pub cost: i64,
}

/// One account's debit by a usage batch.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct AccountUsage {
    /// The account.
    pub account_id: i64,
    /// What the batch's requests cost in all (positive).
    pub total: i64,
    /// The lowest balance the debit may start from without overflowing.
    pub floor: i64,
    /// The latest UTC day among the requests.
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

/// One key's spend in a usage batch.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct KeyUsage {
    /// The key.
    pub key_id: i64,
    /// What its requests cost in all.
    pub total: i64,
    /// The latest UTC day among them.
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

/// What a lease's requests spent in a usage batch.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LeaseUsage {
    /// The lease.
    pub lease_id: String,
    /// Its key (a lease named by a report of another key is left alone).
    pub key_id: i64,
    /// What its requests cost.
    pub spent: i64,
}

/// Statements whose SQL differs per backend. Daily counters follow the latest day they have
/// seen: add on the same day, restart on a later one, ignore an earlier one.
pub trait Dialect: Send {
    /// Starts a grant for key `key_id`: locks the key's account until the transaction ends
    /// (so that grants and usage for one account are serialized), then reads the account, the
    /// key and the account's leases. `None` when there is no such key.
    ///
    /// On PostgreSQL that is `SELECT … FOR UPDATE` followed by the reads (two round trips,
    /// pipelined), and the transaction commits without waiting for a disk flush (see
    /// [`Dialect::commit_without_flush`]). On SQLite the write transaction (`BEGIN
    /// IMMEDIATE`) serializes everything already.
    fn grant_basis(
        &mut self,
        key_id: i64,
    ) -> impl Future<Output = diesel::QueryResult<Option<GrantBasis>>> + Send;

    /// Lets this transaction commit without waiting for its WAL to reach the disk
    /// (PostgreSQL's `synchronous_commit = off`; SQLite in WAL mode with `synchronous =
    /// NORMAL` never waits). Only for what may be lost in a database crash, never for money.
    fn commit_without_flush(&mut self) -> impl Future<Output = diesel::QueryResult<()>> + Send;

    /// Serializes console sign-in attempts until the transaction ends, so that concurrent
    /// attempts cannot both pass the failed-attempt count (PostgreSQL: a transaction-level
    /// advisory lock; SQLite's write transactions are serialized already).
    fn lock_sign_ins(&mut self) -> impl Future<Output = diesel::QueryResult<()>> + Send;

    /// Inserts usage records whose request id is not yet recorded (the others are skipped) at
    /// time `now`; returns the request ids inserted. On SQLite the records' unique request id
    /// decides; on PostgreSQL, whose records are partitioned by time (so a unique index there
    /// must include the time), `usage_request_ids` does.
    fn insert_usage(
        &mut self,
        rows: Vec<NewUsage>,
        now: i64,
    ) -> impl Future<Output = diesel::QueryResult<Vec<String>>> + Send;

    /// Adds to hourly aggregates (one row each, in key order so that concurrent batches lock
    /// them in one order), creating the missing ones; returns how many rows were written. A
    /// row whose sum would overflow is left alone (and not counted).
    fn add_hourly(
        &mut self,
        rows: Vec<HourlyUsage>,
    ) -> impl Future<Output = diesel::QueryResult<usize>> + Send;

    /// Appends ledger entries.
    fn insert_ledger(
        &mut self,
        rows: Vec<NewLedgerEntry>,
    ) -> impl Future<Output = diesel::QueryResult<()>> + Send;

    /// Debits accounts and advances their daily counters, locking them in id order (so that
    /// concurrent batches cannot deadlock); returns `(account id, new balance)` of each
    /// account whose balance stayed above its `floor`.
    fn debit_accounts(
        &mut self,
        debits: Vec<AccountUsage>,
    ) -> impl Future<Output = diesel::QueryResult<Vec<(i64, i64)>>> + Send;

    /// Adds to keys' spend and daily counters; returns how many keys were updated. The
    /// caller holds the keys' accounts locked.
    fn charge_keys(&mut self, keys: Vec<KeyUsage>)
    -> impl Future<Output = diesel::QueryResult<usize>> + Send;

    /// Lowers what leases hold by what their requests spent (never below zero).
    fn spend_leases(
        &mut self,
        spent: Vec<LeaseUsage>,
        now: i64,
    ) -> impl Future<Output = diesel::QueryResult<()>> + Send;
}

diesel::define_sql_function! {
    /// PostgreSQL's `set_config(name, value, is_local)`: `SET LOCAL` as a statement diesel
    /// can prepare once and cache (a plain `sql_query` is prepared anew every time).
    fn set_config(name: Text, value: Text, is_local: diesel::sql_types::Bool) -> Text;
}

/// Adds to an hourly aggregate unless a sum would overflow (SQLite would turn it into a float,
/// PostgreSQL fail the statement): `excluded` is the row proposed for insertion.
macro_rules! hourly_upsert {
    ($rows:literal) => {
        concat!(
            "INSERT INTO usage_hourly AS h (account_id, key_id, model, channel, hour, requests, \
               input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, cost) ",
            $rows,
            " ON CONFLICT (account_id, hour, key_id, model, channel) DO UPDATE SET \
               requests = h.requests + excluded.requests, \
               input_tokens = h.input_tokens + excluded.input_tokens, \
               cached_input_tokens = h.cached_input_tokens + excluded.cached_input_tokens, \
               cache_write_tokens = h.cache_write_tokens + excluded.cache_write_tokens, \
               output_tokens = h.output_tokens + excluded.output_tokens, \
               cost = h.cost + excluded.cost \
             WHERE h.requests <= 9223372036854775807 - excluded.requests \
               AND h.input_tokens <= 9223372036854775807 - excluded.input_tokens \
               AND h.cached_input_tokens <= 9223372036854775807 - excluded.cached_input_tokens \
               AND h.cache_write_tokens <= 9223372036854775807 - excluded.cache_write_tokens \
               AND h.output_tokens <= 9223372036854775807 - excluded.output_tokens \
               AND h.cost <= 9223372036854775807 - excluded.cost"
        )
    };
}

const HOURLY_UPSERT_POSTGRES: &str = hourly_upsert!(
    "SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], \
       $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[])"
);

// `WHERE true`: without a WHERE, SQLite would read `ON CONFLICT` as a join's `ON`.
const HOURLY_UPSERT_SQLITE: &str = hourly_upsert!(
    "SELECT value ->> 'account_id', value ->> 'key_id', value ->> 'model', value ->> 'channel', \
       value ->> 'hour', value ->> 'requests', value ->> 'input_tokens', \
       value ->> 'cached_input_tokens', value ->> 'cache_write_tokens', value ->> 'output_tokens', \
       value ->> 'cost' FROM json_each(?) WHERE true"
);

#[derive(QueryableByName)]
struct RequestId {
    #[diesel(sql_type = Text)]
    request_id: String,
}

diesel::define_sql_function! {
    /// PostgreSQL's `pg_advisory_xact_lock(key)` (its `void` result is never read).
    fn pg_advisory_xact_lock(key: BigInt) -> BigInt;
}

/// The advisory lock key of console sign-ins.
const SIGN_IN_LOCK: i64 = 7_215_150_002;

#[derive(QueryableByName)]
struct IdBalance {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    balance: i64,
}

impl Dialect for AsyncPgConnection {
    async fn grant_basis(&mut self, key_id: i64) -> diesel::QueryResult<Option<GrantBasis>> {
        // Pipelined (futures on a shared borrow, polled together): sent at once, answered in
        // one round trip. Only statements whose order does not matter go together: a
        // statement that must be prepared first can overtake one that needs no preparing.
        let conn: &AsyncPgConnection = self;
        let owner = api_keys::table.filter(api_keys::id.eq(key_id)).select(api_keys::account_id);
        let (relaxed, account) = futures::join!(
            diesel::select(set_config("synchronous_commit", "off", true)).execute(&mut &*conn),
            accounts::table
                .filter(accounts::id.eq_any(owner))
                .select(AccountQuota::as_select())
                .for_update()
                .get_result::<AccountQuota>(&mut &*conn),
        );
        relaxed?;
        let Some(account) = account.optional()? else { return Ok(None) };
        // Read after the lock is held: in READ COMMITTED each statement sees what committed
        // before it started, so these see every usage batch that held the lock before.
        let (key, leases) = futures::join!(
            api_keys::table.find(key_id).select(KeyQuota::as_select()).get_result::<KeyQuota>(&mut &*conn),
            leases::table
                .filter(leases::account_id.eq(account.id))
                .select(LeaseRow::as_select())
                .load::<LeaseRow>(&mut &*conn),
        );
        Ok(Some(GrantBasis { account, key: key?, leases: leases? }))
    }

    async fn commit_without_flush(&mut self) -> diesel::QueryResult<()> {
        diesel::select(set_config("synchronous_commit", "off", true)).execute(self).await.map(drop)
    }

    async fn lock_sign_ins(&mut self) -> diesel::QueryResult<()> {
        diesel::select(pg_advisory_xact_lock(SIGN_IN_LOCK)).execute(self).await.map(drop)
    }

    async fn insert_usage(&mut self, rows: Vec<NewUsage>, now: i64) -> diesel::QueryResult<Vec<String>> {
        let mut inserted = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(INSERT_CHUNK) {
            let ids: Vec<&str> = chunk.iter().map(|r| r.request_id.as_str()).collect();
            let fresh: Vec<RequestId> = diesel::sql_query(
                "INSERT INTO usage_request_ids (request_id, recorded_at) \
                 SELECT id, $2 FROM unnest($1::text[]) AS v(id) \
                 ON CONFLICT (request_id) DO NOTHING RETURNING request_id",
            )
            .bind::<Array<Text>, _>(ids)
            .bind::<BigInt, _>(now)
            .load(self)
            .await?;
            let fresh: HashSet<String> = fresh.into_iter().map(|r| r.request_id).collect();
            let new: Vec<&NewUsage> = chunk.iter().filter(|r| fresh.contains(&r.request_id)).collect();
            if !new.is_empty() {
                diesel::insert_into(usage_records::table).values(new).execute(self).await?;
            }
            inserted.extend(fresh);
        }
        Ok(inserted)
    }

    async fn add_hourly(&mut self, rows: Vec<HourlyUsage>) -> diesel::QueryResult<usize> {
        let mut written = 0;
        for chunk in rows.chunks(INSERT_CHUNK) {
            let numbers = |f: fn(&HourlyUsage) -> i64| chunk.iter().map(f).collect::<Vec<i64>>();
            let texts = |f: fn(&HourlyUsage) -> &str| chunk.iter().map(f).collect::<Vec<&str>>();
            written += diesel::sql_query(HOURLY_UPSERT_POSTGRES)
                .bind::<Array<BigInt>, _>(numbers(|h| h.account_id))
                .bind::<Array<BigInt>, _>(numbers(|h| h.key_id))
                .bind::<Array<Text>, _>(texts(|h| &h.model))
                .bind::<Array<Text>, _>(texts(|h| &h.channel))
                .bind::<Array<BigInt>, _>(numbers(|h| h.hour))
                .bind::<Array<BigInt>, _>(numbers(|h| h.requests))
                .bind::<Array<BigInt>, _>(numbers(|h| h.input_tokens))
                .bind::<Array<BigInt>, _>(numbers(|h| h.cached_input_tokens))
                .bind::<Array<BigInt>, _>(numbers(|h| h.cache_write_tokens))
                .bind::<Array<BigInt>, _>(numbers(|h| h.output_tokens))
                .bind::<Array<BigInt>, _>(numbers(|h| h.cost))
                .execute(self)
                .await?;
        }
        Ok(written)
    }

    async fn insert_ledger(&mut self, rows: Vec<NewLedgerEntry>) -> diesel::QueryResult<()> {
        for chunk in rows.chunks(INSERT_CHUNK) {
            diesel::insert_into(ledger::table).values(chunk).execute(self).await?;
        }
        Ok(())
    }

    async fn debit_accounts(&mut self, debits: Vec<AccountUsage>) -> diesel::QueryResult<Vec<(i64, i64)>> {
        let mut ids: Vec<i64> = debits.iter().map(|d| d.account_id).collect();
        ids.sort_unstable();
        diesel::sql_query("SELECT id FROM accounts WHERE id = ANY($1) ORDER BY id FOR UPDATE")
            .bind::<Array<BigInt>, _>(&ids)
            .execute(self)
            .await?;
        let column = |f: fn(&AccountUsage) -> i64| debits.iter().map(f).collect::<Vec<i64>>();
        let rows: Vec<IdBalance> = diesel::sql_query(
            "UPDATE accounts AS a SET balance = a.balance - v.total, \
               spent_today = CASE WHEN a.spent_day = v.day THEN a.spent_today + v.day_total \
                                  WHEN a.spent_day < v.day THEN v.day_total ELSE a.spent_today END, \
               spent_day = GREATEST(a.spent_day, v.day), \
               spent_week = CASE WHEN a.spent_week_no = v.week THEN a.spent_week + v.week_total \
                                 WHEN a.spent_week_no < v.week THEN v.week_total ELSE a.spent_week END, \
               spent_week_no = GREATEST(a.spent_week_no, v.week), \
               spent_month = CASE WHEN a.spent_month_no = v.month THEN a.spent_month + v.month_total \
                                  WHEN a.spent_month_no < v.month THEN v.month_total ELSE a.spent_month END, \
               spent_month_no = GREATEST(a.spent_month_no, v.month) \
             FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], \
                         $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[]) \
               AS v(id, total, floor, day, day_total, week, week_total, month, month_total) \
             WHERE a.id = v.id AND a.balance >= v.floor \
               AND a.spent_today <= 9223372036854775807 - v.day_total \
               AND a.spent_week <= 9223372036854775807 - v.week_total \
               AND a.spent_month <= 9223372036854775807 - v.month_total \
             RETURNING a.id, a.balance",
        )
        .bind::<Array<BigInt>, _>(column(|d| d.account_id))
        .bind::<Array<BigInt>, _>(column(|d| d.total))
        .bind::<Array<BigInt>, _>(column(|d| d.floor))
        .bind::<Array<BigInt>, _>(column(|d| d.day))
        .bind::<Array<BigInt>, _>(column(|d| d.day_total))
        .bind::<Array<BigInt>, _>(column(|d| d.week))
        .bind::<Array<BigInt>, _>(column(|d| d.week_total))
        .bind::<Array<BigInt>, _>(column(|d| d.month))
        .bind::<Array<BigInt>, _>(column(|d| d.month_total))
        .load(self)
        .await?;
        Ok(rows.into_iter().map(|r| (r.id, r.balance)).collect())
    }

    async fn charge_keys(&mut self, keys: Vec<KeyUsage>) -> diesel::QueryResult<usize> {
        let column = |f: fn(&KeyUsage) -> i64| keys.iter().map(f).collect::<Vec<i64>>();
        diesel::sql_query(
            "UPDATE api_keys AS k SET spent = k.spent + v.total, \
               spent_today = CASE WHEN k.spent_day = v.day THEN k.spent_today + v.day_total \
                                  WHEN k.spent_day < v.day THEN v.day_total ELSE k.spent_today END, \
               spent_day = GREATEST(k.spent_day, v.day), \
               spent_week = CASE WHEN k.spent_week_no = v.week THEN k.spent_week + v.week_total \
                                 WHEN k.spent_week_no < v.week THEN v.week_total ELSE k.spent_week END, \
               spent_week_no = GREATEST(k.spent_week_no, v.week), \
               spent_month = CASE WHEN k.spent_month_no = v.month THEN k.spent_month + v.month_total \
                                  WHEN k.spent_month_no < v.month THEN v.month_total ELSE k.spent_month END, \
               spent_month_no = GREATEST(k.spent_month_no, v.month) \
             FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], \
                         $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[]) \
               AS v(id, total, day, day_total, week, week_total, month, month_total) \
             WHERE k.id = v.id AND k.spent <= 9223372036854775807 - v.total \
               AND k.spent_today <= 9223372036854775807 - v.day_total \
               AND k.spent_week <= 9223372036854775807 - v.week_total \
               AND k.spent_month <= 9223372036854775807 - v.month_total",
        )
        .bind::<Array<BigInt>, _>(column(|k| k.key_id))
        .bind::<Array<BigInt>, _>(column(|k| k.total))
        .bind::<Array<BigInt>, _>(column(|k| k.day))
        .bind::<Array<BigInt>, _>(column(|k| k.day_total))
        .bind::<Array<BigInt>, _>(column(|k| k.week))
        .bind::<Array<BigInt>, _>(column(|k| k.week_total))
        .bind::<Array<BigInt>, _>(column(|k| k.month))
        .bind::<Array<BigInt>, _>(column(|k| k.month_total))
        .execute(self)
        .await
    }

    async fn spend_leases(&mut self, spent: Vec<LeaseUsage>, now: i64) -> diesel::QueryResult<()> {
        if spent.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = spent.iter().map(|l| l.lease_id.as_str()).collect();
        diesel::sql_query(
            "UPDATE leases AS l SET held = GREATEST(l.held - v.spent, 0), updated_at = $4 \
             FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS v(id, key_id, spent) \
             WHERE l.id = v.id AND l.key_id = v.key_id",
        )
        .bind::<Array<Text>, _>(ids)
        .bind::<Array<BigInt>, _>(spent.iter().map(|l| l.key_id).collect::<Vec<i64>>())
        .bind::<Array<BigInt>, _>(spent.iter().map(|l| l.spent).collect::<Vec<i64>>())
        .bind::<BigInt, _>(now)
        .execute(self)
        .await
        .map(drop)
    }
}

impl<S: SpawnBlocking + Send + 'static> Dialect for SyncConnectionWrapper<SqliteConnection, S> {
    async fn grant_basis(&mut self, key_id: i64) -> diesel::QueryResult<Option<GrantBasis>> {
        let found = api_keys::table
            .inner_join(accounts::table)
            .filter(api_keys::id.eq(key_id))
            .select((AccountQuota::as_select(), KeyQuota::as_select()))
            .get_result::<(AccountQuota, KeyQuota)>(self)
            .await
            .optional()?;
        let Some((account, key)) = found else { return Ok(None) };
        let leases = leases::table
            .filter(leases::account_id.eq(account.id))
            .select(LeaseRow::as_select())
            .load::<LeaseRow>(self)
            .await?;
        Ok(Some(GrantBasis { account, key, leases }))
    }

    async fn commit_without_flush(&mut self) -> diesel::QueryResult<()> {
        Ok(())
    }

    async fn lock_sign_ins(&mut self) -> diesel::QueryResult<()> {
        Ok(())
    }

    // Multi-row inserts run on the connection's own thread: diesel renders SQLite's multi-row
    // `INSERT` only for its synchronous connection.
    async fn insert_usage(&mut self, rows: Vec<NewUsage>, _now: i64) -> diesel::QueryResult<Vec<String>> {
        self.spawn_blocking(move |conn| {
            let mut inserted = Vec::with_capacity(rows.len());
            for chunk in rows.chunks(INSERT_CHUNK) {
                let ids: Vec<String> = diesel::RunQueryDsl::load(
                    diesel::insert_into(usage_records::table)
                        .values(chunk)
                        .on_conflict(usage_records::request_id)
                        .do_nothing()
                        .returning(usage_records::request_id),
                    conn,
                )?;
                inserted.extend(ids);
            }
            Ok(inserted)
        })
        .await
    }

    async fn add_hourly(&mut self, rows: Vec<HourlyUsage>) -> diesel::QueryResult<usize> {
        let mut written = 0;
        for chunk in rows.chunks(INSERT_CHUNK) {
            written +=
                diesel::sql_query(HOURLY_UPSERT_SQLITE).bind::<Text, _>(json(chunk)?).execute(self).await?;
        }
        Ok(written)
    }

    async fn insert_ledger(&mut self, rows: Vec<NewLedgerEntry>) -> diesel::QueryResult<()> {
        self.spawn_blocking(move |conn| {
            for chunk in rows.chunks(INSERT_CHUNK) {
                diesel::RunQueryDsl::execute(diesel::insert_into(ledger::table).values(chunk), conn)?;
            }
            Ok(())
        })
        .await
    }

    async fn debit_accounts(&mut self, debits: Vec<AccountUsage>) -> diesel::QueryResult<Vec<(i64, i64)>> {
        // SQLite turns an overflowing sum into a float: bounds are checked in the statement.
        // The write transaction already serializes every writer.
        let rows: Vec<IdBalance> = diesel::sql_query(
            "UPDATE accounts SET balance = balance - v.total, \
               spent_today = CASE WHEN spent_day = v.day THEN spent_today + v.day_total \
                                  WHEN spent_day < v.day THEN v.day_total ELSE spent_today END, \
               spent_day = MAX(spent_day, v.day), \
               spent_week = CASE WHEN spent_week_no = v.week THEN spent_week + v.week_total \
                                 WHEN spent_week_no < v.week THEN v.week_total ELSE spent_week END, \
               spent_week_no = MAX(spent_week_no, v.week), \
               spent_month = CASE WHEN spent_month_no = v.month THEN spent_month + v.month_total \
                                  WHEN spent_month_no < v.month THEN v.month_total ELSE spent_month END, \
               spent_month_no = MAX(spent_month_no, v.month) \
             FROM (SELECT value ->> 'account_id' AS id, value ->> 'total' AS total, \
                     value ->> 'floor' AS floor, value ->> 'day' AS day, \
                     value ->> 'day_total' AS day_total, value ->> 'week' AS week, \
                     value ->> 'week_total' AS week_total, value ->> 'month' AS month, \
                     value ->> 'month_total' AS month_total FROM json_each(?)) AS v \
             WHERE accounts.id = v.id AND accounts.balance >= v.floor \
               AND accounts.spent_today <= 9223372036854775807 - v.day_total \
               AND accounts.spent_week <= 9223372036854775807 - v.week_total \
               AND accounts.spent_month <= 9223372036854775807 - v.month_total \
             RETURNING accounts.id AS id, accounts.balance AS balance",
        )
        .bind::<Text, _>(json(&debits)?)
        .load(self)
        .await?;
        Ok(rows.into_iter().map(|r| (r.id, r.balance)).collect())
    }

    async fn charge_keys(&mut self, keys: Vec<KeyUsage>) -> diesel::QueryResult<usize> {
        diesel::sql_query(
            "UPDATE api_keys SET spent = spent + v.total, \
               spent_today = CASE WHEN spent_day = v.day THEN spent_today + v.day_total \
                                  WHEN spent_day < v.day THEN v.day_total ELSE spent_today END, \
               spent_day = MAX(spent_day, v.day), \
               spent_week = CASE WHEN spent_week_no = v.week THEN spent_week + v.week_total \
                                 WHEN spent_week_no < v.week THEN v.week_total ELSE spent_week END, \
               spent_week_no = MAX(spent_week_no, v.week), \
               spent_month = CASE WHEN spent_month_no = v.month THEN spent_month + v.month_total \
                                  WHEN spent_month_no < v.month THEN v.month_total ELSE spent_month END, \
               spent_month_no = MAX(spent_month_no, v.month) \
             FROM (SELECT value ->> 'key_id' AS id, value ->> 'total' AS total, \
                     value ->> 'day' AS day, value ->> 'day_total' AS day_total, \
                     value ->> 'week' AS week, value ->> 'week_total' AS week_total, \
                     value ->> 'month' AS month, value ->> 'month_total' AS month_total \
                   FROM json_each(?)) AS v \
             WHERE api_keys.id = v.id AND api_keys.spent <= 9223372036854775807 - v.total \
               AND api_keys.spent_today <= 9223372036854775807 - v.day_total \
               AND api_keys.spent_week <= 9223372036854775807 - v.week_total \
               AND api_keys.spent_month <= 9223372036854775807 - v.month_total",
        )
        .bind::<Text, _>(json(&keys)?)
        .execute(self)
        .await
    }

    async fn spend_leases(&mut self, spent: Vec<LeaseUsage>, now: i64) -> diesel::QueryResult<()> {
        if spent.is_empty() {
            return Ok(());
        }
        diesel::sql_query(
            "UPDATE leases SET held = MAX(held - v.spent, 0), updated_at = ? \
             FROM (SELECT value ->> 'lease_id' AS id, value ->> 'key_id' AS key_id, \
                     value ->> 'spent' AS spent FROM json_each(?)) AS v \
             WHERE leases.id = v.id AND leases.key_id = v.key_id",
        )
        .bind::<BigInt, _>(now)
        .bind::<Text, _>(json(&spent)?)
        .execute(self)
        .await
        .map(drop)
    }
}

/// Rows for SQLite's `json_each`: one statement over one bound parameter updates many rows
/// (one diesel statement per row costs far more than SQLite's work for it).
fn json<T: serde::Serialize>(rows: &[T]) -> diesel::QueryResult<String> {
    serde_json::to_string(rows).map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))
}
