//! The admin API (routerctl): requests checked, passed to storage, answers converted.
use router_proto::pb::{self, admin_service_server::AdminService};
use tonic::{Request, Response, Status};

use super::{
    convert::{self, multiplier_from_pb, tariff_from_pb},
    feed::PolicyFeed,
    usage::{self as usage_api, ExportStream},
};
use crate::{
    db::Db,
    health::Checker,
    store::{
        accounts, aliases, channels, codes, groups, keys, ledger, models, orders, pricing, quarantine, setup,
        usage,
    },
};

type Answer<T> = Result<Response<T>, Status>;

/// The `AdminService` implementation.
#[derive(Clone)]
pub struct AdminApi {
    db: Db,
    feed: PolicyFeed,
    currency: String,
    checker: Checker,
}

impl AdminApi {
    /// An admin API over `db`; policy changes are announced on `feed`.
    pub fn new(db: Db, feed: PolicyFeed, currency: String) -> AdminApi {
        AdminApi { db, feed, currency, checker: Checker::new() }
    }

    /// Answers an apply or import; watchers are told when it changed the policy.
    fn applied(&self, applied: setup::Applied) -> Answer<pb::ApplySetupResponse> {
        let answer = pb::ApplySetupResponse {
            version: applied.version.and_then(|v| u64::try_from(v).ok()).unwrap_or(0),
            changes: applied.changes.into_iter().map(convert::change_to_pb).collect(),
        };
        if answer.version == 0 { Ok(Response::new(answer)) } else { self.changed(answer) }
    }

    /// Answers with `value` after a policy change, telling watchers at once.
    fn changed<T>(&self, value: T) -> Answer<T> {
        self.feed.poke();
        Ok(Response::new(value))
    }
}

fn optional_limit(value: Option<i64>, clear: bool) -> Option<Option<i64>> {
    if clear { Some(None) } else { value.map(Some) }
}

fn list_limit(limit: Option<u32>, default: i64) -> i64 {
    limit.map_or(default, i64::from).clamp(1, usage::MAX_LIMIT)
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn add_channel(&self, request: Request<pb::AddChannelRequest>) -> Answer<pb::Channel> {
        let spec = convert::channel_spec_from_pb(request.into_inner());
        let channel = channels::add(&self.db, spec).await?;
        self.changed(convert::channel_to_pb(channel, false))
    }

    async fn update_channel(&self, request: Request<pb::UpdateChannelRequest>) -> Answer<pb::Channel> {
        let r = request.into_inner();
        let update = channels::ChannelUpdate {
            name: r.new_name,
            channel_type: r.r#type,
            base_url: r.base_url,
            api_key: r.api_key,
            models: r.set_models.then_some(r.models),
            priority: r.priority,
            weight: r.weight,
            model_map: r.set_model_map.then(|| r.model_map.into_iter().collect()),
            api_version: if r.clear_api_version { Some(None) } else { r.api_version.map(Some) },
            protocols: r.set_protocols.then_some(r.protocols),
            messages_base_url: if r.clear_messages_base_url {
                Some(None)
            } else {
                r.messages_base_url.map(Some)
            },
        };
        let channel = channels::update(&self.db, &r.name, update).await?;
        self.changed(convert::channel_to_pb(channel, false))
    }

    async fn get_channel(&self, request: Request<pb::NameRequest>) -> Answer<pb::Channel> {
        let channel = channels::get(&self.db, &request.into_inner().name).await?;
        Ok(Response::new(convert::channel_to_pb(channel, false)))
    }

    async fn list_channels(&self, _: Request<pb::ListChannelsRequest>) -> Answer<pb::ListChannelsResponse> {
        let channels = channels::list(&self.db).await?;
        let channels = channels.into_iter().map(|c| convert::channel_to_pb(c, false)).collect();
        Ok(Response::new(pb::ListChannelsResponse { channels }))
    }

    async fn set_channel_enabled(
        &self,
        request: Request<pb::SetChannelEnabledRequest>,
    ) -> Answer<pb::Channel> {
        let r = request.into_inner();
        let channel = channels::set_enabled(&self.db, &r.name, r.enabled).await?;
        self.changed(convert::channel_to_pb(channel, false))
    }

    async fn test_channel(&self, request: Request<pb::TestChannelRequest>) -> Answer<pb::ChannelTestResult> {
        let r = request.into_inner();
        let channel = channels::get(&self.db, &r.name).await?;
        if let Some(model) = &r.model
            && !channel.model_list().contains(model)
        {
            return Err(Status::invalid_argument(format!("channel {:?} does not serve {model:?}", r.name)));
        }
        let result = self.checker.check(&channel, r.model.as_deref()).await;
        Ok(Response::new(pb::ChannelTestResult {
            name: channel.name,
            ok: result.ok,
            status: u32::from(result.status),
            latency_ms: u64::try_from(result.latency.as_millis()).unwrap_or(u64::MAX),
            error: result.error,
        }))
    }

    async fn delete_channel(&self, request: Request<pb::NameRequest>) -> Answer<pb::Empty> {
        channels::delete(&self.db, &request.into_inner().name).await?;
        self.changed(pb::Empty {})
    }

    async fn set_model(&self, request: Request<pb::SetModelRequest>) -> Answer<pb::Model> {
        let r = request.into_inner();
        let tariff = tariff_from_pb(r.price.as_ref())?
            .ok_or_else(|| Status::invalid_argument("a model needs a price (per token or per call)"))?;
        let model = models::set(&self.db, &r.name, &tariff, r.max_output_tokens).await?;
        let index = convert::model_group_index(&models::list_groups(&self.db).await?);
        let group = index.get(&model.name).cloned();
        self.changed(convert::model_to_pb(model, group))
    }

    async fn list_models(&self, _: Request<pb::ListModelsRequest>) -> Answer<pb::ListModelsResponse> {
        let index = convert::model_group_index(&models::list_groups(&self.db).await?);
        let models = models::list(&self.db).await?;
        let models = models
            .into_iter()
            .map(|m| {
                let group = index.get(&m.name).cloned();
                convert::model_to_pb(m, group)
            })
            .collect();
        Ok(Response::new(pb::ListModelsResponse { models }))
    }

    async fn delete_model(&self, request: Request<pb::NameRequest>) -> Answer<pb::Empty> {
        models::delete(&self.db, &request.into_inner().name).await?;
        self.changed(pb::Empty {})
    }

    async fn add_model_group(&self, request: Request<pb::AddModelGroupRequest>) -> Answer<pb::ModelGroup> {
        let r = request.into_inner();
        let tariff = tariff_from_pb(r.price.as_ref())?;
        let group = models::add_group(&self.db, &r.name, &r.models, tariff.as_ref()).await?;
        self.changed(convert::model_group_to_pb(group))
    }

    async fn list_model_groups(
        &self,
        _: Request<pb::ListModelGroupsRequest>,
    ) -> Answer<pb::ListModelGroupsResponse> {
        let groups = models::list_groups(&self.db).await?;
        let model_groups = groups.into_iter().map(convert::model_group_to_pb).collect();
        Ok(Response::new(pb::ListModelGroupsResponse { model_groups }))
    }

    async fn delete_model_group(&self, request: Request<pb::NameRequest>) -> Answer<pb::Empty> {
        models::delete_group(&self.db, &request.into_inner().name).await?;
        self.changed(pb::Empty {})
    }

    async fn set_model_alias(&self, request: Request<pb::SetModelAliasRequest>) -> Answer<pb::ModelAlias> {
        let r = request.into_inner();
        let alias = aliases::set(&self.db, r.name.trim(), r.target.trim()).await?;
        self.changed(convert::alias_to_pb(alias))
    }

    async fn list_model_aliases(
        &self,
        _: Request<pb::ListModelAliasesRequest>,
    ) -> Answer<pb::ListModelAliasesResponse> {
        let aliases = aliases::list(&self.db).await?.into_iter().map(convert::alias_to_pb).collect();
        Ok(Response::new(pb::ListModelAliasesResponse { aliases }))
    }

    async fn delete_model_alias(&self, request: Request<pb::NameRequest>) -> Answer<pb::Empty> {
        aliases::delete(&self.db, &request.into_inner().name).await?;
        self.changed(pb::Empty {})
    }

    async fn add_group(&self, request: Request<pb::AddGroupRequest>) -> Answer<pb::Group> {
        let r = request.into_inner();
        let multiplier = r.multiplier_micros.map(multiplier_from_pb).transpose()?;
        let reach = if r.models.is_empty() { groups::Reach::All } else { groups::Reach::Only(r.models) };
        let rates = convert::rates_from_pb(r.rpm, r.tpm, r.max_concurrent);
        let group = groups::add(&self.db, &r.name, multiplier, reach, rates).await?;
        self.changed(convert::group_to_pb(group))
    }

    async fn update_group(&self, request: Request<pb::UpdateGroupRequest>) -> Answer<pb::Group> {
        let r = request.into_inner();
        let multiplier = r.multiplier_micros.map(multiplier_from_pb).transpose()?;
        let reach = match (r.set_all_models, r.set_models) {
            (true, true) => {
                return Err(Status::invalid_argument("give either models or all models, not both"));
            }
            (true, false) => Some(groups::Reach::All),
            (false, true) => Some(groups::Reach::Only(r.models)),
            (false, false) => None,
        };
        let rates = convert::rate_change_from_pb(r.rpm, r.tpm, r.max_concurrent);
        let group = groups::update(&self.db, &r.name, multiplier, reach, rates).await?;
        self.changed(convert::group_to_pb(group))
    }

    async fn list_groups(&self, _: Request<pb::ListGroupsRequest>) -> Answer<pb::ListGroupsResponse> {
        let groups = groups::list(&self.db).await?.into_iter().map(convert::group_to_pb).collect();
        Ok(Response::new(pb::ListGroupsResponse { groups }))
    }

    async fn delete_group(&self, request: Request<pb::NameRequest>) -> Answer<pb::Empty> {
        groups::delete(&self.db, &request.into_inner().name).await?;
        self.changed(pb::Empty {})
    }

    async fn add_account(&self, request: Request<pb::AddAccountRequest>) -> Answer<pb::Account> {
        let r = request.into_inner();
        let limits = accounts::NewLimits {
            rates: convert::rates_from_pb(r.rpm, r.tpm, r.max_concurrent),
            periods: convert::periods_from_pb(r.weekly_limit_nanos, r.monthly_limit_nanos),
        };
        let account = accounts::add_limited(
            &self.db,
            &r.name,
            r.group.as_deref(),
            r.balance_nanos,
            r.daily_limit_nanos,
            r.email.as_deref(),
            limits,
        )
        .await?;
        self.changed(convert::account_to_pb(account))
    }

    async fn update_account(&self, request: Request<pb::UpdateAccountRequest>) -> Answer<pb::Account> {
        let r = request.into_inner();
        let update = accounts::AccountUpdate {
            group: r.group.as_deref(),
            daily_limit: optional_limit(r.daily_limit_nanos, r.clear_daily_limit),
            email: if r.clear_email { Some(None) } else { r.email.as_deref().map(Some) },
            disabled: r.disabled,
            limits: accounts::LimitChange {
                rates: convert::rate_change_from_pb(r.rpm, r.tpm, r.max_concurrent),
                periods: convert::period_change_from_pb(r.weekly_limit_nanos, r.monthly_limit_nanos),
            },
        };
        let account = accounts::update(&self.db, &r.name, update).await?;
        self.changed(convert::account_to_pb(account))
    }

    async fn set_account_password(
        &self,
        request: Request<pb::SetAccountPasswordRequest>,
    ) -> Answer<pb::Account> {
        let r = request.into_inner();
        let account = accounts::set_password(&self.db, &r.name, &r.password).await?;
        Ok(Response::new(convert::account_to_pb(account)))
    }

    async fn get_account(&self, request: Request<pb::NameRequest>) -> Answer<pb::Account> {
        let account = accounts::get(&self.db, &request.into_inner().name).await?;
        Ok(Response::new(convert::account_to_pb(account)))
    }

    async fn list_accounts(&self, _: Request<pb::ListAccountsRequest>) -> Answer<pb::ListAccountsResponse> {
        let accounts = accounts::list(&self.db).await?.into_iter().map(convert::account_to_pb).collect();
        Ok(Response::new(pb::ListAccountsResponse { accounts }))
    }

    async fn create_key(&self, request: Request<pb::CreateKeyRequest>) -> Answer<pb::CreatedKey> {
        let r = request.into_inner();
        let spec = keys::KeySpec {
            account: r.account,
            name: r.name,
            group: r.group,
            limit: r.limit_nanos,
            daily_limit: r.daily_limit_nanos,
            models: r.models,
            expires_at: r.expires_at_unix_micros,
            rates: convert::rates_from_pb(r.rpm, r.tpm, r.max_concurrent),
            periods: convert::periods_from_pb(r.weekly_limit_nanos, r.monthly_limit_nanos),
        };
        let (key, secret) = keys::create(&self.db, spec).await?;
        self.changed(pb::CreatedKey { key: Some(convert::key_to_pb(key)), secret })
    }

    async fn update_key(&self, request: Request<pb::UpdateKeyRequest>) -> Answer<pb::Key> {
        let r = request.into_inner();
        let update = keys::KeyUpdate {
            name: r.name,
            group: if r.clear_group { Some(None) } else { r.group.map(Some) },
            limit: optional_limit(r.limit_nanos, r.clear_limit),
            daily_limit: optional_limit(r.daily_limit_nanos, r.clear_daily_limit),
            models: r.set_models.then_some(r.models),
            expires_at: optional_limit(r.expires_at_unix_micros, r.clear_expires_at),
            rates: convert::rate_change_from_pb(r.rpm, r.tpm, r.max_concurrent),
            periods: convert::period_change_from_pb(r.weekly_limit_nanos, r.monthly_limit_nanos),
        };
        let key = keys::update(&self.db, r.id, update).await?;
        self.changed(convert::key_to_pb(key))
    }

    async fn revoke_key(&self, request: Request<pb::KeyIdRequest>) -> Answer<pb::Key> {
        let key = keys::revoke(&self.db, request.into_inner().id).await?;
        self.changed(convert::key_to_pb(key))
    }

    async fn list_keys(&self, request: Request<pb::ListKeysRequest>) -> Answer<pb::ListKeysResponse> {
        let r = request.into_inner();
        let keys = keys::list(&self.db, r.account.as_deref()).await?;
        Ok(Response::new(pb::ListKeysResponse { keys: keys.into_iter().map(convert::key_to_pb).collect() }))
    }

    async fn top_up(&self, request: Request<pb::TopUpRequest>) -> Answer<pb::BalanceChange> {
        let r = request.into_inner();
        let posted = ledger::top_up(&self.db, &r.account, r.amount_nanos).await?;
        self.changed(pb::BalanceChange {
            account: r.account,
            amount_nanos: r.amount_nanos,
            balance_nanos: posted.balance,
            ledger_id: posted.ledger_id,
        })
    }

    async fn adjust(&self, request: Request<pb::AdjustRequest>) -> Answer<pb::BalanceChange> {
        let r = request.into_inner();
        let posted = ledger::adjust(&self.db, &r.account, r.amount_nanos, &r.note).await?;
        self.changed(pb::BalanceChange {
            account: r.account,
            amount_nanos: r.amount_nanos,
            balance_nanos: posted.balance,
            ledger_id: posted.ledger_id,
        })
    }

    async fn list_ledger(&self, request: Request<pb::ListLedgerRequest>) -> Answer<pb::ListLedgerResponse> {
        let r = request.into_inner();
        let entries =
            ledger::list(&self.db, r.account.as_deref(), list_limit(r.limit, usage::DEFAULT_LIMIT)).await?;
        Ok(Response::new(pb::ListLedgerResponse {
            entries: entries.into_iter().map(convert::entry_to_pb).collect(),
        }))
    }

    async fn list_orders(&self, request: Request<pb::ListOrdersRequest>) -> Answer<pb::ListOrdersResponse> {
        let r = request.into_inner();
        if let Some(name) = r.account.as_deref() {
            accounts::get(&self.db, name).await?;
        }
        let orders = orders::list(&self.db, r.account.as_deref(), list_limit(r.limit, 100)).await?;
        Ok(Response::new(pb::ListOrdersResponse {
            orders: orders
                .into_iter()
                .map(|o| pb::Order {
                    id: o.id,
                    account: o.account,
                    provider: o.provider,
                    amount_nanos: o.amount,
                    currency: o.currency,
                    status: o.status,
                    session_id: o.session_id,
                    created_at_unix_micros: o.created_at,
                    paid_at_unix_micros: o.paid_at,
                })
                .collect(),
        }))
    }

    async fn create_codes(
        &self,
        request: Request<pb::CreateCodesRequest>,
    ) -> Answer<pb::CreateCodesResponse> {
        let r = request.into_inner();
        let codes = codes::create(&self.db, r.amount_nanos, r.count.max(1)).await?;
        Ok(Response::new(pb::CreateCodesResponse {
            codes: codes.into_iter().map(convert::code_to_pb).collect(),
        }))
    }

    async fn list_codes(&self, _: Request<pb::ListCodesRequest>) -> Answer<pb::ListCodesResponse> {
        let codes = codes::list(&self.db).await?;
        Ok(Response::new(pb::ListCodesResponse {
            codes: codes.into_iter().map(convert::code_to_pb).collect(),
        }))
    }

    async fn list_usage(&self, request: Request<pb::ListUsageRequest>) -> Answer<pb::ListUsageResponse> {
        usage_api::list(&self.db, request.into_inner().into()).await.map(Response::new)
    }

    type ExportUsageStream = ExportStream;

    async fn export_usage(&self, request: Request<pb::ListUsageRequest>) -> Answer<ExportStream> {
        usage_api::export(self.db.clone(), request.into_inner().into()).map(Response::new)
    }

    async fn summarize_usage(&self, request: Request<pb::SummarizeUsageRequest>) -> Answer<pb::UsageSummary> {
        usage_api::summarize(&self.db, request.into_inner().try_into()?).await.map(Response::new)
    }

    async fn apply_setup(&self, request: Request<pb::ApplySetupRequest>) -> Answer<pb::ApplySetupResponse> {
        let r = request.into_inner();
        let declared = convert::setup_from_pb(r.setup.unwrap_or_default())?;
        let options = setup::Options { dry_run: r.dry_run, prune: r.prune };
        let applied = setup::apply(&self.db, &declared, options).await?;
        self.applied(applied)
    }

    async fn import(&self, request: Request<pb::ImportRequest>) -> Answer<pb::ApplySetupResponse> {
        let mut r = request.into_inner();
        let imports = convert::imports_from_pb(&mut r);
        let declared = convert::setup_from_pb(r.setup.unwrap_or_default())?;
        let options = setup::Options { dry_run: r.dry_run, prune: false };
        let applied = setup::import(&self.db, &declared, &imports, options).await?;
        self.applied(applied)
    }

    async fn export_setup(&self, request: Request<pb::ExportSetupRequest>) -> Answer<pb::Setup> {
        let with_secrets = request.into_inner().with_secrets;
        let current = setup::export(&self.db).await?;
        Ok(Response::new(convert::setup_to_pb(current, with_secrets)))
    }

    async fn list_quarantined_usage(
        &self,
        request: Request<pb::ListQuarantinedUsageRequest>,
    ) -> Answer<pb::ListQuarantinedUsageResponse> {
        let limit = list_limit(request.into_inner().limit, usage::DEFAULT_LIMIT);
        let rows = quarantine::list(&self.db, limit).await?;
        Ok(Response::new(pb::ListQuarantinedUsageResponse {
            reports: rows.into_iter().map(convert::quarantined_to_pb).collect(),
        }))
    }

    async fn get_pricing(&self, _: Request<pb::GetPricingRequest>) -> Answer<pb::Pricing> {
        let entries = pricing::table(&self.db).await?;
        Ok(Response::new(pb::Pricing {
            currency: self.currency.clone(),
            models: entries.into_iter().map(convert::price_entry_to_pb).collect(),
        }))
    }
}
