//! Harness for the end-to-end tests: real binaries on ephemeral ports, each test with its own
//! database (a fresh SQLite file, or a fresh PostgreSQL database dropped afterwards).
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)]

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use rand::{Rng, distr::Alphanumeric};
use serde_json::Value;

/// PostgreSQL server the tests create their databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("ROUTER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A random lowercase alphanumeric string.
pub fn random_name(len: usize) -> String {
    rand::rng().sample_iter(Alphanumeric).take(len).map(|c| char::from(c).to_ascii_lowercase()).collect()
}

/// The folder cargo put this workspace's binaries in.
pub fn bin_dir() -> PathBuf {
    // target/<profile>/deps/<test binary> -> target/<profile>
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent().and_then(Path::parent).expect("target dir").to_path_buf()
}

/// The path of one of the workspace's binaries, which must have been built.
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: run the README's test command (it builds the binaries first)",
        path.display()
    );
    path
}

/// Which database backend a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite in a temporary file.
    Sqlite,
    /// A fresh database on the local PostgreSQL server.
    Postgres,
}

/// A database of the test's own, removed when dropped.
pub struct TestDb {
    /// The backend.
    pub backend: Backend,
    /// `DATABASE_URL` for the control plane.
    pub url: String,
    /// A temporary folder (SQLite file, spools, logs).
    pub dir: PathBuf,
    pg_name: Option<String>,
}

impl TestDb {
    /// Creates an empty database.
    pub async fn create(backend: Backend) -> anyhow::Result<TestDb> {
        let dir = std::env::temp_dir().join(format!("router-test-{}", random_name(12)));
        std::fs::create_dir_all(&dir)?;
        match backend {
            Backend::Sqlite => {
                let url = format!("sqlite://{}", dir.join("router.db").display());
                Ok(TestDb { backend, url, dir, pg_name: None })
            }
            Backend::Postgres => {
                let name = format!("t_{}", random_name(16));
                let admin = postgres_admin_url();
                let mut conn = AsyncPgConnection::establish(&admin)
                    .await
                    .with_context(|| format!("cannot reach PostgreSQL at {admin} (is it running?)"))?;
                conn.batch_execute(&format!("CREATE DATABASE {name}")).await?;
                let base = admin.rsplit_once('/').map_or(admin.as_str(), |(base, _)| base);
                let url = format!("{base}/{name}");
                Ok(TestDb { backend, url, dir, pg_name: Some(name) })
            }
        }
    }

    /// Every row of every table, as text: for checking that a secret is stored nowhere.
    pub async fn dump(&self) -> anyhow::Result<String> {
        match self.backend {
            Backend::Sqlite => {
                let mut text = Vec::new();
                for entry in std::fs::read_dir(&self.dir)? {
                    let path = entry?.path();
                    if path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("router.db")) {
                        text.extend(std::fs::read(&path)?);
                    }
                }
                Ok(String::from_utf8_lossy(&text).into_owned())
            }
            Backend::Postgres => {
                #[derive(diesel::QueryableByName)]
                struct Row {
                    #[diesel(sql_type = diesel::sql_types::Text)]
                    text: String,
                }
                use diesel_async::RunQueryDsl;
                let mut conn = AsyncPgConnection::establish(&self.url).await?;
                let tables: Vec<Row> =
                    diesel::sql_query("SELECT tablename AS text FROM pg_tables WHERE schemaname = 'public'")
                        .load(&mut conn)
                        .await?;
                let mut dump = String::new();
                for table in tables {
                    let rows: Vec<Row> = diesel::sql_query(format!(
                        "SELECT row_to_json(t)::text AS text FROM \"{}\" t",
                        table.text
                    ))
                    .load(&mut conn)
                    .await?;
                    for row in rows {
                        dump.push_str(&row.text);
                        dump.push('\n');
                    }
                }
                Ok(dump)
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some(name) = self.pg_name.take() {
            // Drop runs outside any runtime guarantee: use a thread with its own.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                runtime.block_on(async {
                    let mut conn = AsyncPgConnection::establish(&postgres_admin_url()).await?;
                    conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await?;
                    anyhow::Ok(())
                })
            })
            .join();
        }
    }
}

/// A child process whose stderr is collected, killed when dropped.
pub struct Process {
    child: Child,
    log: Arc<Mutex<String>>,
    lines: mpsc::Receiver<String>,
}

impl Process {
    /// Starts `command` capturing stderr (stdout is discarded).
    pub fn spawn(command: Command) -> anyhow::Result<Process> {
        Process::spawn_with_stdout(command, Stdio::null())
    }

    /// Starts `command` capturing stderr, its stdout going to `stdout`.
    pub fn spawn_with_stdout(mut command: Command, stdout: Stdio) -> anyhow::Result<Process> {
        command.stdin(Stdio::null()).stdout(stdout).stderr(Stdio::piped());
        let mut child = command.spawn().context("cannot start process")?;
        let stderr = child.stderr.take().context("no stderr")?;
        let log = Arc::new(Mutex::new(String::new()));
        let (sender, lines) = mpsc::channel();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut log) = sink.lock() {
                    log.push_str(&line);
                    log.push('\n');
                }
                let _ = sender.send(line);
            }
        });
        Ok(Process { child, log, lines })
    }

    /// Waits for a stderr line containing `needle`; returns the line.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return Ok(line),
                Ok(_) => {}
                Err(_) => bail!("no line with {needle:?} within {timeout:?}; log:\n{}", self.log()),
            }
        }
    }

    /// Everything written to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Sends SIGTERM and waits (bounded) for the exit; returns how long it took.
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<Duration> {
        let start = Instant::now();
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        loop {
            if self.child.try_wait()?.is_some() {
                return Ok(start.elapsed());
            }
            if start.elapsed() > timeout {
                bail!("process did not exit within {timeout:?} of SIGTERM");
            }
            // Polling a child's exit status: there is no portable blocking wait with a deadline.
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` (`TERM`, `INT`, …) without waiting.
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let status =
            Command::new("kill").arg(format!("-{signal}")).arg(self.child.id().to_string()).status()?;
        anyhow::ensure!(status.success(), "kill -{signal} failed");
        Ok(())
    }

    /// Waits (bounded) for the process to exit; returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if start.elapsed() > timeout {
                bail!("process did not exit within {timeout:?}");
            }
            // Polling a child's exit status: there is no portable blocking wait with a deadline.
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM without waiting.
    pub fn signal_terminate(&self) -> anyhow::Result<()> {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status()?;
        anyhow::ensure!(status.success(), "kill -TERM failed");
        Ok(())
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited.
    pub fn has_exited(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_some()
    }

    /// Kills the process at once (SIGKILL).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

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
        ControlPlane::start_with(
            &db.url,
            &format!("adm-{}", random_name(24)),
            &format!("node-{}", random_name(24)),
            &[],
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

/// Adds `authorization: Bearer <token>` to every request.
#[derive(Clone)]
pub struct Bearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        request.metadata_mut().insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// A gRPC channel that sends `token`.
pub type Authed = tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Bearer>;

/// Connects to `endpoint`, presenting `token` (empty: no authorization header at all).
pub async fn connect(endpoint: &str, token: &str) -> anyhow::Result<Authed> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())?.connect().await?;
    let value = if token.is_empty() { "Bearer".parse()? } else { format!("Bearer {token}").parse()? };
    Ok(tonic::service::interceptor::InterceptedService::new(channel, Bearer(value)))
}

/// An admin client presenting `token`.
pub async fn admin_client(
    endpoint: &str,
    token: &str,
) -> anyhow::Result<router_proto::pb::admin_service_client::AdminServiceClient<Authed>> {
    Ok(router_proto::pb::admin_service_client::AdminServiceClient::new(connect(endpoint, token).await?))
}

/// A plane client presenting `token`.
pub async fn node_client(
    endpoint: &str,
    token: &str,
) -> anyhow::Result<router_proto::pb::node_service_client::NodeServiceClient<Authed>> {
    Ok(router_proto::pb::node_service_client::NodeServiceClient::new(connect(endpoint, token).await?))
}

/// A decimal string from JSON output, as nano-units.
pub fn nanos(value: &Value) -> i64 {
    let text = value.as_str().unwrap_or_else(|| panic!("expected a decimal string, got {value}"));
    router_proto::Money::parse(text).unwrap_or_else(|e| panic!("{e}")).nanos()
}

pub mod http_client;
pub mod mock;

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

/// Waits, up to `timeout`, for `check` to return `Some`.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
