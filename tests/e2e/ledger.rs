//! Balance == sum of the ledger, under concurrent top-ups and racing redemptions.
use router_proto::pb;
use router_tests::{Backend, ControlPlane, TestDb, admin_client, nanos, node_client};
use tonic::Code;

on_both_backends!(balance_is_the_sum_of_the_ledger_under_concurrency);

const TOP_UPS: i64 = 40;
const RACERS: usize = 24;

async fn balance_is_the_sum_of_the_ledger_under_concurrency(backend: Backend) {
    let db = TestDb::create(backend).await.unwrap();
    let cp = ControlPlane::start(&db).unwrap();
    cp.json(&["account", "add", "carol", "--balance", "0.5"]);
    let key_id = cp.json(&["key", "create", "--account", "carol"])["id"].as_i64().unwrap();
    let code = cp.json(&["code", "create", "--amount", "3"])[0]["code"].as_str().unwrap().to_owned();

    // Many concurrent top-ups of distinct amounts: every one must land exactly once.
    let mut top_ups = Vec::new();
    for i in 1..=TOP_UPS {
        let (endpoint, token) = (cp.endpoint.clone(), cp.admin_token.clone());
        top_ups.push(tokio::spawn(async move {
            let mut admin = admin_client(&endpoint, &token).await.unwrap();
            let request = pb::TopUpRequest { account: "carol".into(), amount_nanos: 100_000_000 + i };
            admin.top_up(request).await.map(|_| ())
        }));
    }
    // Meanwhile many tasks race to redeem the same code: exactly one may win.
    let mut racers = Vec::new();
    for _ in 0..RACERS {
        let (endpoint, token, code) = (cp.endpoint.clone(), cp.node_token.clone(), code.clone());
        racers.push(tokio::spawn(async move {
            let mut node = node_client(&endpoint, &token).await.unwrap();
            node.redeem(pb::RedeemRequest { key_id, code }).await.map(|r| r.into_inner().amount_nanos)
        }));
    }
    for top_up in top_ups {
        top_up.await.unwrap().expect("every top-up succeeds");
    }
    let mut winners = 0;
    for racer in racers {
        match racer.await.unwrap() {
            Ok(amount) => {
                assert_eq!(amount, 3_000_000_000);
                winners += 1;
            }
            Err(status) => assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}"),
        }
    }
    assert_eq!(winners, 1, "exactly one redemption of a code wins");

    let expected = 500_000_000 + 3_000_000_000 + (1..=TOP_UPS).map(|i| 100_000_000 + i).sum::<i64>();
    let account = cp.json(&["account", "show", "carol"]);
    assert_eq!(nanos(&account["balance"]), expected);
    let ledger = cp.json(&["ledger", "--account", "carol", "--limit", "1000"]);
    let entries = ledger.as_array().unwrap();
    assert_eq!(entries.len() as i64, 1 + TOP_UPS + 1, "opening balance, top-ups, one redemption");
    assert_eq!(entries.iter().map(|e| nanos(&e["amount"])).sum::<i64>(), expected);
    assert_eq!(nanos(&entries[0]["balance_after"]), expected, "newest entry carries the balance");
    assert_eq!(entries.iter().filter(|e| e["kind"] == "redemption").count(), 1);
    let codes = cp.json(&["code", "list"]);
    assert_eq!(codes[0]["redeemed"], true);
    assert_eq!(codes[0]["redeemed_by"], "carol");
    // A used code stays used.
    let mut node = node_client(&cp.endpoint, &cp.node_token).await.unwrap();
    let again = node.redeem(pb::RedeemRequest { key_id, code }).await.unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    let unknown = node.redeem(pb::RedeemRequest { key_id, code: "no-such-code".into() }).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
}
