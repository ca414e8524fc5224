//! Usage reports: one per request forwarded upstream, handed over before the response's last
//! byte goes to the client, then delivered to the control plane in acknowledged batches.
//!
//! INTERIM: reports wait in memory and are streamed to the control plane; the crash-safe
//! spool of the issue "Quota leases and exactly-once usage" replaces the inside of this module
//! and keeps its interface.
use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use router_proto::pb;
use tokio::sync::{mpsc, watch};

use crate::control::NodeClient;

/// Reports sent in one batch at most.
const BATCH: usize = 500;

/// Why a report could not be accepted.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The reporter has stopped.
    #[error("the usage reporter has stopped")]
    Stopped,
}

/// Hands reports to the delivery task; cheap to clone.
#[derive(Clone)]
pub struct Reporter {
    queue: mpsc::UnboundedSender<pb::UsageReport>,
    depth: Arc<AtomicU64>,
}

impl Reporter {
    /// Starts delivering to the control plane until `shutdown` turns true.
    pub fn start(client: NodeClient, node_id: String, shutdown: watch::Receiver<bool>) -> Reporter {
        let (queue, receiver) = mpsc::unbounded_channel();
        let depth = Arc::new(AtomicU64::new(0));
        tokio::spawn(deliver(client, node_id, receiver, Arc::clone(&depth), shutdown));
        Reporter { queue, depth }
    }

    /// Accepts one report for delivery.
    pub fn record(&self, report: pb::UsageReport) -> Result<(), ReportError> {
        self.depth.fetch_add(1, Ordering::Relaxed);
        self.queue.send(report).map_err(|_| ReportError::Stopped)
    }

    /// Reports accepted and not yet acknowledged.
    pub fn depth(&self) -> u64 {
        self.depth.load(Ordering::Relaxed)
    }
}

async fn deliver(
    mut client: NodeClient,
    node_id: String,
    mut receiver: mpsc::UnboundedReceiver<pb::UsageReport>,
    depth: Arc<AtomicU64>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut batch_id = 0u64;
    loop {
        let mut reports = Vec::new();
        tokio::select! {
            count = receiver.recv_many(&mut reports, BATCH) => if count == 0 { return },
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        batch_id += 1;
        let count = reports.len() as u64;
        let batch = pb::UsageBatch { batch_id, node_id: node_id.clone(), reports };
        loop {
            let outcome = async {
                let mut acks = client.report_usage(tokio_stream::iter([batch.clone()])).await?.into_inner();
                acks.message().await
            };
            match outcome.await {
                Ok(Some(_)) => break,
                Ok(None) => tracing::warn!("usage stream closed without an acknowledgement; retrying"),
                Err(error) => tracing::warn!(%error, "usage batch not delivered; retrying"),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        depth.fetch_sub(count, Ordering::Relaxed);
    }
}
