//! The `routerctl` binary: parse the command line, run it, turn failure into an exit code.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use router_startup::Runtime;
use routerctl::Cli;

fn main() -> ExitCode {
    // clap prints its own usage errors and exits with 2; everything after that exits with 1.
    let cli = Cli::parse();
    // The error's own message is the whole story (its causes are already in it).
    router_startup::run(Runtime::CurrentThread, async {
        routerctl::run(cli).await.map_err(|error| anyhow::Error::msg(error.to_string()))
    })
}
