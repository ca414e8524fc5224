//! The scenario runner: one invocation starts the stack and measures every scenario three
//! ways (direct to the mock, through the bare forwarder, through the data plane).

pub(crate) mod stack;
mod table;

use std::time::Duration;

use serde_json::{Value, json};

use crate::cli::RunArgs;
use crate::load::{self, Plan, Summary};
use crate::process::Service;
use crate::procstat;
use crate::report;

/// The three paths every scenario takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// Load generator → mock.
    Direct,
    /// Load generator → bare forwarder → mock.
    Forward,
    /// Load generator → data plane → mock.
    Gateway,
}

impl Path {
    /// All paths, in report order.
    pub const ALL: [Path; 3] = [Path::Direct, Path::Forward, Path::Gateway];

    /// Name in the table and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Path::Direct => "direct",
            Path::Forward => "forwarder",
            Path::Gateway => "data-plane",
        }
    }
}

/// One load run on one path, with the CPU the process in the middle spent on it.
#[derive(Debug)]
pub struct Measurement {
    /// Which path.
    pub path: Path,
    /// What the load generator saw.
    pub summary: Summary,
    /// CPU µs per successful request of the forwarder or data plane (mock for `direct`).
    pub cpu_us_per_request: Option<f64>,
    /// CPU µs per request of the control plane (usage reports, leases), for the data-plane path.
    pub control_plane_cpu_us_per_request: Option<f64>,
}

impl Measurement {
    fn to_json(&self) -> Value {
        let mut value = report::summary_json(&self.summary);
        value["path"] = json!(self.path.name());
        value["cpu_us_per_request"] = json!(self.cpu_us_per_request.map(report::round));
        value["control_plane_cpu_us_per_request"] =
            json!(self.control_plane_cpu_us_per_request.map(report::round));
        value
    }
}

/// Starts everything, runs every scenario, prints the table and writes the JSON.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.duration > 0.0 && args.connections > 0,
        "--duration and --connections must be positive"
    );
    eprintln!("starting control plane, mock, forwarder and data plane …");
    let stack = stack::start(&args).await?;
    let runner = Runner { args: &args, stack: &stack };
    let duration = Duration::from_secs_f64(args.duration);

    eprintln!("closed loop, {} connections, {:.0} s per path …", args.connections, args.duration);
    let mut closed = Vec::new();
    for path in Path::ALL {
        runner.warm_up(path).await?;
        closed.push(runner.measure(path, None, false, args.connections, duration).await?);
    }

    let mut open = Vec::new();
    for &rate in &args.rates {
        eprintln!("open loop at {rate:.0} req/s …");
        let mut row = Vec::new();
        for path in Path::ALL {
            row.push(runner.measure(path, Some(rate), false, args.connections, duration).await?);
        }
        open.push((rate, row));
    }

    eprintln!(
        "streaming at {:.0} req/s, {} chunks {} ms apart …",
        args.stream_rate, args.chunks, args.chunk_delay_ms
    );
    let mut streaming = Vec::new();
    for path in Path::ALL {
        streaming.push(runner.measure(path, Some(args.stream_rate), true, args.connections, duration).await?);
    }

    let peak_rss_kib = procstat::peak_rss_kib(stack.data_plane.pid()?)?;
    let forwarder_rss_kib = procstat::peak_rss_kib(stack.forwarder.pid()?)?;
    println!("{}", table::render(&args, &closed, &open, &streaming, peak_rss_kib, forwarder_rss_kib));

    let results = json!({
        "config": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": args.connections,
            "rates": args.rates,
            "stream_rate": args.stream_rate,
            "chunks": args.chunks,
            "chunk_delay_ms": args.chunk_delay_ms,
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        },
        "closed_loop": closed.iter().map(Measurement::to_json).collect::<Vec<_>>(),
        "open_loop": open.iter().map(|(rate, row)| json!({
            "rate": rate,
            "paths": row.iter().map(Measurement::to_json).collect::<Vec<_>>(),
            "data_plane_added_us": table::added(row).map(|a| json!({"p50": a[0], "p99": a[1], "p99.9": a[2]})),
        })).collect::<Vec<_>>(),
        "streaming": streaming.iter().map(Measurement::to_json).collect::<Vec<_>>(),
        "data_plane_peak_rss_kib": peak_rss_kib,
        "forwarder_peak_rss_kib": forwarder_rss_kib,
    });
    std::fs::write(&args.out, serde_json::to_string_pretty(&results)?)?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

struct Runner<'a> {
    args: &'a RunArgs,
    stack: &'a stack::Stack,
}

impl Runner<'_> {
    fn plan(
        &self,
        path: Path,
        rate: Option<f64>,
        stream: bool,
        connections: usize,
        duration: Duration,
    ) -> anyhow::Result<Plan> {
        let (base, key) = match path {
            Path::Direct => (&self.stack.mock_url, None),
            Path::Forward => (&self.stack.forward_url, None),
            Path::Gateway => (&self.stack.data_plane_url, Some(self.stack.key.clone())),
        };
        Ok(Plan {
            url: format!("{base}/v1/chat/completions").parse()?,
            key,
            body: load::default_body(stream).into(),
            stream,
            connections,
            duration,
            rate,
        })
    }

    fn middle(&self, path: Path) -> &Service {
        match path {
            Path::Direct => &self.stack.mock,
            Path::Forward => &self.stack.forwarder,
            Path::Gateway => &self.stack.data_plane,
        }
    }

    async fn warm_up(&self, path: Path) -> anyhow::Result<()> {
        if self.args.warmup > 0.0 {
            let duration = Duration::from_secs_f64(self.args.warmup);
            load::run(&self.plan(path, None, false, self.args.connections, duration)?).await?;
        }
        Ok(())
    }

    async fn measure(
        &self,
        path: Path,
        rate: Option<f64>,
        stream: bool,
        connections: usize,
        duration: Duration,
    ) -> anyhow::Result<Measurement> {
        let plan = self.plan(path, rate, stream, connections, duration)?;
        let middle = self.middle(path).pid()?;
        let control_plane = self.stack.control_plane.pid()?;
        let cpu_before = procstat::cpu_seconds(middle)?;
        let cp_before = procstat::cpu_seconds(control_plane)?;
        let summary = load::run(&plan).await?;
        let requests = summary.ok.max(1) as f64;
        let cpu_us_per_request = Some((procstat::cpu_seconds(middle)? - cpu_before) * 1e6 / requests);
        let control_plane_cpu_us_per_request = (path == Path::Gateway)
            .then(|| procstat::cpu_seconds(control_plane).map(|after| (after - cp_before) * 1e6 / requests))
            .transpose()?;
        if summary.errors > 0 {
            eprintln!("  {}: {} errors, first: {:?}", path.name(), summary.errors, summary.first_error);
        }
        Ok(Measurement { path, summary, cpu_us_per_request, control_plane_cpu_us_per_request })
    }
}
