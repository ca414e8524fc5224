//! Lying upstreams (INTERFACE.md, "Hostile clients and lying upstreams"): usage an upstream
//! reports beyond what the request allowed is not believed, one lying answer never bills more
//! than the request could have cost, and it never stops the reports behind it. Hostile clients:
//! [`connections`] (timeouts, the connection cap, descriptor exhaustion) and [`requests`]
//! (credentials in the query, invalid UTF-8, echoed fields), [`guessing`] (failed-auth back-off) and
//! [`grpc`] (malformed protobuf).
mod all;
mod connections;
mod grpc;
mod guessing;
mod requests;
mod upstreams;

use std::time::Duration;

use router_tests::{Backend, Gateway, Stack, eventually, http_client, mock::Mode};
use serde_json::{Value, json};

use crate::quota_dp::first_ok;

on_both_backends!(a_lying_upstream_is_billed_within_the_request_bounds);

/// What the lying upstream claims: two such answers' costs overflow an i64 sum.
const CLAIMED_OUTPUT: u64 = 4_500_000_000_000_000;
/// Nano-units per token at the model's price of 1.5 per 1M tokens.
const PER_TOKEN: i64 = 1_500;

/// A small chat request capped at 10 output tokens.
fn chat_body(stream: bool) -> Value {
    json!({"model": "gpt-4o-mini", "max_tokens": 10, "stream": stream,
        "messages": [{"role": "user", "content": "Say hello"}]})
}

async fn chat(dp: &str, key: &str, stream: bool) -> (u16, String) {
    let body = chat_body(stream);
    let url = format!("{dp}/v1/chat/completions");
    let auth = format!("Bearer {key}");
    if stream {
        let mut answer = http_client::post_stream(&url, &[("authorization", &auth)], &body).await.unwrap();
        let id =
            answer.headers.get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let text = answer.rest().await;
        assert!(answer.status != 200 || text.contains("[DONE]"), "{text}");
        return (answer.status, id);
    }
    let answer = http_client::post_json(&url, &[("authorization", &auth)], &body).await.unwrap();
    assert!(answer.status == 200 || answer.status == 429, "{}", answer.text());
    (answer.status, answer.request_id())
}

/// A lying answer (streamed or not), then an honest one; both must be served.
async fn lie_then_honest(setup: &Stack, dp: &str, key: &str, stream: bool) -> (String, String) {
    setup.mock.set_mode(Mode::ClaimOutputTokens(CLAIMED_OUTPUT));
    let (status, lie) = chat(dp, key, stream).await;
    assert_eq!(status, 200, "the lying answer itself reaches the client");
    setup.mock.set_mode(Mode::Normal);
    let (status, honest) = chat(dp, key, false).await;
    assert_eq!(status, 200, "a lie drained the key's lease: an honest request was refused");
    (lie, honest)
}

fn record<'a>(records: &'a [Value], id: &str) -> &'a Value {
    records.iter().find(|r| r["request_id"] == id).unwrap_or_else(|| panic!("no record of {id}: {records:?}"))
}

pub(crate) async fn metric(dp: &str, name: &str) -> Option<u64> {
    let text = http_client::get(&format!("{dp}/metrics"), &[]).await.ok()?.text();
    text.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

async fn a_lying_upstream_is_billed_within_the_request_bounds(backend: Backend) {
    let setup = Gateway::builder(backend).priced("1.5").without_data_plane().await;
    let start = 10 * 1_000_000_000;
    let key = setup.key("acme", &["--balance", "10"], &[]);
    let mut dp = setup.data_plane("spool").await;
    first_ok(&dp.url, &key).await;
    let (lie_json, honest_1) = lie_then_honest(&setup, &dp.url, &key, false).await;
    let (lie_stream, honest_2) = lie_then_honest(&setup, &dp.url, &key, true).await;
    let records = setup.records("acme", 5).await;
    assert_eq!(records.len(), 5, "every request billed once, the lies included");
    for id in [&honest_1, &honest_2] {
        let honest = record(&records, id);
        // 8 uncached + 3 cached prompt tokens and 5 output tokens, as the mock reports.
        assert_eq!(router_tests::nanos(&honest["cost"]), 16 * PER_TOKEN, "{honest}");
        assert_eq!(honest["usage_adjusted"], false);
    }
    for id in [&lie_json, &lie_stream] {
        let lie = record(&records, id);
        assert_eq!(lie["usage_adjusted"], true, "{lie}");
        assert!(lie["output_tokens"].as_i64().unwrap() <= 10, "billed beyond max_tokens: {lie}");
        // The prompt as reported (it was believable) and at most max_tokens of output.
        assert!(router_tests::nanos(&lie["cost"]) <= (11 + 10) * PER_TOKEN, "{lie}");
    }
    assert_eq!(metric(&dp.url, r#"router_usage_adjusted_total{channel="main"}"#).await, Some(2));
    // Reports keep flowing across a restart of the data plane (same spool).
    dp.process.kill();
    let dp = setup.data_plane("spool").await;
    first_ok(&dp.url, &key).await;
    let (lie, honest) = lie_then_honest(&setup, &dp.url, &key, false).await;
    let records = setup.records("acme", 8).await;
    assert_eq!(records.len(), 8);
    assert_eq!(record(&records, &lie)["usage_adjusted"], true);
    assert_eq!(router_tests::nanos(&record(&records, &honest)["cost"]), 16 * PER_TOKEN);
    let billed = setup.assert_books("acme", start, &records);
    assert!(billed < 8 * 21 * PER_TOKEN, "{billed}");
    assert!(
        eventually(Duration::from_secs(5), || async {
            (metric(&dp.url, "router_spool_depth").await == Some(0)).then_some(())
        })
        .await
        .is_some(),
        "reports left undelivered"
    );
    assert!(cp_quarantine_is_empty(&setup), "nothing needed quarantining");
}

fn cp_quarantine_is_empty(setup: &Stack) -> bool {
    setup.cp.json(&["usage", "--quarantined"]).as_array().is_some_and(Vec::is_empty)
}
