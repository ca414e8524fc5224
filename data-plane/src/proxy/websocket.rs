//! Codex's WebSocket transport of `/v1/responses` (INTERFACE.md, "Coding agents").
//!
//! `GET /v1/responses` with `Upgrade: websocket` is authenticated like a `POST` (401, no
//! upgrade, for a bad key), then upgraded (RFC 6455; no extensions, so a client's offer of
//! `permessage-deflate` is declined). On the socket each text message
//! `{"type": "response.create", …}` is one Responses request: its other fields, with
//! `stream: true`, go through the same request path as a `POST` ([`super::handle_read`]:
//! key, body, model, access, routing, admission, conversion, metering, usage report), and the
//! answer's events go back one per text message (each event's JSON, as the SSE `data:`
//! payload). Requests on one socket are served one after another.
//!
//! What Codex relies on beyond that, done here because no HTTP upstream offers it:
//! - Incremental input. On a socket Codex sends `previous_response_id` (the socket's last
//!   completed response) with only the input items that came after it, as OpenAI's socket
//!   keeps the previous request's context in the connection. So does this one: the last
//!   completed response's full input and output items (ids dropped, as Codex sends them over
//!   HTTP) are kept, at most one such context per socket and never more than the body limit;
//!   a request continuing from that response is sent upstream whole (its context, then its
//!   new items, without `previous_response_id`), so it runs on any channel, native or
//!   converted, and on upstreams with `store: false`. Any other `previous_response_id` is
//!   passed through untouched, for upstreams that keep state (native `responses` channels;
//!   a converted one refuses it with a 400 naming the field).
//! - Warm-up. `generate: false` (Codex's pre-warm, sent first with the session's tools and
//!   instructions) produces nothing: it is answered here with `response.created` and
//!   `response.completed` (no output, zero usage), free, no usage record, nothing upstream;
//!   its input becomes the context the next request continues from.
//!
//! Errors: a refusal or failure of one request is one `error` event, Responses-shaped
//! (`{"type": "error", "status": 429, "code": …, "message": …, "error": {…}}`, the HTTP error
//! body's `error` object and status, `headers` with `retry-after` / `x-should-retry` when the
//! HTTP answer has them); the socket stays open for the next request — except for a key that
//! is no longer valid (revoked, expired, deleted: 401), after whose `error` event the socket is
//! closed with 1008 (policy violation). A malformed message (not JSON, not an object, an
//! unknown `type`, a binary message) gets an `error` event with status 400. A message over the
//! body limit (`--max-body-bytes`) closes the socket with 1009 (message too big).
//!
//! Connection rules: the socket keeps the connection's `--max-connections` permit until it
//! closes; a socket with no request for `--keep-alive-timeout` is closed with 1000 (Codex opens
//! a new one for its next turn). Pings are answered with pongs at any time, also while an
//! answer streams; a client's close is answered and ends the socket (an answer still streaming
//! is then abandoned and billed for what was produced, as a `POST` whose client goes away).
use std::{borrow::Cow, collections::BTreeMap, sync::Arc, time::Duration};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::watch;
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{
        Message, Utf8Bytes,
        error::{CapacityError, Error as WsError},
        handshake::derive_accept_key,
        protocol::{CloseFrame, Role, WebSocketConfig, frame::coding::CloseCode},
    },
};

use super::{
    auth,
    endpoint::Endpoint,
    error::{ApiError, ErrorCode, SHOULD_RETRY},
    stream::Parser,
};
use crate::{
    app::App,
    body::{ResponseBody, empty},
};

/// A worker's WebSocket sessions: each holds a receiver of `stop`, so a stopping worker tells
/// them all and waits until the last one is gone.
#[derive(Clone)]
pub struct Sockets {
    stop: Arc<watch::Sender<bool>>,
}

impl Default for Sockets {
    fn default() -> Sockets {
        Sockets { stop: Arc::new(watch::Sender::new(false)) }
    }
}

impl Sockets {
    /// Tells every session to close: at once when idle, after its answer when one streams.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Completes when no session is left.
    pub async fn closed(&self) {
        self.stop.closed().await;
    }

    fn watch(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }
}

/// Whether a request asks for a WebSocket (`Upgrade: websocket`).
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    has_token(headers, header::UPGRADE, "websocket")
}

fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// `GET /v1/responses`: the key checked as for `POST`, then the WebSocket handshake; the
/// session runs on its own task once hyper hands the connection over.
pub fn upgrade(
    app: &Arc<App>,
    mut request: Request<Incoming>,
    peer: std::net::IpAddr,
) -> Response<ResponseBody> {
    let endpoint = Endpoint::Responses;
    let refuse = |error: ApiError| {
        app.metrics.refused(endpoint.as_str(), error.code.as_str());
        error.response(false)
    };
    {
        let policy = app.policy.load();
        let now = crate::app::unix_micros();
        if let Err(error) = auth::admit(&policy, request.headers(), now, &app.auth_backoff, peer) {
            return refuse(error);
        }
    }
    let headers = request.headers();
    let bad = |message: &str| ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, message);
    if !wants_upgrade(headers) {
        let mut response = refuse(ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            ErrorCode::InvalidRequest,
            "GET /v1/responses is the WebSocket transport (send Upgrade: websocket); POST serves one request",
        ));
        response.headers_mut().insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        return response;
    }
    if request.version() != Version::HTTP_11 {
        return refuse(bad("a WebSocket is opened over HTTP/1.1"));
    }
    if !has_token(headers, header::CONNECTION, "upgrade") {
        return refuse(bad("a WebSocket handshake needs Connection: Upgrade"));
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).map(HeaderValue::as_bytes) != Some(b"13") {
        let mut response = refuse(ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            ErrorCode::InvalidRequest,
            "only WebSocket version 13 is spoken",
        ));
        response.headers_mut().insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        return response;
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY).filter(|k| k.len() == 24) else {
        return refuse(bad("a WebSocket handshake needs a Sec-WebSocket-Key"));
    };
    let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) else {
        return refuse(bad("a WebSocket handshake needs a Sec-WebSocket-Key"));
    };
    let on_upgrade = hyper::upgrade::on(&mut request);
    let head = request_head(&request);
    let app = Arc::clone(app);
    let stopping = app.sockets.watch();
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => Session::new(app, head, stopping).run(TokioIo::new(upgraded)).await,
            Err(error) => tracing::debug!(%error, "the WebSocket upgrade did not complete"),
        }
    });
    let mut response = Response::new(empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    response
}

/// The head each request on the socket is served with: a `POST` carrying the upgrade
/// request's headers (its key, session and protocol headers), less the handshake's own.
fn request_head(request: &Request<Incoming>) -> http::request::Parts {
    let (mut head, ()) = Request::new(()).into_parts();
    head.method = Method::POST;
    head.uri = request.uri().clone();
    for (name, value) in request.headers() {
        let socket_only = name.as_str().starts_with("sec-websocket-")
            || (name.as_str() == "openai-beta" && value.as_bytes().starts_with(b"responses_websockets"));
        if !socket_only && name != header::CONTENT_LENGTH {
            head.headers.append(name.clone(), value.clone());
        }
    }
    head.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    head
}

/// What a socket remembers of its last completed response: its id and the whole context a
/// request continuing from it starts with (the response's input, then its output).
struct Context {
    id: String,
    items: Vec<Arc<RawValue>>,
}

/// A `response.create` made ready for the request path.
struct Create {
    /// The body of the equivalent `POST` (`stream: true`).
    body: String,
    /// Its whole input, for the context of the next request.
    items: Vec<Arc<RawValue>>,
    /// `generate: false`: a warm-up.
    warmup: bool,
    /// The model asked for (a warm-up's answer names it).
    model: Option<Box<RawValue>>,
    /// Whether it continues the socket's last response (sent with its context).
    continued: bool,
}

/// How a request's turn ended.
enum Turn {
    /// Ready for the next message.
    Next,
    /// The socket is over (closed by either side, or broken).
    End,
}

type Sink = futures::stream::SplitSink<WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>, Message>;
type Source = futures::stream::SplitStream<WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>>;

struct Session {
    app: Arc<App>,
    head: http::request::Parts,
    /// Whether the worker is stopping.
    stopping: watch::Receiver<bool>,
    last: Option<Context>,
    /// A message that arrived while an answer was streaming, served next.
    pending: Option<Utf8Bytes>,
}

/// How long a closing socket waits for the client's close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Longest close reason (RFC 6455 5.5: a control frame's payload is at most 125 bytes).
const MAX_REASON: usize = 120;

/// An upstream's whole answer (an error, or one not streamed although asked to), at most
/// [`MAX_ANSWER_BYTES`](super::forward::MAX_ANSWER_BYTES): a lying upstream cannot grow the
/// data plane's memory without bound; what cannot be read is an empty answer.
async fn read_answer<B>(body: B) -> Bytes
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    http_body_util::Limited::new(body, super::forward::MAX_ANSWER_BYTES)
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .unwrap_or_default()
}

impl Session {
    fn new(app: Arc<App>, head: http::request::Parts, stopping: watch::Receiver<bool>) -> Session {
        Session { app, head, stopping, last: None, pending: None }
    }

    async fn run(mut self, io: TokioIo<hyper::upgrade::Upgraded>) {
        let limit = self.app.config.max_body_bytes;
        let config = WebSocketConfig::default().max_message_size(Some(limit)).max_frame_size(Some(limit));
        let socket = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
        let (mut sink, mut source) = socket.split();
        let idle = self.app.config.keep_alive_timeout;
        let mut stopping = self.stopping.clone();
        // Idle since the last answer ended (pings do not count: they are not requests).
        let mut idle_until = tokio::time::Instant::now() + idle;
        loop {
            if *stopping.borrow() {
                close(&mut sink, &mut source, CloseCode::Away, "the data plane is shutting down").await;
                return;
            }
            let text = match self.pending.take() {
                Some(text) => text,
                None => {
                    let next = tokio::select! {
                        next = tokio::time::timeout_at(idle_until, source.next()) => next,
                        Ok(()) = stopping.changed() => continue,
                    };
                    match next {
                        Err(_) => {
                            let reason = format!("idle for {} s", idle.as_secs());
                            close(&mut sink, &mut source, CloseCode::Normal, &reason).await;
                            return;
                        }
                        Ok(None) => return,
                        Ok(Some(Err(WsError::Capacity(CapacityError::MessageTooLong {
                            size,
                            max_size,
                        })))) => {
                            let reason =
                                format!("a message of {size} bytes is over the {max_size}-byte limit");
                            close(&mut sink, &mut source, CloseCode::Size, &reason).await;
                            return;
                        }
                        Ok(Some(Err(error))) => {
                            tracing::debug!(%error, "WebSocket session ended");
                            return;
                        }
                        Ok(Some(Ok(Message::Text(text)))) => text,
                        Ok(Some(Ok(Message::Binary(_)))) => {
                            let error =
                                invalid("binary messages are not understood: send response.create as text");
                            if send(&mut sink, error_event(&error)).await.is_err() {
                                return;
                            }
                            continue;
                        }
                        // Pings are answered by the protocol layer; a close is answered there
                        // and the next read ends the stream.
                        Ok(Some(Ok(_))) => continue,
                    }
                }
            };
            if let Turn::End = self.turn(&text, &mut sink, &mut source).await {
                return;
            }
            idle_until = tokio::time::Instant::now() + idle;
        }
    }

    /// Serves one message.
    async fn turn(&mut self, text: &str, sink: &mut Sink, source: &mut Source) -> Turn {
        let create = match prepare(text, self.last.as_ref(), self.app.config.max_body_bytes) {
            Ok(Some(create)) => create,
            Ok(None) => return Turn::Next,
            Err(error) => return self.refused(&error, sink, source).await,
        };
        if create.warmup {
            tracing::debug!(continued = create.continued, "a WebSocket warm-up");
            return self.warm_up(create, sink, source).await;
        }
        let request_id = crate::server::request_id();
        tracing::debug!(%request_id, continued = create.continued, items = create.items.len(), "a request on a WebSocket");
        let response = super::handle_read(
            &self.app,
            Endpoint::Responses,
            &self.head,
            Bytes::from(create.body),
            Arc::clone(&request_id),
        )
        .await;
        let (head, body) = response.into_parts();
        if !head.status.is_success() {
            let bytes = read_answer(body).await;
            let event = upstream_error_event(head.status, &head.headers, &bytes);
            if send(sink, event).await.is_err() {
                return Turn::End;
            }
            if head.status == StatusCode::UNAUTHORIZED {
                close(sink, source, CloseCode::Policy, &reason_of(&bytes)).await;
                return Turn::End;
            }
            return Turn::Next;
        }
        let streamed = head
            .headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        let seen = if streamed {
            match self.relay(body, sink, source).await {
                Some(seen) => seen,
                None => return Turn::End,
            }
        } else {
            // An upstream that answered whole although asked to stream: its answer as the
            // final event.
            let bytes = read_answer(body).await;
            let event =
                format!(r#"{{"type":"response.completed","response":{}}}"#, String::from_utf8_lossy(&bytes));
            let mut seen = Seen::default();
            seen.note(event.as_bytes());
            if send(sink, Utf8Bytes::from(event)).await.is_err() {
                return Turn::End;
            }
            seen
        };
        if let Some(id) = seen.completed {
            let mut items = create.items;
            items.extend(seen.output);
            self.last = Some(Context { id, items });
        }
        Turn::Next
    }

    /// Relays an answer's events, one text message each, while answering pings and keeping a
    /// message that arrives meanwhile. `None`: the socket is over.
    async fn relay(&mut self, mut body: ResponseBody, sink: &mut Sink, source: &mut Source) -> Option<Seen> {
        let mut parser = Parser::default();
        let mut seen = Seen::default();
        loop {
            tokio::select! {
                frame = body.frame() => match frame {
                    None => return Some(seen),
                    Some(Err(error)) => {
                        tracing::debug!(%error, "an answer relayed over a WebSocket broke");
                        return Some(seen);
                    }
                    Some(Ok(frame)) => {
                        let Ok(data) = frame.into_data() else { continue };
                        parser.push(&data);
                        let mut sent = false;
                        while let Some(event) = parser.next_event() {
                            if event.data.is_empty() || event.data.as_ref() == b"[DONE]" {
                                continue;
                            }
                            seen.note(&event.data);
                            let text = Utf8Bytes::try_from(event.data.clone())
                                .unwrap_or_else(|_| Utf8Bytes::from(String::from_utf8_lossy(&event.data).into_owned()));
                            if sink.feed(Message::Text(text)).await.is_err() {
                                return None;
                            }
                            sent = true;
                        }
                        if sent && sink.flush().await.is_err() {
                            return None;
                        }
                    }
                },
                message = source.next() => match message {
                    Some(Ok(Message::Text(text))) => {
                        if self.pending.is_some() {
                            let error = invalid("one request at a time: wait for the answer before the next response.create");
                            if send(sink, error_event(&error)).await.is_err() {
                                return None;
                            }
                        } else {
                            self.pending = Some(text);
                        }
                    }
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return None,
                    Some(Ok(_)) => {}
                },
            }
        }
    }

    /// `generate: false`: answered here, free.
    async fn warm_up(&mut self, create: Create, sink: &mut Sink, source: &mut Source) -> Turn {
        {
            let policy = self.app.policy.load();
            if let Err(error) = auth::authenticate(&policy, &self.head.headers, crate::app::unix_micros()) {
                return self.refused(&error, sink, source).await;
            }
        }
        let id = format!("resp_{}", uuid::Uuid::now_v7().simple());
        let created_at = crate::app::unix_micros() / 1_000_000;
        let model = create.model.as_deref().map_or("null", RawValue::get);
        let response = |status: &str, usage: &str| {
            format!(
                r#"{{"id":"{id}","object":"response","created_at":{created_at},"status":"{status}","model":{model},"output":[],"usage":{usage}}}"#
            )
        };
        let usage = r#"{"input_tokens":0,"input_tokens_details":{"cached_tokens":0},"output_tokens":0,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":0}"#;
        let created = format!(
            r#"{{"type":"response.created","sequence_number":0,"response":{}}}"#,
            response("in_progress", "null")
        );
        let completed = format!(
            r#"{{"type":"response.completed","sequence_number":1,"response":{}}}"#,
            response("completed", usage)
        );
        if send(sink, Utf8Bytes::from(created)).await.is_err()
            || send(sink, Utf8Bytes::from(completed)).await.is_err()
        {
            return Turn::End;
        }
        self.last = Some(Context { id, items: create.items });
        Turn::Next
    }

    /// A request refused before the request path: its `error` event, and for a key no longer
    /// valid the close.
    async fn refused(&mut self, error: &ApiError, sink: &mut Sink, source: &mut Source) -> Turn {
        self.app.metrics.refused(Endpoint::Responses.as_str(), error.code.as_str());
        if send(sink, error_event(error)).await.is_err() {
            return Turn::End;
        }
        if error.status == StatusCode::UNAUTHORIZED {
            close(sink, source, CloseCode::Policy, &error.message).await;
            return Turn::End;
        }
        Turn::Next
    }
}

/// Reads a message: `None` for one that needs no answer (`response.processed`).
fn prepare(text: &str, last: Option<&Context>, limit: usize) -> Result<Option<Create>, ApiError> {
    let mut fields: BTreeMap<String, &RawValue> = serde_json::from_str(text).map_err(|e| {
        invalid(format!("a message is one JSON object, {{\"type\": \"response.create\", …}}: {e}"))
    })?;
    let kind = fields.remove("type").map(|v| serde_json::from_str::<Cow<'_, str>>(v.get()));
    match kind {
        Some(Ok(kind)) if kind == "response.create" => {}
        // Codex tells the server it has handled an answer; nothing to do.
        Some(Ok(kind)) if kind == "response.processed" => return Ok(None),
        Some(Ok(kind)) => {
            return Err(invalid(format!(
                "unknown message type `{}` (expected response.create)",
                super::error::echo(&kind)
            )));
        }
        Some(Err(_)) | None => return Err(invalid("a message needs \"type\": \"response.create\"")),
    }
    let warmup = match fields.remove("generate").map(|v| serde_json::from_str::<Option<bool>>(v.get())) {
        None | Some(Ok(None | Some(true))) => false,
        Some(Ok(Some(false))) => true,
        Some(Err(_)) => return Err(invalid("`generate` must be true or false")),
    };
    fields.remove("stream");
    let previous = match fields.remove("previous_response_id") {
        None => None,
        Some(raw) => serde_json::from_str::<Option<String>>(raw.get())
            .map_err(|_| invalid("`previous_response_id` must be a string"))?,
    };
    let input = fields.remove("input");
    let new_items: Vec<Arc<RawValue>> = match input {
        None => Vec::new(),
        Some(raw) if raw.get().starts_with('"') => {
            let text: String =
                serde_json::from_str(raw.get()).map_err(|_| invalid("`input` is not a string"))?;
            let item = serde_json::json!({"role": "user", "content": text}).to_string();
            vec![Arc::from(RawValue::from_string(item).map_err(|_| invalid("`input` is not a string"))?)]
        }
        Some(raw) if raw.get() == "null" => Vec::new(),
        Some(raw) => serde_json::from_str::<Vec<&RawValue>>(raw.get())
            .map_err(|_| invalid("`input` must be a string or an array of items"))?
            .into_iter()
            .map(|item| Arc::from(item.to_owned()))
            .collect(),
    };
    let continued = last.filter(|last| previous.as_deref() == Some(last.id.as_str()));
    let items: Vec<Arc<RawValue>> = match continued {
        Some(last) => last.items.iter().cloned().chain(new_items).collect(),
        None => new_items,
    };
    let model = fields.get("model").map(|m| (*m).to_owned());
    let mut body = String::with_capacity(text.len() + continued.map_or(0, |c| json_len(&c.items)));
    body.push('{');
    for (name, value) in &fields {
        push_member(&mut body, name, value.get());
    }
    match (continued, input) {
        // The socket's own context, whole: no `previous_response_id` for the upstream.
        (Some(_), _) => push_items(&mut body, &items),
        (None, Some(raw)) => push_member(&mut body, "input", raw.get()),
        (None, None) => {}
    }
    if continued.is_none()
        && let Some(previous) = &previous
    {
        push_member(
            &mut body,
            "previous_response_id",
            &serde_json::Value::from(previous.as_str()).to_string(),
        );
    }
    body.push_str(r#""stream":true}"#);
    if body.len() > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::InvalidRequest,
            format!("the request (with the context it continues) is larger than {limit} bytes"),
        ));
    }
    Ok(Some(Create { body, items, warmup, model, continued: continued.is_some() }))
}

fn json_len(items: &[Arc<RawValue>]) -> usize {
    items.iter().map(|i| i.get().len() + 1).sum::<usize>() + 16
}

fn push_member(body: &mut String, name: &str, value: &str) {
    body.push_str(&serde_json::Value::from(name).to_string());
    body.push(':');
    body.push_str(value);
    body.push(',');
}

fn push_items(body: &mut String, items: &[Arc<RawValue>]) {
    body.push_str(r#""input":["#);
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(item.get());
    }
    body.push_str("],");
}

/// What the relayed events said that the socket keeps: the output items, and the id of the
/// response once it completed.
#[derive(Default)]
struct Seen {
    output: Vec<Arc<RawValue>>,
    completed: Option<String>,
}

impl Seen {
    fn note(&mut self, data: &[u8]) {
        #[derive(Deserialize)]
        struct Event<'a> {
            #[serde(rename = "type", borrow)]
            kind: Cow<'a, str>,
            #[serde(borrow, default)]
            item: Option<&'a RawValue>,
            #[serde(borrow, default)]
            response: Option<Done<'a>>,
        }
        #[derive(Deserialize)]
        struct Done<'a> {
            id: String,
            #[serde(borrow, default)]
            output: Option<Vec<&'a RawValue>>,
        }
        let Ok(event) = serde_json::from_slice::<Event<'_>>(data) else { return };
        match &*event.kind {
            "response.output_item.done" => {
                if let Some(item) = event.item.and_then(as_input) {
                    self.output.push(item);
                }
            }
            "response.completed" => {
                if let Some(done) = event.response {
                    if self.output.is_empty() {
                        self.output =
                            done.output.unwrap_or_default().into_iter().filter_map(as_input).collect();
                    }
                    self.completed = Some(done.id);
                }
            }
            _ => {}
        }
    }
}

/// An output item as the next request's input carries it: without its `id` (as Codex sends
/// its history: an upstream with `store: false` refuses ids it does not keep).
fn as_input(item: &RawValue) -> Option<Arc<RawValue>> {
    let mut item: serde_json::Map<String, serde_json::Value> = serde_json::from_str(item.get()).ok()?;
    item.remove("id");
    RawValue::from_string(serde_json::Value::Object(item).to_string()).ok().map(Arc::from)
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, message)
}

/// The `error` event of a refusal made here.
fn error_event(error: &ApiError) -> Utf8Bytes {
    let body = error.body(false);
    let mut headers = HeaderMap::new();
    if error.is_final() {
        headers.insert(SHOULD_RETRY, HeaderValue::from_static("false"));
    }
    upstream_error_event(error.status, &headers, &body)
}

/// The `error` event of an HTTP error answer: its status and `error` object (also flattened,
/// as the Responses stream's own `error` events are), and the headers that say whether to
/// retry.
fn upstream_error_event(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Utf8Bytes {
    #[derive(Deserialize)]
    struct Body {
        error: serde_json::Map<String, serde_json::Value>,
    }
    let error = serde_json::from_slice::<Body>(body).map(|b| b.error).unwrap_or_else(|_| {
        let mut error = serde_json::Map::new();
        let text = String::from_utf8_lossy(body);
        let message =
            if text.trim().is_empty() { format!("the request failed ({status})") } else { text.into_owned() };
        error.insert("message".into(), message.into());
        error.insert("type".into(), "upstream_error".into());
        error
    });
    let mut event = serde_json::Map::new();
    event.insert("type".into(), "error".into());
    event.insert("status".into(), status.as_u16().into());
    for field in ["code", "message", "param"] {
        event.insert(field.into(), error.get(field).cloned().unwrap_or(serde_json::Value::Null));
    }
    let mut kept = serde_json::Map::new();
    for name in [header::RETRY_AFTER, SHOULD_RETRY] {
        if let Some(value) = headers.get(&name).and_then(|v| v.to_str().ok()) {
            kept.insert(name.as_str().into(), value.into());
        }
    }
    if !kept.is_empty() {
        event.insert("headers".into(), kept.into());
    }
    event.insert("error".into(), error.into());
    Utf8Bytes::from(serde_json::Value::Object(event).to_string())
}

fn reason_of(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Body {
        error: Inner,
    }
    #[derive(Deserialize)]
    struct Inner {
        message: String,
    }
    serde_json::from_slice::<Body>(body).map_or_else(|_| "invalid API key".to_owned(), |b| b.error.message)
}

async fn send(sink: &mut Sink, text: Utf8Bytes) -> Result<(), WsError> {
    sink.send(Message::Text(text)).await
}

/// Closes with `code`, then waits (bounded) for the client's close.
async fn close(sink: &mut Sink, source: &mut Source, code: CloseCode, reason: &str) {
    let mut end = reason.len().min(MAX_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let frame = CloseFrame { code, reason: Utf8Bytes::from(&reason[..end]) };
    if sink.send(Message::Close(Some(frame))).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_WAIT, async { while let Some(Ok(_)) = source.next().await {} }).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_events_carry_status_and_error() {
        let error = ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::InvalidApiKey, "invalid API key");
        let event: serde_json::Value = serde_json::from_str(error_event(&error).as_str()).expect("json");
        assert_eq!(event["type"], "error");
        assert_eq!(event["status"], 401);
        assert_eq!(event["code"], "invalid_api_key");
        assert_eq!(event["error"]["code"], "invalid_api_key");
        assert_eq!(event["error"]["message"], "invalid API key");
        assert_eq!(event["headers"]["x-should-retry"], "false");
        let raw: serde_json::Value = serde_json::from_str(
            upstream_error_event(StatusCode::BAD_GATEWAY, &HeaderMap::new(), b"").as_str(),
        )
        .expect("json");
        assert_eq!(raw["status"], 502);
        assert!(raw["error"]["message"].as_str().is_some_and(|m| m.contains("502")), "{raw}");
        assert!(raw.get("headers").is_none());
    }

    #[test]
    fn output_items_lose_their_ids() {
        let item = RawValue::from_string(r#"{"id":"msg_1","type":"message","role":"assistant"}"#.into())
            .expect("raw");
        let input: serde_json::Value =
            serde_json::from_str(as_input(&item).expect("item").get()).expect("json");
        assert_eq!(input, serde_json::json!({"type": "message", "role": "assistant"}));
        let mut seen = Seen::default();
        seen.note(br#"{"type":"response.output_item.done","item":{"id":"fc_1","type":"function_call","call_id":"c1"}}"#);
        seen.note(br#"{"type":"response.completed","response":{"id":"resp_9","output":[{"id":"x"}]}}"#);
        assert_eq!(seen.completed.as_deref(), Some("resp_9"));
        assert_eq!(seen.output.len(), 1, "the items streamed win over the final list");
        assert_eq!(seen.output[0].get(), r#"{"call_id":"c1","type":"function_call"}"#);
    }

    fn body(create: &Create) -> serde_json::Value {
        serde_json::from_str(&create.body).expect("the body is JSON")
    }

    #[test]
    fn a_create_becomes_a_streamed_post_body() {
        let create = prepare(
            r#"{"type":"response.create","model":"m","input":"hi","stream":false,"tools":[]}"#,
            None,
            1 << 20,
        )
        .expect("valid")
        .expect("a request");
        assert!(!create.warmup);
        assert_eq!(
            body(&create),
            serde_json::json!({"model": "m", "input": "hi", "stream": true, "tools": []})
        );
        assert_eq!(create.items.len(), 1, "a string input is one user message");
        assert!(
            prepare(r#"{"type":"response.processed","response_id":"r"}"#, None, 1 << 20)
                .expect("ok")
                .is_none()
        );
        for bad in [
            "not json",
            "[1]",
            r#"{"model":"m"}"#,
            r#"{"type":"response.cancel"}"#,
            r#"{"type":"response.create","input":7}"#,
            r#"{"type":"response.create","generate":"no"}"#,
        ] {
            let error = prepare(bad, None, 1 << 20).err().unwrap_or_else(|| panic!("{bad} accepted"));
            assert_eq!(error.status, StatusCode::BAD_REQUEST, "{bad}");
        }
        let error = prepare(r#"{"type":"response.create","input":"a long input"}"#, None, 20)
            .err()
            .expect("too large");
        assert_eq!(error.status, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn a_continuation_of_the_last_response_is_sent_whole() {
        let item = |json: &str| Arc::from(RawValue::from_string(json.to_owned()).expect("raw"));
        let last = Context {
            id: "resp_1".into(),
            items: vec![
                item(r#"{"role":"user","content":"one"}"#),
                item(r#"{"type":"message","role":"assistant"}"#),
            ],
        };
        let text = r#"{"type":"response.create","model":"m","previous_response_id":"resp_1","input":[{"role":"user","content":"two"}]}"#;
        let create = prepare(text, Some(&last), 1 << 20).expect("valid").expect("a request");
        assert_eq!(
            body(&create),
            serde_json::json!({"model": "m", "stream": true, "input": [
                {"role": "user", "content": "one"}, {"type": "message", "role": "assistant"},
                {"role": "user", "content": "two"}]}),
            "no previous_response_id goes upstream"
        );
        assert_eq!(create.items.len(), 3);
        assert!(create.continued);
        // Another response's id is passed through, for upstreams that keep state.
        let text = r#"{"type":"response.create","model":"m","previous_response_id":"resp_0","input":"two"}"#;
        let create = prepare(text, Some(&last), 1 << 20).expect("valid").expect("a request");
        assert_eq!(
            body(&create),
            serde_json::json!({"model": "m", "stream": true, "input": "two", "previous_response_id": "resp_0"})
        );
        let warmup =
            prepare(r#"{"type":"response.create","model":"m","generate":false,"input":[]}"#, None, 1 << 20)
                .expect("valid")
                .expect("a request");
        assert!(warmup.warmup);
        assert_eq!(warmup.model.as_deref().map(RawValue::get), Some(r#""m""#));
    }
}
