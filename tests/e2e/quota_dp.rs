//! Quota leases and the usage spool through the real data plane: every limit stops spending
//! before the upstream is called, top-ups and redemptions unblock a key at once, and usage is
//! billed exactly once when the data plane (SIGKILL, same spool) or the control plane dies
//! mid-load; two data planes under many clients never overspend.
use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use router_tests::{Backend, Gateway, Stack, eventually, http_client};
use serde_json::{Value, json};

on_both_backends!(
    exactly_once_under_load,
    data_plane_sigkill_replays_its_spool,
    control_plane_sigkill_keeps_totals_exact,
    balance_stops_spending_and_topup_unblocks,
    key_limit_stops_spending,
    key_daily_limit_stops_spending,
    account_daily_limit_stops_spending_and_redeem_helps_balance,
    two_data_planes_never_overspend,
);

/// One currency unit in nano-units.
const UNIT: i64 = 1_000_000_000;

/// A control plane with a priced model (0.1 a token: a request costs about 1.6 and reserves
/// about 6) served by a mock upstream.
async fn start(backend: Backend) -> Stack {
    Gateway::builder(backend).priced("100000").without_data_plane().await
}

async fn chat(dp: &str, key: &str) -> http_client::Answer {
    let body = json!({"model": "gpt-4o-mini", "max_tokens": 16, "messages": [{"role": "user", "content": "Say hello"}]});
    http_client::post_json(
        &format!("{dp}/v1/chat/completions"),
        &[("authorization", &format!("Bearer {key}"))],
        &body,
    )
    .await
    .unwrap()
}

/// Waits until the data plane knows the key (policy propagation) and serves it.
pub(crate) async fn first_ok(dp: &str, key: &str) {
    let served =
        eventually(Duration::from_secs(5), || async { (chat(dp, key).await.status == 200).then_some(()) })
            .await;
    assert!(served.is_some(), "the key was never served");
}

fn assert_refused(answer: &http_client::Answer) {
    assert_eq!(answer.status, 429, "{}", answer.text());
    assert_eq!(answer.json()["error"]["code"], "insufficient_quota", "{}", answer.text());
}

/// Sends requests one at a time until one is refused; returns how many were served.
async fn drain(dp: &str, key: &str) -> usize {
    for served in 0..200 {
        let answer = chat(dp, key).await;
        if answer.status == 429 {
            assert_refused(&answer);
            return served;
        }
        assert_eq!(answer.status, 200, "{}", answer.text());
    }
    panic!("never refused");
}

/// After a refusal, nothing more reaches the upstream.
async fn assert_stays_refused(setup: &Stack, dp: &str, key: &str) {
    let calls = setup.mock.calls();
    for _ in 0..3 {
        assert_refused(&chat(dp, key).await);
    }
    assert_eq!(setup.mock.calls(), calls, "a refused request reached the upstream");
}

/// Within a second of `unblock`, the key is served again.
async fn assert_unblocked_within_a_second(dp: &str, key: &str) {
    let start = Instant::now();
    let served =
        eventually(Duration::from_secs(1), || async { (chat(dp, key).await.status == 200).then_some(()) })
            .await;
    assert!(served.is_some(), "still refused after {:?}", start.elapsed());
}

/// Runs `clients` request loops against `urls` until `stop`; counts answers by status and
/// collects the request ids of the 200s.
/// The request ids of the 200s, and how many answers of each status.
type Outcome = (Vec<String>, HashMap<u16, usize>);

struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<Outcome>>,
}

impl Load {
    fn start(urls: &[String], key: &str, clients: usize, stop_on_error: bool) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let tasks = (0..clients)
            .map(|i| {
                let (url, key, stop, ok) = (urls[i % urls.len()].clone(), key.to_owned(), Arc::clone(&stop), Arc::clone(&ok));
                tokio::spawn(async move {
                    let (mut ids, mut statuses) = (Vec::new(), HashMap::new());
                    let body = json!({"model": "gpt-4o-mini", "max_tokens": 16, "messages": [{"role": "user", "content": "Say hello"}]});
                    while !stop.load(Ordering::Relaxed) {
                        let auth = format!("Bearer {key}");
                        match http_client::post_json(&format!("{url}/v1/chat/completions"), &[("authorization", &auth)], &body).await {
                            Ok(answer) => {
                                *statuses.entry(answer.status).or_insert(0) += 1;
                                if answer.status == 200 {
                                    ids.push(answer.request_id());
                                    ok.fetch_add(1, Ordering::Relaxed);
                                } else if answer.status == 429 && stop_on_error {
                                    break;
                                }
                            }
                            Err(_) if stop_on_error => break,
                            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                        }
                    }
                    (ids, statuses)
                })
            })
            .collect();
        Load { stop, ok, tasks }
    }

    async fn wait_ok(&self, n: usize) {
        let reached = eventually(Duration::from_secs(20), || async {
            (self.ok.load(Ordering::Relaxed) >= n).then_some(())
        })
        .await;
        assert!(reached.is_some(), "only {} requests served", self.ok.load(Ordering::Relaxed));
    }

    async fn finish(self) -> Outcome {
        self.stop.store(true, Ordering::Relaxed);
        let (mut ids, mut statuses) = (Vec::new(), HashMap::new());
        for task in self.tasks {
            let (more, counts) = task.await.unwrap();
            ids.extend(more);
            for (status, n) in counts {
                *statuses.entry(status).or_insert(0) += n;
            }
        }
        (ids, statuses)
    }
}

fn request_ids(records: &[Value]) -> HashMap<String, usize> {
    let mut ids = HashMap::new();
    for record in records {
        *ids.entry(record["request_id"].as_str().unwrap().to_owned()).or_insert(0) += 1;
    }
    ids
}

async fn exactly_once_under_load(backend: Backend) {
    let setup = start(backend).await;
    let key = setup.key("acme", &["--balance", "1000"], &[]);
    let dp = setup.data_plane("spool").await;
    first_ok(&dp.url, &key).await;
    let load = Load::start(std::slice::from_ref(&dp.url), &key, 8, false);
    load.wait_ok(60).await;
    let (ids, statuses) = load.finish().await;
    assert_eq!(statuses.keys().copied().collect::<Vec<_>>(), [200], "{statuses:?}");
    let records = setup.records("acme", ids.len() + 1).await;
    assert_eq!(records.len(), ids.len() + 1);
    assert!(request_ids(&records).values().all(|n| *n == 1));
    assert_eq!(setup.mock.calls(), records.len());
    setup.assert_books("acme", 1000 * UNIT, &records);
}

async fn data_plane_sigkill_replays_its_spool(backend: Backend) {
    let setup = start(backend).await;
    let key = setup.key("acme", &["--balance", "1000"], &[]);
    let mut dp = setup.data_plane("spool").await;
    first_ok(&dp.url, &key).await;
    let load = Load::start(std::slice::from_ref(&dp.url), &key, 8, true);
    load.wait_ok(40).await;
    dp.process.kill();
    let (ids, _) = load.finish().await;
    // Same spool, new process: whatever was spooled and not yet acknowledged is sent now.
    let dp = setup.data_plane("spool").await;
    first_ok(&dp.url, &key).await;
    // The replay is done when the new process has every spooled report acknowledged; records
    // of requests cut off by the kill may otherwise still be on their way.
    let replayed = eventually(Duration::from_secs(20), || async {
        (crate::hostile::metric(&dp.url, "router_spool_depth").await == Some(0)).then_some(())
    })
    .await;
    assert!(replayed.is_some(), "the spool was never drained");
    let served = ids.len() + 2;
    let records = setup.records("acme", served).await;
    let recorded = request_ids(&records);
    assert!(recorded.values().all(|n| *n == 1), "a request billed twice");
    for id in &ids {
        assert!(recorded.contains_key(id), "a served request was never billed: {id}");
    }
    // Requests cut off by the kill after their report was spooled are billed too (at most
    // one per client); nothing else.
    assert!(records.len() <= served + 8, "{} records for {served} served", records.len());
    // A request that reached the upstream but died with the process before its answer was
    // complete is free (at most one per client).
    assert!(
        setup.mock.calls() >= records.len() && setup.mock.calls() <= records.len() + 8,
        "calls {}",
        setup.mock.calls()
    );
    setup.assert_books("acme", 1000 * UNIT, &records);
}

async fn control_plane_sigkill_keeps_totals_exact(backend: Backend) {
    let mut setup = start(backend).await;
    let key = setup.key("acme", &["--balance", "1000"], &[]);
    let dp = setup.data_plane("spool").await;
    first_ok(&dp.url, &key).await;
    let load = Load::start(std::slice::from_ref(&dp.url), &key, 8, false);
    load.wait_ok(30).await;
    setup.cp.restart_after_kill().unwrap();
    let after = load.ok.load(Ordering::Relaxed);
    load.wait_ok(after + 30).await;
    let (ids, statuses) = load.finish().await;
    // Fail-closed while the control plane was away: 429s only, never forwarded.
    assert!(statuses.keys().all(|s| *s == 200 || *s == 429), "{statuses:?}");
    let records = setup.records("acme", ids.len() + 1).await;
    assert_eq!(records.len(), ids.len() + 1);
    assert!(request_ids(&records).values().all(|n| *n == 1));
    assert_eq!(setup.mock.calls(), records.len());
    setup.assert_books("acme", 1000 * UNIT, &records);
}

async fn balance_stops_spending_and_topup_unblocks(backend: Backend) {
    let setup = start(backend).await;
    let key = setup.key("acme", &["--balance", "20"], &[]);
    let dp = setup.data_plane("spool").await;
    first_ok(&dp.url, &key).await;
    let served = drain(&dp.url, &key).await + 1;
    assert_stays_refused(&setup, &dp.url, &key).await;
    let records = setup.records("acme", served).await;
    assert_eq!(setup.mock.calls(), served);
    let billed = setup.assert_books("acme", 20 * UNIT, &records);
    assert!(billed <= 20 * UNIT && billed > 10 * UNIT, "billed {billed}");
    setup.cp.json(&["topup", "--account", "acme", "--amount", "10"]);
    assert_unblocked_within_a_second(&dp.url, &key).await;
}

async fn key_limit_stops_spending(backend: Backend) {
    let setup = start(backend).await;
    let key = setup.key("acme", &["--balance", "1000"], &["--limit", "15"]);
    let dp = setup.data_plane("spool").await;
    first_ok(&dp.url, &key).await;
    let served = drain(&dp.url, &key).await + 1;
    assert_stays_refused(&setup, &dp.url, &key).await;
    let records = setup.records("acme", served).await;
    let billed = setup.assert_books("acme", 1000 * UNIT, &records);
    assert!(billed <= 15 * UNIT && billed > 5 * UNIT, "billed {billed}");
    let id = setup.cp.json(&["key", "list", "--account", "acme"])[0]["id"].as_i64().unwrap().to_string();
    setup.cp.json(&["key", "update", &id, "--limit", "30"]);
    assert_unblocked_within_a_second(&dp.url, &key).await;
}

async fn key_daily_limit_stops_spending(backend: Backend) {
    let setup = start(backend).await;
    let key = setup.key("acme", &["--balance", "1000"], &["--daily-limit", "15"]);
    let dp = setup.data_plane("spool").await;
    first_ok(&dp.url, &key).await;
    let served = drain(&dp.url, &key).await + 1;
    assert_stays_refused(&setup, &dp.url, &key).await;
    let records = setup.records("acme", served).await;
    let billed = setup.assert_books("acme", 1000 * UNIT, &records);
    assert!(billed <= 15 * UNIT && billed > 5 * UNIT, "billed {billed}");
}

async fn account_daily_limit_stops_spending_and_redeem_helps_balance(backend: Backend) {
    let setup = start(backend).await;
    let key = setup.key("acme", &["--balance", "1000", "--daily-limit", "15"], &[]);
    let poor = setup.key("poor", &["--balance", "10"], &[]);
    let dp = setup.data_plane("spool").await;
    first_ok(&dp.url, &key).await;
    let served = drain(&dp.url, &key).await + 1;
    assert_stays_refused(&setup, &dp.url, &key).await;
    let records = setup.records("acme", served).await;
    let billed = setup.assert_books("acme", 1000 * UNIT, &records);
    assert!(billed <= 15 * UNIT && billed > 5 * UNIT, "billed {billed}");
    // A redeemed code unblocks a key refused for its balance.
    first_ok(&dp.url, &poor).await;
    drain(&dp.url, &poor).await;
    let codes = setup.cp.json(&["code", "create", "--amount", "10", "--count", "1"]);
    let code = codes[0]["code"].as_str().unwrap();
    let redeemed = http_client::post_json(
        &format!("{}/api/redeem", dp.url),
        &[("authorization", &format!("Bearer {poor}"))],
        &json!({"code": code}),
    )
    .await
    .unwrap();
    assert_eq!(redeemed.status, 200, "{}", redeemed.text());
    assert_unblocked_within_a_second(&dp.url, &poor).await;
}

async fn two_data_planes_never_overspend(backend: Backend) {
    let setup = start(backend).await;
    let key = setup.key("acme", &["--balance", "100"], &[]);
    let (a, b) = (setup.data_plane("spool-a").await, setup.data_plane("spool-b").await);
    first_ok(&a.url, &key).await;
    first_ok(&b.url, &key).await;
    let load = Load::start(&[a.url.clone(), b.url.clone()], &key, 32, true);
    let (ids, statuses) = load.finish_when_refused().await;
    assert!(statuses.keys().all(|s| *s == 200 || *s == 429), "{statuses:?}");
    let records = setup.records("acme", ids.len() + 2).await;
    assert_eq!(setup.mock.calls(), records.len(), "upstream calls == billed requests");
    let billed = setup.assert_books("acme", 100 * UNIT, &records);
    // Every request here costs less than its reservation: the bound is the balance itself.
    assert!(billed <= 100 * UNIT, "billed {billed} of 100");
    assert!(setup.balance("acme") >= 0);
    assert!(records.len() >= 20, "only {} served of room for ~60", records.len());
}

impl Load {
    /// Waits until every client stopped at its first 429.
    async fn finish_when_refused(self) -> Outcome {
        let (mut ids, mut statuses) = (Vec::new(), HashMap::new());
        for task in self.tasks {
            let (more, counts) = tokio::time::timeout(Duration::from_secs(60), task).await.unwrap().unwrap();
            ids.extend(more);
            for (status, n) in counts {
                *statuses.entry(status).or_insert(0) += n;
            }
        }
        (ids, statuses)
    }
}
