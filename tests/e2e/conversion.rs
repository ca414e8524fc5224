//! The official SDKs asking for tool calls, whole and streamed, with reasoning and cache usage:
//! each checks what the SDK parsed against the mock upstream's scripted answer, and the exact
//! bill (INTERFACE.md "Money") of every request.
use std::{process::Command, sync::Arc, time::Duration};

use router_tests::{
    Backend,
    http_client::{Streamed, post_json, post_stream},
    mock::{Mode, Reply, ReplyUsage, SIGNATURE, Stop, ToolCall},
    nanos,
};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::proxy::Gateway;

/// A model's prices as `routerctl model set` got them in [`Gateway::start`]: input, cached
/// input, cache write, output (per 1M tokens).
type Prices = [&'static str; 4];
const GPT_4O_MINI: Prices = ["0.15", "0.075", "0.15", "0.6"];
const CLAUDE_SONNET_4: Prices = ["3", "0.3", "3.75", "15"];

/// The bill of one request in nano-units: `ceil(Σ tokens × price / 1e6)` (multiplier 1).
fn cost(prices: Prices, usage: ReplyUsage) -> i64 {
    let tokens = [usage.input, usage.cached, usage.cache_write, usage.output];
    let sum: i128 = tokens
        .iter()
        .zip(prices)
        .map(|(tokens, price)| {
            i128::from(*tokens) * i128::from(router_proto::Money::parse(price).unwrap().nanos())
        })
        .sum();
    i64::try_from((sum + 999_999) / 1_000_000).unwrap()
}

/// Reasoning, a sentence and one `get_weather` call whose arguments stream in pieces split
/// mid-key, mid-string and between a key and its value.
fn weather_reply(usage: ReplyUsage) -> Reply {
    Reply {
        reasoning: vec!["The user wants ".into(), "the weather; call the tool.".into()],
        text: vec!["Let me ".into(), "check ".into(), "that.".into()],
        tool_calls: vec![ToolCall {
            id: "call_w3ather".into(),
            name: "get_weather".into(),
            arguments: vec!["{\"ci".into(), "ty\": \"Pa".into(), "ris\", \"unit\"".into(), ": \"c\"}".into()],
        }],
        stop: Stop::ToolUse,
        usage,
    }
}

/// Runs `tests/sdk/convert_check.py API MODEL` against the gateway; returns what it printed.
async fn sdk(gw: &Gateway, api: &str, model: &str) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/sdk/convert_check.py");
    let (url, key, args) = (gw.dp.url.clone(), gw.key.clone(), [api.to_owned(), model.to_owned()]);
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3").arg(script).args(args).env("ROUTER_URL", url).env("ROUTER_KEY", key).output()
    })
    .await
    .unwrap()
    .expect("python3 runs (install the SDKs: pip install openai anthropic)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{api} SDK check failed:\n{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn count(events: &Value, kind: &str) -> usize {
    events.as_array().unwrap().iter().filter(|e| *e == kind).count()
}

/// The anthropic SDK's message (whole and streamed) is `reply`; `signed`: the thinking block
/// carries the upstream's signature (natively; a converted one has none, never an invented one).
fn check_messages(result: &Value, reply: &Reply, usage: &Value, signed: bool) {
    let call = &reply.tool_calls[0];
    for message in [&result["whole"], &result["stream"]] {
        let content = message["content"].as_array().unwrap();
        let kinds: Vec<&str> = content.iter().map(|b| b["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["thinking", "text", "tool_use"], "{message}");
        assert_eq!(content[0]["thinking"], reply.reasoning().as_str());
        let signature = content[0]["signature"].as_str().unwrap_or_default();
        assert_eq!(signature, if signed { SIGNATURE } else { "" }, "{message}");
        assert_eq!(content[1]["text"], reply.text().as_str());
        assert_eq!(
            (&content[2]["id"], &content[2]["name"]),
            (&json!(call.id), &json!(call.name)),
            "{message}"
        );
        assert_eq!(content[2]["input"], serde_json::from_str::<Value>(&call.arguments()).unwrap());
        assert_eq!(message["stop_reason"], "tool_use");
        for (field, value) in usage.as_object().unwrap() {
            assert_eq!(&message["usage"][field], value, "usage.{field}: {message}");
        }
    }
    let events = &result["events"];
    assert_eq!(count(events, "message_start"), 1, "{events}");
    assert_eq!(result["arguments"], json!(call.arguments), "tool arguments streamed piece by piece");
    assert_eq!(count(events, "text"), reply.text.len(), "{events}");
    assert_eq!(count(events, "thinking"), reply.reasoning.len(), "{events}");
    assert_eq!(events.as_array().unwrap().last().unwrap(), "message_stop");
}

/// The openai SDK's chat completion (whole and streamed with usage) is `reply`.
fn check_chat(result: &Value, reply: &Reply, usage: ReplyUsage) {
    let call = &reply.tool_calls[0];
    for completion in [&result["whole"], &result["stream"]] {
        let choice = &completion["choices"][0];
        let message = &choice["message"];
        assert_eq!(message["content"], reply.text().as_str(), "{completion}");
        assert_eq!(message["reasoning_content"], reply.reasoning().as_str(), "{completion}");
        let calls = message["tool_calls"].as_array().unwrap();
        assert_eq!(calls.len(), 1, "{completion}");
        assert_eq!((&calls[0]["id"], &calls[0]["type"]), (&json!(call.id), &json!("function")));
        assert_eq!(calls[0]["function"]["name"], call.name.as_str());
        let arguments: Value =
            serde_json::from_str(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(arguments, serde_json::from_str::<Value>(&call.arguments()).unwrap());
        assert_eq!(choice["finish_reason"], "tool_calls");
        let prompt = usage.input + usage.cached + usage.cache_write;
        assert_eq!(
            (
                &completion["usage"]["prompt_tokens"],
                &completion["usage"]["completion_tokens"],
                &completion["usage"]["total_tokens"],
                &completion["usage"]["prompt_tokens_details"]["cached_tokens"],
            ),
            (&json!(prompt), &json!(usage.output), &json!(prompt + usage.output), &json!(usage.cached)),
            "{completion}"
        );
    }
    let events = &result["events"];
    assert_eq!(result["arguments"], json!(call.arguments), "tool arguments streamed piece by piece");
    assert_eq!(count(events, "content.delta"), reply.text.len(), "{events}");
}

/// Each of the `n` newest usage records is billed `tokens` at `prices`.
async fn check_bills(gw: &Gateway, n: usize, model: &str, channel: &str, tokens: ReplyUsage, prices: Prices) {
    let records = gw.usage(n).await;
    for record in &records {
        assert_eq!(
            (record["model"].as_str(), record["channel"].as_str()),
            (Some(model), Some(channel)),
            "{record}"
        );
        assert_eq!(record["status"], "ok", "{record}");
        assert_eq!(
            (
                record["input_tokens"].as_u64(),
                record["cached_input_tokens"].as_u64(),
                record["cache_write_tokens"].as_u64(),
                record["output_tokens"].as_u64()
            ),
            (Some(tokens.input), Some(tokens.cached), Some(tokens.cache_write), Some(tokens.output)),
            "{record}"
        );
        assert_eq!(nanos(&record["cost"]), cost(prices, tokens), "{record}");
    }
}

on_both_backends!(anthropic_sdk_tools_on_an_anthropic_channel, openai_sdk_chat_tools_on_an_openai_channel);

/// The native path, as the baseline the converted ones must match: the mock's Anthropic
/// answers, parsed by the anthropic SDK.
async fn anthropic_sdk_tools_on_an_anthropic_channel(backend: Backend) {
    let gw = Gateway::start(backend, &[]).await;
    let usage = ReplyUsage { input: 17, cached: 1200, cache_write: 300, output: 42 };
    let reply = weather_reply(usage);
    gw.mock.set_reply(Some(reply.clone()));
    let result = sdk(&gw, "messages", "claude-sonnet-4").await;
    let reported = json!({"input_tokens": 17, "cache_read_input_tokens": 1200, "cache_creation_input_tokens": 300, "output_tokens": 42});
    check_messages(&result, &reply, &reported, true);
    // 17×3 + 1200×0.3 + 300×3.75 + 42×15 = 2166 per 1M tokens → 0.002166 each.
    assert_eq!(cost(CLAUDE_SONNET_4, usage), 2_166_000);
    check_bills(&gw, 2, "claude-sonnet-4", "claude", usage, CLAUDE_SONNET_4).await;
}

/// The native path: the mock's Chat answers (DeepSeek-style `reasoning_content`, tool-call
/// argument deltas, the usage chunk), parsed by the openai SDK.
async fn openai_sdk_chat_tools_on_an_openai_channel(backend: Backend) {
    let gw = Gateway::start(backend, &[]).await;
    let usage = ReplyUsage { input: 250, cached: 1000, cache_write: 0, output: 77 };
    let reply = weather_reply(usage);
    gw.mock.set_reply(Some(reply.clone()));
    let result = sdk(&gw, "chat", "gpt-4o-mini").await;
    check_chat(&result, &reply, usage);
    // 250×0.15 + 1000×0.075 + 77×0.6 = 158.7 per 1M tokens → 0.0001587 each.
    assert_eq!(cost(GPT_4O_MINI, usage), 158_700);
    check_bills(&gw, 2, "gpt-4o-mini", "main", usage, GPT_4O_MINI).await;
    let seen = gw.mock.seen();
    assert_eq!(seen[1].body["stream_options"]["include_usage"], true);
}

/// A streamed answer read event by event.
struct Events {
    stream: Streamed,
    buffer: String,
}

impl Events {
    fn new(stream: Streamed) -> Events {
        assert_eq!(stream.status, 200);
        Events { stream, buffer: String::new() }
    }

    /// The next SSE event (its text without the blank line), waiting at most 10 s for it;
    /// `None` at the end of the stream.
    async fn next(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let event = self.buffer[..end].to_owned();
                self.buffer.drain(..end + 2);
                return Some(event);
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.stream.next_chunk())
                .await
                .unwrap_or_else(|_| panic!("no event within 10 s; have {:?}", self.buffer))?;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

/// A stream request of `api` (`messages` or `chat`) for `model`.
async fn stream_request(gw: &Gateway, api: &str, model: &str) -> Events {
    let messages = json!([{"role": "user", "content": "What is the weather in Paris?"}]);
    let (path, body) = match api {
        "messages" => {
            ("/v1/messages", json!({"model": model, "max_tokens": 256, "stream": true, "messages": messages}))
        }
        _ => ("/v1/chat/completions", json!({"model": model, "stream": true, "messages": messages})),
    };
    let headers = [("authorization", gw.bearer()), ("anthropic-version", "2023-06-01".to_owned())];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Events::new(post_stream(&gw.url(path), &headers, &body).await.unwrap())
}

/// The mock's stepped streams: each upstream event reaches the client while the upstream holds
/// the next (the baseline a converted stream is held to).
#[tokio::test(flavor = "multi_thread")]
async fn native_streams_pass_event_by_event() {
    let gw = Gateway::start(Backend::Sqlite, &[]).await;
    let reply = weather_reply(ReplyUsage { input: 5, cached: 0, cache_write: 0, output: 9 });
    gw.mock.set_reply(Some(reply.clone()));
    for (api, model, last) in
        [("messages", "claude-sonnet-4", "message_stop"), ("chat", "gpt-4o-mini", "[DONE]")]
    {
        let permits = Arc::new(Semaphore::new(0));
        gw.mock.set_mode(Mode::Stepped(Arc::clone(&permits)));
        let mut events = stream_request(&gw, api, model).await;
        // Only the first upstream event has been sent: the client has it, and the second once
        // the upstream sends it.
        let first = events.next().await.expect("the first event");
        assert!(
            first.contains(if api == "chat" { "\"role\":\"assistant\"" } else { "message_start" }),
            "{first}"
        );
        permits.add_permits(1);
        let second = events.next().await.expect("the second event");
        assert!(second.contains(if api == "chat" { "reasoning_content" } else { "ping" }), "{second}");
        permits.add_permits(1000);
        let mut received = vec![first, second];
        while let Some(event) = events.next().await {
            received.push(event);
        }
        let text = received.join("\n");
        assert!(text.contains("get_weather") && text.contains("ris\\\", \\\"unit\\\""), "{text}");
        assert!(received.last().unwrap().contains(last), "{text}");
    }
}

/// The mock's provider-shaped errors reach the client of the same protocol as they were.
#[tokio::test(flavor = "multi_thread")]
async fn native_upstream_errors_keep_their_shape() {
    let gw = Gateway::start(Backend::Sqlite, &[]).await;
    let message = "messages.1: `tool_use` ids must be unique";
    gw.mock.set_mode(Mode::ProviderError(400, message.to_owned()));
    let answer = post_json(
        &gw.url("/v1/messages"),
        &[("x-api-key", &gw.key), ("anthropic-version", "2023-06-01")],
        &json!({"model": "claude-sonnet-4", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 400, "{}", answer.text());
    let body = answer.json();
    assert_eq!((&body["type"], &body["error"]["type"]), (&json!("error"), &json!("invalid_request_error")));
    assert_eq!(body["error"]["message"], message);
    let answer = post_json(
        &gw.url("/v1/chat/completions"),
        &[("authorization", &gw.bearer())],
        &json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 400, "{}", answer.text());
    assert_eq!(answer.json()["error"]["message"], message);
}
