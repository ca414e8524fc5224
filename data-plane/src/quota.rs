//! Budgets enforced locally: each request reserves its estimated cost before going upstream
//! and settles the real cost afterwards.
//!
//! INTERIM: this version admits every reservation; the lease-backed implementation (issue
//! "Quota leases and exactly-once usage") replaces the inside of this module and keeps its
//! interface.
use router_proto::Money;

/// Why a reservation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// No lease can cover the estimate and none can be granted.
    #[error("insufficient quota: {0}")]
    Insufficient(String),
}

/// The quota of this data plane's keys.
#[derive(Debug, Default)]
pub struct Quota {}

impl Quota {
    /// Reserves `estimate` for one request of key `key_id`, waiting briefly (bounded) for a
    /// refill if the key's lease cannot cover it.
    pub async fn reserve(&self, key_id: i64, estimate: Money) -> Result<Reservation, Refused> {
        Ok(Reservation { key_id, amount: estimate, lease_id: None })
    }
}

/// An amount set aside for one request.
#[derive(Debug)]
pub struct Reservation {
    key_id: i64,
    amount: Money,
    lease_id: Option<String>,
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
    pub fn settle(self, cost: Money) -> Option<String> {
        let _ = cost;
        self.lease_id
    }
}
