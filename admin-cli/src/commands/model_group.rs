//! `routerctl model-group …`: models that share a price and routing.
use clap::{Args, Subcommand};
use router_proto::pb;
use serde::Serialize;

use super::price::{PRICE_COLUMNS, PriceArgs, PriceView};
use crate::{
    args::{self, Names},
    client::Admin,
    error::Error,
    output::{self, Output, Record},
};

/// Model group subcommands.
#[derive(Debug, Subcommand)]
pub enum ModelGroupCommand {
    /// Add a model group; with a price, its members without their own price use it.
    Add(AddArgs),
    /// List model groups.
    List,
    /// Delete a model group.
    Delete {
        /// The model group's name.
        #[arg(value_parser = args::name)]
        name: String,
    },
}

/// Flags of `model-group add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// The group's name; a channel serving this name serves every member.
    #[arg(value_parser = args::name)]
    pub name: String,
    /// Member models, comma-separated.
    #[arg(long, value_name = "m1,m2", value_parser = args::names)]
    pub models: Names,
    /// The price, per 1M tokens or per call.
    #[command(flatten)]
    pub price: PriceArgs,
}

impl AddArgs {
    fn into_request(self) -> pb::AddModelGroupRequest {
        pb::AddModelGroupRequest { price: self.price.to_proto(), name: self.name, models: self.models.0 }
    }
}

/// Runs a model group subcommand.
pub async fn run(command: ModelGroupCommand, admin: &mut Admin, out: &mut Output) -> Result<(), Error> {
    match command {
        ModelGroupCommand::Add(add) => {
            let group = admin.add_model_group(add.into_request()).await?.into_inner();
            out.record(&ModelGroupView::new(&group))
        }
        ModelGroupCommand::List => {
            let request = pb::ListModelGroupsRequest {};
            let groups = admin.list_model_groups(request).await?.into_inner().model_groups;
            let views: Vec<ModelGroupView> = groups.iter().map(ModelGroupView::new).collect();
            out.records(&views)
        }
        ModelGroupCommand::Delete { name } => {
            admin.delete_model_group(pb::NameRequest { name: name.clone() }).await?;
            let json = serde_json::json!({ "deleted": name });
            out.either(&json, &format!("deleted model group {name}"))
        }
    }
}

/// A model group for display.
#[derive(Debug, Serialize)]
pub struct ModelGroupView {
    name: String,
    models: Vec<String>,
    #[serde(flatten)]
    price: PriceView,
}

impl ModelGroupView {
    /// The display form of a proto model group.
    pub fn new(group: &pb::ModelGroup) -> ModelGroupView {
        ModelGroupView {
            name: group.name.clone(),
            models: group.models.clone(),
            price: PriceView::new(group.price.as_ref()),
        }
    }
}

impl Record for ModelGroupView {
    const COLUMNS: &'static [&'static str] = &[
        "name",
        "models",
        PRICE_COLUMNS[0],
        PRICE_COLUMNS[1],
        PRICE_COLUMNS[2],
        PRICE_COLUMNS[3],
        PRICE_COLUMNS[4],
        PRICE_COLUMNS[5],
    ];

    fn fields(&self) -> Vec<(&'static str, String)> {
        let mut fields =
            vec![("name", self.name.clone()), ("models", output::list(&self.models, output::UNSET))];
        fields.extend(self.price.fields());
        fields
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(line: &[&str]) -> Result<ModelGroupCommand, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("routerctl").chain(line.iter().copied()))?;
        match cli.command {
            Command::ModelGroup(command) => Ok(command),
            other => panic!("not a model-group command: {other:?}"),
        }
    }

    #[test]
    fn add_takes_members_and_an_optional_price() {
        let Ok(ModelGroupCommand::Add(add)) =
            parse(&["model-group", "add", "claude", "--models", "a,b", "--per-call", "1"])
        else {
            panic!("not add")
        };
        let request = add.into_request();
        assert_eq!(request.models, ["a", "b"]);
        assert!(request.price.is_some());
        let Ok(ModelGroupCommand::Add(add)) = parse(&["model-group", "add", "g", "--models", "a"]) else {
            panic!("not add")
        };
        assert_eq!(add.into_request().price, None);
        assert!(parse(&["model-group", "add", "g", "--models", "a", "--input-price", "1"]).is_err());
        assert!(parse(&["model-group", "add", "g"]).is_err());
    }
}
