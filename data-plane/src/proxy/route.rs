//! Channel choice: native channels before converted ones, highest priority first, channels in
//! cool-down after failures skipped (unless nothing else is left); within a priority, a request of a session goes to the same
//! channel every time (weighted rendezvous hashing, so the upstream's prompt cache keeps
//! hitting), any other request to a weighted random one.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use rand::Rng;

use crate::{convert::Conversion, policy::ChannelInfo};

/// First cool-down after a failure; doubles with each consecutive failure.
const COOL_DOWN_START: Duration = Duration::from_secs(5);
/// Longest cool-down.
const COOL_DOWN_MAX: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
struct Health {
    failures: u32,
    until: Instant,
}

/// Failing channels and how long to leave them alone; shared by all requests.
#[derive(Debug, Default)]
pub struct CoolDowns {
    channels: Mutex<HashMap<i64, Health>>,
}

impl CoolDowns {
    /// Notes a failure of channel `id`.
    pub fn failed(&self, id: i64) {
        let Ok(mut channels) = self.channels.lock() else { return };
        let health = channels.entry(id).or_insert(Health { failures: 0, until: Instant::now() });
        health.failures = health.failures.saturating_add(1);
        let factor = 1u32 << health.failures.saturating_sub(1).min(6);
        health.until = Instant::now() + (COOL_DOWN_START * factor).min(COOL_DOWN_MAX);
    }

    /// Notes a success of channel `id`.
    pub fn succeeded(&self, id: i64) {
        let Ok(mut channels) = self.channels.lock() else { return };
        if !channels.is_empty() {
            channels.remove(&id);
        }
    }

    fn cooling(&self, now: Instant) -> Vec<i64> {
        let Ok(channels) = self.channels.lock() else { return Vec::new() };
        channels.iter().filter(|(_, h)| h.until > now).map(|(id, _)| *id).collect()
    }
}

/// A request's session (from its headers or body), hashed: every request of one session is
/// planned onto the same channel of a tier, on every data plane, with no per-session state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session(u64);

/// Session headers, in the order they are read: Claude Code's, then Codex's and others'.
const SESSION_HEADERS: [&str; 3] = ["x-claude-code-session-id", "session_id", "session-id"];

impl Session {
    /// The session of a request id string.
    pub fn new(id: &str) -> Session {
        // FNV-1a: stable across processes and versions (data planes must agree), and the
        // per-channel mix below spreads its bits.
        let hash = id
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        Session(hash)
    }

    /// The session a request carries: a session header, else a session field of its body
    /// (`prompt_cache_key`, `metadata.user_id`, read with the other body fields).
    pub fn of(headers: &http::HeaderMap, body_session: Option<&str>) -> Option<Session> {
        SESSION_HEADERS
            .iter()
            .find_map(|name| headers.get(*name).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty()))
            .or(body_session.filter(|s| !s.is_empty()))
            .map(Session::new)
    }

    /// The channel's rendezvous key for this session: the lowest key wins. It is
    /// `-ln(u) / weight` with `u` uniform in (0, 1) from a hash of (session, channel), the
    /// weighted highest-random-weight score `-weight / ln(u)` inverted: a channel wins a share
    /// of sessions proportional to its weight, and adding or removing one moves only the
    /// sessions it wins or held.
    fn key(self, channel: &ChannelInfo) -> f64 {
        let mixed = mix(self.0 ^ mix(channel.id as u64));
        let unit = ((mixed >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        -unit.ln() / f64::from(channel.weight.max(1))
    }
}

/// SplitMix64's finalizer: every input bit affects every output bit.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The channels that can serve one request: those speaking its protocol natively, and those
/// reached through `conversion` (each list sorted by priority, highest first).
#[derive(Debug, Clone, Copy)]
pub struct Candidates<'a> {
    /// Channels speaking the client's protocol.
    pub native: &'a [Arc<ChannelInfo>],
    /// Channels speaking the protocol `conversion` converts to.
    pub converted: &'a [Arc<ChannelInfo>],
    /// How the client's protocol is served on `converted`.
    pub conversion: Option<Conversion>,
}

impl Candidates<'_> {
    /// Whether no channel can serve the request, natively or by conversion.
    pub fn is_empty(&self) -> bool {
        self.native.is_empty() && (self.conversion.is_none() || self.converted.is_empty())
    }
}

/// One planned attempt: the channel, and the conversion on the way (`None`: native).
pub type Step = (Arc<ChannelInfo>, Option<Conversion>);

/// The order to try the candidates in: the native channels that are not cooling down, then
/// the converted ones that are not, then the native and the converted ones in cool-down (tried
/// only when nothing else is left). Within each, highest priority first; within a priority,
/// `session` pins the order, else it is weighted random. A channel that speaks both protocols
/// is tried natively only.
pub fn plan(candidates: &Candidates<'_>, cool_downs: &CoolDowns, session: Option<Session>) -> Vec<Step> {
    let cooling = cool_downs.cooling(Instant::now());
    let conversion = candidates.conversion;
    let converted = if conversion.is_some() { candidates.converted } else { &[] };
    let mut order = Vec::with_capacity(candidates.native.len() + converted.len());
    for resting in [false, true] {
        let native = candidates.native.iter().filter(|c| cooling.contains(&c.id) == resting);
        push_tiers(&mut order, native.cloned().collect(), None, session);
        if !converted.is_empty() {
            let other = converted.iter().filter(|c| {
                cooling.contains(&c.id) == resting && !candidates.native.iter().any(|n| n.id == c.id)
            });
            push_tiers(&mut order, other.cloned().collect(), conversion, session);
        }
    }
    order
}

/// Appends `list` (sorted by priority) tier by tier, each reached through `conversion`.
fn push_tiers(
    order: &mut Vec<Step>,
    list: Vec<Arc<ChannelInfo>>,
    conversion: Option<Conversion>,
    session: Option<Session>,
) {
    let mut start = 0;
    while start < list.len() {
        let priority = list[start].priority;
        let end = list[start..].iter().position(|c| c.priority != priority).map_or(list.len(), |n| start + n);
        order.extend(order_tier(list[start..end].to_vec(), session).into_iter().map(|c| (c, conversion)));
        start = end;
    }
}

/// The channels of one priority in the order to try them: by the session's rendezvous keys,
/// or weighted random without a session.
fn order_tier(mut tier: Vec<Arc<ChannelInfo>>, session: Option<Session>) -> Vec<Arc<ChannelInfo>> {
    if let Some(session) = session {
        let mut keyed: Vec<(f64, Arc<ChannelInfo>)> =
            tier.into_iter().map(|c| (session.key(&c), c)).collect();
        keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.id.cmp(&b.1.id)));
        return keyed.into_iter().map(|(_, c)| c).collect();
    }
    let mut rng = rand::rng();
    let mut order = Vec::with_capacity(tier.len());
    while !tier.is_empty() {
        let total: u64 = tier.iter().map(|c| u64::from(c.weight.max(1))).sum();
        let mut pick = rng.random_range(0..total);
        let index = tier
            .iter()
            .position(|c| {
                let weight = u64::from(c.weight.max(1));
                if pick < weight {
                    true
                } else {
                    pick -= weight;
                    false
                }
            })
            .unwrap_or(0);
        order.push(tier.remove(index));
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use router_upstream::{Kind, Upstream};

    fn channel(id: i64, priority: i32, weight: u32) -> Arc<ChannelInfo> {
        Arc::new(ChannelInfo {
            id,
            name: Arc::from(format!("c{id}")),
            upstream: Upstream::new(Kind::OpenAi, "", "", None, None),
            priority,
            weight,
            model_map: HashMap::new(),
        })
    }

    fn native(channels: &[Arc<ChannelInfo>]) -> Candidates<'_> {
        Candidates { native: channels, converted: &[], conversion: None }
    }

    fn ids(steps: &[Step]) -> Vec<(i64, bool)> {
        steps.iter().map(|(c, conversion)| (c.id, conversion.is_some())).collect()
    }

    fn order(channels: &[Arc<ChannelInfo>], cool_downs: &CoolDowns, session: Option<Session>) -> Vec<i64> {
        plan(&native(channels), cool_downs, session).iter().map(|(c, _)| c.id).collect()
    }

    #[test]
    fn higher_priority_first_and_cooling_channels_last() {
        let channels = [channel(1, 9, 1), channel(2, 5, 1), channel(3, 5, 1)];
        let cool_downs = CoolDowns::default();
        let ids = order(&channels, &cool_downs, None);
        assert_eq!(ids[0], 1);
        assert_eq!(ids.len(), 3);
        cool_downs.failed(1);
        let ids = order(&channels, &cool_downs, None);
        assert_eq!(ids[2], 1, "a failing channel is tried only when nothing else is left");
        cool_downs.succeeded(1);
        assert_eq!(order(&channels, &cool_downs, None)[0], 1);
    }

    #[test]
    fn native_channels_first_then_converted_then_the_cooling_ones() {
        let native = [channel(1, 0, 1)];
        // Channel 1 speaks both protocols: it is never also tried converted.
        let converted = [channel(2, 99, 1), channel(1, 0, 1), channel(3, 0, 1)];
        let conversion = Some(Conversion::MessagesToChat);
        let candidates = Candidates { native: &native, converted: &converted, conversion };
        let cool_downs = CoolDowns::default();
        assert_eq!(ids(&plan(&candidates, &cool_downs, None)), [(1, false), (2, true), (3, true)]);
        // A session pins the order within each tier, and never puts converted before native.
        let session = Some(Session::new("s"));
        assert_eq!(ids(&plan(&candidates, &cool_downs, session)), [(1, false), (2, true), (3, true)]);
        // The native channel cools down: the converted ones that do not come first.
        cool_downs.failed(1);
        cool_downs.failed(2);
        assert_eq!(ids(&plan(&candidates, &cool_downs, None)), [(3, true), (1, false), (2, true)]);
        // Without a conversion for the endpoint, the other protocol's channels are never used.
        let none = Candidates { conversion: None, ..candidates };
        assert_eq!(ids(&plan(&none, &cool_downs, None)), [(1, false)]);
        assert!(!none.is_empty() && Candidates { native: &[], ..none }.is_empty());
        assert!(!Candidates { native: &[], ..candidates }.is_empty());
    }

    #[test]
    fn weights_share_traffic_within_a_priority() {
        let channels = [channel(1, 0, 9), channel(2, 0, 1)];
        let cool_downs = CoolDowns::default();
        let first_is_heavy = (0..2000).filter(|_| order(&channels, &cool_downs, None)[0] == 1).count();
        // Expected 1800 of 2000; the bounds are many standard deviations wide.
        assert!((1650..1950).contains(&first_is_heavy), "{first_is_heavy}");
    }

    fn first(channels: &[Arc<ChannelInfo>], cool_downs: &CoolDowns, session: &str) -> i64 {
        order(channels, cool_downs, Some(Session::new(session)))[0]
    }

    #[test]
    fn a_session_keeps_its_channel_in_any_order_and_on_every_plane() {
        let channels = [channel(1, 0, 1), channel(2, 0, 1), channel(3, 0, 1)];
        let reversed: Vec<_> = channels.iter().rev().cloned().collect();
        let cool_downs = CoolDowns::default();
        for n in 0..200 {
            let session = format!("session-{n}");
            let chosen = first(&channels, &cool_downs, &session);
            assert!((0..5).all(|_| first(&channels, &cool_downs, &session) == chosen));
            assert_eq!(first(&reversed, &cool_downs, &session), chosen, "independent of the list order");
        }
        // Fixed values: the hash never changes between versions or processes.
        assert_eq!(Session::new(""), Session(0xcbf2_9ce4_8422_2325));
        assert_eq!(Session::new("a"), Session(0xaf63_dc4c_8601_ec8c));
    }

    #[test]
    fn sessions_spread_by_weight() {
        const SESSIONS: usize = 8000;
        let channels = [channel(1, 0, 1), channel(2, 0, 2), channel(3, 0, 3), channel(4, 0, 4)];
        let cool_downs = CoolDowns::default();
        let mut counts = HashMap::new();
        for n in 0..SESSIONS {
            *counts.entry(first(&channels, &cool_downs, &format!("s{n}"))).or_insert(0usize) += 1;
        }
        for c in &channels {
            let expected = SESSIONS as f64 * f64::from(c.weight) / 10.0;
            let sd = (expected * (1.0 - f64::from(c.weight) / 10.0)).sqrt();
            let got = counts.get(&c.id).copied().unwrap_or(0) as f64;
            // Five standard deviations (at most ~130); ignoring weights would give 2000 each,
            // at least 400 off for every channel.
            assert!(
                (got - expected).abs() < 5.0 * sd,
                "channel {}: {got} of {SESSIONS}, expected {expected}",
                c.id
            );
        }
    }

    #[test]
    fn adding_or_removing_a_channel_moves_only_its_share() {
        const SESSIONS: usize = 4000;
        let three = vec![channel(1, 0, 1), channel(2, 0, 1), channel(3, 0, 1)];
        let mut four = three.clone();
        four.push(channel(4, 0, 1));
        let cool_downs = CoolDowns::default();
        let mut moved = 0;
        for n in 0..SESSIONS {
            let session = format!("s{n}");
            let (before, after) = (first(&three, &cool_downs, &session), first(&four, &cool_downs, &session));
            if before != after {
                assert_eq!(after, 4, "a session moves only to the added channel");
                moved += 1;
            }
            // Removing channel 2 moves only the sessions channel 2 held.
            let without_two = [channel(1, 0, 1), channel(3, 0, 1)];
            if before != 2 {
                assert_eq!(first(&without_two, &cool_downs, &session), before);
            }
        }
        // A quarter is expected (1000, sd ~27).
        assert!((850..1150).contains(&moved), "{moved} of {SESSIONS} moved");
    }

    #[test]
    fn a_cooling_channel_hands_its_sessions_over_and_gets_them_back() {
        let channels = [channel(1, 0, 1), channel(2, 0, 1), channel(3, 0, 1), channel(9, -1, 100)];
        let cool_downs = CoolDowns::default();
        let session = "claude-code-session";
        let home = first(&channels, &cool_downs, session);
        assert_ne!(home, 9, "the highest priority serves the session");
        cool_downs.failed(home);
        let away = first(&channels, &cool_downs, session);
        assert!(away != home && away != 9, "moves within the priority: {away}");
        let ids = order(&channels, &cool_downs, Some(Session::new(session)));
        assert_eq!(ids.last(), Some(&home), "the cooling channel is the last resort");
        cool_downs.succeeded(home);
        assert_eq!(first(&channels, &cool_downs, session), home, "and comes back when it recovers");
    }

    #[test]
    fn session_headers_win_over_body_fields() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(Session::of(&headers, None), None);
        assert_eq!(Session::of(&headers, Some("")), None);
        assert_eq!(Session::of(&headers, Some("body")), Some(Session::new("body")));
        headers.insert("session-id", http::HeaderValue::from_static("dash"));
        assert_eq!(Session::of(&headers, Some("body")), Some(Session::new("dash")));
        headers.insert("session_id", http::HeaderValue::from_static("codex"));
        assert_eq!(Session::of(&headers, Some("body")), Some(Session::new("codex")));
        headers.insert("x-claude-code-session-id", http::HeaderValue::from_static("claude"));
        assert_eq!(Session::of(&headers, None), Some(Session::new("claude")));
    }
}
