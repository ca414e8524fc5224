//! The setup file of `routerctl apply` and `routerctl export`: TOML arrays of tables named
//! `channel`, `model`, `model_group`, `alias`, `group` and `account`, whose fields are the long flag
//! names of the matching `add`/`set` commands with `_` (amounts as decimal strings).
//!
//! A field added to a command is one field in one item struct here plus its line in that
//! item's `to_proto`/`from_proto`.
mod secrets;
mod values;

use std::{collections::BTreeMap, ops::Range, path::Path};

use router_proto::pb;
use serde::{Deserialize, Serialize};
use toml::Spanned;
pub use values::{Amount, Factor};

use crate::{args, commands::channel::ChannelType, error::Error};

/// A whole setup file.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetupFile {
    /// Upstream channels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channel: Vec<ChannelItem>,
    /// Models with their own price.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub model: Vec<ModelItem>,
    /// Model groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub model_group: Vec<ModelGroupItem>,
    /// Model aliases.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alias: Vec<AliasItem>,
    /// Token groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group: Vec<GroupItem>,
    /// Accounts (never their balance).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub account: Vec<AccountItem>,
}

/// `[[channel]]`: the flags of `channel add`, plus `enabled`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelItem {
    /// `--name`.
    pub name: Spanned<String>,
    /// `--type`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `--base-url`.
    pub base_url: String,
    /// `--api-key`: the key, `env:NAME` or `file:PATH`.
    pub api_key: String,
    /// `--models`.
    pub models: Vec<String>,
    /// `--protocols` (absent: the type's defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocols: Option<Vec<String>>,
    /// `--messages-base-url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages_base_url: Option<String>,
    /// `--priority`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// `--weight`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
    /// `--api-version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// `false`: disabled (absent: a new channel is enabled, an existing one keeps its state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// `--model-map`, as a table.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub model_map: BTreeMap<String, String>,
}

/// `[[model]]`: the flags of `model set`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelItem {
    /// The model's name.
    pub name: Spanned<String>,
    /// `--input-price`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_price: Option<Amount>,
    /// `--output-price`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_price: Option<Amount>,
    /// `--cached-input-price`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input_price: Option<Amount>,
    /// `--cache-write-price`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_price: Option<Amount>,
    /// `--per-call`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_call: Option<Amount>,
    /// `--max-output-tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<i64>,
}

/// `[[model_group]]`: the flags of `model-group add`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelGroupItem {
    /// The group's name.
    pub name: Spanned<String>,
    /// `--models`.
    pub models: Vec<String>,
    /// `--input-price`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_price: Option<Amount>,
    /// `--output-price`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_price: Option<Amount>,
    /// `--cached-input-price`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input_price: Option<Amount>,
    /// `--cache-write-price`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_price: Option<Amount>,
    /// `--per-call`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_call: Option<Amount>,
}

/// `[[alias]]`: the arguments of `model alias NAME TARGET`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliasItem {
    /// The name clients send; ending in `*`, a prefix pattern.
    pub name: Spanned<String>,
    /// The priced model it is served and billed as.
    pub target: String,
}

/// `[[group]]`: the flags of `group add`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupItem {
    /// The group's name.
    pub name: Spanned<String>,
    /// `--multiplier` (default "1").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multiplier: Option<Factor>,
    /// `--all-models` (the default when `models` is absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all_models: Option<bool>,
    /// `--models`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    /// `--rpm` (requests per minute; absent or 0: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u32>,
    /// `--tpm` (tokens per minute; absent or 0: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u32>,
    /// `--max-concurrent` (requests in flight; absent or 0: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u32>,
}

/// `[[account]]`: the flags of `account add` but `--balance`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountItem {
    /// The account's name.
    pub name: Spanned<String>,
    /// `--group` (default `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// `--daily-limit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_limit: Option<Amount>,
    /// `--weekly-limit` (UTC weeks from Monday).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weekly_limit: Option<Amount>,
    /// `--monthly-limit` (UTC calendar months).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_limit: Option<Amount>,
    /// `--rpm` (requests per minute; absent or 0: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u32>,
    /// `--tpm` (tokens per minute; absent or 0: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u32>,
    /// `--max-concurrent` (requests in flight; absent or 0: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u32>,
}

/// A parsed setup file and where it came from, for error messages.
#[derive(Debug)]
pub struct Parsed {
    /// What the file declares.
    pub file: SetupFile,
    /// The file's name as given.
    pub path: String,
    text: String,
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|b| **b == b'\n').count() + 1
}

impl Parsed {
    /// Parses `text`, read from `path`; a bad file is an error naming its line.
    pub fn parse(path: &str, text: String) -> Result<Parsed, Error> {
        match toml::from_str::<SetupFile>(&text) {
            Ok(file) => Ok(Parsed { file, path: path.to_owned(), text }),
            Err(error) => {
                let place = match error.span() {
                    Some(span) => {
                        let line = line_of(&text, span.start);
                        let start = text[..span.start.min(text.len())].rfind('\n').map_or(0, |i| i + 1);
                        format!("{path}:{line}:{}", span.start - start + 1)
                    }
                    None => path.to_owned(),
                };
                Err(Error::Invalid(format!("{place}: {}", error.message().trim_end())))
            }
        }
    }

    fn at(&self, span: Range<usize>, message: impl std::fmt::Display) -> Error {
        Error::Invalid(format!("{}:{}: {message}", self.path, line_of(&self.text, span.start)))
    }

    /// Every item's kind, name and the span of its name.
    fn items(&self) -> Vec<(&'static str, &Spanned<String>)> {
        let f = &self.file;
        let mut items: Vec<(&'static str, &Spanned<String>)> = Vec::new();
        items.extend(f.channel.iter().map(|i| ("channel", &i.name)));
        items.extend(f.model.iter().map(|i| ("model", &i.name)));
        items.extend(f.model_group.iter().map(|i| ("model_group", &i.name)));
        items.extend(f.alias.iter().map(|i| ("alias", &i.name)));
        items.extend(f.group.iter().map(|i| ("group", &i.name)));
        items.extend(f.account.iter().map(|i| ("account", &i.name)));
        items
    }

    /// Puts the file and line in front of a control plane's error about one of the items.
    pub fn locate(&self, error: Error) -> Error {
        let Error::Server(message) = &error else { return error };
        let found = self.items().into_iter().find(|(kind, name)| {
            message.starts_with(&format!("{kind} {:?}", name.get_ref()))
                || message.starts_with(&format!("{} {:?}", kind.replace('_', " "), name.get_ref()))
        });
        match found {
            Some((_, name)) => self.at(name.span(), message),
            None => error,
        }
    }

    /// The setup for the wire, secrets resolved (`file:` paths relative to the file's folder).
    pub fn to_proto(&self) -> Result<pb::Setup, Error> {
        let base = Path::new(&self.path).parent().unwrap_or(Path::new(""));
        let mut setup = pb::Setup::default();
        for item in &self.file.channel {
            let fail = |message: String| {
                self.at(item.name.span(), format!("channel {:?}: {message}", item.name.get_ref()))
            };
            setup.channels.push(channel_to_proto(item, base).map_err(fail)?);
        }
        for item in &self.file.model {
            let fail = |message: String| {
                self.at(item.name.span(), format!("model {:?}: {message}", item.name.get_ref()))
            };
            let price = price_to_proto(
                item.input_price,
                item.output_price,
                item.cached_input_price,
                item.cache_write_price,
                item.per_call,
            )
            .map_err(fail)?
            .ok_or_else(|| fail("a model needs a price: input_price and output_price, or per_call".into()))?;
            setup.models.push(pb::SetModelRequest {
                name: item.name.get_ref().clone(),
                price: Some(price),
                max_output_tokens: item.max_output_tokens,
            });
        }
        for item in &self.file.model_group {
            let fail = |message: String| {
                self.at(item.name.span(), format!("model_group {:?}: {message}", item.name.get_ref()))
            };
            setup.model_groups.push(pb::AddModelGroupRequest {
                name: item.name.get_ref().clone(),
                models: item.models.clone(),
                price: price_to_proto(
                    item.input_price,
                    item.output_price,
                    item.cached_input_price,
                    item.cache_write_price,
                    item.per_call,
                )
                .map_err(fail)?,
            });
        }
        for item in &self.file.alias {
            setup.aliases.push(pb::SetModelAliasRequest {
                name: item.name.get_ref().clone(),
                target: item.target.clone(),
            });
        }
        for item in &self.file.group {
            let fail = |message: &str| {
                self.at(item.name.span(), format!("group {:?}: {message}", item.name.get_ref()))
            };
            let models = match (item.all_models, &item.models) {
                (Some(true), Some(_)) => {
                    return Err(fail("give either models or all_models = true, not both"));
                }
                (Some(false), None) => return Err(fail("all_models = false needs a list of models")),
                (_, Some(models)) if models.is_empty() => {
                    return Err(fail("models is empty (say all_models = true)"));
                }
                (_, models) => models.clone().unwrap_or_default(),
            };
            setup.groups.push(pb::AddGroupRequest {
                name: item.name.get_ref().clone(),
                multiplier_micros: item.multiplier.map(|m| m.0.micros()),
                models,
                rpm: wire_rate(item.rpm),
                tpm: wire_rate(item.tpm),
                max_concurrent: wire_rate(item.max_concurrent),
            });
        }
        for item in &self.file.account {
            setup.accounts.push(pb::AddAccountRequest {
                name: item.name.get_ref().clone(),
                group: item.group.clone(),
                balance_nanos: None,
                daily_limit_nanos: values::nanos(item.daily_limit),
                email: None,
                rpm: wire_rate(item.rpm),
                tpm: wire_rate(item.tpm),
                max_concurrent: wire_rate(item.max_concurrent),
                weekly_limit_nanos: values::nanos(item.weekly_limit),
                monthly_limit_nanos: values::nanos(item.monthly_limit),
            });
        }
        Ok(setup)
    }
}

/// A declared rate limit on the wire (0: none, as `--rpm 0`).
fn wire_rate(limit: Option<u32>) -> Option<i64> {
    limit.filter(|l| *l > 0).map(i64::from)
}

/// A stored rate limit in a file.
fn file_rate(limit: Option<i64>) -> Option<u32> {
    limit.filter(|l| *l > 0).map(|l| u32::try_from(l).unwrap_or(u32::MAX))
}

fn channel_to_proto(item: &ChannelItem, base: &Path) -> Result<pb::DeclaredChannel, String> {
    let kind = <ChannelType as clap::ValueEnum>::from_str(&item.kind, false)
        .map_err(|_| format!("unknown type {:?} (expected openai, anthropic, azure or gemini)", item.kind))?;
    let base_url = args::base_url(&item.base_url)?;
    let api_key = secrets::resolve(&item.api_key, base).map_err(|e| format!("api_key: {e}"))?;
    let protocols = match &item.protocols {
        Some(list) if list.is_empty() => {
            return Err("protocols must not be empty (omit it for the type's defaults)".into());
        }
        Some(list) => args::protocols(&list.join(",")).map_err(|e| format!("protocols: {e}"))?.0,
        None => Vec::new(),
    };
    let messages_base_url = item.messages_base_url.as_deref().map(args::base_url).transpose()?;
    Ok(pb::DeclaredChannel {
        channel: Some(pb::AddChannelRequest {
            name: item.name.get_ref().clone(),
            r#type: kind.as_str().to_owned(),
            base_url,
            api_key,
            models: item.models.clone(),
            priority: item.priority,
            weight: item.weight,
            model_map: item.model_map.clone().into_iter().collect(),
            api_version: item.api_version.clone(),
            protocols,
            messages_base_url,
        }),
        enabled: item.enabled,
    })
}

/// The price of a model or model group from its price fields; `None` when there are none.
fn price_to_proto(
    input: Option<Amount>,
    output: Option<Amount>,
    cached_input: Option<Amount>,
    cache_write: Option<Amount>,
    per_call: Option<Amount>,
) -> Result<Option<pb::Price>, String> {
    let billing = match (per_call, input, output) {
        (Some(_), _, _)
            if input.is_some() || output.is_some() || cached_input.is_some() || cache_write.is_some() =>
        {
            return Err("per_call cannot be combined with token prices".into());
        }
        (Some(price), None, None) => pb::price::Billing::PerCallNanos(price.0.nanos()),
        (None, Some(input), Some(output)) => pb::price::Billing::Tokens(pb::TokenPrice {
            input_nanos: input.0.nanos(),
            output_nanos: output.0.nanos(),
            cached_input_nanos: values::nanos(cached_input),
            cache_write_nanos: values::nanos(cache_write),
        }),
        (None, None, None) if cached_input.is_none() && cache_write.is_none() => return Ok(None),
        _ => return Err("token prices need both input_price and output_price".into()),
    };
    Ok(Some(pb::Price { billing: Some(billing) }))
}

/// The price fields of a price: (input, output, cached input, cache write, per call).
type PriceFields = (Option<Amount>, Option<Amount>, Option<Amount>, Option<Amount>, Option<Amount>);

fn price_fields(price: Option<&pb::Price>) -> PriceFields {
    match price.and_then(|p| p.billing.as_ref()) {
        None => (None, None, None, None, None),
        Some(pb::price::Billing::PerCallNanos(nanos)) => {
            (None, None, None, None, values::amount(Some(*nanos)))
        }
        Some(pb::price::Billing::Tokens(t)) => (
            values::amount(Some(t.input_nanos)),
            values::amount(Some(t.output_nanos)),
            values::amount(t.cached_input_nanos),
            values::amount(t.cache_write_nanos),
            None,
        ),
    }
}

/// What `export` prints first.
const HEADER: &str = "# Code Router setup (routerctl export). Apply with: routerctl apply -f FILE\n";

/// The current setup as a file; without `with_secrets` each channel key is an `env:` reference.
pub fn from_proto(setup: pb::Setup, with_secrets: bool) -> SetupFile {
    let spanned = |name: String| Spanned::new(0..0, name);
    let names: Vec<String> = setup
        .channels
        .iter()
        .map(|c| secrets::channel_key_var(c.channel.as_ref().map_or("", |c| c.name.as_str())))
        .collect();
    let vars = secrets::unique_vars(names);
    let channel = setup
        .channels
        .into_iter()
        .zip(vars)
        .filter_map(|(declared, var)| {
            let c = declared.channel?;
            Some(ChannelItem {
                name: spanned(c.name),
                kind: c.r#type,
                base_url: c.base_url,
                api_key: if with_secrets { c.api_key } else { format!("env:{var}") },
                models: c.models,
                protocols: (!c.protocols.is_empty()).then_some(c.protocols),
                messages_base_url: c.messages_base_url,
                priority: c.priority,
                weight: c.weight,
                api_version: c.api_version,
                // Only a disabled channel says so: enabled is what a new channel is anyway.
                enabled: declared.enabled.filter(|enabled| !enabled),
                model_map: c.model_map.into_iter().collect(),
            })
        })
        .collect();
    let model = setup
        .models
        .into_iter()
        .map(|m| {
            let (input_price, output_price, cached_input_price, cache_write_price, per_call) =
                price_fields(m.price.as_ref());
            ModelItem {
                name: spanned(m.name),
                input_price,
                output_price,
                cached_input_price,
                cache_write_price,
                per_call,
                max_output_tokens: m.max_output_tokens,
            }
        })
        .collect();
    let model_group = setup
        .model_groups
        .into_iter()
        .map(|g| {
            let (input_price, output_price, cached_input_price, cache_write_price, per_call) =
                price_fields(g.price.as_ref());
            ModelGroupItem {
                name: spanned(g.name),
                models: g.models,
                input_price,
                output_price,
                cached_input_price,
                cache_write_price,
                per_call,
            }
        })
        .collect();
    let alias =
        setup.aliases.into_iter().map(|a| AliasItem { name: spanned(a.name), target: a.target }).collect();
    let group = setup
        .groups
        .into_iter()
        .map(|g| GroupItem {
            name: spanned(g.name),
            multiplier: g.multiplier_micros.and_then(router_proto::Multiplier::from_micros).map(Factor),
            all_models: g.models.is_empty().then_some(true),
            models: (!g.models.is_empty()).then_some(g.models),
            rpm: file_rate(g.rpm),
            tpm: file_rate(g.tpm),
            max_concurrent: file_rate(g.max_concurrent),
        })
        .collect();
    let account = setup
        .accounts
        .into_iter()
        .map(|a| AccountItem {
            name: spanned(a.name),
            group: a.group,
            daily_limit: values::amount(a.daily_limit_nanos),
            weekly_limit: values::amount(a.weekly_limit_nanos.filter(|l| *l > 0)),
            monthly_limit: values::amount(a.monthly_limit_nanos.filter(|l| *l > 0)),
            rpm: file_rate(a.rpm),
            tpm: file_rate(a.tpm),
            max_concurrent: file_rate(a.max_concurrent),
        })
        .collect();
    SetupFile { channel, model, model_group, alias, group, account }
}

/// The file's text: the same setup always gives the same bytes.
pub fn render(file: &SetupFile) -> Result<String, Error> {
    let body =
        toml::to_string(file).map_err(|e| Error::Invalid(format!("cannot write the setup as TOML: {e}")))?;
    Ok(format!("{HEADER}\n{body}"))
}

#[cfg(test)]
mod tests;
