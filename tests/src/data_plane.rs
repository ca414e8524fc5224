//! A running data plane connected to a control plane.
use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::bail;

use crate::{ControlPlane, Process, bin, http_client};

/// A running `router-data-plane` connected to a control plane.
pub struct DataPlane {
    /// The process.
    pub process: Process,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl DataPlane {
    /// Starts a data plane for `cp` with extra flags, and waits until it is ready.
    pub async fn start(cp: &ControlPlane, spool_dir: &Path, args: &[&str]) -> anyhow::Result<DataPlane> {
        DataPlane::start_under(cp, spool_dir, args, &[]).await
    }

    /// The same, run under `wrapper` (a command and its arguments that runs the rest, such as
    /// `prlimit --nofile=128:128`; empty: none).
    pub async fn start_under(
        cp: &ControlPlane,
        spool_dir: &Path,
        args: &[&str],
        wrapper: &[&str],
    ) -> anyhow::Result<DataPlane> {
        DataPlane::launch(cp, spool_dir, args, wrapper, &[]).await
    }

    /// Starts a data plane with extra environment variables (such as `ROUTER_LOG`).
    pub async fn start_with_env(
        cp: &ControlPlane,
        spool_dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<DataPlane> {
        DataPlane::launch(cp, spool_dir, args, &[], env).await
    }

    async fn launch(
        cp: &ControlPlane,
        spool_dir: &Path,
        args: &[&str],
        wrapper: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<DataPlane> {
        let mut command = match wrapper.split_first() {
            Some((program, wrapper_args)) => {
                let mut command = Command::new(program);
                command.args(wrapper_args).arg(bin("router-data-plane"));
                command
            }
            None => Command::new(bin("router-data-plane")),
        };
        command
            .args(["--listen", "127.0.0.1:0", "--control-plane", &cp.endpoint])
            .arg("--spool-dir")
            .arg(spool_dir)
            .args(args)
            .env("ROUTER_NODE_TOKEN", &cp.node_token)
            // Off unless a test asks (`--auth-failure-limit`): tests that poll until a new key
            // reaches the data plane would trip the failed-auth back-off from 127.0.0.1.
            .env("ROUTER_AUTH_FAILURE_LIMIT", "0")
            .env_remove("ROUTER_DP_LISTEN")
            .envs(env.iter().copied());
        let mut process = Process::spawn(command)?;
        let line = process.wait_for_line("listening on ", Duration::from_secs(60))?;
        let address = line.rsplit("listening on ").next().unwrap_or_default().trim().to_owned();
        let url = format!("http://{address}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if http_client::get(&format!("{url}/readyz"), &[]).await.is_ok_and(|r| r.status == 200) {
                break;
            }
            if Instant::now() > deadline {
                bail!("the data plane did not become ready; log:\n{}", process.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(DataPlane { process, url })
    }
}
