//! Model aliases: names clients send that are served and billed as another model. A name
//! ending in `*` is a prefix pattern (`claude-opus-*`).
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::{check_name, models::ModelGroup, now_micros};
use crate::{
    db::{
        Db, TxConn,
        schema::{model_aliases, model_groups, models},
    },
    error::{StoreError, StoreResult},
    with_conn, write_tx,
};

/// An alias as stored.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = model_aliases, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct Alias {
    /// Row id.
    pub id: i64,
    /// The name clients send, or a prefix pattern ending in `*`.
    pub name: String,
    /// The priced model it is served and billed as.
    pub target: String,
    /// Policy version of the last change.
    pub version: i64,
    /// Unix micros.
    pub created_at: i64,
}

/// Whether an alias name is a prefix pattern.
pub fn is_pattern(name: &str) -> bool {
    name.ends_with('*')
}

/// Checks an alias's name and target (not yet that the target is priced).
pub fn check_alias(name: &str, target: &str) -> StoreResult<()> {
    check_name("alias", name)?;
    check_name("model", target)?;
    if name.trim_end_matches('*').contains('*') || name.ends_with("**") {
        return Err(StoreError::invalid(format!(
            "alias {name:?}: `*` may only end a name (a prefix pattern such as `claude-opus-*`)"
        )));
    }
    if target.contains('*') {
        return Err(StoreError::invalid(format!(
            "alias {name:?}: the target {target:?} must be a model name"
        )));
    }
    if name == target {
        return Err(StoreError::invalid(format!("alias {name:?}: an alias cannot point at itself")));
    }
    Ok(())
}

/// Whether `name` has a price in the given models and model groups: its own, or its model
/// group's.
pub fn is_priced<'a>(
    name: &str,
    mut models: impl Iterator<Item = &'a str>,
    groups: impl IntoIterator<Item = &'a ModelGroup>,
) -> bool {
    models.any(|m| m == name)
        || groups.into_iter().any(|g| g.tariff().is_some() && g.members().iter().any(|m| m == name))
}

/// The refusal of an alias whose target has no price.
pub fn unpriced(name: &str, target: &str) -> StoreError {
    StoreError::invalid(format!(
        "alias {name:?}: the target {target:?} is not a priced model (set its price with `routerctl model set` first)"
    ))
}

/// Creates an alias or points it at a new target: a priced model.
pub async fn set(db: &Db, name: &str, target: &str) -> StoreResult<Alias> {
    check_alias(name, target)?;
    write_tx!(db, |conn| {
        let own: Vec<String> =
            models::table.filter(models::name.eq(target)).select(models::name).load(conn).await?;
        let groups: Vec<ModelGroup> = model_groups::table.select(ModelGroup::as_select()).load(conn).await?;
        if !is_priced(target, own.iter().map(String::as_str), &groups) {
            return Err(unpriced(name, target));
        }
        if !is_pattern(name) {
            let model: i64 = models::table.filter(models::name.eq(name)).count().get_result(conn).await?;
            if model > 0 || groups.iter().any(|g| g.name == name) {
                return Err(StoreError::Conflict(format!(
                    "alias {name:?}: {name:?} is the name of a model or model group"
                )));
            }
        }
        let version = conn.bump_policy_version().await?;
        let values = (model_aliases::target.eq(target), model_aliases::version.eq(version));
        Ok(diesel::insert_into(model_aliases::table)
            .values((model_aliases::name.eq(name), model_aliases::created_at.eq(now_micros()), values))
            .on_conflict(model_aliases::name)
            .do_update()
            .set(values)
            .returning(Alias::as_returning())
            .get_result(conn)
            .await?)
    })
}

/// All aliases, by name.
pub async fn list(db: &Db) -> StoreResult<Vec<Alias>> {
    with_conn!(db, |conn| Ok(model_aliases::table
        .order(model_aliases::name)
        .select(Alias::as_select())
        .load(conn)
        .await?))
}

/// Deletes an alias.
pub async fn delete(db: &Db, name: &str) -> StoreResult<()> {
    write_tx!(db, |conn| {
        let id: i64 = model_aliases::table
            .filter(model_aliases::name.eq(name))
            .select(model_aliases::id)
            .first(conn)
            .await
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("alias {name:?}")))?;
        let version = conn.bump_policy_version().await?;
        diesel::delete(model_aliases::table.find(id)).execute(conn).await?;
        conn.record_removal(version, "alias", id).await?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_patterns_are_checked() {
        assert!(check_alias("claude-opus-4-8", "claude-sonnet-4").is_ok());
        assert!(check_alias("claude-opus-*", "claude-sonnet-4").is_ok());
        assert!(check_alias("*", "claude-sonnet-4").is_ok());
        for (name, target) in [
            ("a*b", "m"),
            ("a**", "m"),
            ("*a", "m"),
            ("a", "m*"),
            ("a", "a"),
            ("", "m"),
            ("a b", "m"),
            ("a", ""),
        ] {
            assert!(check_alias(name, target).is_err(), "{name:?} -> {target:?}");
        }
        assert!(is_pattern("gpt-*") && !is_pattern("gpt-4o"));
    }
}
