//! Budgets enforced locally: each request reserves its estimated cost from its key's lease
//! before going upstream and settles the real cost afterwards.
//!
//! A lease is an amount the control plane set aside for one key on this data plane (see
//! [`lease`]). Reservations are taken synchronously under a per-key mutex; when the lease
//! cannot cover one, a refill is asked for (one at a time per key, in a task of its own, sized
//! to the key's recent spend) and the request waits, at most [`MAX_WAIT`], for the refill or
//! for in-flight requests to settle, then is refused with 429 `insufficient_quota`. Leases are
//! refilled ahead of need (low-water mark, or near their end), are not used past their
//! expiry minus a safety margin (shorter for a lease that ends early at its key's expiry or a
//! daily limit's midnight, so that those last seconds are served), and are released after
//! [`IDLE_RELEASE`] without traffic.
//!
//! Fail-closed: with the control plane unreachable, requests are served from what the leases
//! already hold; once a lease is spent or expired, they are refused (429) until it is back.
//!
//! Overspend bound: a key or account can exceed a limit only by (a) what requests in flight
//! cost beyond their reservation (output beyond the `--reserve-output-tokens` a request
//! reserves, up to its output cap; such a settlement drives the lease negative and blocks the
//! key until a refill), and (b) the cost of requests
//! settled but not yet reported when their lease ended on the control plane (only when the
//! control plane was unreachable for longer than a lease lives, ~30 s).
pub mod admission;
mod lease;
pub mod rate;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use router_proto::{Money, pb};
use tokio::sync::watch;

use self::{
    lease::{Granted, KeyLease, RefillRequest},
    rate::{RatePermit, Rates},
};
use crate::{app::unix_micros, control::NodeClient, report::Reporter};

/// Longest a reservation waits for a refill or for room before it is refused.
pub const MAX_WAIT: Duration = Duration::from_secs(2);
/// A key without traffic this long gives its lease back.
pub const IDLE_RELEASE: Duration = Duration::from_secs(10);
/// How often idle leases are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(2);
/// Longest a lease call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a reservation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// No lease can cover the estimate and none can be granted.
    #[error("insufficient quota: {0}")]
    Insufficient(String),
    /// The control plane found the key revoked or expired (the policy had not caught up).
    #[error("{0}")]
    KeyGone(String),
}

/// The quota of this data plane's keys; cheap to clone.
#[derive(Clone)]
pub struct Quota {
    inner: Arc<Inner>,
    rates: Rates,
}

struct Inner {
    client: NodeClient,
    node_id: String,
    keys: Mutex<HashMap<i64, Arc<KeyLease>>>,
}

impl std::fmt::Debug for Quota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quota").field("node_id", &self.inner.node_id).finish_non_exhaustive()
    }
}

enum Step {
    Taken { refill: Option<RefillRequest> },
    Wait(watch::Receiver<()>, Option<RefillRequest>),
    Refuse(String, bool),
}

impl Quota {
    /// Leases from the control plane behind `client`; idle leases are released (once
    /// `reporter` has delivered every report, so that nothing spent is left unheld) until
    /// `shutdown` turns true.
    pub fn new(
        client: NodeClient,
        node_id: String,
        reporter: Reporter,
        shutdown: watch::Receiver<bool>,
    ) -> Quota {
        let rates = Rates::new(client.clone(), node_id.clone());
        let inner = Arc::new(Inner { client, node_id, keys: Mutex::new(HashMap::new()) });
        tokio::spawn(sweep(Arc::clone(&inner), reporter, shutdown));
        Quota { inner, rates }
    }

    /// The rate leases (RPM, TPM, concurrency) of this data plane's keys.
    pub fn rates(&self) -> &Rates {
        &self.rates
    }

    /// Reserves `estimate` for one request of key `key_id`, waiting briefly (bounded) for a
    /// refill if the key's lease cannot cover it.
    pub async fn reserve(&self, key_id: i64, estimate: Money) -> Result<Reservation, Refused> {
        let amount = estimate.nanos();
        if amount <= 0 {
            return Ok(Reservation { key_id, amount: Money::ZERO, lease: None, rate: None });
        }
        let deadline = tokio::time::Instant::now() + MAX_WAIT;
        loop {
            let key = self.inner.key(key_id);
            let step = {
                let mut state = key.lock();
                let now = Instant::now();
                if state.retired {
                    continue;
                }
                if state.try_take(amount, now) {
                    let refill = state.wants_refill(now).then(|| {
                        state.refilling = true;
                        state.refill_request(0)
                    });
                    Step::Taken { refill }
                } else if state.refilling {
                    Step::Wait(key.changed.subscribe(), None)
                } else if !state.recently_refused(now) {
                    state.refilling = true;
                    Step::Wait(key.changed.subscribe(), Some(state.refill_request(amount)))
                } else if state.open > 0 {
                    // Requests in flight may give back enough when they settle.
                    Step::Wait(key.changed.subscribe(), None)
                } else {
                    Step::Refuse(state.refusal.clone(), state.key_gone)
                }
            };
            match step {
                Step::Taken { refill } => {
                    if let Some(refill) = refill {
                        tokio::spawn(Arc::clone(&self.inner).refill(Arc::clone(&key), refill));
                    }
                    return Ok(Reservation { key_id, amount: estimate, lease: Some(key), rate: None });
                }
                Step::Wait(mut changed, refill) => {
                    if let Some(refill) = refill {
                        tokio::spawn(Arc::clone(&self.inner).refill(Arc::clone(&key), refill));
                    }
                    // Bounded by the deadline, and re-checked at least as often as a refused
                    // grant may be asked again (a top-up must unblock the key quickly).
                    let until = deadline.min(tokio::time::Instant::now() + lease::RETRY_AFTER);
                    let _ = tokio::time::timeout_at(until, changed.changed()).await;
                    if tokio::time::Instant::now() >= deadline {
                        let state = key.lock();
                        return Err(refused(state.refusal.clone(), state.key_gone));
                    }
                }
                Step::Refuse(why, key_gone) => return Err(refused(why, key_gone)),
            }
        }
    }
}

fn refused(why: String, key_gone: bool) -> Refused {
    if key_gone {
        return Refused::KeyGone(why);
    }
    Refused::Insufficient(if why.is_empty() {
        "the key's quota lease cannot cover this request".to_owned()
    } else {
        why
    })
}

impl Inner {
    fn key(&self, key_id: i64) -> Arc<KeyLease> {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(keys.entry(key_id).or_insert_with(|| Arc::new(KeyLease::new(key_id, Instant::now()))))
    }

    /// Asks the control plane for more of `key`'s quota; the only refill of that key in flight.
    async fn refill(self: Arc<Self>, key: Arc<KeyLease>, request: RefillRequest) {
        let call = pb::AcquireLeaseRequest {
            node_id: self.node_id.clone(),
            key_id: key.key_id,
            lease_id: request.lease_id.as_deref().map(str::to_owned),
            want_nanos: request.want,
            min_nanos: request.min,
        };
        let mut client = self.client.clone();
        let answer = tokio::time::timeout(CALL_TIMEOUT, client.acquire_lease(call)).await;
        let now = Instant::now();
        {
            let mut state = key.lock();
            match answer {
                Ok(Ok(lease)) => {
                    let lease = lease.into_inner();
                    let lives = u64::try_from(lease.expires_at_unix_micros.saturating_sub(unix_micros()))
                        .unwrap_or(0);
                    let granted = Granted {
                        lease_id: lease.lease_id,
                        granted: lease.granted_nanos,
                        held: lease.held_nanos,
                        lives: Duration::from_micros(lives),
                        limited_by: lease.limited_by,
                    };
                    tracing::debug!(key = key.key_id, granted = granted.granted, held = granted.held, limited_by = %granted.limited_by, "lease");
                    state.apply_grant(request.lease_id.as_ref(), &granted, now);
                }
                Ok(Err(status)) => {
                    tracing::warn!(key = key.key_id, %status, "lease refused");
                    state.refill_failed(now, "the control plane did not grant quota".to_owned());
                }
                Err(_) => {
                    tracing::warn!(key = key.key_id, "lease call timed out");
                    state.refill_failed(
                        now,
                        "the control plane is unreachable and the key's lease is spent".to_owned(),
                    );
                }
            }
        }
        key.wake();
    }
}

/// Releases the leases of keys without traffic, so that their money is not locked.
async fn sweep(inner: Arc<Inner>, reporter: Reporter, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(SWEEP_EVERY) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        if reporter.depth() > 0 {
            // Spent money still unreported: releasing now would let it be granted twice.
            continue;
        }
        let now = Instant::now();
        let mut released = Vec::new();
        inner.keys.lock().unwrap_or_else(PoisonError::into_inner).retain(|_, key| {
            let mut state = key.lock();
            let idle = state.open == 0
                && !state.refilling
                && now.saturating_duration_since(state.last_used) > IDLE_RELEASE;
            if idle {
                state.retired = true;
                released.extend(state.lease_id.take());
            }
            !idle
        });
        for lease_id in released {
            let mut client = inner.client.clone();
            let call =
                pb::ReleaseLeaseRequest { node_id: inner.node_id.clone(), lease_id: lease_id.to_string() };
            if let Err(error) = tokio::time::timeout(CALL_TIMEOUT, client.release_lease(call)).await {
                tracing::debug!(%error, "lease release timed out; it expires by itself");
            }
        }
    }
}

/// An amount set aside for one request.
pub struct Reservation {
    key_id: i64,
    amount: Money,
    lease: Option<Arc<KeyLease>>,
    /// The request's share of its rate allowances, settled with it.
    rate: Option<RatePermit>,
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation").field("key_id", &self.key_id).field("amount", &self.amount).finish()
    }
}

impl Reservation {
    /// The key the reservation is for.
    pub fn key_id(&self) -> i64 {
        self.key_id
    }

    /// What was set aside.
    pub fn amount(&self) -> Money {
        self.amount
    }

    /// Settles the request at its real `cost`; returns the lease it was charged to.
    pub fn settle(mut self, cost: Money) -> Option<String> {
        self.finish(cost)
    }

    /// Holds the request's rate permit until the reservation is settled.
    pub fn attach_rate(&mut self, permit: Option<RatePermit>) {
        self.rate = permit;
    }

    /// Settles the request at its real `cost` and `tokens` (input + output as billed, for
    /// tokens-per-minute limits); returns the lease it was charged to.
    pub fn settle_with(mut self, cost: Money, tokens: u64) -> Option<String> {
        if let Some(permit) = self.rate.take() {
            permit.settle(tokens);
        }
        self.finish(cost)
    }

    fn finish(&mut self, cost: Money) -> Option<String> {
        let key = self.lease.take()?;
        let lease_id = key.lock().settle(self.amount.nanos(), cost.nanos());
        key.wake();
        lease_id.map(|id| id.to_string())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // Never settled (a bug elsewhere, or a panic): give the amount back.
        self.finish(Money::ZERO);
    }
}
