//! The cached policy: everything the request path needs, indexed for it, replaced atomically.
//!
//! Readers take one `Arc<Policy>` per request and never see half an update. Keys live in
//! 256 shards (by the first byte of their hash) so that a delta touching a few keys copies only
//! those shards, not a million-entry map; the small catalog (channels, models, groups) is
//! rebuilt whole on every change.
pub mod catalog;
pub mod watch;

use std::{collections::HashMap, sync::Arc};

use router_proto::pb;

pub use catalog::{Catalog, ChannelInfo, GroupInfo, ModelInfo, Protocol};

/// Number of key shards.
const SHARDS: usize = 256;

/// What a data plane knows of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// Public id.
    pub id: i64,
    /// Owning account.
    pub account_id: i64,
    /// Own group; `None`: the account's.
    pub group_id: Option<i64>,
    /// Allow-list (empty: every model its group reaches).
    pub models: Vec<String>,
    /// Unix micros.
    pub expires_at: Option<i64>,
    /// Its own rate limits (its group's apply where it has none).
    pub rates: RateLimits,
}

/// Requests per window, tokens per window and requests in flight; `None`: no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimits {
    /// Requests per rate window.
    pub rpm: Option<i64>,
    /// Tokens per rate window.
    pub tpm: Option<i64>,
    /// Requests in flight.
    pub max_concurrent: Option<i64>,
}

impl RateLimits {
    /// From the wire: absent or not positive is no limit.
    pub fn from_wire(rpm: Option<i64>, tpm: Option<i64>, max_concurrent: Option<i64>) -> RateLimits {
        let set = |v: Option<i64>| v.filter(|v| *v > 0);
        RateLimits { rpm: set(rpm), tpm: set(tpm), max_concurrent: set(max_concurrent) }
    }

    /// Each of `self`'s limits, else `fallback`'s (a key's own over its group's).
    pub fn or(self, fallback: RateLimits) -> RateLimits {
        RateLimits {
            rpm: self.rpm.or(fallback.rpm),
            tpm: self.tpm.or(fallback.tpm),
            max_concurrent: self.max_concurrent.or(fallback.max_concurrent),
        }
    }

    /// Whether no limit is set.
    pub fn is_none(&self) -> bool {
        self.rpm.is_none() && self.tpm.is_none() && self.max_concurrent.is_none()
    }
}

/// What a data plane knows of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountInfo {
    /// Name.
    pub name: String,
    /// Token group.
    pub group_id: i64,
    /// Rate limits shared by its keys.
    pub rates: RateLimits,
}

type Shard = Arc<HashMap<[u8; 32], Arc<KeyInfo>>>;

/// One version of the whole policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The policy version (0: nothing loaded yet).
    pub version: u64,
    /// Channels, models, groups and the indexes over them.
    pub catalog: Arc<Catalog>,
    accounts: Arc<HashMap<i64, AccountInfo>>,
    shards: Vec<Shard>,
    key_hashes: Arc<HashMap<i64, [u8; 32]>>,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            version: 0,
            catalog: Arc::new(Catalog::default()),
            accounts: Arc::default(),
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            key_hashes: Arc::default(),
        }
    }
}

fn key_info(key: pb::PolicyKey) -> Option<([u8; 32], KeyInfo)> {
    let hash: [u8; 32] = key.hash.as_slice().try_into().ok()?;
    let info = KeyInfo {
        id: key.id,
        account_id: key.account_id,
        group_id: key.group_id,
        models: key.models,
        expires_at: key.expires_at_unix_micros,
        rates: RateLimits::from_wire(key.rpm, key.tpm, key.max_concurrent),
    };
    Some((hash, info))
}

/// A policy being built from snapshot pages as they arrive: each page is folded in and
/// dropped, so a snapshot of a million keys is never held twice.
#[derive(Debug)]
pub struct SnapshotBuilder {
    raw: catalog::RawCatalog,
    shards: Vec<HashMap<[u8; 32], Arc<KeyInfo>>>,
    accounts: HashMap<i64, AccountInfo>,
    key_hashes: HashMap<i64, [u8; 32]>,
    version: u64,
}

impl Default for SnapshotBuilder {
    fn default() -> SnapshotBuilder {
        SnapshotBuilder {
            raw: catalog::RawCatalog::default(),
            shards: (0..SHARDS).map(|_| HashMap::new()).collect(),
            accounts: HashMap::new(),
            key_hashes: HashMap::new(),
            version: 0,
        }
    }
}

impl SnapshotBuilder {
    /// Folds one page in.
    pub fn add(&mut self, page: pb::SnapshotPage) {
        self.version = page.version;
        if let Some(settings) = &page.settings {
            self.raw.currency.clone_from(&settings.currency);
        }
        self.raw.upsert(&page.channels, &page.models, &page.model_groups, &page.groups);
        self.raw.upsert_aliases(&page.model_aliases);
        for account in page.accounts {
            let rates = RateLimits::from_wire(account.rpm, account.tpm, account.max_concurrent);
            self.accounts
                .insert(account.id, AccountInfo { name: account.name, group_id: account.group_id, rates });
        }
        self.key_hashes.reserve(page.keys.len());
        for (hash, info) in page.keys.into_iter().filter_map(key_info) {
            self.key_hashes.insert(info.id, hash);
            self.shards[usize::from(hash[0])].insert(hash, Arc::new(info));
        }
    }

    /// The policy of every page added.
    pub fn finish(self) -> Policy {
        Policy {
            version: self.version,
            catalog: Arc::new(Catalog::build(self.raw)),
            accounts: Arc::new(self.accounts),
            shards: self.shards.into_iter().map(Arc::new).collect(),
            key_hashes: Arc::new(self.key_hashes),
        }
    }
}

impl Policy {
    /// The key whose secret hashes to `hash`.
    pub fn key(&self, hash: &[u8; 32]) -> Option<&Arc<KeyInfo>> {
        self.shards[usize::from(hash[0])].get(hash)
    }

    /// An account by id.
    pub fn account(&self, id: i64) -> Option<&AccountInfo> {
        self.accounts.get(&id)
    }

    /// Number of keys.
    pub fn key_count(&self) -> usize {
        self.key_hashes.len()
    }

    /// Builds a policy from a whole snapshot (all its pages).
    pub fn from_snapshot(pages: impl IntoIterator<Item = pb::SnapshotPage>) -> Policy {
        let mut builder = SnapshotBuilder::default();
        for page in pages {
            builder.add(page);
        }
        builder.finish()
    }

    /// The policy with `delta` applied; untouched parts are shared, not copied.
    pub fn apply(&self, delta: &pb::PolicyDelta) -> Policy {
        let mut next = self.clone();
        next.version = delta.version;
        let kinds =
            |kind: pb::EntityKind| delta.removed.iter().filter(move |r| r.kind == kind as i32).map(|r| r.id);

        let catalog_changed = !(delta.channels.is_empty()
            && delta.models.is_empty()
            && delta.model_groups.is_empty()
            && delta.groups.is_empty()
            && delta.model_aliases.is_empty())
            || delta
                .removed
                .iter()
                .any(|r| r.kind != pb::EntityKind::Key as i32 && r.kind != pb::EntityKind::Account as i32)
            || delta.settings.as_ref().is_some_and(|s| s.currency != self.catalog.currency);
        if catalog_changed {
            let mut raw = self.catalog.raw().clone();
            if let Some(settings) = &delta.settings {
                raw.currency.clone_from(&settings.currency);
            }
            raw.remove(
                &kinds(pb::EntityKind::Channel).collect::<Vec<_>>(),
                &kinds(pb::EntityKind::Model).collect::<Vec<_>>(),
                &kinds(pb::EntityKind::ModelGroup).collect::<Vec<_>>(),
                &kinds(pb::EntityKind::Group).collect::<Vec<_>>(),
            );
            raw.upsert(&delta.channels, &delta.models, &delta.model_groups, &delta.groups);
            raw.remove_aliases(kinds(pb::EntityKind::ModelAlias));
            raw.upsert_aliases(&delta.model_aliases);
            next.catalog = Arc::new(Catalog::build(raw));
        }

        if !delta.accounts.is_empty() || kinds(pb::EntityKind::Account).next().is_some() {
            let accounts = Arc::make_mut(&mut next.accounts);
            for id in kinds(pb::EntityKind::Account) {
                accounts.remove(&id);
            }
            for account in &delta.accounts {
                accounts.insert(
                    account.id,
                    AccountInfo {
                        name: account.name.clone(),
                        group_id: account.group_id,
                        rates: RateLimits::from_wire(account.rpm, account.tpm, account.max_concurrent),
                    },
                );
            }
        }

        if !delta.keys.is_empty() || kinds(pb::EntityKind::Key).next().is_some() {
            let hashes = Arc::make_mut(&mut next.key_hashes);
            for id in kinds(pb::EntityKind::Key) {
                if let Some(hash) = hashes.remove(&id) {
                    Arc::make_mut(&mut next.shards[usize::from(hash[0])]).remove(&hash);
                }
            }
            for key in &delta.keys {
                let Some((hash, info)) = key_info(key.clone()) else { continue };
                if let Some(old) = hashes.insert(info.id, hash).filter(|old| *old != hash) {
                    Arc::make_mut(&mut next.shards[usize::from(old[0])]).remove(&old);
                }
                Arc::make_mut(&mut next.shards[usize::from(hash[0])]).insert(hash, Arc::new(info));
            }
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: i64, first_byte: u8) -> pb::PolicyKey {
        let mut hash = vec![id as u8; 32];
        hash[0] = first_byte;
        pb::PolicyKey { id, hash, account_id: 1, ..Default::default() }
    }

    fn hash_of(key: &pb::PolicyKey) -> [u8; 32] {
        key.hash.as_slice().try_into().expect("32 bytes")
    }

    #[test]
    fn deltas_add_change_and_remove_keys_without_touching_other_shards() {
        let (a, b) = (key(1, 7), key(2, 9));
        let snapshot = pb::SnapshotPage {
            version: 3,
            first: true,
            last: true,
            keys: vec![a.clone(), b.clone()],
            ..Default::default()
        };
        let policy = Policy::from_snapshot([snapshot]);
        assert_eq!((policy.version, policy.key_count()), (3, 2));
        assert_eq!(policy.key(&hash_of(&a)).map(|k| k.id), Some(1));

        let c = key(3, 7);
        let removal = pb::Removal { kind: pb::EntityKind::Key as i32, id: 2 };
        let delta = pb::PolicyDelta {
            version: 4,
            keys: vec![c.clone()],
            removed: vec![removal],
            ..Default::default()
        };
        let next = policy.apply(&delta);
        assert_eq!(next.version, 4);
        assert!(next.key(&hash_of(&b)).is_none());
        assert_eq!(next.key(&hash_of(&c)).map(|k| k.id), Some(3));
        assert_eq!(next.key(&hash_of(&a)).map(|k| k.id), Some(1));
        // The old version is untouched (readers holding it see a consistent policy).
        assert!(policy.key(&hash_of(&b)).is_some());
        assert!(policy.key(&hash_of(&c)).is_none());
        // Shards the delta did not touch are shared, not copied.
        assert!(Arc::ptr_eq(&policy.shards[100], &next.shards[100]));
        assert!(Arc::ptr_eq(&policy.catalog, &next.catalog));
    }
}
