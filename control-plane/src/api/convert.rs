//! Conversions between storage types and `router.v1` messages: the only place that knows both.
use std::collections::HashMap;

use router_proto::{Money, Multiplier, Tariff, TokenPrices, pb};
use tonic::Status;

use crate::store::{
    accounts::Account,
    aliases::Alias,
    channels::{Channel, ChannelSpec},
    codes::Code,
    groups::Group,
    keys::Key,
    leases::{Grant, LeaseRequest},
    ledger::Entry,
    limits::{PeriodChange, PeriodLimits, RateChange, RateLimits},
    models::{Model, ModelGroup},
    policy::{PolicyAccount, PolicyKey},
    pricing::PriceEntry,
    quarantine::QuarantineRow,
    rates::RateGrant,
    setup::{self, Setup},
    usage::{Report, UsageRow},
};

/// A price from the wire; `None` when absent.
pub fn tariff_from_pb(price: Option<&pb::Price>) -> Result<Option<Tariff>, Status> {
    let Some(price) = price else { return Ok(None) };
    let negative = |what: &str| Status::invalid_argument(format!("{what} must not be negative"));
    let money =
        |what: &str, nanos: i64| if nanos < 0 { Err(negative(what)) } else { Ok(Money::from_nanos(nanos)) };
    match &price.billing {
        None => Ok(None),
        Some(pb::price::Billing::PerCallNanos(nanos)) => {
            Ok(Some(Tariff::PerCall(money("per-call price", *nanos)?)))
        }
        Some(pb::price::Billing::Tokens(t)) => Ok(Some(Tariff::Tokens(TokenPrices {
            input: money("input price", t.input_nanos)?,
            output: money("output price", t.output_nanos)?,
            cached_input: t.cached_input_nanos.map(|n| money("cached input price", n)).transpose()?,
            cache_write: t.cache_write_nanos.map(|n| money("cache write price", n)).transpose()?,
        }))),
    }
}

/// A price for the wire.
pub fn tariff_to_pb(tariff: &Tariff) -> pb::Price {
    let billing = match tariff {
        Tariff::PerCall(price) => pb::price::Billing::PerCallNanos(price.nanos()),
        Tariff::Tokens(t) => pb::price::Billing::Tokens(pb::TokenPrice {
            input_nanos: t.input.nanos(),
            output_nanos: t.output.nanos(),
            cached_input_nanos: t.cached_input.map(Money::nanos),
            cache_write_nanos: t.cache_write.map(Money::nanos),
        }),
    };
    pb::Price { billing: Some(billing) }
}

/// A multiplier from the wire.
pub fn multiplier_from_pb(micros: i64) -> Result<Multiplier, Status> {
    Multiplier::from_micros(micros).ok_or_else(|| Status::invalid_argument("multiplier must not be negative"))
}

/// A channel for the wire; admins see its upstream key masked, data planes whole.
pub fn channel_to_pb(channel: Channel, reveal_key: bool) -> pb::Channel {
    let api_key = if reveal_key { channel.api_key.expose().to_owned() } else { channel.masked_api_key() };
    pb::Channel {
        id: channel.id,
        models: channel.model_list(),
        protocols: channel.protocol_list(),
        messages_base_url: channel.messages_base_url.clone(),
        model_map: channel.model_map().into_iter().collect(),
        name: channel.name,
        r#type: channel.channel_type,
        base_url: channel.base_url,
        api_key,
        priority: channel.priority,
        weight: channel.weight,
        api_version: channel.api_version,
        enabled: channel.enabled,
        created_at_unix_micros: channel.created_at,
        disabled_reason: channel.disabled_reason,
    }
}

/// What `channel add` (or a declared channel) asks for.
pub fn channel_spec_from_pb(r: pb::AddChannelRequest) -> ChannelSpec {
    ChannelSpec {
        name: r.name,
        channel_type: r.r#type,
        base_url: r.base_url,
        api_key: r.api_key,
        models: r.models,
        priority: r.priority,
        weight: r.weight,
        model_map: r.model_map.into_iter().collect(),
        api_version: r.api_version,
        protocols: r.protocols,
        messages_base_url: r.messages_base_url,
    }
}

/// A channel's settings in the form `channel add` takes; the upstream key only when asked.
pub fn channel_spec_to_pb(spec: ChannelSpec, with_secret: bool) -> pb::AddChannelRequest {
    pb::AddChannelRequest {
        name: spec.name,
        r#type: spec.channel_type,
        base_url: spec.base_url,
        api_key: if with_secret { spec.api_key } else { String::new() },
        models: spec.models,
        priority: spec.priority,
        weight: spec.weight,
        model_map: spec.model_map.into_iter().collect(),
        api_version: spec.api_version,
        protocols: spec.protocols,
        messages_base_url: spec.messages_base_url,
    }
}

/// A declared setup from the wire.
pub fn setup_from_pb(setup: pb::Setup) -> Result<Setup, Status> {
    let mut declared = Setup::default();
    for channel in setup.channels {
        let spec = channel.channel.map(channel_spec_from_pb).unwrap_or_default();
        declared.channels.push(setup::DeclaredChannel { spec, enabled: channel.enabled });
    }
    for model in setup.models {
        let tariff = tariff_from_pb(model.price.as_ref())?.ok_or_else(|| {
            Status::invalid_argument(format!(
                "model {:?}: a model needs a price (per token or per call)",
                model.name
            ))
        })?;
        declared.models.push(setup::DeclaredModel {
            name: model.name,
            tariff,
            max_output_tokens: model.max_output_tokens,
        });
    }
    for group in setup.model_groups {
        declared.model_groups.push(setup::DeclaredModelGroup {
            tariff: tariff_from_pb(group.price.as_ref())?,
            name: group.name,
            members: group.models,
        });
    }
    for alias in setup.aliases {
        declared.aliases.push(setup::DeclaredAlias { name: alias.name, target: alias.target });
    }
    for group in setup.groups {
        declared.groups.push(setup::DeclaredGroup {
            multiplier: group.multiplier_micros.map(multiplier_from_pb).transpose()?,
            reach: if group.models.is_empty() {
                crate::store::groups::Reach::All
            } else {
                crate::store::groups::Reach::Only(group.models)
            },
            rates: rates_from_pb(group.rpm, group.tpm, group.max_concurrent),
            name: group.name,
        });
    }
    for account in setup.accounts {
        if account.balance_nanos.is_some() {
            return Err(Status::invalid_argument(format!(
                "account {:?}: a balance is never declared (use top-ups)",
                account.name
            )));
        }
        if account.email.is_some() {
            return Err(Status::invalid_argument(format!(
                "account {:?}: an email is not part of a declared setup (use routerctl account update --email)",
                account.name
            )));
        }
        declared.accounts.push(setup::DeclaredAccount {
            name: account.name,
            group: account.group,
            daily_limit: account.daily_limit_nanos,
            rates: rates_from_pb(account.rpm, account.tpm, account.max_concurrent),
            periods: periods_from_pb(account.weekly_limit_nanos, account.monthly_limit_nanos),
        });
    }
    Ok(declared)
}

/// The stored setup for the wire; channels' upstream keys only when asked.
pub fn setup_to_pb(setup: Setup, with_secrets: bool) -> pb::Setup {
    pb::Setup {
        channels: setup
            .channels
            .into_iter()
            .map(|c| pb::DeclaredChannel {
                channel: Some(channel_spec_to_pb(c.spec, with_secrets)),
                enabled: c.enabled,
            })
            .collect(),
        models: setup
            .models
            .into_iter()
            .map(|m| pb::SetModelRequest {
                price: Some(tariff_to_pb(&m.tariff)),
                name: m.name,
                max_output_tokens: m.max_output_tokens,
            })
            .collect(),
        model_groups: setup
            .model_groups
            .into_iter()
            .map(|g| pb::AddModelGroupRequest {
                price: g.tariff.as_ref().map(tariff_to_pb),
                name: g.name,
                models: g.members,
            })
            .collect(),
        aliases: setup
            .aliases
            .into_iter()
            .map(|a| pb::SetModelAliasRequest { name: a.name, target: a.target })
            .collect(),
        groups: setup
            .groups
            .into_iter()
            .map(|g| pb::AddGroupRequest {
                multiplier_micros: g.multiplier.map(Multiplier::micros),
                models: match g.reach {
                    crate::store::groups::Reach::All => Vec::new(),
                    crate::store::groups::Reach::Only(models) => models,
                },
                name: g.name,
                rpm: g.rates.rpm,
                tpm: g.rates.tpm,
                max_concurrent: g.rates.max_concurrent,
            })
            .collect(),
        accounts: setup
            .accounts
            .into_iter()
            .map(|a| pb::AddAccountRequest {
                name: a.name,
                group: a.group,
                balance_nanos: None,
                daily_limit_nanos: a.daily_limit,
                email: None,
                rpm: a.rates.rpm,
                tpm: a.rates.tpm,
                max_concurrent: a.rates.max_concurrent,
                weekly_limit_nanos: a.periods.weekly,
                monthly_limit_nanos: a.periods.monthly,
            })
            .collect(),
    }
}

/// What an import brings beyond its setup, from the wire.
pub fn imports_from_pb(r: &mut pb::ImportRequest) -> setup::Imports {
    setup::Imports {
        keys: std::mem::take(&mut r.keys)
            .into_iter()
            .map(|k| setup::ImportedKey {
                account: k.account,
                name: k.name,
                secret_hash: k.secret_hash,
                prefix: k.prefix,
                group: k.group,
                limit: k.limit_nanos,
                models: k.models,
                expires_at: k.expires_at_unix_micros,
                revoked: k.revoked,
            })
            .collect(),
        balances: std::mem::take(&mut r.balances)
            .into_iter()
            .map(|b| setup::ImportedBalance { account: b.account, amount: b.amount_nanos, note: b.note })
            .collect(),
        codes: std::mem::take(&mut r.codes)
            .into_iter()
            .map(|c| setup::ImportedCode { code: c.code, amount: c.amount_nanos })
            .collect(),
    }
}

/// What applying did to one item, for the wire.
pub fn change_to_pb(change: setup::Change) -> pb::SetupChange {
    pb::SetupChange {
        kind: change.kind.as_str().to_owned(),
        name: change.name,
        action: change.action.as_str().to_owned(),
    }
}

/// Which model group each model belongs to.
pub fn model_group_index(groups: &[ModelGroup]) -> HashMap<String, String> {
    groups.iter().flat_map(|g| g.members().into_iter().map(move |m| (m, g.name.clone()))).collect()
}

/// A model for the wire.
pub fn model_to_pb(model: Model, model_group: Option<String>) -> pb::Model {
    pb::Model {
        id: model.id,
        price: model.tariff().as_ref().map(tariff_to_pb),
        name: model.name,
        max_output_tokens: model.max_output_tokens,
        model_group,
    }
}

/// A model group for the wire.
pub fn model_group_to_pb(group: ModelGroup) -> pb::ModelGroup {
    pb::ModelGroup {
        id: group.id,
        models: group.members(),
        price: group.tariff().as_ref().map(tariff_to_pb),
        name: group.name,
    }
}

/// A model alias for the wire.
pub fn alias_to_pb(alias: Alias) -> pb::ModelAlias {
    pb::ModelAlias { id: alias.id, name: alias.name, target: alias.target }
}

/// A token group for the wire.
pub fn group_to_pb(group: Group) -> pb::Group {
    pb::Group {
        id: group.id,
        models: group.model_list(),
        name: group.name,
        multiplier_micros: group.multiplier_micros,
        all_models: group.all_models,
        rpm: group.rpm,
        tpm: group.tpm,
        max_concurrent: group.max_concurrent,
    }
}

/// An account for the wire.
pub fn account_to_pb(account: Account) -> pb::Account {
    pb::Account {
        id: account.id,
        name: account.name,
        group: account.group,
        balance_nanos: account.balance,
        reserved_nanos: account.reserved,
        daily_limit_nanos: account.daily_limit,
        spent_today_nanos: account.spent_today,
        created_at_unix_micros: account.created_at,
        email: account.email,
        disabled: account.disabled,
        has_password: account.has_password,
        rpm: account.rates.rpm,
        tpm: account.rates.tpm,
        max_concurrent: account.rates.max_concurrent,
        weekly_limit_nanos: account.periods.weekly,
        monthly_limit_nanos: account.periods.monthly,
        spent_this_week_nanos: account.spent_this_week,
        spent_this_month_nanos: account.spent_this_month,
    }
}

/// A key for the wire (no secret, no hash).
pub fn key_to_pb(key: Key) -> pb::Key {
    pb::Key {
        id: key.id,
        name: key.name,
        prefix: key.prefix,
        account: key.account,
        group: key.group,
        limit_nanos: key.limit,
        spent_nanos: key.spent,
        daily_limit_nanos: key.daily_limit,
        spent_today_nanos: key.spent_today,
        models: key.models,
        expires_at_unix_micros: key.expires_at,
        revoked: key.revoked,
        created_at_unix_micros: key.created_at,
        effective_group: key.effective_group,
        rpm: key.rates.rpm,
        tpm: key.rates.tpm,
        max_concurrent: key.rates.max_concurrent,
        weekly_limit_nanos: key.periods.weekly,
        monthly_limit_nanos: key.periods.monthly,
        spent_this_week_nanos: key.spent_this_week,
        spent_this_month_nanos: key.spent_this_month,
    }
}

/// A ledger entry for the wire.
pub fn entry_to_pb(entry: Entry) -> pb::LedgerEntry {
    pb::LedgerEntry {
        id: entry.id,
        account: entry.account,
        kind: entry.kind,
        amount_nanos: entry.amount,
        balance_after_nanos: entry.balance_after,
        request_id: entry.request_id,
        note: entry.note,
        created_at_unix_micros: entry.created_at,
    }
}

/// A redemption code for the wire.
pub fn code_to_pb(code: Code) -> pb::RedemptionCode {
    pb::RedemptionCode {
        id: code.id,
        code: code.code.unwrap_or_default(),
        prefix: code.prefix,
        amount_nanos: code.amount,
        redeemed_by: code.redeemed_by,
        redeemed_at_unix_micros: code.redeemed_at,
        created_at_unix_micros: code.created_at,
    }
}

/// A usage record for the wire.
pub fn usage_to_pb((row, account): (UsageRow, String)) -> pb::UsageRecord {
    let model = row.model;
    pb::UsageRecord {
        request_id: row.request_id,
        key_id: row.key_id,
        account,
        model: model.clone(),
        channel: row.channel,
        input_tokens: row.input_tokens,
        cached_input_tokens: row.cached_input_tokens,
        cache_write_tokens: row.cache_write_tokens,
        output_tokens: row.output_tokens,
        cost_nanos: row.cost,
        status: row.status,
        created_at_unix_micros: row.created_at,
        endpoint: row.endpoint,
        duration_ms: row.duration_ms,
        usage_adjusted: row.usage_adjusted,
        requested_model: row.requested_model.unwrap_or(model),
        client_protocol: row.client_protocol,
        upstream_protocol: row.upstream_protocol,
    }
}

/// A grant request from the wire (checked by the store).
pub fn lease_request_from_pb(request: &pb::AcquireLeaseRequest) -> LeaseRequest<'_> {
    LeaseRequest {
        node_id: &request.node_id,
        key_id: request.key_id,
        lease_id: request.lease_id.as_deref().filter(|id| !id.is_empty()),
        want: request.want_nanos,
        min: request.min_nanos,
    }
}

/// A grant for the wire.
pub fn grant_to_pb(grant: Grant) -> pb::Lease {
    pb::Lease {
        lease_id: grant.lease_id,
        key_id: grant.key_id,
        granted_nanos: grant.granted,
        held_nanos: grant.held,
        expires_at_unix_micros: grant.expires_at,
        limited_by: grant.limited_by.map(|l| l.as_str().to_owned()).unwrap_or_default(),
    }
}

/// A usage report from the wire (checked by the store).
pub fn report_from_pb(report: pb::UsageReport) -> Report {
    Report {
        request_id: report.request_id,
        key_id: report.key_id,
        model: report.model,
        channel: report.channel,
        endpoint: report.endpoint,
        input_tokens: report.input_tokens,
        cached_input_tokens: report.cached_input_tokens,
        cache_write_tokens: report.cache_write_tokens,
        output_tokens: report.output_tokens,
        cost: report.cost_nanos,
        status: report.status,
        created_at: report.created_at_unix_micros,
        duration_ms: report.duration_ms,
        first_byte_ms: report.first_byte_ms,
        lease_id: report.lease_id.filter(|id| !id.is_empty()),
        usage_adjusted: report.usage_adjusted,
        requested_model: report.requested_model,
        client_protocol: report.client_protocol,
        upstream_protocol: report.upstream_protocol,
    }
}

/// A report back on the wire: what the quarantine keeps of a refused one.
pub fn report_to_pb(report: &Report) -> pb::UsageReport {
    pb::UsageReport {
        request_id: report.request_id.clone(),
        key_id: report.key_id,
        model: report.model.clone(),
        channel: report.channel.clone(),
        endpoint: report.endpoint.clone(),
        input_tokens: report.input_tokens,
        cached_input_tokens: report.cached_input_tokens,
        cache_write_tokens: report.cache_write_tokens,
        output_tokens: report.output_tokens,
        cost_nanos: report.cost,
        status: report.status.clone(),
        created_at_unix_micros: report.created_at,
        duration_ms: report.duration_ms,
        first_byte_ms: report.first_byte_ms,
        lease_id: report.lease_id.clone(),
        usage_adjusted: report.usage_adjusted,
        requested_model: report.requested_model.clone(),
        client_protocol: report.client_protocol.clone(),
        upstream_protocol: report.upstream_protocol.clone(),
    }
}

/// A quarantined report for the wire (its report decoded again; undecodable: empty).
pub fn quarantined_to_pb(row: QuarantineRow) -> pb::QuarantinedReport {
    use prost::Message;
    let report = pb::UsageReport::decode(row.report.as_slice()).unwrap_or_else(|_| pb::UsageReport {
        request_id: row.request_id,
        key_id: row.key_id,
        ..pb::UsageReport::default()
    });
    pb::QuarantinedReport {
        id: row.id,
        reason: row.reason,
        node_id: row.node_id,
        received_at_unix_micros: row.received_at,
        report: Some(report),
    }
}

/// A price-table row for the wire.
pub fn price_entry_to_pb(entry: PriceEntry) -> pb::PricingEntry {
    pb::PricingEntry {
        price: Some(tariff_to_pb(&entry.tariff)),
        model: entry.model,
        model_group: entry.model_group,
        groups: entry
            .groups
            .into_iter()
            .map(|(name, multiplier)| pb::GroupMultiplier { name, multiplier_micros: multiplier.micros() })
            .collect(),
    }
}

/// A key as data planes need it.
pub fn policy_key_to_pb(key: PolicyKey) -> pb::PolicyKey {
    pb::PolicyKey {
        id: key.id,
        hash: decode_hex(&key.secret_hash),
        account_id: key.account_id,
        group_id: key.group_id,
        models: if key.models == "[]" { Vec::new() } else { crate::store::parse_json_list(&key.models) },
        expires_at_unix_micros: key.expires_at,
        rpm: key.rpm,
        tpm: key.tpm,
        max_concurrent: key.max_concurrent,
    }
}

/// An account as data planes need it.
pub fn policy_account_to_pb(account: PolicyAccount) -> pb::PolicyAccount {
    pb::PolicyAccount {
        id: account.id,
        name: account.name,
        group_id: account.group_id,
        rpm: account.rpm,
        tpm: account.tpm,
        max_concurrent: account.max_concurrent,
    }
}

/// A rate grant for the wire.
pub fn rate_grant_to_pb(grant: &RateGrant) -> pb::RateGrant {
    pb::RateGrant {
        slot: grant.slot,
        granted_requests: grant.granted_requests,
        granted_tokens: grant.granted_tokens,
        held_concurrent: grant.held_concurrent,
        usable_micros: grant.usable_micros,
        concurrent_usable_micros: grant.concurrent_usable_micros,
        room_requests: grant.room_requests,
        room_tokens: grant.room_tokens,
        requests_reset_micros: grant.requests_reset_micros,
        tokens_reset_micros: grant.tokens_reset_micros,
        limited_by: grant.limited_by.map(|l| l.as_str().to_owned()).unwrap_or_default(),
        window_micros: grant.window_micros,
    }
}

/// A rate limit from the wire: 0 (or absent) is none.
pub fn rate_from_pb(value: Option<i64>) -> Option<i64> {
    value.filter(|v| *v != 0)
}

/// A change of a limit from the wire: absent leaves it, 0 removes it.
pub fn limit_change_from_pb(value: Option<i64>) -> Option<Option<i64>> {
    value.map(|v| (v != 0).then_some(v))
}

/// Rate limits from the wire.
pub fn rates_from_pb(rpm: Option<i64>, tpm: Option<i64>, max_concurrent: Option<i64>) -> RateLimits {
    RateLimits {
        rpm: rate_from_pb(rpm),
        tpm: rate_from_pb(tpm),
        max_concurrent: rate_from_pb(max_concurrent),
    }
}

/// Changes of rate limits from the wire.
pub fn rate_change_from_pb(rpm: Option<i64>, tpm: Option<i64>, max_concurrent: Option<i64>) -> RateChange {
    RateChange {
        rpm: limit_change_from_pb(rpm),
        tpm: limit_change_from_pb(tpm),
        max_concurrent: limit_change_from_pb(max_concurrent),
    }
}

/// Weekly and monthly limits from the wire.
pub fn periods_from_pb(weekly: Option<i64>, monthly: Option<i64>) -> PeriodLimits {
    PeriodLimits { weekly: rate_from_pb(weekly), monthly: rate_from_pb(monthly) }
}

/// Changes of weekly and monthly limits from the wire.
pub fn period_change_from_pb(weekly: Option<i64>, monthly: Option<i64>) -> PeriodChange {
    PeriodChange { weekly: limit_change_from_pb(weekly), monthly: limit_change_from_pb(monthly) }
}

fn decode_hex(hex: &str) -> Vec<u8> {
    fn nibble(digit: u8) -> Option<u8> {
        (digit as char).to_digit(16).and_then(|n| u8::try_from(n).ok())
    }
    hex.as_bytes().chunks_exact(2).filter_map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?)).collect()
}

/// The kind of a removed entity on the wire.
pub fn entity_kind(kind: &str) -> pb::EntityKind {
    match kind {
        "channel" => pb::EntityKind::Channel,
        "model" => pb::EntityKind::Model,
        "model_group" => pb::EntityKind::ModelGroup,
        "alias" => pb::EntityKind::ModelAlias,
        "group" => pb::EntityKind::Group,
        "account" => pb::EntityKind::Account,
        "key" => pb::EntityKind::Key,
        _ => pb::EntityKind::Unspecified,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        assert_eq!(decode_hex("00ff10"), vec![0, 255, 16]);
        let hash = crate::store::keys::hash_secret("abc");
        assert_eq!(decode_hex(&hash).len(), 32);
    }

    #[test]
    fn prices_round_trip() {
        let tariff = Tariff::Tokens(TokenPrices {
            input: Money::from_nanos(150_000_000),
            output: Money::from_nanos(600_000_000),
            cached_input: Some(Money::from_nanos(75_000_000)),
            cache_write: None,
        });
        assert_eq!(tariff_from_pb(Some(&tariff_to_pb(&tariff))).ok(), Some(Some(tariff)));
        let per_call = Tariff::PerCall(Money::from_nanos(10));
        assert_eq!(tariff_from_pb(Some(&tariff_to_pb(&per_call))).ok(), Some(Some(per_call)));
        let negative = pb::Price { billing: Some(pb::price::Billing::PerCallNanos(-1)) };
        assert!(tariff_from_pb(Some(&negative)).is_err());
    }
}
