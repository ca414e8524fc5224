//! The official SDKs asking for tool calls, whole and streamed, with reasoning and cache usage:
//! each checks what the SDK parsed against the mock upstream's scripted answer, and the exact
//! bill (INTERFACE.md "Money") of every request.
use std::{process::Command, sync::Arc, time::Duration};

use router_tests::{
    Backend, Gateway,
    http_client::{Streamed, post_json, post_stream},
    mock::{Mode, Reply, ReplyUsage, SIGNATURE, Stop, ToolCall},
    nanos,
};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

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
    assert_eq!(result["texts"], json!(reply.text), "text streamed piece by piece");
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
    assert_eq!(result["events"].as_array().unwrap().last().unwrap(), "chunk", "the usage chunk ends it");
    assert_eq!(result["arguments"], json!(call.arguments), "tool arguments streamed piece by piece");
    assert_eq!(result["texts"], json!(reply.text), "text streamed piece by piece");
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
    check_protocols(&gw.usage(2).await, "messages", "messages");
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
    check_protocols(&gw.usage(2).await, "chat", "chat");
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

/// A stream request of `api` (`messages`, `chat` or `responses`) for `model`.
async fn stream_request(gw: &Gateway, api: &str, model: &str) -> Events {
    let messages = json!([{"role": "user", "content": "What is the weather in Paris?"}]);
    let (path, body) = match api {
        "messages" => {
            ("/v1/messages", json!({"model": model, "max_tokens": 256, "stream": true, "messages": messages}))
        }
        "responses" => ("/v1/responses", json!({"model": model, "stream": true, "input": messages})),
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

/// A [`Gateway`] whose `openai` channel is declared `--protocols chat` (a data plane started
/// after the change, so the first request already sees it).
async fn chat_only_gateway(backend: Backend) -> Gateway {
    let mut gw = Gateway::start(backend, &[]).await;
    gw.cp.json(&["channel", "update", "main", "--protocols", "chat"]);
    let dp = gw.data_plane("spool-chat-only").await;
    gw.dp = dp;
    gw
}

/// `client_protocol` / `upstream_protocol` of every record.
fn check_protocols(records: &[Value], client: &str, upstream: &str) {
    for record in records {
        assert_eq!(
            (record["client_protocol"].as_str(), record["upstream_protocol"].as_str()),
            (Some(client), Some(upstream)),
            "{record}"
        );
    }
}

on_both_backends!(
    anthropic_sdk_tools_on_an_openai_channel,
    openai_sdk_chat_tools_on_an_anthropic_channel,
    openai_sdk_responses_tools_on_a_chat_only_channel
);

/// Claude Code's case: the anthropic SDK on a model only an `openai` channel serves.
async fn anthropic_sdk_tools_on_an_openai_channel(backend: Backend) {
    let gw = Gateway::start(backend, &[]).await;
    let usage = ReplyUsage { input: 250, cached: 1000, cache_write: 0, output: 77 };
    let reply = weather_reply(usage);
    gw.mock.set_reply(Some(reply.clone()));
    let result = sdk(&gw, "messages", "gpt-4o-mini").await;
    // Anthropic's terms: input excludes the cache reads.
    let reported = json!({"input_tokens": 250, "cache_read_input_tokens": 1000, "output_tokens": 77});
    check_messages(&result, &reply, &reported, false);
    check_bills(&gw, 2, "gpt-4o-mini", "main", usage, GPT_4O_MINI).await;
    check_protocols(&gw.usage(2).await, "messages", "chat");
    // What went upstream: Chat, the system prompt first, the tool as a function.
    for (seen, stream) in gw.mock.seen().iter().zip([false, true]) {
        assert!(seen.uri.starts_with("/v1/chat/completions"), "{}", seen.uri);
        assert_eq!(seen.headers.get("authorization").unwrap(), "Bearer upstream-openai-secret");
        let body = &seen.body;
        assert_eq!(
            body["messages"][0],
            json!({"role": "system", "content": "You are a weather bot."}),
            "{body}"
        );
        assert_eq!(body["messages"][1]["role"], "user");
        assert_eq!(body["tools"][0]["type"], "function");
        assert_eq!(body["tools"][0]["function"]["name"], "get_weather");
        assert_eq!(body["tools"][0]["function"]["parameters"]["required"], json!(["city"]));
        assert_eq!(body["stream_options"]["include_usage"].as_bool(), stream.then_some(true), "{body}");
    }
}

/// The openai SDK's chat on a model only an `anthropic` channel serves.
async fn openai_sdk_chat_tools_on_an_anthropic_channel(backend: Backend) {
    let gw = Gateway::start(backend, &[]).await;
    let usage = ReplyUsage { input: 17, cached: 1200, cache_write: 300, output: 42 };
    let reply = weather_reply(usage);
    gw.mock.set_reply(Some(reply.clone()));
    let result = sdk(&gw, "chat", "claude-sonnet-4").await;
    // OpenAI's terms: every prompt token (cache writes too) in prompt_tokens.
    check_chat(&result, &reply, usage);
    check_bills(&gw, 2, "claude-sonnet-4", "claude", usage, CLAUDE_SONNET_4).await;
    check_protocols(&gw.usage(2).await, "chat", "messages");
    for seen in gw.mock.seen() {
        assert!(seen.uri.starts_with("/v1/messages"), "{}", seen.uri);
        assert_eq!(seen.headers.get("x-api-key").unwrap(), "upstream-anthropic-secret");
        assert_eq!(seen.headers.get("anthropic-version").unwrap(), "2023-06-01");
        let body = &seen.body;
        assert!(body["system"].to_string().contains("You are a weather bot."), "{body}");
        assert_eq!(
            (&body["max_tokens"], &body["messages"][0]["role"]),
            (&json!(1024), &json!("user")),
            "{body}"
        );
        assert_eq!(body["tools"][0]["name"], "get_weather");
        assert_eq!(body["tools"][0]["input_schema"]["required"], json!(["city"]));
    }
}

/// Codex's case: the openai SDK's Responses API on a channel declared `--protocols chat`.
async fn openai_sdk_responses_tools_on_a_chat_only_channel(backend: Backend) {
    let gw = chat_only_gateway(backend).await;
    let usage = ReplyUsage { input: 250, cached: 1000, cache_write: 0, output: 77 };
    let reply = weather_reply(usage);
    gw.mock.set_reply(Some(reply.clone()));
    let result = sdk(&gw, "responses", "gpt-4o-mini").await;
    let call = &reply.tool_calls[0];
    for response in [&result["whole"], &result["stream"]] {
        assert_eq!(response["status"], "completed", "{response}");
        let output = response["output"].as_array().unwrap();
        let kinds: Vec<&str> = output.iter().map(|item| item["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["reasoning", "message", "function_call"], "{response}");
        let summary: String =
            output[0]["summary"].as_array().unwrap().iter().map(|s| s["text"].as_str().unwrap()).collect();
        let reasoning_text: String = output[0]["content"]
            .as_array()
            .map(|c| c.iter().map(|s| s["text"].as_str().unwrap()).collect())
            .unwrap_or_default();
        assert!(summary == reply.reasoning() || reasoning_text == reply.reasoning(), "{response}");
        assert_eq!(output[1]["content"][0]["type"], "output_text");
        assert_eq!(output[1]["content"][0]["text"], reply.text().as_str());
        assert_eq!(
            (&output[2]["call_id"], &output[2]["name"]),
            (&json!(call.id), &json!(call.name)),
            "{response}"
        );
        let arguments: Value = serde_json::from_str(output[2]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(arguments, serde_json::from_str::<Value>(&call.arguments()).unwrap());
        let prompt = usage.input + usage.cached;
        assert_eq!(
            (
                &response["usage"]["input_tokens"],
                &response["usage"]["input_tokens_details"]["cached_tokens"],
                &response["usage"]["output_tokens"],
                &response["usage"]["total_tokens"],
            ),
            (&json!(prompt), &json!(usage.cached), &json!(usage.output), &json!(prompt + usage.output)),
            "{response}"
        );
    }
    let events = &result["events"];
    assert_eq!(events[0], "response.created", "{events}");
    assert_eq!(events.as_array().unwrap().last().unwrap(), "response.completed", "{events}");
    assert_eq!(result["texts"], json!(reply.text), "text streamed piece by piece");
    assert_eq!(result["arguments"], json!(call.arguments), "tool arguments streamed piece by piece");
    check_bills(&gw, 2, "gpt-4o-mini", "main", usage, GPT_4O_MINI).await;
    check_protocols(&gw.usage(2).await, "responses", "chat");
    for seen in gw.mock.seen() {
        assert!(seen.uri.starts_with("/v1/chat/completions"), "{}", seen.uri);
        assert_eq!(seen.body["messages"][0]["role"], "system");
        assert_eq!(seen.body["tools"][0]["function"]["name"], "get_weather");
    }
}

/// A converted stream is converted as it arrives: the client has its first event while the
/// upstream holds everything after its first chunk — in each direction.
#[tokio::test(flavor = "multi_thread")]
async fn converted_streams_are_not_buffered() {
    let gw = chat_only_gateway(Backend::Sqlite).await;
    let reply = weather_reply(ReplyUsage { input: 5, cached: 0, cache_write: 0, output: 9 });
    gw.mock.set_reply(Some(reply.clone()));
    for (api, model, first, last) in [
        ("messages", "gpt-4o-mini", "message_start", "message_stop"),
        ("chat", "claude-sonnet-4", "chat.completion.chunk", "[DONE]"),
        ("responses", "gpt-4o-mini", "response.created", "response.completed"),
    ] {
        let permits = Arc::new(Semaphore::new(0));
        gw.mock.set_mode(Mode::Stepped(Arc::clone(&permits)));
        let mut events = stream_request(&gw, api, model).await;
        let event = events.next().await.expect("the first event");
        assert!(event.contains(first), "{api}: {event}");
        permits.add_permits(1000);
        let mut received = vec![event];
        while let Some(event) = events.next().await {
            received.push(event);
        }
        let text = received.join("\n");
        assert!(received.last().unwrap().contains(last), "{api}: {text}");
        assert!(text.contains("get_weather") && text.contains("check "), "{api}: {text}");
    }
}

/// Every stop reason maps as INTERFACE.md lists it, both ways, whole and streamed.
#[tokio::test(flavor = "multi_thread")]
async fn stop_reasons_convert_both_ways() {
    let gw = Gateway::start(Backend::Sqlite, &[]).await;
    for (stop, finish, stop_reason) in [
        (Stop::EndTurn, "stop", "end_turn"),
        (Stop::MaxTokens, "length", "max_tokens"),
        (Stop::ToolUse, "tool_calls", "tool_use"),
        (Stop::StopSequence("###".into()), "stop", "stop_sequence"),
        (Stop::ContentFilter, "content_filter", "refusal"),
    ] {
        let mut reply = weather_reply(ReplyUsage { input: 5, cached: 0, cache_write: 0, output: 9 });
        reply.stop = stop.clone();
        if stop != Stop::ToolUse {
            reply.tool_calls.clear();
        }
        gw.mock.set_reply(Some(reply));
        // An anthropic client on a Chat upstream sees the Chat finish_reason as a stop_reason…
        let messages = post_json(
            &gw.url("/v1/messages"),
            &[("x-api-key", &gw.key), ("anthropic-version", "2023-06-01")],
            &json!({"model": "gpt-4o-mini", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await
        .unwrap();
        assert_eq!(messages.status, 200, "{}", messages.text());
        let expected = if stop == Stop::StopSequence("###".into()) { "end_turn" } else { stop_reason };
        assert_eq!(messages.json()["stop_reason"], expected, "{stop:?}: {}", messages.text());
        // …and an openai client on an Anthropic upstream the stop_reason as a finish_reason.
        let chat = post_json(
            &gw.url("/v1/chat/completions"),
            &[("authorization", &gw.bearer())],
            &json!({"model": "claude-sonnet-4", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await
        .unwrap();
        assert_eq!(chat.status, 200, "{}", chat.text());
        assert_eq!(chat.json()["choices"][0]["finish_reason"], finish, "{stop:?}: {}", chat.text());
        let mut events = stream_request(&gw, "chat", "claude-sonnet-4").await;
        let mut text = String::new();
        while let Some(event) = events.next().await {
            text.push_str(&event);
        }
        assert!(text.contains(&format!("\"finish_reason\":\"{finish}\"")), "{stop:?}: {text}");
    }
}

/// An upstream's refusal reaches a converted client in the client's error shape, status and
/// wording kept.
#[tokio::test(flavor = "multi_thread")]
async fn converted_upstream_errors_take_the_clients_shape() {
    let gw = Gateway::start(Backend::Sqlite, &[]).await;
    let message = "This model's maximum context length is 128000 tokens";
    gw.mock.set_mode(Mode::ProviderError(400, message.to_owned()));
    let answer = post_json(
        &gw.url("/v1/messages"),
        &[("x-api-key", &gw.key), ("anthropic-version", "2023-06-01")],
        &json!({"model": "gpt-4o-mini", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 400, "{}", answer.text());
    let body = answer.json();
    assert_eq!(
        (&body["type"], &body["error"]["type"]),
        (&json!("error"), &json!("invalid_request_error")),
        "{body}"
    );
    assert_eq!(body["error"]["message"], message);
    let message = "messages.0.content: text content blocks must be non-empty";
    gw.mock.set_mode(Mode::ProviderError(400, message.to_owned()));
    let answer = post_json(
        &gw.url("/v1/chat/completions"),
        &[("authorization", &gw.bearer())],
        &json!({"model": "claude-sonnet-4", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 400, "{}", answer.text());
    let body = answer.json();
    assert_eq!(body["error"]["message"], message, "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
}

/// The SSE events of a stream, as (event name or data type, data) pairs.
async fn collect(mut events: Events) -> Vec<Value> {
    let mut all = Vec::new();
    while let Some(event) = events.next().await {
        let data = event.lines().filter_map(|l| l.strip_prefix("data: ")).collect::<String>();
        if data == "[DONE]" {
            all.push(json!("[DONE]"));
        } else if !data.is_empty() {
            all.push(serde_json::from_str(&data).unwrap_or_else(|e| panic!("{e}: {event}")));
        }
    }
    all
}

/// Claude Code's recorded request (system blocks with `cache_control`, 24 tools, `thinking`,
/// `metadata`, `context_management`) on `?beta=true`, through an `openai` channel, streamed back.
#[tokio::test(flavor = "multi_thread")]
async fn claude_code_through_an_openai_channel() {
    let gw = Gateway::start(Backend::Sqlite, &[]).await;
    let usage = ReplyUsage { input: 3000, cached: 20000, cache_write: 0, output: 120 };
    gw.mock.set_reply(Some(Reply {
        reasoning: vec!["List the ".into(), "files.".into()],
        text: vec!["I'll look.".into()],
        tool_calls: vec![ToolCall {
            id: "call_bash1".into(),
            name: "Bash".into(),
            arguments: vec!["{\"command\": \"l".into(), "s -la\", \"description\": \"List files\"}".into()],
        }],
        stop: Stop::ToolUse,
        usage,
    }));
    let mut body: Value =
        serde_json::from_str(include_str!("../../data-plane/src/convert/fixtures/claude-code.request.json"))
            .unwrap();
    body["model"] = json!("gpt-4o-mini");
    let stream = post_stream(
        &gw.url("/v1/messages?beta=true"),
        &[
            ("x-api-key", &gw.key),
            ("anthropic-version", "2023-06-01"),
            ("anthropic-beta", "claude-code-20250219,interleaved-thinking-2025-05-14"),
            ("x-app", "cli"),
        ],
        &body,
    )
    .await
    .unwrap();
    let events = collect(Events::new(stream)).await;
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap_or_default()).collect();
    assert_eq!(kinds.first(), Some(&"message_start"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"message_stop"), "{kinds:?}");
    let starts: Vec<&Value> = events.iter().filter(|e| e["type"] == "content_block_start").collect();
    let blocks: Vec<&str> = starts.iter().map(|e| e["content_block"]["type"].as_str().unwrap()).collect();
    assert_eq!(blocks, ["thinking", "text", "tool_use"], "{events:?}");
    assert_eq!(
        (&starts[2]["content_block"]["name"], &starts[2]["content_block"]["id"]),
        (&json!("Bash"), &json!("call_bash1"))
    );
    let arguments: String = events
        .iter()
        .filter(|e| e["delta"]["type"] == "input_json_delta")
        .map(|e| e["delta"]["partial_json"].as_str().unwrap())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&arguments).unwrap(),
        json!({"command": "ls -la", "description": "List files"})
    );
    let delta = events.iter().find(|e| e["type"] == "message_delta").unwrap();
    assert_eq!(delta["delta"]["stop_reason"], "tool_use", "{delta}");
    assert_eq!(delta["usage"]["output_tokens"], 120, "{delta}");
    // What went upstream: a Chat request with every tool as a function, the system blocks as a
    // system message, usage asked for; Anthropic-only fields gone.
    let seen = gw.mock.seen().pop().unwrap();
    assert!(seen.uri.starts_with("/v1/chat/completions"), "{}", seen.uri);
    let upstream = &seen.body;
    assert_eq!(upstream["tools"].as_array().unwrap().len(), body["tools"].as_array().unwrap().len());
    assert!(upstream["tools"].as_array().unwrap().iter().all(|t| t["type"] == "function"), "{upstream}");
    assert_eq!(upstream["messages"][0]["role"], "system");
    assert_eq!(upstream["stream_options"]["include_usage"], true);
    for field in ["thinking", "metadata", "context_management", "system"] {
        assert!(upstream.get(field).is_none(), "{field} went upstream: {upstream}");
    }
    assert!(!upstream.to_string().contains("cache_control"), "{upstream}");
    let records = gw.usage(1).await;
    check_protocols(&records, "messages", "chat");
    assert_eq!(nanos(&records[0]["cost"]), cost(GPT_4O_MINI, usage));
}

/// Codex's recorded request (function tools, a namespace of tools, `web_search`, `reasoning`,
/// `include`, `prompt_cache_key`, `store: false`) through `--protocols chat`, streamed back.
#[tokio::test(flavor = "multi_thread")]
async fn codex_through_a_chat_only_channel() {
    let gw = chat_only_gateway(Backend::Sqlite).await;
    let usage = ReplyUsage { input: 900, cached: 8000, cache_write: 0, output: 64 };
    gw.mock.set_reply(Some(Reply {
        reasoning: vec!["Run ".into(), "ls.".into()],
        text: Vec::new(),
        tool_calls: vec![ToolCall {
            id: "call_exec1".into(),
            name: "exec_command".into(),
            arguments: vec!["{\"cmd\":".into(), "\"ls\"}".into()],
        }],
        stop: Stop::ToolUse,
        usage,
    }));
    let mut body: Value =
        serde_json::from_str(include_str!("../../data-plane/src/convert/fixtures/codex.request.json"))
            .unwrap();
    body["model"] = json!("gpt-4o-mini");
    let stream =
        post_stream(&gw.url("/v1/responses"), &[("authorization", &gw.bearer())], &body).await.unwrap();
    let events = collect(Events::new(stream)).await;
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap_or_default()).collect();
    assert_eq!(kinds.first(), Some(&"response.created"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"response.completed"), "{kinds:?}");
    let sequence: Vec<u64> = events.iter().map(|e| e["sequence_number"].as_u64().unwrap()).collect();
    assert!(sequence.windows(2).all(|w| w[1] == w[0] + 1), "sequence numbers count up: {sequence:?}");
    let done = events.last().unwrap();
    let output = done["response"]["output"].as_array().unwrap();
    let call = output.iter().find(|item| item["type"] == "function_call").expect("a function call");
    assert_eq!((&call["name"], &call["call_id"]), (&json!("exec_command"), &json!("call_exec1")), "{call}");
    assert_eq!(
        serde_json::from_str::<Value>(call["arguments"].as_str().unwrap()).unwrap(),
        json!({"cmd": "ls"})
    );
    assert_eq!(done["response"]["usage"]["input_tokens"], 8900);
    assert_eq!(done["response"]["usage"]["input_tokens_details"]["cached_tokens"], 8000);
    // Upstream: Chat with the function tools and the namespace's tools flattened; the web search
    // (run by OpenAI's servers only) and OpenAI-only fields dropped.
    let seen = gw.mock.seen().pop().unwrap();
    assert!(seen.uri.starts_with("/v1/chat/completions"), "{}", seen.uri);
    let upstream = &seen.body;
    let names: Vec<&str> = upstream["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"exec_command") && names.contains(&"spawn_agent"), "{names:?}");
    assert_eq!(names.len(), 7 + 5, "7 functions and the namespace's 5, no web search: {names:?}");
    assert!(upstream["tools"].as_array().unwrap().iter().all(|t| t["type"] == "function"), "{upstream}");
    for field in ["store", "include", "prompt_cache_key", "reasoning", "input", "client_metadata"] {
        assert!(upstream.get(field).is_none(), "{field} went upstream: {upstream}");
    }
    let records = gw.usage(1).await;
    check_protocols(&records, "responses", "chat");
    assert_eq!(nanos(&records[0]["cost"]), cost(GPT_4O_MINI, usage));
}
