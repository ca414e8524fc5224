//! A fast mock upstream: OpenAI chat completions (JSON, or SSE with a configurable number of
//! chunks and delay) and Anthropic messages, always with usage.
//!
//! Every SSE chunk carries `"bench_ts_ns"`, the wall-clock send time, so a client on the same
//! machine can measure per-chunk latency through whatever sits in between. A content chunk
//! also carries the same time inside its text, as `@ts=<ns>;` (see [`TS_MARKER`]): a protocol
//! conversion (a Chat upstream answering an Anthropic Messages client) drops unknown top-level
//! fields but passes the text on.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Either, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpListener;

use crate::cli::MockArgs;

/// The body of every mock answer.
pub type MockBody =
    Either<Full<Bytes>, StreamBody<futures::stream::BoxStream<'static, Result<Frame<Bytes>, Infallible>>>>;

/// The fields of a chat request the mock looks at.
#[derive(Debug, Default, Deserialize)]
struct ChatRequest<'a> {
    #[serde(borrow, default)]
    model: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

#[derive(Debug, Default, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// How streamed answers are shaped.
#[derive(Debug, Clone, Copy)]
struct StreamShape {
    chunks: u32,
    delay: Duration,
}

/// Serves until the process is stopped; prints `listening on ADDR` on stdout once bound.
pub async fn serve(args: MockArgs) -> anyhow::Result<()> {
    let listener = TcpListener::bind(&args.listen).await?;
    println!("listening on {}", listener.local_addr()?);
    let shape =
        Arc::new(StreamShape { chunks: args.chunks, delay: Duration::from_millis(args.chunk_delay_ms) });
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let shape = Arc::clone(&shape);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| handle(request, *shape));
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(request: Request<Incoming>, shape: StreamShape) -> Result<Response<MockBody>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Ok(plain(StatusCode::BAD_REQUEST, "bad body")),
    };
    let response = match (&parts.method, parts.uri.path()) {
        (&Method::POST, "/v1/chat/completions") => chat(&body, shape),
        (&Method::POST, "/v1/messages") => json(anthropic_message()),
        (&Method::GET, "/healthz") => plain(StatusCode::OK, "ok\n"),
        _ => plain(StatusCode::NOT_FOUND, "not found"),
    };
    Ok(response)
}

fn chat(body: &[u8], shape: StreamShape) -> Response<MockBody> {
    let Ok(request) = serde_json::from_slice::<ChatRequest<'_>>(body) else {
        return plain(StatusCode::BAD_REQUEST, "invalid json");
    };
    let model = request.model.as_deref().unwrap_or("bench-model").to_owned();
    if !request.stream {
        return json(chat_completion(&model));
    }
    let include_usage = request.stream_options.is_some_and(|o| o.include_usage);
    let frames = sse_frames(model, shape, include_usage);
    let mut response = Response::new(Either::Right(StreamBody::new(frames)));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/event-stream"));
    response.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-cache"));
    response
}

fn sse_frames(
    model: String,
    shape: StreamShape,
    include_usage: bool,
) -> futures::stream::BoxStream<'static, Result<Frame<Bytes>, Infallible>> {
    use futures::StreamExt;
    // Events: `chunks` content chunks, an optional usage chunk, then [DONE].
    let total = shape.chunks + u32::from(include_usage) + 1;
    futures::stream::unfold(0u32, move |index| {
        let model = model.clone();
        async move {
            if index >= total {
                return None;
            }
            if index > 0 && index < shape.chunks && !shape.delay.is_zero() {
                tokio::time::sleep(shape.delay).await;
            }
            let event = if index < shape.chunks {
                content_chunk(&model, index)
            } else if include_usage && index == shape.chunks {
                usage_chunk(&model, shape.chunks)
            } else {
                "data: [DONE]\n\n".to_owned()
            };
            Some((Ok(Frame::data(Bytes::from(event))), index + 1))
        }
    })
    .boxed()
}

fn now_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default()
}

/// What precedes the send time (ns, then `;`) inside a content chunk's text.
pub const TS_MARKER: &str = "@ts=";

pub(crate) fn content_chunk(model: &str, index: u32) -> String {
    let role = if index == 0 { r#""role":"assistant","# } else { "" };
    let ts = now_ns();
    format!(
        "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"{model}\",\"bench_ts_ns\":{ts},\"choices\":[{{\"index\":0,\"delta\":{{{role}\"content\":\"tok{index} {TS_MARKER}{ts}; \"}},\"finish_reason\":null}}]}}\n\n"
    )
}

fn usage_chunk(model: &str, chunks: u32) -> String {
    format!(
        "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"{model}\",\"bench_ts_ns\":{ts},\"choices\":[],\"usage\":{{\"prompt_tokens\":12,\"completion_tokens\":{chunks},\"total_tokens\":{total}}}}}\n\n",
        ts = now_ns(),
        total = 12 + chunks
    )
}

fn chat_completion(model: &str) -> String {
    format!(
        r#"{{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"{model}","choices":[{{"index":0,"message":{{"role":"assistant","content":"Hello from the mock upstream."}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19}}}}"#
    )
}

fn anthropic_message() -> String {
    r#"{"id":"msg_bench","type":"message","role":"assistant","model":"bench-model","content":[{"type":"text","text":"Hello from the mock upstream."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":7}}"#.to_owned()
}

fn json(body: String) -> Response<MockBody> {
    let mut response = Response::new(Either::Left(Full::new(Bytes::from(body))));
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    response
}

fn plain(status: StatusCode, text: &'static str) -> Response<MockBody> {
    let mut response = Response::new(Either::Left(Full::new(Bytes::from_static(text.as_bytes()))));
    *response.status_mut() = status;
    response
}
