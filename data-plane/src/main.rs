//! `router-data-plane`: parse the configuration, run the proxy, map failure to an exit code.
use std::process::ExitCode;

use clap::Parser;
use router_data_plane::config::Config;
use router_startup::Runtime;

fn main() -> ExitCode {
    let config = Config::parse();
    router_startup::init_logging("info");
    router_startup::run(
        Runtime::MultiThread,
        router_data_plane::run(config, router_startup::shutdown_signal()),
    )
}
