//! The statements of applying a setup, implemented once for each backend's connection.
use diesel::{ExpressionMethods, QueryDsl, QueryResult, SelectableHelper, SqliteConnection};
use diesel_async::{AsyncPgConnection, RunQueryDsl, sync_connection_wrapper::SyncConnectionWrapper};

use super::Kind;
use crate::{
    db::{
        TxConn,
        schema::{
            accounts, api_keys, channels, model_aliases, model_groups, models, redemption_codes, token_groups,
        },
        sqlite::SqliteWriter,
    },
    store::{
        aliases::Alias,
        channels::Channel,
        groups::Group,
        limits::{month_of_day, week_of_day},
        models::{Model, ModelGroup},
    },
};

/// The setup columns of an account (never its balance or counters).
#[derive(Debug, Clone, PartialEq, Eq, diesel::Queryable)]
pub struct StoredAccount {
    /// Row id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// Token group.
    pub group_id: i64,
    /// Daily spend cap.
    pub daily_limit: Option<i64>,
    /// Requests per rate window.
    pub rpm: Option<i64>,
    /// Tokens per rate window.
    pub tpm: Option<i64>,
    /// Requests in flight.
    pub max_concurrent: Option<i64>,
    /// Weekly spend cap.
    pub weekly_limit: Option<i64>,
    /// Monthly spend cap.
    pub monthly_limit: Option<i64>,
}

/// Everything a setup declares, as stored, each list by name.
#[derive(Debug, Clone, Default)]
pub struct State {
    /// Channels.
    pub channels: Vec<Channel>,
    /// Models with their own price.
    pub models: Vec<Model>,
    /// Model groups.
    pub model_groups: Vec<ModelGroup>,
    /// Model aliases.
    pub aliases: Vec<Alias>,
    /// Token groups.
    pub groups: Vec<Group>,
    /// Accounts.
    pub accounts: Vec<StoredAccount>,
}

/// Reads and writes of a setup, within a transaction the caller holds. Rows are written whole
/// (every setup column), stamped with the version they carry.
pub trait SetupTx: TxConn {
    /// Everything a setup declares.
    fn load_state(&mut self) -> impl Future<Output = QueryResult<State>> + Send;

    /// Inserts a channel (`id` 0) or replaces the one with `row.id`.
    fn put_channel(&mut self, row: &Channel) -> impl Future<Output = QueryResult<()>> + Send;

    /// Inserts a model (`id` 0) or replaces the one with `row.id`.
    fn put_model(&mut self, row: &Model) -> impl Future<Output = QueryResult<()>> + Send;

    /// Inserts a model group (`id` 0) or replaces the one with `row.id`.
    fn put_model_group(&mut self, row: &ModelGroup) -> impl Future<Output = QueryResult<()>> + Send;

    /// Inserts a model alias (`id` 0) or replaces the one with `row.id`.
    fn put_alias(&mut self, row: &Alias) -> impl Future<Output = QueryResult<()>> + Send;

    /// Inserts a token group (`id` 0) or replaces the one with `row.id`; returns its id.
    fn put_group(&mut self, row: &Group) -> impl Future<Output = QueryResult<i64>> + Send;

    /// Inserts an account with a zero balance (`id` 0) or changes the setup columns of the one
    /// with `row.id`.
    fn put_account(
        &mut self,
        row: &StoredAccount,
        version: i64,
        now: i64,
    ) -> impl Future<Output = QueryResult<()>> + Send;

    /// How many accounts and keys use token group `id`.
    fn group_users(&mut self, id: i64) -> impl Future<Output = QueryResult<(i64, i64)>> + Send;

    /// Deletes entity `id` of `kind` (not an account) and records its removal at `version`.
    fn remove(&mut self, kind: Kind, id: i64, version: i64) -> impl Future<Output = QueryResult<()>> + Send;

    /// Whether a key with this secret hash is stored.
    fn has_key(&mut self, secret_hash: &str) -> impl Future<Output = QueryResult<bool>> + Send;

    /// Inserts an imported key.
    fn insert_key(&mut self, key: &NewKey<'_>) -> impl Future<Output = QueryResult<()>> + Send;

    /// Whether this redemption code (its text; stored hashed) is stored.
    fn has_code(&mut self, code: &str) -> impl Future<Output = QueryResult<bool>> + Send;

    /// Inserts an unused redemption code, hashed.
    fn insert_code(
        &mut self,
        code: &str,
        amount: i64,
        now: i64,
    ) -> impl Future<Output = QueryResult<()>> + Send;
}

/// A key to insert whose secret was made elsewhere.
#[derive(Debug, Clone)]
pub struct NewKey<'a> {
    /// Owning account.
    pub account_id: i64,
    /// Free name.
    pub name: &'a str,
    /// Visible start of the secret.
    pub prefix: &'a str,
    /// Hex SHA-256 of the secret.
    pub secret_hash: &'a str,
    /// Own group.
    pub group_id: Option<i64>,
    /// Total spend cap.
    pub limit: Option<i64>,
    /// JSON allow-list.
    pub models: String,
    /// Unix micros.
    pub expires_at: Option<i64>,
    /// Revoked.
    pub revoked: bool,
    /// Policy version.
    pub version: i64,
    /// Unix micros.
    pub now: i64,
}

macro_rules! impl_setup_tx {
    ($conn:ty) => {
        impl SetupTx for $conn {
            async fn load_state(&mut self) -> QueryResult<State> {
                Ok(State {
                    channels: channels::table
                        .order(channels::name)
                        .select(Channel::as_select())
                        .load(self)
                        .await?,
                    models: models::table.order(models::name).select(Model::as_select()).load(self).await?,
                    model_groups: model_groups::table
                        .order(model_groups::name)
                        .select(ModelGroup::as_select())
                        .load(self)
                        .await?,
                    aliases: model_aliases::table
                        .order(model_aliases::name)
                        .select(Alias::as_select())
                        .load(self)
                        .await?,
                    groups: token_groups::table
                        .order(token_groups::name)
                        .select(Group::as_select())
                        .load(self)
                        .await?,
                    accounts: accounts::table
                        .order(accounts::name)
                        .select((
                            accounts::id,
                            accounts::name,
                            accounts::group_id,
                            accounts::daily_limit,
                            accounts::rpm,
                            accounts::tpm,
                            accounts::max_concurrent,
                            accounts::weekly_limit,
                            accounts::monthly_limit,
                        ))
                        .load(self)
                        .await?,
                })
            }

            async fn put_channel(&mut self, row: &Channel) -> QueryResult<()> {
                if row.id == 0 {
                    diesel::insert_into(channels::table).values(row).execute(self).await?;
                } else {
                    diesel::update(channels::table.find(row.id)).set(row).execute(self).await?;
                }
                Ok(())
            }

            async fn put_model(&mut self, row: &Model) -> QueryResult<()> {
                let values = (
                    models::name.eq(&row.name),
                    models::billing.eq(&row.billing),
                    models::input_price.eq(row.input_price),
                    models::output_price.eq(row.output_price),
                    models::cached_input_price.eq(row.cached_input_price),
                    models::cache_write_price.eq(row.cache_write_price),
                    models::per_call_price.eq(row.per_call_price),
                    models::max_output_tokens.eq(row.max_output_tokens),
                    models::version.eq(row.version),
                );
                if row.id == 0 {
                    diesel::insert_into(models::table)
                        .values((values, models::created_at.eq(row.created_at)))
                        .execute(self)
                        .await?;
                } else {
                    diesel::update(models::table.find(row.id)).set(values).execute(self).await?;
                }
                Ok(())
            }

            async fn put_model_group(&mut self, row: &ModelGroup) -> QueryResult<()> {
                let values = (
                    model_groups::name.eq(&row.name),
                    model_groups::models.eq(&row.models),
                    model_groups::billing.eq(&row.billing),
                    model_groups::input_price.eq(row.input_price),
                    model_groups::output_price.eq(row.output_price),
                    model_groups::cached_input_price.eq(row.cached_input_price),
                    model_groups::cache_write_price.eq(row.cache_write_price),
                    model_groups::per_call_price.eq(row.per_call_price),
                    model_groups::version.eq(row.version),
                );
                if row.id == 0 {
                    diesel::insert_into(model_groups::table)
                        .values((values, model_groups::created_at.eq(row.created_at)))
                        .execute(self)
                        .await?;
                } else {
                    diesel::update(model_groups::table.find(row.id)).set(values).execute(self).await?;
                }
                Ok(())
            }

            async fn put_alias(&mut self, row: &Alias) -> QueryResult<()> {
                let values = (
                    model_aliases::name.eq(&row.name),
                    model_aliases::target.eq(&row.target),
                    model_aliases::version.eq(row.version),
                );
                if row.id == 0 {
                    diesel::insert_into(model_aliases::table)
                        .values((values, model_aliases::created_at.eq(row.created_at)))
                        .execute(self)
                        .await?;
                } else {
                    diesel::update(model_aliases::table.find(row.id)).set(values).execute(self).await?;
                }
                Ok(())
            }

            async fn put_group(&mut self, row: &Group) -> QueryResult<i64> {
                let values = (
                    token_groups::name.eq(&row.name),
                    token_groups::multiplier_micros.eq(row.multiplier_micros),
                    token_groups::all_models.eq(row.all_models),
                    token_groups::models.eq(&row.models),
                    token_groups::version.eq(row.version),
                    token_groups::rpm.eq(row.rpm),
                    token_groups::tpm.eq(row.tpm),
                    token_groups::max_concurrent.eq(row.max_concurrent),
                );
                if row.id == 0 {
                    diesel::insert_into(token_groups::table)
                        .values((values, token_groups::created_at.eq(row.created_at)))
                        .returning(token_groups::id)
                        .get_result(self)
                        .await
                } else {
                    diesel::update(token_groups::table.find(row.id)).set(values).execute(self).await?;
                    Ok(row.id)
                }
            }

            async fn put_account(&mut self, row: &StoredAccount, version: i64, now: i64) -> QueryResult<()> {
                let values = (
                    accounts::group_id.eq(row.group_id),
                    accounts::daily_limit.eq(row.daily_limit),
                    accounts::rpm.eq(row.rpm),
                    accounts::tpm.eq(row.tpm),
                    accounts::max_concurrent.eq(row.max_concurrent),
                    accounts::weekly_limit.eq(row.weekly_limit),
                    accounts::monthly_limit.eq(row.monthly_limit),
                    accounts::version.eq(version),
                );
                if row.id == 0 {
                    diesel::insert_into(accounts::table)
                        .values((
                            values,
                            accounts::name.eq(&row.name),
                            accounts::balance.eq(0),
                            accounts::spent_today.eq(0),
                            accounts::spent_day.eq(crate::store::utc_day(now)),
                            accounts::spent_week_no.eq(week_of_day(crate::store::utc_day(now))),
                            accounts::spent_month_no.eq(month_of_day(crate::store::utc_day(now))),
                            accounts::created_at.eq(now),
                        ))
                        .execute(self)
                        .await?;
                } else {
                    diesel::update(accounts::table.find(row.id)).set(values).execute(self).await?;
                }
                Ok(())
            }

            async fn group_users(&mut self, id: i64) -> QueryResult<(i64, i64)> {
                let accounts_using: i64 =
                    accounts::table.filter(accounts::group_id.eq(id)).count().get_result(self).await?;
                let keys_using: i64 =
                    api_keys::table.filter(api_keys::group_id.eq(id)).count().get_result(self).await?;
                Ok((accounts_using, keys_using))
            }

            async fn remove(&mut self, kind: Kind, id: i64, version: i64) -> QueryResult<()> {
                match kind {
                    Kind::Channel => diesel::delete(channels::table.find(id)).execute(self).await?,
                    Kind::Model => diesel::delete(models::table.find(id)).execute(self).await?,
                    Kind::ModelGroup => diesel::delete(model_groups::table.find(id)).execute(self).await?,
                    Kind::Alias => diesel::delete(model_aliases::table.find(id)).execute(self).await?,
                    Kind::Group => diesel::delete(token_groups::table.find(id)).execute(self).await?,
                    // Accounts hold money and history, and imports only add: never deleted here.
                    Kind::Account | Kind::Key | Kind::Balance | Kind::Code => return Ok(()),
                };
                self.record_removal(version, kind.as_str(), id).await
            }

            async fn has_key(&mut self, secret_hash: &str) -> QueryResult<bool> {
                let found: i64 = api_keys::table
                    .filter(api_keys::secret_hash.eq(secret_hash))
                    .count()
                    .get_result(self)
                    .await?;
                Ok(found > 0)
            }

            async fn insert_key(&mut self, key: &NewKey<'_>) -> QueryResult<()> {
                diesel::insert_into(api_keys::table)
                    .values((
                        api_keys::account_id.eq(key.account_id),
                        api_keys::name.eq(key.name),
                        api_keys::prefix.eq(key.prefix),
                        api_keys::secret_hash.eq(key.secret_hash),
                        api_keys::group_id.eq(key.group_id),
                        api_keys::spend_limit.eq(key.limit),
                        api_keys::spent.eq(0),
                        api_keys::daily_limit.eq(None::<i64>),
                        api_keys::spent_today.eq(0),
                        api_keys::spent_day.eq(crate::store::utc_day(key.now)),
                        api_keys::models.eq(&key.models),
                        api_keys::expires_at.eq(key.expires_at),
                        api_keys::revoked.eq(key.revoked),
                        api_keys::version.eq(key.version),
                        api_keys::created_at.eq(key.now),
                    ))
                    .execute(self)
                    .await
                    .map(drop)
            }

            async fn has_code(&mut self, code: &str) -> QueryResult<bool> {
                let found: i64 = redemption_codes::table
                    .filter(redemption_codes::code.eq(crate::store::codes::stored_form(code)))
                    .count()
                    .get_result(self)
                    .await?;
                Ok(found > 0)
            }

            async fn insert_code(&mut self, code: &str, amount: i64, now: i64) -> QueryResult<()> {
                diesel::insert_into(redemption_codes::table)
                    .values((
                        redemption_codes::code.eq(crate::store::codes::stored_form(code)),
                        redemption_codes::code_prefix.eq(crate::store::codes::prefix(code)),
                        redemption_codes::amount.eq(amount),
                        redemption_codes::created_at.eq(now),
                    ))
                    .execute(self)
                    .await
                    .map(drop)
            }
        }
    };
}

impl_setup_tx!(AsyncPgConnection);
impl_setup_tx!(SyncConnectionWrapper<SqliteConnection>);
impl_setup_tx!(SqliteWriter);
