//! Token groups: a price multiplier and the models a key in the group can reach.
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use router_proto::Multiplier;

use super::{
    check_name, clean_names, json_list,
    limits::{RateChange, RateLimits},
    now_micros, parse_json_list,
};
use crate::{
    db::{
        Db, TxConn,
        schema::{accounts, api_keys, token_groups},
    },
    error::{StoreError, StoreResult, exists_as},
    with_conn, write_tx,
};

/// The group every deployment starts with (multiplier 1, all models); it cannot be deleted.
pub const DEFAULT_GROUP: &str = "default";

/// A token group as stored.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = token_groups, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct Group {
    /// Row id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// Price multiplier in micro-units.
    pub multiplier_micros: i64,
    /// Whether every model is reachable.
    pub all_models: bool,
    /// JSON list of reachable model or model-group names (when not `all_models`).
    pub models: String,
    /// Policy version of the last change.
    pub version: i64,
    /// Unix micros.
    pub created_at: i64,
    /// Requests per rate window, for each key without its own.
    pub rpm: Option<i64>,
    /// Tokens per rate window, for each key without its own.
    pub tpm: Option<i64>,
    /// Requests in flight, for each key without its own.
    pub max_concurrent: Option<i64>,
}

impl Group {
    /// The rate limits of its keys that set none of their own.
    pub fn rates(&self) -> RateLimits {
        RateLimits { rpm: self.rpm, tpm: self.tpm, max_concurrent: self.max_concurrent }
    }

    /// Reachable model or model-group names.
    pub fn model_list(&self) -> Vec<String> {
        parse_json_list(&self.models)
    }

    /// Whether a key in this group may call `model` (a member of `model_group`, if any).
    pub fn reaches(&self, model: &str, model_group: Option<&str>) -> bool {
        self.all_models || self.model_list().iter().any(|m| m == model || Some(m.as_str()) == model_group)
    }
}

/// Which models a group reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// Every model.
    All,
    /// Only these models or model groups.
    Only(Vec<String>),
}

/// Adds a group; without a model list it reaches all models.
pub async fn add(
    db: &Db,
    name: &str,
    multiplier: Option<Multiplier>,
    reach: Reach,
    rates: RateLimits,
) -> StoreResult<Group> {
    check_name("group", name)?;
    rates.check()?;
    let (all_models, models) = reach_columns(reach)?;
    let multiplier = multiplier.unwrap_or(Multiplier::ONE).micros();
    write_tx!(db, |conn| {
        let version = conn.bump_policy_version().await?;
        diesel::insert_into(token_groups::table)
            .values((
                token_groups::name.eq(name),
                token_groups::multiplier_micros.eq(multiplier),
                token_groups::all_models.eq(all_models),
                token_groups::models.eq(&models),
                token_groups::version.eq(version),
                token_groups::created_at.eq(now_micros()),
                token_groups::rpm.eq(rates.rpm),
                token_groups::tpm.eq(rates.tpm),
                token_groups::max_concurrent.eq(rates.max_concurrent),
            ))
            .returning(Group::as_returning())
            .get_result(conn)
            .await
            .map_err(exists_as(|| format!("group {name:?}")))
    })
}

/// The `all_models` and `models` columns for a reach, checked.
pub fn reach_columns(reach: Reach) -> StoreResult<(bool, String)> {
    Ok(match reach {
        Reach::All => (true, json_list(&[])),
        Reach::Only(models) => {
            let models = clean_names("model", &models)?;
            if models.is_empty() {
                return Err(StoreError::invalid("give at least one model, or all models"));
            }
            (false, json_list(&models))
        }
    })
}

/// Changes a group's multiplier and/or reach.
pub async fn update(
    db: &Db,
    name: &str,
    multiplier: Option<Multiplier>,
    reach: Option<Reach>,
    rates: RateChange,
) -> StoreResult<Group> {
    let reach = reach.map(reach_columns).transpose()?;
    write_tx!(db, |conn| {
        let id = conn.group_id(name).await?;
        let version = conn.bump_policy_version().await?;
        let target = token_groups::table.find(id);
        if let Some(multiplier) = multiplier {
            diesel::update(target)
                .set(token_groups::multiplier_micros.eq(multiplier.micros()))
                .execute(conn)
                .await?;
        }
        if let Some((all_models, models)) = &reach {
            diesel::update(target)
                .set((token_groups::all_models.eq(*all_models), token_groups::models.eq(models)))
                .execute(conn)
                .await?;
        }
        if !rates.is_empty() {
            let now: Group = target.select(Group::as_select()).first(conn).await?;
            let rates = rates.apply(now.rates())?;
            diesel::update(target)
                .set((
                    token_groups::rpm.eq(rates.rpm),
                    token_groups::tpm.eq(rates.tpm),
                    token_groups::max_concurrent.eq(rates.max_concurrent),
                ))
                .execute(conn)
                .await?;
        }
        Ok(diesel::update(target)
            .set(token_groups::version.eq(version))
            .returning(Group::as_returning())
            .get_result(conn)
            .await?)
    })
}

/// All groups, by name.
pub async fn list(db: &Db) -> StoreResult<Vec<Group>> {
    with_conn!(db, |conn| Ok(token_groups::table
        .order(token_groups::name)
        .select(Group::as_select())
        .load(conn)
        .await?))
}

/// Deletes a group no account or key uses.
pub async fn delete(db: &Db, name: &str) -> StoreResult<()> {
    if name == DEFAULT_GROUP {
        return Err(StoreError::Conflict("the default group cannot be deleted".into()));
    }
    write_tx!(db, |conn| {
        let id = conn.group_id(name).await?;
        let accounts_using: i64 =
            accounts::table.filter(accounts::group_id.eq(id)).count().get_result(conn).await?;
        let keys_using: i64 =
            api_keys::table.filter(api_keys::group_id.eq(id)).count().get_result(conn).await?;
        if accounts_using + keys_using > 0 {
            return Err(StoreError::Conflict(format!(
                "group {name:?} is in use by {accounts_using} account(s) and {keys_using} key(s)"
            )));
        }
        let version = conn.bump_policy_version().await?;
        diesel::delete(token_groups::table.find(id)).execute(conn).await?;
        conn.record_removal(version, "group", id).await?;
        Ok(())
    })
}
