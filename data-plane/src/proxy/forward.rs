//! Steps 5–7 of the request path: try the planned channels in order until one answers, and
//! hand that answer to the client — streamed through the meter, or read whole.
//!
//! One loop serves the billed endpoints and the free one (`count_tokens`, with no meter).
//! A connect error, a timeout, a 5xx, 429, 408 or 401/403 (bad channel credentials) cools the
//! channel down and moves on to the next, which is safe because nothing has reached the client
//! yet — also from a native channel to a converted one; an upstream 400/404/413/422 is the
//! request's own fault and is passed through, free. A 200 that is not what the endpoint
//! returns (HTML, an event stream for a request that asked for none, an encoding other than
//! the `identity` asked for, a body that is not JSON) is the channel's failure too: free, and
//! it cools the channel down.
//!
//! Conversion is one step of an attempt on a channel that speaks another protocol: the body is
//! converted for that channel (its model name, the model's output cap), and its answer, stream
//! or error converted back into the client's protocol ([`crate::convert`]). A native attempt
//! pays only the check that it has no conversion.
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header, request::Parts};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use super::{
    endpoint::Endpoint,
    error::{ApiError, ErrorCode, SHOULD_RETRY},
    meter::{Meter, Outcome, Produced},
    request::{self, Fields},
    route::{self, Candidates},
    stream::{MeteredStream, StreamLimits},
    upstream, usage,
};
use crate::{
    app::App,
    body::{ResponseBody, full},
    convert::{Conversion, ConvertError, Target},
    policy::{ChannelInfo, ModelInfo},
};

/// Largest upstream answer read whole (non-streamed answers, errors).
pub(crate) const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// One admitted request on its way upstream: what every attempt of it reads.
pub struct Attempt<'a> {
    /// Shared state: the upstream client, cool-downs, timeouts, metrics.
    pub app: &'a App,
    /// The endpoint the client called.
    pub endpoint: Endpoint,
    /// The client's request head (protocol headers and query are passed on).
    pub head: &'a Parts,
    /// The client's body, as sent.
    pub body: &'a Bytes,
    /// What the gateway read of the body.
    pub fields: &'a Fields<'a>,
    /// The model, as priced.
    pub model: &'a ModelInfo,
    /// When the request arrived (for the latency the gateway adds).
    pub started: Instant,
    /// The request's id (a converted answer's ids derive from it).
    pub request_id: &'a str,
}

/// Why no upstream request could be built for a channel.
enum Unbuilt {
    /// The client's request has a field the channel's protocol cannot express: a 400 for the
    /// client, whichever channel would be next.
    Inexpressible(ConvertError),
    /// The channel's settings are unusable (its URL or key): the next channel may do.
    Channel(anyhow::Error),
}

/// Why an attempt on a channel failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Timeout,
    Unreachable,
    Status(StatusCode),
    /// A success status over an answer the endpoint does not return.
    Unreadable(&'static str),
}

impl Failure {
    /// The error the client gets when every channel failed, the last one this way.
    fn error(self) -> ApiError {
        let (status, message) = match self {
            Failure::Timeout => {
                (StatusCode::GATEWAY_TIMEOUT, "every channel for this model timed out".to_owned())
            }
            Failure::Unreachable => {
                (StatusCode::BAD_GATEWAY, "no channel for this model could be reached".to_owned())
            }
            Failure::Status(status) => (
                StatusCode::BAD_GATEWAY,
                format!("every channel for this model failed (last answered {status})"),
            ),
            Failure::Unreadable(what) => (
                StatusCode::BAD_GATEWAY,
                format!("every channel for this model failed (last answered 200 with {what})"),
            ),
        };
        ApiError::new(status, ErrorCode::UpstreamError, message)
    }
}

/// Whether an upstream status is the request's own fault: passed through, never retried.
fn is_request_fault(status: StatusCode) -> bool {
    status.is_client_error() && !matches!(status.as_u16(), 401 | 403 | 408 | 429)
}

/// An upstream answer worth handing to the client, and how long its first byte took.
type Answered = (Response<Incoming>, Duration);

/// Tries the candidates (in the order [`route::plan`] gives) until one answers; `meter` bills
/// the request (`None`: a free request, never billed).
pub async fn forward(
    attempt: &Attempt<'_>,
    candidates: &Candidates<'_>,
    mut meter: Option<Meter>,
) -> Response<ResponseBody> {
    let mut failure = Failure::Unreachable;
    let mut sent_any = false;
    let session = route::Session::of(&attempt.head.headers, attempt.fields.session.as_deref());
    for (channel, conversion) in route::plan(candidates, &attempt.app.cool_downs, session) {
        if let Some(meter) = &mut meter {
            meter.trying(&channel.name, attempt.upstream_endpoint(conversion));
        }
        let request = match attempt.upstream_request(&channel, conversion) {
            Ok(request) => request,
            Err(Unbuilt::Channel(error)) => {
                tracing::error!(channel = %channel.name, %error, "cannot build the upstream request");
                failure = Failure::Unreachable;
                continue;
            }
            Err(Unbuilt::Inexpressible(error)) => {
                // Refused before it went anywhere: no usage record, unless an earlier attempt
                // did reach an upstream (then it is recorded as that failure, free).
                if let Some(meter) = meter.filter(|_| sent_any) {
                    meter.finish(Outcome::UpstreamError, Produced::default());
                }
                return inexpressible(&error).response(attempt.endpoint.anthropic_errors());
            }
        };
        if !sent_any {
            attempt.app.metrics.added_latency(attempt.started.elapsed().as_secs_f64());
            sent_any = true;
        }
        match attempt.send(&channel, request).await {
            Ok(answered) => return attempt.deliver(answered, &channel, conversion, meter).await,
            Err(why) => failure = why,
        }
    }
    if let Some(meter) = meter {
        meter.finish(Outcome::UpstreamError, Produced::default());
    }
    failure.error().response(attempt.endpoint.anthropic_errors())
}

/// The client's 400 for a field its request's conversion cannot express.
fn inexpressible(error: &ConvertError) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, error.message.clone())
}

impl Attempt<'_> {
    /// The endpoint called upstream: the client's, or the one its conversion converts to.
    fn upstream_endpoint(&self, conversion: Option<Conversion>) -> Endpoint {
        match (conversion, self.endpoint.conversion()) {
            (Some(_), Some((_, upstream))) => upstream,
            _ => self.endpoint,
        }
    }

    /// The request for `channel`: its URL and credentials, the body with the channel's model
    /// name (for an alias, its target's, mapped) and, on a stream whose protocol has it, the usage chunk asked for — or, converted,
    /// the body in the channel's protocol.
    fn upstream_request(
        &self,
        channel: &ChannelInfo,
        conversion: Option<Conversion>,
    ) -> Result<Request<Full<Bytes>>, Unbuilt> {
        let upstream_model = channel.upstream_model(&self.model.name);
        if let Some(conversion) = conversion {
            let cap = self.model.max_output_tokens.unwrap_or(0);
            let target = Target { upstream_model, max_output_tokens: cap };
            let body = conversion.request(self.body, &target).map_err(Unbuilt::Inexpressible)?;
            // The client's query belongs to its own protocol (Claude Code's `?beta=true`).
            return upstream::request(
                channel,
                self.upstream_endpoint(Some(conversion)),
                upstream_model,
                None,
                &self.head.headers,
                Bytes::from(body),
            )
            .map_err(Unbuilt::Channel);
        }
        let renamed = (upstream_model != &*self.fields.model).then_some(upstream_model);
        let body = if renamed.is_some() || self.injects_usage() {
            request::splice(self.body, renamed, self.injects_usage()).unwrap_or_else(|_| self.body.clone())
        } else {
            self.body.clone()
        };
        upstream::request(
            channel,
            self.endpoint,
            upstream_model,
            self.head.uri.query(),
            &self.head.headers,
            body,
        )
        .map_err(Unbuilt::Channel)
    }

    /// Whether the gateway asks for a stream's usage chunk the client did not ask for.
    fn injects_usage(&self) -> bool {
        self.fields.stream && self.endpoint.has_stream_usage_option() && !self.fields.include_usage
    }

    /// Sends one attempt and sorts its outcome: an answer for the client, or a failure that
    /// cools the channel down.
    async fn send(&self, channel: &ChannelInfo, request: Request<Full<Bytes>>) -> Result<Answered, Failure> {
        let app = self.app;
        let sent = Instant::now();
        let response = match tokio::time::timeout(app.config.first_byte_timeout, app.http.request(request))
            .await
        {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => {
                tracing::warn!(channel = %channel.name, %error, "upstream unreachable; trying the next channel");
                app.cool_downs.failed(channel.id);
                return Err(Failure::Unreachable);
            }
            Err(_) => {
                tracing::warn!(channel = %channel.name, "upstream timed out; trying the next channel");
                app.cool_downs.failed(channel.id);
                return Err(Failure::Timeout);
            }
        };
        let first_byte = sent.elapsed();
        app.metrics.upstream_latency(first_byte.as_secs_f64());
        let status = response.status();
        if status.is_success() {
            if let Some(what) = self.unreadable(response.headers()) {
                tracing::warn!(channel = %channel.name, what, "upstream answered 200 with what the endpoint does not return; trying the next channel");
                app.cool_downs.failed(channel.id);
                return Err(Failure::Unreadable(what));
            }
            app.cool_downs.succeeded(channel.id);
            return Ok((response, first_byte));
        }
        if is_request_fault(status) {
            return Ok((response, first_byte));
        }
        tracing::warn!(channel = %channel.name, %status, "upstream failed; trying the next channel");
        app.cool_downs.failed(channel.id);
        Err(Failure::Status(status))
    }

    /// What is wrong with a success answer's headers, if anything: an encoding the gateway
    /// did not ask for (it asks for `identity`), HTML, or an event stream for a request that
    /// asked for a whole answer.
    fn unreadable(&self, headers: &HeaderMap) -> Option<&'static str> {
        let encoded = headers
            .get(header::CONTENT_ENCODING)
            .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
        if encoded {
            return Some("an encoded body");
        }
        let content_type = headers.get(header::CONTENT_TYPE).map_or(&b""[..], HeaderValue::as_bytes);
        if content_type.len() >= 9 && content_type[..9].eq_ignore_ascii_case(b"text/html") {
            return Some("an HTML page");
        }
        if !self.fields.stream && is_event_stream(headers) {
            return Some("an event stream to a request for a whole answer");
        }
        None
    }

    /// Hands an answer to the client: a stream event by event through the meter, anything
    /// else read whole (and billed from its usage when it is a success); a converted one in
    /// the client's protocol.
    async fn deliver(
        &self,
        (response, first_byte): Answered,
        channel: &ChannelInfo,
        conversion: Option<Conversion>,
        meter: Option<Meter>,
    ) -> Response<ResponseBody> {
        let (head, body) = response.into_parts();
        let idle = self.app.config.idle_timeout;
        let success = head.status.is_success();
        // Usage is read in the upstream's own terms.
        let dialect = self.upstream_endpoint(conversion).dialect();
        let meter = match meter {
            Some(meter) if success && self.fields.stream && is_event_stream(&head.headers) => {
                let converter = conversion.map(|c| Box::new(c.stream(self.context(c))));
                let strip = conversion.is_none() && self.injects_usage();
                let limits = StreamLimits { idle, max_event_bytes: self.app.config.max_event_bytes };
                let stream = MeteredStream::new(body, dialect, strip, limits, meter, first_byte, converter);
                return client_response(head.status, &head.headers, BodyExt::boxed(stream));
            }
            meter => meter,
        };
        let answer = read_answer(body, idle).await;
        if success && answer.as_ref().is_ok_and(|answer| !looks_like_json(answer)) {
            // Whatever it is, it is not the endpoint's answer: the channel failed, the request
            // is free.
            tracing::warn!(channel = %channel.name, "upstream answered 200 with a body that is not JSON");
            self.app.cool_downs.failed(channel.id);
            finish(meter, Outcome::UpstreamError, Produced::default());
            return Failure::Unreadable("a body that is not JSON")
                .error()
                .response(self.endpoint.anthropic_errors());
        }
        if let Some(conversion) = conversion {
            return self.deliver_converted(conversion, head, answer, first_byte, meter);
        }
        let (outcome, produced) = match &answer {
            Ok(answer) if success => {
                let usage = usage::from_body(answer, dialect);
                (
                    Outcome::Ok,
                    Produced {
                        usage,
                        raw_output: vec![answer.clone()],
                        first_byte: Some(first_byte),
                        ..Produced::default()
                    },
                )
            }
            // The request's own fault, or an answer that broke off: free.
            _ => (Outcome::UpstreamError, Produced::default()),
        };
        if let Some(meter) = meter {
            meter.finish(outcome, produced);
        }
        match answer {
            Ok(answer) => client_response(head.status, &head.headers, full(answer)),
            // A refusal whose body broke off still reaches the client with its status.
            Err(_) if !success => client_response(head.status, &head.headers, full(Bytes::new())),
            Err(why) => broke_off(&why).response(self.endpoint.anthropic_errors()),
        }
    }

    /// What a converted answer's conversion needs to know of the request.
    fn context(&self, conversion: Conversion) -> crate::convert::StreamContext {
        conversion.context(self.body, &*self.fields.model, self.request_id)
    }

    /// A whole converted answer: a success converted into the client's answer and billed from
    /// the upstream's usage; a refusal in the client's error shape, the upstream's message
    /// kept, free.
    fn deliver_converted(
        &self,
        conversion: Conversion,
        head: http::response::Parts,
        answer: Result<Bytes, String>,
        first_byte: Duration,
        meter: Option<Meter>,
    ) -> Response<ResponseBody> {
        let anthropic = self.endpoint.anthropic_errors();
        let upstream = self.upstream_endpoint(Some(conversion));
        let converted = match answer {
            Ok(answer) if head.status.is_success() => {
                match conversion.answer_in(&answer, &self.context(conversion)) {
                    Ok(converted) => {
                        let usage = usage::from_body(&answer, upstream.dialect());
                        let produced = Produced {
                            usage,
                            raw_output: vec![answer],
                            first_byte: Some(first_byte),
                            ..Produced::default()
                        };
                        finish(meter, Outcome::Ok, produced);
                        Ok(converted)
                    }
                    Err(error) => {
                        tracing::warn!(why = %error.message, "the upstream's answer cannot be converted");
                        finish(meter, Outcome::UpstreamError, Produced::default());
                        let message = format!("the upstream's answer cannot be converted: {}", error.message);
                        Err(ApiError::new(StatusCode::BAD_GATEWAY, ErrorCode::UpstreamError, message))
                    }
                }
            }
            Ok(refusal) => {
                finish(meter, Outcome::UpstreamError, Produced::default());
                Ok(conversion.error(head.status.as_u16(), &refusal))
            }
            Err(_) if !head.status.is_success() => {
                finish(meter, Outcome::UpstreamError, Produced::default());
                Ok(conversion.error(head.status.as_u16(), b""))
            }
            Err(why) => {
                finish(meter, Outcome::UpstreamError, Produced::default());
                Err(broke_off(&why))
            }
        };
        match converted {
            Ok(body) => {
                let mut headers = head.headers;
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                client_response(head.status, &headers, full(Bytes::from(body)))
            }
            Err(error) => error.response(anthropic),
        }
    }
}

fn finish(meter: Option<Meter>, outcome: Outcome, produced: Produced) {
    if let Some(meter) = meter {
        meter.finish(outcome, produced);
    }
}

fn broke_off(why: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        ErrorCode::UpstreamError,
        format!("the upstream answer broke off: {why}"),
    )
}

/// Whether a whole answer can be the JSON every proxied endpoint returns: its first
/// non-blank byte opens an object or an array (HTML, SSE, compressed or binary bodies do not).
fn looks_like_json(answer: &[u8]) -> bool {
    answer.iter().find(|b| !b.is_ascii_whitespace()).is_some_and(|b| matches!(b, b'{' | b'['))
}

fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

/// Reads a whole upstream answer, giving up after `idle` without data. An answer that arrives
/// in one piece (the usual small JSON body) is passed on without a copy.
async fn read_answer(mut body: Incoming, idle: Duration) -> Result<Bytes, String> {
    let mut first: Option<Bytes> = None;
    let mut joined = BytesMut::new();
    loop {
        match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => return Err("no data within the idle timeout".into()),
            Ok(None) => return Ok(first.unwrap_or_else(|| joined.freeze())),
            Ok(Some(Err(error))) => return Err(error.to_string()),
            Ok(Some(Ok(frame))) => {
                let Ok(data) = frame.into_data() else { continue };
                let held = first.as_ref().map_or(0, Bytes::len) + joined.len();
                if held + data.len() > MAX_ANSWER_BYTES {
                    return Err("the answer is too large".into());
                }
                // `first` holds the answer while it is one piece; from the second on, `joined`.
                if first.is_none() && joined.is_empty() {
                    first = Some(data);
                } else {
                    if let Some(earlier) = first.take() {
                        joined.extend_from_slice(&earlier);
                    }
                    joined.extend_from_slice(&data);
                }
            }
        }
    }
}

/// Headers of an upstream answer never passed to the client: hop-by-hop ones, what the
/// gateway sets itself, and what identifies or describes the operator's provider account (its
/// organization and project, its rate limits, its cookies, the upstream's server).
fn is_withheld(name: &header::HeaderName) -> bool {
    let name = name.as_str();
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "content-length"
            | "x-request-id"
            | "set-cookie"
            | "server"
            | "openai-organization"
            | "openai-project"
            | "anthropic-organization-id"
    ) || name.starts_with("x-ratelimit-")
        || name.starts_with("anthropic-ratelimit-")
}

/// The client's answer: the upstream's status and headers (less hop-by-hop ones) over `body`.
fn client_response(
    status: StatusCode,
    upstream_headers: &HeaderMap,
    body: ResponseBody,
) -> Response<ResponseBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    for (name, value) in upstream_headers {
        if !is_withheld(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    headers.entry(header::CONTENT_TYPE).or_insert(HeaderValue::from_static("application/json"));
    if is_request_fault(status) {
        // The upstream refused the request itself: sending it again cannot help.
        headers.entry(SHOULD_RETRY).or_insert(HeaderValue::from_static("false"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operators_account_headers_stay_here() {
        let mut upstream = HeaderMap::new();
        for (name, value) in [
            ("openai-organization", "org-operator"),
            ("openai-project", "proj_1"),
            ("anthropic-organization-id", "uuid-of-the-operator"),
            ("x-ratelimit-remaining-requests", "4999"),
            ("x-ratelimit-limit-tokens", "2000000"),
            ("anthropic-ratelimit-tokens-remaining", "39000"),
            ("set-cookie", "__cf_bm=1"),
            ("server", "cloudflare"),
            ("content-length", "12"),
            ("openai-processing-ms", "120"),
            ("request-id", "req_1"),
            ("content-type", "application/json"),
        ] {
            upstream.append(header::HeaderName::from_static(name), HeaderValue::from_static(value));
        }
        let response = client_response(StatusCode::OK, &upstream, full(Bytes::new()));
        let mut kept: Vec<_> = response.headers().keys().map(|n| n.as_str().to_owned()).collect();
        kept.sort();
        assert_eq!(kept, ["content-type", "openai-processing-ms", "request-id"]);
        assert!(response.headers().get(SHOULD_RETRY).is_none());
        let refused = client_response(StatusCode::BAD_REQUEST, &upstream, full(Bytes::new()));
        assert_eq!(refused.headers().get(SHOULD_RETRY).map(HeaderValue::as_bytes), Some(&b"false"[..]));
    }
}
