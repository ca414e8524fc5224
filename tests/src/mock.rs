//! A mock upstream provider speaking OpenAI (chat, completions, embeddings, responses) and
//! Anthropic (messages, count_tokens), JSON and SSE, with usage — plus ways to misbehave.
//!
//! By default it answers `tok0 tok1 …`. A [`Reply`] set with [`MockUpstream::set_reply`]
//! scripts a richer answer (reasoning, text, tool calls, a stop reason, cache usage), written
//! in the documented wire format of the path asked: OpenAI Chat Completions (`…/chat/completions`,
//! whole and streamed) or Anthropic Messages (`…/v1/messages`, whole and streamed).
use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::{body::Frame, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore};

/// How the mock answers.
#[derive(Clone, Default)]
pub enum Mode {
    /// Proper answers with usage.
    #[default]
    Normal,
    /// Proper answers without any usage (the gateway must count locally).
    NoUsage,
    /// Every request fails with this status and an error body.
    Fail(u16),
    /// Never answers (the gateway's first-byte timeout must fire).
    Hang,
    /// Streams send their first chunk, then wait for this before the rest.
    HoldAfterFirstChunk(Arc<Notify>),
    /// Streams send two chunks and then break the connection.
    BreakStream,
    /// Proper answers whose usage claims this many output tokens (a lying upstream).
    ClaimOutputTokens(u64),
    /// Every request fails with this status and this message, in the provider's own error
    /// shape for the path (Anthropic's `{"type":"error",…}` on `/v1/messages`, OpenAI's
    /// `{"error":{…}}` elsewhere).
    ProviderError(u16, String),
    /// Streams send their first event at once and each later one only after the test adds a
    /// permit (`add_permits(1)` releases one event): a test sees what the client got while the
    /// upstream is still producing.
    Stepped(Arc<Semaphore>),
    /// Every request gets a 200 with this content type, content encoding (if any) and body,
    /// whatever it asked for (an upstream answering what the endpoint does not return).
    Raw { content_type: &'static str, content_encoding: Option<&'static str>, body: Bytes },
    /// Streams answer a proper first event, then one `data:` line that never ends: pieces of
    /// 64 KiB without a blank line, until the client goes away or `bytes` were sent.
    EndlessEvent { bytes: usize },
    /// Streams answer `events` proper text events without any usage, each carrying a
    /// `padding`-byte text (a long answer the gateway must count itself).
    LongNoUsage { events: usize, padding: usize },
}

/// A scripted answer, rendered in the protocol of the path asked (see the module doc).
#[derive(Debug, Clone, Default)]
pub struct Reply {
    /// Reasoning, piece by piece: Chat `reasoning_content` (DeepSeek's field) deltas, Anthropic
    /// `thinking` deltas. Empty: none.
    pub reasoning: Vec<String>,
    /// Text, piece by piece (one streamed delta each).
    pub text: Vec<String>,
    /// Tool calls, after the text.
    pub tool_calls: Vec<ToolCall>,
    /// Why the answer ended.
    pub stop: Stop,
    /// The usage reported (billing's terms; see [`ReplyUsage`]).
    pub usage: ReplyUsage,
}

impl Reply {
    /// The whole text.
    pub fn text(&self) -> String {
        self.text.concat()
    }

    /// The whole reasoning.
    pub fn reasoning(&self) -> String {
        self.reasoning.concat()
    }
}

/// One tool call of a [`Reply`].
#[derive(Debug, Clone, Default)]
pub struct ToolCall {
    /// The call id (`call_…` / `toolu_…`).
    pub id: String,
    /// The function's name.
    pub name: String,
    /// The arguments JSON, in the pieces it is streamed in (split anywhere, mid-token too);
    /// concatenated, a JSON object.
    pub arguments: Vec<String>,
}

impl ToolCall {
    /// The arguments as one JSON text.
    pub fn arguments(&self) -> String {
        self.arguments.concat()
    }
}

/// Why a [`Reply`] ended, written as each protocol names it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Stop {
    /// Chat `stop`, Anthropic `end_turn`.
    #[default]
    EndTurn,
    /// Chat `length`, Anthropic `max_tokens`.
    MaxTokens,
    /// Chat `tool_calls`, Anthropic `tool_use`.
    ToolUse,
    /// Chat `stop`, Anthropic `stop_sequence` with this sequence.
    StopSequence(String),
    /// Chat `content_filter`, Anthropic `refusal`.
    ContentFilter,
}

impl Stop {
    /// The Chat `finish_reason`.
    pub fn chat(&self) -> &'static str {
        match self {
            Stop::EndTurn | Stop::StopSequence(_) => "stop",
            Stop::MaxTokens => "length",
            Stop::ToolUse => "tool_calls",
            Stop::ContentFilter => "content_filter",
        }
    }

    /// The Anthropic `stop_reason`.
    pub fn anthropic(&self) -> &'static str {
        match self {
            Stop::EndTurn => "end_turn",
            Stop::MaxTokens => "max_tokens",
            Stop::ToolUse => "tool_use",
            Stop::StopSequence(_) => "stop_sequence",
            Stop::ContentFilter => "refusal",
        }
    }

    fn sequence(&self) -> Value {
        match self {
            Stop::StopSequence(sequence) => json!(sequence),
            _ => Value::Null,
        }
    }
}

/// A [`Reply`]'s token counts, as billing defines them (INTERFACE.md "Money"). Chat reports
/// `prompt_tokens` = `input + cached + cache_write` with `cached_tokens` = `cached` (Chat has no
/// cache-write count: those tokens bill as input there); Anthropic reports each as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplyUsage {
    /// Prompt tokens neither read from nor written to a cache.
    pub input: u64,
    /// Prompt tokens read from a cache.
    pub cached: u64,
    /// Prompt tokens written to a cache.
    pub cache_write: u64,
    /// Output tokens.
    pub output: u64,
}

/// One request the mock received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Path and query.
    pub uri: String,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Value,
}

struct State {
    mode: Mutex<Mode>,
    reply: Mutex<Option<Reply>>,
    seen: Mutex<Vec<Seen>>,
    chunks: usize,
}

/// A running mock upstream.
pub struct MockUpstream {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Body = BoxBody<Bytes, Infallible>;

impl MockUpstream {
    /// Starts a mock on an ephemeral port; streams carry `chunks` content chunks.
    pub async fn start(chunks: usize) -> MockUpstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address: SocketAddr = listener.local_addr().expect("address");
        let state = Arc::new(State {
            mode: Mutex::new(Mode::Normal),
            reply: Mutex::new(None),
            seen: Mutex::new(Vec::new()),
            chunks,
        });
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let state = Arc::clone(&state);
                        async move { Ok::<_, Infallible>(answer(&state, request).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        MockUpstream { url: format!("http://{address}"), state, task }
    }

    /// Changes how the mock answers.
    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().expect("lock") = mode;
    }

    /// Answers chat and messages requests with `reply` (`None`: the default `tok0 tok1 …`).
    pub fn set_reply(&self, reply: Option<Reply>) {
        *self.state.reply.lock().expect("lock") = reply;
    }

    /// Requests received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().expect("lock").clone()
    }

    /// Number of requests received so far.
    pub fn calls(&self) -> usize {
        self.state.seen.lock().expect("lock").len()
    }
}

/// Headers real providers send that describe the operator's account (the gateway must not
/// pass them on), and one it must (`request-id`).
pub const ACCOUNT_HEADERS: [(&str, &str); 8] = [
    ("openai-organization", "org-operator-secret"),
    ("openai-project", "proj_operator"),
    ("anthropic-organization-id", "0b5e-operator-org"),
    ("x-ratelimit-remaining-requests", "4999"),
    ("anthropic-ratelimit-tokens-remaining", "39000"),
    ("set-cookie", "__cf_bm=operator; path=/"),
    ("server", "cloudflare"),
    ("request-id", "req_mock"),
];

fn with_account_headers(mut response: Response<Body>) -> Response<Body> {
    for (name, value) in ACCOUNT_HEADERS {
        response.headers_mut().insert(name, value.parse().expect("header"));
    }
    response
}

fn json_response(status: u16, value: &Value) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())).boxed());
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    response.headers_mut().insert("content-type", "application/json".parse().expect("header"));
    with_account_headers(response)
}

/// Content chunks of a stream: "tok0 ", "tok1 ", …
fn words(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("tok{i} ")).collect()
}

async fn answer(state: &State, request: Request<hyper::body::Incoming>) -> Response<Body> {
    let uri = request.uri().to_string();
    let path = request.uri().path().to_owned();
    let headers = request.headers().clone();
    let bytes = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    state.seen.lock().expect("lock").push(Seen { uri, headers, body: body.clone() });
    let mode = state.mode.lock().expect("lock").clone();
    match mode {
        Mode::Fail(status) => {
            return json_response(
                status,
                &json!({"error": {"message": "mock failure", "type": "server_error"}}),
            );
        }
        Mode::Hang => {
            std::future::pending::<()>().await;
        }
        Mode::ProviderError(status, message) => {
            return json_response(status, &provider_error(&path, status, &message));
        }
        Mode::Raw { content_type, content_encoding, body } => {
            let mut response = Response::new(Full::new(body).boxed());
            response.headers_mut().insert("content-type", content_type.parse().expect("header"));
            if let Some(encoding) = content_encoding {
                response.headers_mut().insert("content-encoding", encoding.parse().expect("header"));
            }
            return response;
        }
        Mode::EndlessEvent { bytes } => return endless_event(bytes),
        Mode::LongNoUsage { events, padding } => {
            let chunk = |text: &str| {
                format!(
                    "data: {}\n\n",
                    json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                    "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]})
                )
            };
            let word = "word ".repeat(padding / 5);
            let mut all: Vec<String> = (0..events).map(|_| chunk(&word)).collect();
            all.push("data: [DONE]\n\n".to_owned());
            return stream_response(all, "text/event-stream", Mode::Normal);
        }
        _ => {}
    }
    let reply = state.reply.lock().expect("lock").clone();
    if let Some(reply) = reply
        && (path.ends_with("/chat/completions") || path.ends_with("/v1/messages"))
    {
        return scripted(&path, &body, &reply, mode);
    }
    let with_usage = !matches!(mode, Mode::NoUsage);
    let model = body["model"].as_str().unwrap_or("mock").to_owned();
    let stream = body["stream"].as_bool().unwrap_or(false);
    let include_usage = with_usage && body["stream_options"]["include_usage"].as_bool().unwrap_or(false);
    let text = words(state.chunks);
    let claimed = match mode {
        Mode::ClaimOutputTokens(claimed) => claimed,
        _ => text.len() as u64,
    };
    let (events, content_type): (Vec<String>, _) = match path.as_str() {
        p if p.ends_with("/chat/completions") || p.ends_with("/completions") => {
            let chat = p.ends_with("/chat/completions");
            let usage = json!({"prompt_tokens": 11, "completion_tokens": claimed, "total_tokens": 11 + claimed,
                "prompt_tokens_details": {"cached_tokens": 3}});
            if !stream {
                let choice = if chat {
                    json!({"index": 0, "message": {"role": "assistant", "content": text.concat()}, "finish_reason": "stop"})
                } else {
                    json!({"index": 0, "text": text.concat(), "finish_reason": "stop"})
                };
                let mut value = json!({"id": "cmpl-mock", "object": if chat {"chat.completion"} else {"text_completion"},
                    "created": 1, "model": model, "choices": [choice]});
                if with_usage {
                    value["usage"] = usage;
                }
                return json_response(200, &value);
            }
            let mut events: Vec<String> = text
                .iter()
                .map(|w| {
                    let choice = if chat { json!({"index": 0, "delta": {"content": w}}) } else { json!({"index": 0, "text": w}) };
                    json!({"id": "cmpl-mock", "object": "chat.completion.chunk", "created": 1, "model": model, "choices": [choice]}).to_string()
                })
                .map(|data| format!("data: {data}\n\n"))
                .collect();
            if include_usage {
                let chunk = json!({"id": "cmpl-mock", "object": "chat.completion.chunk", "created": 1, "model": model, "choices": [], "usage": usage});
                events.push(format!("data: {chunk}\n\n"));
            }
            events.push("data: [DONE]\n\n".to_owned());
            (events, "text/event-stream")
        }
        p if p.ends_with("/embeddings") => {
            let mut value = json!({"object": "list", "model": model, "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3]}]});
            if with_usage {
                value["usage"] = json!({"prompt_tokens": 7, "total_tokens": 7});
            }
            return json_response(200, &value);
        }
        p if p.ends_with("/responses") => {
            let usage = json!({"input_tokens": 13, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": claimed,
                "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 13 + claimed});
            let mut response = json!({"id": "resp_mock", "object": "response", "created_at": 1, "status": "completed", "model": model,
                "output": [{"type": "message", "id": "msg_mock", "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": text.concat(), "annotations": []}]}],
                "parallel_tool_calls": true, "tool_choice": "auto", "tools": []});
            if with_usage {
                response["usage"] = usage;
            }
            if !stream {
                return json_response(200, &response);
            }
            let mut events = vec![format!(
                "event: response.created\ndata: {}\n\n",
                json!({"type": "response.created", "sequence_number": 0, "response": {"id": "resp_mock", "object": "response", "status": "in_progress", "model": model, "output": []}})
            )];
            for (i, w) in text.iter().enumerate() {
                let delta = json!({"type": "response.output_text.delta", "sequence_number": i + 1, "item_id": "msg_mock", "output_index": 0, "content_index": 0, "delta": w});
                events.push(format!("event: response.output_text.delta\ndata: {delta}\n\n"));
            }
            let done = json!({"type": "response.completed", "sequence_number": text.len() + 1, "response": response});
            events.push(format!("event: response.completed\ndata: {done}\n\n"));
            (events, "text/event-stream")
        }
        p if p.ends_with("/v1/messages/count_tokens") => {
            return json_response(200, &json!({"input_tokens": 42}));
        }
        p if p.ends_with("/v1/messages") => {
            let usage = json!({"input_tokens": 17, "cache_read_input_tokens": 5, "cache_creation_input_tokens": 2, "output_tokens": claimed});
            if !stream {
                let mut value = json!({"id": "msg_mock", "type": "message", "role": "assistant", "model": model,
                    "content": [{"type": "text", "text": text.concat()}], "stop_reason": "end_turn", "stop_sequence": null});
                value["usage"] =
                    if with_usage { usage } else { json!({"input_tokens": 0, "output_tokens": 0}) };
                return json_response(200, &value);
            }
            let start_usage = if with_usage {
                json!({"input_tokens": 17, "cache_read_input_tokens": 5, "cache_creation_input_tokens": 2, "output_tokens": 1})
            } else {
                json!({})
            };
            let mut events = vec![
                format!(
                    "event: message_start\ndata: {}\n\n",
                    json!({"type": "message_start", "message": {"id": "msg_mock", "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": null, "stop_sequence": null, "usage": start_usage}})
                ),
                format!(
                    "event: content_block_start\ndata: {}\n\n",
                    json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
                ),
            ];
            for w in &text {
                events.push(format!("event: content_block_delta\ndata: {}\n\n", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}})));
            }
            events.push(format!(
                "event: content_block_stop\ndata: {}\n\n",
                json!({"type": "content_block_stop", "index": 0})
            ));
            let delta_usage = if with_usage { json!({"output_tokens": claimed}) } else { json!({}) };
            events.push(format!("event: message_delta\ndata: {}\n\n", json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": delta_usage})));
            events.push(format!("event: message_stop\ndata: {}\n\n", json!({"type": "message_stop"})));
            (events, "text/event-stream")
        }
        _ => return json_response(404, &json!({"error": {"message": format!("mock has no {path}")}})),
    };
    stream_response(events, content_type, mode)
}

/// A stream whose second event never ends (see [`Mode::EndlessEvent`]).
fn endless_event(bytes: usize) -> Response<Body> {
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
    tokio::spawn(async move {
        let first = format!(
            "data: {}\n\ndata: \"",
            json!({"id": "c", "object": "chat.completion.chunk", "created": 1,
            "model": "m", "choices": [{"index": 0, "delta": {"content": "tok0 "}, "finish_reason": null}]})
        );
        if sender.send(Ok(Frame::data(Bytes::from(first)))).await.is_err() {
            return;
        }
        let piece = Bytes::from(vec![b'x'; 64 * 1024]);
        let mut sent = 0;
        while sent < bytes {
            if sender.send(Ok(Frame::data(piece.clone()))).await.is_err() {
                return;
            }
            sent += piece.len();
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(receiver);
    let mut response = Response::new(StreamBody::new(stream).boxed());
    response.headers_mut().insert("content-type", "text/event-stream".parse().expect("header"));
    response
}

fn stream_response(events: Vec<String>, content_type: &'static str, mode: Mode) -> Response<Body> {
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
    tokio::spawn(async move {
        for (i, event) in events.into_iter().enumerate() {
            if let (1.., Mode::Stepped(permits)) = (i, &mode) {
                // Every event after the first waits for a permit of its own, used up.
                match permits.acquire().await {
                    Ok(permit) => permit.forget(),
                    Err(_) => return,
                }
            }
            if matches!(mode, Mode::BreakStream) && i == 2 {
                return; // Dropping the sender ends the body early: the connection breaks off.
            }
            if sender.send(Ok(Frame::data(Bytes::from(event)))).await.is_err() {
                return;
            }
            if let (0, Mode::HoldAfterFirstChunk(release)) = (i, &mode) {
                release.notified().await;
            }

            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(receiver);
    let mut response = Response::new(StreamBody::new(stream).boxed());
    response.headers_mut().insert("content-type", content_type.parse().expect("header"));
    response.headers_mut().insert("cache-control", "no-cache".parse().expect("header"));
    with_account_headers(response)
}

/// An error body in the provider's documented shape for `path`.
fn provider_error(path: &str, status: u16, message: &str) -> Value {
    if path.ends_with("/v1/messages") || path.ends_with("/v1/messages/count_tokens") {
        let kind = match status {
            400 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            529 => "overloaded_error",
            _ => "api_error",
        };
        json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_mock"})
    } else {
        let (kind, code) = match status {
            400 | 404 | 413 | 422 => ("invalid_request_error", Value::Null),
            401 => ("invalid_request_error", json!("invalid_api_key")),
            429 => ("requests", json!("rate_limit_exceeded")),
            _ => ("server_error", Value::Null),
        };
        json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
    }
}

/// A [`Reply`] in the protocol of `path`, whole or streamed as the request asks.
fn scripted(path: &str, request: &Value, reply: &Reply, mode: Mode) -> Response<Body> {
    let model = request["model"].as_str().unwrap_or("mock");
    let stream = request["stream"].as_bool().unwrap_or(false);
    let mut usage = reply.usage;
    match mode {
        Mode::ClaimOutputTokens(claimed) => usage.output = claimed,
        Mode::NoUsage => usage = ReplyUsage::default(),
        _ => {}
    }
    let with_usage = !matches!(mode, Mode::NoUsage);
    if path.ends_with("/chat/completions") {
        let include_usage =
            with_usage && request["stream_options"]["include_usage"].as_bool().unwrap_or(false);
        let usage = with_usage.then(|| chat_usage(&usage, reply));
        if stream {
            stream_response(
                chat_events(model, reply, usage.filter(|_| include_usage)),
                "text/event-stream",
                mode,
            )
        } else {
            json_response(200, &chat_answer(model, reply, usage))
        }
    } else if stream {
        stream_response(messages_events(model, reply, &usage, with_usage), "text/event-stream", mode)
    } else {
        json_response(200, &messages_answer(model, reply, &usage, with_usage))
    }
}

/// OpenAI's usage object: every prompt token in `prompt_tokens`, the cache reads in
/// `prompt_tokens_details.cached_tokens`, reasoning tokens (part of the completion) in
/// `completion_tokens_details`.
fn chat_usage(usage: &ReplyUsage, reply: &Reply) -> Value {
    let prompt = usage.input + usage.cached + usage.cache_write;
    let reasoning =
        if reply.reasoning.is_empty() { 0 } else { usage.output.min(reply.reasoning.len() as u64) };
    json!({"prompt_tokens": prompt, "completion_tokens": usage.output, "total_tokens": prompt + usage.output,
        "prompt_tokens_details": {"cached_tokens": usage.cached},
        "completion_tokens_details": {"reasoning_tokens": reasoning}})
}

/// A whole `chat.completion`.
fn chat_answer(model: &str, reply: &Reply, usage: Option<Value>) -> Value {
    let mut message = json!({"role": "assistant", "content": if reply.text.is_empty() { Value::Null } else { json!(reply.text()) }});
    if !reply.reasoning.is_empty() {
        message["reasoning_content"] = json!(reply.reasoning());
    }
    if !reply.tool_calls.is_empty() {
        message["tool_calls"] = reply
            .tool_calls
            .iter()
            .map(|call| json!({"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments()}}))
            .collect();
    }
    let mut answer = json!({"id": "chatcmpl-mock", "object": "chat.completion", "created": 1, "model": model,
        "system_fingerprint": "fp_mock",
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": reply.stop.chat()}]});
    if let Some(usage) = usage {
        answer["usage"] = usage;
    }
    answer
}

/// A `chat.completion.chunk` stream: the role first, then one chunk per reasoning piece, text
/// piece and tool-call piece (a call's first chunk carries its id and name, the rest only
/// argument pieces), the `finish_reason` in a chunk of its own, the usage chunk (empty
/// `choices`) when asked for, `[DONE]`.
fn chat_events(model: &str, reply: &Reply, usage: Option<Value>) -> Vec<String> {
    let chunk = |delta: Value, finish: Value| {
        let chunk = json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1, "model": model,
            "system_fingerprint": "fp_mock", "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
        format!("data: {chunk}\n\n")
    };
    let first = if reply.reasoning.is_empty() {
        json!({"role": "assistant", "content": ""})
    } else {
        json!({"role": "assistant", "content": null, "reasoning_content": ""})
    };
    let mut events = vec![chunk(first, Value::Null)];
    for piece in &reply.reasoning {
        events.push(chunk(json!({"content": null, "reasoning_content": piece}), Value::Null));
    }
    for piece in &reply.text {
        events.push(chunk(json!({"content": piece}), Value::Null));
    }
    for (index, call) in reply.tool_calls.iter().enumerate() {
        events.push(chunk(
            json!({"tool_calls": [{"index": index, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}]}),
            Value::Null,
        ));
        for piece in &call.arguments {
            events.push(chunk(
                json!({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}),
                Value::Null,
            ));
        }
    }
    events.push(chunk(json!({}), json!(reply.stop.chat())));
    if let Some(usage) = usage {
        let chunk = json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1, "model": model,
            "system_fingerprint": "fp_mock", "choices": [], "usage": usage});
        events.push(format!("data: {chunk}\n\n"));
    }
    events.push("data: [DONE]\n\n".to_owned());
    events
}

/// Anthropic's usage object.
fn messages_usage(usage: &ReplyUsage, output: u64) -> Value {
    json!({"input_tokens": usage.input, "cache_creation_input_tokens": usage.cache_write,
        "cache_read_input_tokens": usage.cached, "output_tokens": output})
}

/// The signature Anthropic puts on a thinking block (opaque; the mock's is fixed).
pub const SIGNATURE: &str = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds";

/// A whole Anthropic `message`: thinking, text, then `tool_use` blocks.
fn messages_answer(model: &str, reply: &Reply, usage: &ReplyUsage, with_usage: bool) -> Value {
    let mut content = Vec::new();
    if !reply.reasoning.is_empty() {
        content.push(json!({"type": "thinking", "thinking": reply.reasoning(), "signature": SIGNATURE}));
    }
    if !reply.text.is_empty() {
        content.push(json!({"type": "text", "text": reply.text()}));
    }
    for call in &reply.tool_calls {
        let input: Value = serde_json::from_str(&call.arguments()).expect("tool arguments are JSON");
        content.push(json!({"type": "tool_use", "id": call.id, "name": call.name, "input": input}));
    }
    let usage = if with_usage {
        messages_usage(usage, usage.output)
    } else {
        json!({"input_tokens": 0, "output_tokens": 0})
    };
    json!({"id": "msg_mock", "type": "message", "role": "assistant", "model": model, "content": content,
        "stop_reason": reply.stop.anthropic(), "stop_sequence": reply.stop.sequence(), "usage": usage})
}

/// An Anthropic event stream: `message_start` (input and cache usage), a `ping`, one block per
/// part (thinking deltas and a `signature_delta`; text deltas; `tool_use` with
/// `input_json_delta` pieces), `message_delta` (stop reason, output usage), `message_stop`.
fn messages_events(model: &str, reply: &Reply, usage: &ReplyUsage, with_usage: bool) -> Vec<String> {
    let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let start_usage = if with_usage { messages_usage(usage, 1) } else { json!({}) };
    let mut events = vec![
        event(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_mock", "type": "message", "role": "assistant",
                "model": model, "content": [], "stop_reason": null, "stop_sequence": null, "usage": start_usage}}),
        ),
        event("ping", json!({"type": "ping"})),
    ];
    let mut index = 0;
    let mut block = |events: &mut Vec<String>, start: Value, deltas: Vec<Value>| {
        events.push(event(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": start}),
        ));
        for delta in deltas {
            events.push(event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index, "delta": delta}),
            ));
        }
        events.push(event("content_block_stop", json!({"type": "content_block_stop", "index": index})));
        index += 1;
    };
    if !reply.reasoning.is_empty() {
        let mut deltas: Vec<Value> = reply
            .reasoning
            .iter()
            .map(|piece| json!({"type": "thinking_delta", "thinking": piece}))
            .collect();
        deltas.push(json!({"type": "signature_delta", "signature": SIGNATURE}));
        block(&mut events, json!({"type": "thinking", "thinking": "", "signature": ""}), deltas);
    }
    if !reply.text.is_empty() {
        let deltas = reply.text.iter().map(|piece| json!({"type": "text_delta", "text": piece})).collect();
        block(&mut events, json!({"type": "text", "text": ""}), deltas);
    }
    for call in &reply.tool_calls {
        let deltas = call
            .arguments
            .iter()
            .map(|piece| json!({"type": "input_json_delta", "partial_json": piece}))
            .collect();
        block(
            &mut events,
            json!({"type": "tool_use", "id": call.id, "name": call.name, "input": {}}),
            deltas,
        );
    }
    let delta_usage = if with_usage { json!({"output_tokens": usage.output}) } else { json!({}) };
    events.push(event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": reply.stop.anthropic(), "stop_sequence": reply.stop.sequence()}, "usage": delta_usage}),
    ));
    events.push(event("message_stop", json!({"type": "message_stop"})));
    events
}
