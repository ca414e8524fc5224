//! Start-up shared by Code Router's binaries: logging to stderr, the tokio runtime, the
//! shutdown signals, the mapping of failure to an exit code, and the accept loop both servers
//! share ([`accept`]). Binaries stay thin: they parse their configuration and hand the rest to
//! [`run`].
#![forbid(unsafe_code)]

pub mod accept;
pub mod secret;

use std::{future::Future, io::IsTerminal, process::ExitCode};

use tracing_subscriber::EnvFilter;

/// Which tokio runtime a binary runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// Worker threads, one per core (servers).
    MultiThread,
    /// The calling thread only (short-lived commands).
    CurrentThread,
}

/// Logs to stderr, filtered by `ROUTER_LOG` (a `tracing` filter) or else `default_filter`;
/// colours only on a terminal.
pub fn init_logging(default_filter: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("ROUTER_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter)),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

/// Runs `main` to completion on a new runtime: success exits 0; a failure is printed to stderr
/// as `error: …` (with its causes) and exits 1.
pub fn run(runtime: Runtime, main: impl Future<Output = anyhow::Result<()>>) -> ExitCode {
    let built = match runtime {
        Runtime::MultiThread => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
        Runtime::CurrentThread => tokio::runtime::Builder::new_current_thread().enable_all().build(),
    };
    let outcome = match built {
        Ok(runtime) => runtime.block_on(main),
        Err(error) => Err(anyhow::Error::new(error).context("cannot start the runtime")),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Completes on the first SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let Ok(mut terminate) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
        let _ = interrupt.await;
        return;
    };
    tokio::select! {
        _ = interrupt => {}
        _ = terminate.recv() => {}
    }
}
