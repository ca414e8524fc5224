//! Step 4a of the request path: the rate limits that apply to a caller, its admission, and
//! the 429 `rate_limit_exceeded` answer of a refusal.
use std::sync::Arc;

use http::StatusCode;

use super::rate::{Applied, RatePermit, RateRefused};
use crate::{
    app::App,
    body::ResponseBody,
    proxy::{
        auth::Caller,
        endpoint::Endpoint,
        error::{ApiError, ErrorCode},
    },
};

/// What a request counts against tokens-per-minute limits before it runs: its input (about
/// four bytes of JSON per token) and the output it may produce, up to `--reserve-output-tokens`
/// (all of it in the strict mode). The real count is settled when it ends.
pub fn token_estimate(body_len: usize, output_cap: u64, reserve_output: u64) -> i64 {
    let output = if reserve_output == 0 { output_cap } else { output_cap.min(reserve_output) };
    let input = (body_len as u64).div_ceil(4);
    i64::try_from(input.saturating_add(output)).unwrap_or(i64::MAX)
}

/// Admits the request under its key's (or group's) and account's rate limits; `None` when no
/// rate limit applies (no lock taken, nothing allocated).
pub async fn admit_rate(
    app: &Arc<App>,
    caller: &Caller<'_>,
    body_len: usize,
    output_cap: u64,
) -> Result<Option<RatePermit>, RateRefused> {
    let key = caller.key.rates.or(caller.group.rates);
    let account = caller.account.rates;
    if key.is_none() && account.is_none() {
        return Ok(None);
    }
    let tokens = token_estimate(body_len, output_cap, app.config.reserve_output_tokens);
    app.quota.rates().admit(caller.key.id, Applied { key, account }, tokens).await.map(Some)
}

/// The answer to a refused request: 429 `rate_limit_exceeded` (Anthropic's `rate_limit_error`
/// on `/v1/messages`) with `retry-after` and the `x-ratelimit-*` headers; counted in metrics.
pub fn refusal(app: &App, endpoint: Endpoint, refused: &RateRefused) -> http::Response<ResponseBody> {
    app.metrics.refused(endpoint.as_str(), ErrorCode::RateLimitExceeded.as_str());
    app.metrics.rate_limited(refused.kind.as_str());
    let what = match refused.kind {
        super::rate::Kind::Requests => "requests per minute",
        super::rate::Kind::Tokens => "tokens per minute",
        super::rate::Kind::Concurrency => "requests in flight",
    };
    let error = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::RateLimitExceeded,
        format!("rate limit reached: {what}; retry after {} s", refused.retry_after),
    )
    .retry_after(refused.retry_after);
    let mut response = error.response(endpoint.anthropic_errors());
    refused.headers.apply(response.headers_mut());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_count_input_and_reserved_output() {
        assert_eq!(token_estimate(400, 32_000, 4_096), 100 + 4_096);
        assert_eq!(token_estimate(401, 50, 4_096), 101 + 50);
        assert_eq!(token_estimate(0, 32_000, 0), 32_000, "strict: the whole cap");
    }
}
