//! Usage reports: one per request forwarded upstream, appended to the crash-safe spool in
//! `--spool-dir` before the response's last byte goes to the client, then streamed to the
//! control plane in acknowledged batches and removed only once acknowledged.
//!
//! Delivery guarantee: at least once from here, exactly once in effect: the control plane
//! ignores a `request_id` it has already recorded, so after a broken stream, a control-plane
//! restart or a data plane killed with SIGKILL, everything not acknowledged is sent again.
//! A killed process loses nothing (`record` is a `write` into the page cache, which survives
//! the process); a machine crash may lose the last [`SYNC_INTERVAL`] of reports (the spool is
//! `fsync`ed in the background, never on the request path).
pub(crate) mod crc32;
mod sender;
pub mod spool;

use std::{
    io,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use prost::Message;
use router_proto::pb;
use tokio::sync::{Notify, watch};

use self::spool::{AppendError, Reader, Spool};
use crate::{control::NodeClient, metrics::Metrics};

/// How often the spool is flushed to the disk.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(50);
/// The most the spool may hold before reports are refused.
pub const SPOOL_CAP_BYTES: u64 = 1 << 30;
/// A segment is sealed (and a new one started) once it holds this much.
const SEGMENT_BYTES: u64 = 4 << 20;

/// Why a report could not be accepted.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The spool holds its cap: the control plane has been away too long.
    #[error("the usage spool is full ({0} bytes); the control plane is not taking reports")]
    Full(u64),
    /// The disk refused the write (full, read-only, failing).
    #[error("the usage spool cannot be written: {0}")]
    Io(io::Error),
}

impl From<AppendError> for ReportError {
    fn from(error: AppendError) -> ReportError {
        match error {
            AppendError::Full(cap) => ReportError::Full(cap),
            AppendError::Io(error) => ReportError::Io(error),
        }
    }
}

struct Shared {
    spool: Spool,
    /// Reports spooled and not yet acknowledged.
    depth: AtomicU64,
    /// Wakes the sender when a report is spooled.
    wake: Notify,
    /// Wakes whoever waits for the spool to drain, after each acknowledgement.
    acked: Notify,
    /// Counts quarantined and set-aside reports.
    metrics: Arc<Metrics>,
}

/// Spools reports and delivers them; cheap to clone.
#[derive(Clone)]
pub struct Reporter {
    shared: Arc<Shared>,
}

impl Reporter {
    /// Opens the spool in `spool_dir` and delivers what it holds (a previous run's leftovers
    /// first) and every new report to the control plane until `shutdown` turns true.
    pub fn start(
        client: NodeClient,
        node_id: String,
        spool_dir: &Path,
        metrics: Arc<Metrics>,
        shutdown: watch::Receiver<bool>,
    ) -> io::Result<Reporter> {
        let reporter = Reporter::open(spool_dir, SPOOL_CAP_BYTES, metrics)?;
        let acked = reporter.shared.spool.load_checkpoint();
        tokio::spawn(sender::deliver(client, node_id, Arc::clone(&reporter.shared), acked, shutdown.clone()));
        tokio::spawn(sync_periodically(Arc::clone(&reporter.shared), shutdown));
        Ok(reporter)
    }

    fn open(spool_dir: &Path, cap: u64, metrics: Arc<Metrics>) -> io::Result<Reporter> {
        let spool = Spool::open(spool_dir, cap, SEGMENT_BYTES)?;
        let mut reader = Reader::new(spool_dir, spool.load_checkpoint());
        let end = spool.end();
        let mut backlog = 0;
        loop {
            let read = reader.read(10_000, end)?.len();
            if read == 0 {
                break;
            }
            backlog += read as u64;
        }
        if backlog > 0 {
            tracing::info!(backlog, dir = %spool_dir.display(), "replaying the usage spool");
        }
        Ok(Reporter {
            shared: Arc::new(Shared {
                spool,
                depth: AtomicU64::new(backlog),
                wake: Notify::new(),
                acked: Notify::new(),
                metrics,
            }),
        })
    }

    /// Spools one report for delivery: one encode and one `write`.
    pub fn record(&self, report: pb::UsageReport) -> Result<(), ReportError> {
        self.shared.spool.append(|buffer| report.encode_raw(buffer))?;
        self.shared.depth.fetch_add(1, Ordering::Relaxed);
        self.shared.wake.notify_one();
        Ok(())
    }

    /// Whether a new request's report will fit: checked before a request is forwarded, so
    /// that nothing goes upstream that could not be billed.
    pub fn accepting(&self) -> Result<(), ReportError> {
        // Room for a few thousand reports in flight at once.
        if self.shared.spool.has_room(4 << 20) { Ok(()) } else { Err(ReportError::Full(SPOOL_CAP_BYTES)) }
    }

    /// Reports accepted and not yet acknowledged.
    pub fn depth(&self) -> u64 {
        self.shared.depth.load(Ordering::Relaxed)
    }

    /// Waits until every report is acknowledged, for at most `timeout`; whether it was.
    /// (What is left stays in the spool and goes out on the next start.)
    pub async fn drained(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let acked = self.shared.acked.notified();
            tokio::pin!(acked);
            acked.as_mut().enable();
            if self.depth() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, acked).await.is_err() {
                return self.depth() == 0;
            }
        }
    }
}

async fn sync_periodically(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(SYNC_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = ticks.tick() => false,
            _ = shutdown.wait_for(|stop| *stop) => true,
        };
        let shared = Arc::clone(&shared);
        match tokio::task::spawn_blocking(move || shared.spool.sync()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, "the usage spool could not be synced"),
            Err(error) => tracing::error!(%error, "the spool sync task failed"),
        }
        if stopping {
            return;
        }
    }
}
