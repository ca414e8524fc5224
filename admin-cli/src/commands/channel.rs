//! `routerctl channel …`: upstream provider endpoints.
use std::collections::BTreeMap;

use clap::{ArgGroup, Args, Subcommand, ValueEnum};
use router_proto::pb;
use serde::Serialize;

use crate::{
    args::{self, Clearable, ModelMap, Names, split_clearable},
    client::Admin,
    error::Error,
    output::{self, Output, Record, or_unset},
};

/// Channel subcommands.
#[derive(Debug, Subcommand)]
pub enum ChannelCommand {
    /// Add an upstream channel.
    Add(AddArgs),
    /// List channels (upstream keys are masked).
    List,
    /// Show one channel.
    Show {
        /// The channel's name.
        #[arg(value_parser = args::name)]
        name: String,
    },
    /// Change a channel; what is not given stays as it is.
    Update(UpdateArgs),
    /// Let the data planes route to a channel again.
    Enable {
        /// The channel's name.
        #[arg(value_parser = args::name)]
        name: String,
    },
    /// Stop routing to a channel without deleting it.
    Disable {
        /// The channel's name.
        #[arg(value_parser = args::name)]
        name: String,
    },
    /// Delete a channel.
    Delete {
        /// The channel's name.
        #[arg(value_parser = args::name)]
        name: String,
    },
    /// Send one small real request through a channel and print its status and latency
    /// (exit 1 when it fails).
    Test {
        /// The channel's name.
        #[arg(value_parser = args::name)]
        name: String,
        /// The model to ask for (default: the channel's first; its model map applies).
        #[arg(long, value_name = "M", value_parser = args::name)]
        model: Option<String>,
    },
}

/// The protocol a channel speaks upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ChannelType {
    /// OpenAI or any OpenAI-compatible server; base URL like `https://api.openai.com/v1`.
    Openai,
    /// Anthropic Messages API; base URL like `https://api.anthropic.com`.
    Anthropic,
    /// Azure OpenAI deployments; needs `--api-version`.
    Azure,
    /// Gemini's OpenAI-compatible endpoint.
    Gemini,
}

impl ChannelType {
    /// The name the proto uses.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelType::Openai => "openai",
            ChannelType::Anthropic => "anthropic",
            ChannelType::Azure => "azure",
            ChannelType::Gemini => "gemini",
        }
    }
}

/// Flags of `channel add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// A unique name for the channel.
    #[arg(long, value_parser = args::name)]
    pub name: String,
    /// The upstream protocol.
    #[arg(long = "type", value_name = "TYPE", value_enum)]
    pub kind: ChannelType,
    /// What the provider's own SDK takes as its base URL.
    #[arg(long, value_name = "URL", value_parser = args::base_url)]
    pub base_url: String,
    /// The upstream API key.
    #[arg(long, value_name = "K")]
    pub api_key: String,
    /// Models (or model groups) this channel serves, comma-separated.
    #[arg(long, value_name = "m1,m2", value_parser = args::names)]
    pub models: Names,
    /// Higher priorities are tried first.
    #[arg(long, value_name = "P", allow_negative_numbers = true)]
    pub priority: Option<i32>,
    /// Share of traffic among channels of the same priority.
    #[arg(long, value_name = "W", value_parser = clap::value_parser!(i32).range(0..))]
    pub weight: Option<i32>,
    /// Renames models upstream: client-facing=upstream, comma-separated.
    #[arg(long, value_name = "from=to,...", value_parser = args::model_map)]
    pub model_map: Option<ModelMap>,
    /// The API version (Azure).
    #[arg(long, value_name = "V")]
    pub api_version: Option<String>,
    /// Protocols the upstream speaks natively, comma-separated: chat, completions, embeddings,
    /// responses, messages (default by type: openai and azure chat,completions,embeddings,responses;
    /// anthropic messages; gemini chat,embeddings). Others are served by conversion.
    #[arg(long, value_name = "LIST", value_parser = args::protocols)]
    pub protocols: Option<Names>,
    /// Where an openai channel speaking `messages` serves Anthropic's API, as an anthropic
    /// channel's base URL (`{URL}/v1/messages`; default `{base-url}/messages`).
    #[arg(long, value_name = "URL", value_parser = args::base_url)]
    pub messages_base_url: Option<String>,
}

impl AddArgs {
    fn into_request(self) -> pb::AddChannelRequest {
        pb::AddChannelRequest {
            name: self.name,
            r#type: self.kind.as_str().to_owned(),
            base_url: self.base_url,
            api_key: self.api_key,
            models: self.models.0,
            priority: self.priority,
            weight: self.weight,
            model_map: self.model_map.map(ModelMap::into_proto).unwrap_or_default(),
            api_version: self.api_version,
            protocols: self.protocols.map(|names| names.0).unwrap_or_default(),
            messages_base_url: self.messages_base_url,
        }
    }
}

/// Flags of `channel update`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("changes").required(true).multiple(true)))]
pub struct UpdateArgs {
    /// The channel to change.
    #[arg(value_parser = args::name)]
    pub name: String,
    /// Renames the channel.
    #[arg(long, group = "changes", value_parser = args::name)]
    pub new_name: Option<String>,
    /// The upstream protocol.
    #[arg(long = "type", value_name = "TYPE", value_enum, group = "changes")]
    pub kind: Option<ChannelType>,
    /// What the provider's own SDK takes as its base URL.
    #[arg(long, value_name = "URL", group = "changes", value_parser = args::base_url)]
    pub base_url: Option<String>,
    /// The upstream API key.
    #[arg(long, value_name = "K", group = "changes")]
    pub api_key: Option<String>,
    /// Replaces the served models, comma-separated.
    #[arg(long, value_name = "m1,m2", group = "changes", value_parser = args::names)]
    pub models: Option<Names>,
    /// Higher priorities are tried first.
    #[arg(long, value_name = "P", group = "changes", allow_negative_numbers = true)]
    pub priority: Option<i32>,
    /// Share of traffic among channels of the same priority.
    #[arg(long, value_name = "W", group = "changes", value_parser = clap::value_parser!(i32).range(0..))]
    pub weight: Option<i32>,
    /// Replaces the model map (from=to,...); `none` empties it.
    #[arg(long, value_name = "from=to,...", group = "changes", value_parser = args::clearable_model_map)]
    pub model_map: Option<Clearable<ModelMap>>,
    /// The API version (Azure); `none` removes it.
    #[arg(long, value_name = "V", group = "changes", value_parser = args::clearable_text)]
    pub api_version: Option<Clearable<String>>,
    /// Replaces the natively spoken protocols, comma-separated; `default` for the type's.
    #[arg(long, value_name = "LIST", group = "changes", value_parser = clearable_protocols)]
    pub protocols: Option<Clearable<Names>>,
    /// Where an openai channel serves Anthropic's Messages API; `none` removes it.
    #[arg(long, value_name = "URL", group = "changes", value_parser = args::clearable_base_url)]
    pub messages_base_url: Option<Clearable<String>>,
}

/// `default` (the type's protocols) or a protocol list.
fn clearable_protocols(input: &str) -> Result<Clearable<Names>, String> {
    if input == "default" { Ok(Clearable::Clear) } else { args::protocols(input).map(Clearable::Set) }
}

impl UpdateArgs {
    fn into_request(self) -> pb::UpdateChannelRequest {
        let set_model_map = self.model_map.is_some();
        let model_map = self.model_map.and_then(Clearable::set);
        let (api_version, clear_api_version) = split_clearable(self.api_version);
        let (messages_base_url, clear_messages_base_url) = split_clearable(self.messages_base_url);
        let set_protocols = self.protocols.is_some();
        let protocols = self.protocols.and_then(Clearable::set).map(|names| names.0).unwrap_or_default();
        pb::UpdateChannelRequest {
            name: self.name,
            r#type: self.kind.map(|kind| kind.as_str().to_owned()),
            base_url: self.base_url,
            api_key: self.api_key,
            set_models: self.models.is_some(),
            models: self.models.map(|names| names.0).unwrap_or_default(),
            priority: self.priority,
            weight: self.weight,
            set_model_map,
            model_map: model_map.map(ModelMap::into_proto).unwrap_or_default(),
            api_version,
            clear_api_version,
            new_name: self.new_name,
            set_protocols,
            protocols,
            messages_base_url,
            clear_messages_base_url,
        }
    }
}

/// Runs a channel subcommand.
pub async fn run(command: ChannelCommand, admin: &mut Admin, out: &mut Output) -> Result<(), Error> {
    let channel = match command {
        ChannelCommand::Add(add) => admin.add_channel(add.into_request()).await?,
        ChannelCommand::List => {
            let channels = admin.list_channels(pb::ListChannelsRequest {}).await?.into_inner();
            let views: Vec<ChannelView> = channels.channels.iter().map(ChannelView::new).collect();
            return out.records(&views);
        }
        ChannelCommand::Show { name } => admin.get_channel(pb::NameRequest { name }).await?,
        ChannelCommand::Update(update) => admin.update_channel(update.into_request()).await?,
        ChannelCommand::Enable { name } => {
            admin.set_channel_enabled(pb::SetChannelEnabledRequest { name, enabled: true }).await?
        }
        ChannelCommand::Disable { name } => {
            admin.set_channel_enabled(pb::SetChannelEnabledRequest { name, enabled: false }).await?
        }
        ChannelCommand::Delete { name } => {
            admin.delete_channel(pb::NameRequest { name: name.clone() }).await?;
            let json = serde_json::json!({ "deleted": name });
            return out.either(&json, &format!("deleted channel {name}"));
        }
        ChannelCommand::Test { name, model } => {
            let result = admin.test_channel(pb::TestChannelRequest { name, model }).await?.into_inner();
            let view = TestView {
                name: result.name,
                ok: result.ok,
                status: result.status,
                latency_ms: result.latency_ms,
                error: result.error,
            };
            out.record(&view)?;
            if view.ok {
                return Ok(());
            }
            let why = view.error.as_deref().unwrap_or("no reason given");
            return Err(Error::Server(format!("channel {} failed its check: {why}", view.name)));
        }
    };
    out.record(&ChannelView::new(channel.get_ref()))
}

/// A channel for display.
#[derive(Debug, Serialize)]
pub struct ChannelView {
    id: i64,
    name: String,
    #[serde(rename = "type")]
    kind: String,
    base_url: String,
    /// Masked by the control plane; printed as given.
    api_key: String,
    models: Vec<String>,
    protocols: Vec<String>,
    messages_base_url: Option<String>,
    priority: i32,
    weight: i32,
    model_map: BTreeMap<String, String>,
    api_version: Option<String>,
    enabled: bool,
    /// `admin` or `health` while disabled.
    disabled_reason: Option<String>,
    created_at: String,
}

/// The outcome of `channel test`.
#[derive(Debug, Serialize)]
struct TestView {
    name: String,
    ok: bool,
    /// 0: no answer came.
    status: u32,
    latency_ms: u64,
    error: Option<String>,
}

impl Record for TestView {
    const COLUMNS: &'static [&'static str] = &["name", "ok", "status", "latency_ms", "error"];

    fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("name", self.name.clone()),
            ("ok", self.ok.to_string()),
            ("status", if self.status == 0 { output::UNSET.to_owned() } else { self.status.to_string() }),
            ("latency_ms", self.latency_ms.to_string()),
            ("error", or_unset(self.error.as_ref())),
        ]
    }
}

impl ChannelView {
    /// The display form of a proto channel.
    pub fn new(channel: &pb::Channel) -> ChannelView {
        ChannelView {
            id: channel.id,
            name: channel.name.clone(),
            kind: channel.r#type.clone(),
            base_url: channel.base_url.clone(),
            api_key: channel.api_key.clone(),
            models: channel.models.clone(),
            protocols: channel.protocols.clone(),
            messages_base_url: channel.messages_base_url.clone(),
            priority: channel.priority,
            weight: channel.weight,
            // Sorted, so the output is stable from one run to the next.
            model_map: channel.model_map.clone().into_iter().collect(),
            api_version: channel.api_version.clone(),
            enabled: channel.enabled,
            disabled_reason: channel.disabled_reason.clone(),
            created_at: output::time(channel.created_at_unix_micros),
        }
    }
}

impl Record for ChannelView {
    const COLUMNS: &'static [&'static str] = &[
        "id",
        "name",
        "type",
        "enabled",
        "disabled_reason",
        "priority",
        "weight",
        "models",
        "protocols",
        "base_url",
    ];

    fn fields(&self) -> Vec<(&'static str, String)> {
        let model_map: Vec<String> = self.model_map.iter().map(|(from, to)| format!("{from}={to}")).collect();
        vec![
            ("id", self.id.to_string()),
            ("name", self.name.clone()),
            ("type", self.kind.clone()),
            ("base_url", self.base_url.clone()),
            ("api_key", self.api_key.clone()),
            ("models", output::list(&self.models, output::UNSET)),
            ("protocols", output::list(&self.protocols, output::UNSET)),
            ("messages_base_url", or_unset(self.messages_base_url.as_ref())),
            ("priority", self.priority.to_string()),
            ("weight", self.weight.to_string()),
            ("model_map", output::list(&model_map, output::UNSET)),
            ("api_version", or_unset(self.api_version.as_ref())),
            ("enabled", self.enabled.to_string()),
            ("disabled_reason", or_unset(self.disabled_reason.as_ref())),
            ("created_at", self.created_at.clone()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(line: &[&str]) -> Result<ChannelCommand, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("routerctl").chain(line.iter().copied()))?;
        match cli.command {
            Command::Channel(command) => Ok(command),
            other => panic!("not a channel command: {other:?}"),
        }
    }

    #[test]
    fn add_builds_the_request() {
        let command = parse(&[
            "channel",
            "add",
            "--name",
            "oa",
            "--type",
            "openai",
            "--base-url",
            "https://api.openai.com/v1/",
            "--api-key",
            "sk-x",
            "--models",
            "gpt-4o, gpt-4o-mini",
            "--priority",
            "-1",
            "--model-map",
            "gpt-4o=gpt-4o-2024-08-06",
        ])
        .expect("a valid command line");
        let ChannelCommand::Add(add) = command else { panic!("not add") };
        let request = add.into_request();
        assert_eq!(request.r#type, "openai");
        assert_eq!(request.base_url, "https://api.openai.com/v1");
        assert_eq!(request.models, ["gpt-4o", "gpt-4o-mini"]);
        assert_eq!(request.priority, Some(-1));
        assert_eq!(request.weight, None);
        assert_eq!(request.model_map["gpt-4o"], "gpt-4o-2024-08-06");
        assert!(parse(&["channel", "add", "--name", "x", "--type", "bedrock"]).is_err());
    }

    #[test]
    fn update_sets_only_what_is_given() {
        let command = parse(&["channel", "update", "oa", "--model-map", "none", "--api-version", "none"])
            .expect("a valid command line");
        let ChannelCommand::Update(update) = command else { panic!("not update") };
        let request = update.into_request();
        assert!(request.set_model_map && request.model_map.is_empty());
        assert!(request.clear_api_version && request.api_version.is_none());
        assert!(!request.set_models && request.base_url.is_none() && request.new_name.is_none());
        assert!(!request.set_protocols && !request.clear_messages_base_url);
        let command = parse(&[
            "channel",
            "update",
            "oa",
            "--protocols",
            "messages, chat",
            "--messages-base-url",
            "none",
        ])
        .expect("a valid command line");
        let ChannelCommand::Update(update) = command else { panic!("not update") };
        let request = update.into_request();
        assert!(request.set_protocols && request.clear_messages_base_url);
        assert_eq!(request.protocols, ["messages", "chat"]);
        let command =
            parse(&["channel", "update", "oa", "--protocols", "default"]).expect("a valid command line");
        let ChannelCommand::Update(update) = command else { panic!("not update") };
        let request = update.into_request();
        assert!(request.set_protocols && request.protocols.is_empty());
        let refused = parse(&["channel", "update", "oa", "--protocols", "chat,grpc"]).expect_err("unknown");
        assert!(refused.to_string().contains("unknown protocol \"grpc\""), "{refused}");
        // An update that changes nothing is a usage error, not a silent no-op.
        assert!(parse(&["channel", "update", "oa"]).is_err());
    }

    #[test]
    fn channels_render_as_json() {
        let channel = pb::Channel {
            id: 3,
            name: "oa".into(),
            r#type: "openai".into(),
            base_url: "https://api.openai.com/v1".into(),
            api_key: "sk-a…wxyz".into(),
            models: vec!["gpt-4o".into()],
            priority: 0,
            weight: 1,
            model_map: [("gpt-4o".to_owned(), "gpt-4o-2024-08-06".to_owned())].into(),
            api_version: None,
            enabled: true,
            created_at_unix_micros: 1_000_000,
            protocols: vec!["chat".into(), "messages".into()],
            messages_base_url: Some("https://api.deepseek.com/anthropic".into()),
            disabled_reason: None,
        };
        assert_eq!(
            serde_json::to_value(ChannelView::new(&channel)).expect("views serialize"),
            serde_json::json!({
                "id": 3, "name": "oa", "type": "openai", "base_url": "https://api.openai.com/v1",
                "api_key": "sk-a…wxyz", "models": ["gpt-4o"], "protocols": ["chat", "messages"],
                "messages_base_url": "https://api.deepseek.com/anthropic", "priority": 0, "weight": 1,
                "model_map": {"gpt-4o": "gpt-4o-2024-08-06"}, "api_version": null,
                "enabled": true, "disabled_reason": null, "created_at": "1970-01-01T00:00:01Z",
            })
        );
    }
}
