//! A mock upstream provider speaking OpenAI (chat, completions, embeddings, responses) and
//! Anthropic (messages, count_tokens), JSON and SSE, with usage — plus ways to misbehave.
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
use tokio::sync::Notify;

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
        let state = Arc::new(State { mode: Mutex::new(Mode::Normal), seen: Mutex::new(Vec::new()), chunks });
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
        _ => {}
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

fn stream_response(events: Vec<String>, content_type: &'static str, mode: Mode) -> Response<Body> {
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
    tokio::spawn(async move {
        for (i, event) in events.into_iter().enumerate() {
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
