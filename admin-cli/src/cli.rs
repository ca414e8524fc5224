//! The command line: global flags and the tree of subcommands.
use clap::{ArgAction, Args, Parser, Subcommand, builder::FalseyValueParser};

use crate::commands::{
    account, balance, channel, code, group, import, key, model, model_group, order, packaging, setup, usage,
};

/// routerctl: administer a Code Router control plane over gRPC.
#[derive(Debug, Parser)]
#[command(name = "routerctl", version, about, max_term_width = 100)]
pub struct Cli {
    /// Flags every command takes.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags that apply to every command and may appear anywhere on the line.
#[derive(Debug, Args)]
pub struct Global {
    /// The control plane's gRPC address.
    #[arg(
        long,
        env = "ROUTER_ENDPOINT",
        value_name = "URL",
        default_value = "http://127.0.0.1:50051",
        global = true,
        help_heading = "Global options"
    )]
    pub endpoint: String,
    /// The control plane's admin token.
    #[arg(
        long,
        env = "ROUTER_ADMIN_TOKEN",
        value_name = "T",
        hide_env_values = true,
        global = true,
        help_heading = "Global options"
    )]
    pub admin_token: Option<String>,
    /// A file holding the admin token (instead of `--admin-token`).
    #[arg(
        long,
        env = "ROUTER_ADMIN_TOKEN_FILE",
        value_name = "PATH",
        global = true,
        help_heading = "Global options"
    )]
    pub admin_token_file: Option<std::path::PathBuf>,
    /// PEM CA certificate(s) an `https://` control plane's certificate is checked against
    /// (without it, the public web roots).
    #[arg(long, env = "ROUTER_CA_CERT", value_name = "PATH", global = true, help_heading = "Global options")]
    pub ca_cert: Option<std::path::PathBuf>,
    /// PEM certificate chain to present (mutual TLS, with `--client-key`).
    #[arg(
        long,
        env = "ROUTER_CLIENT_CERT",
        value_name = "PATH",
        global = true,
        help_heading = "Global options"
    )]
    pub client_cert: Option<std::path::PathBuf>,
    /// PEM private key of `--client-cert`.
    #[arg(
        long,
        env = "ROUTER_CLIENT_KEY",
        value_name = "PATH",
        global = true,
        help_heading = "Global options"
    )]
    pub client_key: Option<std::path::PathBuf>,
    /// Print exactly one JSON value on stdout instead of tables.
    // Falsey parsing, so `ROUTER_JSON=0`, `=false` or empty turn it off instead of failing;
    // overriding itself, so saying `--json` twice is not an error.
    #[arg(
        long,
        env = "ROUTER_JSON",
        global = true,
        action = ArgAction::SetTrue,
        value_parser = FalseyValueParser::new(),
        overrides_with = "json",
        help_heading = "Global options"
    )]
    pub json: bool,
}

/// Every routerctl command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Upstream provider channels.
    #[command(subcommand)]
    Channel(channel::ChannelCommand),
    /// Models and their prices.
    #[command(subcommand)]
    Model(model::ModelCommand),
    /// Models that share a price and routing.
    #[command(subcommand)]
    ModelGroup(model_group::ModelGroupCommand),
    /// Token groups: price multipliers and model access.
    #[command(subcommand)]
    Group(group::GroupCommand),
    /// Accounts and their balances.
    #[command(subcommand)]
    Account(account::AccountCommand),
    /// API keys.
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Credit an account.
    Topup(balance::TopupArgs),
    /// Credit or debit an account by an operator's decision.
    Adjust(balance::AdjustArgs),
    /// Show ledger entries, newest first.
    Ledger(balance::LedgerArgs),
    /// Redemption codes.
    #[command(subcommand)]
    Code(code::CodeCommand),
    /// Top-up orders paid through the payment provider.
    #[command(subcommand)]
    Order(order::OrderCommand),
    /// Show usage records, newest first.
    Usage(usage::UsageArgs),
    /// Show the public price table.
    Pricing,
    /// Make the deployment's setup what a TOML file declares (one transaction).
    Apply(setup::ApplyArgs),
    /// Print the deployment's setup as a TOML file `apply` takes.
    Export(setup::ExportArgs),
    /// Switch from new-api or one-api: import channels, prices, groups, users, keys and codes.
    Import(import::ImportArgs),
    /// Print a shell completion script (bash, zsh or fish).
    Completions(packaging::CompletionsArgs),
    /// Write man pages (routerctl.1 and one per subcommand) into a folder.
    Man(packaging::ManArgs),
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_may_come_anywhere() {
        let cli = Cli::try_parse_from([
            "routerctl",
            "account",
            "list",
            "--json",
            "--endpoint",
            "http://cp:1",
            "--admin-token",
            "t",
        ])
        .expect("a valid command line");
        assert!(cli.global.json);
        assert_eq!(cli.global.endpoint, "http://cp:1");
        assert_eq!(cli.global.admin_token.as_deref(), Some("t"));
    }
}
