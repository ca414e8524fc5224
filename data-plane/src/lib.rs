//! Code Router's data plane: an OpenAI- and Anthropic-compatible HTTP proxy that caches its
//! policy from the control plane, enforces quotas locally and reports usage back.
//!
//! The request path lives in [`proxy`], one module per step; [`policy`] holds the cached
//! policy; [`endpoints`] answers what is not proxied.
#![forbid(unsafe_code)]

pub mod app;
pub mod body;
pub mod config;
pub mod console;
pub mod control;
pub mod convert;
pub mod endpoints;
#[doc(hidden)]
pub mod fuzzing;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod quota;
pub mod report;
pub mod server;
pub mod watchdog;

use std::{future::Future, sync::Arc};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::{app::App, config::Config, policy::Policy};

/// Longest a stopping data plane waits for its last usage reports to be acknowledged.
const DRAIN_REPORTS: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs a data plane until `shutdown` completes.
pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
    let config = config.with_secret_files()?;
    config.validate()?;
    let node_id = config.node_id();
    let node = control::node_client(&config.control_plane, &config.node_token, config.control_plane_tls())?;
    let (stop, stopped) = watch::channel(false);

    let policy = Arc::new(ArcSwap::from_pointee(Policy::default()));
    let (loaded_sender, loaded) = watch::channel(0u64);
    tokio::spawn(policy::watch::follow(
        node.clone(),
        node_id.clone(),
        Arc::clone(&policy),
        loaded_sender,
        stopped.clone(),
    ));
    tokio::task::spawn_blocking(|| {
        if let Err(error) = proxy::tokenize::load() {
            tracing::error!(%error, "the tokenizer did not load; /readyz stays unready");
        }
    });
    let metrics = Arc::new(metrics::Metrics::default());
    let reporter = report::Reporter::start(
        node.clone(),
        node_id.clone(),
        &config.spool_dir,
        Arc::clone(&metrics),
        stopped.clone(),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the usage spool in {}: {e}", config.spool_dir.display()))?;
    let quota = quota::Quota::new(node.clone(), node_id.clone(), reporter.clone(), stopped.clone());

    match router_startup::accept::raise_descriptor_limit() {
        Ok(limit) => tracing::info!(limit, max_connections = config.max_connections, "descriptor limit"),
        Err(error) => tracing::warn!(%error, "cannot read or raise the descriptor limit"),
    }
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            tracing::info!(cert = %cert.display(), "serving HTTPS");
            Some(server::tls_acceptor(cert, key)?)
        }
        _ => None,
    };
    let app = App {
        tls,
        connections: Arc::new(tokio::sync::Semaphore::new(config.max_connections as usize)),
        bodies: proxy::request::BodyBudget::new(config.max_inflight_body_bytes),
        auth_backoff: Arc::new(proxy::backoff::Backoff::new(
            config.auth_failure_limit,
            config.auth_failure_window,
        )),
        http: proxy::upstream::client(config.connect_timeout),
        config,
        node_id,
        policy,
        node,
        cool_downs: Arc::default(),
        quota,
        reporter,
        metrics,
        loaded,
        sockets: Default::default(),
    };
    let reporter = app.reporter.clone();
    server::serve(app, shutdown).await?;
    // Deliver the last requests' usage before going (bounded): billing stays prompt and the
    // leases they settled are released.
    if !reporter.drained(DRAIN_REPORTS).await {
        tracing::warn!(left = reporter.depth(), "usage reports left in the spool for the next start");
    }
    let _ = stop.send(true);
    Ok(())
}
