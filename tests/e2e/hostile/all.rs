//! Every attack of the hostile-client and lying-upstream tests against one gateway, one after
//! another, then honest traffic (INTERFACE.md, "Hostile clients and lying upstreams"): the
//! gateway still serves, every honest request is billed exactly once, the balance is the
//! ledger's sum, and no log line holds the key.
use std::time::Duration;

use bytes::Bytes;
use router_tests::{
    Backend, Gateway,
    http_client::{self, post_json, post_stream},
    mock::Mode,
};
use tokio::io::AsyncWriteExt;

use super::{
    CLAIMED_OUTPUT, chat, chat_body,
    connections::{connect, read_to_close},
    record,
};

/// An honest request, served and answered whole; its request id.
async fn honest(gw: &Gateway) -> String {
    let (status, id) = chat(&gw.dp.url, &gw.key, false).await;
    assert_eq!(status, 200, "the gateway stopped serving");
    id
}

on_both_backends!(after_every_attack_the_gateway_serves_and_the_books_balance);

async fn after_every_attack_the_gateway_serves_and_the_books_balance(backend: Backend) {
    let gw = Gateway::start(
        backend,
        &["--header-read-timeout", "1", "--body-read-timeout", "1", "--max-event-bytes", "65536"],
    )
    .await;
    let start = gw.balance("acme");
    let url = gw.url("/v1/chat/completions");
    let auth = gw.bearer();
    let mut served = vec![honest(&gw).await];

    // Lying upstreams: usage far beyond the request's cap, whole and streamed.
    gw.mock.set_mode(Mode::ClaimOutputTokens(CLAIMED_OUTPUT));
    let lie = post_json(&url, &[("authorization", &auth)], &chat_body(false)).await.unwrap();
    assert_eq!(lie.status, 200);
    let mut lie_stream = post_stream(&url, &[("authorization", &auth)], &chat_body(true)).await.unwrap();
    lie_stream.rest().await;
    // A 200 that is not the endpoint's answer; a stream event that never ends.
    gw.mock.set_mode(Mode::Raw {
        content_type: "text/html",
        content_encoding: None,
        body: Bytes::from_static(b"<html>Just a moment...</html>"),
    });
    assert_eq!(post_json(&url, &[("authorization", &auth)], &chat_body(false)).await.unwrap().status, 502);
    gw.mock.set_mode(Mode::EndlessEvent { bytes: 1 << 24 });
    let mut endless = post_stream(&url, &[("authorization", &auth)], &chat_body(true)).await.unwrap();
    let cut = tokio::time::timeout(Duration::from_secs(60), endless.rest())
        .await
        .expect("the endless event is cut");
    assert!(cut.contains("exceeded 65536 bytes"), "{}", &cut[cut.len().saturating_sub(300)..]);
    gw.mock.set_mode(Mode::Normal);
    let upstream_calls = gw.mock.calls();

    // Hostile clients: a key in the query alone, invalid UTF-8, a stalled body, a slow head.
    let query = gw.url(&format!("/v1/chat/completions?api_key={}", gw.key));
    assert_eq!(post_json(&query, &[], &chat_body(false)).await.unwrap().status, 401);
    let mut invalid = br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"a"#.to_vec();
    invalid.extend_from_slice(&[0xff, 0xfe]);
    invalid.extend_from_slice(br#""}]}"#);
    let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
    let answer = http_client::send(http::Method::POST, &url, &headers, invalid).await.unwrap();
    assert_eq!(answer.status, 400, "{}", answer.text());
    let mut stalled = connect(&gw.dp).await;
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: {auth}\r\n\
         content-type: application/json\r\ncontent-length: 500\r\n\r\n{{\"model\":"
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    let (answer, _) = read_to_close(&mut stalled, Duration::from_secs(8)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let mut slow = connect(&gw.dp).await;
    slow.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost:").await.unwrap();
    read_to_close(&mut slow, Duration::from_secs(8)).await;
    assert_eq!(gw.mock.calls(), upstream_calls, "a refused request reached the upstream");

    // Honest traffic afterwards: served, each billed once, the books balance.
    for _ in 0..3 {
        served.push(honest(&gw).await);
    }
    // Served: 4 honest, 2 lies, the odd 200 (free), the cut stream.
    let records = gw.records("acme", 8).await;
    for id in &served {
        let count = records.iter().filter(|r| r["request_id"] == id.as_str()).count();
        assert_eq!(count, 1, "honest request {id} recorded {count} times");
        let honest = record(&records, id);
        assert_eq!(honest["status"], "ok", "{honest}");
        assert_eq!(honest["usage_adjusted"], false, "{honest}");
    }
    // Both lies, and the cut stream's local count, are billed within the request's cap.
    let lies = records.iter().filter(|r| r["status"] == "ok" && r["usage_adjusted"] == true).count();
    assert_eq!(lies, 2, "both lies adjusted: {records:?}");
    assert!(records.iter().all(|r| r["output_tokens"].as_i64() <= Some(10)), "{records:?}");
    gw.assert_books("acme", start, &records);
    assert!(gw.balance("acme") > 0, "the attacks drained the account");
    for log in [gw.dp.process.log(), gw.cp.process.log()] {
        assert!(!log.contains(&gw.key), "a log line holds the API key");
    }
}
