//! A running control plane, and routerctl against it.
use std::{
    process::{Command, Output, Stdio},
    time::Duration,
};

use serde_json::Value;

use crate::{Process, TestDb, bin, random_name};

/// A running `router-control-plane` with random tokens.
pub struct ControlPlane {
    /// The process.
    pub process: Process,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The admin token.
    pub admin_token: String,
    /// The node token.
    pub node_token: String,
    database_url: String,
    extra_env: Vec<(String, String)>,
}

impl ControlPlane {
    /// Starts a control plane on `db` (port chosen by the OS).
    pub fn start(db: &TestDb) -> anyhow::Result<ControlPlane> {
        ControlPlane::start_with_env(db, &[])
    }

    /// The same with extra environment (such as `ROUTER_RATE_WINDOW_MS`).
    pub fn start_with_env(db: &TestDb, env: &[(&str, &str)]) -> anyhow::Result<ControlPlane> {
        ControlPlane::start_with(
            &db.url,
            &format!("adm-{}", random_name(24)),
            &format!("node-{}", random_name(24)),
            env,
        )
    }

    /// Starts a control plane with explicit tokens and extra environment.
    pub fn start_with(
        database_url: &str,
        admin_token: &str,
        node_token: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<ControlPlane> {
        let extra_env: Vec<(String, String)> =
            env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let (process, endpoint) =
            Self::launch(database_url, admin_token, node_token, &extra_env, "127.0.0.1:0")?;
        Ok(ControlPlane {
            process,
            endpoint,
            admin_token: admin_token.to_owned(),
            node_token: node_token.to_owned(),
            database_url: database_url.to_owned(),
            extra_env,
        })
    }

    fn launch(
        database_url: &str,
        admin_token: &str,
        node_token: &str,
        env: &[(String, String)],
        listen: &str,
    ) -> anyhow::Result<(Process, String)> {
        let mut command = Command::new(bin("router-control-plane"));
        command
            .args(["--listen", listen])
            .env("DATABASE_URL", database_url)
            .env("ROUTER_ADMIN_TOKEN", admin_token)
            .env("ROUTER_NODE_TOKEN", node_token)
            .env_remove("ROUTER_CP_LISTEN");
        for (key, value) in env {
            command.env(key, value);
        }
        let mut process = Process::spawn(command)?;
        let line = process.wait_for_line("listening on ", Duration::from_secs(60))?;
        let address = line.rsplit("listening on ").next().unwrap_or_default().trim().to_owned();
        Ok((process, format!("http://{address}")))
    }

    /// Stops the control plane with SIGTERM (it must exit within 5 s) and starts it again on
    /// the same database and port.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        let took = self.process.terminate(Duration::from_secs(5))?;
        assert!(took <= Duration::from_secs(5), "shutdown took {took:?}");
        self.restart_after_kill()
    }

    /// Starts the control plane again on the same database and port after it was killed.
    pub fn restart_after_kill(&mut self) -> anyhow::Result<()> {
        self.process.kill();
        let listen = self.endpoint.trim_start_matches("http://").to_owned();
        let (process, endpoint) =
            Self::launch(&self.database_url, &self.admin_token, &self.node_token, &self.extra_env, &listen)?;
        self.process = process;
        self.endpoint = endpoint;
        Ok(())
    }

    /// Adds channel `name` of type `kind` at `base_url` with upstream key `api_key`, serving
    /// `models` (comma separated), with `extra` flags such as `--priority`; returns it.
    pub fn add_channel(
        &self,
        name: &str,
        kind: &str,
        base_url: &str,
        api_key: &str,
        models: &str,
        extra: &[&str],
    ) -> Value {
        let mut args = vec!["channel", "add", "--name", name, "--type", kind, "--base-url", base_url];
        args.extend_from_slice(&["--api-key", api_key, "--models", models]);
        args.extend_from_slice(extra);
        self.json(&args)
    }

    /// Runs routerctl against this control plane.
    pub fn ctl(&self, args: &[&str]) -> Output {
        routerctl(&self.endpoint, &self.admin_token, args)
    }

    /// Runs routerctl with `input` on its standard input.
    pub fn ctl_with_stdin(&self, args: &[&str], input: &str) -> Output {
        use std::io::Write;
        let mut child = Command::new(bin("routerctl"))
            .args(args)
            .env("ROUTER_ENDPOINT", &self.endpoint)
            .env("ROUTER_ADMIN_TOKEN", &self.admin_token)
            .env_remove("ROUTER_JSON")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("routerctl runs");
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("stdin is written");
        child.wait_with_output().expect("routerctl finishes")
    }

    /// Runs `routerctl --json ARGS`, which must succeed, and parses its one JSON value.
    pub fn json(&self, args: &[&str]) -> Value {
        routerctl_json(&self.endpoint, &self.admin_token, args)
    }

    /// Runs routerctl expecting failure; returns its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let output = self.ctl(args);
        assert!(
            !output.status.success(),
            "routerctl {args:?} should fail but printed {}",
            String::from_utf8_lossy(&output.stdout)
        );
        assert!(
            output.stdout.is_empty() || !args.contains(&"--json"),
            "a failing --json command printed to stdout"
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    }
}

/// Runs routerctl against the control plane at `endpoint`.
pub fn routerctl(endpoint: &str, admin_token: &str, args: &[&str]) -> Output {
    Command::new(bin("routerctl"))
        .args(args)
        .env("ROUTER_ENDPOINT", endpoint)
        .env("ROUTER_ADMIN_TOKEN", admin_token)
        .env_remove("ROUTER_JSON")
        .output()
        .expect("routerctl runs")
}

/// Runs `routerctl --json ARGS` against `endpoint`, which must succeed, and parses its one
/// JSON value.
pub fn routerctl_json(endpoint: &str, admin_token: &str, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let output = routerctl(endpoint, admin_token, &all);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "routerctl {args:?} failed: {}{}",
        stdout,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("routerctl {args:?} printed no single JSON value ({e}): {stdout}"))
}

/// A decimal string from JSON output, as nano-units.
pub fn nanos(value: &Value) -> i64 {
    let text = value.as_str().unwrap_or_else(|| panic!("expected a decimal string, got {value}"));
    router_proto::Money::parse(text).unwrap_or_else(|e| panic!("{e}")).nanos()
}
