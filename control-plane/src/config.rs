//! Command-line flags and their environment variables (flags win), parsed once at start.
use std::net::SocketAddr;

use clap::Parser;

/// The control plane's configuration.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "router-control-plane",
    version,
    about = "Code Router control plane: owns all state, serves routerctl and data planes over gRPC"
)]
pub struct Config {
    /// Address to serve gRPC on.
    #[arg(long, env = "ROUTER_CP_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

    /// sqlite://FILE (relative), sqlite:///ABS/PATH, or postgres://…
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://router.db", hide_env_values = true)]
    pub database_url: String,

    /// Token routerctl and other admin clients must present.
    #[arg(long, env = "ROUTER_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: String,

    /// Token data planes must present.
    #[arg(long, env = "ROUTER_NODE_TOKEN", hide_env_values = true)]
    pub node_token: String,

    /// Display name of the deployment's currency.
    #[arg(long, env = "ROUTER_CURRENCY", default_value = "USD")]
    pub currency: String,

    /// Delete raw usage records older than this many days (0: keep them all). Summaries
    /// (hourly aggregates) and the ledger are kept.
    #[arg(
        long,
        env = "ROUTER_USAGE_RETENTION_DAYS",
        value_name = "DAYS",
        default_value_t = 0,
        value_parser = clap::value_parser!(u32).range(0..=36_500)
    )]
    pub usage_retention_days: u32,
    /// Milliseconds between two reads of the policy version when nothing announced a change.
    /// Changes made through this replica, and on PostgreSQL through any replica (LISTEN/NOTIFY),
    /// reach the data planes at once; this poll is the fallback while notifications are down.
    #[arg(long, env = "ROUTER_POLICY_POLL_INTERVAL_MS", default_value_t = 200,
          value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub policy_poll_interval_ms: u64,
    /// Seconds between two health checks of every channel (one small real request each);
    /// 0: no checks.
    #[arg(long, env = "ROUTER_CHANNEL_CHECK_INTERVAL", default_value_t = 0)]
    pub channel_check_interval: u64,

    /// Failed checks in a row that disable a channel (a passing check enables it again).
    #[arg(long, env = "ROUTER_CHANNEL_CHECK_FAILURES", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub channel_check_failures: u32,

    /// Length of the rate window in milliseconds: what RPM and TPM limits count "per minute".
    /// Meant for tests (a short real window); in production leave it at a minute.
    #[arg(long, env = "ROUTER_RATE_WINDOW_MS", default_value_t = 60_000, hide = true,
          value_parser = clap::value_parser!(u64).range(600..=3_600_000))]
    pub rate_window_ms: u64,
}

impl Config {
    /// Checks what clap cannot: tokens present and distinct.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.admin_token.trim().is_empty() {
            anyhow::bail!("the admin token is empty (set --admin-token or ROUTER_ADMIN_TOKEN)");
        }
        if self.node_token.trim().is_empty() {
            anyhow::bail!("the node token is empty (set --node-token or ROUTER_NODE_TOKEN)");
        }
        if self.admin_token == self.node_token {
            anyhow::bail!(
                "the admin token and the node token must differ: a data plane must not be able to administer"
            );
        }
        if self.currency.trim().is_empty() {
            anyhow::bail!("the currency name is empty");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> Result<Config, clap::Error> {
        let mut line = vec!["router-control-plane", "--admin-token", "a", "--node-token", "n"];
        line.extend_from_slice(extra);
        Config::try_parse_from(line)
    }

    #[test]
    fn usage_retention_defaults_to_keeping_everything() {
        assert_eq!(parse(&[]).map(|c| c.usage_retention_days).ok(), Some(0));
        assert_eq!(parse(&["--usage-retention-days", "90"]).map(|c| c.usage_retention_days).ok(), Some(90));
        assert!(parse(&["--usage-retention-days", "-1"]).is_err());
        assert!(parse(&["--usage-retention-days", "ninety"]).is_err());
        assert!(parse(&["--usage-retention-days", "40000"]).is_err());
    }
}
