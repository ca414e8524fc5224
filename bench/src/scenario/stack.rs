//! Starting the whole stack for a run: control plane on a temporary SQLite file, the mock,
//! the bare forwarder and a data plane, provisioned through `routerctl`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::process::Command;

use crate::cli::RunArgs;
use crate::process::Service;

const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The account [`provision`] creates.
pub(crate) const ACCOUNT: &str = "bench";

/// Every process of a run; all are killed when this is dropped.
pub struct Stack {
    /// The mock upstream.
    pub mock: Service,
    /// The bare forwarder in front of the mock.
    pub forwarder: Service,
    /// The control plane.
    pub control_plane: Service,
    /// The data plane in front of the mock.
    pub data_plane: Service,
    /// `http://ADDR` of the mock.
    pub mock_url: String,
    /// `http://ADDR` of the forwarder.
    pub forward_url: String,
    /// `http://ADDR` of the data plane.
    pub data_plane_url: String,
    /// `http://ADDR` of the control plane (gRPC, for `routerctl`).
    pub control_plane_url: String,
    /// The control plane's admin token (for `routerctl`).
    pub admin_token: String,
    /// The provisioned API key.
    pub key: String,
    /// `routerctl` on the control plane, for what a scenario provisions itself.
    pub(crate) ctl: Ctl,
    /// Temporary files (database, spool); removed on drop.
    pub work_dir: PathBuf,
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.work_dir);
    }
}

/// Where the router binaries are: `explicit` (`--bin-dir`), else beside this executable.
pub(crate) fn bin_dir(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = explicit {
        return Ok(dir.to_path_buf());
    }
    let exe = std::env::current_exe()?;
    Ok(exe.parent().map(Path::to_path_buf).unwrap_or_default())
}

/// `dir/name`, or an error telling how to build it.
pub(crate) fn binary(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    anyhow::ensure!(
        path.is_file(),
        "{} is missing: run `cargo build --release --bins` first (or pass --bin-dir)",
        path.display()
    );
    Ok(path)
}

/// Starts and provisions everything, and waits until the data plane answers a real request.
pub async fn start(args: &RunArgs) -> anyhow::Result<Stack> {
    let dir = bin_dir(args.bin_dir.as_deref())?;
    let control_plane_bin = binary(&dir, "router-control-plane")?;
    let data_plane_bin = binary(&dir, "router-data-plane")?;
    let routerctl = binary(&dir, "routerctl")?;
    let me = std::env::current_exe()?;

    let work_dir = std::env::temp_dir().join(format!("router-bench-{}", std::process::id()));
    std::fs::create_dir_all(work_dir.join("spool"))?;
    let admin_token = format!("bench-admin-{}", std::process::id());
    let node_token = format!("bench-node-{}", std::process::id());

    let (mock, mock_url) = start_mock(&me, args.chunks, args.chunk_delay_ms).await?;

    let mut forwarder = Service::spawn("forwarder", {
        let mut c = Command::new(&me);
        c.args(["forward", "--listen", "127.0.0.1:0", "--upstream", &mock_url]);
        c
    })?;
    let forward_url = format!("http://{}", forwarder.listening_address(START_TIMEOUT).await?);

    let (control_plane, control_plane_url) =
        start_control_plane(&control_plane_bin, &work_dir, &admin_token, &node_token).await?;
    let ctl = Ctl { bin: routerctl, endpoint: control_plane_url.clone(), admin_token: admin_token.clone() };
    let key = provision(&ctl, &mock_url).await?;

    let (data_plane, data_plane_url) = start_data_plane(
        &data_plane_bin,
        "data plane",
        &control_plane_url,
        &work_dir.join("spool"),
        &node_token,
    )
    .await?;

    let stack = Stack {
        mock,
        forwarder,
        control_plane,
        data_plane,
        mock_url,
        forward_url,
        data_plane_url,
        control_plane_url,
        admin_token,
        key,
        ctl,
        work_dir,
    };
    wait_ready(&stack.data_plane, &stack.data_plane_url, &stack.key).await?;
    Ok(stack)
}

/// Starts the mock upstream (this executable's `mock`); returns it with its `http://ADDR`.
pub(crate) async fn start_mock(
    me: &Path,
    chunks: u32,
    chunk_delay_ms: u64,
) -> anyhow::Result<(Service, String)> {
    let mut mock = Service::spawn("mock", {
        let mut c = Command::new(me);
        c.args(["mock", "--listen", "127.0.0.1:0", "--chunks", &chunks.to_string()])
            .args(["--chunk-delay-ms", &chunk_delay_ms.to_string()]);
        c
    })?;
    let url = format!("http://{}", mock.listening_address(START_TIMEOUT).await?);
    Ok((mock, url))
}

/// Starts a control plane on a SQLite file in `work_dir`; returns it with its `http://ADDR`.
pub(crate) async fn start_control_plane(
    bin: &Path,
    work_dir: &Path,
    admin_token: &str,
    node_token: &str,
) -> anyhow::Result<(Service, String)> {
    let database_url = format!("sqlite://{}", work_dir.join("router.db").display());
    start_control_plane_on(bin, "control plane", &database_url, admin_token, node_token).await
}

/// Starts a control plane named `name` on `database_url`; returns it with its `http://ADDR`.
pub(crate) async fn start_control_plane_on(
    bin: &Path,
    name: &str,
    database_url: &str,
    admin_token: &str,
    node_token: &str,
) -> anyhow::Result<(Service, String)> {
    let mut control_plane = Service::spawn(name, {
        let mut c = Command::new(bin);
        c.args(["--listen", "127.0.0.1:0"])
            .env("DATABASE_URL", database_url)
            .env("ROUTER_ADMIN_TOKEN", admin_token)
            .env("ROUTER_NODE_TOKEN", node_token)
            .env("NO_COLOR", "1")
            .env_remove("ROUTER_CP_LISTEN");
        c
    })?;
    let url = format!("http://{}", control_plane.listening_address(START_TIMEOUT).await?);
    Ok((control_plane, url))
}

/// Through `routerctl`: an `openai` channel to the mock's `/v1`, a price for `bench-model`, an
/// account [`ACCOUNT`] with a large balance and a key on it, whose secret is returned.
pub(crate) async fn provision(ctl: &Ctl, mock_url: &str) -> anyhow::Result<String> {
    let base_url = format!("{mock_url}/v1");
    let channel = ["--name", "mock", "--type", "openai", "--base-url", &base_url];
    let upstream = ["--api-key", "bench-upstream", "--models", "bench-model"];
    ctl.json(&[&["channel", "add"][..], &channel, &upstream].concat()).await?;
    ctl.json(&["model", "set", "bench-model", "--input-price", "0.000001", "--output-price", "0.000001"])
        .await?;
    ctl.json(&["account", "add", ACCOUNT, "--balance", "1000000000"]).await?;
    let created = ctl.json(&["key", "create", "--account", ACCOUNT, "--name", "bench"]).await?;
    let key =
        created["key"].as_str().ok_or_else(|| anyhow::anyhow!("routerctl key create printed no key"))?;
    Ok(key.to_owned())
}

/// Starts a data plane (called `name` in messages) following the control plane at
/// `control_plane_url` and spooling into `spool_dir`; returns it with its `http://ADDR`.
pub(crate) async fn start_data_plane(
    bin: &Path,
    name: &str,
    control_plane_url: &str,
    spool_dir: &Path,
    node_token: &str,
) -> anyhow::Result<(Service, String)> {
    let mut data_plane = Service::spawn(name, {
        let mut c = Command::new(bin);
        c.args(["--listen", "127.0.0.1:0", "--control-plane", control_plane_url])
            .arg("--spool-dir")
            .arg(spool_dir)
            .env("ROUTER_NODE_TOKEN", node_token)
            // `propagation` polls with keys that are refused until a change arrives, from one
            // address: the failed-auth back-off would hold that address (it has its own
            // micro-benchmark). A data plane without it ignores the variable.
            .env("ROUTER_AUTH_FAILURE_LIMIT", "0")
            .env("NO_COLOR", "1")
            .env_remove("ROUTER_DP_LISTEN");
        c
    })?;
    let url = format!("http://{}", data_plane.listening_address(START_TIMEOUT).await?);
    Ok((data_plane, url))
}

/// Waits for `/readyz` of the data plane at `url`, then for a real chat request with `key`
/// through it to succeed (the provisioned key and channel reach it asynchronously).
pub(crate) async fn wait_ready(data_plane: &Service, url: &str, key: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    let mut last = String::new();
    while Instant::now() < deadline {
        match probe(url, key).await {
            Ok(()) => return Ok(()),
            Err(error) => last = format!("{error:#}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("{} never served a request ({last}); its log:\n{}", data_plane.name, data_plane.tail())
}

async fn probe(data_plane_url: &str, key: &str) -> anyhow::Result<()> {
    let plan = crate::load::Plan {
        url: format!("{data_plane_url}/readyz").parse()?,
        key: None,
        headers: Vec::new(),
        body: bytes::Bytes::new(),
        stream: false,
        connections: 1,
        duration: Duration::from_millis(1),
        rate: None,
    };
    let ready = get_status(&plan.url).await?;
    anyhow::ensure!(ready == 200, "/readyz answered {ready}");
    let plan = crate::load::Plan {
        url: format!("{data_plane_url}/v1/chat/completions").parse()?,
        key: Some(key.to_owned()),
        body: crate::load::default_body(false).into(),
        ..plan
    };
    let summary = crate::load::run(&plan).await?;
    anyhow::ensure!(summary.ok > 0 && summary.errors == 0, "probe failed: {:?}", summary.first_error);
    Ok(())
}

async fn get_status(url: &http::Uri) -> anyhow::Result<u16> {
    let host = url.host().unwrap_or("127.0.0.1");
    let port = url.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host, port)).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, http_body_util::Empty<bytes::Bytes>>(
        hyper_util::rt::TokioIo::new(stream),
    )
    .await?;
    tokio::spawn(conn);
    let request = http::Request::get(url.clone())
        .header(http::header::HOST, format!("{host}:{port}"))
        .body(http_body_util::Empty::new())?;
    Ok(sender.send_request(request).await?.status().as_u16())
}

/// `routerctl` bound to the run's control plane.
pub(crate) struct Ctl {
    /// The `routerctl` executable.
    pub(crate) bin: PathBuf,
    /// `http://ADDR` of the control plane.
    pub(crate) endpoint: String,
    /// The admin token.
    pub(crate) admin_token: String,
}

impl Ctl {
    /// Runs `routerctl --json ARGS` and parses what it printed.
    pub(crate) async fn json(&self, args: &[&str]) -> anyhow::Result<serde_json::Value> {
        let output = Command::new(&self.bin)
            .arg("--json")
            .args(args)
            .env("ROUTER_ENDPOINT", &self.endpoint)
            .env("ROUTER_ADMIN_TOKEN", &self.admin_token)
            .output()
            .await?;
        anyhow::ensure!(
            output.status.success(),
            "routerctl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Ok(serde_json::from_slice(&output.stdout)?)
    }
}
