//! Protocol conversion in the request path, over raw HTTP against the mock upstream (the
//! SDKs' view is in `conversion.rs`): each direction whole and streamed, upstream errors in the
//! client's shape, inexpressible fields refused before anything goes upstream, failover from a
//! native to a converted channel, `count_tokens` answered locally — each billed exactly from
//! the upstream's own usage.
use std::{sync::Arc, time::Duration};

use router_tests::{
    Backend, Gateway, eventually,
    http_client::{Answer, post_json, post_stream},
    mock::{MockUpstream, Mode},
};
use serde_json::{Value, json};
use tokio::sync::Notify;

on_both_backends!(
    each_direction_converts_whole_and_streamed_and_bills_exactly,
    upstream_errors_and_refusals_keep_the_clients_shape
);

/// The gateway of the proxy tests plus `chatonly`, a channel speaking only Chat, serving
/// `gpt-4o` (so Responses clients are converted).
async fn gateway(backend: Backend) -> Gateway {
    let gw = Gateway::start(backend, &[]).await;
    gw.add_chat_only_channel();
    gw
}

fn messages(model: &str, stream: bool) -> Value {
    json!({"model": model, "max_tokens": 64, "stream": stream, "system": "Be brief.",
        "messages": [{"role": "user", "content": "Say hello"}]})
}

fn chat(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "Say hello"}]})
}

fn responses(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "instructions": "Be brief.", "input": "Say hello"})
}

/// Posts until the data plane has the test's channels (the policy arrives within a second).
async fn post(gw: &Gateway, path: &str, body: &Value) -> Answer {
    let auth = gw.bearer();
    eventually(Duration::from_secs(5), || async {
        let answer = post_json(&gw.url(path), &[("authorization", &auth)], body).await.ok()?;
        (answer.status != 503 && answer.status != 404).then_some(answer)
    })
    .await
    .expect("an answer")
}

async fn stream(gw: &Gateway, path: &str, body: &Value) -> String {
    let mut stream = post_stream(&gw.url(path), &[("authorization", &gw.bearer())], body).await.unwrap();
    assert_eq!(stream.status, 200);
    assert!(stream.headers["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    stream.rest().await
}

/// The `data:` payloads of the events named `name`.
fn events(text: &str, name: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter(|e| e.lines().any(|l| l == format!("event: {name}")))
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

fn record<'a>(records: &'a [Value], request_id: &str) -> &'a Value {
    records.iter().find(|r| r["request_id"] == request_id).unwrap_or_else(|| panic!("no record {request_id}"))
}

/// The channel named by `answer`'s usage record (`None`: not a success).
async fn channel_of(gw: &Gateway, answer: Answer) -> Option<Value> {
    if answer.status != 200 {
        return None;
    }
    let id = answer.request_id();
    eventually(Duration::from_secs(5), || async {
        let records = gw.cp.json(&["usage", "--limit", "20"]);
        records.as_array()?.iter().find(|r| r["request_id"] == id).map(|r| r["channel"].clone())
    })
    .await
}

/// What a record billed: tokens (input, cached, written, output), cost and status.
fn billed(record: &Value) -> Value {
    let fields =
        ["input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens", "cost", "status"];
    fields.iter().map(|f| record[f].clone()).collect()
}

const TEXT: &str = "tok0 tok1 tok2 tok3 tok4 ";

async fn each_direction_converts_whole_and_streamed_and_bills_exactly(backend: Backend) {
    let gw = gateway(backend).await;

    // Messages → Chat: Claude Code on the `openai` channel (gpt-4o-mini has no Messages channel).
    let answer = post(&gw, "/v1/messages", &messages("gpt-4o-mini", false)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let body = answer.json();
    assert_eq!((body["type"].as_str(), body["role"].as_str()), (Some("message"), Some("assistant")));
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(body["content"], json!([{"type": "text", "text": TEXT}]));
    assert_eq!(body["stop_reason"], "end_turn");
    // Chat's 11 prompt tokens of which 3 cached: Messages counts the uncached ones as input.
    assert_eq!(
        (body["usage"]["input_tokens"].as_i64(), body["usage"]["cache_read_input_tokens"].as_i64()),
        (Some(8), Some(3))
    );
    assert_eq!(body["usage"]["output_tokens"], 5);
    let upstream = gw.mock.seen().pop().unwrap();
    assert!(upstream.uri.ends_with("/v1/chat/completions"), "{}", upstream.uri);
    assert_eq!(upstream.body["messages"][0], json!({"role": "system", "content": "Be brief."}));
    assert_eq!(upstream.headers["authorization"], "Bearer upstream-openai-secret");
    let messages_whole = answer.request_id();

    let text = stream(&gw, "/v1/messages?beta=true", &messages("gpt-4o-mini", true)).await;
    assert!(text.starts_with("event: message_start\n"), "{text}");
    let deltas: String = events(&text, "content_block_delta")
        .iter()
        .map(|e| e["delta"]["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(deltas, TEXT);
    let delta = &events(&text, "message_delta")[0];
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(
        (delta["usage"]["input_tokens"].as_i64(), delta["usage"]["output_tokens"].as_i64()),
        (Some(8), Some(5))
    );
    assert!(text.trim_end().ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}"), "{text}");
    let upstream = gw.mock.seen().pop().unwrap();
    assert_eq!(upstream.uri, "/v1/chat/completions", "the client's query stays with its protocol");
    assert_eq!(upstream.body["stream_options"]["include_usage"], true);

    // Chat → Messages: an openai-SDK client on the `anthropic` channel.
    let answer = post(&gw, "/v1/chat/completions", &chat("claude-sonnet-4", false)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let body = answer.json();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["content"], TEXT);
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    // 17 uncached + 5 cache reads + 2 cache writes: every prompt token in prompt_tokens.
    assert_eq!(body["usage"]["prompt_tokens"], 24);
    assert_eq!(body["usage"]["prompt_tokens_details"]["cached_tokens"], 5);
    assert_eq!(body["usage"]["completion_tokens"], 5);
    let upstream = gw.mock.seen().pop().unwrap();
    assert!(upstream.uri.ends_with("/v1/messages"), "{}", upstream.uri);
    assert_eq!(upstream.headers["x-api-key"], "upstream-anthropic-secret");
    assert_eq!(upstream.headers["anthropic-version"], "2023-06-01");
    assert!(upstream.body["max_tokens"].as_u64().is_some(), "Messages requires max_tokens");
    let chat_whole = answer.request_id();

    let mut asked = chat("claude-sonnet-4", true);
    asked["stream_options"] = json!({"include_usage": true});
    let text = stream(&gw, "/v1/chat/completions", &asked).await;
    let chunks: Vec<Value> = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let content: String =
        chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(content, TEXT);
    assert!(chunks.iter().any(|c| c["choices"][0]["finish_reason"] == "stop"), "{text}");
    assert_eq!(chunks.last().unwrap()["usage"]["prompt_tokens"], 24, "the usage chunk asked for: {text}");
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");

    // Responses → Chat: a Codex-style client on the Chat-only channel.
    let answer = post(&gw, "/v1/responses", &responses("gpt-4o", false)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let body = answer.json();
    assert_eq!((body["object"].as_str(), body["status"].as_str()), (Some("response"), Some("completed")));
    let message = body["output"].as_array().unwrap().iter().find(|i| i["type"] == "message").unwrap().clone();
    assert_eq!(message["content"][0]["text"], TEXT);
    assert_eq!(body["usage"]["input_tokens"], 11);
    assert_eq!(body["usage"]["input_tokens_details"]["cached_tokens"], 3);
    let upstream = gw.mock.seen().pop().unwrap();
    assert!(upstream.uri.ends_with("/v1/chat/completions"), "{}", upstream.uri);
    assert_eq!(upstream.headers["authorization"], "Bearer upstream-chat-secret");
    let responses_whole = answer.request_id();

    let text = stream(&gw, "/v1/responses", &responses("gpt-4o", true)).await;
    assert!(text.starts_with("event: response.created\n"), "{text}");
    let deltas: String = events(&text, "response.output_text.delta")
        .iter()
        .map(|e| e["delta"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(deltas, TEXT);
    let completed = &events(&text, "response.completed")[0];
    assert_eq!(completed["response"]["usage"]["output_tokens"], 5);

    // Billing, from the upstream's own counts: Chat (8 + 3 cached + 5) at each model's prices,
    // Messages (17 + 5 cached + 2 written + 5). Streams bill the same as whole answers.
    let records = gw.usage(6).await;
    for record in &records {
        let protocols = (record["client_protocol"].as_str(), record["upstream_protocol"].as_str());
        let expected = match protocols {
            (Some("messages"), Some("chat")) => json!([8, 3, 0, 5, "0.000004425", "ok"]),
            (Some("chat"), Some("messages")) => json!([17, 5, 2, 5, "0.000135", "ok"]),
            (Some("responses"), Some("chat")) => json!([8, 3, 0, 5, "0.00007375", "ok"]),
            other => panic!("a record with protocols {other:?}: {record}"),
        };
        assert_eq!(billed(record), expected, "{record}");
    }
    assert_eq!(record(&records, &messages_whole)["channel"], "main");
    assert_eq!(record(&records, &chat_whole)["channel"], "claude");
    assert_eq!(record(&records, &responses_whole)["channel"], "chatonly");
    assert_eq!(records.iter().filter(|r| r["client_protocol"] == "messages").count(), 2);
    assert_eq!(records.iter().filter(|r| r["client_protocol"] == "chat").count(), 2);

    // A native request names the same protocol twice.
    let native = post(&gw, "/v1/chat/completions", &chat("gpt-4o-mini", false)).await;
    let records = gw.usage(7).await;
    let native = record(&records, &native.request_id());
    assert_eq!(
        (native["client_protocol"].as_str(), native["upstream_protocol"].as_str()),
        (Some("chat"), Some("chat"))
    );
}

async fn upstream_errors_and_refusals_keep_the_clients_shape(backend: Backend) {
    let gw = gateway(backend).await;
    // The policy is there once a converted request is answered.
    assert_eq!(post(&gw, "/v1/responses", &responses("gpt-4o", false)).await.status, 200);
    let before = gw.mock.calls();

    // What the Chat upstream cannot express: refused before it goes anywhere, naming the field.
    let mut server_tool = messages("gpt-4o-mini", false);
    server_tool["tools"] = json!([{"type": "web_search_20250305", "name": "web_search"}]);
    let answer = post(&gw, "/v1/messages", &server_tool).await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    assert_eq!(answer.json()["type"], "error");
    assert_eq!(answer.json()["error"]["type"], "invalid_request_error");
    assert!(answer.json()["error"]["message"].as_str().unwrap().contains("tools[0]"), "{}", answer.text());
    let mut n2 = chat("claude-sonnet-4", false);
    n2["n"] = json!(2);
    let answer = post(&gw, "/v1/chat/completions", &n2).await;
    assert_eq!((answer.status, answer.json()["error"]["code"].as_str()), (400, Some("invalid_request")));
    assert!(answer.json()["error"]["message"].as_str().unwrap().contains("`n`"), "{}", answer.text());
    let mut stateful = responses("gpt-4o", false);
    stateful["previous_response_id"] = json!("resp_1");
    let answer = post(&gw, "/v1/responses", &stateful).await;
    assert_eq!(answer.status, 400);
    assert!(answer.text().contains("previous_response_id"), "{}", answer.text());
    assert_eq!(gw.mock.calls(), before, "an inexpressible request reached the upstream");

    // `count_tokens` for a model with no Messages channel: counted here, free.
    let count = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello world"}]});
    let answer =
        post_json(&gw.url("/v1/messages/count_tokens"), &[("x-api-key", &gw.key)], &count).await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    let counted = answer.json()["input_tokens"].as_u64().unwrap();
    assert!((2..10).contains(&counted), "{counted}");
    assert_eq!(gw.mock.calls(), before, "a local count reached the upstream");

    // An upstream refusal (400) reaches the client in its own protocol, the message kept.
    gw.mock.set_mode(Mode::Fail(400));
    let answer = post(&gw, "/v1/messages", &messages("gpt-4o-mini", false)).await;
    assert_eq!(answer.status, 400);
    assert_eq!(
        (answer.json()["type"].as_str(), answer.json()["error"]["message"].as_str()),
        (Some("error"), Some("mock failure"))
    );
    let answer = post(&gw, "/v1/chat/completions", &chat("claude-sonnet-4", false)).await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.json()["error"]["message"], "mock failure", "{}", answer.text());
    let answer = post(&gw, "/v1/responses", &responses("gpt-4o", true)).await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.json()["error"]["message"], "mock failure", "{}", answer.text());
    assert_eq!(answer.headers["x-should-retry"], "false");

    // A failing native channel: the retry crosses to the converted one (nothing reached the
    // client yet). `flaky` speaks Messages natively for `both`, which `main` serves over Chat.
    gw.mock.set_mode(Mode::Normal);
    let flaky = MockUpstream::start(5).await;
    gw.cp.json(&["model", "set", "both", "--input-price", "1", "--output-price", "2"]);
    gw.cp.json(&[
        "channel",
        "add",
        "--name",
        "flaky",
        "--type",
        "anthropic",
        "--base-url",
        &flaky.url,
        "--api-key",
        "k-flaky",
        "--models",
        "both",
    ]);
    gw.cp.json(&["channel", "update", "main", "--models", "gpt-4o-mini,text-embedding-3-small,alias,both"]);
    // Both are known to the data plane once each serves its own protocol natively.
    let known = eventually(Duration::from_secs(5), || async {
        let native_messages =
            channel_of(&gw, post(&gw, "/v1/messages", &messages("both", false)).await).await?;
        let native_chat =
            channel_of(&gw, post(&gw, "/v1/chat/completions", &chat("both", false)).await).await?;
        (native_messages == "flaky" && native_chat == "main").then_some(())
    });
    known.await.expect("the data plane has both channels for `both`");
    flaky.set_mode(Mode::Fail(503));
    let tried = flaky.calls();
    let crossed = post(&gw, "/v1/messages", &messages("both", false)).await;
    assert_eq!(crossed.status, 200, "{}", crossed.text());
    assert_eq!(crossed.json()["content"][0]["text"], TEXT);
    assert_eq!(flaky.calls(), tried + 1, "the native channel was tried first");
    let last = eventually(Duration::from_secs(5), || async {
        let last = gw.cp.json(&["usage", "--limit", "1"])[0].clone();
        (last["request_id"] == crossed.request_id()).then_some(last)
    });
    let last = last.await.expect("the crossed request's record");
    assert_eq!((last["channel"].as_str(), last["upstream_protocol"].as_str()), (Some("main"), Some("chat")));
    assert_eq!(last["status"], "ok");

    // A converted stream's first event leaves as the upstream's first chunk arrives.
    let release = Arc::new(Notify::new());
    gw.mock.set_mode(Mode::HoldAfterFirstChunk(Arc::clone(&release)));
    let mut held =
        post_stream(&gw.url("/v1/messages"), &[("x-api-key", &gw.key)], &messages("gpt-4o-mini", true))
            .await
            .unwrap();
    let mut first = String::new();
    while !first.contains("tok0") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), held.next_chunk())
            .await
            .expect("the first event while the upstream holds")
            .expect("a chunk");
        first.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(first.starts_with("event: message_start"), "{first}");
    assert!(!first.contains("tok1"));
    release.notify_one();
    assert!(held.rest().await.contains("event: message_stop"));

    // A converted stream that breaks off: the client's protocol closes it, billed for what came.
    gw.mock.set_mode(Mode::BreakStream);
    let broken = stream(&gw, "/v1/responses", &responses("gpt-4o", true)).await;
    assert!(broken.contains("event: response.failed") || broken.contains("\"error\""), "{broken}");

    // Records: the refusals in the client's shape were forwarded (free); nothing else left one.
    let records = gw.cp.json(&["usage", "--limit", "100"]);
    let records = records.as_array().unwrap();
    let errors: Vec<_> = records.iter().filter(|r| r["status"] == "upstream_error").collect();
    assert!(errors.len() >= 3, "{records:?}");
    assert!(errors.iter().all(|r| r["cost"] == "0"), "{errors:?}");
    let incomplete = eventually(Duration::from_secs(5), || async {
        let records = gw.cp.json(&["usage", "--limit", "1"]);
        let last = records.as_array()?.first()?.clone();
        (last["client_protocol"] == "responses" && last["status"] == "incomplete").then_some(last)
    })
    .await
    .expect("the broken converted stream is recorded as incomplete");
    assert_ne!(incomplete["cost"], "0", "content reached the client: {incomplete}");
}
