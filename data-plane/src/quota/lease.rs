//! One key's local lease: what it holds, what local requests have taken from it, and when
//! to ask the control plane for more. Pure bookkeeping, under the key's mutex.
use std::{
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use tokio::sync::watch;

/// A lease is not used this long before the control plane's expiry (its clock decides)...
const SAFETY_MARGIN: Duration = Duration::from_secs(5);
/// ... nor, for a lease cut short (it ends at its key's expiry or at the UTC midnight of a
/// daily limit), for more than this share of its life: a key valid for 3 more seconds is
/// served from a lease of 3 seconds, not refused as if it had no quota.
const SAFETY_SHARE: u32 = 6;
/// A lease this close to its (local) end is renewed in the background.
const RENEW_BEFORE: Duration = Duration::from_secs(10);
/// After a refused or failed grant, the control plane is not asked again sooner than this.
pub const RETRY_AFTER: Duration = Duration::from_millis(200);
/// A lease aims to cover this many of the current request's estimate.
const ESTIMATES_PER_LEASE: i64 = 8;
/// A lease aims to cover this many seconds of the key's recent spend.
const SECONDS_PER_LEASE: i64 = 5;

/// One key's lease and the requests waiting on it.
pub struct KeyLease {
    pub key_id: i64,
    state: Mutex<LeaseState>,
    /// Bumped whenever room may have appeared (a settlement, a grant, a refusal).
    pub changed: watch::Sender<()>,
}

impl KeyLease {
    /// A key with no lease yet.
    pub fn new(key_id: i64, now: Instant) -> KeyLease {
        KeyLease { key_id, state: Mutex::new(LeaseState::new(now)), changed: watch::Sender::new(()) }
    }

    /// The state, for a brief moment (never across an `.await`).
    pub fn lock(&self) -> MutexGuard<'_, LeaseState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes the requests waiting for room, if any.
    pub fn wake(&self) {
        if self.changed.receiver_count() > 0 {
            self.changed.send_replace(());
        }
    }
}

/// What the control plane answered to a refill.
#[derive(Debug, Clone)]
pub struct Granted {
    pub lease_id: String,
    pub granted: i64,
    pub held: i64,
    /// How long the lease lives from now, by the control plane's clock.
    pub lives: Duration,
    pub limited_by: String,
}

/// A refill to ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefillRequest {
    pub lease_id: Option<Arc<str>>,
    pub want: i64,
    pub min: i64,
}

/// The bookkeeping of one key's lease.
#[derive(Debug)]
pub struct LeaseState {
    pub lease_id: Option<Arc<str>>,
    /// Held by the lease minus what open reservations took and settled requests spent (spent
    /// but unreported too: the control plane lowers `held` only when the report arrives).
    pub available: i64,
    usable_until: Instant,
    /// Open reservations: their sum and count.
    pub reserved: i64,
    pub open: u32,
    /// A grant is being asked for (single flight).
    pub refilling: bool,
    refused_at: Option<Instant>,
    /// Why the last grant was refused, for the 429.
    pub refusal: String,
    /// The last grant was refused because the key is revoked or expired (a 401, not a 429).
    pub key_gone: bool,
    last_grant: i64,
    last_estimate: i64,
    pub last_used: Instant,
    /// Taken out of the quota's map by the idle sweep: look the key up again.
    pub retired: bool,
    rate: SpendRate,
}

impl LeaseState {
    fn new(now: Instant) -> LeaseState {
        LeaseState {
            lease_id: None,
            available: 0,
            usable_until: now,
            reserved: 0,
            open: 0,
            refilling: false,
            refused_at: None,
            refusal: String::new(),
            key_gone: false,
            last_grant: 0,
            last_estimate: 0,
            last_used: now,
            retired: false,
            rate: SpendRate { window_start: now, window: 0, per_second: 0 },
        }
    }

    /// Whether new reservations may use the lease.
    pub fn usable(&self, now: Instant) -> bool {
        self.lease_id.is_some() && now < self.usable_until
    }

    /// Takes `estimate` when the lease covers it.
    pub fn try_take(&mut self, estimate: i64, now: Instant) -> bool {
        self.last_used = now;
        self.last_estimate = estimate;
        if !self.usable(now) || self.available < estimate {
            return false;
        }
        self.available -= estimate;
        self.reserved += estimate;
        self.open += 1;
        self.rate.add(estimate, now);
        true
    }

    /// Ends a reservation of `amount` at its real `cost`; the lease to report it against.
    pub fn settle(&mut self, amount: i64, cost: i64) -> Option<Arc<str>> {
        debug_assert!(self.open > 0 && self.reserved >= amount, "settling more than was reserved");
        self.available = self.available.saturating_add(amount).saturating_sub(cost);
        self.reserved -= amount;
        self.open = self.open.saturating_sub(1);
        self.lease_id.clone()
    }

    /// Whether the control plane refused (or failed) so recently that asking again is useless.
    pub fn recently_refused(&self, now: Instant) -> bool {
        self.refused_at.is_some_and(|at| now.saturating_duration_since(at) < RETRY_AFTER)
    }

    /// Whether to refill in the background now: low water or near the end of the lease.
    pub fn wants_refill(&self, now: Instant) -> bool {
        !self.refilling
            && !self.recently_refused(now)
            && (self.available < self.last_grant / 4
                || self.usable_until.saturating_duration_since(now) < RENEW_BEFORE)
    }

    /// What to ask for so that `needed` (0: no request is waiting) fits, sized to recent spend.
    pub fn refill_request(&self, needed: i64) -> RefillRequest {
        let size = (self.last_estimate.max(needed))
            .saturating_mul(ESTIMATES_PER_LEASE)
            .max(self.rate.per_second().saturating_mul(SECONDS_PER_LEASE));
        let available = if self.usable_until > Instant::now() { self.available } else { 0 };
        let min = needed.saturating_sub(available).max(needed.min(1)).max(0);
        let min = if needed == 0 { self.last_estimate.min(size) } else { min };
        let want = size.saturating_sub(available.max(0)).max(min);
        RefillRequest { lease_id: self.lease_id.clone(), want, min }
    }

    /// Applies the control plane's answer to `asked`.
    pub fn apply_grant(&mut self, asked: Option<&Arc<str>>, grant: &Granted, now: Instant) {
        self.refilling = false;
        if grant.lease_id.is_empty() {
            // Revoked or expired key: its leases are gone.
            self.lease_id = None;
        } else if asked.is_some_and(|a| **a == *grant.lease_id) {
            self.available = self.available.saturating_add(grant.granted);
        } else {
            // A new lease: open reservations move onto it (their reports will name it).
            self.lease_id = Some(Arc::from(grant.lease_id.as_str()));
            self.available = grant.held.saturating_sub(self.reserved);
        }
        self.usable_until = now + grant.lives.saturating_sub(SAFETY_MARGIN.min(grant.lives / SAFETY_SHARE));
        if grant.granted > 0 {
            self.last_grant = grant.granted;
            self.refused_at = None;
        } else {
            self.refused_at = Some(now);
            self.refusal = describe(&grant.limited_by);
        }
        self.key_gone =
            grant.lease_id.is_empty() && matches!(grant.limited_by.as_str(), "revoked" | "expired");
    }

    /// The control plane could not be asked.
    pub fn refill_failed(&mut self, now: Instant, why: String) {
        self.refilling = false;
        self.key_gone = false;
        self.refused_at = Some(now);
        self.refusal = why;
    }
}

fn describe(limited_by: &str) -> String {
    match limited_by {
        "balance" => "the account balance is exhausted",
        "key_limit" => "the key's spend limit is reached",
        "key_daily_limit" => "the key's daily limit is reached",
        "account_daily_limit" => "the account's daily limit is reached",
        "key_weekly_limit" => "the key's weekly limit is reached",
        "key_monthly_limit" => "the key's monthly limit is reached",
        "account_weekly_limit" => "the account's weekly limit is reached",
        "account_monthly_limit" => "the account's monthly limit is reached",
        "revoked" => "the key is revoked",
        "expired" => "the key has expired",
        _ => "no quota could be granted",
    }
    .to_owned()
}

/// Spend per second, measured over one-second windows.
#[derive(Debug)]
struct SpendRate {
    window_start: Instant,
    window: i64,
    per_second: i64,
}

impl SpendRate {
    fn add(&mut self, amount: i64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= Duration::from_secs(1) {
            let millis = i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX);
            self.per_second = self.window.saturating_mul(1000) / millis;
            self.window = 0;
            self.window_start = now;
        }
        self.window = self.window.saturating_add(amount);
    }

    fn per_second(&self) -> i64 {
        self.per_second.max(self.window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(id: &str, granted: i64, held: i64) -> Granted {
        Granted {
            lease_id: id.into(),
            granted,
            held,
            lives: Duration::from_secs(30),
            limited_by: String::new(),
        }
    }

    #[test]
    fn reservations_take_and_settle_exactly() {
        let now = Instant::now();
        let mut state = LeaseState::new(now);
        assert!(!state.try_take(10, now), "no lease yet");
        let ask = state.refill_request(10);
        assert_eq!((ask.lease_id.clone(), ask.min), (None, 10));
        assert!(ask.want >= 80, "several estimates: {ask:?}");
        state.apply_grant(None, &grant("a", 100, 100), now);
        assert!(state.try_take(60, now));
        assert!(!state.try_take(60, now), "only 40 left");
        assert_eq!(state.settle(60, 20).as_deref(), Some("a"));
        assert_eq!(state.available, 80, "unused part returned, spent part gone");
        // A stream that ran past its reservation drives the lease negative.
        assert!(state.try_take(80, now));
        state.settle(80, 130);
        assert_eq!((state.available, state.reserved, state.open), (-50, 0, 0));
        assert!(!state.try_take(1, now));
        // A refill of the same lease adds what was granted (never `held`: the reports of
        // settled requests may not have arrived yet).
        let ask = state.refill_request(10);
        assert_eq!(ask.min, 60, "covers the debt and the estimate");
        state.apply_grant(ask.lease_id.as_ref(), &grant("a", 100, 170), now);
        assert_eq!(state.available, 50);
    }

    #[test]
    fn a_new_lease_carries_open_reservations() {
        let now = Instant::now();
        let mut state = LeaseState::new(now);
        state.apply_grant(None, &grant("a", 100, 100), now);
        assert!(state.try_take(30, now));
        state.apply_grant(Some(&Arc::from("a")), &grant("b", 50, 50), now);
        assert_eq!(state.available, 20);
        assert_eq!(state.settle(30, 10).as_deref(), Some("b"));
        assert_eq!(state.available, 40);
    }

    #[test]
    fn refusals_and_expiry() {
        let now = Instant::now();
        let mut state = LeaseState::new(now);
        state.apply_grant(None, &Granted { limited_by: "key_limit".into(), ..grant("a", 0, 0) }, now);
        assert!(state.recently_refused(now));
        assert!(!state.recently_refused(now + RETRY_AFTER));
        assert_eq!(state.refusal, "the key's spend limit is reached");
        state.apply_grant(Some(&Arc::from("a")), &grant("a", 100, 100), now);
        assert!(state.try_take(10, now));
        assert!(!state.usable(now + Duration::from_secs(26)), "not used within the safety margin");
        assert!(state.wants_refill(now + Duration::from_secs(21)), "renewed before its end");
        assert!(!state.wants_refill(now), "plenty left");
        assert!(state.try_take(70, now));
        assert!(state.wants_refill(now), "below low water");
    }

    #[test]
    fn a_lease_cut_short_by_expiry_or_midnight_is_used_to_near_its_end() {
        let now = Instant::now();
        let mut state = LeaseState::new(now);
        // The key expires (or the UTC day ends) in 3 s: the lease lives 3 s.
        let short = Granted { lives: Duration::from_secs(3), ..grant("a", 100, 100) };
        state.apply_grant(None, &short, now);
        assert!(state.try_take(10, now + Duration::from_millis(2400)), "served 0.6 s before the end");
        assert!(!state.usable(now + Duration::from_millis(2600)), "not in the last sixth");
        // The next grant (0.3 s left) is usable for most of what it has.
        let last = Granted { lives: Duration::from_millis(300), ..grant("a", 10, 100) };
        state.apply_grant(Some(&Arc::from("a")), &last, now);
        assert!(state.usable(now + Duration::from_millis(240)));
        // A whole lease keeps the full margin.
        state.apply_grant(Some(&Arc::from("a")), &grant("a", 10, 100), now);
        assert!(
            state.usable(now + Duration::from_millis(24_900)) && !state.usable(now + Duration::from_secs(25))
        );
    }
}
