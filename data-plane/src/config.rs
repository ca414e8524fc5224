//! Command-line flags and their environment variables (flags win), parsed once at start.
use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;

fn seconds(text: &str) -> Result<Duration, String> {
    let value: f64 = text.parse().map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !(value.is_finite() && value > 0.0 && value <= 86_400.0 * 7.0) {
        return Err(format!("{text:?} must be a positive number of seconds (at most a week)"));
    }
    Ok(Duration::from_secs_f64(value))
}

fn body_limit(text: &str) -> Result<usize, String> {
    let value: usize = text.parse().map_err(|_| format!("{text:?} is not a byte count"))?;
    if value == 0 {
        return Err("the body limit must be positive".into());
    }
    Ok(value)
}

/// The data plane's configuration.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "router-data-plane",
    version,
    about = "Code Router data plane: the OpenAI- and Anthropic-compatible proxy"
)]
pub struct Config {
    /// Address to serve HTTP on.
    #[arg(long, env = "ROUTER_DP_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// PEM certificate chain to serve HTTPS with (with `--tls-key`); without it, plain HTTP
    /// (behind a TLS-terminating proxy, say).
    #[arg(long, env = "ROUTER_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `--tls-cert`.
    #[arg(long, env = "ROUTER_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// The control plane's gRPC URL.
    #[arg(long, env = "ROUTER_CONTROL_PLANE", default_value = "http://127.0.0.1:50051")]
    pub control_plane: String,

    /// PEM CA certificate(s) the control plane's certificate is checked against (an
    /// `https://` control plane; without it, the public web roots).
    #[arg(long, env = "ROUTER_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// PEM certificate chain presented to the control plane (mutual TLS, with `--client-key`).
    #[arg(long, env = "ROUTER_CLIENT_CERT")]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `--client-cert`.
    #[arg(long, env = "ROUTER_CLIENT_KEY")]
    pub client_key: Option<PathBuf>,

    /// Token presented to the control plane (required).
    #[arg(
        long,
        env = "ROUTER_NODE_TOKEN",
        hide_env_values = true,
        default_value = "",
        hide_default_value = true
    )]
    pub node_token: String,

    /// A file holding the node token (instead of `--node-token`).
    #[arg(long, env = "ROUTER_NODE_TOKEN_FILE")]
    pub node_token_file: Option<PathBuf>,

    /// This data plane's name, in logs and usage records (default: host name and process id).
    #[arg(long, env = "ROUTER_NODE_ID")]
    pub node_id: Option<String>,

    /// Largest request body accepted, in bytes.
    #[arg(long, env = "ROUTER_MAX_BODY_BYTES", default_value = "33554432", value_parser = body_limit)]
    pub max_body_bytes: usize,

    /// Where usage reports wait until the control plane has acknowledged them.
    #[arg(long, env = "ROUTER_SPOOL_DIR", default_value = "./spool")]
    pub spool_dir: PathBuf,

    /// Seconds to wait for an upstream connection.
    #[arg(long = "upstream-connect-timeout", env = "ROUTER_UPSTREAM_CONNECT_TIMEOUT", default_value = "10", value_parser = seconds)]
    pub connect_timeout: Duration,

    /// Seconds to wait for an upstream's first byte.
    #[arg(long = "upstream-first-byte-timeout", env = "ROUTER_UPSTREAM_FIRST_BYTE_TIMEOUT", default_value = "300", value_parser = seconds)]
    pub first_byte_timeout: Duration,

    /// Longest gap, in seconds, between two chunks of an upstream answer.
    #[arg(long = "upstream-idle-timeout", env = "ROUTER_UPSTREAM_IDLE_TIMEOUT", default_value = "120", value_parser = seconds)]
    pub idle_timeout: Duration,

    /// Origins allowed to call from browsers (comma-separated, or `*`).
    #[arg(long, env = "ROUTER_CORS_ORIGINS", default_value = "*")]
    pub cors_origins: String,

    /// Seconds in-flight requests may take to finish after SIGTERM/SIGINT.
    #[arg(long, env = "ROUTER_SHUTDOWN_GRACE", default_value = "30", value_parser = seconds)]
    pub shutdown_grace: Duration,

    /// Output tokens a request reserves from its quota before it runs, at most (its
    /// `max_tokens` when lower; 0: the whole `max_tokens`, the strict mode). What it really
    /// costs is settled afterwards; README "Quotas" states the overspend bound this allows.
    #[arg(long, env = "ROUTER_RESERVE_OUTPUT_TOKENS", default_value_t = 4096)]
    pub reserve_output_tokens: u64,

    /// Seconds a client has to send a whole request head: from connecting for the first
    /// request, from its first byte for the next ones. A connection that has not is closed.
    #[arg(long, env = "ROUTER_HEADER_READ_TIMEOUT", default_value = "10", value_parser = seconds)]
    pub header_read_timeout: Duration,

    /// Longest wait, in seconds, for the next piece of a request body; then 408.
    #[arg(long, env = "ROUTER_BODY_READ_TIMEOUT", default_value = "60", value_parser = seconds)]
    pub body_read_timeout: Duration,

    /// Seconds a connection may stay idle between two requests before it is closed.
    #[arg(long, env = "ROUTER_KEEP_ALIVE_TIMEOUT", default_value = "90", value_parser = seconds)]
    pub keep_alive_timeout: Duration,

    /// Most client connections open at once; beyond it new connections wait in the listen
    /// backlog until one closes.
    #[arg(long, env = "ROUTER_MAX_CONNECTIONS", default_value = "10000", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Most bytes of request bodies held in memory at once by this process; beyond it a new
    /// request with a large body (over 64 KiB) gets 503 `overloaded` with `retry-after`.
    #[arg(long, env = "ROUTER_MAX_INFLIGHT_BODY_BYTES", default_value = "1073741824", value_parser = body_limit)]
    pub max_inflight_body_bytes: usize,

    /// Largest upstream stream event, in bytes: a stream whose event grows beyond it without
    /// ending is cut there, the client's stream ended with an error event.
    #[arg(long, env = "ROUTER_MAX_EVENT_BYTES", default_value = "16777216", value_parser = body_limit)]
    pub max_event_bytes: usize,

    /// Refused keys (401) allowed from one client address (IPv6: one /64) within
    /// `--auth-failure-window`; beyond them the rest of the window answers that address 429
    /// `rate_limit_exceeded` with `retry-after` for every refused key (valid keys are always
    /// served; 0: off).
    #[arg(long, env = "ROUTER_AUTH_FAILURE_LIMIT", default_value_t = 20)]
    pub auth_failure_limit: u32,

    /// Seconds over which `--auth-failure-limit` counts, from an address's first failure.
    #[arg(long, env = "ROUTER_AUTH_FAILURE_WINDOW", default_value = "60", value_parser = seconds)]
    pub auth_failure_window: Duration,

    /// Worker threads, each serving its own share of connections start to end (0: one per CPU).
    #[arg(long, env = "ROUTER_DP_WORKERS", default_value_t = 0)]
    pub workers: usize,
}

impl Config {
    /// The configuration with `--node-token-file` read into the node token (an error when
    /// both are given or the file cannot be read).
    pub fn with_secret_files(mut self) -> anyhow::Result<Config> {
        let given = Some(std::mem::take(&mut self.node_token)).filter(|t| !t.is_empty());
        self.node_token =
            router_startup::secret::resolve("node-token", given, self.node_token_file.as_deref())?
                .unwrap_or_default();
        Ok(self)
    }

    /// Checks what clap cannot.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.node_token.trim().is_empty() {
            anyhow::bail!(
                "the node token is empty (set --node-token, ROUTER_NODE_TOKEN or --node-token-file)"
            );
        }
        if !(self.control_plane.starts_with("http://") || self.control_plane.starts_with("https://")) {
            anyhow::bail!(
                "the control plane URL {:?} must start with http:// or https://",
                self.control_plane
            );
        }
        self.control_plane_tls().config(&self.control_plane).map_err(anyhow::Error::msg)?;
        Ok(())
    }

    /// Where the TLS files for the control-plane link are.
    pub fn control_plane_tls(&self) -> router_proto::tls::ClientTls<'_> {
        router_proto::tls::ClientTls {
            ca_cert: self.ca_cert.as_deref(),
            client_cert: self.client_cert.as_deref(),
            client_key: self.client_key.as_deref(),
        }
    }

    /// Worker threads to run: `--workers`, else one per CPU.
    pub fn worker_count(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            n => n,
        }
    }

    /// The node id in force.
    pub fn node_id(&self) -> String {
        self.node_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "node".into());
            format!("{host}-{}", std::process::id())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &[&str]) -> anyhow::Result<Config> {
        let mut all = vec!["router-data-plane"];
        all.extend_from_slice(line);
        Config::try_parse_from(all)?.with_secret_files()
    }

    #[test]
    fn the_node_token_can_be_given_as_a_file() {
        let path = std::env::temp_dir().join(format!("router-dp-node-token-{}", std::process::id()));
        std::fs::write(&path, "from-a-file\n").expect("write");
        let file = path.to_str().expect("utf-8");
        let config = parse(&["--node-token-file", file]).expect("parsed");
        assert_eq!(config.node_token, "from-a-file");
        assert!(config.validate().is_ok());
        let both = parse(&["--node-token", "t", "--node-token-file", file]).map(|_| ()).expect_err("both");
        assert_eq!(both.to_string(), "give --node-token or --node-token-file, not both");
        let _ = std::fs::remove_file(&path);
        let missing = parse(&["--node-token-file", file]).map(|_| ()).expect_err("gone");
        assert!(format!("{missing:#}").starts_with("cannot read --node-token-file "), "{missing:#}");
        let none = parse(&[]).expect("parsed").validate().expect_err("no token");
        assert!(none.to_string().contains("--node-token-file"), "{none}");
        assert_eq!(parse(&["--node-token", "t"]).expect("flag").node_token, "t");
    }
}
