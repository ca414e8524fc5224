//! `router-bench streams`: many streaming requests held open at once through the data plane,
//! and through the bare forwarder for comparison, and what they cost in memory.
//!
//! The stack is `run`'s, with a mock that streams slowly (by default 30 chunks a second apart)
//! so every stream stays open for about half a minute. `count` streams are started, each on
//! its own HTTP/1.1 connection, at most `open_concurrency` of them connecting at a time; a
//! stream counts as open once its first chunk has arrived. When every stream is open (or has
//! failed), the resident memory (`VmRSS`) and open descriptors of the process in the middle
//! are read; its memory is also sampled every 100 ms until the last stream ends, and its
//! `VmHWM` read at the end. A stream succeeds when its answer is 2xx and ends with
//! `data: [DONE]`.
//!
//! Each held stream costs the process in the middle two descriptors (client and upstream
//! connection), the load generator (this process) one and the mock one, so the middle is the
//! process that meets the open-files limit first; it is reported with the figures.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::cli::{RunArgs, StreamsArgs};
use crate::procstat;
use crate::report::mib;
use crate::scenario::stack;

/// How long streams may take to open before the measurement goes ahead without the rest.
const OPEN_TIMEOUT: Duration = Duration::from_secs(120);
/// Extra time a stream may take beyond the mock's chunk schedule.
const STREAM_SLACK: Duration = Duration::from_secs(60);
/// Interval of the memory samples taken while streams are open.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// Descriptors a server process needs besides its streams (listener, log, runtime, spool, gRPC).
const FD_OVERHEAD: u64 = 32;
/// The issue-5 target: 10k concurrent streams within this data-plane RSS.
const TARGET_STREAMS: usize = 10_000;
const TARGET_RSS_MIB: f64 = 500.0;

/// What holding `count` streams through one path measured.
#[derive(Debug)]
struct Held {
    path: &'static str,
    count: usize,
    opened: usize,
    /// Streams open at once when the figures were read (opened minus already ended).
    open_at_sample: usize,
    completed: usize,
    failed: usize,
    /// The most frequent failures, most frequent first.
    errors: Vec<(String, usize)>,
    /// From the first connect to every stream open or failed.
    open_time: Duration,
    rss_all_open_kib: u64,
    rss_max_sampled_kib: u64,
    peak_rss_kib: u64,
    rss_before_kib: u64,
    fds_all_open: usize,
    mock_fds_all_open: usize,
    own_fds_all_open: usize,
    fd_limit: Option<u64>,
}

/// Starts the stack, holds the streams through the data plane then the forwarder, prints the
/// table and writes the JSON.
pub async fn run(args: StreamsArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.count > 0, "--count must be at least 1");
    anyhow::ensure!(args.open_concurrency > 0, "--open-concurrency must be at least 1");
    anyhow::ensure!(args.chunks >= 2, "--chunks must be at least 2 (the streams must stay open)");
    let run_args = RunArgs {
        chunks: args.chunks,
        chunk_delay_ms: args.chunk_delay_ms,
        bin_dir: args.bin_dir.clone(),
        ..RunArgs::defaults()?
    };
    eprintln!("starting control plane, mock, forwarder and data plane …");
    let stack = stack::start(&run_args).await?;
    let mock = stack.mock.pid()?;
    let paths = [
        ("data-plane", &stack.data_plane_url, Some(stack.key.as_str()), stack.data_plane.pid()?),
        ("forwarder", &stack.forward_url, None, stack.forwarder.pid()?),
    ];
    let mut results = Vec::new();
    for (path, base, key, pid) in paths {
        let url: Uri = format!("{base}/v1/chat/completions").parse()?;
        results.push(hold(path, &url, key, pid, mock, &args).await?);
    }
    println!("{}", render(&args, &results));
    let json = json!({
        "config": {
            "count": args.count,
            "chunks": args.chunks,
            "chunk_delay_ms": args.chunk_delay_ms,
            "open_concurrency": args.open_concurrency,
            "protocol": "HTTP/1.1, one connection per stream",
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "targets": {"streams": TARGET_STREAMS, "data_plane_rss_mib": TARGET_RSS_MIB},
        },
        "paths": results.iter().map(Held::to_json).collect::<Vec<_>>(),
    });
    std::fs::write(&args.out, serde_json::to_string_pretty(&json)?)?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

/// Holds `args.count` streams through `url`, whose server process is `pid`.
async fn hold(
    path: &'static str,
    url: &Uri,
    key: Option<&str>,
    pid: u32,
    mock: u32,
    args: &StreamsArgs,
) -> anyhow::Result<Held> {
    let fd_limit = procstat::max_open_files(pid)?;
    if let Some(limit) = fd_limit.filter(|&limit| 2 * args.count as u64 + FD_OVERHEAD > limit) {
        eprintln!(
            "warning: {path} needs two descriptors per stream, about {} for {} streams, and may open {limit}: \
             expect failures near the limit",
            2 * args.count as u64 + FD_OVERHEAD,
            args.count
        );
    }
    eprintln!("{path}: opening {} streams …", args.count);
    let rss_before_kib = procstat::rss_kib(pid)?;
    let schedule = Duration::from_millis(args.chunk_delay_ms).saturating_mul(args.chunks);
    let shared = Arc::new(Shared {
        url: url.clone(),
        authorization: key.map(|key| format!("Bearer {key}")),
        body: Bytes::from(crate::load::default_body(true)),
        opening: Semaphore::new(args.open_concurrency),
        open_now: AtomicUsize::new(0),
        timeout: schedule + STREAM_SLACK,
    });
    let (settled, mut settlements) = mpsc::unbounded_channel();
    let (stop_sampling, sampling) = watch::channel(false);
    let sampler = tokio::spawn(sample_rss(pid, sampling));
    let started = Instant::now();
    let mut streams = JoinSet::new();
    for _ in 0..args.count {
        let settle = Settle(Some(settled.clone()));
        streams.spawn(one_stream(Arc::clone(&shared), settle));
    }
    drop(settled);

    // Every stream reports once: open (first chunk arrived) or failed before that.
    let (mut opened, mut settled_count) = (0, 0);
    let open_deadline = started + OPEN_TIMEOUT;
    while settled_count < args.count {
        match tokio::time::timeout_at(open_deadline, settlements.recv()).await {
            Ok(Some(open)) => {
                settled_count += 1;
                opened += usize::from(open);
            }
            Ok(None) | Err(_) => break,
        }
    }
    let open_time = started.elapsed();
    let open_at_sample = shared.open_now.load(Ordering::Relaxed);
    let rss_all_open_kib = procstat::rss_kib(pid)?;
    let fds_all_open = procstat::open_fds(pid)?;
    let mock_fds_all_open = procstat::open_fds(mock)?;
    let own_fds_all_open = procstat::open_fds(std::process::id())?;
    eprintln!(
        "{path}: {opened} open after {:.1} s ({open_at_sample} at once), RSS {:.1} MiB; waiting for the streams to end …",
        open_time.as_secs_f64(),
        mib(rss_all_open_kib)
    );

    let (mut completed, mut failed) = (0, 0);
    let mut errors: HashMap<String, usize> = HashMap::new();
    while let Some(outcome) = streams.join_next().await {
        match outcome? {
            Ok(()) => completed += 1,
            Err(error) => {
                failed += 1;
                *errors.entry(error).or_default() += 1;
            }
        }
    }
    let _ = stop_sampling.send(true);
    let rss_max_sampled_kib = sampler.await?.max(rss_all_open_kib);
    let mut errors: Vec<(String, usize)> = errors.into_iter().collect();
    errors.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    errors.truncate(5);
    Ok(Held {
        path,
        count: args.count,
        opened,
        open_at_sample,
        completed,
        failed,
        errors,
        open_time,
        rss_all_open_kib,
        rss_max_sampled_kib,
        peak_rss_kib: procstat::peak_rss_kib(pid)?,
        rss_before_kib,
        fds_all_open,
        mock_fds_all_open,
        own_fds_all_open,
        fd_limit,
    })
}

/// Samples `VmRSS` of `pid` until `stop` turns true; returns the largest sample in KiB.
async fn sample_rss(pid: u32, mut stop: watch::Receiver<bool>) -> u64 {
    let mut interval = tokio::time::interval(SAMPLE_EVERY);
    let mut max = 0;
    loop {
        tokio::select! {
            _ = interval.tick() => max = max.max(procstat::rss_kib(pid).unwrap_or(0)),
            _ = stop.wait_for(|stop| *stop) => return max,
        }
    }
}

/// What every stream of one path shares.
struct Shared {
    url: Uri,
    authorization: Option<String>,
    body: Bytes,
    /// Limits streams between connect and first chunk.
    opening: Semaphore,
    /// Streams between their first chunk and their end.
    open_now: AtomicUsize,
    /// Whole-stream timeout.
    timeout: Duration,
}

/// Reports a stream as open exactly once, or as failed if dropped before.
struct Settle(Option<mpsc::UnboundedSender<bool>>);

impl Settle {
    fn opened(&mut self) {
        if let Some(sender) = self.0.take() {
            let _ = sender.send(true);
        }
    }
}

impl Drop for Settle {
    fn drop(&mut self) {
        if let Some(sender) = self.0.take() {
            let _ = sender.send(false);
        }
    }
}

/// Counts a stream in [`Shared::open_now`] while it lives.
struct OpenGuard<'a>(&'a AtomicUsize);

impl<'a> OpenGuard<'a> {
    fn new(counter: &'a AtomicUsize) -> OpenGuard<'a> {
        counter.fetch_add(1, Ordering::Relaxed);
        OpenGuard(counter)
    }
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One stream on its own connection: `Err` says what failed, for the report.
async fn one_stream(shared: Arc<Shared>, settle: Settle) -> Result<(), String> {
    match tokio::time::timeout(shared.timeout, stream_through(&shared, settle)).await {
        Ok(result) => result,
        Err(_) => Err(format!("no end within {:?}", shared.timeout)),
    }
}

async fn stream_through(shared: &Shared, mut settle: Settle) -> Result<(), String> {
    let mut permit = Some(shared.opening.acquire().await.map_err(|e| e.to_string())?);
    let host = shared.url.host().unwrap_or("127.0.0.1");
    let stream = tokio::net::TcpStream::connect((host, shared.url.port_u16().unwrap_or(80)))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let mut request = Request::post(shared.url.clone())
        .header(header::HOST, shared.url.authority().map(|a| a.as_str()).unwrap_or(host))
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(authorization) = &shared.authorization {
        request = request.header(header::AUTHORIZATION, authorization);
    }
    let request = request.body(Full::new(shared.body.clone())).map_err(|e| e.to_string())?;
    let response = sender.send_request(request).await.map_err(|e| format!("request: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("status {status}"));
    }
    let mut body = response.into_body();
    let mut open = None;
    let mut done = false;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("body: {e}"))?;
        let Some(data) = frame.data_ref() else { continue };
        if open.is_none() {
            open = Some(OpenGuard::new(&shared.open_now));
            settle.opened();
            // Open: let the next stream connect.
            permit = None;
        }
        done |= memchr::memmem::find(data, b"[DONE]").is_some();
    }
    drop((open, permit));
    if done { Ok(()) } else { Err("stream ended without [DONE]".into()) }
}

impl Held {
    fn to_json(&self) -> Value {
        json!({
            "path": self.path,
            "count": self.count,
            "opened": self.opened,
            "open_at_sample": self.open_at_sample,
            "completed": self.completed,
            "failed": self.failed,
            "errors": self.errors.iter().map(|(e, n)| json!({"error": e, "count": n})).collect::<Vec<_>>(),
            "open_s": self.open_time.as_secs_f64(),
            "rss_before_kib": self.rss_before_kib,
            "rss_all_open_kib": self.rss_all_open_kib,
            "rss_max_sampled_kib": self.rss_max_sampled_kib,
            "peak_rss_kib": self.peak_rss_kib,
            "rss_per_open_stream_kib": self.per_stream_kib(),
            "fds_all_open": self.fds_all_open,
            "mock_fds_all_open": self.mock_fds_all_open,
            "load_generator_fds_all_open": self.own_fds_all_open,
            "fd_limit": self.fd_limit,
        })
    }

    /// (RSS with every stream open − RSS before) / streams open, in KiB.
    fn per_stream_kib(&self) -> Option<f64> {
        (self.open_at_sample > 0).then(|| {
            let grown = self.rss_all_open_kib.saturating_sub(self.rss_before_kib) as f64;
            crate::report::round(grown / self.open_at_sample as f64)
        })
    }
}

fn render(args: &StreamsArgs, results: &[Held]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n== {} concurrent streams, {} chunks {} ms apart, one HTTP/1.1 connection each ==",
        args.count, args.chunks, args.chunk_delay_ms
    );
    let _ = writeln!(
        out,
        "{:<11} {:>7} {:>8} {:>9} {:>7} {:>7} {:>12} {:>12} {:>11} {:>10} {:>7} {:>8}",
        "path",
        "opened",
        "at once",
        "completed",
        "failed",
        "open s",
        "RSS all open",
        "RSS max",
        "VmHWM",
        "KiB/stream",
        "fds",
        "fd limit"
    );
    for h in results {
        let _ = writeln!(
            out,
            "{:<11} {:>7} {:>8} {:>9} {:>7} {:>7.1} {:>8.1} MiB {:>8.1} MiB {:>7.1} MiB {:>10} {:>7} {:>8}",
            h.path,
            h.opened,
            h.open_at_sample,
            h.completed,
            h.failed,
            h.open_time.as_secs_f64(),
            mib(h.rss_all_open_kib),
            mib(h.rss_max_sampled_kib),
            mib(h.peak_rss_kib),
            h.per_stream_kib().map(|k| format!("{k:.1}")).unwrap_or_else(|| "-".into()),
            h.fds_all_open,
            h.fd_limit.map(|l| l.to_string()).unwrap_or_else(|| "none".into()),
        );
    }
    for h in results.iter().filter(|h| !h.errors.is_empty()) {
        let listed: Vec<String> = h.errors.iter().map(|(e, n)| format!("{n}× {e}")).collect();
        let _ = writeln!(out, "{} failures: {}", h.path, listed.join("; "));
    }
    let _ = writeln!(
        out,
        "(fds = open descriptors of the path's process with every stream open; mock {}, load generator {})",
        results.iter().map(|h| h.mock_fds_all_open.to_string()).collect::<Vec<_>>().join("/"),
        results.iter().map(|h| h.own_fds_all_open.to_string()).collect::<Vec<_>>().join("/"),
    );
    if let Some(h) = results.iter().find(|h| h.path == "data-plane" && h.count >= TARGET_STREAMS) {
        let met = h.open_at_sample >= TARGET_STREAMS && mib(h.peak_rss_kib) <= TARGET_RSS_MIB;
        let _ = writeln!(
            out,
            "target: {TARGET_STREAMS} concurrent streams with data-plane RSS ≤ {TARGET_RSS_MIB} MiB: {} at once, \
             {:.1} MiB peak ({})",
            h.open_at_sample,
            mib(h.peak_rss_kib),
            if met { "met" } else { "MISSED" }
        );
    }
    out
}
