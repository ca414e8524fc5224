//! Their rows onto our setup, exactly as INTERFACE.md says: channel types 1/14/3/24, one
//! channel per key, base URLs to our convention, model ratio r → input price 2·r per 1M
//! tokens, completion ratio c → output price 2·r·c, a fixed model price → per-call price,
//! group ratios → multipliers, users → accounts (quota q → q / QuotaPerUnit, default 500,000),
//! tokens → keys by the hash of `sk-` + their key, unused redemption codes. Whatever has no
//! exact equivalent is listed in `unmappable`, never rounded or guessed silently.
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use router_proto::pb;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{TheirData, decimal::Decimal};

/// Quota units in one unit of money, unless their `QuotaPerUnit` option says otherwise.
pub const DEFAULT_QUOTA_PER_UNIT: i64 = 500_000;
/// Characters of a secret kept as its visible prefix (as for keys made here).
const PREFIX_CHARS: usize = 11;

/// The outcome of mapping.
#[derive(Debug, Default)]
pub struct Mapped {
    /// What to send to the control plane.
    pub request: pb::ImportRequest,
    /// Values with no exact equivalent (nothing is written while there are any, unless forced).
    pub unmappable: Vec<String>,
}

/// Their base URL in our convention for a channel type (they append `/v1/...` to OpenAI's).
fn base_url(kind: &str, theirs: &str) -> Option<String> {
    let theirs = theirs.trim().trim_end_matches('/');
    Some(match kind {
        "openai" => format!("{}/v1", if theirs.is_empty() { "https://api.openai.com" } else { theirs }),
        "anthropic" => if theirs.is_empty() { "https://api.anthropic.com" } else { theirs }.to_owned(),
        "gemini" => format!(
            "{}/v1beta/openai",
            if theirs.is_empty() { "https://generativelanguage.googleapis.com" } else { theirs }
        ),
        "azure" if !theirs.is_empty() => theirs.to_owned(),
        _ => return None,
    })
}

fn channel_type(kind: i64) -> Option<&'static str> {
    match kind {
        1 => Some("openai"),
        14 => Some("anthropic"),
        3 => Some("azure"),
        24 => Some("gemini"),
        _ => None,
    }
}

/// A name routerctl accepts: blanks, commas and control characters become `-`.
fn clean_name(name: &str) -> String {
    let cleaned: String = name
        .trim()
        .chars()
        .map(|c| if c.is_whitespace() || c.is_control() || c == ',' { '-' } else { c })
        .collect();
    cleaned.chars().take(180).collect()
}

fn split_list(text: &str) -> Vec<String> {
    let mut items: Vec<String> = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if !items.iter().any(|i| i == item) {
            items.push(item.to_owned());
        }
    }
    items
}

/// A JSON object of numbers from their options table, as exact decimals.
fn ratios(
    options: &BTreeMap<String, String>,
    key: &str,
    unmappable: &mut Vec<String>,
) -> BTreeMap<String, Decimal> {
    let Some(text) = options.get(key).filter(|t| !t.trim().is_empty()) else { return BTreeMap::new() };
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(text) else {
        unmappable.push(format!("option {key} is not a JSON object"));
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    for (name, value) in map {
        match value.as_number().and_then(|n| Decimal::parse(&n.to_string())) {
            Some(decimal) => {
                out.insert(name, decimal);
            }
            None => unmappable.push(format!("option {key}: {name} = {value} is not a number")),
        }
    }
    out
}

/// `quota` quota units in nano-units, when exact.
fn quota_nanos(quota: i64, per_unit: i64) -> Option<i64> {
    Decimal::integer(quota).divided_by(per_unit, 9)?.in_units(9)
}

/// Maps their data; `now` (unix seconds) decides which codes have expired.
pub fn map(data: &TheirData, now: i64) -> Mapped {
    let mut unmappable = Vec::new();
    let mut request = pb::ImportRequest::default();
    let per_unit =
        match data.options.get("QuotaPerUnit").map(|t| Decimal::parse(t).and_then(|d| d.in_units(0))) {
            None => DEFAULT_QUOTA_PER_UNIT,
            Some(Some(n)) if n > 0 => n,
            Some(_) => {
                unmappable.push(format!(
                    "option QuotaPerUnit = {:?} is not a positive integer",
                    data.options["QuotaPerUnit"]
                ));
                DEFAULT_QUOTA_PER_UNIT
            }
        };
    let money = |quota: i64, what: &str, unmappable: &mut Vec<String>| {
        let nanos = quota_nanos(quota, per_unit);
        if nanos.is_none() {
            unmappable.push(format!("{what}: {quota} quota is not an exact amount ({per_unit} quota = 1)"));
        }
        nanos
    };

    // Token groups, from their group ratios and every group a user or token names.
    let group_ratios = ratios(&data.options, "GroupRatio", &mut unmappable);
    let mut groups: BTreeMap<String, Option<i64>> = BTreeMap::new();
    for (name, ratio) in &group_ratios {
        match ratio.in_units(6) {
            Some(micros) if micros >= 0 => {
                groups.insert(name.clone(), Some(micros));
            }
            _ => {
                unmappable.push(format!("group {name}: ratio has more than 6 decimal places or is negative"))
            }
        }
    }
    let named_groups =
        data.users.iter().map(|u| u.group.as_str()).chain(data.tokens.iter().map(|t| t.group.as_str()));
    for group in named_groups.map(str::trim).filter(|g| !g.is_empty()) {
        groups.entry(group.to_owned()).or_insert(None);
    }
    for (name, micros) in &groups {
        request.setup.get_or_insert_default().groups.push(pb::AddGroupRequest {
            name: name.clone(),
            multiplier_micros: micros.or(Some(1_000_000)),
            models: Vec::new(),
            ..pb::AddGroupRequest::default()
        });
    }
    let all_groups: BTreeSet<&str> = groups.keys().map(String::as_str).collect();

    // Prices.
    let model_ratio = ratios(&data.options, "ModelRatio", &mut unmappable);
    let completion_ratio = ratios(&data.options, "CompletionRatio", &mut unmappable);
    let model_price = ratios(&data.options, "ModelPrice", &mut unmappable);
    let two = Decimal::integer(2);
    let mut priced: HashSet<String> = HashSet::new();
    let names: BTreeSet<&String> = model_ratio.keys().chain(model_price.keys()).collect();
    for name in names {
        let price = if let Some(price) = model_price.get(name) {
            match price.in_units(9) {
                Some(nanos) if nanos >= 0 => pb::price::Billing::PerCallNanos(nanos),
                _ => {
                    unmappable.push(format!("model {name}: price {price:?} is not an exact amount"));
                    continue;
                }
            }
        } else {
            let ratio = model_ratio[name];
            let completion = match completion_ratio.get(name) {
                Some(c) => *c,
                None => {
                    unmappable.push(format!(
                        "model {name}: no completion ratio in the options table (their built-in default applies there; 1 is used here)"
                    ));
                    Decimal::integer(1)
                }
            };
            let input = two.times(ratio).and_then(|d| d.in_units(9));
            let output = two.times(ratio).and_then(|d| d.times(completion)).and_then(|d| d.in_units(9));
            match (input, output) {
                (Some(input), Some(output)) if input >= 0 && output >= 0 => {
                    pb::price::Billing::Tokens(pb::TokenPrice {
                        input_nanos: input,
                        output_nanos: output,
                        cached_input_nanos: None,
                        cache_write_nanos: None,
                    })
                }
                _ => {
                    unmappable.push(format!("model {name}: its ratios give no exact price in nano-units"));
                    continue;
                }
            }
        };
        priced.insert(name.clone());
        request.setup.get_or_insert_default().models.push(pb::SetModelRequest {
            name: name.clone(),
            price: Some(pb::Price { billing: Some(price) }),
            max_output_tokens: None,
        });
    }

    // Channels: one per key.
    let mut taken: HashSet<String> = HashSet::new();
    for channel in &data.channels {
        let label = format!("channel {:?} (id {})", channel.name, channel.id);
        let Some(kind) = channel_type(channel.kind) else {
            unmappable.push(format!(
                "{label}: type {} has no equivalent (openai 1, azure 3, anthropic 14, gemini 24)",
                channel.kind
            ));
            continue;
        };
        let Some(base) = base_url(kind, &channel.base_url) else {
            unmappable.push(format!("{label}: an azure channel needs a base URL"));
            continue;
        };
        let models = split_list(&channel.models);
        if models.is_empty() {
            unmappable.push(format!("{label}: serves no models"));
            continue;
        }
        for model in models.iter().filter(|m| !priced.contains(*m)) {
            unmappable.push(format!("{label}: model {model} has no ratio or price in the options table"));
        }
        let mapping = channel.model_mapping.trim();
        let model_map: HashMap<String, String> = if mapping.is_empty() || mapping == "{}" {
            HashMap::new()
        } else {
            match serde_json::from_str::<HashMap<String, String>>(mapping) {
                Ok(map) => map,
                Err(_) => {
                    unmappable.push(format!("{label}: model_mapping is not a JSON object of names"));
                    continue;
                }
            }
        };
        let channel_groups: BTreeSet<&str> =
            channel.group.split(',').map(str::trim).filter(|g| !g.is_empty()).collect();
        if !channel_groups.is_empty() && channel_groups != all_groups {
            unmappable.push(format!(
                "{label}: limited to groups {:?}; channels here serve every group",
                channel_groups.iter().collect::<Vec<_>>()
            ));
        }
        let (Ok(priority), Ok(weight)) =
            (i32::try_from(channel.priority), i32::try_from(channel.weight.max(0)))
        else {
            unmappable.push(format!("{label}: priority or weight out of range"));
            continue;
        };
        if channel.key.trim_start().starts_with('[') {
            unmappable
                .push(format!("{label}: a JSON key list (service-account credentials) has no equivalent"));
            continue;
        }
        let keys: Vec<&str> = channel.key.split('\n').map(str::trim).filter(|k| !k.is_empty()).collect();
        if keys.is_empty() {
            unmappable.push(format!("{label}: has no key"));
            continue;
        }
        let mut stem = clean_name(&channel.name);
        if stem.is_empty() || taken.contains(&stem) {
            stem = format!("{}-{}", if stem.is_empty() { "channel" } else { &stem }, channel.id);
        }
        for (index, key) in keys.iter().enumerate() {
            let name = if keys.len() == 1 { stem.clone() } else { format!("{stem}-{}", index + 1) };
            taken.insert(name.clone());
            request.setup.get_or_insert_default().channels.push(pb::DeclaredChannel {
                channel: Some(pb::AddChannelRequest {
                    name,
                    r#type: kind.to_owned(),
                    base_url: base.clone(),
                    api_key: (*key).to_owned(),
                    models: models.clone(),
                    priority: Some(priority),
                    weight: Some(weight),
                    model_map: model_map.clone(),
                    api_version: (kind == "azure")
                        .then(|| channel.other.trim().to_owned())
                        .filter(|v| !v.is_empty()),
                    // new-api's channel types map to ours with our defaults.
                    protocols: Vec::new(),
                    messages_base_url: None,
                }),
                enabled: Some(channel.status == 1),
            });
        }
        taken.insert(stem);
    }

    // Users and their tokens.
    let mut accounts: HashMap<i64, (String, bool)> = HashMap::new();
    for user in &data.users {
        let name = user.username.trim();
        let valid = !name.is_empty()
            && name.len() <= 200
            && !name.chars().any(|c| c.is_whitespace() || c.is_control() || c == ',');
        if !valid {
            unmappable.push(format!(
                "user {:?} (id {}): the name is not a valid account name",
                user.username, user.id
            ));
            continue;
        }
        let Some(balance) = money(user.quota, &format!("user {name}"), &mut unmappable) else { continue };
        if balance < 0 {
            unmappable.push(format!("user {name}: negative quota {}", user.quota));
            continue;
        }
        let group = user.group.trim();
        request.setup.get_or_insert_default().accounts.push(pb::AddAccountRequest {
            name: name.to_owned(),
            group: Some(if group.is_empty() { "default" } else { group }.to_owned()),
            balance_nanos: None,
            daily_limit_nanos: None,
            email: None,
            ..pb::AddAccountRequest::default()
        });
        request.balances.push(pb::ImportedBalance {
            account: name.to_owned(),
            amount_nanos: balance,
            note: format!("imported: {} quota", user.quota),
        });
        accounts.insert(user.id, (name.to_owned(), user.status == 1));
    }
    for token in &data.tokens {
        let label = format!("token {:?} (id {})", token.name, token.id);
        let Some((account, active)) = accounts.get(&token.user_id) else {
            unmappable.push(format!("{label}: its user {} is not imported", token.user_id));
            continue;
        };
        let key = token.key.trim();
        if key.is_empty() {
            unmappable.push(format!("{label}: has no key"));
            continue;
        }
        let secret = format!("sk-{key}");
        let limit = if token.unlimited_quota {
            None
        } else {
            match money(token.remain_quota.max(0), &label, &mut unmappable) {
                Some(nanos) => Some(nanos),
                None => continue,
            }
        };
        let group = token.group.trim();
        request.keys.push(pb::ImportedKey {
            account: account.clone(),
            name: token.name.clone(),
            secret_hash: Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect(),
            prefix: secret.chars().take(PREFIX_CHARS).collect(),
            group: (!group.is_empty()).then(|| group.to_owned()),
            limit_nanos: limit,
            models: split_list(&token.models),
            expires_at_unix_micros: (token.expired_time >= 0)
                .then(|| token.expired_time.saturating_mul(1_000_000)),
            // Disabled tokens and tokens of disabled users stay refused.
            revoked: token.status == 2 || !active,
        });
    }

    // Unused, unexpired redemption codes.
    for code in data.codes.iter().filter(|c| c.status == 1) {
        if code.expired_time > 0 && code.expired_time < now {
            continue;
        }
        let Some(amount) = money(code.quota, &format!("redemption code id {}", code.id), &mut unmappable)
        else {
            continue;
        };
        if amount <= 0 || code.key.trim().is_empty() {
            unmappable.push(format!("redemption code id {}: empty or worth nothing", code.id));
            continue;
        }
        request.codes.push(pb::ImportedCode { code: code.key.trim().to_owned(), amount_nanos: amount });
    }
    Mapped { request, unmappable }
}

#[cfg(test)]
mod tests;
