//! Quota leases and usage reports over the plane API of the real control plane: every
//! remainder binds grants, concurrent grants (also through two control planes on one
//! PostgreSQL) never set aside more than remains, and reports are billed exactly once, even
//! when batches are replayed or the control plane is killed mid-batch.
use std::collections::{HashMap, HashSet};

use router_proto::pb::{self, node_service_client::NodeServiceClient};
use router_tests::{Authed, Backend, ControlPlane, TestDb, nanos, node_client, random_name};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

on_both_backends!(
    balance_binds_grants,
    key_limit_binds_grants,
    key_daily_limit_binds_grants,
    account_daily_limit_binds_grants,
    nodes_share_the_room,
    concurrent_grants_never_exceed_the_balance,
    reports_are_billed_exactly_once,
    invalid_reports_are_quarantined_and_the_rest_acked,
    sigkill_mid_batch_loses_and_doubles_nothing,
);

/// One currency unit in nano-units.
const UNIT: i64 = 1_000_000_000;

type Node = NodeServiceClient<Authed>;

async fn plane(cp: &ControlPlane) -> Node {
    node_client(&cp.endpoint, &cp.node_token).await.unwrap()
}

/// Creates a key with routerctl; returns its id.
fn key(cp: &ControlPlane, args: &[&str]) -> i64 {
    let mut all = vec!["key", "create"];
    all.extend_from_slice(args);
    cp.json(&all)["id"].as_i64().unwrap()
}

async fn acquire(
    node: &mut Node,
    node_id: &str,
    key_id: i64,
    lease_id: Option<&str>,
    want: i64,
) -> pb::Lease {
    let request = pb::AcquireLeaseRequest {
        node_id: node_id.into(),
        key_id,
        lease_id: lease_id.map(str::to_owned),
        want_nanos: want,
        min_nanos: 1,
    };
    node.acquire_lease(request).await.unwrap().into_inner()
}

fn reserved(cp: &ControlPlane, account: &str) -> i64 {
    nanos(&cp.json(&["account", "show", account])["reserved"])
}

fn report(request_id: String, key_id: i64, cost: i64, lease_id: Option<&str>) -> pb::UsageReport {
    pb::UsageReport {
        request_id,
        key_id,
        model: "gpt-test".into(),
        channel: "up".into(),
        endpoint: "/v1/chat/completions".into(),
        input_tokens: 100,
        output_tokens: 20,
        cost_nanos: cost,
        status: "ok".into(),
        created_at_unix_micros: now_micros(),
        duration_ms: 12,
        first_byte_ms: 3,
        lease_id: lease_id.map(str::to_owned),
        ..pb::UsageReport::default()
    }
}

fn now_micros() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    i64::try_from(since.as_micros()).unwrap()
}

/// A usage stream: batches go in, acknowledgements come out.
pub(crate) struct UsageStream {
    batches: mpsc::Sender<pb::UsageBatch>,
    acks: tonic::Streaming<pb::UsageAck>,
}

impl UsageStream {
    pub(crate) async fn open(node: &mut Node) -> UsageStream {
        let (batches, receiver) = mpsc::channel(256);
        let acks = node.report_usage(ReceiverStream::new(receiver)).await.unwrap().into_inner();
        UsageStream { batches, acks }
    }

    /// Sends a batch and waits for its acknowledgement.
    pub(crate) async fn send(&mut self, batch: pb::UsageBatch) -> Result<pb::UsageAck, tonic::Status> {
        let id = batch.batch_id;
        self.batches.send(batch).await.unwrap();
        let ack = self.acks.message().await?.expect("an acknowledgement");
        assert_eq!(ack.batch_id, id, "acknowledgements come in order");
        Ok(ack)
    }
}

pub(crate) fn batch(batch_id: u64, node_id: &str, reports: Vec<pb::UsageReport>) -> pb::UsageBatch {
    pb::UsageBatch { batch_id, node_id: node_id.into(), reports }
}

async fn balance_binds_grants(backend: Backend) {
    let db = TestDb::create(backend).await.unwrap();
    let cp = ControlPlane::start(&db).unwrap();
    cp.json(&["account", "add", "ann", "--balance", "1"]);
    let key_id = key(&cp, &["--account", "ann"]);
    let mut node = plane(&cp).await;
    let first = acquire(&mut node, "n1", key_id, None, 6 * UNIT / 10).await;
    assert_eq!(
        (first.granted_nanos, first.held_nanos, first.limited_by.as_str()),
        (6 * UNIT / 10, 6 * UNIT / 10, "")
    );
    assert_eq!(first.key_id, key_id);
    assert!(!first.lease_id.is_empty());
    let refill = acquire(&mut node, "n1", key_id, Some(&first.lease_id), 6 * UNIT / 10).await;
    assert_eq!(refill.lease_id, first.lease_id);
    assert_eq!((refill.granted_nanos, refill.held_nanos), (4 * UNIT / 10, UNIT));
    assert_eq!(refill.limited_by, "balance");
    let other = acquire(&mut node, "n2", key_id, None, 1).await;
    assert_eq!((other.granted_nanos, other.limited_by.as_str()), (0, "balance"));
    assert_eq!(reserved(&cp, "ann"), UNIT);
    assert_eq!(nanos(&cp.json(&["account", "show", "ann"])["balance"]), UNIT, "holding is not spending");
    // Releasing gives the room back, and releasing again is fine.
    let release = pb::ReleaseLeaseRequest { node_id: "n1".into(), lease_id: first.lease_id.clone() };
    node.release_lease(release.clone()).await.unwrap();
    node.release_lease(release).await.unwrap();
    assert_eq!(reserved(&cp, "ann"), 0);
    let after = acquire(&mut node, "n2", key_id, Some(&other.lease_id), 3 * UNIT).await;
    assert_eq!((after.granted_nanos, after.limited_by.as_str()), (UNIT, "balance"));
    // A revoked key gets nothing, and its leases stop holding.
    cp.json(&["key", "revoke", &key_id.to_string()]);
    let revoked = acquire(&mut node, "n2", key_id, Some(&after.lease_id), 1).await;
    assert_eq!((revoked.granted_nanos, revoked.limited_by.as_str()), (0, "revoked"));
    assert_eq!(reserved(&cp, "ann"), 0);
    let bad = pb::AcquireLeaseRequest { node_id: "n1".into(), key_id, want_nanos: -1, ..Default::default() };
    assert_eq!(node.acquire_lease(bad).await.unwrap_err().code(), Code::InvalidArgument);
}

async fn key_limit_binds_grants(backend: Backend) {
    let db = TestDb::create(backend).await.unwrap();
    let cp = ControlPlane::start(&db).unwrap();
    cp.json(&["account", "add", "ben", "--balance", "10"]);
    let key_id = key(&cp, &["--account", "ben", "--limit", "0.5"]);
    let mut node = plane(&cp).await;
    // Spend 0.2 of the key's 0.5; the lease gets the other 0.3 and no more.
    let mut usage = UsageStream::open(&mut node).await;
    usage.send(batch(1, "n1", vec![report(random_name(20), key_id, UNIT / 5, None)])).await.unwrap();
    let lease = acquire(&mut node, "n1", key_id, None, UNIT).await;
    assert_eq!((lease.granted_nanos, lease.limited_by.as_str()), (3 * UNIT / 10, "key_limit"));
    let more = acquire(&mut node, "n2", key_id, None, UNIT).await;
    assert_eq!((more.granted_nanos, more.limited_by.as_str()), (0, "key_limit"));
    // Another key of the account is not bound by this key's limit.
    let free_key = key(&cp, &["--account", "ben"]);
    let free = acquire(&mut node, "n1", free_key, None, UNIT).await;
    assert_eq!((free.granted_nanos, free.limited_by.as_str()), (UNIT, ""));
    // Raising the limit makes room at once (n2 leaves, so n1 need not share what is left).
    let release = pb::ReleaseLeaseRequest { node_id: "n2".into(), lease_id: more.lease_id.clone() };
    node.release_lease(release).await.unwrap();
    cp.json(&["key", "update", &key_id.to_string(), "--limit", "1"]);
    let raised = acquire(&mut node, "n1", key_id, Some(&lease.lease_id), UNIT).await;
    assert_eq!((raised.granted_nanos, raised.held_nanos), (UNIT / 2, 8 * UNIT / 10));
}

async fn key_daily_limit_binds_grants(backend: Backend) {
    let db = TestDb::create(backend).await.unwrap();
    let cp = ControlPlane::start(&db).unwrap();
    cp.json(&["account", "add", "cat", "--balance", "10"]);
    let key_id = key(&cp, &["--account", "cat", "--daily-limit", "0.4"]);
    let mut node = plane(&cp).await;
    let mut usage = UsageStream::open(&mut node).await;
    usage.send(batch(1, "n1", vec![report(random_name(20), key_id, UNIT / 10, None)])).await.unwrap();
    let lease = acquire(&mut node, "n1", key_id, None, UNIT).await;
    assert_eq!((lease.granted_nanos, lease.limited_by.as_str()), (3 * UNIT / 10, "key_daily_limit"));
    let midnight = (now_micros().div_euclid(86_400_000_000) + 1) * 86_400_000_000;
    assert!(lease.expires_at_unix_micros <= midnight, "a lease never spans a day boundary");
    let keys = cp.json(&["key", "list", "--account", "cat"]);
    assert_eq!(nanos(&keys[0]["spent_today"]), UNIT / 10);
    assert_eq!(nanos(&keys[0]["spent"]), UNIT / 10);
}

async fn account_daily_limit_binds_grants(backend: Backend) {
    let db = TestDb::create(backend).await.unwrap();
    let cp = ControlPlane::start(&db).unwrap();
    cp.json(&["account", "add", "dan", "--balance", "10", "--daily-limit", "0.7"]);
    let spender = key(&cp, &["--account", "dan"]);
    let other = key(&cp, &["--account", "dan"]);
    let mut node = plane(&cp).await;
    let mut usage = UsageStream::open(&mut node).await;
    usage.send(batch(1, "n1", vec![report(random_name(20), spender, UNIT / 5, None)])).await.unwrap();
    assert_eq!(nanos(&cp.json(&["account", "show", "dan"])["spent_today"]), UNIT / 5);
    let lease = acquire(&mut node, "n1", other, None, UNIT).await;
    assert_eq!((lease.granted_nanos, lease.limited_by.as_str()), (UNIT / 2, "account_daily_limit"));
    let spender_lease = acquire(&mut node, "n1", spender, None, UNIT).await;
    assert_eq!((spender_lease.granted_nanos, spender_lease.limited_by.as_str()), (0, "account_daily_limit"));
    // Lifting the limit leaves the balance as the only bound.
    cp.json(&["account", "update", "dan", "--daily-limit", "none"]);
    let lifted = acquire(&mut node, "n1", spender, None, 100 * UNIT).await;
    assert_eq!(
        (lifted.granted_nanos, lifted.limited_by.as_str()),
        (10 * UNIT - UNIT / 5 - UNIT / 2, "balance")
    );
}

async fn nodes_share_the_room(backend: Backend) {
    let db = TestDb::create(backend).await.unwrap();
    let cp = ControlPlane::start(&db).unwrap();
    cp.json(&["account", "add", "eve", "--balance", "1"]);
    let keys = [key(&cp, &["--account", "eve"]), key(&cp, &["--account", "eve"])];
    let mut node = plane(&cp).await;
    let nodes = ["n1", "n2", "n3"];
    let mut leases: HashMap<(usize, usize), (String, i64)> = HashMap::new();
    let want = 3 * UNIT / 10;
    let mut first_round = Vec::new();
    // Round-robin refills until nobody gets anything.
    for round in 0..64 {
        let mut any = false;
        for (n, node_id) in nodes.iter().enumerate() {
            let k = n % keys.len();
            let previous = leases.get(&(n, k)).map(|(id, _)| id.clone());
            let lease = acquire(&mut node, node_id, keys[k], previous.as_deref(), want).await;
            assert!(lease.granted_nanos <= want);
            if round == 0 {
                first_round.push(lease.granted_nanos);
            }
            any |= lease.granted_nanos > 0;
            leases.insert((n, k), (lease.lease_id, lease.held_nanos));
            let held: i64 = leases.values().map(|(_, held)| held).sum();
            assert!(held <= UNIT, "leases hold {held}, more than the balance");
        }
        if !any {
            break;
        }
    }
    // Plenty at first; once short, each node got a share instead of one taking it all.
    assert_eq!(first_round[..2], [want, want]);
    assert_eq!(first_round[2], 2 * UNIT / 10, "0.4 left, shared with other nodes: half");
    let held: i64 = leases.values().map(|(_, held)| held).sum();
    assert_eq!(held, UNIT, "the whole balance ends up set aside, and no more");
    assert_eq!(reserved(&cp, "eve"), UNIT);
}

/// Many tasks on several node ids acquire and refill until nothing is left, spread over
/// `endpoints` (several control planes on one database); returns what their leases hold.
async fn grant_storm(endpoints: Vec<(String, String)>, keys: Vec<i64>, tasks: usize) -> i64 {
    let mut handles = Vec::new();
    for task in 0..tasks {
        let (endpoint, token) = endpoints[task % endpoints.len()].clone();
        let key_id = keys[task % keys.len()];
        handles.push(tokio::spawn(async move {
            let mut node = node_client(&endpoint, &token).await.unwrap();
            let node_id = format!("node-{}", task % 4);
            let mut lease_id = None::<String>;
            loop {
                let want = 1_000_000 * (1 + (task as i64 % 7));
                let lease = acquire(&mut node, &node_id, key_id, lease_id.as_deref(), want).await;
                if lease_id.as_deref().is_some_and(|id| id != lease.lease_id) {
                    // A refill opened a new lease: the old one would have expired (it must not).
                    panic!("lease {lease_id:?} was replaced by {}", lease.lease_id);
                }
                lease_id = Some(lease.lease_id);
                if lease.granted_nanos == 0 {
                    assert_eq!(lease.limited_by, "balance");
                    return (lease_id, lease.held_nanos);
                }
            }
        }));
    }
    let mut total = 0;
    let mut ids = HashSet::new();
    for handle in handles {
        let (lease_id, held) = handle.await.unwrap();
        assert!(ids.insert(lease_id), "every task has its own lease");
        total += held;
    }
    total
}

async fn concurrent_grants_never_exceed_the_balance(backend: Backend) {
    let db = TestDb::create(backend).await.unwrap();
    let cp = ControlPlane::start(&db).unwrap();
    cp.json(&["account", "add", "fay", "--balance", "0.3"]);
    let keys = vec![
        key(&cp, &["--account", "fay"]),
        key(&cp, &["--account", "fay"]),
        key(&cp, &["--account", "fay"]),
    ];
    let held = grant_storm(vec![(cp.endpoint.clone(), cp.node_token.clone())], keys, 40).await;
    // Every task stops only when the room is zero, and room is never handed out twice.
    assert_eq!(held, 3 * UNIT / 10);
    assert_eq!(reserved(&cp, "fay"), 3 * UNIT / 10);
}

/// Two control planes on one PostgreSQL database serialize grants through the account's row.
#[tokio::test(flavor = "multi_thread")]
async fn two_control_planes_never_over_grant() {
    let db = TestDb::create(Backend::Postgres).await.unwrap();
    let first = ControlPlane::start(&db).unwrap();
    let second = ControlPlane::start_with(&db.url, &first.admin_token, &first.node_token, &[]).unwrap();
    first.json(&["account", "add", "gus", "--balance", "0.3"]);
    let keys = vec![key(&first, &["--account", "gus"]), key(&second, &["--account", "gus"])];
    let endpoints = vec![
        (first.endpoint.clone(), first.node_token.clone()),
        (second.endpoint.clone(), second.node_token.clone()),
    ];
    let held = grant_storm(endpoints, keys, 36).await;
    assert_eq!(held, 3 * UNIT / 10);
    assert_eq!(reserved(&second, "gus"), 3 * UNIT / 10);
}

/// The account's balance, usage records, ledger and key counters as routerctl shows them.
struct Books {
    balance: i64,
    spent_today: i64,
    reserved: i64,
    records: Vec<Value>,
    debits: Vec<Value>,
    key_spent: i64,
    key_spent_today: i64,
}

fn books(cp: &ControlPlane, account: &str) -> Books {
    let shown = cp.json(&["account", "show", account]);
    let records = cp.json(&["usage", "--account", account, "--limit", "10000"]).as_array().unwrap().clone();
    let ledger = cp.json(&["ledger", "--account", account, "--limit", "10000"]);
    let debits: Vec<Value> =
        ledger.as_array().unwrap().iter().filter(|e| e["kind"] == "usage").cloned().collect();
    let keys = cp.json(&["key", "list", "--account", account]);
    Books {
        balance: nanos(&shown["balance"]),
        spent_today: nanos(&shown["spent_today"]),
        reserved: nanos(&shown["reserved"]),
        records,
        debits,
        key_spent: keys.as_array().unwrap().iter().map(|k| nanos(&k["spent"])).sum(),
        key_spent_today: keys.as_array().unwrap().iter().map(|k| nanos(&k["spent_today"])).sum(),
    }
}

async fn reports_are_billed_exactly_once(backend: Backend) {
    const BATCHES: u64 = 5;
    const PER_BATCH: i64 = 10;
    let db = TestDb::create(backend).await.unwrap();
    let cp = ControlPlane::start(&db).unwrap();
    cp.json(&["account", "add", "hal", "--balance", "5"]);
    let key_id = key(&cp, &["--account", "hal"]);
    let mut node = plane(&cp).await;
    let lease = acquire(&mut node, "n1", key_id, None, 2 * UNIT).await;
    let prefix = random_name(10);
    let batches: Vec<pb::UsageBatch> = (0..BATCHES)
        .map(|b| {
            let reports = (0..PER_BATCH)
                .map(|i| {
                    let n = b as i64 * PER_BATCH + i;
                    report(format!("{prefix}-{n:04}"), key_id, 1_000_000 + n * 1_234, Some(&lease.lease_id))
                })
                .collect();
            batch(b + 1, "n1", reports)
        })
        .collect();
    let count = (BATCHES as i64) * PER_BATCH;
    let cost: i64 = (0..count).map(|n| 1_000_000 + n * 1_234).sum();
    let before = books(&cp, "hal");

    let mut usage = UsageStream::open(&mut node).await;
    for b in &batches {
        let ack = usage.send(b.clone()).await.unwrap();
        assert_eq!((ack.recorded, ack.duplicates), (PER_BATCH as u32, 0));
    }
    let after = books(&cp, "hal");
    assert_eq!(after.records.len() as i64, count, "one usage record per request");
    assert_eq!(after.debits.len() as i64, count, "one ledger debit per request");
    assert_eq!(before.balance - after.balance, cost, "balance change == sum of costs");
    assert_eq!(
        after.debits.iter().map(|d| nanos(&d["amount"])).sum::<i64>(),
        -cost,
        "ledger == sum of costs"
    );
    let recorded: i64 = after.records.iter().map(|r| nanos(&r["cost"])).sum();
    assert_eq!(recorded, cost);
    assert_eq!(after.spent_today - before.spent_today, cost);
    assert_eq!((after.key_spent, after.key_spent_today), (cost, cost));
    assert_eq!(after.reserved, 2 * UNIT - cost, "the lease holds what its requests did not spend");
    let ids: HashSet<&str> = after.debits.iter().filter_map(|d| d["request_id"].as_str()).collect();
    assert_eq!(ids.len() as i64, count, "every request billed once");

    // The same batches again on the same stream, then on a new one: all duplicates.
    for b in &batches {
        let ack = usage.send(b.clone()).await.unwrap();
        assert_eq!((ack.recorded, ack.duplicates), (0, PER_BATCH as u32));
    }
    drop(usage);
    let mut again = UsageStream::open(&mut node).await;
    for b in &batches {
        let ack = again.send(b.clone()).await.unwrap();
        assert_eq!((ack.recorded, ack.duplicates), (0, PER_BATCH as u32));
    }
    let replayed = books(&cp, "hal");
    assert_eq!(replayed.balance, after.balance);
    assert_eq!(replayed.records, after.records);
    assert_eq!(replayed.debits, after.debits);
    assert_eq!(
        (replayed.spent_today, replayed.reserved, replayed.key_spent),
        (after.spent_today, after.reserved, after.key_spent)
    );
    assert_eq!(after.records[0]["channel"], "up");
}

async fn invalid_reports_are_quarantined_and_the_rest_acked(backend: Backend) {
    let db = TestDb::create(backend).await.unwrap();
    let cp = ControlPlane::start(&db).unwrap();
    cp.json(&["account", "add", "ida", "--balance", "5"]);
    cp.json(&["account", "add", "ovo", "--balance", "5"]);
    let key_id = key(&cp, &["--account", "ida"]);
    let big_key = key(&cp, &["--account", "ovo"]);
    let mut node = plane(&cp).await;
    let good = [report(random_name(20), key_id, 1_000, None), report(random_name(20), key_id, 2_000, None)];
    let negative = report(random_name(20), key_id, -5, None);
    let unknown_key = report(random_name(20), key_id + 1_000, 5, None);
    let lie =
        pb::UsageReport { output_tokens: 4_500_000_000_000_000, ..report(random_name(20), key_id, 7, None) };
    // Two reports whose costs sum past i64: the first fits the balance, the second never can.
    let huge = i64::MAX;
    let overflowing =
        [report(random_name(20), big_key, huge, None), report(random_name(20), big_key, huge, None)];
    let reports = vec![
        good[0].clone(),
        negative.clone(),
        overflowing[0].clone(),
        unknown_key.clone(),
        lie.clone(),
        overflowing[1].clone(),
        good[1].clone(),
    ];
    let mut usage = UsageStream::open(&mut node).await;
    let ack = usage.send(batch(1, "n1", reports.clone())).await.unwrap();
    assert_eq!((ack.recorded, ack.duplicates, ack.quarantined), (3, 0, 4), "{ack:?}");
    let recorded: Vec<String> = cp
        .json(&["usage", "--account", "ida"])
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["request_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(recorded.len(), 2);
    assert!(good.iter().all(|g| recorded.contains(&g.request_id)), "{recorded:?}");
    let ida = cp.json(&["account", "show", "ida"]);
    assert_eq!(nanos(&ida["balance"]), 5 * UNIT - 3_000, "the good reports were billed, once");
    let ovo = cp.json(&["account", "show", "ovo"]);
    assert_eq!(nanos(&ovo["balance"]), 5 * UNIT - huge, "the one that fits the balance is billed");
    // The quarantine keeps each refused report, its reason and its fields.
    let quarantined = cp.json(&["usage", "--quarantined"]);
    let quarantined = quarantined.as_array().unwrap();
    assert_eq!(quarantined.len(), 4, "{quarantined:?}");
    let reason = |id: &str| {
        let entry =
            quarantined.iter().find(|q| q["request_id"] == id).unwrap_or_else(|| panic!("{id} quarantined"));
        assert_eq!(entry["node_id"], "n1");
        entry["reason"].as_str().unwrap().to_owned()
    };
    assert!(reason(&negative.request_id).contains("negative"));
    assert!(reason(&unknown_key.request_id).contains("unknown key"));
    assert!(reason(&lie.request_id).contains("more than any request can use"));
    assert!(reason(&overflowing[1].request_id).contains("overflow"));
    let entry = quarantined.iter().find(|q| q["request_id"] == *lie.request_id).unwrap();
    assert_eq!(entry["output_tokens"], 4_500_000_000_000_000_i64, "the raw report is kept");
    let text = String::from_utf8(cp.ctl(&["usage", "--quarantined"]).stdout).unwrap();
    assert!(text.contains(&lie.request_id) && text.contains("REASON"), "{text}");
    // A replay (the acknowledgement lost) doubles nothing, in the records or the quarantine.
    let ack = usage.send(batch(2, "n1", reports)).await.unwrap();
    assert_eq!((ack.recorded, ack.duplicates, ack.quarantined), (0, 3, 4), "{ack:?}");
    assert_eq!(cp.json(&["usage", "--quarantined"]).as_array().unwrap().len(), 4);
    assert_eq!(nanos(&cp.json(&["account", "show", "ida"])["balance"]), 5 * UNIT - 3_000);
    // Only a batch over the size limit is refused whole, and the stream then ends with that
    // error, never with OK and no acknowledgement.
    let oversized: Vec<pb::UsageReport> =
        (0..10_001).map(|i| report(format!("{}-{i}", random_name(8)), key_id, 1, None)).collect();
    let refused = usage.send(batch(3, "n1", oversized)).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
}

async fn sigkill_mid_batch_loses_and_doubles_nothing(backend: Backend) {
    const BATCHES: u64 = 40;
    const PER_BATCH: usize = 200;
    let db = TestDb::create(backend).await.unwrap();
    let cp = ControlPlane::start(&db).unwrap();
    cp.json(&["account", "add", "jon", "--balance", "100"]);
    let keys = [key(&cp, &["--account", "jon"]), key(&cp, &["--account", "jon"])];
    let prefix = random_name(10);
    let batches: Vec<pb::UsageBatch> = (0..BATCHES)
        .map(|b| {
            let reports = (0..PER_BATCH)
                .map(|i| {
                    let n = b as usize * PER_BATCH + i;
                    report(format!("{prefix}-{n:06}"), keys[n % 2], 1_000 + n as i64, None)
                })
                .collect();
            batch(b + 1, "n1", reports)
        })
        .collect();
    let cost: i64 = batches.iter().flat_map(|b| &b.reports).map(|r| r.cost_nanos).sum();
    let total = BATCHES as usize * PER_BATCH;

    // Send everything without waiting; kill the control plane once a few batches are acked.
    let mut node = plane(&cp).await;
    let mut usage = UsageStream::open(&mut node).await;
    for b in &batches {
        usage.batches.send(b.clone()).await.unwrap();
    }
    let mut acked = Vec::new();
    while acked.is_empty() {
        let ack = usage.acks.message().await.unwrap().unwrap();
        acked.push(ack.batch_id);
    }
    let mut cp = cp;
    cp.process.kill();
    // Whatever else was acknowledged before the kill counts as acknowledged too.
    while let Ok(Some(ack)) = usage.acks.message().await {
        acked.push(ack.batch_id);
    }
    drop(usage);
    assert!(
        acked.len() < BATCHES as usize,
        "the kill came mid-load (all {} batches were acked)",
        acked.len()
    );

    let cp = ControlPlane::start_with(&db.url, &cp.admin_token, &cp.node_token, &[]).unwrap();
    let survived = books(&cp, "jon");
    let ids: HashSet<String> =
        survived.records.iter().map(|r| r["request_id"].as_str().unwrap().to_owned()).collect();
    for batch_id in &acked {
        let batch = &batches[*batch_id as usize - 1];
        assert!(batch.reports.iter().all(|r| ids.contains(&r.request_id)), "acked batch {batch_id} was lost");
    }
    assert_eq!(survived.records.len() % PER_BATCH, 0, "a batch is recorded whole or not at all");
    assert_eq!(survived.debits.len(), survived.records.len());

    // The data plane resends everything it holds (acked or not): totals come out exact.
    let mut client = plane(&cp).await;
    let mut usage = UsageStream::open(&mut client).await;
    let mut recorded = 0;
    for b in &batches {
        let ack = usage.send(b.clone()).await.unwrap();
        assert_eq!(ack.recorded + ack.duplicates, PER_BATCH as u32);
        recorded += ack.recorded as usize;
    }
    assert_eq!(recorded + survived.records.len(), total);
    let end = books(&cp, "jon");
    assert_eq!(end.records.len(), total);
    assert_eq!(end.debits.len(), total);
    assert_eq!(100 * UNIT - end.balance, cost);
    assert_eq!(end.debits.iter().map(|d| nanos(&d["amount"])).sum::<i64>(), -cost);
    assert_eq!((end.spent_today, end.key_spent, end.key_spent_today), (cost, cost, cost));
}
