//! Assembles and runs the gRPC server: both APIs behind their token checks, health, reflection,
//! and a shutdown that ends streams and exits within a bound.
use std::{future::Future, net::SocketAddr, time::Duration};

use anyhow::Context;
use router_proto::pb::{admin_service_server::AdminServiceServer, node_service_server::NodeServiceServer};
use router_startup::accept::Acceptor;
use tokio::{net::TcpListener, sync::watch};

use crate::{
    api::{admin::AdminApi, auth::BearerCheck, feed::PolicyFeed, node::NodeApi},
    config::Config,
    db::Db,
    store::{leases, now_micros, usage::retention},
};

/// How often long-expired leases are deleted.
const LEASE_SWEEP_EVERY: Duration = Duration::from_secs(60);
/// How often usage partitions are created ahead and retention deletes old records.
const USAGE_MAINTENANCE_EVERY: Duration = Duration::from_secs(600);
/// How long shutdown may take once streams are told to end.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(4);
/// HTTP/2 pings on an idle connection, and how long a ping may go unanswered before the
/// connection is closed.
const HTTP2_KEEPALIVE: Duration = Duration::from_secs(30);
const HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// TCP keep-alive probes after this much idle time (a peer gone without a word).
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);
/// Concurrent gRPC calls per connection (a data plane holds a few streams and calls).
const MAX_CONCURRENT_STREAMS: u32 = 256;

/// Connects to the database and serves until `shutdown` completes.
pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let config = config.with_secret_files()?;
    config.validate()?;
    match router_startup::accept::raise_descriptor_limit() {
        Ok(limit) => tracing::info!(limit, "descriptor limit"),
        Err(error) => tracing::warn!(%error, "cannot read or raise the descriptor limit"),
    }
    let db = Db::connect(&config.database_url).await?;
    let sealer = config.sealer()?;
    if let Some(sealer) = &sealer {
        tracing::info!(key_id = sealer.key_id(), "channel keys are encrypted at rest");
    }
    crate::secrets::install(sealer);
    match crate::store::channels::seal_stored(&db).await {
        Ok(0) => {}
        Ok(sealed) => tracing::info!(sealed, "channel keys encrypted with the current secret key"),
        Err(error) => anyhow::bail!("{error}"),
    }
    // Codes in clear from before they were stored hashed (SQLite: SQL there cannot hash them).
    match crate::store::codes::hash_stored_plaintext(&db).await {
        Ok(0) => {}
        Ok(hashed) => tracing::info!(hashed, "redemption codes stored in clear are now hashed"),
        Err(error) => anyhow::bail!("cannot hash the redemption codes stored in clear: {error}"),
    }
    tracing::info!(backend = ?db.backend(), "database ready");
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    serve(config, db, listener, shutdown).await
}

/// Deletes long-expired leases now and then, until `stop` turns true.
async fn sweep_leases(db: Db, mut stop: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(LEASE_SWEEP_EVERY);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        match leases::sweep(&db, now_micros()).await {
            Ok(0) => {}
            Ok(swept) => tracing::debug!(swept, "expired leases deleted"),
            Err(error) => tracing::warn!(%error, "cannot delete expired leases"),
        }
    }
}

/// Creates usage partitions ahead of time (PostgreSQL) and deletes usage records older than
/// `retention_days` (0: none), at start and then now and then, until `stop` turns true.
async fn maintain_usage(db: Db, retention_days: u32, mut stop: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(USAGE_MAINTENANCE_EVERY);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        let now = now_micros();
        match retention::prepare(&db, now).await {
            Ok(0) => {}
            Ok(created) => tracing::info!(created, "usage partitions created"),
            Err(error) => tracing::warn!(%error, "cannot create usage partitions"),
        }
        let sweep = retention::sweep(&db, now, retention_days);
        tokio::select! {
            result = sweep => match result {
                Ok(swept) if swept == retention::Swept::default() => {}
                Ok(swept) => tracing::info!(
                    partitions = swept.partitions,
                    records = swept.records,
                    request_ids = swept.request_ids,
                    retention_days,
                    "old usage records deleted"
                ),
                Err(error) => tracing::warn!(%error, "cannot delete old usage records"),
            },
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
}

/// Serves on `listener` until `shutdown` completes.
pub async fn serve(
    config: Config,
    db: Db,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let address: SocketAddr = listener.local_addr()?;
    let feed = PolicyFeed::start(db.clone(), Duration::from_millis(config.policy_poll_interval_ms)).await?;
    let (stop_streams, streams_stopped) = watch::channel(false);
    tokio::spawn(sweep_leases(db.clone(), streams_stopped.clone()));
    tokio::spawn(maintain_usage(db.clone(), config.usage_retention_days, streams_stopped.clone()));
    if config.channel_check_interval > 0 {
        let interval = Duration::from_secs(config.channel_check_interval);
        let (db, feed, stop) = (db.clone(), feed.clone(), streams_stopped.clone());
        tokio::spawn(crate::health::run(db, feed, interval, config.channel_check_failures, stop));
    }

    let admin = AdminApi::new(db.clone(), feed.clone(), config.currency.clone());
    let session_lifetime = i64::from(config.session_lifetime) * 1_000_000;
    let payments = config.stripe()?.map(|stripe| {
        let provider =
            crate::payments::Stripe::new(stripe.secret_key, stripe.webhook_secret, &stripe.api_base);
        tracing::info!(api = %stripe.api_base, "top-up through Stripe Checkout");
        std::sync::Arc::new(crate::payments::Payments {
            provider: std::sync::Arc::new(provider),
            limits: stripe.limits,
        })
    });
    let node = NodeApi::new(db, feed, config.currency.clone(), streams_stopped)
        .with_session_lifetime(session_lifetime)
        .with_payments(payments)
        .with_rate_window(i64::try_from(config.rate_window_ms).unwrap_or(60_000).saturating_mul(1000));
    let admin = AdminServiceServer::with_interceptor(admin, BearerCheck::new(&config.admin_token, "admin"));
    let node = NodeServiceServer::with_interceptor(node, BearerCheck::new(&config.node_token, "node"));

    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<AdminServiceServer<AdminApi>>().await;
    health_reporter.set_serving::<NodeServiceServer<NodeApi>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(router_proto::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;

    let (signal_sent, mut signal) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down");
        let _ = signal_sent.send(true);
    });
    let mut graceful = signal.clone();
    // Accept errors (out of descriptors) back off instead of spinning: tonic's own listener
    // retries them at once.
    let incoming = Acceptor::new(listener)?.into_stream(Some(TCP_KEEPALIVE));
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = config.tls()? {
        builder = builder.tls_config(tls).context("cannot set up TLS with --tls-cert and --tls-key")?;
        let mutual = config.client_ca_cert.is_some();
        tracing::info!(client_certificates = mutual, "serving gRPC over TLS");
    }
    let server = builder
        .http2_keepalive_interval(Some(HTTP2_KEEPALIVE))
        .http2_keepalive_timeout(Some(HTTP2_KEEPALIVE_TIMEOUT))
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .add_service(health)
        .add_service(reflection)
        .add_service(admin)
        .add_service(node)
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = graceful.wait_for(|stop| *stop).await;
        });
    tracing::info!("listening on {address}");

    tokio::pin!(server);
    tokio::select! {
        result = &mut server => return result.context("gRPC server failed"),
        _ = signal.wait_for(|stop| *stop) => {}
    }
    let _ = stop_streams.send(true);
    match tokio::time::timeout(SHUTDOWN_GRACE, server).await {
        Ok(result) => result.context("gRPC server failed"),
        Err(_) => {
            tracing::warn!("connections still open after the shutdown grace period; closing them");
            Ok(())
        }
    }
}
