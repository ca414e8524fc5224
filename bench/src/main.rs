//! `router-bench`: parses the command line, builds the runtime, runs one subcommand.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = router_bench::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("router-bench: cannot start the runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(router_bench::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("router-bench: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
