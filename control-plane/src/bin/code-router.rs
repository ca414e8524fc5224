//! `code-router`: the single-node quickstart. One process runs a control plane on embedded
//! SQLite and one data plane beside it, generates tokens when none are given, prints what to
//! do next, and stops both on Ctrl-C.
use std::{io::IsTerminal, net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::Parser;
use rand::{Rng, distr::Alphanumeric};
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

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
    /// Admin token (generated and printed when not given).
    #[arg(long, env = "ROUTER_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Node token (generated when not given).
    #[arg(long, env = "ROUTER_NODE_TOKEN", hide_env_values = true)]
    node_token: Option<String>,
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
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("ROUTER_LOG").unwrap_or_else(|_| EnvFilter::new("warn")))
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Quickstart) -> anyhow::Result<()> {
    let admin_token = args.admin_token.clone().unwrap_or_else(|| token("admin"));
    let node_token = args.node_token.clone().unwrap_or_else(|| token("node"));
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
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        let _ = stop.send(true);
    });
    let until = |mut receiver: watch::Receiver<bool>| async move {
        let _ = receiver.wait_for(|s| *s).await;
    };
    let control_plane = tokio::spawn(router_control_plane::server::run(control, until(stopped.clone())));
    // The data plane would cope with a control plane that is not up yet, but starting it once
    // the control plane listens spares the first reconnect (and its warnings).
    for _ in 0..1500 {
        if control_plane.is_finished() || tokio::net::TcpStream::connect(args.grpc_listen).await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    if control_plane.is_finished() {
        return control_plane.await?;
    }
    let data_plane = tokio::spawn(router_data_plane::run(data, until(stopped.clone())));
    banner(&args, &admin_token);
    let (control, data) = tokio::join!(control_plane, data_plane);
    control??;
    data??;
    Ok(())
}

fn banner(args: &Quickstart, admin_token: &str) {
    let grpc = format!("http://{}", args.grpc_listen);
    let url = format!("http://{}", args.listen);
    println!(
        r#"Code Router is running (Ctrl-C stops it).

  gateway (apps call this):   {url}/v1
  admin gRPC (routerctl):     {grpc}
  admin token:                {admin_token}
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
