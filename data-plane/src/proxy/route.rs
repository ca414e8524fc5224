//! Channel choice: highest priority first, weighted random within a priority, channels in
//! cool-down after failures skipped (unless nothing else is left).
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use rand::Rng;

use crate::policy::ChannelInfo;

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

/// The order to try `channels` in (they arrive sorted by priority, highest first).
pub fn plan(channels: &[Arc<ChannelInfo>], cool_downs: &CoolDowns) -> Vec<Arc<ChannelInfo>> {
    let cooling = cool_downs.cooling(Instant::now());
    let (mut ready, resting): (Vec<_>, Vec<_>) =
        channels.iter().cloned().partition(|c| !cooling.contains(&c.id));
    let mut rng = rand::rng();
    let mut order = Vec::with_capacity(channels.len());
    for list in [&mut ready, &mut resting.clone()] {
        let mut start = 0;
        while start < list.len() {
            let priority = list[start].priority;
            let end =
                list[start..].iter().position(|c| c.priority != priority).map_or(list.len(), |n| start + n);
            let mut tier: Vec<_> = list[start..end].to_vec();
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
            start = end;
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::catalog::ChannelKind;

    fn channel(id: i64, priority: i32, weight: u32) -> Arc<ChannelInfo> {
        Arc::new(ChannelInfo {
            id,
            name: Arc::from(format!("c{id}")),
            kind: ChannelKind::OpenAi,
            base_url: String::new(),
            api_key: String::new(),
            credential: None,
            priority,
            weight,
            model_map: HashMap::new(),
            api_version: None,
        })
    }

    #[test]
    fn higher_priority_first_and_cooling_channels_last() {
        let channels = [channel(1, 9, 1), channel(2, 5, 1), channel(3, 5, 1)];
        let cool_downs = CoolDowns::default();
        let ids: Vec<_> = plan(&channels, &cool_downs).iter().map(|c| c.id).collect();
        assert_eq!(ids[0], 1);
        assert_eq!(ids.len(), 3);
        cool_downs.failed(1);
        let ids: Vec<_> = plan(&channels, &cool_downs).iter().map(|c| c.id).collect();
        assert_eq!(ids[2], 1, "a failing channel is tried only when nothing else is left");
        cool_downs.succeeded(1);
        assert_eq!(plan(&channels, &cool_downs)[0].id, 1);
    }

    #[test]
    fn weights_share_traffic_within_a_priority() {
        let channels = [channel(1, 0, 9), channel(2, 0, 1)];
        let cool_downs = CoolDowns::default();
        let first_is_heavy = (0..2000).filter(|_| plan(&channels, &cool_downs)[0].id == 1).count();
        // Expected 1800 of 2000; the bounds are many standard deviations wide.
        assert!((1650..1950).contains(&first_is_heavy), "{first_is_heavy}");
    }
}
