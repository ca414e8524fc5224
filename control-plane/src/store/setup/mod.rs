//! Config as code: a whole declared setup (channels, models, model groups, token groups,
//! accounts) applied in one write transaction, all or nothing, and the current setup read back
//! in the same form.
//!
//! Applying compares every declared item with what is stored and writes only what differs, so
//! applying the same setup twice changes nothing the second time (not even the policy
//! version). A dry run does every write and check of a real one, then rolls back: it reports
//! exactly what the real run would do, failures included.
mod import;
mod plan;
mod tx;

use router_proto::{Multiplier, Tariff};

pub use import::{ImportedBalance, ImportedCode, ImportedKey, Imports, import};
pub use tx::{NewKey, SetupTx, State, StoredAccount};

use super::{
    channels::ChannelSpec,
    groups::Reach,
    limits::{PeriodLimits, RateLimits},
};
use crate::{
    db::Db,
    error::{StoreError, StoreResult},
    read_tx, write_tx,
};

/// A channel as declared.
#[derive(Debug, Clone, Default)]
pub struct DeclaredChannel {
    /// Everything `channel add` takes.
    pub spec: ChannelSpec,
    /// `None`: a new channel is enabled, an existing one keeps its state.
    pub enabled: Option<bool>,
}

/// A model with its own price, as declared.
#[derive(Debug, Clone)]
pub struct DeclaredModel {
    /// The name clients send.
    pub name: String,
    /// Its price.
    pub tariff: Tariff,
    /// Its output cap.
    pub max_output_tokens: Option<i64>,
}

/// A model group as declared.
#[derive(Debug, Clone)]
pub struct DeclaredModelGroup {
    /// Unique name.
    pub name: String,
    /// Member model names.
    pub members: Vec<String>,
    /// The members' shared price, if any.
    pub tariff: Option<Tariff>,
}

/// A model alias as declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredAlias {
    /// The name clients send, or a prefix pattern ending in `*`.
    pub name: String,
    /// The priced model it is served as.
    pub target: String,
}

/// A token group as declared.
#[derive(Debug, Clone)]
pub struct DeclaredGroup {
    /// Unique name.
    pub name: String,
    /// `None`: 1.
    pub multiplier: Option<Multiplier>,
    /// The models its keys reach.
    pub reach: Reach,
    /// Rate limits for each of its keys that sets none of its own.
    pub rates: RateLimits,
}

/// An account as declared (never its balance).
#[derive(Debug, Clone, Default)]
pub struct DeclaredAccount {
    /// Unique name.
    pub name: String,
    /// `None`: the `default` group.
    pub group: Option<String>,
    /// Daily spend cap; `None`: none.
    pub daily_limit: Option<i64>,
    /// Rate limits shared by its keys.
    pub rates: RateLimits,
    /// Weekly and monthly spend caps.
    pub periods: PeriodLimits,
}

/// A whole declared setup.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    /// Channels.
    pub channels: Vec<DeclaredChannel>,
    /// Models with their own price.
    pub models: Vec<DeclaredModel>,
    /// Model groups.
    pub model_groups: Vec<DeclaredModelGroup>,
    /// Model aliases.
    pub aliases: Vec<DeclaredAlias>,
    /// Token groups.
    pub groups: Vec<DeclaredGroup>,
    /// Accounts.
    pub accounts: Vec<DeclaredAccount>,
}

/// The kinds of item a setup declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A channel.
    Channel,
    /// A model.
    Model,
    /// A model group.
    ModelGroup,
    /// A model alias.
    Alias,
    /// A token group.
    Group,
    /// An account.
    Account,
    /// An imported key (named by its prefix).
    Key,
    /// An imported opening balance (named by its account).
    Balance,
    /// An imported redemption code.
    Code,
}

impl Kind {
    /// The name in reports, in files and in `policy_removals`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Channel => "channel",
            Kind::Model => "model",
            Kind::ModelGroup => "model_group",
            Kind::Alias => "alias",
            Kind::Group => "group",
            Kind::Account => "account",
            Kind::Key => "key",
            Kind::Balance => "balance",
            Kind::Code => "code",
        }
    }
}

/// What applying did to one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// It did not exist and was created.
    Create,
    /// It existed and differed.
    Update,
    /// It existed, was not declared, and `prune` was asked for.
    Delete,
    /// It existed as declared.
    Unchanged,
}

impl Action {
    /// The name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Unchanged => "unchanged",
        }
    }
}

/// One line of an apply report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The item's kind.
    pub kind: Kind,
    /// The item's name.
    pub name: String,
    /// What was done.
    pub action: Action,
}

/// What an apply did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Every declared item, then every deletion, in the order applied.
    pub changes: Vec<Change>,
    /// The policy version the changes were published at; `None`: nothing was written.
    pub version: Option<i64>,
}

/// How to apply.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Report, then roll back.
    pub dry_run: bool,
    /// Delete what the setup does not name (never accounts, never the default group).
    pub prune: bool,
}

/// Makes the stored setup what `setup` declares, in one transaction.
pub async fn apply(db: &Db, setup: &Setup, options: Options) -> StoreResult<Applied> {
    let mut rehearsed = None;
    let outcome = write_tx!(db, |conn| {
        let applied = plan::run(conn, setup, options.prune).await?;
        if options.dry_run {
            rehearsed = Some(applied);
            return Err(StoreError::RolledBack);
        }
        Ok(applied)
    });
    match (outcome, rehearsed) {
        (Err(StoreError::RolledBack), Some(mut applied)) => {
            applied.version = None;
            Ok(applied)
        }
        (outcome, _) => {
            // A channel's key may have been replaced, or the channel deleted: leave no old key
            // behind in the database files.
            if outcome.as_ref().is_ok_and(|applied| applied.version.is_some()) {
                db.scrub("channels").await;
            }
            outcome
        }
    }
}

/// The stored setup as a declaration, every list by name.
pub async fn export(db: &Db) -> StoreResult<Setup> {
    let state = read_tx!(db, |conn| Ok(conn.load_state().await?))?;
    Ok(plan::declared(state))
}
