//! Failed-auth back-off per client address: key guessing from one address is held to
//! `--auth-failure-limit` guesses per `--auth-failure-window`.
//!
//! After `limit` refused keys from an address within a window (counted from its first
//! failure), the rest of that window answers 429 `rate_limit_exceeded` with `retry-after`
//! before the key is looked up — whatever the key, so a blocked guesser learns nothing from
//! the answer. Keys that recently *succeeded* from the address are remembered (a few 32-bit
//! fingerprints of their hashes per slot) and keep working through the hold: a legitimate
//! caller behind the same address as the guesser is not locked out.
//!
//! Memory is a fixed table of [`SLOTS`] slots (64 KiB), an address picking its slot through a
//! per-process keyed hash (IPv6 by its /64), so it never grows with the number of addresses.
//! Two addresses sharing a slot are told apart by a 16-bit tag; the later failure takes the
//! slot. The success path costs one relaxed load of the slot's state and of its remembered
//! keys (a store only when the key is not among them); nothing is locked.
use std::{
    hash::BuildHasher,
    net::IpAddr,
    sync::{
        OnceLock,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

/// Slots in the table.
pub const SLOTS: usize = 4096;

/// One slot: `state` packs the address tag (16 bits), the failures counted (16 bits) and the
/// second its window started (32 bits); `good` holds two 32-bit fingerprints of (key, address
/// tag) pairs that succeeded, the newer in the high half.
#[derive(Debug, Default)]
struct Slot {
    state: AtomicU64,
    good: AtomicU64,
}

/// The table.
#[derive(Debug)]
pub struct Backoff {
    slots: Box<[Slot]>,
    limit: u16,
    window: u32,
    hasher: std::hash::RandomState,
}

/// Where one request stands in the table: its slot and tag, and its key's fingerprint.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    index: usize,
    tag: u16,
    key: u32,
}

/// Seconds since this process first asked (monotonic; 32 bits last 136 years).
fn now_secs() -> u32 {
    static START: OnceLock<Instant> = OnceLock::new();
    let elapsed = START.get_or_init(Instant::now).elapsed().as_secs();
    u32::try_from(elapsed).unwrap_or(u32::MAX)
}

fn pack(tag: u16, count: u16, start: u32) -> u64 {
    (u64::from(tag) << 48) | (u64::from(count) << 32) | u64::from(start)
}

fn unpack(state: u64) -> (u16, u16, u32) {
    ((state >> 48) as u16, (state >> 32) as u16, state as u32)
}

/// The part of an address that identifies a client: IPv4 whole, IPv6 by its /64 (one host
/// commonly holds a whole /64), IPv4-mapped IPv6 as IPv4.
fn client_bits(address: IpAddr) -> u128 {
    match address {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(u32::from(v4)),
            None => (u128::from(v6) >> 64) | (1 << 127),
        },
    }
}

impl Backoff {
    /// A table allowing `limit` failures per `window` (`limit` 0: off).
    pub fn new(limit: u32, window: Duration) -> Backoff {
        let window = u32::try_from(window.as_secs().max(1)).unwrap_or(u32::MAX);
        Backoff {
            slots: (0..SLOTS).map(|_| Slot::default()).collect(),
            limit: u16::try_from(limit).unwrap_or(u16::MAX),
            window,
            hasher: std::hash::RandomState::new(),
        }
    }

    /// Whether the back-off is on.
    pub fn enabled(&self) -> bool {
        self.limit > 0
    }

    /// The ticket of a request from `address` presenting a key whose SHA-256 is `key_hash`.
    pub fn ticket(&self, address: IpAddr, key_hash: Option<&[u8; 32]>) -> Ticket {
        let hash = self.hasher.hash_one(client_bits(address));
        let tag = (hash >> 48) as u16;
        // Mixed with the tag: a key remembered for one address of a slot is not one for another.
        let key = key_hash.map_or(0, |h| {
            (u32::from_le_bytes([h[0], h[1], h[2], h[3]]) ^ u32::from(tag).wrapping_mul(0x9E37_79B9)) | 1
        });
        Ticket { index: (hash as usize) % SLOTS, tag, key }
    }

    /// `Err(seconds)` when the ticket's address is held back and its key is not one that
    /// succeeded from there: the request is refused without looking at the key.
    pub fn check(&self, ticket: Ticket) -> Result<(), u64> {
        self.check_at(ticket, now_secs)
    }

    fn check_at(&self, ticket: Ticket, now: impl FnOnce() -> u32) -> Result<(), u64> {
        if !self.enabled() {
            return Ok(());
        }
        let slot = &self.slots[ticket.index];
        let (tag, count, start) = unpack(slot.state.load(Relaxed));
        if tag != ticket.tag || count < self.limit {
            return Ok(());
        }
        let elapsed = now().wrapping_sub(start);
        if elapsed >= self.window {
            return Ok(());
        }
        let good = slot.good.load(Relaxed);
        if ticket.key != 0 && (good as u32 == ticket.key || (good >> 32) as u32 == ticket.key) {
            return Ok(());
        }
        Err(u64::from(self.window - elapsed))
    }

    /// Counts a refused key.
    pub fn failed(&self, ticket: Ticket) {
        self.failed_at(ticket, now_secs());
    }

    fn failed_at(&self, ticket: Ticket, now: u32) {
        if !self.enabled() {
            return;
        }
        let slot = &self.slots[ticket.index];
        let _ = slot.state.fetch_update(Relaxed, Relaxed, |state| {
            let (tag, count, start) = unpack(state);
            Some(if tag != ticket.tag || now.wrapping_sub(start) >= self.window {
                pack(ticket.tag, 1, now)
            } else {
                pack(tag, count.saturating_add(1), start)
            })
        });
    }

    /// Remembers a key that succeeded (a store only when it is not remembered yet).
    pub fn succeeded(&self, ticket: Ticket) {
        if !self.enabled() || ticket.key == 0 {
            return;
        }
        let good = &self.slots[ticket.index].good;
        let old = good.load(Relaxed);
        if old as u32 != ticket.key && (old >> 32) as u32 != ticket.key {
            good.store((u64::from(ticket.key) << 32) | (old >> 32), Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(byte: u8) -> [u8; 32] {
        [byte; 32]
    }

    #[test]
    fn holds_an_address_after_the_limit_for_the_rest_of_its_window() {
        let table = Backoff::new(3, Duration::from_secs(60));
        let guesser = table.ticket("192.0.2.1".parse().expect("ip"), Some(&hash(1)));
        for second in [100, 101, 102] {
            assert_eq!(table.check_at(guesser, || second), Ok(()));
            table.failed_at(guesser, second);
        }
        assert_eq!(table.check_at(guesser, || 110), Err(50), "the window began at the first failure");
        // Whatever key it tries next.
        let other_key = table.ticket("192.0.2.1".parse().expect("ip"), Some(&hash(2)));
        assert_eq!(table.check_at(other_key, || 159), Err(1));
        assert_eq!(table.check_at(other_key, || 160), Ok(()), "the hold ends with the window");
        table.failed_at(other_key, 160);
        assert_eq!(table.check_at(other_key, || 161), Ok(()), "a new window counts afresh");
    }

    #[test]
    fn a_key_that_worked_from_the_address_keeps_working() {
        let table = Backoff::new(2, Duration::from_secs(60));
        let address: IpAddr = "2001:db8::1".parse().expect("ip");
        let good = table.ticket(address, Some(&hash(7)));
        table.succeeded(good);
        let bad = table.ticket(address, Some(&hash(8)));
        table.failed_at(bad, 5);
        table.failed_at(bad, 5);
        assert!(table.check_at(bad, || 6).is_err());
        assert_eq!(table.check_at(good, || 6), Ok(()));
        let no_key = table.ticket(address, None);
        assert!(table.check_at(no_key, || 6).is_err(), "no key is never a remembered one");
        // The same /64 is the same client; another address is not held.
        let neighbour = table.ticket("2001:db8::ffff".parse().expect("ip"), Some(&hash(9)));
        assert!(table.check_at(neighbour, || 6).is_err());
        let stranger = table.ticket("198.51.100.7".parse().expect("ip"), Some(&hash(8)));
        assert_eq!(table.check_at(stranger, || 6), Ok(()));
    }

    #[test]
    fn remembers_the_two_latest_keys() {
        let table = Backoff::new(1, Duration::from_secs(60));
        let address: IpAddr = "192.0.2.9".parse().expect("ip");
        let [a, b, c] = [1, 2, 3].map(|k| table.ticket(address, Some(&hash(k))));
        for ticket in [a, b, c] {
            table.succeeded(ticket);
        }
        table.failed_at(table.ticket(address, Some(&hash(4))), 0);
        assert!(table.check_at(a, || 1).is_err(), "the oldest was forgotten");
        assert_eq!(table.check_at(b, || 1), Ok(()));
        assert_eq!(table.check_at(c, || 1), Ok(()));
    }

    #[test]
    fn off_at_limit_zero() {
        let table = Backoff::new(0, Duration::from_secs(60));
        let ticket = table.ticket("192.0.2.1".parse().expect("ip"), None);
        for _ in 0..100 {
            table.failed_at(ticket, 0);
        }
        assert_eq!(table.check_at(ticket, || 0), Ok(()));
    }
}
