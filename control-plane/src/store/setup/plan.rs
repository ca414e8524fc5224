//! Applying a setup inside a transaction: each declared item compared with its stored row and
//! written when it differs, then (with `prune`) what the setup no longer names deleted.
//!
//! Order matters only where rows refer to each other: token groups come before the accounts
//! that use them, and deletions come last, after accounts have moved off a group being deleted.
use std::collections::{BTreeMap, HashMap, HashSet};

use router_proto::Multiplier;

use super::{
    Action, Applied, Change, DeclaredAccount, DeclaredAlias, DeclaredChannel, DeclaredGroup, DeclaredModel,
    DeclaredModelGroup, Kind, Setup, SetupTx, State, StoredAccount,
};
use crate::{
    error::{StoreError, StoreResult},
    store::{
        aliases::{self, Alias},
        channels::{self, ChannelSpec},
        check_name, check_non_negative,
        groups::{DEFAULT_GROUP, Group, Reach, reach_columns},
        json_list,
        limits::{PeriodLimits, RateLimits},
        models::{Model, ModelGroup, PriceColumns, check_model, check_model_group},
        now_micros,
    },
};

/// Applies `setup` on `conn`, inside the transaction the caller holds.
pub async fn run<C: SetupTx>(conn: &mut C, setup: &Setup, prune: bool) -> StoreResult<Applied> {
    check_unique(setup)?;
    let state = conn.load_state().await?;
    let mut run = Run { conn, version: None, changes: Vec::new(), now: now_micros() };
    for group in &setup.groups {
        run.group(group, &state).await.map_err(about(Kind::Group, &group.name))?;
    }
    for account in &setup.accounts {
        run.account(account, &state).await.map_err(about(Kind::Account, &account.name))?;
    }
    check_models(setup, &state, prune)?;
    for group in &setup.model_groups {
        run.model_group(group, &state).await.map_err(about(Kind::ModelGroup, &group.name))?;
    }
    for model in &setup.models {
        run.model(model, &state).await.map_err(about(Kind::Model, &model.name))?;
    }
    for channel in &setup.channels {
        run.channel(channel, &state).await.map_err(about(Kind::Channel, &channel.spec.name))?;
    }
    check_aliases(setup, &state, prune)?;
    for alias in &setup.aliases {
        // Its errors name the alias already.
        run.alias(alias, &state).await?;
    }
    if prune {
        run.prune(setup, &state).await?;
    }
    Ok(Applied { changes: run.changes, version: run.version })
}

/// One apply in progress.
struct Run<'a, C> {
    conn: &'a mut C,
    /// The policy version of this apply's changes, taken at the first change.
    version: Option<i64>,
    changes: Vec<Change>,
    now: i64,
}

/// What to do with an item given its stored and its declared row.
fn action<T: PartialEq>(current: Option<&T>, desired: &T) -> Action {
    match current {
        None => Action::Create,
        Some(current) if current == desired => Action::Unchanged,
        Some(_) => Action::Update,
    }
}

/// Puts the item's kind and name in front of an error about it.
fn about(kind: Kind, name: &str) -> impl FnOnce(StoreError) -> StoreError + '_ {
    move |error| {
        let context = |message: String| format!("{} {name:?}: {message}", kind.as_str());
        match error {
            StoreError::Invalid(m) => StoreError::Invalid(context(m)),
            StoreError::Conflict(m) => StoreError::Conflict(context(m)),
            StoreError::NotFound(m) => StoreError::NotFound(context(m)),
            StoreError::AlreadyExists(m) => StoreError::AlreadyExists(context(m)),
            other => other,
        }
    }
}

fn check_unique(setup: &Setup) -> StoreResult<()> {
    let lists: [(Kind, Vec<&str>); 6] = [
        (Kind::Channel, setup.channels.iter().map(|c| c.spec.name.as_str()).collect()),
        (Kind::Model, setup.models.iter().map(|m| m.name.as_str()).collect()),
        (Kind::ModelGroup, setup.model_groups.iter().map(|g| g.name.as_str()).collect()),
        (Kind::Alias, setup.aliases.iter().map(|a| a.name.as_str()).collect()),
        (Kind::Group, setup.groups.iter().map(|g| g.name.as_str()).collect()),
        (Kind::Account, setup.accounts.iter().map(|a| a.name.as_str()).collect()),
    ];
    for (kind, names) in lists {
        let mut seen = HashSet::new();
        if let Some(name) = names.into_iter().find(|name| !seen.insert(*name)) {
            return Err(StoreError::invalid(format!(
                "{} {name:?} is declared more than once",
                kind.as_str()
            )));
        }
    }
    Ok(())
}

/// Checks the models and model groups the deployment will have: no name is both, and no model
/// belongs to two model groups.
fn check_models(setup: &Setup, state: &State, prune: bool) -> StoreResult<()> {
    let declared_groups: HashSet<&str> = setup.model_groups.iter().map(|g| g.name.as_str()).collect();
    let declared_models: HashSet<&str> = setup.models.iter().map(|m| m.name.as_str()).collect();
    let mut groups: Vec<(&str, Vec<String>)> =
        setup.model_groups.iter().map(|g| (g.name.as_str(), g.members.clone())).collect();
    let mut models: HashSet<&str> = declared_models.clone();
    if !prune {
        groups.extend(
            state
                .model_groups
                .iter()
                .filter(|g| !declared_groups.contains(g.name.as_str()))
                .map(|g| (g.name.as_str(), g.members())),
        );
        models.extend(state.models.iter().map(|m| m.name.as_str()));
    }
    let mut owner: HashMap<String, &str> = HashMap::new();
    for (group, members) in &groups {
        if models.contains(group) {
            return Err(StoreError::Conflict(format!(
                "model group {group:?}: {group:?} is the name of a model"
            )));
        }
        for member in members {
            if let Some(other) = owner.insert(member.trim().to_owned(), group) {
                return Err(StoreError::Conflict(format!(
                    "model group {group:?}: model {member:?} already belongs to model group {other:?}"
                )));
            }
        }
    }
    Ok(())
}

/// Checks the aliases the deployment will have: each points at a model that will be priced,
/// and no exact alias is also the name of a model or model group.
fn check_aliases(setup: &Setup, state: &State, prune: bool) -> StoreResult<()> {
    let declared_groups: HashSet<&str> = setup.model_groups.iter().map(|g| g.name.as_str()).collect();
    let mut models: HashSet<&str> = setup.models.iter().map(|m| m.name.as_str()).collect();
    // (name, members, priced) of every model group there will be.
    let mut groups: Vec<(&str, Vec<String>, bool)> = setup
        .model_groups
        .iter()
        .map(|g| {
            (g.name.as_str(), g.members.iter().map(|m| m.trim().to_owned()).collect(), g.tariff.is_some())
        })
        .collect();
    if !prune {
        models.extend(state.models.iter().map(|m| m.name.as_str()));
        groups.extend(
            state
                .model_groups
                .iter()
                .filter(|g| !declared_groups.contains(g.name.as_str()))
                .map(|g| (g.name.as_str(), g.members(), g.tariff().is_some())),
        );
    }
    for alias in &setup.aliases {
        let (name, target) = (alias.name.as_str(), alias.target.as_str());
        let priced = models.contains(target)
            || groups.iter().any(|(_, members, priced)| *priced && members.iter().any(|m| m == target));
        if !priced {
            return Err(aliases::unpriced(name, target));
        }
        if !aliases::is_pattern(name) && (models.contains(name) || groups.iter().any(|(g, ..)| *g == name)) {
            return Err(StoreError::Conflict(format!(
                "alias {name:?}: {name:?} is the name of a model or model group"
            )));
        }
    }
    Ok(())
}

impl<C: SetupTx> Run<'_, C> {
    /// The version this apply publishes at, taken (and the policy version bumped) once.
    async fn version(&mut self) -> StoreResult<i64> {
        if let Some(version) = self.version {
            return Ok(version);
        }
        let version = self.conn.bump_policy_version().await?;
        self.version = Some(version);
        Ok(version)
    }

    fn note(&mut self, kind: Kind, name: &str, action: Action) {
        self.changes.push(Change { kind, name: name.to_owned(), action });
    }

    async fn group(&mut self, declared: &DeclaredGroup, state: &State) -> StoreResult<()> {
        check_name("group", &declared.name)?;
        let (all_models, models) = reach_columns(declared.reach.clone())?;
        let current = state.groups.iter().find(|g| g.name == declared.name);
        let mut row = Group {
            id: current.map_or(0, |g| g.id),
            name: declared.name.clone(),
            multiplier_micros: declared.multiplier.unwrap_or(Multiplier::ONE).micros(),
            all_models,
            models,
            version: current.map_or(0, |g| g.version),
            created_at: current.map_or(self.now, |g| g.created_at),
            rpm: declared.rates.rpm,
            tpm: declared.rates.tpm,
            max_concurrent: declared.rates.max_concurrent,
        };
        let action = action(current, &row);
        if action != Action::Unchanged {
            row.version = self.version().await?;
            self.conn.put_group(&row).await?;
        }
        self.note(Kind::Group, &declared.name, action);
        Ok(())
    }

    async fn account(&mut self, declared: &DeclaredAccount, state: &State) -> StoreResult<()> {
        check_name("account", &declared.name)?;
        if let Some(limit) = declared.daily_limit {
            check_non_negative("daily limit", limit)?;
        }
        declared.rates.check()?;
        declared.periods.check()?;
        let group_id = self.conn.group_id(declared.group.as_deref().unwrap_or(DEFAULT_GROUP)).await?;
        let current = state.accounts.iter().find(|a| a.name == declared.name);
        let row = StoredAccount {
            id: current.map_or(0, |a| a.id),
            name: declared.name.clone(),
            group_id,
            daily_limit: declared.daily_limit,
            rpm: declared.rates.rpm,
            tpm: declared.rates.tpm,
            max_concurrent: declared.rates.max_concurrent,
            weekly_limit: declared.periods.weekly,
            monthly_limit: declared.periods.monthly,
        };
        let action = action(current, &row);
        if action != Action::Unchanged {
            let version = self.version().await?;
            self.conn.put_account(&row, version, self.now).await?;
        }
        self.note(Kind::Account, &declared.name, action);
        Ok(())
    }

    async fn model_group(&mut self, declared: &DeclaredModelGroup, state: &State) -> StoreResult<()> {
        let members = check_model_group(&declared.name, &declared.members)?;
        let price = PriceColumns::from_tariff(declared.tariff.as_ref())?;
        let current = state.model_groups.iter().find(|g| g.name == declared.name);
        let mut row = ModelGroup {
            id: current.map_or(0, |g| g.id),
            name: declared.name.clone(),
            models: json_list(&members),
            billing: price.billing.map(str::to_owned),
            input_price: price.input,
            output_price: price.output,
            cached_input_price: price.cached_input,
            cache_write_price: price.cache_write,
            per_call_price: price.per_call,
            version: current.map_or(0, |g| g.version),
            created_at: current.map_or(self.now, |g| g.created_at),
        };
        let action = action(current, &row);
        if action != Action::Unchanged {
            row.version = self.version().await?;
            self.conn.put_model_group(&row).await?;
        }
        self.note(Kind::ModelGroup, &declared.name, action);
        Ok(())
    }

    async fn model(&mut self, declared: &DeclaredModel, state: &State) -> StoreResult<()> {
        let price = check_model(&declared.name, &declared.tariff, declared.max_output_tokens)?;
        let current = state.models.iter().find(|m| m.name == declared.name);
        let mut row = Model {
            id: current.map_or(0, |m| m.id),
            name: declared.name.clone(),
            billing: price.billing.unwrap_or("tokens").to_owned(),
            input_price: price.input,
            output_price: price.output,
            cached_input_price: price.cached_input,
            cache_write_price: price.cache_write,
            per_call_price: price.per_call,
            max_output_tokens: declared.max_output_tokens,
            version: current.map_or(0, |m| m.version),
            created_at: current.map_or(self.now, |m| m.created_at),
        };
        let action = action(current, &row);
        if action != Action::Unchanged {
            row.version = self.version().await?;
            self.conn.put_model(&row).await?;
        }
        self.note(Kind::Model, &declared.name, action);
        Ok(())
    }

    async fn alias(&mut self, declared: &DeclaredAlias, state: &State) -> StoreResult<()> {
        aliases::check_alias(&declared.name, &declared.target)?;
        let current = state.aliases.iter().find(|a| a.name == declared.name);
        let mut row = Alias {
            id: current.map_or(0, |a| a.id),
            name: declared.name.clone(),
            target: declared.target.clone(),
            version: current.map_or(0, |a| a.version),
            created_at: current.map_or(self.now, |a| a.created_at),
        };
        let action = action(current, &row);
        if action != Action::Unchanged {
            row.version = self.version().await?;
            self.conn.put_alias(&row).await?;
        }
        self.note(Kind::Alias, &declared.name, action);
        Ok(())
    }

    async fn channel(&mut self, declared: &DeclaredChannel, state: &State) -> StoreResult<()> {
        let mut row = channels::new_row(declared.spec.clone(), self.now)?;
        let current = state.channels.iter().find(|c| c.name == row.name);
        if let Some(current) = current {
            row.id = current.id;
            row.version = current.version;
            row.created_at = current.created_at;
        }
        row.enabled = declared.enabled.unwrap_or(current.is_none_or(|c| c.enabled));
        let action = action(current, &row);
        if action != Action::Unchanged {
            row.version = self.version().await?;
            self.conn.put_channel(&row).await?;
        }
        self.note(Kind::Channel, &row.name, action);
        Ok(())
    }

    /// Deletes what `setup` does not name, in an order that leaves nothing dangling.
    async fn prune(&mut self, setup: &Setup, state: &State) -> StoreResult<()> {
        let named = |names: Vec<&str>| names.into_iter().map(str::to_owned).collect::<HashSet<String>>();
        let channels = named(setup.channels.iter().map(|c| c.spec.name.as_str()).collect());
        let models = named(setup.models.iter().map(|m| m.name.as_str()).collect());
        let model_groups = named(setup.model_groups.iter().map(|g| g.name.as_str()).collect());
        let aliases = named(setup.aliases.iter().map(|a| a.name.as_str()).collect());
        let groups = named(setup.groups.iter().map(|g| g.name.as_str()).collect());
        let mut doomed: Vec<(Kind, i64, &str)> = Vec::new();
        doomed.extend(
            state
                .channels
                .iter()
                .filter(|c| !channels.contains(&c.name))
                .map(|c| (Kind::Channel, c.id, c.name.as_str())),
        );
        doomed.extend(
            state
                .aliases
                .iter()
                .filter(|a| !aliases.contains(&a.name))
                .map(|a| (Kind::Alias, a.id, a.name.as_str())),
        );
        doomed.extend(
            state
                .models
                .iter()
                .filter(|m| !models.contains(&m.name))
                .map(|m| (Kind::Model, m.id, m.name.as_str())),
        );
        doomed.extend(
            state
                .model_groups
                .iter()
                .filter(|g| !model_groups.contains(&g.name))
                .map(|g| (Kind::ModelGroup, g.id, g.name.as_str())),
        );
        doomed.extend(
            state
                .groups
                .iter()
                .filter(|g| g.name != DEFAULT_GROUP && !groups.contains(&g.name))
                .map(|g| (Kind::Group, g.id, g.name.as_str())),
        );
        for (kind, id, name) in doomed {
            if kind == Kind::Group {
                let (accounts, keys) = self.conn.group_users(id).await?;
                if accounts + keys > 0 {
                    return Err(StoreError::Conflict(format!(
                        "group {name:?}: cannot prune it, it is in use by {accounts} account(s) and {keys} key(s)"
                    )));
                }
            }
            let version = self.version().await?;
            self.conn.remove(kind, id, version).await?;
            self.note(kind, name, Action::Delete);
        }
        Ok(())
    }
}

/// The stored setup as a declaration.
pub fn declared(state: State) -> Setup {
    let group_names: HashMap<i64, String> = state.groups.iter().map(|g| (g.id, g.name.clone())).collect();
    Setup {
        channels: state
            .channels
            .into_iter()
            .map(|c| DeclaredChannel {
                spec: ChannelSpec {
                    models: c.model_list(),
                    protocols: c.declared_protocols(),
                    messages_base_url: c.messages_base_url.clone(),
                    model_map: c.model_map().into_iter().collect::<BTreeMap<_, _>>(),
                    name: c.name,
                    channel_type: c.channel_type,
                    base_url: c.base_url,
                    api_key: c.api_key.0,
                    priority: Some(c.priority),
                    weight: Some(c.weight),
                    api_version: c.api_version,
                },
                enabled: Some(c.enabled),
            })
            .collect(),
        models: state
            .models
            .into_iter()
            .filter_map(|m| {
                Some(DeclaredModel {
                    tariff: m.tariff()?,
                    max_output_tokens: m.max_output_tokens,
                    name: m.name,
                })
            })
            .collect(),
        model_groups: state
            .model_groups
            .into_iter()
            .map(|g| DeclaredModelGroup { members: g.members(), tariff: g.tariff(), name: g.name })
            .collect(),
        aliases: state
            .aliases
            .into_iter()
            .map(|a| DeclaredAlias { name: a.name, target: a.target })
            .collect(),
        groups: state
            .groups
            .into_iter()
            .map(|g| DeclaredGroup {
                reach: if g.all_models { Reach::All } else { Reach::Only(g.model_list()) },
                multiplier: Multiplier::from_micros(g.multiplier_micros),
                rates: RateLimits { rpm: g.rpm, tpm: g.tpm, max_concurrent: g.max_concurrent },
                name: g.name,
            })
            .collect(),
        accounts: state
            .accounts
            .into_iter()
            .map(|a| DeclaredAccount {
                group: group_names.get(&a.group_id).cloned(),
                name: a.name,
                daily_limit: a.daily_limit,
                rates: RateLimits { rpm: a.rpm, tpm: a.tpm, max_concurrent: a.max_concurrent },
                periods: PeriodLimits { weekly: a.weekly_limit, monthly: a.monthly_limit },
            })
            .collect(),
    }
}
