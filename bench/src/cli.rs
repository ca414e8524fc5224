//! Command-line arguments of every subcommand.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::load::{Plan, default_body};

/// `router-bench`: benchmark harness for Code Router.
#[derive(Debug, Parser)]
#[command(name = "router-bench", version)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// A fast mock upstream (OpenAI chat completions, JSON or SSE; Anthropic messages).
    Mock(MockArgs),
    /// A bare forwarder: bytes in, bytes out, the reference for the physical limit.
    Forward(ForwardArgs),
    /// A load generator (open loop with `--rate`, closed loop without).
    Load(LoadArgs),
    /// Starts everything and runs every scenario direct, through the forwarder and through the data plane.
    Run(RunArgs),
    /// Measures how long an admin change takes until every data plane enforces it.
    Propagation(PropagationArgs),
    /// Starts and provisions the stack `run` uses, prints its addresses, key and pids, and
    /// waits for Ctrl-C or SIGTERM (for profiling by hand).
    Stack(StackArgs),
    /// Measures data-plane start-up and memory with a policy of many keys (bulk-inserted).
    Keys(KeysArgs),
    /// Holds many concurrent streams open through the data plane and the forwarder and
    /// measures their memory.
    Streams(StreamsArgs),
    /// Times usage summaries (admin and console) over many usage records (bulk-generated).
    Usage(UsageArgs),
}

/// `mock` flags.
#[derive(Debug, Clone, Args)]
pub struct MockArgs {
    /// Address to listen on (port 0: chosen by the OS).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// Number of content chunks in a streamed answer.
    #[arg(long, default_value_t = 10)]
    pub chunks: u32,
    /// Delay between streamed chunks, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub chunk_delay_ms: u64,
}

/// `forward` flags.
#[derive(Debug, Clone, Args)]
pub struct ForwardArgs {
    /// Address to listen on (port 0: chosen by the OS).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// Upstream base, e.g. `http://127.0.0.1:9000`; the request path is appended unchanged.
    #[arg(long)]
    pub upstream: String,
}

/// `load` flags.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Full request URL, e.g. `http://127.0.0.1:8080/v1/chat/completions`.
    #[arg(long)]
    pub url: String,
    /// API key sent as `authorization: Bearer KEY`.
    #[arg(long)]
    pub key: Option<String>,
    /// Extra request header `NAME: VALUE` (repeatable), e.g. `anthropic-version: 2023-06-01`.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Request body (default: a small chat request for `bench-model`).
    #[arg(long)]
    pub body: Option<String>,
    /// Ask for a streamed answer (adds `"stream": true` to the default body) and time the first chunk.
    #[arg(long)]
    pub stream: bool,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Requests per second (open loop); without it, closed loop at maximum throughput.
    #[arg(long)]
    pub rate: Option<f64>,
}

impl LoadArgs {
    /// The load plan these flags describe.
    pub fn to_plan(&self) -> anyhow::Result<Plan> {
        anyhow::ensure!(self.connections > 0, "--connections must be at least 1");
        anyhow::ensure!(self.duration > 0.0, "--duration must be positive");
        if let Some(rate) = self.rate {
            anyhow::ensure!(rate > 0.0, "--rate must be positive");
        }
        let headers = self
            .headers
            .iter()
            .map(|h| {
                let (name, value) =
                    h.split_once(':').ok_or_else(|| anyhow::anyhow!("--header {h:?} is not NAME: VALUE"))?;
                let name = name.trim().parse::<http::HeaderName>()?;
                let value = value.trim().parse::<http::HeaderValue>()?;
                Ok((name.as_str().to_owned(), value.to_str()?.to_owned()))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Plan {
            url: self.url.parse()?,
            key: self.key.clone(),
            headers,
            body: self.body.clone().unwrap_or_else(|| default_body(self.stream)).into(),
            stream: self.stream,
            connections: self.connections,
            duration: Duration::from_secs_f64(self.duration),
            rate: self.rate,
        })
    }
}

/// `run` flags.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Seconds of warm-up load before each closed-loop measurement (discarded).
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Connections for the closed-loop and fixed-rate measurements.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Fixed request rates for the open-loop latency measurements, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000,10000")]
    pub rates: Vec<f64>,
    /// Request rate of the streaming scenario.
    #[arg(long, default_value_t = 200.0)]
    pub stream_rate: f64,
    /// Chunks per streamed answer.
    #[arg(long, default_value_t = 20)]
    pub chunks: u32,
    /// Delay between streamed chunks, in milliseconds.
    #[arg(long, default_value_t = 5)]
    pub chunk_delay_ms: u64,
    /// Where to write the JSON results.
    #[arg(long, default_value = "bench-results.json")]
    pub out: std::path::PathBuf,
    /// Directory holding `router-control-plane`, `router-data-plane` and `routerctl`
    /// (default: the directory of this executable).
    #[arg(long)]
    pub bin_dir: Option<std::path::PathBuf>,
}

/// `propagation` flags.
#[derive(Debug, Clone, Args)]
pub struct PropagationArgs {
    /// Data planes following the control plane(s).
    #[arg(long, default_value_t = 10)]
    pub data_planes: usize,
    /// Control-plane replicas sharing one PostgreSQL database (needs `--postgres`). Changes are
    /// made through the first; the data planes follow the others, so every measured change
    /// crosses from one replica to another (LISTEN/NOTIFY).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=16))]
    pub replicas: u64,
    /// With `--replicas` above 1: a PostgreSQL server URL (`postgres://USER@HOST:PORT/DB`);
    /// a fresh database is created on it for the run and dropped afterwards.
    #[arg(long)]
    pub postgres: Option<String>,
    /// Trials; each creates a key and then revokes it.
    #[arg(long, default_value_t = 50)]
    pub trials: usize,
    /// Seconds a data plane may take to enforce one change before the run fails.
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
    /// Where to write the JSON results.
    #[arg(long, default_value = "propagation-results.json")]
    pub out: std::path::PathBuf,
    /// Directory holding `router-control-plane`, `router-data-plane` and `routerctl`
    /// (default: the directory of this executable).
    #[arg(long)]
    pub bin_dir: Option<std::path::PathBuf>,
}

impl RunArgs {
    /// `run`'s defaults, for subcommands that start the same stack with a few flags of their own.
    pub fn defaults() -> anyhow::Result<RunArgs> {
        use clap::FromArgMatches;
        let command = RunArgs::augment_args(clap::Command::new("run"));
        Ok(RunArgs::from_arg_matches(&command.try_get_matches_from(["run"])?)?)
    }
}

/// `stack` flags.
#[derive(Debug, Clone, Args)]
pub struct StackArgs {
    /// Chunks per streamed answer of the mock.
    #[arg(long, default_value_t = 20)]
    pub chunks: u32,
    /// Delay between the mock's streamed chunks, in milliseconds.
    #[arg(long, default_value_t = 5)]
    pub chunk_delay_ms: u64,
    /// Directory holding `router-control-plane`, `router-data-plane` and `routerctl`
    /// (default: the directory of this executable).
    #[arg(long)]
    pub bin_dir: Option<std::path::PathBuf>,
}

/// `keys` flags.
#[derive(Debug, Clone, Args)]
pub struct KeysArgs {
    /// Keys in the policy, one fresh control plane and data plane per count, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "100000,1000000")]
    pub counts: Vec<u64>,
    /// Seconds the data plane may take to become ready.
    #[arg(long, default_value_t = 300.0)]
    pub ready_timeout: f64,
    /// Where to write the JSON results.
    #[arg(long, default_value = "bench-keys.json")]
    pub out: std::path::PathBuf,
    /// Directory holding `router-control-plane`, `router-data-plane` and `routerctl`
    /// (default: the directory of this executable).
    #[arg(long)]
    pub bin_dir: Option<std::path::PathBuf>,
}

/// `usage` flags.
#[derive(Debug, Clone, Args)]
pub struct UsageArgs {
    /// Usage records, one fresh control plane per count, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10000,10000000")]
    pub counts: Vec<u64>,
    /// Timed runs of each summary (after three warm-up runs).
    #[arg(long, default_value_t = 20)]
    pub runs: u32,
    /// Where to write the JSON results.
    #[arg(long, default_value = "bench-usage.json")]
    pub out: std::path::PathBuf,
    /// Directory holding `router-control-plane` and `routerctl` (default: the directory of
    /// this executable).
    #[arg(long)]
    pub bin_dir: Option<std::path::PathBuf>,
}

/// `streams` flags.
#[derive(Debug, Clone, Args)]
pub struct StreamsArgs {
    /// Streams held open at once, each on its own HTTP/1.1 connection.
    #[arg(long, default_value_t = 10_000)]
    pub count: usize,
    /// Chunks per streamed answer of the mock.
    #[arg(long, default_value_t = 30)]
    pub chunks: u32,
    /// Delay between the mock's streamed chunks, in milliseconds (keeps the streams open).
    #[arg(long, default_value_t = 1000)]
    pub chunk_delay_ms: u64,
    /// Streams being opened at once (connect, request, first chunk), to spare the listen backlog.
    #[arg(long, default_value_t = 256)]
    pub open_concurrency: usize,
    /// Where to write the JSON results.
    #[arg(long, default_value = "bench-streams.json")]
    pub out: std::path::PathBuf,
    /// Directory holding `router-control-plane`, `router-data-plane` and `routerctl`
    /// (default: the directory of this executable).
    #[arg(long)]
    pub bin_dir: Option<std::path::PathBuf>,
}
