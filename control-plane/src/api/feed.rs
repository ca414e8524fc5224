//! Tells policy watchers that the policy version moved.
//!
//! Changes made through this replica poke the feed at once. Changes made through another
//! replica on the same PostgreSQL arrive as a notification: every bump of the one-row version
//! table notifies [`CHANNEL`] (a trigger, see the `policy_notify` migration), and each replica
//! keeps one connection listening on it. The version is also re-read every `poll` interval,
//! which is what still works while that connection is down (and all SQLite needs: one replica).
use std::{sync::Arc, time::Duration};

use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures::StreamExt;
use tokio::sync::{Notify, watch};

use crate::{db::Db, store::policy};

/// The PostgreSQL notification channel a policy change is announced on.
pub const CHANNEL: &str = "router_policy";

/// The listening connection's `application_name` (how operators find it in `pg_stat_activity`).
pub const LISTENER_NAME: &str = "router-policy-listener";

/// The default of how often the version is re-read when nothing pokes the feed.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(200);

/// How long the listening connection may stay silent before it is checked with a query (a
/// connection whose server vanished without closing it yields no error by itself).
const LISTEN_CHECK_INTERVAL: Duration = Duration::from_secs(15);

/// How long to wait before connecting again after the listening connection failed.
const LISTEN_RETRY: Duration = Duration::from_secs(1);

/// A handle on the policy version as last read from the database; cheap to clone.
#[derive(Clone)]
pub struct PolicyFeed {
    version: watch::Receiver<i64>,
    poke: Arc<Notify>,
    _tasks: Arc<[CancelOnDrop; 2]>,
}

impl PolicyFeed {
    /// Starts following the policy version of `db`, re-reading it at least every `poll`.
    pub async fn start(db: Db, poll: Duration) -> anyhow::Result<PolicyFeed> {
        let initial = policy::current_version(&db).await?;
        let (sender, version) = watch::channel(initial);
        let poke = Arc::new(Notify::new());
        let listen = tokio::spawn(listen(db.clone(), Arc::clone(&poke)));
        let follow = tokio::spawn(follow(db, sender, Arc::clone(&poke), poll));
        Ok(PolicyFeed { version, poke, _tasks: Arc::new([CancelOnDrop(follow), CancelOnDrop(listen)]) })
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

async fn follow(db: Db, sender: watch::Sender<i64>, poke: Arc<Notify>, poll: Duration) {
    loop {
        tokio::select! {
            () = poke.notified() => {}
            () = tokio::time::sleep(poll) => {}
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

/// PostgreSQL: pokes the feed whenever another replica (or this one) changes the policy, for as
/// long as the feed lives, connecting again after a failure. Returns at once on SQLite.
async fn listen(db: Db, poke: Arc<Notify>) {
    let mut failed = false;
    loop {
        let Some(connected) = db.dedicated_postgres(LISTENER_NAME).await else { return };
        let error = match connected {
            Ok(mut conn) => match relay(&mut conn, &poke, &mut failed).await {
                Ok(()) => anyhow::anyhow!("the connection closed"),
                Err(error) => error.into(),
            },
            Err(error) => error,
        };
        if !failed {
            tracing::warn!(%error, "policy notifications are down; changes made through other replicas arrive by polling");
            failed = true;
        }
        tokio::time::sleep(LISTEN_RETRY).await;
    }
}

/// Listens on `conn` and pokes the feed for each notification, until the connection fails.
async fn relay(conn: &mut AsyncPgConnection, poke: &Notify, failed: &mut bool) -> diesel::QueryResult<()> {
    diesel::sql_query(format!("LISTEN {CHANNEL}")).execute(conn).await?;
    if std::mem::take(failed) {
        tracing::info!("policy notifications are back");
    }
    // Whatever changed while nobody listened.
    poke.notify_one();
    loop {
        {
            let notifications = conn.notifications_stream();
            let mut notifications = std::pin::pin!(notifications);
            loop {
                tokio::select! {
                    next = notifications.next() => match next {
                        Some(Ok(_)) => poke.notify_one(),
                        Some(Err(error)) => return Err(error),
                        None => return Ok(()),
                    },
                    () = tokio::time::sleep(LISTEN_CHECK_INTERVAL) => break,
                }
            }
        }
        // Quiet for a while: make sure the server is still there.
        diesel::sql_query("SELECT 1").execute(conn).await?;
    }
}

/// Aborts a task when the last feed handle goes away.
struct CancelOnDrop(tokio::task::JoinHandle<()>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
