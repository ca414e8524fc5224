//! `router-bench stack`: the stack `run` measures, started and provisioned the same way, then
//! held up until Ctrl-C or SIGTERM so it can be driven and profiled by hand (`perf record -p`).

use tokio::signal::unix::{SignalKind, signal};

use crate::cli::{RunArgs, StackArgs};
use crate::process::Service;
use crate::scenario::stack::{self, Stack};

/// Starts the stack, prints how to reach it, waits for Ctrl-C or SIGTERM, then tears it down.
pub async fn run(args: StackArgs) -> anyhow::Result<()> {
    let run_args = RunArgs {
        chunks: args.chunks,
        chunk_delay_ms: args.chunk_delay_ms,
        bin_dir: args.bin_dir,
        ..RunArgs::defaults()?
    };
    // Installed before anything starts, so a SIGTERM during start-up still tears down.
    let mut terminate = signal(SignalKind::terminate())?;
    eprintln!("starting control plane, mock, forwarder and data plane …");
    let stack = tokio::select! {
        stack = stack::start(&run_args) => stack?,
        _ = tokio::signal::ctrl_c() => return Ok(()),
        _ = terminate.recv() => return Ok(()),
    };
    println!("{}", describe(&stack)?);
    tokio::select! {
        interrupted = tokio::signal::ctrl_c() => interrupted?,
        _ = terminate.recv() => {}
    }
    eprintln!("stopping …");
    let mut stack = stack;
    for service in [&mut stack.data_plane, &mut stack.control_plane, &mut stack.forwarder, &mut stack.mock] {
        service.stop().await?;
    }
    // Dropping the stack removes its temporary directory.
    drop(stack);
    eprintln!("stopped");
    Ok(())
}

/// Addresses, key and pids, ready to paste into `load`, `routerctl` or `perf`.
fn describe(stack: &Stack) -> anyhow::Result<String> {
    let pid = |service: &Service| service.pid().map(|pid| pid.to_string());
    Ok(format!(
        "\
data plane     {dp_url}  pid {dp}
control plane  {cp_url}  pid {cp}
forwarder      {fw_url}  pid {fw}
mock           {mock_url}  pid {mock}
router-bench   pid {me}
api key        {key}
admin token    {token}
work dir       {work_dir}

e.g.  {exe} load --url {dp_url}/v1/chat/completions --key {key} --rate 1000 --duration 30
      perf record -F 499 -g -p {dp} -- sleep 20
      ROUTER_ENDPOINT={cp_url} ROUTER_ADMIN_TOKEN={token} routerctl key list

Ctrl-C or SIGTERM stops everything.",
        dp_url = stack.data_plane_url,
        dp = pid(&stack.data_plane)?,
        cp_url = stack.control_plane_url,
        cp = pid(&stack.control_plane)?,
        fw_url = stack.forward_url,
        fw = pid(&stack.forwarder)?,
        mock_url = stack.mock_url,
        mock = pid(&stack.mock)?,
        me = std::process::id(),
        key = stack.key,
        token = stack.admin_token,
        work_dir = stack.work_dir.display(),
        exe = std::env::current_exe()?.display(),
    ))
}
