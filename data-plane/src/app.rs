//! What every request handler shares.
use std::{
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use tokio::sync::{Semaphore, watch};

use crate::{
    config::Config,
    control::NodeClient,
    metrics::Metrics,
    policy::watch::SharedPolicy,
    proxy::{request::BodyBudget, route::CoolDowns, upstream::HttpClient},
    quota::Quota,
    report::Reporter,
};

/// The data plane's state: shared by every worker, except the upstream client (each worker
/// thread has its own connection pool).
#[derive(Clone)]
pub struct App {
    /// Configuration.
    pub config: Config,
    /// This node's id.
    pub node_id: String,
    /// The policy in force.
    pub policy: SharedPolicy,
    /// The control plane.
    pub node: NodeClient,
    /// The upstream HTTP client.
    pub http: HttpClient,
    /// Failing channels.
    pub cool_downs: Arc<CoolDowns>,
    /// Local budgets.
    pub quota: Quota,
    /// Usage reports.
    pub reporter: Reporter,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The policy version loaded (0 until the first snapshot).
    pub loaded: watch::Receiver<u64>,
    /// One permit per client connection that may be open (`--max-connections`).
    pub connections: Arc<Semaphore>,
    /// This worker's WebSocket sessions (each worker has its own), told when it stops.
    pub sockets: crate::proxy::websocket::Sockets,
    /// Request bodies in memory (`--max-inflight-body-bytes`).
    pub bodies: Arc<BodyBudget>,
    /// The TLS listener's acceptor (`--tls-cert`); `None`: plain HTTP.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Failed-auth back-off per client address (`--auth-failure-limit`).
    pub auth_backoff: Arc<crate::proxy::backoff::Backoff>,
}

impl App {
    /// Whether the data plane can serve: a policy is loaded and the tokenizer is ready.
    pub fn is_ready(&self) -> bool {
        *self.loaded.borrow() > 0 && crate::proxy::tokenize::is_loaded()
    }
}

/// Now, in unix microseconds.
pub fn unix_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}
