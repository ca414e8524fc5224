//! The policy: what data planes enforce, read as one consistent snapshot or as the changes
//! after a version.
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::{
    aliases::Alias,
    channels::Channel,
    groups::Group,
    models::{Model, ModelGroup},
};
use crate::{
    db::{
        Db,
        schema::{
            accounts, api_keys, channels, model_aliases, model_groups, models, policy_removals, policy_state,
            token_groups,
        },
    },
    error::StoreResult,
    read_tx, with_conn,
};

/// What a data plane needs of an account.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct PolicyAccount {
    /// Row id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Token group.
    pub group_id: i64,
    /// Requests per rate window, shared by its keys.
    pub rpm: Option<i64>,
    /// Tokens per rate window, shared by its keys.
    pub tpm: Option<i64>,
    /// Requests in flight, shared by its keys.
    pub max_concurrent: Option<i64>,
}

/// What a data plane needs of a key: only these columns are read, so that a snapshot of a
/// million keys loads half the data a full [`super::keys::KeyRow`] would.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = api_keys, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct PolicyKey {
    /// Public id.
    pub id: i64,
    /// Owning account.
    pub account_id: i64,
    /// Hex SHA-256 of the secret.
    pub secret_hash: String,
    /// Own group; `None`: the account's.
    pub group_id: Option<i64>,
    /// JSON allow-list of models.
    pub models: String,
    /// Unix micros.
    pub expires_at: Option<i64>,
    /// Revoked keys are removed from the policy.
    pub revoked: bool,
    /// Own requests per rate window.
    pub rpm: Option<i64>,
    /// Own tokens per rate window.
    pub tpm: Option<i64>,
    /// Own requests in flight.
    pub max_concurrent: Option<i64>,
}

/// A policy, whole or as the changes after a version.
#[derive(Debug, Clone, Default)]
pub struct PolicyChanges {
    /// The version this brings the reader to.
    pub version: i64,
    /// Whether this is the whole policy (a snapshot) rather than changes.
    pub full: bool,
    /// Channels added or changed.
    pub channels: Vec<Channel>,
    /// Models added or changed.
    pub models: Vec<Model>,
    /// Model groups added or changed.
    pub model_groups: Vec<ModelGroup>,
    /// Model aliases added or changed.
    pub model_aliases: Vec<Alias>,
    /// Groups added or changed.
    pub groups: Vec<Group>,
    /// Accounts added or changed.
    pub accounts: Vec<PolicyAccount>,
    /// Keys added or changed (never revoked ones).
    pub keys: Vec<PolicyKey>,
    /// Entities removed: (kind, id), kinds as in `policy_removals`.
    pub removed: Vec<(String, i64)>,
}

/// The current policy version.
pub async fn current_version(db: &Db) -> StoreResult<i64> {
    with_conn!(db, |conn| Ok(policy_state::table.select(policy_state::version).first::<i64>(conn).await?))
}

/// The whole policy (`since` = `None`, or a version this database never had), or the changes
/// made after version `since`, read in one consistent snapshot.
pub async fn changes(db: &Db, since: Option<i64>) -> StoreResult<PolicyChanges> {
    read_tx!(db, |conn| {
        let version: i64 = policy_state::table.select(policy_state::version).first(conn).await?;
        let after = match since {
            Some(since) if since <= version => since,
            _ => -1,
        };
        let full = after < 0;
        let keys: Vec<PolicyKey> = api_keys::table
            .filter(api_keys::version.gt(after))
            .order(api_keys::id)
            .select(PolicyKey::as_select())
            .load(conn)
            .await?;
        let (keys, revoked): (Vec<PolicyKey>, Vec<PolicyKey>) = keys.into_iter().partition(|k| !k.revoked);
        let mut removed: Vec<(String, i64)> = if full {
            Vec::new()
        } else {
            policy_removals::table
                .filter(policy_removals::version.gt(after))
                .order(policy_removals::id)
                .select((policy_removals::kind, policy_removals::entity_id))
                .load(conn)
                .await?
        };
        if !full {
            removed.extend(revoked.into_iter().map(|k| ("key".to_owned(), k.id)));
            removed.dedup();
        }
        Ok(PolicyChanges {
            version,
            full,
            channels: channels::table
                .filter(channels::version.gt(after))
                .order(channels::id)
                .select(Channel::as_select())
                .load(conn)
                .await?,
            models: models::table
                .filter(models::version.gt(after))
                .order(models::id)
                .select(Model::as_select())
                .load(conn)
                .await?,
            model_groups: model_groups::table
                .filter(model_groups::version.gt(after))
                .order(model_groups::id)
                .select(ModelGroup::as_select())
                .load(conn)
                .await?,
            model_aliases: model_aliases::table
                .filter(model_aliases::version.gt(after))
                .order(model_aliases::id)
                .select(Alias::as_select())
                .load(conn)
                .await?,
            groups: token_groups::table
                .filter(token_groups::version.gt(after))
                .order(token_groups::id)
                .select(Group::as_select())
                .load(conn)
                .await?,
            accounts: accounts::table
                .filter(accounts::version.gt(after))
                .order(accounts::id)
                .select((
                    accounts::id,
                    accounts::name,
                    accounts::group_id,
                    accounts::rpm,
                    accounts::tpm,
                    accounts::max_concurrent,
                ))
                .load(conn)
                .await?,
            keys,
            removed,
        })
    })
}
