//! `router-bench keys`: how a data plane copes with a policy of many keys.
//!
//! For every count N: a fresh control plane on a temporary SQLite file, provisioned through
//! `routerctl` like `run`'s stack (one key among them), N − 1 more keys inserted in bulk
//! straight into its database (see [`bulk`]), then a fresh data plane. Measured: the time from
//! spawning the data plane to `/readyz` answering 200 (process start, snapshot download and
//! apply, tokenizer load), its resident memory once ready and at its peak, the control
//! plane's peak (it builds the snapshot), and whether a request with the last key inserted
//! goes through to the mock.

mod bulk;

use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use crate::cli::KeysArgs;
use crate::procstat;
use crate::report::{mib, round};
use crate::scenario::stack::{self, ACCOUNT, Ctl};

/// How long the request with the last key may keep failing after `/readyz` said ready.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between readiness or request attempts.
const RETRY_PAUSE: Duration = Duration::from_millis(10);
/// The issue-5 targets at a million keys.
const TARGET_KEYS: u64 = 1_000_000;
const TARGET_READY_S: f64 = 5.0;
const TARGET_RSS_MIB: f64 = 600.0;

/// The router executables.
struct Binaries {
    control_plane: PathBuf,
    data_plane: PathBuf,
    routerctl: PathBuf,
}

/// What one count measured.
#[derive(Debug)]
struct Measured {
    keys: u64,
    insert: Duration,
    db_bytes: u64,
    listening: Duration,
    ready: Duration,
    data_plane_rss_ready_kib: u64,
    data_plane_rss_after_request_kib: u64,
    data_plane_peak_kib: u64,
    control_plane_rss_kib: u64,
    control_plane_peak_kib: u64,
    /// CPU seconds the control plane spent from the data plane's spawn to ready.
    control_plane_cpu: f64,
    /// CPU seconds the data plane spent until ready.
    data_plane_cpu: f64,
    request: RequestOutcome,
}

/// The request with the last key inserted.
#[derive(Debug)]
struct RequestOutcome {
    /// Status of the first attempt.
    first_status: Option<u16>,
    /// Whether an attempt succeeded within [`REQUEST_TIMEOUT`].
    ok: bool,
    attempts: u32,
    /// From ready to the first success (or giving up).
    after_ready: Duration,
    last_error: Option<String>,
}

/// A temporary directory, removed on drop.
pub(crate) struct WorkDir(pub(crate) PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs every count, prints the table and writes the JSON.
pub async fn run(args: KeysArgs) -> anyhow::Result<()> {
    anyhow::ensure!(!args.counts.is_empty(), "--counts names no count");
    anyhow::ensure!(args.counts.iter().all(|&n| n > 0), "every count must be at least 1");
    anyhow::ensure!(args.ready_timeout > 0.0, "--ready-timeout must be positive");
    let dir = stack::bin_dir(args.bin_dir.as_deref())?;
    let binaries = Binaries {
        control_plane: stack::binary(&dir, "router-control-plane")?,
        data_plane: stack::binary(&dir, "router-data-plane")?,
        routerctl: stack::binary(&dir, "routerctl")?,
    };
    let (_mock, mock_url) = stack::start_mock(&std::env::current_exe()?, 1, 0).await?;
    let ready_timeout = Duration::from_secs_f64(args.ready_timeout);
    let mut results = Vec::new();
    for &count in &args.counts {
        results.push(measure(&binaries, &mock_url, count, ready_timeout).await?);
    }
    println!("{}", render(&results));
    let json = json!({
        "config": {
            "counts": args.counts,
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "targets": {"keys": TARGET_KEYS, "ready_s": TARGET_READY_S, "data_plane_rss_mib": TARGET_RSS_MIB},
        },
        "results": results.iter().map(Measured::to_json).collect::<Vec<_>>(),
    });
    std::fs::write(&args.out, serde_json::to_string_pretty(&json)?)?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

async fn measure(
    binaries: &Binaries,
    mock_url: &str,
    keys: u64,
    ready_timeout: Duration,
) -> anyhow::Result<Measured> {
    let pid = std::process::id();
    let work = WorkDir(std::env::temp_dir().join(format!("router-bench-keys-{pid}-{keys}")));
    std::fs::create_dir_all(work.0.join("spool"))?;
    let admin_token = format!("bench-admin-{pid}");
    let node_token = format!("bench-node-{pid}");

    eprintln!("{keys} keys: control plane and provisioning …");
    let (control_plane, control_plane_url) =
        stack::start_control_plane(&binaries.control_plane, &work.0, &admin_token, &node_token).await?;
    let ctl = Ctl { bin: binaries.routerctl.clone(), endpoint: control_plane_url.clone(), admin_token };
    let provisioned_key = stack::provision(&ctl, mock_url).await?;

    let bulk_count = usize::try_from(keys - 1)?;
    eprintln!("{keys} keys: inserting {bulk_count} keys in bulk …");
    let db_path = work.0.join("router.db");
    let inserted = {
        let db_path = db_path.clone();
        tokio::task::spawn_blocking(move || bulk::insert_keys(&db_path, ACCOUNT, bulk_count)).await??
    };
    eprintln!("{keys} keys: inserted in {:.1} s; starting the data plane …", inserted.elapsed.as_secs_f64());
    let key = inserted.last_secret.unwrap_or(provisioned_key);

    let cp = control_plane.pid()?;
    let control_plane_cpu_before = procstat::cpu_seconds(cp)?;
    let started = Instant::now();
    let (data_plane, data_plane_url) = stack::start_data_plane(
        &binaries.data_plane,
        "data plane",
        &control_plane_url,
        &work.0.join("spool"),
        &node_token,
    )
    .await?;
    let listening = started.elapsed();
    let readyz: Uri = format!("{data_plane_url}/readyz").parse()?;
    let deadline = started + ready_timeout;
    loop {
        if matches!(request_once(&readyz, Method::GET, None, Bytes::new()).await, Ok(200)) {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the data plane was not ready within {ready_timeout:?}; its log:\n{}",
            data_plane.tail()
        );
        tokio::time::sleep(RETRY_PAUSE).await;
    }
    let ready = started.elapsed();
    let dp = data_plane.pid()?;
    let data_plane_rss_ready_kib = procstat::rss_kib(dp)?;
    let data_plane_cpu = procstat::cpu_seconds(dp)?;
    let control_plane_cpu = procstat::cpu_seconds(cp)? - control_plane_cpu_before;
    eprintln!("{keys} keys: ready after {:.2} s; request with the last key …", ready.as_secs_f64());
    let request = request_with(&data_plane_url, &key).await?;
    Ok(Measured {
        keys,
        insert: inserted.elapsed,
        db_bytes: file_size(&db_path) + file_size(&work.0.join("router.db-wal")),
        listening,
        ready,
        data_plane_rss_ready_kib,
        data_plane_rss_after_request_kib: procstat::rss_kib(dp)?,
        data_plane_peak_kib: procstat::peak_rss_kib(dp)?,
        control_plane_rss_kib: procstat::rss_kib(cp)?,
        control_plane_peak_kib: procstat::peak_rss_kib(cp)?,
        control_plane_cpu,
        data_plane_cpu,
        request,
    })
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Sends chat requests with `key` until one succeeds or [`REQUEST_TIMEOUT`] passes.
async fn request_with(data_plane_url: &str, key: &str) -> anyhow::Result<RequestOutcome> {
    let url: Uri = format!("{data_plane_url}/v1/chat/completions").parse()?;
    let body = Bytes::from(crate::load::default_body(false));
    let started = Instant::now();
    let mut outcome = RequestOutcome {
        first_status: None,
        ok: false,
        attempts: 0,
        after_ready: Duration::ZERO,
        last_error: None,
    };
    while started.elapsed() < REQUEST_TIMEOUT {
        outcome.attempts += 1;
        match request_once(&url, Method::POST, Some(key), body.clone()).await {
            Ok(status) => {
                outcome.first_status.get_or_insert(status);
                if (200..300).contains(&status) {
                    outcome.ok = true;
                    break;
                }
                outcome.last_error = Some(format!("status {status}"));
            }
            Err(error) => outcome.last_error = Some(format!("{error:#}")),
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
    outcome.after_ready = started.elapsed();
    Ok(outcome)
}

/// One request on a fresh connection; the answer's status once its body has been read.
async fn request_once(url: &Uri, method: Method, key: Option<&str>, body: Bytes) -> anyhow::Result<u16> {
    let host = url.host().ok_or_else(|| anyhow::anyhow!("url has no host"))?;
    let stream = tokio::net::TcpStream::connect((host, url.port_u16().unwrap_or(80))).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut request = Request::builder()
        .method(method)
        .uri(url.clone())
        .header(header::HOST, url.authority().map(|a| a.as_str()).unwrap_or(host))
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(key) = key {
        request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    let response = sender.send_request(request.body(Full::new(body))?).await?;
    let status = response.status().as_u16();
    response.into_body().collect().await?;
    Ok(status)
}

impl Measured {
    fn to_json(&self) -> Value {
        json!({
            "keys": self.keys,
            "bulk_insert_s": round(self.insert.as_secs_f64()),
            "database_mib": round(self.db_bytes as f64 / (1024.0 * 1024.0)),
            "data_plane": {
                "listening_s": self.listening.as_secs_f64(),
                "ready_s": self.ready.as_secs_f64(),
                "rss_ready_kib": self.data_plane_rss_ready_kib,
                "rss_after_request_kib": self.data_plane_rss_after_request_kib,
                "peak_rss_kib": self.data_plane_peak_kib,
                "cpu_s_until_ready": round(self.data_plane_cpu * 100.0) / 100.0,
            },
            "control_plane": {
                "rss_kib": self.control_plane_rss_kib,
                "peak_rss_kib": self.control_plane_peak_kib,
                "cpu_s_until_ready": round(self.control_plane_cpu * 100.0) / 100.0,
            },
            "request_with_last_key": {
                "ok": self.request.ok,
                "first_status": self.request.first_status,
                "attempts": self.request.attempts,
                "after_ready_ms": round(self.request.after_ready.as_secs_f64() * 1000.0),
                "last_error": if self.request.ok { None } else { self.request.last_error.clone() },
            },
        })
    }
}

fn render(results: &[Measured]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n== data plane start-up with N keys in the policy (fresh control plane and data plane each) =="
    );
    let _ = writeln!(
        out,
        "{:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>13} {:>11} {:>11} {:>11}  request with last key",
        "keys",
        "insert s",
        "listen s",
        "ready s",
        "DP cpu s",
        "CP cpu s",
        "DP RSS ready",
        "DP VmHWM",
        "CP RSS",
        "CP VmHWM"
    );
    for m in results {
        let request = if m.request.ok {
            format!("ok ({} attempt{})", m.request.attempts, if m.request.attempts == 1 { "" } else { "s" })
        } else {
            format!("FAILED: {}", m.request.last_error.as_deref().unwrap_or("?"))
        };
        let _ = writeln!(
            out,
            "{:>9} {:>9.1} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.1} MiB {:>7.1} MiB {:>7.1} MiB {:>7.1} MiB  {}",
            m.keys,
            m.insert.as_secs_f64(),
            m.listening.as_secs_f64(),
            m.ready.as_secs_f64(),
            m.data_plane_cpu,
            m.control_plane_cpu,
            mib(m.data_plane_rss_ready_kib),
            mib(m.data_plane_peak_kib),
            mib(m.control_plane_rss_kib),
            mib(m.control_plane_peak_kib),
            request
        );
    }
    let _ = writeln!(
        out,
        "(ready = data plane spawned → /readyz 200: process start, snapshot download and apply, tokenizer; \
         cpu s = CPU time over that interval; CP RSS = after the request)"
    );
    if let Some(m) = results.iter().find(|m| m.keys == TARGET_KEYS) {
        let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
        let _ = writeln!(
            out,
            "targets at {TARGET_KEYS} keys: ready ≤ {TARGET_READY_S} s: {:.2} s ({}); data plane RSS ≤ {TARGET_RSS_MIB} MiB: \
             {:.1} MiB peak ({})",
            m.ready.as_secs_f64(),
            verdict(m.ready.as_secs_f64() <= TARGET_READY_S),
            mib(m.data_plane_peak_kib),
            verdict(mib(m.data_plane_peak_kib) <= TARGET_RSS_MIB),
        );
    }
    out
}
