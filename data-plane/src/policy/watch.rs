//! Follows the control plane's policy stream: a snapshot, then deltas, each published
//! atomically. While the control plane is away the last policy keeps serving (fail-static) and
//! the stream is reopened with capped backoff, resuming from the version held.
use std::{sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use router_proto::pb::{self, policy_event::Event};
use tokio::sync::watch;

use super::{Policy, SnapshotBuilder};
use crate::control::NodeClient;

/// First wait before reopening a broken stream.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest wait: service resumes quickly once the control plane is back.
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// The current policy, shared by every request.
pub type SharedPolicy = Arc<ArcSwap<Policy>>;

/// Follows the policy stream until `shutdown` turns true. `loaded` receives each version
/// published (readiness waits for the first).
pub async fn follow(
    mut client: NodeClient,
    node_id: String,
    policy: SharedPolicy,
    loaded: watch::Sender<u64>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = BACKOFF_START;
    loop {
        let since = policy.load().version;
        tokio::select! {
            result = stream_once(&mut client, &node_id, &policy, &loaded, since) => {
                match result {
                    Ok(()) => tracing::warn!("policy stream ended; reopening"),
                    Err(error) => tracing::warn!(%error, "policy stream failed; serving the last policy"),
                }
            }
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        if policy.load().version != since {
            backoff = BACKOFF_START;
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

async fn stream_once(
    client: &mut NodeClient,
    node_id: &str,
    policy: &SharedPolicy,
    loaded: &watch::Sender<u64>,
    since: u64,
) -> Result<(), tonic::Status> {
    let request = pb::WatchPolicyRequest { node_id: node_id.to_owned(), since_version: since };
    let mut events = client.watch_policy(request).await?.into_inner();
    let mut snapshot: Option<SnapshotBuilder> = None;
    while let Some(event) = events.message().await? {
        match event.event {
            Some(Event::Snapshot(page)) => {
                if page.first {
                    snapshot = Some(SnapshotBuilder::default());
                }
                let last = page.last;
                snapshot.get_or_insert_with(SnapshotBuilder::default).add(page);
                if last && let Some(builder) = snapshot.take() {
                    let started = std::time::Instant::now();
                    let next = builder.finish();
                    tracing::info!(version = next.version, keys = next.key_count(), took = ?started.elapsed(), "policy snapshot applied");
                    publish(policy, loaded, next);
                }
            }
            Some(Event::Delta(delta)) => {
                let next = policy.load().apply(&delta);
                tracing::debug!(version = next.version, "policy delta applied");
                publish(policy, loaded, next);
            }
            None => {}
        }
    }
    Ok(())
}

fn publish(policy: &SharedPolicy, loaded: &watch::Sender<u64>, next: Policy) {
    let version = next.version;
    policy.store(Arc::new(next));
    loaded.send_replace(version);
}
