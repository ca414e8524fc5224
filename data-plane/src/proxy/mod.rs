//! The request path of the proxied endpoints, top to bottom, in the order of DESIGN.md:
//! key (401) → body (413, 400) → model (404) → access (403) → quota (429) → channel → forward
//! → meter. A request refused by a check never reaches an upstream and costs nothing.
pub mod auth;
pub mod error;
pub mod meter;
pub mod request;
pub mod route;
pub mod stream;
pub mod tokenize;
pub mod upstream;
pub mod usage;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header, request::Parts};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use self::{
    auth::Caller,
    error::{ApiError, ErrorCode},
    meter::{Meter, Outcome, Produced},
    request::Fields,
    stream::MeteredStream,
    upstream::Endpoint,
};
use crate::{
    app::App,
    body::{ResponseBody, full},
    policy::{ChannelInfo, ModelInfo},
};

/// Request bodies up to this size are copied out of the connection's read buffer.
const SMALL_BODY_BYTES: usize = 16 * 1024;
/// Largest upstream answer read whole (non-streamed answers, errors).
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// Serves one request to a proxied endpoint.
pub async fn handle(
    app: &Arc<App>,
    endpoint: Endpoint,
    request: Request<Incoming>,
    request_id: Arc<str>,
) -> Response<ResponseBody> {
    let anthropic = endpoint.anthropic_errors();
    match serve(app, endpoint, request, request_id).await {
        Ok(response) => response,
        Err(error) => {
            app.metrics.refused(endpoint.as_str(), error.code.as_str());
            error.response(anthropic)
        }
    }
}

async fn serve(
    app: &Arc<App>,
    endpoint: Endpoint,
    request: Request<Incoming>,
    request_id: Arc<str>,
) -> Result<Response<ResponseBody>, ApiError> {
    let started = Instant::now();
    let policy = app.policy.load_full();
    let caller = auth::authenticate(&policy, request.headers(), crate::app::unix_micros())?;
    let (parts, body) = request.into_parts();
    let body = read_body(&parts.headers, body, app.config.max_body_bytes).await?;
    let fields = request::fields(&body)?;
    let model = policy.catalog.model(&fields.model).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::ModelNotFound,
            format!("the model `{}` does not exist", fields.model),
        )
    })?;
    check_access(&caller, model)?;
    let channels = policy.catalog.channels(endpoint.protocol(), &model.name);
    if channels.is_empty() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::UpstreamError,
            format!("no channel is enabled for the model `{}` on {}", model.name, endpoint.as_str()),
        ));
    }
    if endpoint == Endpoint::CountTokens {
        return forward_free(app, endpoint, &parts, body, model, channels).await;
    }
    // Nothing goes upstream that could not be billed: a full spool refuses up front.
    app.reporter.accepting().map_err(|error| {
        tracing::error!(%error, "refusing requests: usage reports cannot be spooled");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable, error.to_string())
    })?;
    let multiplier = caller.group.multiplier;
    let estimate = meter::estimate(model, multiplier, body.len(), fields.max_output_tokens);
    let reservation = app.quota.reserve(caller.key.id, estimate).await.map_err(|refused| {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, ErrorCode::InsufficientQuota, refused.to_string())
    })?;
    let meter = Meter::new(
        request_id,
        caller.key.id,
        Arc::clone(model),
        multiplier,
        endpoint,
        reservation,
        app.reporter.clone(),
        Arc::clone(&app.metrics),
        body.clone(),
    );
    Ok(forward(app, endpoint, &parts, body.clone(), &fields, model, channels, meter, started).await)
}

/// Steps 3b: the key's group and allow-list must reach the model.
fn check_access(caller: &Caller<'_>, model: &ModelInfo) -> Result<(), ApiError> {
    let allowed_by_key = caller.key.models.is_empty()
        || caller.key.models.iter().any(|m| **m == *model.name || model.model_group.as_ref() == Some(m));
    if caller.group.reaches(model) && allowed_by_key {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        ErrorCode::ModelNotAllowed,
        format!("this key may not use the model `{}`", model.name),
    ))
}

/// Step 2: the body, size-limited (413 at once on a declared `Content-Length` over the limit).
async fn read_body(headers: &HeaderMap, body: Incoming, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::InvalidRequest,
            format!("the request body is larger than {limit} bytes"),
        )
    };
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    match Limited::new(body, limit).collect().await {
        // A body that came in one piece is a slice of the connection's read buffer; the meter
        // keeps the body until the answer ends (to count tokens locally if the upstream reports
        // none), which would pin that whole buffer for as long as a stream lasts. A small body
        // is copied out instead: a few hundred bytes per request rather than kilobytes per
        // open stream.
        Ok(collected) => {
            let body = collected.to_bytes();
            Ok(if body.len() <= SMALL_BODY_BYTES { Bytes::copy_from_slice(&body) } else { body })
        }
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(error) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRequest,
            format!("cannot read the request body: {error}"),
        )),
    }
}

/// Why an attempt on a channel failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Timeout,
    Unreachable,
    Status(StatusCode),
}

/// Whether an upstream status is the request's own fault: passed through, never retried.
fn is_request_fault(status: StatusCode) -> bool {
    status.is_client_error() && !matches!(status.as_u16(), 401 | 403 | 408 | 429)
}

/// Steps 5–7: try channels in order until one answers; stream or return its answer.
#[allow(clippy::too_many_arguments)]
async fn forward(
    app: &Arc<App>,
    endpoint: Endpoint,
    parts: &Parts,
    body: Bytes,
    fields: &Fields<'_>,
    model: &ModelInfo,
    channels: &[Arc<ChannelInfo>],
    meter: Meter,
    started: Instant,
) -> Response<ResponseBody> {
    let inject_usage = fields.stream && endpoint.has_stream_usage_option() && !fields.include_usage;
    let mut last: Option<(Arc<ChannelInfo>, Failure)> = None;
    let mut first_attempt = true;
    for channel in route::plan(channels, &app.cool_downs) {
        let upstream_model = channel.upstream_model(&model.name);
        let renamed = (upstream_model != &*model.name).then_some(upstream_model);
        let upstream_body = if renamed.is_some() || inject_usage {
            request::splice(&body, renamed, inject_usage).unwrap_or_else(|_| body.clone())
        } else {
            body.clone()
        };
        let upstream_request = match upstream::request(
            &channel,
            endpoint,
            upstream_model,
            parts.uri.query(),
            &parts.headers,
            upstream_body,
        ) {
            Ok(request) => request,
            Err(error) => {
                tracing::error!(channel = %channel.name, %error, "cannot build the upstream request");
                last = Some((channel, Failure::Unreachable));
                continue;
            }
        };
        if first_attempt {
            app.metrics.added_latency(started.elapsed().as_secs_f64());
            first_attempt = false;
        }
        let sent = Instant::now();
        let response = match tokio::time::timeout(
            app.config.first_byte_timeout,
            app.http.request(upstream_request),
        )
        .await
        {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => {
                tracing::warn!(channel = %channel.name, %error, "upstream unreachable; trying the next channel");
                app.cool_downs.failed(channel.id);
                last = Some((channel, Failure::Unreachable));
                continue;
            }
            Err(_) => {
                tracing::warn!(channel = %channel.name, "upstream timed out; trying the next channel");
                app.cool_downs.failed(channel.id);
                last = Some((channel, Failure::Timeout));
                continue;
            }
        };
        let first_byte = sent.elapsed();
        app.metrics.upstream_latency(first_byte.as_secs_f64());
        let status = response.status();
        if status.is_success() {
            app.cool_downs.succeeded(channel.id);
            let is_stream = response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("text/event-stream"));
            if fields.stream && is_stream {
                let (head, upstream_body) = response.into_parts();
                let stream = MeteredStream::new(
                    upstream_body,
                    endpoint.dialect(),
                    inject_usage,
                    app.config.idle_timeout,
                    meter,
                    channel.name.clone(),
                    first_byte,
                );
                return client_response(head.status, &head.headers, BodyExt::boxed(stream));
            }
            let (head, upstream_body) = response.into_parts();
            return match read_answer(upstream_body, app.config.idle_timeout).await {
                Ok(answer) => {
                    let usage = usage::from_body(&answer, endpoint.dialect());
                    let produced =
                        Produced { usage, raw_output: vec![answer.clone()], first_byte: Some(first_byte) };
                    meter.finish(&channel.name, Outcome::Ok, produced);
                    client_response(head.status, &head.headers, full(answer))
                }
                Err(why) => {
                    meter.finish(&channel.name, Outcome::UpstreamError, Produced::default());
                    ApiError::new(
                        StatusCode::BAD_GATEWAY,
                        ErrorCode::UpstreamError,
                        format!("the upstream answer broke off: {why}"),
                    )
                    .response(endpoint.anthropic_errors())
                }
            };
        }
        if is_request_fault(status) {
            // The request's own fault: the client sees the upstream's answer, free of charge.
            let (head, upstream_body) = response.into_parts();
            let answer = read_answer(upstream_body, app.config.idle_timeout).await.unwrap_or_default();
            meter.finish(&channel.name, Outcome::UpstreamError, Produced::default());
            return client_response(head.status, &head.headers, full(answer));
        }
        tracing::warn!(channel = %channel.name, %status, "upstream failed; trying the next channel");
        app.cool_downs.failed(channel.id);
        last = Some((channel, Failure::Status(status)));
    }
    let (channel_name, failure) =
        last.map_or((Arc::from(""), Failure::Unreachable), |(c, f)| (Arc::clone(&c.name), f));
    meter.finish(&channel_name, Outcome::UpstreamError, Produced::default());
    let (status, message) = match failure {
        Failure::Timeout => {
            (StatusCode::GATEWAY_TIMEOUT, "every channel for this model timed out".to_owned())
        }
        Failure::Unreachable => {
            (StatusCode::BAD_GATEWAY, "no channel for this model could be reached".to_owned())
        }
        Failure::Status(status) => {
            (StatusCode::BAD_GATEWAY, format!("every channel for this model failed (last answered {status})"))
        }
    };
    ApiError::new(status, ErrorCode::UpstreamError, message).response(endpoint.anthropic_errors())
}

/// `count_tokens`: forwarded to an Anthropic channel, unmetered and free.
async fn forward_free(
    app: &Arc<App>,
    endpoint: Endpoint,
    parts: &Parts,
    body: Bytes,
    model: &ModelInfo,
    channels: &[Arc<ChannelInfo>],
) -> Result<Response<ResponseBody>, ApiError> {
    for channel in route::plan(channels, &app.cool_downs) {
        let upstream_model = channel.upstream_model(&model.name);
        let renamed = (upstream_model != &*model.name).then_some(upstream_model);
        let upstream_body = match renamed {
            Some(name) => request::splice(&body, Some(name), false)?,
            None => body.clone(),
        };
        let Ok(upstream_request) = upstream::request(
            &channel,
            endpoint,
            upstream_model,
            parts.uri.query(),
            &parts.headers,
            upstream_body,
        ) else {
            continue;
        };
        let Ok(Ok(response)) =
            tokio::time::timeout(app.config.first_byte_timeout, app.http.request(upstream_request)).await
        else {
            app.cool_downs.failed(channel.id);
            continue;
        };
        if response.status().is_server_error() {
            continue;
        }
        let (head, upstream_body) = response.into_parts();
        let answer = read_answer(upstream_body, app.config.idle_timeout).await.unwrap_or_default();
        return Ok(client_response(head.status, &head.headers, full(answer)));
    }
    Err(ApiError::new(StatusCode::BAD_GATEWAY, ErrorCode::UpstreamError, "no channel could count the tokens"))
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

/// Headers of an upstream answer never passed to the client.
fn is_hop_header(name: &header::HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "content-length"
            | "x-request-id"
            | "set-cookie"
    )
}

fn client_response(
    status: StatusCode,
    upstream_headers: &HeaderMap,
    body: ResponseBody,
) -> Response<ResponseBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    for (name, value) in upstream_headers {
        if !is_hop_header(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    headers.entry(header::CONTENT_TYPE).or_insert(HeaderValue::from_static("application/json"));
    response
}
