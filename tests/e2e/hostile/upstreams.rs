//! Lying and broken upstreams, and bodies that would hold memory (INTERFACE.md, "Hostile
//! clients and lying upstreams"): a 200 that is not the endpoint's answer is a free upstream
//! error, a stream event that never ends is cut at `--max-event-bytes` and billed for what was
//! produced, a long usage-less stream is counted whole, a body the JSON parser cannot read is
//! never billed beyond the input estimate, and request bodies beyond
//! `--max-inflight-body-bytes` are refused at once with 503 `overloaded`.
use std::time::Duration;

use bytes::Bytes;
use router_tests::{
    Backend, Gateway, eventually,
    http_client::{get, post_json, post_stream},
    mock::Mode,
};
use serde_json::json;
use tokio::{io::AsyncWriteExt, net::TcpStream};

fn chat(stream: bool) -> serde_json::Value {
    json!({"model": "gpt-4o-mini", "max_tokens": 50, "stream": stream,
        "messages": [{"role": "user", "content": "hi"}]})
}

async fn balance(gw: &Gateway) -> String {
    gw.cp.json(&["account", "show", "acme", "--json"])["balance"].as_str().unwrap().to_owned()
}

on_both_backends!(odd_200_answers_are_free_upstream_errors);

async fn odd_200_answers_are_free_upstream_errors(backend: Backend) {
    let gw = Gateway::start(backend, &[]).await;
    let auth = gw.bearer();
    let before = balance(&gw).await;
    let sse = "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n";
    for (stream, content_type, content_encoding, body) in [
        (
            false,
            "text/html; charset=utf-8",
            None,
            Bytes::from_static(b"<html><body>Just a moment...</body></html>"),
        ),
        (true, "text/html", None, Bytes::from_static(b"<html>blocked</html>")),
        (false, "text/event-stream", None, Bytes::from(sse)),
        (false, "application/json", Some("gzip"), Bytes::from_static(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3])),
        (false, "application/json", None, Bytes::from_static(b"<!doctype html><p>not json</p>")),
    ] {
        gw.mock.set_mode(Mode::Raw { content_type, content_encoding, body });
        let answer = post_json(&gw.url("/v1/chat/completions"), &[("authorization", &auth)], &chat(stream))
            .await
            .unwrap();
        assert_eq!(answer.status, 502, "{content_type} {content_encoding:?}: {}", answer.text());
        assert_eq!(answer.json()["error"]["code"], "upstream_error", "{content_type}");
    }
    // The gateway asked for what it can read.
    for seen in gw.mock.seen() {
        assert_eq!(seen.headers.get("accept-encoding").unwrap(), "identity");
    }
    // Every one was free: no record billed anything, the balance is whole.
    let records = gw.usage(5).await;
    assert!(records.iter().all(|r| r["status"] == "upstream_error" && r["cost"] == "0"), "{records:?}");
    assert_eq!(balance(&gw).await, before);
    // And the gateway still serves honest answers.
    gw.mock.set_mode(Mode::Normal);
    let answer =
        post_json(&gw.url("/v1/chat/completions"), &[("authorization", &auth)], &chat(false)).await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
}

on_both_backends!(an_event_that_never_ends_is_cut_and_billed);

async fn an_event_that_never_ends_is_cut_and_billed(backend: Backend) {
    let gw = Gateway::start(backend, &["--max-event-bytes", "1048576"]).await;
    // Far more than the limit: without the cut the gateway would buffer all of it.
    gw.mock.set_mode(Mode::EndlessEvent { bytes: 1 << 30 });
    let mut stream =
        post_stream(&gw.url("/v1/chat/completions"), &[("authorization", &gw.bearer())], &chat(true))
            .await
            .unwrap();
    assert_eq!(stream.status, 200);
    let text = tokio::time::timeout(Duration::from_secs(60), stream.rest()).await.expect("the stream is cut");
    assert!(text.contains("tok0"), "the event before the endless one reached the client: {text}");
    assert!(
        text.contains("exceeded 1048576 bytes"),
        "the client is told why: {}",
        &text[text.len().saturating_sub(300)..]
    );
    assert!(!text.contains("xxxxxxxx"), "the partial event was not passed on");
    let record = &gw.usage(1).await[0];
    assert_eq!(record["status"], "incomplete", "{record}");
    assert!(record["input_tokens"].as_i64().unwrap() > 0, "the work done is billed: {record}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_stream_without_usage_is_counted_whole() {
    let gw = Gateway::start(Backend::Sqlite, &[]).await;
    // 2,500 events of ~2 KiB of text (" word" is one token): ~5 MiB, beyond the 4 MiB kept.
    let (events, padding) = (2_500, 2_000);
    gw.mock.set_mode(Mode::LongNoUsage { events, padding });
    let mut body = chat(true);
    body["max_tokens"] = json!(4_000_000);
    let mut stream = post_stream(&gw.url("/v1/chat/completions"), &[("authorization", &gw.bearer())], &body)
        .await
        .unwrap();
    stream.rest().await;
    let record = &gw.usage(1).await[0];
    let expected = (events * padding / 5) as f64;
    let output = record["output_tokens"].as_i64().unwrap() as f64;
    // Counting only what was kept would give about four fifths.
    assert!(
        (output - expected).abs() < expected * 0.05,
        "{output} output tokens billed, about {expected} produced"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_the_parser_cannot_read_is_billed_within_the_estimate() {
    let gw = Gateway::start(Backend::Sqlite, &[]).await;
    gw.mock.set_mode(Mode::NoUsage);
    // A member nested far deeper than any JSON parser follows.
    let depth = 500_000;
    let body = format!(
        r#"{{"model":"gpt-4o-mini","max_tokens":5,"messages":[{{"role":"user","content":"hi"}}],"x":{}{}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let answer = router_tests::http_client::send(
        http::Method::POST,
        &gw.url("/v1/chat/completions"),
        &[("authorization", &gw.bearer()), ("content-type", "application/json")],
        body.clone().into_bytes(),
    )
    .await
    .unwrap();
    if answer.status == 200 {
        let record = &gw.usage(1).await[0];
        let input = record["input_tokens"].as_i64().unwrap();
        assert!(input as usize <= body.len().div_ceil(2), "{input} input tokens for {} bytes", body.len());
    } else {
        assert_eq!(answer.status, 400, "{}", answer.text());
        assert_eq!(gw.mock.calls(), 0);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_beyond_the_inflight_budget_are_refused_at_once() {
    let gw = Gateway::start(Backend::Sqlite, &["--max-inflight-body-bytes", "1048576"]).await;
    let address = gw.dp.url.trim_start_matches("http://").to_owned();
    // A client that declares 900 KB and sends a little of it, then stalls.
    let mut stalled = TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: 900000\r\n\r\n{{\"model\":",
        gw.key
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    let large = json!({"model": "gpt-4o-mini", "max_tokens": 5,
        "messages": [{"role": "user", "content": "a ".repeat(250_000)}]});
    // The stalled body holds its share: a large one does not fit and is refused at once.
    let refused = eventually(Duration::from_secs(10), || async {
        let answer = post_json(&gw.url("/v1/chat/completions"), &[("authorization", &gw.bearer())], &large)
            .await
            .unwrap();
        (answer.status == 503).then_some(answer)
    })
    .await
    .expect("a large body beyond the budget is refused");
    assert_eq!(refused.json()["error"]["code"], "overloaded");
    assert_eq!(refused.headers.get("retry-after").unwrap(), "1");
    // Small requests still pass.
    let small = post_json(&gw.url("/v1/chat/completions"), &[("authorization", &gw.bearer())], &chat(false))
        .await
        .unwrap();
    assert_eq!(small.status, 200, "{}", small.text());
    assert!(get(&gw.url("/healthz"), &[]).await.unwrap().status == 200);
    // The stalled client goes: its share comes back, and the large body is served.
    drop(stalled);
    let served = eventually(Duration::from_secs(10), || async {
        let answer = post_json(&gw.url("/v1/chat/completions"), &[("authorization", &gw.bearer())], &large)
            .await
            .unwrap();
        (answer.status == 200).then_some(())
    })
    .await;
    assert!(served.is_some(), "the budget share of a closed connection was not returned");
    assert_eq!(gw.mock.calls(), 2, "refused requests never went upstream");
}
