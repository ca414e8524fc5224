//! Channels, models and groups, with the indexes the request path reads: price by model name,
//! group by id, and the enabled channels that serve a model over each protocol they speak
//! natively (`--protocols`).
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
};

use router_proto::{Money, Multiplier, Tariff, TokenPrices, pb};
use router_upstream::{Kind, Upstream};

/// The wire protocol of an endpoint: a channel serves it natively when it lists it in its
/// protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// OpenAI Chat Completions.
    Chat = 0,
    /// OpenAI legacy completions.
    Completions = 1,
    /// OpenAI embeddings.
    Embeddings = 2,
    /// OpenAI Responses API.
    Responses = 3,
    /// Anthropic Messages (and its `count_tokens`).
    Messages = 4,
}

/// How many protocols there are.
const PROTOCOLS: usize = 5;

impl Protocol {
    fn parse(name: &str) -> Option<Protocol> {
        Some(match name {
            "chat" => Protocol::Chat,
            "completions" => Protocol::Completions,
            "embeddings" => Protocol::Embeddings,
            "responses" => Protocol::Responses,
            "messages" => Protocol::Messages,
            _ => return None,
        })
    }

    /// The name `--protocols` and usage records use.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Chat => "chat",
            Protocol::Completions => "completions",
            Protocol::Embeddings => "embeddings",
            Protocol::Responses => "responses",
            Protocol::Messages => "messages",
        }
    }
}

/// The enabled channels serving one model, by protocol, highest priority first.
pub type Routes = [Vec<Arc<ChannelInfo>>; PROTOCOLS];

/// An enabled channel, ready to forward to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelInfo {
    /// Row id.
    pub id: i64,
    /// Name (in usage records and metrics; shared, so labelling a request allocates nothing).
    pub name: Arc<str>,
    /// Where and how to reach its upstream.
    pub upstream: Upstream,
    /// Higher first.
    pub priority: i32,
    /// Weighted random within a priority.
    pub weight: u32,
    /// Client model name -> upstream model name.
    pub model_map: HashMap<String, String>,
}

impl ChannelInfo {
    /// The model name to send upstream for `model`.
    pub fn upstream_model<'a>(&'a self, model: &'a str) -> &'a str {
        self.model_map.get(model).map_or(model, String::as_str)
    }
}

/// A priced model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// Name clients send (shared, so labelling a request allocates nothing).
    pub name: Arc<str>,
    /// Price in force (own, else its model group's).
    pub tariff: Tariff,
    /// Output cap for estimates.
    pub max_output_tokens: Option<u64>,
    /// Its model group.
    pub model_group: Option<String>,
}

/// A token group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    /// Name.
    pub name: String,
    /// Price multiplier.
    pub multiplier: Multiplier,
    /// Reaches every model.
    pub all_models: bool,
    /// Reachable model or model-group names.
    pub models: HashSet<String>,
    /// Rate limits of its keys that set none of their own.
    pub rates: super::RateLimits,
}

impl GroupInfo {
    /// Whether a key in this group may call `model`.
    pub fn reaches(&self, model: &ModelInfo) -> bool {
        self.all_models
            || self.models.contains(&*model.name)
            || model.model_group.as_ref().is_some_and(|g| self.models.contains(g))
    }
}

/// The catalog as received, by id: what deltas are applied to.
#[derive(Debug, Clone, Default)]
pub struct RawCatalog {
    /// Currency display name.
    pub currency: String,
    channels: BTreeMap<i64, pb::Channel>,
    models: BTreeMap<i64, pb::Model>,
    model_groups: BTreeMap<i64, pb::ModelGroup>,
    groups: BTreeMap<i64, pb::Group>,
    aliases: BTreeMap<i64, pb::ModelAlias>,
}

impl RawCatalog {
    /// Adds or replaces entities.
    pub fn upsert(
        &mut self,
        channels: &[pb::Channel],
        models: &[pb::Model],
        model_groups: &[pb::ModelGroup],
        groups: &[pb::Group],
    ) {
        self.channels.extend(channels.iter().map(|c| (c.id, c.clone())));
        self.models.extend(models.iter().map(|m| (m.id, m.clone())));
        self.model_groups.extend(model_groups.iter().map(|g| (g.id, g.clone())));
        self.groups.extend(groups.iter().map(|g| (g.id, g.clone())));
    }

    /// Removes entities by id.
    pub fn remove(&mut self, channels: &[i64], models: &[i64], model_groups: &[i64], groups: &[i64]) {
        channels.iter().for_each(|id| drop(self.channels.remove(id)));
        models.iter().for_each(|id| drop(self.models.remove(id)));
        model_groups.iter().for_each(|id| drop(self.model_groups.remove(id)));
        groups.iter().for_each(|id| drop(self.groups.remove(id)));
    }

    /// Adds or replaces model aliases.
    pub fn upsert_aliases(&mut self, aliases: &[pb::ModelAlias]) {
        self.aliases.extend(aliases.iter().map(|a| (a.id, a.clone())));
    }

    /// Removes model aliases by id.
    pub fn remove_aliases(&mut self, ids: impl IntoIterator<Item = i64>) {
        ids.into_iter().for_each(|id| drop(self.aliases.remove(&id)));
    }
}

/// Reads a price from the wire.
pub fn tariff(price: Option<&pb::Price>) -> Option<Tariff> {
    match price?.billing.as_ref()? {
        pb::price::Billing::PerCallNanos(nanos) => Some(Tariff::PerCall(Money::from_nanos(*nanos))),
        pb::price::Billing::Tokens(t) => Some(Tariff::Tokens(TokenPrices {
            input: Money::from_nanos(t.input_nanos),
            output: Money::from_nanos(t.output_nanos),
            cached_input: t.cached_input_nanos.map(Money::from_nanos),
            cache_write: t.cache_write_nanos.map(Money::from_nanos),
        })),
    }
}

/// The indexed catalog.
#[derive(Debug, Default)]
pub struct Catalog {
    raw: RawCatalog,
    /// Currency display name.
    pub currency: String,
    models: HashMap<String, Arc<ModelInfo>>,
    groups: HashMap<i64, GroupInfo>,
    routes: HashMap<String, Routes>,
    served: HashSet<String>,
    /// Exact aliases: name -> the priced model they are served as.
    aliases: HashMap<String, Arc<ModelInfo>>,
    /// Prefix patterns (the name without its `*`), longest first.
    patterns: Vec<(String, Arc<ModelInfo>)>,
}

impl Catalog {
    /// Indexes a raw catalog.
    pub fn build(raw: RawCatalog) -> Catalog {
        let mut group_of: HashMap<&str, &pb::ModelGroup> = HashMap::new();
        let mut members: HashMap<&str, Vec<&str>> = HashMap::new();
        for group in raw.model_groups.values() {
            for member in &group.models {
                group_of.insert(member, group);
                members.entry(group.name.as_str()).or_default().push(member);
            }
        }
        let mut models: HashMap<String, Arc<ModelInfo>> = HashMap::new();
        for group in raw.model_groups.values() {
            let Some(tariff) = tariff(group.price.as_ref()) else { continue };
            for member in &group.models {
                let info = ModelInfo {
                    name: Arc::from(member.as_str()),
                    tariff,
                    max_output_tokens: None,
                    model_group: Some(group.name.clone()),
                };
                models.insert(member.clone(), Arc::new(info));
            }
        }
        // A model's own price wins over its model group's.
        for model in raw.models.values() {
            let Some(tariff) = tariff(model.price.as_ref()) else { continue };
            let info = ModelInfo {
                name: Arc::from(model.name.as_str()),
                tariff,
                max_output_tokens: model.max_output_tokens.and_then(|n| u64::try_from(n).ok()),
                model_group: group_of.get(model.name.as_str()).map(|g| g.name.clone()),
            };
            models.insert(model.name.clone(), Arc::new(info));
        }
        let groups = raw
            .groups
            .values()
            .map(|g| {
                let info = GroupInfo {
                    name: g.name.clone(),
                    multiplier: Multiplier::from_micros(g.multiplier_micros).unwrap_or(Multiplier::ONE),
                    all_models: g.all_models,
                    models: g.models.iter().cloned().collect(),
                    rates: super::RateLimits::from_wire(g.rpm, g.tpm, g.max_concurrent),
                };
                (g.id, info)
            })
            .collect();
        let mut routes: HashMap<String, Routes> = HashMap::new();
        let mut served = HashSet::new();
        for channel in raw.channels.values() {
            let Some(kind) = Kind::parse(&channel.r#type) else { continue };
            for name in &channel.models {
                served.insert(name.clone());
                served.extend(members.get(name.as_str()).into_iter().flatten().map(|m| (*m).to_owned()));
            }
            if !channel.enabled {
                continue;
            }
            // The control plane sends the effective list; an empty one (an older control
            // plane) means the type's defaults.
            let names = router_proto::protocols::effective(&channel.r#type, &channel.protocols);
            let protocols: Vec<Protocol> = names.iter().filter_map(|p| Protocol::parse(p)).collect();
            let info = Arc::new(ChannelInfo {
                id: channel.id,
                name: Arc::from(channel.name.as_str()),
                upstream: Upstream::new(
                    kind,
                    &channel.base_url,
                    &channel.api_key,
                    channel.api_version.as_deref(),
                    channel.messages_base_url.as_deref(),
                ),
                priority: channel.priority,
                weight: u32::try_from(channel.weight).unwrap_or(0),
                model_map: channel.model_map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            });
            for name in &channel.models {
                let expanded = std::iter::once(name.as_str())
                    .chain(members.get(name.as_str()).into_iter().flatten().copied());
                for model in expanded {
                    let lists = routes.entry(model.to_owned()).or_default();
                    for protocol in &protocols {
                        let list = &mut lists[*protocol as usize];
                        if !list.iter().any(|c| c.id == info.id) {
                            list.push(Arc::clone(&info));
                        }
                    }
                }
            }
        }
        for list in routes.values_mut().flat_map(|lists| lists.iter_mut()) {
            list.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.id.cmp(&b.id)));
        }
        let (aliases, patterns) = index_aliases(&raw, &models);
        Catalog { currency: raw.currency.clone(), raw, models, groups, routes, served, aliases, patterns }
    }

    /// The catalog as received.
    pub fn raw(&self) -> &RawCatalog {
        &self.raw
    }

    /// A priced model by name.
    pub fn model(&self, name: &str) -> Option<&Arc<ModelInfo>> {
        self.models.get(name)
    }

    /// The priced model a request naming `name` is served and billed as: the model of that
    /// name, else the exact alias's target, else the target of the longest matching pattern.
    pub fn resolve(&self, name: &str) -> Option<&Arc<ModelInfo>> {
        self.models.get(name).or_else(|| self.aliases.get(name)).or_else(|| {
            self.patterns.iter().find(|(prefix, _)| name.starts_with(prefix.as_str())).map(|(_, model)| model)
        })
    }

    /// Every exact alias with the model it is served as, by name.
    pub fn aliases(&self) -> Vec<(&str, &Arc<ModelInfo>)> {
        let mut aliases: Vec<_> = self.aliases.iter().map(|(name, model)| (name.as_str(), model)).collect();
        aliases.sort_by(|a, b| a.0.cmp(b.0));
        aliases
    }

    /// Every priced model, by name.
    pub fn models(&self) -> Vec<&Arc<ModelInfo>> {
        let mut models: Vec<_> = self.models.values().collect();
        models.sort_by(|a, b| a.name.cmp(&b.name));
        models
    }

    /// A group by id.
    pub fn group(&self, id: i64) -> Option<&GroupInfo> {
        self.groups.get(&id)
    }

    /// Every group, by name.
    pub fn groups(&self) -> Vec<&GroupInfo> {
        let mut groups: Vec<_> = self.groups.values().collect();
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        groups
    }

    /// Enabled channels serving `model` over `protocol` natively, highest priority first.
    pub fn channels(&self, protocol: Protocol, model: &str) -> &[Arc<ChannelInfo>] {
        self.routes.get(model).map_or(&[], |lists| lists[protocol as usize].as_slice())
    }

    /// Enabled channels serving `model`, by protocol.
    pub fn routes(&self, model: &str) -> Option<&Routes> {
        self.routes.get(model)
    }

    /// Whether any channel (enabled or not) lists `model`.
    pub fn is_served(&self, model: &str) -> bool {
        self.served.contains(model)
    }
}

/// Exact aliases and prefix patterns whose target is priced (an alias of an unpriced or
/// deleted model serves nothing); a model's own name is never shadowed by an alias.
type AliasIndex = (HashMap<String, Arc<ModelInfo>>, Vec<(String, Arc<ModelInfo>)>);

fn index_aliases(raw: &RawCatalog, models: &HashMap<String, Arc<ModelInfo>>) -> AliasIndex {
    let mut exact = HashMap::new();
    let mut patterns = Vec::new();
    for alias in raw.aliases.values() {
        let Some(target) = models.get(&alias.target) else { continue };
        match alias.name.strip_suffix('*') {
            Some(prefix) => patterns.push((prefix.to_owned(), Arc::clone(target))),
            None if !models.contains_key(&alias.name) => {
                exact.insert(alias.name.clone(), Arc::clone(target));
            }
            None => {}
        }
    }
    patterns.sort_by(|a: &(String, _), b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
    (exact, patterns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use router_upstream::Api;

    fn price(input: i64) -> Option<pb::Price> {
        Some(pb::Price {
            billing: Some(pb::price::Billing::Tokens(pb::TokenPrice {
                input_nanos: input,
                output_nanos: input,
                ..Default::default()
            })),
        })
    }

    #[test]
    fn routes_group_members_and_prefers_own_prices() {
        let mut raw = RawCatalog::default();
        let channels = [
            pb::Channel {
                id: 1,
                name: "low".into(),
                r#type: "openai".into(),
                models: vec!["fam".into()],
                priority: 1,
                enabled: true,
                ..Default::default()
            },
            pb::Channel {
                id: 2,
                name: "high".into(),
                r#type: "azure".into(),
                models: vec!["a".into()],
                priority: 9,
                enabled: true,
                ..Default::default()
            },
            pb::Channel {
                id: 3,
                name: "off".into(),
                r#type: "openai".into(),
                models: vec!["a".into()],
                priority: 99,
                enabled: false,
                ..Default::default()
            },
            pb::Channel {
                id: 4,
                name: "claude".into(),
                r#type: "anthropic".into(),
                models: vec!["a".into()],
                enabled: true,
                ..Default::default()
            },
            pb::Channel {
                id: 5,
                name: "deepseek".into(),
                r#type: "openai".into(),
                models: vec!["a".into()],
                protocols: vec!["chat".into(), "messages".into()],
                enabled: true,
                ..Default::default()
            },
        ];
        let models = [pb::Model { id: 1, name: "a".into(), price: price(5), ..Default::default() }];
        let groups = [pb::ModelGroup {
            id: 1,
            name: "fam".into(),
            models: vec!["a".into(), "b".into()],
            price: price(1),
        }];
        raw.upsert(&channels, &models, &groups, &[]);
        let catalog = Catalog::build(raw);
        let names = |protocol, model| -> Vec<String> {
            catalog.channels(protocol, model).iter().map(|c| c.name.to_string()).collect()
        };
        assert_eq!(names(Protocol::Chat, "a"), ["high", "low", "deepseek"]);
        // Each protocol by the channels that list it (here: the type's defaults, or declared).
        assert_eq!(names(Protocol::Responses, "a"), ["high", "low"]);
        assert_eq!(names(Protocol::Messages, "a"), ["claude", "deepseek"]);
        assert_eq!(names(Protocol::Chat, "b"), ["low"]);
        assert!(names(Protocol::Messages, "b").is_empty());
        let deepseek = &catalog.channels(Protocol::Messages, "a")[1];
        let (header, _) = deepseek.upstream.credential(Api::Messages).expect("x-api-key");
        assert_eq!(header.as_str(), "x-api-key");
        let (header, _) = deepseek.upstream.credential(Api::ChatCompletions).expect("bearer");
        assert_eq!(header, http::header::AUTHORIZATION);
        let a = catalog.model("a").expect("priced");
        assert!(matches!(a.tariff, Tariff::Tokens(t) if t.input.nanos() == 5));
        assert_eq!(a.model_group.as_deref(), Some("fam"));
        assert!(
            matches!(catalog.model("b").expect("priced by group").tariff, Tariff::Tokens(t) if t.input.nanos() == 1)
        );
        assert!(catalog.model("c").is_none());
        assert!(catalog.is_served("b"));
    }

    #[test]
    fn aliases_resolve_exact_names_first_then_the_longest_pattern() {
        let mut raw = RawCatalog::default();
        let models = [
            pb::Model { id: 1, name: "sonnet".into(), price: price(3), ..Default::default() },
            pb::Model { id: 2, name: "haiku".into(), price: price(1), ..Default::default() },
            pb::Model { id: 3, name: "claude-opus-4".into(), price: price(15), ..Default::default() },
        ];
        raw.upsert(&[], &models, &[], &[]);
        let alias =
            |id, name: &str, target: &str| pb::ModelAlias { id, name: name.into(), target: target.into() };
        raw.upsert_aliases(&[
            alias(1, "claude-*", "haiku"),
            alias(2, "claude-opus-*", "sonnet"),
            alias(3, "claude-opus-4-8-mini", "haiku"),
            alias(4, "ghost", "unpriced"),
            alias(5, "gh*", "unpriced"),
        ]);
        let catalog = Catalog::build(raw.clone());
        let served = |name: &str| catalog.resolve(name).map(|m| m.name.to_string());
        assert_eq!(served("claude-opus-4-8").as_deref(), Some("sonnet"), "the longest pattern wins");
        assert_eq!(served("claude-opus-4-8-mini").as_deref(), Some("haiku"), "an exact alias wins");
        assert_eq!(served("claude-opus-4").as_deref(), Some("claude-opus-4"), "a model's own name wins");
        assert_eq!(served("claude-3").as_deref(), Some("haiku"));
        assert_eq!(served("claude-").as_deref(), Some("haiku"), "a prefix matches itself");
        assert_eq!(served("claude"), None);
        assert_eq!(served("ghost"), None, "an alias of an unpriced model serves nothing");
        assert_eq!(served("ghx"), None);
        let exact: Vec<_> =
            catalog.aliases().into_iter().map(|(name, m)| (name, m.name.to_string())).collect();
        assert_eq!(exact, [("claude-opus-4-8-mini", "haiku".to_owned())]);
        // Removing the longer pattern hands its names to the shorter one.
        raw.remove_aliases([2]);
        assert_eq!(
            Catalog::build(raw).resolve("claude-opus-4-8").map(|m| m.name.to_string()).as_deref(),
            Some("haiku")
        );
    }
}
