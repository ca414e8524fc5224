//! `routerctl model alias …`: names served and billed as another model (`NAME*`: a prefix).
use clap::{Args, Subcommand};
use router_proto::pb;
use serde::Serialize;

use crate::{
    args,
    client::Admin,
    error::Error,
    output::{Output, Record},
};

/// `model alias NAME TARGET`, or one of its subcommands.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct AliasArgs {
    /// The name clients send; ending in `*`, a prefix pattern (`claude-opus-*`).
    #[arg(value_parser = args::name, required = true)]
    pub name: Option<String>,
    /// The priced model it is served and billed as.
    #[arg(value_parser = args::name, required = true)]
    pub target: Option<String>,
    /// `list` or `delete NAME`.
    #[command(subcommand)]
    pub command: Option<AliasCommand>,
}

/// Alias subcommands.
#[derive(Debug, Subcommand)]
pub enum AliasCommand {
    /// List aliases and their targets.
    List,
    /// Delete an alias.
    Delete {
        /// The alias's name, `*` included for a pattern.
        #[arg(value_parser = args::name)]
        name: String,
    },
}

/// Runs `model alias …`.
pub async fn run(alias: AliasArgs, admin: &mut Admin, out: &mut Output) -> Result<(), Error> {
    match (alias.command, alias.name, alias.target) {
        (Some(AliasCommand::List), ..) => {
            let aliases =
                admin.list_model_aliases(pb::ListModelAliasesRequest {}).await?.into_inner().aliases;
            let views: Vec<AliasView> = aliases.into_iter().map(AliasView::new).collect();
            out.records(&views)
        }
        (Some(AliasCommand::Delete { name }), ..) => {
            admin.delete_model_alias(pb::NameRequest { name: name.clone() }).await?;
            let json = serde_json::json!({ "deleted": name });
            out.either(&json, &format!("deleted alias {name}"))
        }
        (None, Some(name), Some(target)) => {
            let alias = admin.set_model_alias(pb::SetModelAliasRequest { name, target }).await?.into_inner();
            out.record(&AliasView::new(alias))
        }
        (None, ..) => Err(Error::Invalid("give an alias and its target: model alias NAME TARGET".into())),
    }
}

/// An alias for display.
#[derive(Debug, Serialize)]
pub struct AliasView {
    name: String,
    target: String,
    /// Whether the name is a prefix pattern.
    pattern: bool,
}

impl AliasView {
    fn new(alias: pb::ModelAlias) -> AliasView {
        AliasView { pattern: alias.name.ends_with('*'), name: alias.name, target: alias.target }
    }
}

impl Record for AliasView {
    const COLUMNS: &'static [&'static str] = &["name", "target", "pattern"];

    fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("name", self.name.clone()),
            ("target", self.target.clone()),
            ("pattern", self.pattern.to_string()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::{
        cli::{Cli, Command},
        commands::model::ModelCommand,
    };

    fn parse(line: &[&str]) -> Result<AliasArgs, clap::Error> {
        let cli =
            Cli::try_parse_from(["routerctl", "model", "alias"].into_iter().chain(line.iter().copied()))?;
        match cli.command {
            Command::Model(ModelCommand::Alias(alias)) => Ok(alias),
            other => panic!("not a model alias command: {other:?}"),
        }
    }

    #[test]
    fn alias_takes_a_name_and_target_or_a_subcommand() {
        let set = parse(&["claude-opus-*", "claude-sonnet-4"]).expect("set");
        assert_eq!(
            (set.name.as_deref(), set.target.as_deref(), set.command.is_none()),
            (Some("claude-opus-*"), Some("claude-sonnet-4"), true)
        );
        assert!(matches!(parse(&["list"]).expect("list").command, Some(AliasCommand::List)));
        let delete = parse(&["delete", "gpt-*"]).expect("delete");
        assert!(matches!(delete.command, Some(AliasCommand::Delete { name }) if name == "gpt-*"));
        for bad in [&[][..], &["only-a-name"], &["a", "b", "c"], &["delete"]] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
