//! `routerctl group …`: token groups, which scale prices and decide which models keys reach.
use clap::{ArgGroup, Args, Subcommand};
use router_proto::{Multiplier, pb};
use serde::Serialize;

use super::limits::{RateArgs, RateUpdateArgs, RateView};
use crate::{
    args::{self, Names},
    client::Admin,
    error::Error,
    output::{self, Output, Record},
};

/// Group subcommands.
#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Add a token group (default: multiplier 1, all models).
    Add(AddArgs),
    /// List token groups.
    List,
    /// Change a token group; what is not given stays as it is.
    Update(UpdateArgs),
    /// Delete a token group.
    Delete {
        /// The group's name.
        #[arg(value_parser = args::name)]
        name: String,
    },
}

/// Flags of `group add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// The group's name.
    #[arg(value_parser = args::name)]
    pub name: String,
    /// Scales every price for keys of this group, e.g. 0.8 (at most 6 decimals).
    #[arg(long, value_name = "M", value_parser = args::multiplier)]
    pub multiplier: Option<Multiplier>,
    /// Models or model groups this group reaches, comma-separated.
    #[arg(long, value_name = "m1,m2", value_parser = args::names, conflicts_with = "all_models")]
    pub models: Option<Names>,
    /// The group reaches every model (the default).
    #[arg(long)]
    pub all_models: bool,
    /// Rate limits for each key of the group that sets none of its own.
    #[command(flatten)]
    pub rates: RateArgs,
}

impl AddArgs {
    fn into_request(self) -> pb::AddGroupRequest {
        pb::AddGroupRequest {
            name: self.name,
            multiplier_micros: self.multiplier.map(Multiplier::micros),
            // The proto reads an empty model list as "all models", which `--all-models` means.
            models: self.models.map(|names| names.0).unwrap_or_default(),
            rpm: self.rates.wire().0,
            tpm: self.rates.wire().1,
            max_concurrent: self.rates.wire().2,
        }
    }
}

/// Flags of `group update`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("changes").required(true).multiple(true)))]
pub struct UpdateArgs {
    /// The group to change.
    #[arg(value_parser = args::name)]
    pub name: String,
    /// Scales every price for keys of this group (at most 6 decimals).
    #[arg(long, value_name = "M", group = "changes", value_parser = args::multiplier)]
    pub multiplier: Option<Multiplier>,
    /// Restricts the group to these models or model groups, comma-separated.
    #[arg(
        long,
        value_name = "m1,m2",
        group = "changes",
        value_parser = args::names,
        conflicts_with = "all_models"
    )]
    pub models: Option<Names>,
    /// Lets the group reach every model.
    #[arg(long, group = "changes")]
    pub all_models: bool,
    /// Rate limits for each key of the group that sets none of its own (0: remove).
    #[command(flatten)]
    pub rates: RateUpdateArgs,
}

impl UpdateArgs {
    fn into_request(self) -> pb::UpdateGroupRequest {
        pb::UpdateGroupRequest {
            name: self.name,
            multiplier_micros: self.multiplier.map(Multiplier::micros),
            set_all_models: self.all_models,
            set_models: self.models.is_some(),
            models: self.models.map(|names| names.0).unwrap_or_default(),
            rpm: self.rates.wire().0,
            tpm: self.rates.wire().1,
            max_concurrent: self.rates.wire().2,
        }
    }
}

/// Runs a group subcommand.
pub async fn run(command: GroupCommand, admin: &mut Admin, out: &mut Output) -> Result<(), Error> {
    let group = match command {
        GroupCommand::Add(add) => admin.add_group(add.into_request()).await?.into_inner(),
        GroupCommand::Update(update) => admin.update_group(update.into_request()).await?.into_inner(),
        GroupCommand::List => {
            let groups = admin.list_groups(pb::ListGroupsRequest {}).await?.into_inner().groups;
            let views: Vec<GroupView> = groups.iter().map(GroupView::new).collect();
            return out.records(&views);
        }
        GroupCommand::Delete { name } => {
            admin.delete_group(pb::NameRequest { name: name.clone() }).await?;
            let json = serde_json::json!({ "deleted": name });
            return out.either(&json, &format!("deleted group {name}"));
        }
    };
    out.record(&GroupView::new(&group))
}

/// A token group for display.
#[derive(Debug, Serialize)]
pub struct GroupView {
    name: String,
    multiplier: String,
    all_models: bool,
    models: Vec<String>,
    #[serde(flatten)]
    rates: RateView,
}

impl GroupView {
    /// The display form of a proto group.
    pub fn new(group: &pb::Group) -> GroupView {
        GroupView {
            name: group.name.clone(),
            multiplier: output::multiplier(group.multiplier_micros),
            all_models: group.all_models,
            models: group.models.clone(),
            rates: RateView::new(group.rpm, group.tpm, group.max_concurrent),
        }
    }
}

impl Record for GroupView {
    const COLUMNS: &'static [&'static str] =
        &["name", "multiplier", "models", "rpm", "tpm", "max_concurrent"];

    fn fields(&self) -> Vec<(&'static str, String)> {
        let models = if self.all_models { "(all)".to_owned() } else { output::list(&self.models, "(none)") };
        let mut fields = vec![
            ("name", self.name.clone()),
            ("multiplier", self.multiplier.clone()),
            ("all_models", self.all_models.to_string()),
            ("models", models),
        ];
        fields.extend(self.rates.fields());
        fields
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(line: &[&str]) -> Result<GroupCommand, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("routerctl").chain(line.iter().copied()))?;
        match cli.command {
            Command::Group(command) => Ok(command),
            other => panic!("not a group command: {other:?}"),
        }
    }

    #[test]
    fn update_sets_models_or_all_models() {
        let Ok(GroupCommand::Update(update)) =
            parse(&["group", "update", "vip", "--multiplier", "0.8", "--models", "a,b"])
        else {
            panic!("not update")
        };
        let request = update.into_request();
        assert_eq!(request.multiplier_micros, Some(800_000));
        assert!(request.set_models && !request.set_all_models);
        assert_eq!(request.models, ["a", "b"]);
        let Ok(GroupCommand::Update(update)) = parse(&["group", "update", "vip", "--all-models"]) else {
            panic!("not update")
        };
        let request = update.into_request();
        assert!(request.set_all_models && !request.set_models);
        assert!(parse(&["group", "update", "vip", "--models", "a", "--all-models"]).is_err());
        assert!(parse(&["group", "add", "vip", "--models", "a", "--all-models"]).is_err());
        assert!(parse(&["group", "add", "vip", "--multiplier", "1.0000001"]).is_err());
        assert!(parse(&["group", "update", "vip"]).is_err());
    }

    #[test]
    fn groups_render_as_json() {
        let group = pb::Group {
            id: 1,
            name: "default".into(),
            multiplier_micros: 1_000_000,
            all_models: true,
            models: vec![],
            ..pb::Group::default()
        };
        assert_eq!(
            serde_json::to_value(GroupView::new(&group)).expect("views serialize"),
            serde_json::json!({"name": "default", "multiplier": "1", "all_models": true, "models": [],
                               "rpm": null, "tpm": null, "max_concurrent": null})
        );
    }
}
