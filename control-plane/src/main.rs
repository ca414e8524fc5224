//! `router-control-plane`: parse the configuration, run the server, map failure to an exit code.
use std::process::ExitCode;

use clap::Parser;
use router_control_plane::{config::Config, server};
use router_startup::Runtime;

fn main() -> ExitCode {
    let config = Config::parse();
    router_startup::init_logging("info");
    router_startup::run(Runtime::MultiThread, server::run(config, router_startup::shutdown_signal()))
}
