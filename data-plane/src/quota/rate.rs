//! Rate limits enforced locally, from rate leases: per key, this data plane holds a grant of
//! requests and tokens for the control plane's current slot of the rate window and a number of
//! requests it may have in flight (see the control plane's `store::rates` for how grants are
//! bounded across data planes). A request takes one request, its token estimate and one
//! in-flight place; it settles its real token count when it ends. A grant is refilled ahead
//! of need (at low water, in a task of its own, one at a time per key); a request that the
//! grant cannot cover waits only for a refill already under way, and is then refused with 429
//! `rate_limit_exceeded`. Keys without rate limits never get here (no lock, no allocation).
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use http::{HeaderMap, HeaderName, HeaderValue};
use router_proto::pb;
use tokio::sync::watch;

use crate::{control::NodeClient, policy::RateLimits};

/// Longest a request waits for a refill under way.
const MAX_WAIT: Duration = Duration::from_secs(2);
/// Longest a rate call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// A grant this close to its end is renewed in the background.
const RENEW_BEFORE: Duration = Duration::from_millis(100);
/// Longest a request waits for the control plane's slot to end before asking again.
const MAX_SLOT_WAIT: Duration = Duration::from_millis(250);
/// After a refusal, the control plane is not asked again sooner than this.
const RETRY_AFTER: Duration = Duration::from_millis(100);

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Requests per window.
    Requests,
    /// Tokens per window.
    Tokens,
    /// Requests in flight.
    Concurrency,
}

impl Kind {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Requests => "rpm",
            Kind::Tokens => "tpm",
            Kind::Concurrency => "concurrency",
        }
    }
}

/// A refusal: which limit, when to retry, and the headers to send.
#[derive(Debug, Clone)]
pub struct RateRefused {
    /// The limit that refused.
    pub kind: Kind,
    /// Seconds until a retry may pass.
    pub retry_after: u64,
    /// `x-ratelimit-*` headers.
    pub headers: RateHeaders,
}

/// The `x-ratelimit-*` headers of an answer (OpenAI's names).
#[derive(Debug, Clone, Default)]
pub struct RateHeaders {
    /// `(limit, remaining, reset)` of requests, when limited.
    pub requests: Option<(i64, i64, Duration)>,
    /// The same for tokens.
    pub tokens: Option<(i64, i64, Duration)>,
}

impl RateHeaders {
    /// Adds the headers to `headers`.
    pub fn apply(&self, headers: &mut HeaderMap) {
        let sets = [("requests", self.requests), ("tokens", self.tokens)];
        for (what, value) in sets {
            let Some((limit, remaining, reset)) = value else { continue };
            let name = |field: &str| HeaderName::try_from(format!("x-ratelimit-{field}-{what}")).ok();
            if let Some(name) = name("limit") {
                headers.insert(name, HeaderValue::from(limit));
            }
            if let Some(name) = name("remaining") {
                headers.insert(name, HeaderValue::from(remaining.clamp(0, limit)));
            }
            if let (Some(name), Ok(value)) = (name("reset"), HeaderValue::from_str(&duration_text(reset))) {
                headers.insert(name, value);
            }
        }
    }
}

/// A duration as OpenAI writes it in `x-ratelimit-reset-*`: `20ms`, `1.5s`, `6m0s`.
pub fn duration_text(d: Duration) -> String {
    let millis = d.as_millis();
    if millis < 1000 {
        format!("{millis}ms")
    } else if millis < 60_000 {
        let tenths = millis / 100;
        if tenths.is_multiple_of(10) {
            format!("{}s", tenths / 10)
        } else {
            format!("{}.{}s", tenths / 10, tenths % 10)
        }
    } else {
        format!("{}m{}s", millis / 60_000, (millis % 60_000) / 1000)
    }
}

/// The limits in force for one request: the key's (or its group's) and its account's.
#[derive(Debug, Clone, Copy)]
pub struct Applied {
    /// The key's own limits over its group's.
    pub key: RateLimits,
    /// The account's.
    pub account: RateLimits,
}

impl Applied {
    fn tightest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn rpm(&self) -> Option<i64> {
        Self::tightest(self.key.rpm, self.account.rpm)
    }

    fn tpm(&self) -> Option<i64> {
        Self::tightest(self.key.tpm, self.account.tpm)
    }

    fn concurrency(&self) -> Option<i64> {
        Self::tightest(self.key.max_concurrent, self.account.max_concurrent)
    }
}

/// The rate leases of this data plane's keys; cheap to clone.
#[derive(Clone)]
pub struct Rates {
    inner: Arc<Inner>,
}

struct Inner {
    client: NodeClient,
    node_id: String,
    keys: Mutex<HashMap<i64, Arc<KeyRate>>>,
}

struct KeyRate {
    key_id: i64,
    state: Mutex<State>,
    changed: watch::Sender<()>,
}

impl KeyRate {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One key's grant, as this data plane uses it.
#[derive(Debug)]
struct State {
    /// The control plane's slot the grant is for (`i64::MIN`: none yet).
    slot: i64,
    usable_until: Instant,
    requests_left: i64,
    tokens_left: i64,
    /// What this slot's grant has been used for (reported once the slot is over).
    used_requests: i64,
    used_tokens: i64,
    /// The use of the latest slot that ended here: `(slot, requests, tokens)`. Sent with every
    /// refill (the control plane lowers that slot's grant to it, idempotently) and kept: a
    /// grant of that same slot may still arrive (its call was under way), and then the slot
    /// is reopened with this use, so that what is reported never falls below what was used.
    report: Option<(i64, i64, i64)>,
    /// In-flight places held, in use, and until when the hold lives.
    held: i64,
    in_flight: i64,
    held_until: Instant,
    refilling: bool,
    refused_at: Option<Instant>,
    refused_kind: Option<Kind>,
    /// What the control plane had unleased at the last grant, and when its window frees more.
    room_requests: i64,
    room_tokens: i64,
    requests_reset_at: Instant,
    tokens_reset_at: Instant,
    slot_len: Duration,
    /// By this time (on this clock) the control plane's slot has surely ended: durations
    /// counted from the answer's arrival, which is after the control plane's "now".
    slot_over_at: Instant,
}

impl State {
    fn new(now: Instant) -> State {
        State {
            slot: i64::MIN,
            usable_until: now,
            requests_left: 0,
            tokens_left: 0,
            used_requests: 0,
            used_tokens: 0,
            report: None,
            held: 0,
            in_flight: 0,
            held_until: now,
            refilling: false,
            refused_at: None,
            refused_kind: None,
            room_requests: 0,
            room_tokens: 0,
            requests_reset_at: now,
            tokens_reset_at: now,
            slot_len: Duration::from_secs(10),
            slot_over_at: now,
        }
    }

    /// Whether the control plane limited a grant so recently that asking again is useless:
    /// only within the slot it was refused in (a new slot may have room again).
    fn recently_refused(&self, now: Instant) -> bool {
        self.slot != i64::MIN
            && self.refused_at.is_some_and(|at| now.saturating_duration_since(at) < RETRY_AFTER)
    }

    /// Ends a grant whose slot is over: what it used waits to be reported.
    fn roll(&mut self, now: Instant) {
        if self.slot != i64::MIN && now >= self.usable_until {
            self.close();
        }
    }

    /// Closes the current slot: its use becomes the one to report (a newer slot's replaces
    /// an older one's: the control plane then keeps the older grant whole, the safe side).
    fn close(&mut self) {
        if self.slot == i64::MIN {
            return;
        }
        let closed = (self.slot, self.used_requests, self.used_tokens);
        self.report = match self.report {
            Some((slot, requests, tokens)) if slot == closed.0 => {
                Some((slot, requests + closed.1, tokens + closed.2))
            }
            Some(older) if older.0 > closed.0 => Some(older),
            _ => Some(closed),
        };
        self.slot = i64::MIN;
        self.requests_left = 0;
        self.tokens_left = 0;
        self.used_requests = 0;
        self.used_tokens = 0;
    }

    /// What is short for a request needing `needs` (requests, tokens, concurrency), if anything.
    fn short(&self, needs: (i64, i64, bool), now: Instant) -> Option<Kind> {
        if needs.0 > 0 && self.requests_left < needs.0 {
            return Some(Kind::Requests);
        }
        if needs.1 > 0 && self.tokens_left < needs.1 {
            return Some(Kind::Tokens);
        }
        if needs.2 && (self.in_flight >= self.held || now >= self.held_until) {
            return Some(Kind::Concurrency);
        }
        None
    }

    fn take(&mut self, needs: (i64, i64, bool)) {
        self.requests_left -= needs.0;
        self.used_requests += needs.0;
        self.tokens_left -= needs.1;
        self.used_tokens += needs.1;
        if needs.2 {
            self.in_flight += 1;
        }
    }

    /// Whether to refill in the background: low water, or a hold near its end.
    fn wants_refill(&self, needs: (i64, i64, bool), now: Instant) -> bool {
        if self.refilling || self.recently_refused(now) {
            return false;
        }
        let low = |left: i64, used: i64, need: i64| need > 0 && left <= used.max(need) / 2;
        low(self.requests_left, self.used_requests, needs.0)
            || low(self.tokens_left, self.used_tokens, needs.1)
            || (needs.2
                && (self.in_flight + 1 >= self.held
                    || self.held_until.saturating_duration_since(now) < Duration::from_secs(3)))
            || self.usable_until.saturating_duration_since(now) < RENEW_BEFORE
    }

    fn refill_request(
        &mut self,
        node_id: &str,
        key_id: i64,
        needs: (i64, i64, bool),
    ) -> pb::AcquireRateRequest {
        self.refilling = true;
        // Enough for the use seen so far in the slot again, and at least a few requests.
        let want_requests = if needs.0 > 0 { self.used_requests.max(needs.0 * 4) } else { 0 };
        let want_tokens = if needs.1 > 0 { self.used_tokens.max(needs.1 * 4) } else { 0 };
        let want_concurrent = if needs.2 { self.in_flight + 1 } else { 0 };
        let used = self.report;
        pb::AcquireRateRequest {
            node_id: node_id.to_owned(),
            key_id,
            want_requests,
            want_tokens,
            min_requests: needs.0.saturating_sub(self.requests_left).max(0).min(want_requests),
            min_tokens: needs.1.saturating_sub(self.tokens_left).max(0).min(want_tokens),
            want_concurrent,
            used_slot: used.map(|u| u.0),
            used_requests: used.map_or(0, |u| u.1),
            used_tokens: used.map_or(0, |u| u.2),
        }
    }

    /// Applies a grant asked for at `now` (durations count from there: no later than they do
    /// on the control plane) that arrived at `arrived`.
    fn apply(&mut self, grant: &pb::RateGrant, now: Instant, arrived: Instant, asked_concurrency: bool) {
        self.refilling = false;
        if grant.slot != self.slot {
            // The previous slot ended at the control plane before here.
            self.close();
            self.slot = grant.slot;
            if let Some((_, requests, tokens)) = self.report.filter(|r| r.0 == grant.slot) {
                // A slot that had ended here is granted in again: reopened with its use.
                self.report = None;
                self.used_requests = requests;
                self.used_tokens = tokens;
            }
        }
        self.requests_left += grant.granted_requests;
        self.tokens_left += grant.granted_tokens;
        let micros = |m: i64| Duration::from_micros(u64::try_from(m).unwrap_or(0));
        self.usable_until = now + micros(grant.usable_micros);
        self.slot_over_at = arrived + micros(grant.usable_micros);
        if asked_concurrency {
            self.held = grant.held_concurrent;
            self.held_until =
                now + micros(grant.concurrent_usable_micros).saturating_sub(Duration::from_secs(1));
        }
        self.room_requests = grant.room_requests;
        self.room_tokens = grant.room_tokens;
        self.requests_reset_at = now + micros(grant.requests_reset_micros);
        self.tokens_reset_at = now + micros(grant.tokens_reset_micros);
        self.slot_len = micros(grant.window_micros / 6).max(Duration::from_millis(1));
        if grant.limited_by.is_empty() {
            self.refused_at = None;
        } else {
            self.refused_at = Some(now);
        }
    }

    fn headers(&self, applied: &Applied, now: Instant) -> RateHeaders {
        let reset = |at: Instant| at.saturating_duration_since(now);
        RateHeaders {
            requests: applied.rpm().map(|limit| {
                (limit, self.requests_left.saturating_add(self.room_requests), reset(self.requests_reset_at))
            }),
            tokens: applied.tpm().map(|limit| {
                (limit, self.tokens_left.saturating_add(self.room_tokens), reset(self.tokens_reset_at))
            }),
        }
    }

    fn refusal(&self, kind: Kind, applied: &Applied, now: Instant) -> RateRefused {
        let wait = match kind {
            Kind::Requests => self.requests_reset_at.saturating_duration_since(now),
            Kind::Tokens => self.tokens_reset_at.saturating_duration_since(now),
            Kind::Concurrency => Duration::from_secs(1),
        }
        .max(self.usable_until.saturating_duration_since(now).min(self.slot_len));
        let retry_after = wait.as_millis().div_ceil(1000).max(1);
        RateRefused {
            kind,
            retry_after: u64::try_from(retry_after).unwrap_or(u64::MAX),
            headers: self.headers(applied, now),
        }
    }
}

impl std::fmt::Debug for Rates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rates").field("node_id", &self.inner.node_id).finish_non_exhaustive()
    }
}

impl Rates {
    /// Rate leases from the control plane behind `client`.
    pub fn new(client: NodeClient, node_id: String) -> Rates {
        Rates { inner: Arc::new(Inner { client, node_id, keys: Mutex::new(HashMap::new()) }) }
    }

    /// Admits one request of key `key_id` estimated at `tokens` under `applied` limits, or
    /// refuses it; waits only for a refill under way (bounded).
    pub async fn admit(&self, key_id: i64, applied: Applied, tokens: i64) -> Result<RatePermit, RateRefused> {
        let needs = (
            i64::from(applied.rpm().is_some()),
            if applied.tpm().is_some() { tokens.max(1) } else { 0 },
            applied.concurrency().is_some(),
        );
        let key = self.inner.key(key_id);
        let deadline = tokio::time::Instant::now() + MAX_WAIT;
        // Asked at most twice: a grant may arrive just as its slot ends here, unusable.
        let mut asked = 0_u8;
        loop {
            let mut changed = key.changed.subscribe();
            let mut slot_wait = Duration::ZERO;
            let refill = {
                let mut state = key.lock();
                let now = Instant::now();
                state.roll(now);
                match state.short(needs, now) {
                    None => {
                        state.take(needs);
                        let headers = state.headers(&applied, now);
                        let slot = state.slot;
                        let refill = state
                            .wants_refill(needs, now)
                            .then(|| state.refill_request(&self.inner.node_id, key_id, needs));
                        drop(state);
                        if let Some(refill) = refill {
                            tokio::spawn(Arc::clone(&self.inner).refill(Arc::clone(&key), refill));
                        }
                        return Ok(RatePermit { key: Some(key), slot, needs, headers });
                    }
                    Some(kind) => {
                        let recently_refused = state.recently_refused(now);
                        if state.refilling {
                            None
                        } else if asked >= 2 || recently_refused {
                            state.refused_kind = Some(kind);
                            return Err(state.refusal(kind, &applied, now));
                        } else if asked > 0 && state.slot == i64::MIN && now < state.slot_over_at {
                            // The grant ended here as it came: ask again once the slot is
                            // over at the control plane too, or the same slot answers.
                            slot_wait = state.slot_over_at.saturating_duration_since(now).min(MAX_SLOT_WAIT);
                            None
                        } else {
                            Some(state.refill_request(&self.inner.node_id, key_id, needs))
                        }
                    }
                }
            };
            if let Some(refill) = refill {
                tokio::spawn(Arc::clone(&self.inner).refill(Arc::clone(&key), refill));
                asked += 1;
            }
            if !slot_wait.is_zero() {
                tokio::time::sleep(slot_wait).await;
                continue;
            }
            if tokio::time::timeout_at(deadline, changed.changed()).await.is_err() {
                let state = key.lock();
                let now = Instant::now();
                let kind = state.short(needs, now).unwrap_or(Kind::Requests);
                return Err(state.refusal(kind, &applied, now));
            }
        }
    }
}

impl Inner {
    fn key(&self, key_id: i64) -> Arc<KeyRate> {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(keys.entry(key_id).or_insert_with(|| {
            Arc::new(KeyRate {
                key_id,
                state: Mutex::new(State::new(Instant::now())),
                changed: watch::Sender::new(()),
            })
        }))
    }

    async fn refill(self: Arc<Self>, key: Arc<KeyRate>, request: pb::AcquireRateRequest) {
        let asked_concurrency = request.want_concurrent > 0;
        let mut client = self.client.clone();
        // Durations in the answer count from the control plane's "now", which is after this:
        // counting them from here ends the grant no later than its slot does there.
        let sent = Instant::now();
        let answer = tokio::time::timeout(CALL_TIMEOUT, client.acquire_rate(request)).await;
        {
            let mut state = key.lock();
            let now = Instant::now();
            match answer {
                Ok(Ok(grant)) => state.apply(grant.get_ref(), sent, now, asked_concurrency),
                Ok(Err(status)) => {
                    tracing::warn!(key = key.key_id, %status, "rate grant refused");
                    state.refilling = false;
                    state.refused_at = Some(now);
                }
                Err(_) => {
                    tracing::warn!(key = key.key_id, "rate grant call timed out");
                    state.refilling = false;
                    state.refused_at = Some(now);
                }
            }
        }
        key.changed.send_replace(());
    }
}

/// One admitted request's share of its key's rate allowances; dropping it unsettled gives the
/// request and its tokens back (the request never went upstream).
pub struct RatePermit {
    key: Option<Arc<KeyRate>>,
    slot: i64,
    needs: (i64, i64, bool),
    headers: RateHeaders,
}

impl std::fmt::Debug for RatePermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RatePermit").field("slot", &self.slot).field("needs", &self.needs).finish()
    }
}

impl RatePermit {
    /// The `x-ratelimit-*` headers as of admission.
    pub fn headers(&self) -> &RateHeaders {
        &self.headers
    }

    /// Ends the request, which used `tokens` in all (input + output as billed).
    pub fn settle(mut self, tokens: u64) {
        self.finish(Some(i64::try_from(tokens).unwrap_or(i64::MAX)));
    }

    fn finish(&mut self, tokens: Option<i64>) {
        let Some(key) = self.key.take() else { return };
        let mut state = key.lock();
        let (requests, reserved, concurrent) = self.needs;
        if concurrent {
            state.in_flight = state.in_flight.saturating_sub(1);
        }
        // Unsettled: never went upstream; the request and its tokens come back.
        let (requests_back, tokens_back) = match tokens {
            None => (requests, reserved),
            Some(used) if reserved > 0 => (0, reserved - used),
            Some(_) => (0, 0),
        };
        if state.slot == self.slot {
            state.requests_left += requests_back;
            state.used_requests -= requests_back;
            state.tokens_left += tokens_back;
            state.used_tokens -= tokens_back;
        } else if let Some(report) = state.report.as_mut().filter(|r| r.0 == self.slot) {
            report.1 = (report.1 - requests_back).max(0);
            report.2 = (report.2 - tokens_back).max(0);
        } else if tokens_back < 0 {
            // More tokens than reserved, settled after the slot was reported: charged to
            // the current grant (counted in a later window, which is the safe side).
            state.tokens_left += tokens_back;
            state.used_tokens -= tokens_back;
        }
        drop(state);
        key.changed.send_replace(());
    }
}

impl Drop for RatePermit {
    fn drop(&mut self) {
        self.finish(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(slot: i64, requests: i64, tokens: i64, concurrent: i64) -> pb::RateGrant {
        pb::RateGrant {
            slot,
            granted_requests: requests,
            granted_tokens: tokens,
            held_concurrent: concurrent,
            usable_micros: 10_000_000,
            concurrent_usable_micros: 10_000_000,
            window_micros: 60_000_000,
            ..pb::RateGrant::default()
        }
    }

    #[test]
    fn grants_are_taken_and_reported_per_slot() {
        let now = Instant::now();
        let mut state = State::new(now);
        let needs = (1, 10, true);
        assert_eq!(state.short(needs, now), Some(Kind::Requests), "nothing granted yet");
        state.apply(&grant(5, 2, 15, 1), now, now, true);
        assert_eq!(state.short(needs, now), None);
        state.take(needs);
        assert_eq!(state.short(needs, now), Some(Kind::Tokens), "5 tokens left");
        state.in_flight -= 1;
        state.tokens_left += 10;
        state.used_tokens -= 10;
        state.take(needs);
        assert_eq!(state.short(needs, now), Some(Kind::Requests), "two requests granted, two taken");
        // The slot ends: its use waits to be reported with the next refill.
        state.roll(now + Duration::from_secs(11));
        assert_eq!(state.report, Some((5, 2, 10)), "the first request's tokens were given back");
        let ask = state.refill_request("n", 1, needs);
        assert_eq!((ask.used_slot, ask.used_requests, ask.used_tokens), (Some(5), 2, 10));
        assert!(state.report.is_some(), "kept until a later slot replaces it");
        // A grant of slot 5 that was under way reopens it with its use.
        state.apply(&grant(5, 1, 10, 1), now, now, true);
        assert_eq!((state.used_requests, state.used_tokens, state.report), (2, 10, None));
        state.take(needs);
        state.roll(now + Duration::from_secs(11));
        assert_eq!(state.report, Some((5, 3, 20)), "what is reported never falls below what was used");
        state.apply(&grant(6, 1, 10, 1), now + Duration::from_secs(11), now + Duration::from_secs(11), true);
        assert_eq!(state.report, Some((5, 3, 20)));
    }

    #[test]
    fn reset_durations_read_like_openais() {
        assert_eq!(duration_text(Duration::from_millis(20)), "20ms");
        assert_eq!(duration_text(Duration::from_millis(1000)), "1s");
        assert_eq!(duration_text(Duration::from_millis(1500)), "1.5s");
        assert_eq!(duration_text(Duration::from_secs(360)), "6m0s");
    }
}
