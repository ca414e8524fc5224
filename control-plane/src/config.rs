//! Command-line flags and their environment variables (flags win), parsed once at start.
use std::{net::SocketAddr, path::PathBuf};

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

    /// PEM certificate chain to serve gRPC over TLS with (with `--tls-key`); clients then use
    /// an `https://` URL.
    #[arg(long, env = "ROUTER_CP_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `--tls-cert`.
    #[arg(long, env = "ROUTER_CP_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificate(s): only clients presenting a certificate it signed may connect
    /// (mutual TLS; needs `--tls-cert`).
    #[arg(long, env = "ROUTER_CP_CLIENT_CA_CERT", requires = "tls_cert")]
    pub client_ca_cert: Option<PathBuf>,

    /// sqlite://FILE (relative), sqlite:///ABS/PATH, or postgres://… (may hold a password)
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, hide_env_values = true)]
    pub database_url: String,
    /// A file holding the database URL (instead of `--database-url`).
    #[arg(long, env = "DATABASE_URL_FILE")]
    pub database_url_file: Option<PathBuf>,

    /// Token routerctl and other admin clients must present (required).
    #[arg(
        long,
        env = "ROUTER_ADMIN_TOKEN",
        hide_env_values = true,
        default_value = "",
        hide_default_value = true
    )]
    pub admin_token: String,
    /// A file holding the admin token (instead of `--admin-token`).
    #[arg(long, env = "ROUTER_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,

    /// Token data planes must present (required).
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
    /// Seconds a console session lasts unless it ends sooner (at most, and by default, 7 days).
    #[arg(long, env = "ROUTER_SESSION_LIFETIME", default_value_t = 604_800, value_parser = clap::value_parser!(u32).range(1..=604_800))]
    pub session_lifetime: u32,

    /// The key channel keys are encrypted with at rest: 32 bytes as 64 hex digits or base64
    /// (`openssl rand -hex 32`). Without it, channel keys are stored in clear.
    #[arg(long, env = "ROUTER_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
    /// A file holding the secret key (instead of `--secret-key`).
    #[arg(long, env = "ROUTER_SECRET_KEY_FILE")]
    pub secret_key_file: Option<PathBuf>,
    /// A previous secret key, during a rotation: what it encrypted is decrypted and encrypted
    /// again with `--secret-key` at start.
    #[arg(long, env = "ROUTER_OLD_SECRET_KEY", hide_env_values = true)]
    pub old_secret_key: Option<String>,
    /// A file holding the previous secret key.
    #[arg(long, env = "ROUTER_OLD_SECRET_KEY_FILE")]
    pub old_secret_key_file: Option<PathBuf>,

    /// Stripe secret API key (`sk_…`): enables top-up through Stripe Checkout.
    #[arg(long, env = "ROUTER_STRIPE_SECRET_KEY", hide_env_values = true)]
    pub stripe_secret_key: Option<String>,
    /// A file holding the Stripe secret API key.
    #[arg(long, env = "ROUTER_STRIPE_SECRET_KEY_FILE")]
    pub stripe_secret_key_file: Option<PathBuf>,
    /// The signing secret (`whsec_…`) of the Stripe webhook endpoint
    /// (`POST /api/payments/stripe/webhook` on a data plane).
    #[arg(long, env = "ROUTER_STRIPE_WEBHOOK_SECRET", hide_env_values = true)]
    pub stripe_webhook_secret: Option<String>,
    /// A file holding the Stripe webhook signing secret.
    #[arg(long, env = "ROUTER_STRIPE_WEBHOOK_SECRET_FILE")]
    pub stripe_webhook_secret_file: Option<PathBuf>,
    /// Stripe's API; requests go to `{base}/v1/…`.
    #[arg(long, env = "ROUTER_STRIPE_API_BASE", default_value = "https://api.stripe.com")]
    pub stripe_api_base: String,
    /// The top-up amounts a key holder may choose, e.g. `5,10,50`.
    #[arg(long, env = "ROUTER_TOPUP_AMOUNTS", value_delimiter = ',')]
    pub topup_amounts: Vec<String>,
    /// The smallest free top-up amount (with `--topup-max`, instead of `--topup-amounts`).
    #[arg(long, env = "ROUTER_TOPUP_MIN")]
    pub topup_min: Option<String>,
    /// The largest free top-up amount.
    #[arg(long, env = "ROUTER_TOPUP_MAX")]
    pub topup_max: Option<String>,

    /// Length of the rate window in milliseconds: what RPM and TPM limits count "per minute".
    /// Meant for tests (a short real window); in production leave it at a minute.
    #[arg(long, env = "ROUTER_RATE_WINDOW_MS", default_value_t = 60_000, hide = true,
          value_parser = clap::value_parser!(u64).range(600..=3_600_000))]
    pub rate_window_ms: u64,
}

/// The top-up amounts a deployment allows, in nano-units.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopUpLimits {
    /// Allowed amounts (empty: any within `min..=max`).
    pub amounts: Vec<i64>,
    /// Smallest free amount.
    pub min: Option<i64>,
    /// Largest free amount.
    pub max: Option<i64>,
}

impl TopUpLimits {
    /// Whether `amount` may be paid.
    pub fn allows(&self, amount: i64) -> Result<(), String> {
        let show = |n: i64| router_proto::Money::from_nanos(n).to_string();
        if !self.amounts.is_empty() {
            if self.amounts.contains(&amount) {
                return Ok(());
            }
            let list: Vec<String> = self.amounts.iter().map(|a| show(*a)).collect();
            return Err(format!("the top-up amount must be one of {}", list.join(", ")));
        }
        match (self.min, self.max) {
            (Some(min), Some(max)) if (min..=max).contains(&amount) => Ok(()),
            (Some(min), Some(max)) => {
                Err(format!("the top-up amount must be from {} to {}", show(min), show(max)))
            }
            _ => Err("no top-up amounts are configured".into()),
        }
    }
}

/// Stripe's settings, when configured.
#[derive(Debug, Clone)]
pub struct StripeSettings {
    /// `sk_…`.
    pub secret_key: String,
    /// `whsec_…`.
    pub webhook_secret: String,
    /// API base URL.
    pub api_base: String,
    /// What may be paid.
    pub limits: TopUpLimits,
}

fn top_up_amount(text: &str, flag: &str, currency: &str) -> anyhow::Result<i64> {
    let amount =
        router_proto::Money::parse(text.trim()).map_err(|e| anyhow::anyhow!("{flag} {text:?}: {e}"))?.nanos();
    if amount <= 0 {
        anyhow::bail!("{flag} {text:?}: a top-up amount must be positive");
    }
    if amount % crate::payments::nanos_per_minor(currency) != 0 {
        anyhow::bail!("{flag} {text:?}: more decimals than {currency} has for card payments");
    }
    Ok(amount)
}

/// The database URL when none is given.
const DEFAULT_DATABASE_URL: &str = "sqlite://router.db";

impl Config {
    /// The configuration with every `--…-file` secret read into its value (an error when a
    /// secret is given both ways or its file cannot be read).
    pub fn with_secret_files(mut self) -> anyhow::Result<Config> {
        use router_startup::secret::resolve;
        let given = |value: &str| Some(value.to_owned()).filter(|v| !v.is_empty());
        // The database URL has a default: only one given explicitly conflicts with the file.
        let url = given(&self.database_url).filter(|url| url != DEFAULT_DATABASE_URL);
        if let Some(url) = resolve("database-url", url, self.database_url_file.as_deref())? {
            self.database_url = url;
        }
        self.admin_token =
            resolve("admin-token", given(&self.admin_token), self.admin_token_file.as_deref())?
                .unwrap_or_default();
        self.node_token = resolve("node-token", given(&self.node_token), self.node_token_file.as_deref())?
            .unwrap_or_default();
        self.secret_key = resolve("secret-key", self.secret_key.take(), self.secret_key_file.as_deref())?;
        self.old_secret_key =
            resolve("old-secret-key", self.old_secret_key.take(), self.old_secret_key_file.as_deref())?;
        self.stripe_secret_key = resolve(
            "stripe-secret-key",
            self.stripe_secret_key.take(),
            self.stripe_secret_key_file.as_deref(),
        )?;
        self.stripe_webhook_secret = resolve(
            "stripe-webhook-secret",
            self.stripe_webhook_secret.take(),
            self.stripe_webhook_secret_file.as_deref(),
        )?;
        Ok(self)
    }

    /// Checks what clap cannot: tokens present and distinct.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.admin_token.trim().is_empty() {
            anyhow::bail!(
                "the admin token is empty (set --admin-token, ROUTER_ADMIN_TOKEN or --admin-token-file)"
            );
        }
        if self.node_token.trim().is_empty() {
            anyhow::bail!(
                "the node token is empty (set --node-token, ROUTER_NODE_TOKEN or --node-token-file)"
            );
        }
        if self.admin_token == self.node_token {
            anyhow::bail!(
                "the admin token and the node token must differ: a data plane must not be able to administer"
            );
        }
        if self.currency.trim().is_empty() {
            anyhow::bail!("the currency name is empty");
        }
        self.stripe()?;
        self.sealer()?;
        self.tls()?;
        Ok(())
    }

    /// The gRPC server's TLS configuration: `None` without `--tls-cert`; the files are read
    /// (an error naming the flag when one cannot be).
    pub fn tls(&self) -> anyhow::Result<Option<tonic::transport::ServerTlsConfig>> {
        use router_proto::tls::read_pem;
        use tonic::transport::{Certificate, Identity, ServerTlsConfig};
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else { return Ok(None) };
        let identity = Identity::from_pem(
            read_pem("--tls-cert", cert).map_err(anyhow::Error::msg)?,
            read_pem("--tls-key", key).map_err(anyhow::Error::msg)?,
        );
        let mut tls = ServerTlsConfig::new().identity(identity);
        if let Some(ca) = &self.client_ca_cert {
            let ca = read_pem("--client-ca-cert", ca).map_err(anyhow::Error::msg)?;
            tls = tls.client_ca_root(Certificate::from_pem(ca));
        }
        Ok(Some(tls))
    }

    /// What seals channel keys at rest: `None` without `--secret-key`; a clear error for a key
    /// that is not 32 bytes, or an old key without a new one.
    pub fn sealer(&self) -> anyhow::Result<Option<crate::secrets::Sealer>> {
        use crate::secrets::{Sealer, SecretKey};
        let given = |value: &Option<String>| value.clone().filter(|v| !v.trim().is_empty());
        let Some(current) = given(&self.secret_key) else {
            if given(&self.old_secret_key).is_some() {
                anyhow::bail!("--old-secret-key needs --secret-key (the key to encrypt with from now on)");
            }
            return Ok(None);
        };
        let current = SecretKey::parse(&current, "--secret-key")?;
        let old = match given(&self.old_secret_key) {
            Some(old) => vec![SecretKey::parse(&old, "--old-secret-key")?],
            None => Vec::new(),
        };
        Ok(Some(Sealer::new(current, old)))
    }

    /// Stripe's settings when `--stripe-secret-key` is given (which then needs the webhook
    /// secret and the allowed amounts); a clear error for a half-made configuration.
    pub fn stripe(&self) -> anyhow::Result<Option<StripeSettings>> {
        let has_limits =
            !self.topup_amounts.is_empty() || self.topup_min.is_some() || self.topup_max.is_some();
        let Some(secret_key) = self.stripe_secret_key.clone().filter(|k| !k.trim().is_empty()) else {
            if self.stripe_webhook_secret.is_some() || has_limits {
                anyhow::bail!(
                    "--stripe-webhook-secret and --topup-amounts/--topup-min/--topup-max need --stripe-secret-key"
                );
            }
            return Ok(None);
        };
        let Some(webhook_secret) = self.stripe_webhook_secret.clone().filter(|k| !k.trim().is_empty()) else {
            anyhow::bail!(
                "--stripe-secret-key needs --stripe-webhook-secret (the webhook endpoint's signing secret)"
            );
        };
        if !self.stripe_api_base.starts_with("http://") && !self.stripe_api_base.starts_with("https://") {
            anyhow::bail!("--stripe-api-base {:?} is not an http(s) URL", self.stripe_api_base);
        }
        let mut limits = TopUpLimits::default();
        for text in &self.topup_amounts {
            limits.amounts.push(top_up_amount(text, "--topup-amounts", &self.currency)?);
        }
        limits.min =
            self.topup_min.as_deref().map(|t| top_up_amount(t, "--topup-min", &self.currency)).transpose()?;
        limits.max =
            self.topup_max.as_deref().map(|t| top_up_amount(t, "--topup-max", &self.currency)).transpose()?;
        match (limits.amounts.is_empty(), limits.min, limits.max) {
            (false, None, None) => {}
            (true, Some(min), Some(max)) if min <= max => {}
            (true, Some(_), Some(_)) => anyhow::bail!("--topup-min is larger than --topup-max"),
            (true, None, None) => {
                anyhow::bail!(
                    "Stripe needs the allowed amounts: --topup-amounts 5,10,50 or --topup-min and --topup-max"
                )
            }
            _ => anyhow::bail!("give either --topup-amounts or both --topup-min and --topup-max"),
        }
        Ok(Some(StripeSettings {
            secret_key,
            webhook_secret,
            api_base: self.stripe_api_base.clone(),
            limits,
        }))
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
    fn stripe_needs_its_secrets_and_amounts() {
        let stripe = |extra: &[&str]| {
            parse(extra).map_err(|e| e.to_string()).and_then(|c| c.stripe().map_err(|e| e.to_string()))
        };
        assert!(matches!(stripe(&[]), Ok(None)));
        let full = ["--stripe-secret-key", "sk_test", "--stripe-webhook-secret", "whsec_x"];
        let with = |more: &[&'static str]| {
            let mut all = full.to_vec();
            all.extend_from_slice(more);
            stripe(&all)
        };
        let limits = with(&["--topup-amounts", "5,10,50"]).ok().flatten().map(|s| s.limits);
        assert_eq!(limits.map(|l| l.amounts), Some(vec![5_000_000_000, 10_000_000_000, 50_000_000_000]));
        let free = with(&["--topup-min", "1", "--topup-max", "100.5"]).ok().flatten().map(|s| s.limits);
        assert_eq!(free.clone().map(|l| (l.min, l.max)), Some((Some(1_000_000_000), Some(100_500_000_000))));
        assert!(
            free.as_ref()
                .is_some_and(|l| l.allows(2_000_000_000).is_ok() && l.allows(200_000_000_000).is_err())
        );
        for bad in [
            &[][..],
            &["--topup-amounts", "5.001"][..],
            &["--topup-amounts", "-5"][..],
            &["--topup-min", "10", "--topup-max", "5"][..],
            &["--topup-min", "1"][..],
            &["--topup-amounts", "5", "--topup-min", "1", "--topup-max", "9"][..],
        ] {
            assert!(with(bad).is_err(), "{bad:?}");
        }
        assert!(stripe(&["--stripe-secret-key", "sk", "--topup-amounts", "5"]).is_err(), "no webhook secret");
        assert!(stripe(&["--topup-amounts", "5"]).is_err(), "amounts without Stripe");
    }

    /// A temporary file holding `content`, removed on drop.
    struct SecretFile(PathBuf);

    impl SecretFile {
        fn new(name: &str, content: &str) -> SecretFile {
            let path = std::env::temp_dir().join(format!("router-cp-{}-{name}", std::process::id()));
            std::fs::write(&path, content).expect("write the secret file");
            SecretFile(path)
        }

        fn path(&self) -> &str {
            self.0.to_str().expect("a UTF-8 path")
        }
    }

    impl Drop for SecretFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn parse_only(line: &[&str]) -> anyhow::Result<Config> {
        let mut all = vec!["router-control-plane"];
        all.extend_from_slice(line);
        Config::try_parse_from(all)?.with_secret_files()
    }

    #[test]
    fn every_secret_can_be_given_as_a_file() {
        let admin = SecretFile::new("admin", "admin-from-file\n");
        let node = SecretFile::new("node", "node-from-file\n");
        let url = SecretFile::new("url", "postgres://u:pw@db/router\n");
        let stripe = SecretFile::new("stripe", "sk_test_file");
        let hook = SecretFile::new("hook", "whsec_file\r\n");
        let config = parse_only(&[
            "--admin-token-file",
            admin.path(),
            "--node-token-file",
            node.path(),
            "--database-url-file",
            url.path(),
            "--stripe-secret-key-file",
            stripe.path(),
            "--stripe-webhook-secret-file",
            hook.path(),
            "--topup-amounts",
            "5",
        ])
        .expect("parsed");
        assert_eq!(config.admin_token, "admin-from-file");
        assert_eq!(config.node_token, "node-from-file");
        assert_eq!(config.database_url, "postgres://u:pw@db/router");
        assert_eq!(config.stripe_secret_key.as_deref(), Some("sk_test_file"));
        assert_eq!(config.stripe_webhook_secret.as_deref(), Some("whsec_file"));
        assert!(config.validate().is_ok());
        let flags = parse_only(&["--admin-token", "a", "--node-token", "n"]).expect("flags");
        assert_eq!((flags.admin_token.as_str(), flags.database_url.as_str()), ("a", DEFAULT_DATABASE_URL));
    }

    #[test]
    fn a_secret_given_twice_or_an_unreadable_file_is_refused() {
        let admin = SecretFile::new("twice", "x");
        let error =
            |line: &[&str]| parse_only(line).map(|_| ()).map_err(|e| format!("{e:#}")).expect_err("refused");
        let both = error(&["--admin-token", "a", "--admin-token-file", admin.path(), "--node-token", "n"]);
        assert_eq!(both, "give --admin-token or --admin-token-file, not both");
        let both = error(&[
            "--admin-token",
            "a",
            "--node-token",
            "n",
            "--database-url",
            "sqlite://x.db",
            "--database-url-file",
            admin.path(),
        ]);
        assert!(both.contains("--database-url or --database-url-file"), "{both}");
        let missing = error(&["--admin-token", "a", "--node-token-file", "/nonexistent/node-token"]);
        assert!(missing.starts_with("cannot read --node-token-file /nonexistent/node-token: "), "{missing}");
        // Neither way: the start-up check names all three.
        let none =
            parse_only(&["--node-token", "n"]).expect("parsed").validate().expect_err("no admin token");
        assert!(none.to_string().contains("--admin-token-file"), "{none}");
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
