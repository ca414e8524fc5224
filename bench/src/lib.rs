//! Benchmark harness for Code Router: a mock upstream, a bare forwarder (the physical limit),
//! an open/closed-loop load generator with HDR histograms, and a scenario runner that compares
//! all three paths in one invocation.

pub mod cli;
pub mod forward;
pub mod hold;
pub mod keys;
pub mod load;
pub mod mock;
pub mod process;
pub mod procstat;
pub mod propagation;
pub mod report;
pub mod scenario;
pub mod streams;
pub mod usage;

/// Runs one subcommand to completion.
pub async fn run(cli: cli::Cli) -> anyhow::Result<()> {
    match cli.command {
        cli::Command::Mock(args) => mock::serve(args).await,
        cli::Command::Forward(args) => forward::serve(args).await,
        cli::Command::Load(args) => {
            let summary = load::run(&args.to_plan()?).await?;
            println!("{}", report::summary_text(&summary));
            Ok(())
        }
        cli::Command::Run(args) => scenario::run(args).await,
        cli::Command::Propagation(args) => propagation::run(args).await,
        cli::Command::Stack(args) => hold::run(args).await,
        cli::Command::Keys(args) => keys::run(args).await,
        cli::Command::Streams(args) => streams::run(args).await,
        cli::Command::Usage(args) => usage::run(args).await,
    }
}
