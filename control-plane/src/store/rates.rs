//! Rate leases: shares of a key's (and its account's) requests and tokens per window, and of
//! its requests in flight, granted to data planes.
//!
//! The rate window (a minute; shorter only in tests) is cut into [`SLOTS_PER_WINDOW`] slots. A
//! grant is made in one slot and usable only until that slot ends, and it counts against the
//! limits of every window that overlaps its slot: a grant in slot `s` is counted by grants up
//! to slot `s + SLOTS_PER_WINDOW`. Any window of real time overlaps at most
//! `SLOTS_PER_WINDOW + 1` consecutive slots, and grants never sum to more than the limit over
//! that many, so no window admits more than the limit, however many data planes share it. A data
//! plane reports what it really used of a grant once its slot is over, so that what it did not
//! use stops counting. Grants for one account are serialized by its row lock, like money leases.
//!
//! Concurrency is leased as a number of requests in flight per data plane (a row with slot
//! `-1`), for [`CONCURRENCY_TTL_MICROS`]; the sum over live leases never exceeds the limit.
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::{accounts::AccountRow, groups::Group, keys::KeyRow, leases::size_grant, limits::RateLimits};
use crate::{
    db::{
        Db, Dialect,
        schema::{accounts, api_keys, rate_grants, token_groups},
    },
    error::{StoreError, StoreResult},
    write_tx,
};

/// Slots per rate window.
pub const SLOTS_PER_WINDOW: i64 = 6;
/// The rate window of the limits' names (RPM, TPM): a minute.
pub const DEFAULT_WINDOW_MICROS: i64 = 60_000_000;
/// How long a concurrency lease lives without a renewal.
pub const CONCURRENCY_TTL_MICROS: i64 = 10_000_000;
/// The slot of concurrency leases.
const CONCURRENCY_SLOT: i64 = -1;

/// A data plane's request for rate allowances of one key.
#[derive(Debug, Clone, Copy, Default)]
pub struct RateRequest<'a> {
    /// The asking data plane.
    pub node_id: &'a str,
    /// The key.
    pub key_id: i64,
    /// Requests to add to this data plane's grant in the current slot.
    pub want_requests: i64,
    /// Tokens to add likewise.
    pub want_tokens: i64,
    /// Below this, a request grant is useless.
    pub min_requests: i64,
    /// Below this, a token grant is useless.
    pub min_tokens: i64,
    /// Requests in flight wanted in all.
    pub want_concurrent: i64,
    /// What the data plane really used in an earlier slot: `(slot, requests, tokens)`.
    pub used: Option<(i64, i64, i64)>,
}

/// Which limit kept a grant below what was wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimit {
    /// The key's (or its group's) requests per window.
    KeyRpm,
    /// The account's requests per window.
    AccountRpm,
    /// The key's (or its group's) tokens per window.
    KeyTpm,
    /// The account's tokens per window.
    AccountTpm,
    /// The key's (or its group's) requests in flight.
    KeyConcurrency,
    /// The account's requests in flight.
    AccountConcurrency,
    /// The key is revoked, expired or unknown.
    Revoked,
}

impl RateLimit {
    /// The wire name (`RateGrant.limited_by`).
    pub fn as_str(self) -> &'static str {
        match self {
            RateLimit::KeyRpm => "key_rpm",
            RateLimit::AccountRpm => "account_rpm",
            RateLimit::KeyTpm => "key_tpm",
            RateLimit::AccountTpm => "account_tpm",
            RateLimit::KeyConcurrency => "key_concurrency",
            RateLimit::AccountConcurrency => "account_concurrency",
            RateLimit::Revoked => "revoked",
        }
    }
}

/// The answer to a [`RateRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateGrant {
    /// The slot granted in.
    pub slot: i64,
    /// Requests added.
    pub granted_requests: i64,
    /// Tokens added.
    pub granted_tokens: i64,
    /// Requests in flight the data plane now holds.
    pub held_concurrent: i64,
    /// How long the grant may be used from now.
    pub usable_micros: i64,
    /// How long the concurrency lease lives from now.
    pub concurrent_usable_micros: i64,
    /// What the tightest request limit has unleased after the grant (`i64::MAX`: no limit).
    pub room_requests: i64,
    /// What the tightest token limit has unleased after the grant.
    pub room_tokens: i64,
    /// When the window next frees requests it counts, from now.
    pub requests_reset_micros: i64,
    /// When the window next frees tokens it counts, from now.
    pub tokens_reset_micros: i64,
    /// Why less than wanted was granted.
    pub limited_by: Option<RateLimit>,
    /// The window's length.
    pub window_micros: i64,
}

/// A grant row as stored.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = rate_grants, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct GrantRow {
    /// The key.
    pub key_id: i64,
    /// The data plane.
    pub node_id: String,
    /// The slot, or -1 for a concurrency lease.
    pub slot: i64,
    /// Requests granted (lowered to those used once the slot is over).
    pub requests: i64,
    /// Tokens granted (likewise).
    pub tokens: i64,
    /// Requests in flight held (concurrency leases).
    pub concurrent: i64,
    /// Unix micros.
    pub expires_at: i64,
}

/// The slot length of a window.
pub fn slot_micros(window_micros: i64) -> i64 {
    (window_micros / SLOTS_PER_WINDOW).max(1)
}

/// What one metric's limits leave: the room and the limit that binds.
fn room(
    rows: &[GrantRow],
    key_id: i64,
    key_limit: Option<i64>,
    account_limit: Option<i64>,
    value: fn(&GrantRow) -> i64,
    limits: (RateLimit, RateLimit),
) -> (i64, Option<RateLimit>) {
    let counted = rows.iter().filter(|r| r.slot >= 0);
    let key_used =
        counted.clone().filter(|r| r.key_id == key_id).fold(0_i64, |s, r| s.saturating_add(value(r)));
    let account_used = counted.fold(0_i64, |s, r| s.saturating_add(value(r)));
    let mut best = (i64::MAX, None);
    if let Some(limit) = key_limit {
        best = (limit.saturating_sub(key_used).max(0), Some(limits.0));
    }
    if let Some(limit) = account_limit {
        let left = limit.saturating_sub(account_used).max(0);
        if left < best.0 {
            best = (left, Some(limits.1));
        }
    }
    best
}

/// When the oldest slot that still counts something stops counting, from `now`.
fn reset_in(rows: &[GrantRow], value: fn(&GrantRow) -> i64, slot_len: i64, now: i64) -> i64 {
    let oldest = rows.iter().filter(|r| r.slot >= 0 && value(r) > 0).map(|r| r.slot).min();
    oldest.map_or(0, |slot| (slot + SLOTS_PER_WINDOW + 1).saturating_mul(slot_len).saturating_sub(now).max(0))
}

/// Grants rate allowances to a data plane for one key at time `now` (unix micros), in one
/// transaction serialized per account.
pub async fn acquire(
    db: &Db,
    request: RateRequest<'_>,
    now: i64,
    window_micros: i64,
) -> StoreResult<RateGrant> {
    if request.want_requests < 0 || request.want_tokens < 0 || request.want_concurrent < 0 {
        return Err(StoreError::invalid("wants must not be negative"));
    }
    if request.node_id.is_empty() || request.node_id.len() > 200 {
        return Err(StoreError::invalid("node id must be 1 to 200 bytes"));
    }
    let slot_len = slot_micros(window_micros);
    let slot = now.div_euclid(slot_len);
    let slot_end = (slot + 1).saturating_mul(slot_len);
    let key_id = request.key_id;
    let refused =
        RateGrant { slot, limited_by: Some(RateLimit::Revoked), window_micros, ..RateGrant::default() };
    write_tx!(db, |conn| {
        conn.commit_without_flush().await?;
        // Locks the account row (PostgreSQL; SQLite's write transaction serializes anyway).
        if conn.grant_basis(key_id).await?.is_none() {
            return Ok(refused);
        }
        let key: KeyRow = api_keys::table.find(key_id).select(KeyRow::as_select()).first(conn).await?;
        if key.revoked || key.expires_at.is_some_and(|at| at <= now) {
            diesel::delete(rate_grants::table.filter(rate_grants::key_id.eq(key_id))).execute(conn).await?;
            return Ok(refused);
        }
        let account: AccountRow =
            accounts::table.find(key.account_id).select(AccountRow::as_select()).first(conn).await?;
        let group: Group = token_groups::table
            .find(key.group_id.unwrap_or(account.group_id))
            .select(Group::as_select())
            .first(conn)
            .await?;
        let key_limits = key.rates().or(group.rates());
        let account_limits = account.rates();

        // A data plane reports a slot once it has closed it there, which may be just before
        // it ends here (its grant ends by its own send time): its report counts everything it
        // used of the slot, so lowering the grant to it is right in the current slot too.
        if let Some((used_slot, used_requests, used_tokens)) =
            request.used.filter(|u| u.0 >= 0 && u.0 <= slot)
        {
            let target = rate_grants::table.find((key_id, request.node_id, used_slot));
            let row: Option<GrantRow> = target.select(GrantRow::as_select()).first(conn).await.optional()?;
            if let Some(row) = row {
                diesel::update(target)
                    .set((
                        rate_grants::requests.eq(row.requests.min(used_requests.max(0))),
                        rate_grants::tokens.eq(row.tokens.min(used_tokens.max(0))),
                    ))
                    .execute(conn)
                    .await?;
            }
        }
        let oldest_counted = slot - SLOTS_PER_WINDOW;
        diesel::delete(
            rate_grants::table.filter(rate_grants::account_id.eq(account.id)).filter(
                (rate_grants::slot.ge(0).and(rate_grants::slot.lt(oldest_counted)))
                    .or(rate_grants::slot.eq(CONCURRENCY_SLOT).and(rate_grants::expires_at.lt(now))),
            ),
        )
        .execute(conn)
        .await?;
        let rows: Vec<GrantRow> = rate_grants::table
            .filter(rate_grants::account_id.eq(account.id))
            .select(GrantRow::as_select())
            .load(conn)
            .await?;
        let decision = decide(&request, &rows, key_limits, account_limits, slot);

        let mine =
            |s: i64| rows.iter().find(|r| r.key_id == key_id && r.node_id == request.node_id && r.slot == s);
        let (had_requests, had_tokens) = mine(slot).map_or((0, 0), |r| (r.requests, r.tokens));
        // (slot, requests, tokens, concurrent, expires_at, whether the row exists)
        let mut writes = Vec::with_capacity(2);
        if decision.requests > 0 || decision.tokens > 0 {
            writes.push((
                slot,
                had_requests.saturating_add(decision.requests),
                had_tokens.saturating_add(decision.tokens),
                0,
                slot_end,
                mine(slot).is_some(),
            ));
        }
        let concurrency_limited =
            key_limits.max_concurrent.is_some() || account_limits.max_concurrent.is_some();
        let held_before = mine(CONCURRENCY_SLOT).is_some();
        if concurrency_limited && (decision.concurrent > 0 || held_before) {
            let expires_at = now.saturating_add(CONCURRENCY_TTL_MICROS);
            writes.push((CONCURRENCY_SLOT, 0, 0, decision.concurrent, expires_at, held_before));
        }
        for (slot, requests, tokens, concurrent, expires_at, exists) in writes {
            if exists {
                diesel::update(rate_grants::table.find((key_id, request.node_id, slot)))
                    .set((
                        rate_grants::requests.eq(requests),
                        rate_grants::tokens.eq(tokens),
                        rate_grants::concurrent.eq(concurrent),
                        rate_grants::expires_at.eq(expires_at),
                    ))
                    .execute(conn)
                    .await?;
            } else {
                diesel::insert_into(rate_grants::table)
                    .values((
                        rate_grants::key_id.eq(key_id),
                        rate_grants::account_id.eq(account.id),
                        rate_grants::node_id.eq(request.node_id),
                        rate_grants::slot.eq(slot),
                        rate_grants::requests.eq(requests),
                        rate_grants::tokens.eq(tokens),
                        rate_grants::concurrent.eq(concurrent),
                        rate_grants::expires_at.eq(expires_at),
                    ))
                    .execute(conn)
                    .await?;
            }
        }
        let after: Vec<GrantRow> = rows
            .iter()
            .filter(|r| !(r.key_id == key_id && r.node_id == request.node_id && r.slot == slot))
            .cloned()
            .chain(std::iter::once(GrantRow {
                key_id,
                node_id: request.node_id.to_owned(),
                slot,
                requests: had_requests.saturating_add(decision.requests),
                tokens: had_tokens.saturating_add(decision.tokens),
                concurrent: 0,
                expires_at: slot_end,
            }))
            .collect();
        let (room_requests, _) = room(
            &after,
            key_id,
            key_limits.rpm,
            account_limits.rpm,
            |r| r.requests,
            (RateLimit::KeyRpm, RateLimit::AccountRpm),
        );
        let (room_tokens, _) = room(
            &after,
            key_id,
            key_limits.tpm,
            account_limits.tpm,
            |r| r.tokens,
            (RateLimit::KeyTpm, RateLimit::AccountTpm),
        );
        Ok(RateGrant {
            slot,
            granted_requests: decision.requests,
            granted_tokens: decision.tokens,
            held_concurrent: decision.concurrent,
            usable_micros: slot_end - now,
            concurrent_usable_micros: CONCURRENCY_TTL_MICROS,
            room_requests,
            room_tokens,
            requests_reset_micros: reset_in(&after, |r| r.requests, slot_len, now),
            tokens_reset_micros: reset_in(&after, |r| r.tokens, slot_len, now),
            limited_by: decision.limited_by,
            window_micros,
        })
    })
}

/// What to grant, decided from the account's counted rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Decision {
    /// Requests to add.
    pub requests: i64,
    /// Tokens to add.
    pub tokens: i64,
    /// Requests in flight to hold in all.
    pub concurrent: i64,
    /// Why less than wanted.
    pub limited_by: Option<RateLimit>,
}

/// Sizes a grant: what the limits leave of every window that overlaps the current slot (the
/// rows of earlier slots that still count), split in half when other data planes take part and
/// the room is short, nothing below the minimum.
pub fn decide(
    request: &RateRequest<'_>,
    rows: &[GrantRow],
    key_limits: RateLimits,
    account_limits: RateLimits,
    slot: i64,
) -> Decision {
    let key_id = request.key_id;
    let counted: Vec<GrantRow> = rows
        .iter()
        .filter(|r| r.slot == CONCURRENCY_SLOT || (r.slot >= slot - SLOTS_PER_WINDOW && r.slot <= slot))
        .cloned()
        .collect();
    let others = counted.iter().any(|r| r.node_id != request.node_id && r.slot >= slot - 1);
    let mut limited_by = None;
    let mut grant =
        |want: i64, min: i64, key: Option<i64>, account: Option<i64>, value: fn(&GrantRow) -> i64, kinds| {
            if key.is_none() && account.is_none() {
                return want;
            }
            let (room, binding) = room(&counted, key_id, key, account, value, kinds);
            let granted = size_grant(want, min.max(i64::from(want > 0)), room, others);
            if granted < want && limited_by.is_none() {
                limited_by = binding;
            }
            granted
        };
    let requests = grant(
        request.want_requests,
        request.min_requests,
        key_limits.rpm,
        account_limits.rpm,
        |r| r.requests,
        (RateLimit::KeyRpm, RateLimit::AccountRpm),
    );
    let tokens = grant(
        request.want_tokens,
        request.min_tokens,
        key_limits.tpm,
        account_limits.tpm,
        |r| r.tokens,
        (RateLimit::KeyTpm, RateLimit::AccountTpm),
    );
    let mut concurrent = request.want_concurrent;
    let held_by_others = |only_key: bool| {
        counted
            .iter()
            .filter(|r| {
                r.slot == CONCURRENCY_SLOT
                    && r.node_id != request.node_id
                    && (!only_key || r.key_id == key_id)
            })
            .fold(0_i64, |s, r| s.saturating_add(r.concurrent))
    };
    if let Some(limit) = key_limits.max_concurrent {
        let room = limit.saturating_sub(held_by_others(true)).max(0);
        if room < concurrent {
            concurrent = room;
            limited_by = limited_by.or(Some(RateLimit::KeyConcurrency));
        }
    }
    if let Some(limit) = account_limits.max_concurrent {
        // The account's other keys on this data plane hold theirs too.
        let mine_other_keys = counted
            .iter()
            .filter(|r| r.slot == CONCURRENCY_SLOT && r.node_id == request.node_id && r.key_id != key_id)
            .fold(0_i64, |s, r| s.saturating_add(r.concurrent));
        let room = limit.saturating_sub(held_by_others(false)).saturating_sub(mine_other_keys).max(0);
        if room < concurrent {
            concurrent = room;
            limited_by = limited_by.or(Some(RateLimit::AccountConcurrency));
        }
    }
    Decision { requests, tokens, concurrent, limited_by }
}
