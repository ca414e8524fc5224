//! One module per entity the admin API manages; each parses its flags into a request, makes
//! the call, and renders the answer.
pub mod account;
pub mod alias;
pub mod balance;
pub mod channel;
pub mod code;
pub mod group;
pub mod import;
pub mod key;
pub mod limits;
pub mod model;
pub mod model_group;
pub mod order;
pub mod packaging;
mod price;
pub mod pricing;
pub mod quarantine;
pub mod setup;
pub mod usage;

use crate::{cli::Command, client::Admin, error::Error, output::Output};

/// Runs one command against the control plane.
pub async fn run(command: Command, admin: &mut Admin, out: &mut Output) -> Result<(), Error> {
    match command {
        Command::Channel(command) => channel::run(command, admin, out).await,
        Command::Model(command) => model::run(command, admin, out).await,
        Command::ModelGroup(command) => model_group::run(command, admin, out).await,
        Command::Group(command) => group::run(command, admin, out).await,
        Command::Account(command) => account::run(command, admin, out).await,
        Command::Key(command) => key::run(command, admin, out).await,
        Command::Topup(args) => balance::topup(args, admin, out).await,
        Command::Adjust(args) => balance::adjust(args, admin, out).await,
        Command::Ledger(args) => balance::ledger(args, admin, out).await,
        Command::Code(command) => code::run(command, admin, out).await,
        Command::Order(command) => order::run(command, admin, out).await,
        Command::Usage(args) => usage::run(args, admin, out).await,
        Command::Pricing => pricing::run(admin, out).await,
        Command::Apply(args) => setup::apply(args, admin, out).await,
        Command::Export(args) => setup::export(args, admin, out).await,
        Command::Import(args) => import::run(args, admin, out).await,
        // Answered before connecting (see `crate::run`).
        Command::Completions(_) | Command::Man(_) => Ok(()),
    }
}
