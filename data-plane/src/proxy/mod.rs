//! The request path of the proxied endpoints, top to bottom, in the order of DESIGN.md:
//! key (401, [`auth`]) → body (413, 400, [`request`]) → model (404) → access (403) → channels
//! ([`route`]: native, else by conversion) → quota (429, [`meter`]) → forward ([`forward`],
//! over [`upstream`], converting where the channel speaks another protocol) → the answer,
//! whole or streamed ([`stream`]), billed from its usage ([`usage`], [`tokenize`]). A request
//! refused by a check never reaches an upstream and costs nothing.
pub mod auth;
pub mod backoff;
pub mod endpoint;
pub mod error;
pub mod forward;
pub mod meter;
pub mod request;
pub mod route;
pub mod sanity;
pub mod stream;
pub mod tokenize;
pub mod upstream;
pub mod usage;
pub mod websocket;

use std::{sync::Arc, time::Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use self::{
    auth::Caller,
    endpoint::Endpoint,
    error::{ApiError, ErrorCode},
    forward::Attempt,
    meter::{Bill, Meter},
    route::Candidates,
};
use crate::{
    app::App,
    body::{ResponseBody, full},
    policy::ModelInfo,
};

/// Serves one request to a proxied endpoint.
pub async fn handle(
    app: &Arc<App>,
    endpoint: Endpoint,
    request: Request<Incoming>,
    request_id: Arc<str>,
    peer: std::net::IpAddr,
) -> Response<ResponseBody> {
    let anthropic = endpoint.anthropic_errors();
    match serve(app, endpoint, request, request_id, peer).await {
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
    peer: std::net::IpAddr,
) -> Result<Response<ResponseBody>, ApiError> {
    let started = Instant::now();
    let policy = app.policy.load_full();
    // Step 1: the key (behind the address's failed-auth back-off).
    let caller = auth::admit(&policy, request.headers(), crate::app::unix_micros(), &app.auth_backoff, peer)?;
    // Step 2: the body.
    let (head, body) = request.into_parts();
    let (body, body_permit) = request::read_budgeted_body(
        &head.headers,
        body,
        app.config.max_body_bytes,
        app.config.body_read_timeout,
        &app.bodies,
    )
    .await?;
    serve_read(app, endpoint, &policy, caller, &head, (body, Some(body_permit)), request_id, started).await
}

/// Serves one request whose body was read some other way (a WebSocket message): steps 1 to 7
/// exactly as for `POST`, `head` standing for the request's head.
pub async fn handle_read(
    app: &Arc<App>,
    endpoint: Endpoint,
    head: &http::request::Parts,
    body: Bytes,
    request_id: Arc<str>,
) -> Response<ResponseBody> {
    let started = Instant::now();
    let policy = app.policy.load_full();
    let served = match auth::authenticate(&policy, &head.headers, crate::app::unix_micros()) {
        Ok(caller) => {
            serve_read(app, endpoint, &policy, caller, head, (body, None), request_id, started).await
        }
        Err(error) => Err(error),
    };
    served.unwrap_or_else(|error| {
        app.metrics.refused(endpoint.as_str(), error.code.as_str());
        error.response(endpoint.anthropic_errors())
    })
}

/// Steps 3 to 7, the key found and the body read (with its share of the body budget, when
/// it was read here).
#[allow(clippy::too_many_arguments)]
async fn serve_read(
    app: &Arc<App>,
    endpoint: Endpoint,
    policy: &crate::policy::Policy,
    caller: Caller<'_>,
    head: &http::request::Parts,
    (body, body_permit): (Bytes, Option<request::BodyPermit>),
    request_id: Arc<str>,
    started: Instant,
) -> Result<Response<ResponseBody>, ApiError> {
    let fields = request::fields(&body)?;
    // Step 3: the model (an alias is served and billed as its target), and whether this key
    // may use it.
    let model = policy.catalog.resolve(&fields.model).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::ModelNotFound,
            format!("the model `{}` does not exist", error::echo(&fields.model)),
        )
    })?;
    check_access(&caller, model)?;
    // Step 5 (looked up before the quota is touched): the channels that can serve it,
    // natively or by conversion.
    let routes = policy.catalog.routes(&model.name);
    let channels = |protocol: crate::policy::Protocol| routes.map_or(&[][..], |r| &r[protocol as usize][..]);
    let conversion = endpoint.conversion();
    let candidates = Candidates {
        native: channels(endpoint.protocol()),
        converted: conversion.map_or(&[][..], |(_, upstream)| channels(upstream.protocol())),
        conversion: conversion.map(|(conversion, _)| conversion),
    };
    if candidates.is_empty() {
        if endpoint == Endpoint::CountTokens {
            return Ok(tokenize::off_the_workers(|| count_tokens_locally(&body)));
        }
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::UpstreamError,
            format!(
                "no channel is enabled for the model `{}` on {} (natively or by conversion)",
                model.name,
                endpoint.as_str()
            ),
        ));
    }
    let attempt = Attempt {
        app,
        endpoint,
        head,
        body: &body,
        fields: &fields,
        model,
        started,
        request_id: &request_id,
    };
    if !endpoint.is_billed() {
        return Ok(forward::forward(&attempt, &candidates, None).await);
    }
    // Step 4: reserve the request's most possible cost. Nothing goes upstream that could not
    // be billed: a full spool refuses up front.
    app.reporter.accepting().map_err(|error| {
        tracing::error!(%error, "refusing requests: usage reports cannot be spooled");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable, error.to_string())
    })?;
    let multiplier = caller.group.multiplier;
    // The most output the request allows (every answer of `n` up to its cap): what is reserved
    // (up to `--reserve-output-tokens`), and what an upstream's report is checked against.
    let output_cap = meter::output_cap(model, fields.max_output_tokens).saturating_mul(fields.choices);
    let estimate =
        meter::estimate(model, multiplier, body.len(), output_cap, app.config.reserve_output_tokens);
    // Step 4a: rate limits (RPM, TPM, concurrency), before the money.
    let rate = match crate::quota::admission::admit_rate(app, &caller, body.len(), output_cap).await {
        Ok(rate) => rate,
        Err(refused) => return Ok(crate::quota::admission::refusal(app, endpoint, &refused)),
    };
    let rate_headers = rate.as_ref().map(|permit| permit.headers().clone());
    let mut reservation =
        app.quota.reserve(caller.key.id, estimate).await.map_err(|refused| match refused {
            // The key expired (or was revoked) between the policy check and the lease: a 401, as
            // the next request gets — never a quota refusal while its balance is there.
            crate::quota::Refused::KeyGone(why) => {
                ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::InvalidApiKey, why)
            }
            crate::quota::Refused::Insufficient(_) => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::InsufficientQuota,
                refused.to_string(),
            ),
        })?;
    reservation.attach_rate(rate);
    let bounds = sanity::Bounds::new(body.len(), output_cap);
    let requested_model = (*model.name != *fields.model).then(|| Box::from(&*fields.model));
    let bill = Bill {
        request_id: Arc::clone(&request_id),
        key_id: caller.key.id,
        model: Arc::clone(model),
        requested_model,
        multiplier,
        endpoint,
        bounds,
    };
    let mut meter = Meter::new(app, bill, reservation, body.clone());
    // The body stays in memory with the meter until the answer ends: so does its budget share.
    if let Some(permit) = body_permit {
        meter.hold(permit);
    }
    // Steps 5–7: forward, answer, bill.
    let mut response = forward::forward(&attempt, &candidates, Some(meter)).await;
    if let Some(headers) = rate_headers {
        headers.apply(response.headers_mut());
    }
    Ok(response)
}

/// `count_tokens` for a model no channel serves over Messages: counted here with the gateway's
/// tokenizer, free (no upstream, no usage record).
fn count_tokens_locally(body: &[u8]) -> Response<ResponseBody> {
    let answer = serde_json::json!({ "input_tokens": tokenize::count_prompt(body) });
    let mut response = Response::new(full(Bytes::from(answer.to_string())));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Step 3b: the key's group and allow-list must reach the model.
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
