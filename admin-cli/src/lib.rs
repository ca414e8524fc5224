//! routerctl, the admin command line of Code Router: every AdminService RPC as a command.
//!
//! `main` parses the command line and calls [`run`]; everything else lives in these modules so
//! tests can reach it.
#![forbid(unsafe_code)]

pub mod args;
pub mod cli;
pub mod client;
pub mod commands;
pub mod error;
pub mod import;
pub mod output;
pub mod setup;

use std::io;

pub use cli::Cli;
pub use error::Error;

/// Runs a parsed command line: checks the token, connects, runs the command, prints the result.
pub async fn run(cli: Cli) -> Result<(), Error> {
    // These need no control plane (nor a token): packagers run them at build time.
    match &cli.command {
        cli::Command::Completions(args) => return commands::packaging::completions(args),
        cli::Command::Man(args) => return commands::packaging::man(args),
        _ => {}
    }
    let endpoint = cli.global.endpoint;
    let token = router_startup::secret::resolve(
        "admin-token",
        cli.global.admin_token,
        cli.global.admin_token_file.as_deref(),
    )
    .map_err(|error| Error::Invalid(format!("{error:#}")))?
    .ok_or(Error::MissingToken)?;
    let tls = router_proto::tls::ClientTls {
        ca_cert: cli.global.ca_cert.as_deref(),
        client_cert: cli.global.client_cert.as_deref(),
        client_key: cli.global.client_key.as_deref(),
    };
    let mut admin = client::connect(&endpoint, &token, tls).await?;
    let mut out = output::Output::stdout(cli.global.json);
    match commands::run(cli.command, &mut admin, &mut out).await {
        // A reader that stopped early (`routerctl usage | head`) is not a failure.
        Err(Error::Output(error)) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        result => result.map_err(|error| error.for_endpoint(&endpoint)),
    }
}
