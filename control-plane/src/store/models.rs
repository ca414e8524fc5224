//! Models and model groups: what can be called, and at what price.
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use router_proto::{Money, Tariff, TokenPrices};

use super::{check_name, check_non_negative, clean_names, json_list, now_micros, parse_json_list};
use crate::{
    db::{
        Db, TxConn,
        schema::{model_aliases, model_groups, models},
    },
    error::{StoreError, StoreResult, exists_as},
    with_conn, write_tx,
};

/// A price as stored: a billing kind and the columns it uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PriceColumns {
    /// `tokens` or `per_call`; `None`: no price.
    pub billing: Option<&'static str>,
    /// Per 1M input tokens.
    pub input: Option<i64>,
    /// Per 1M output tokens.
    pub output: Option<i64>,
    /// Per 1M cached input tokens.
    pub cached_input: Option<i64>,
    /// Per 1M cache-write tokens.
    pub cache_write: Option<i64>,
    /// Per request.
    pub per_call: Option<i64>,
}

impl PriceColumns {
    /// Columns for a tariff, refusing negative prices.
    pub fn from_tariff(tariff: Option<&Tariff>) -> StoreResult<PriceColumns> {
        let Some(tariff) = tariff else { return Ok(PriceColumns::default()) };
        let check = |what: &str, m: Money| check_non_negative(what, m.nanos()).map(|()| m.nanos());
        Ok(match tariff {
            Tariff::PerCall(price) => PriceColumns {
                billing: Some("per_call"),
                per_call: Some(check("per-call price", *price)?),
                ..PriceColumns::default()
            },
            Tariff::Tokens(p) => PriceColumns {
                billing: Some("tokens"),
                input: Some(check("input price", p.input)?),
                output: Some(check("output price", p.output)?),
                cached_input: p.cached_input.map(|m| check("cached input price", m)).transpose()?,
                cache_write: p.cache_write.map(|m| check("cache write price", m)).transpose()?,
                per_call: None,
            },
        })
    }
}

/// Reads a tariff back from its columns.
pub fn tariff_of(
    billing: Option<&str>,
    input: Option<i64>,
    output: Option<i64>,
    cached_input: Option<i64>,
    cache_write: Option<i64>,
    per_call: Option<i64>,
) -> Option<Tariff> {
    match billing? {
        "per_call" => per_call.map(|p| Tariff::PerCall(Money::from_nanos(p))),
        "tokens" => Some(Tariff::Tokens(TokenPrices {
            input: Money::from_nanos(input?),
            output: Money::from_nanos(output?),
            cached_input: cached_input.map(Money::from_nanos),
            cache_write: cache_write.map(Money::from_nanos),
        })),
        _ => None,
    }
}

/// A model with its own price.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = models, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct Model {
    /// Row id.
    pub id: i64,
    /// The name clients send as `model`.
    pub name: String,
    /// `tokens` or `per_call`.
    pub billing: String,
    /// Per 1M input tokens.
    pub input_price: Option<i64>,
    /// Per 1M output tokens.
    pub output_price: Option<i64>,
    /// Per 1M cached input tokens.
    pub cached_input_price: Option<i64>,
    /// Per 1M cache-write tokens.
    pub cache_write_price: Option<i64>,
    /// Per request.
    pub per_call_price: Option<i64>,
    /// Output cap for cost estimates.
    pub max_output_tokens: Option<i64>,
    /// Policy version of the last change.
    pub version: i64,
    /// Unix micros.
    pub created_at: i64,
}

impl Model {
    /// The model's price.
    pub fn tariff(&self) -> Option<Tariff> {
        tariff_of(
            Some(&self.billing),
            self.input_price,
            self.output_price,
            self.cached_input_price,
            self.cache_write_price,
            self.per_call_price,
        )
    }
}

/// A model group.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = model_groups, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct ModelGroup {
    /// Row id.
    pub id: i64,
    /// Unique name, usable in channel model lists.
    pub name: String,
    /// JSON list of member model names.
    pub models: String,
    /// `tokens`, `per_call`, or `None` (members priced individually).
    pub billing: Option<String>,
    /// Per 1M input tokens.
    pub input_price: Option<i64>,
    /// Per 1M output tokens.
    pub output_price: Option<i64>,
    /// Per 1M cached input tokens.
    pub cached_input_price: Option<i64>,
    /// Per 1M cache-write tokens.
    pub cache_write_price: Option<i64>,
    /// Per request.
    pub per_call_price: Option<i64>,
    /// Policy version of the last change.
    pub version: i64,
    /// Unix micros.
    pub created_at: i64,
}

impl ModelGroup {
    /// Member model names.
    pub fn members(&self) -> Vec<String> {
        parse_json_list(&self.models)
    }

    /// The group's price.
    pub fn tariff(&self) -> Option<Tariff> {
        tariff_of(
            self.billing.as_deref(),
            self.input_price,
            self.output_price,
            self.cached_input_price,
            self.cache_write_price,
            self.per_call_price,
        )
    }
}

/// Checks a model's name, price and output cap; returns the price's columns.
pub fn check_model(name: &str, tariff: &Tariff, max_output_tokens: Option<i64>) -> StoreResult<PriceColumns> {
    check_name("model", name)?;
    if max_output_tokens.is_some_and(|n| n <= 0) {
        return Err(StoreError::invalid("max output tokens must be positive"));
    }
    PriceColumns::from_tariff(Some(tariff))
}

/// Checks a model group's name and members; returns the members cleaned.
pub fn check_model_group(name: &str, members: &[String]) -> StoreResult<Vec<String>> {
    check_name("model group", name)?;
    let members = clean_names("model", members)?;
    if members.is_empty() {
        return Err(StoreError::invalid("a model group needs at least one model"));
    }
    if members.iter().any(|m| m == name) {
        return Err(StoreError::invalid("a model group cannot contain itself"));
    }
    Ok(members)
}

/// Sets a model's price (creating the model if needed).
pub async fn set(db: &Db, name: &str, tariff: &Tariff, max_output_tokens: Option<i64>) -> StoreResult<Model> {
    let price = check_model(name, tariff, max_output_tokens)?;
    let billing = price.billing.unwrap_or("tokens");
    write_tx!(db, |conn| {
        let clash: i64 =
            model_groups::table.filter(model_groups::name.eq(name)).count().get_result(conn).await?;
        if clash > 0 {
            return Err(StoreError::Conflict(format!("{name:?} is the name of a model group")));
        }
        let alias: i64 =
            model_aliases::table.filter(model_aliases::name.eq(name)).count().get_result(conn).await?;
        if alias > 0 {
            return Err(StoreError::Conflict(format!(
                "{name:?} is the name of an alias (delete it first: routerctl model alias delete {name})"
            )));
        }
        let version = conn.bump_policy_version().await?;
        let values = (
            models::billing.eq(billing),
            models::input_price.eq(price.input),
            models::output_price.eq(price.output),
            models::cached_input_price.eq(price.cached_input),
            models::cache_write_price.eq(price.cache_write),
            models::per_call_price.eq(price.per_call),
            models::max_output_tokens.eq(max_output_tokens),
            models::version.eq(version),
        );
        Ok(diesel::insert_into(models::table)
            .values((models::name.eq(name), models::created_at.eq(now_micros()), values))
            .on_conflict(models::name)
            .do_update()
            .set(values)
            .returning(Model::as_returning())
            .get_result(conn)
            .await?)
    })
}

/// All models with their own price, by name.
pub async fn list(db: &Db) -> StoreResult<Vec<Model>> {
    with_conn!(db, |conn| Ok(models::table.order(models::name).select(Model::as_select()).load(conn).await?))
}

/// Deletes a model's own price.
pub async fn delete(db: &Db, name: &str) -> StoreResult<()> {
    write_tx!(db, |conn| {
        let id: i64 = models::table
            .filter(models::name.eq(name))
            .select(models::id)
            .first(conn)
            .await
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("model {name:?}")))?;
        let version = conn.bump_policy_version().await?;
        diesel::delete(models::table.find(id)).execute(conn).await?;
        conn.record_removal(version, "model", id).await?;
        Ok(())
    })
}

/// Adds a model group.
pub async fn add_group(
    db: &Db,
    name: &str,
    members: &[String],
    tariff: Option<&Tariff>,
) -> StoreResult<ModelGroup> {
    let members = check_model_group(name, members)?;
    let price = PriceColumns::from_tariff(tariff)?;
    write_tx!(db, |conn| {
        let clash: i64 = models::table.filter(models::name.eq(name)).count().get_result(conn).await?;
        if clash > 0 {
            return Err(StoreError::Conflict(format!("{name:?} is the name of a model")));
        }
        let existing: Vec<ModelGroup> =
            model_groups::table.select(ModelGroup::as_select()).load(conn).await?;
        for group in &existing {
            if let Some(member) = group.members().into_iter().find(|m| members.contains(m)) {
                return Err(StoreError::Conflict(format!(
                    "model {member:?} already belongs to model group {:?}",
                    group.name
                )));
            }
        }
        let version = conn.bump_policy_version().await?;
        diesel::insert_into(model_groups::table)
            .values((
                model_groups::name.eq(name),
                model_groups::models.eq(json_list(&members)),
                model_groups::billing.eq(price.billing),
                model_groups::input_price.eq(price.input),
                model_groups::output_price.eq(price.output),
                model_groups::cached_input_price.eq(price.cached_input),
                model_groups::cache_write_price.eq(price.cache_write),
                model_groups::per_call_price.eq(price.per_call),
                model_groups::version.eq(version),
                model_groups::created_at.eq(now_micros()),
            ))
            .returning(ModelGroup::as_returning())
            .get_result(conn)
            .await
            .map_err(exists_as(|| format!("model group {name:?}")))
    })
}

/// All model groups, by name.
pub async fn list_groups(db: &Db) -> StoreResult<Vec<ModelGroup>> {
    with_conn!(db, |conn| Ok(model_groups::table
        .order(model_groups::name)
        .select(ModelGroup::as_select())
        .load(conn)
        .await?))
}

/// Deletes a model group.
pub async fn delete_group(db: &Db, name: &str) -> StoreResult<()> {
    write_tx!(db, |conn| {
        let id: i64 = model_groups::table
            .filter(model_groups::name.eq(name))
            .select(model_groups::id)
            .first(conn)
            .await
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("model group {name:?}")))?;
        let version = conn.bump_policy_version().await?;
        diesel::delete(model_groups::table.find(id)).execute(conn).await?;
        conn.record_removal(version, "model_group", id).await?;
        Ok(())
    })
}
