//! The `routerctl` binary: parse the command line, run it, turn failure into an exit code.
#![forbid(unsafe_code)]

use std::{io::Write, process::ExitCode};

use clap::Parser;
use routerctl::Cli;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    // clap prints its own usage errors and exits with 2; everything after that exits with 1.
    let cli = Cli::parse();
    match routerctl::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Nothing sensible is left to do if stderr itself is gone.
            let _ = writeln!(std::io::stderr(), "error: {error}");
            ExitCode::FAILURE
        }
    }
}
