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

/// Which protocols a measurement's client and upstream speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocols {
    /// Chat client, Chat upstream: the data plane passes the stream on.
    Native,
    /// Anthropic Messages client (`POST /v1/messages`), Chat upstream: the data plane converts
    /// the request and every stream event (only on the data-plane path).
    MessagesToChat,
}

/// The converted-stream scenario: measured, or skipped because the data plane refused it.
#[derive(Debug)]
pub enum Converted {
    /// Measured through the data plane.
    Measured(Box<Measurement>),
    /// Not measured; why.
    Skipped(String),
}

/// A closed-loop run through the data plane with a key that has a rate limit (set high enough
/// never to refuse): what enforcing the limit costs.
#[derive(Debug)]
pub struct Limited {
    /// The flag set on the key, e.g. `--rpm 100000000`.
    pub flags: [&'static str; 2],
    /// Measured, or why not (a data plane without rate limits).
    pub result: Result<Measurement, String>,
}

/// The limited keys [`Runner::measure_limited`] measures: high enough that the limit never
/// refuses, so the throughput is comparable with the key without limits.
const LIMITED_KEYS: [[&str; 2]; 2] = [["--rpm", "100000000"], ["--tpm", "4000000000"]];

/// One load run on one path, with the CPU the process in the middle spent on it.
#[derive(Debug)]
pub struct Measurement {
    /// Which path.
    pub path: Path,
    /// Which protocols the client and the upstream speak.
    pub protocols: Protocols,
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
        if self.protocols == Protocols::MessagesToChat {
            value["client_protocol"] = json!("messages");
            value["upstream_protocol"] = json!("chat");
            value["chunk_stamps_per_answer"] =
                json!(report::round(self.summary.chunk.len() as f64 / self.summary.ok.max(1) as f64));
        }
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
    eprintln!("closed loop through the data plane with a rate limit on the key …");
    let mut limited = Vec::new();
    for flags in LIMITED_KEYS {
        limited.push(Limited { flags, result: runner.measure_limited(flags, duration).await? });
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

    eprintln!(
        "converted streaming (Anthropic Messages client → Chat upstream) at {:.0} req/s …",
        args.stream_rate
    );
    let converted = match runner.probe_converted().await? {
        Ok(()) => Converted::Measured(Box::new(
            runner
                .measure_plan(Path::Gateway, Protocols::MessagesToChat, runner.messages_plan(duration)?)
                .await?,
        )),
        Err(reason) => {
            eprintln!("  skipped: {reason}");
            Converted::Skipped(reason)
        }
    };

    let peak_rss_kib = procstat::peak_rss_kib(stack.data_plane.pid()?)?;
    let forwarder_rss_kib = procstat::peak_rss_kib(stack.forwarder.pid()?)?;
    println!(
        "{}",
        table::render(
            &args,
            &closed,
            &limited,
            &open,
            &streaming,
            &converted,
            peak_rss_kib,
            forwarder_rss_kib
        )
    );

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
        "closed_loop_limited": limited.iter().map(|l| match &l.result {
            Ok(m) => {
                let mut value = m.to_json();
                value["limit"] = json!(l.flags.join(" "));
                value
            }
            Err(reason) => json!({"limit": l.flags.join(" "), "skipped": reason}),
        }).collect::<Vec<_>>(),
        "open_loop": open.iter().map(|(rate, row)| json!({
            "rate": rate,
            "paths": row.iter().map(Measurement::to_json).collect::<Vec<_>>(),
            "data_plane_added_us": table::added(row).map(|a| json!({"p50": a[0], "p99": a[1], "p99.9": a[2]})),
        })).collect::<Vec<_>>(),
        "streaming": streaming.iter().map(Measurement::to_json).collect::<Vec<_>>(),
        "streaming_converted": match &converted {
            Converted::Measured(m) => json!({
                "measured": m.to_json(),
                "over_native_data_plane": table::converted_over_native(&streaming, m)
                    .map(|[p50, p99, cpu]| json!({"chunk_p50_us": p50, "chunk_p99_us": p99, "cpu_us_per_request": cpu})),
            }),
            Converted::Skipped(reason) => json!({"skipped": reason}),
        },
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
            headers: Vec::new(),
            body: load::default_body(stream).into(),
            stream,
            connections,
            duration,
            rate,
        })
    }

    /// A streamed Anthropic Messages request for `bench-model` through the data plane at the
    /// streaming rate: `bench-model` is served only by the `openai` channel (whose default
    /// protocols lack `messages`), so the data plane converts it to Chat for the mock.
    fn messages_plan(&self, duration: Duration) -> anyhow::Result<Plan> {
        Ok(Plan {
            url: format!("{}/v1/messages", self.stack.data_plane_url).parse()?,
            key: Some(self.stack.key.clone()),
            headers: load::anthropic_headers(),
            body: load::messages_stream_body().into(),
            stream: true,
            connections: self.args.connections,
            duration,
            rate: Some(self.args.stream_rate),
        })
    }

    /// One converted streamed request: `Err(why)` when the data plane does not convert it (a
    /// data plane before protocol conversion sends `/v1/messages` to the channel's own
    /// `/v1/messages`, which the mock does not stream), or the answer carries no stamps.
    async fn probe_converted(&self) -> anyhow::Result<Result<(), String>> {
        // Open loop at 1/s for 1 ms: exactly one request, however late the timer wakes.
        let plan = Plan {
            connections: 1,
            duration: Duration::from_millis(1),
            rate: Some(1.0),
            ..self.messages_plan(Duration::ZERO)?
        };
        let summary = load::run(&plan).await?;
        if summary.ok == 0 || summary.errors > 0 {
            let error = summary.first_error.unwrap_or_else(|| "no answer".into());
            return Ok(Err(format!(
                "the data plane refused a streamed Messages request for a model only an openai \
                 channel serves ({error}): it does not convert protocols"
            )));
        }
        if summary.chunk.is_empty() {
            return Ok(Err("the converted stream carried no chunk stamps (@ts=…;)".into()));
        }
        if summary.chunk.len() != u64::from(self.args.chunks) {
            eprintln!(
                "  note: the converted stream carried {} chunk stamps, the mock sent {}",
                summary.chunk.len(),
                self.args.chunks
            );
        }
        Ok(Ok(()))
    }

    /// A closed-loop run through the data plane with a new key carrying `flags`: `Err(why)`
    /// when the key cannot be created (a gateway without rate limits).
    async fn measure_limited(
        &self,
        flags: [&str; 2],
        duration: Duration,
    ) -> anyhow::Result<Result<Measurement, String>> {
        let name = format!("bench{}", flags[0].trim_start_matches('-'));
        let create = ["key", "create", "--account", stack::ACCOUNT, "--name", &name, flags[0], flags[1]];
        let key = match self.stack.ctl.json(&create).await {
            Ok(created) => match created["key"].as_str() {
                Some(key) => key.to_owned(),
                None => return Ok(Err("routerctl key create printed no key".into())),
            },
            Err(error) => {
                eprintln!("  {}: skipped: {error:#}", flags.join(" "));
                return Ok(Err(format!("{error:#}")));
            }
        };
        stack::wait_ready(&self.stack.data_plane, &self.stack.data_plane_url, &key).await?;
        let plan = |duration| -> anyhow::Result<Plan> {
            Ok(Plan {
                key: Some(key.clone()),
                ..self.plan(Path::Gateway, None, false, self.args.connections, duration)?
            })
        };
        if self.args.warmup > 0.0 {
            load::run(&plan(Duration::from_secs_f64(self.args.warmup))?).await?;
        }
        Ok(Ok(self.measure_plan(Path::Gateway, Protocols::Native, plan(duration)?).await?))
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
        self.measure_plan(path, Protocols::Native, plan).await
    }

    /// Runs `plan` on `path`, with the CPU of the process in the middle (and the control plane).
    async fn measure_plan(
        &self,
        path: Path,
        protocols: Protocols,
        plan: Plan,
    ) -> anyhow::Result<Measurement> {
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
        Ok(Measurement { path, protocols, summary, cpu_us_per_request, control_plane_cpu_us_per_request })
    }
}
