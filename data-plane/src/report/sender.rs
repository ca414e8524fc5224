//! Streams spooled reports to the control plane over one long-lived `ReportUsage` stream,
//! a few batches in flight, and forgets them once acknowledged. After a broken stream it
//! reconnects (with backoff) and sends everything unacknowledged again.
use std::{collections::VecDeque, sync::Arc, sync::atomic::Ordering, time::Duration};

use prost::Message;
use router_proto::pb;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use super::{
    Shared,
    spool::{Position, Reader},
};
use crate::control::NodeClient;

/// Reports sent in one batch at most.
const BATCH: usize = 500;
/// Batches sent and not yet acknowledged at most.
const WINDOW: usize = 4;
/// Longest wait before reconnecting.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Reports gather this long after the first of them is spooled (and batches leave at most
/// this often while others are in flight): one control-plane transaction, one checkpoint
/// write and one wake-up of this task per batch, not per request, at any request rate.
const LINGER: Duration = Duration::from_millis(20);

/// A batch on the wire: its id, where it ends in the spool, how many records it covers, and
/// (for a batch of one) the record itself, to set aside should it be refused.
struct InFlight {
    batch_id: u64,
    end: Position,
    records: u64,
    single: Option<Vec<u8>>,
}

/// Whether the control plane refused a batch for good: no retry of the same reports can
/// succeed (an invalid report; an old control plane's overflowing sum).
fn refused_for_good(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition | tonic::Code::OutOfRange
    )
}

/// Delivers until `shutdown` turns true, starting after `acked`.
pub(super) async fn deliver(
    mut client: NodeClient,
    node_id: String,
    shared: Arc<Shared>,
    mut acked: Position,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut batch_id = 0u64;
    let mut backoff = Duration::from_millis(100);
    // Set when a batch was refused: up to this position reports go one per batch, so that
    // the invalid ones are found and set aside and the rest are delivered.
    let mut isolate_until: Option<Position> = None;
    loop {
        let mut session = Session {
            client: &mut client,
            node_id: &node_id,
            shared: &shared,
            acked: &mut acked,
            batch_id: &mut batch_id,
            isolate_until: &mut isolate_until,
        };
        let progress_before = *session.acked;
        match session.run(&mut shutdown).await {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(%error, depth = shared.depth.load(Ordering::Relaxed), "usage stream broke; reconnecting")
            }
        }
        if acked != progress_before {
            backoff = Duration::from_millis(100);
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

struct Session<'a> {
    client: &'a mut NodeClient,
    node_id: &'a str,
    shared: &'a Arc<Shared>,
    acked: &'a mut Position,
    batch_id: &'a mut u64,
    isolate_until: &'a mut Option<Position>,
}

impl Session<'_> {
    /// One stream: `Ok` on shutdown, `Err` when it breaks.
    async fn run(&mut self, shutdown: &mut watch::Receiver<bool>) -> anyhow::Result<()> {
        let (batches, outgoing) = mpsc::channel(WINDOW);
        let mut acks = self.client.report_usage(ReceiverStream::new(outgoing)).await?.into_inner();
        let mut reader = Some(Reader::new(self.shared.spool.dir(), *self.acked));
        let mut in_flight = VecDeque::new();
        let mut deleted_before = self.acked.seq;
        let mut last_sent: Option<tokio::time::Instant> = None;
        let mut linger = false;
        loop {
            while in_flight.len() < WINDOW {
                let isolating = self.isolating(reader.as_ref());
                if !isolating && !in_flight.is_empty() && last_sent.is_some_and(|at| at.elapsed() < LINGER) {
                    break;
                }
                let limit = if isolating { 1 } else { BATCH };
                let Some(batch) = self.next_batch(&mut reader, limit).await? else { break };
                let (reports, end, payloads) = batch;
                let records = payloads.len() as u64;
                let single = if records == 1 { payloads.into_iter().next() } else { None };
                *self.batch_id += 1;
                let batch_id = *self.batch_id;
                let batch = pb::UsageBatch { batch_id, node_id: self.node_id.to_owned(), reports };
                batches.send(batch).await.map_err(|_| anyhow::anyhow!("the usage stream closed"))?;
                in_flight.push_back(InFlight { batch_id, end, records, single });
                last_sent = Some(tokio::time::Instant::now());
            }
            tokio::select! {
                ack = acks.message() => {
                    let front = in_flight.pop_front();
                    let front = match ack {
                        Ok(Some(ack)) => {
                            let front = front.filter(|f| f.batch_id == ack.batch_id)
                                .ok_or_else(|| anyhow::anyhow!("acknowledgement of an unexpected batch {}", ack.batch_id))?;
                            if ack.quarantined > 0 {
                                tracing::warn!(batch = ack.batch_id, quarantined = ack.quarantined, "the control plane set invalid usage reports aside");
                                self.shared.metrics.reports_quarantined(u64::from(ack.quarantined));
                            }
                            front
                        }
                        Ok(None) => anyhow::bail!("the control plane closed the usage stream"),
                        Err(status) if refused_for_good(&status) => {
                            let front = front.ok_or_else(|| anyhow::anyhow!("refusal of no batch: {status}"))?;
                            return Err(self.refused(&front, &status, &mut deleted_before));
                        }
                        Err(status) => return Err(status.into()),
                    };
                    self.acknowledge(&front, &mut deleted_before);
                }
                () = self.shared.wake.notified(), if in_flight.len() < WINDOW => linger = true,
                _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
            }
            if std::mem::take(&mut linger) && self.isolate_until.is_none() {
                tokio::time::sleep(LINGER).await;
            }
        }
    }

    /// Whether the next batch is sent alone, to isolate the invalid reports of a refused one.
    fn isolating(&mut self, reader: Option<&Reader>) -> bool {
        let Some(until) = *self.isolate_until else { return false };
        if reader.is_some_and(|r| r.position() < until) {
            return true;
        }
        if *self.acked >= until {
            *self.isolate_until = None;
            tracing::info!("the refused usage batch is sorted out; batching again");
        }
        false
    }

    /// The control plane refused `batch` for good (and ended the stream). A batch of many is
    /// sent again one report at a time; a report refused alone is set aside and skipped.
    fn refused(
        &mut self,
        batch: &InFlight,
        status: &tonic::Status,
        deleted_before: &mut u64,
    ) -> anyhow::Error {
        let Some(payload) = &batch.single else {
            if batch.records > 1 {
                tracing::warn!(
                    batch = batch.batch_id,
                    records = batch.records,
                    reason = status.message(),
                    "usage batch refused; sending its reports one at a time to find the invalid ones"
                );
                *self.isolate_until = Some(batch.end);
                return anyhow::anyhow!("usage batch refused: {}", status.message());
            }
            // No record at all (every one was undecodable and skipped): nothing to isolate.
            self.acknowledge(batch, deleted_before);
            return anyhow::anyhow!("usage batch refused: {}", status.message());
        };
        if let Err(error) = self.shared.spool.set_aside(payload) {
            // Not acknowledged: tried again after the reconnect.
            return anyhow::anyhow!("a refused usage report could not be set aside: {error}");
        }
        let report = pb::UsageReport::decode(payload.as_slice()).unwrap_or_default();
        tracing::error!(
            request_id = %report.request_id,
            key_id = report.key_id,
            reason = status.message(),
            file = %self.shared.spool.dir().join(super::spool::SET_ASIDE).display(),
            "usage report refused by the control plane; set aside"
        );
        self.shared.metrics.report_set_aside();
        self.acknowledge(batch, deleted_before);
        anyhow::anyhow!("usage report refused: {}", status.message())
    }
    fn acknowledge(&mut self, batch: &InFlight, deleted_before: &mut u64) {
        *self.acked = batch.end;
        self.shared.depth.fetch_sub(batch.records, Ordering::Relaxed);
        self.shared.acked.notify_waiters();
        if batch.end.seq > *deleted_before {
            match self.shared.spool.delete_before(batch.end.seq) {
                Ok(()) => *deleted_before = batch.end.seq,
                Err(error) => tracing::warn!(%error, "acknowledged spool segments not deleted"),
            }
        }
        if let Err(error) = self.shared.spool.save_checkpoint(batch.end) {
            tracing::warn!(%error, "spool checkpoint not saved");
        }
    }

    /// Reads the next batch off the disk (not on the runtime's threads).
    async fn next_batch(
        &self,
        slot: &mut Option<Reader>,
        limit: usize,
    ) -> anyhow::Result<Option<(Vec<pb::UsageReport>, Position, Vec<Vec<u8>>)>> {
        let end = self.shared.spool.end();
        let Some(reader) = slot.take() else { anyhow::bail!("the spool reader was lost") };
        let (read, reader) = tokio::task::spawn_blocking(move || {
            let mut reader = reader;
            // Torn tails read as nothing: go on until records or the end.
            loop {
                let start = reader.position();
                match reader.read(limit, end) {
                    Ok(read) if read.is_empty() && reader.position() != start && reader.position() < end => {}
                    read => return (read, reader),
                }
            }
        })
        .await?;
        let position = reader.position();
        *slot = Some(reader);
        let payloads = read?;
        if payloads.is_empty() {
            return Ok(None);
        }
        let reports = payloads
            .iter()
            .filter_map(|payload| {
                pb::UsageReport::decode(payload.as_slice())
                    .map_err(|error| tracing::error!(%error, "undecodable spooled usage report; skipped"))
                    .ok()
            })
            .collect();
        Ok(Some((reports, position, payloads)))
    }
}
