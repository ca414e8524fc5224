//! Tells policy watchers that the policy version moved.
//!
//! Changes made through this replica poke the feed at once; changes made through another
//! replica on the same PostgreSQL are noticed by polling the one-row version table, a query
//! cheap enough to run several times a second.
use std::{sync::Arc, time::Duration};

use tokio::sync::{Notify, watch};

use crate::{db::Db, store::policy};

/// How often the version is re-read when nothing pokes the feed.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// A handle on the policy version as last read from the database; cheap to clone.
#[derive(Clone)]
pub struct PolicyFeed {
    version: watch::Receiver<i64>,
    poke: Arc<Notify>,
    _task: Arc<CancelOnDrop>,
}

impl PolicyFeed {
    /// Starts following the policy version of `db`.
    pub async fn start(db: Db) -> anyhow::Result<PolicyFeed> {
        let initial = policy::current_version(&db).await?;
        let (sender, version) = watch::channel(initial);
        let poke = Arc::new(Notify::new());
        let task = tokio::spawn(follow(db, sender, Arc::clone(&poke)));
        Ok(PolicyFeed { version, poke, _task: Arc::new(CancelOnDrop(task)) })
    }

    /// Asks for the version to be re-read now (after a change made here).
    pub fn poke(&self) {
        self.poke.notify_one();
    }

    /// A receiver that wakes whenever the version moves.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.version.clone()
    }
}

async fn follow(db: Db, sender: watch::Sender<i64>, poke: Arc<Notify>) {
    loop {
        tokio::select! {
            () = poke.notified() => {}
            () = tokio::time::sleep(POLL_INTERVAL) => {}
        }
        match policy::current_version(&db).await {
            Ok(version) => {
                sender.send_if_modified(|current| {
                    let moved = version != *current;
                    *current = version;
                    moved
                });
            }
            Err(error) => tracing::warn!(%error, "cannot read the policy version"),
        }
    }
}

/// Aborts the following task when the last feed handle goes away.
struct CancelOnDrop(tokio::task::JoinHandle<()>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
