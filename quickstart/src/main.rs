//! `code-router`: the single-node quickstart. One process runs a control plane on embedded
//! SQLite and one data plane beside it, generates tokens when none are given, prints what to
//! do next, and stops both on Ctrl-C.
use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use clap::Parser;
use rand::{Rng, distr::Alphanumeric};
use router_startup::Runtime;
use tokio::sync::watch;

/// Single-node Code Router: control plane (embedded SQLite) and one data plane.
#[derive(Debug, Parser)]
#[command(name = "code-router", version)]
struct Quickstart {
    /// Address apps call (the data plane).
    #[arg(long, env = "ROUTER_DP_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Address routerctl calls (the control plane's gRPC).
    #[arg(long, env = "ROUTER_CP_LISTEN", default_value = "127.0.0.1:50051")]
    grpc_listen: SocketAddr,
    /// Database (default: a SQLite file in the working directory).
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://router.db", hide_env_values = true)]
    database_url: String,
    /// A file holding the database URL (instead of `--database-url`).
    #[arg(long, env = "DATABASE_URL_FILE")]
    database_url_file: Option<PathBuf>,
    /// Admin token (generated and printed when not given).
    #[arg(long, env = "ROUTER_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// A file holding the admin token (instead of `--admin-token`).
    #[arg(long, env = "ROUTER_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
    /// Node token (generated when not given).
    #[arg(long, env = "ROUTER_NODE_TOKEN", hide_env_values = true)]
    node_token: Option<String>,
    /// A file holding the node token (instead of `--node-token`).
    #[arg(long, env = "ROUTER_NODE_TOKEN_FILE")]
    node_token_file: Option<PathBuf>,
    /// Where the data plane spools usage reports.
    #[arg(long, env = "ROUTER_SPOOL_DIR", default_value = "./spool")]
    spool_dir: PathBuf,
    /// Display name of the currency.
    #[arg(long, env = "ROUTER_CURRENCY", default_value = "USD")]
    currency: String,
}

fn token(prefix: &str) -> String {
    let random: String = rand::rng().sample_iter(Alphanumeric).take(40).map(char::from).collect();
    format!("{prefix}-{random}")
}

fn main() -> ExitCode {
    let args = Quickstart::parse();
    router_startup::init_logging("warn");
    router_startup::run(Runtime::MultiThread, run(args))
}

async fn run(mut args: Quickstart) -> anyhow::Result<()> {
    use router_startup::secret::resolve;
    let admin_token = resolve("admin-token", args.admin_token.take(), args.admin_token_file.as_deref())?
        .unwrap_or_else(|| token("admin"));
    let node_token = resolve("node-token", args.node_token.take(), args.node_token_file.as_deref())?
        .unwrap_or_else(|| token("node"));
    let explicit_url = Some(args.database_url.clone()).filter(|url| url != "sqlite://router.db");
    if let Some(url) = resolve("database-url", explicit_url, args.database_url_file.as_deref())? {
        args.database_url = url;
    }
    // Built through each binary's own flag parser, so defaults and validation stay theirs.
    let grpc_listen = args.grpc_listen.to_string();
    let control = router_control_plane::config::Config::try_parse_from([
        "router-control-plane",
        "--listen",
        &grpc_listen,
        "--database-url",
        &args.database_url,
        "--admin-token",
        &admin_token,
        "--node-token",
        &node_token,
        "--currency",
        &args.currency,
    ])?;
    // Resolved above: the `…_FILE` variables the inner parsers also read are not a second value.
    let control = router_control_plane::config::Config {
        database_url_file: None,
        admin_token_file: None,
        node_token_file: None,
        // The quickstart's planes talk over loopback, in the clear: TLS variables meant for a
        // separate control plane or data plane are not theirs.
        tls_cert: None,
        tls_key: None,
        client_ca_cert: None,
        ..control
    };
    let listen = args.listen.to_string();
    let control_url = format!("http://{grpc_listen}");
    let spool_dir = args.spool_dir.to_string_lossy().into_owned();
    let data = router_data_plane::config::Config::try_parse_from([
        "router-data-plane",
        "--listen",
        &listen,
        "--control-plane",
        &control_url,
        "--node-token",
        &node_token,
        "--node-id",
        "quickstart",
        "--spool-dir",
        &spool_dir,
    ])?;
    let data = router_data_plane::config::Config {
        node_token_file: None,
        tls_cert: None,
        tls_key: None,
        ca_cert: None,
        client_cert: None,
        client_key: None,
        ..data
    };
    // Stopping order: the data plane first (it finishes what is in flight and delivers its
    // last usage reports to the control plane), then the control plane. A second signal
    // ends the process at once.
    let (stop_data, data_stopped) = watch::channel(false);
    let (stop_control, control_stopped) = watch::channel(false);
    tokio::spawn(async move {
        router_startup::shutdown_signal().await;
        let _ = stop_data.send(true);
        router_startup::shutdown_signal().await;
        eprintln!("stopping now, without waiting for requests in flight");
        std::process::exit(130);
    });
    let until = |mut receiver: watch::Receiver<bool>| async move {
        let _ = receiver.wait_for(|s| *s).await;
    };
    let mut control_plane = tokio::spawn(router_control_plane::server::run(control, until(control_stopped)));
    // The data plane would cope with a control plane that is not up yet, but starting it once
    // the control plane listens spares the first reconnect (and its warnings).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !control_plane.is_finished() && tokio::time::Instant::now() < deadline {
        if tokio::net::TcpStream::connect(args.grpc_listen).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if control_plane.is_finished() {
        return (&mut control_plane).await?;
    }
    let data_plane = tokio::spawn(router_data_plane::run(data, until(data_stopped)));
    banner(&args, &admin_token, &node_token);
    let data = data_plane.await;
    let _ = stop_control.send(true);
    let control = control_plane.await;
    data??;
    control??;
    Ok(())
}

fn banner(args: &Quickstart, admin_token: &str, node_token: &str) {
    let grpc = format!("http://{}", args.grpc_listen);
    let url = format!("http://{}", args.listen);
    println!(
        r#"Code Router is running (Ctrl-C stops it).

  gateway (apps call this):   {url}/v1
  admin gRPC (routerctl):     {grpc}
  admin token:                {admin_token}
  node token:                 {node_token}
  database:                   {database}

Add a first channel, price, account and key (routerctl is target/release/routerctl, or
`cargo run --release -p routerctl --`):

  export ROUTER_ENDPOINT={grpc} ROUTER_ADMIN_TOKEN={admin_token}
  routerctl channel add --name openai --type openai --base-url https://api.openai.com/v1 \
      --api-key "$OPENAI_API_KEY" --models gpt-4o-mini
  routerctl model set gpt-4o-mini --input-price 0.15 --output-price 0.6
  routerctl account add me --balance 10
  routerctl key create --account me

Then call it like OpenAI:

  curl {url}/v1/chat/completions -H "Authorization: Bearer sk-…" \
      -H 'content-type: application/json' \
      -d '{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"Hello"}}]}}'
"#,
        database =
            if args.database_url.starts_with("postgres") { "PostgreSQL" } else { args.database_url.as_str() },
    );
}
