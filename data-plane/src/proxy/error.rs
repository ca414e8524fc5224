//! Refusals and failures as clients expect them: OpenAI's error shape, or Anthropic's on
//! `/v1/messages`, with the codes of INTERFACE.md, and the headers that tell SDK-based clients
//! (Claude Code, Codex, the openai/anthropic SDKs) whether a retry can help.
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};

use crate::body::{ResponseBody, full};

/// What went wrong, in the vocabulary of INTERFACE.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Missing, unknown, revoked or expired key (401).
    InvalidApiKey,
    /// Body over the limit (413) or malformed (400).
    InvalidRequest,
    /// Unknown or unpriced model (404).
    ModelNotFound,
    /// Model outside the key's group or allow-list (403).
    ModelNotAllowed,
    /// A balance or limit would be exceeded (429).
    InsufficientQuota,
    /// A rate or concurrency limit (429, with `retry-after`).
    RateLimitExceeded,
    /// Every channel failed (502/504) or none is enabled (503).
    UpstreamError,
    /// No route here (404).
    NotFound,
    /// The data plane cannot answer yet, or the control plane is away (503).
    Unavailable,
    /// Console sign-in with a wrong email or password (401).
    InvalidCredentials,
    /// A console call without a live session (401).
    InvalidSession,
    /// A state-changing console call without the session's `x-csrf-token` (403).
    CsrfFailed,
    /// Console sign-in of a disabled account (403).
    AccountDisabled,
    /// Top-up with no payment provider configured (501).
    PaymentsNotConfigured,
    /// What the control plane does not offer yet (501).
    NotImplemented,
    /// Too many request bodies in flight (503, with `retry-after`).
    Overloaded,
}

impl ErrorCode {
    /// The code string of INTERFACE.md.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidApiKey => "invalid_api_key",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::ModelNotFound => "model_not_found",
            ErrorCode::ModelNotAllowed => "model_not_allowed",
            ErrorCode::InsufficientQuota => "insufficient_quota",
            ErrorCode::RateLimitExceeded => "rate_limit_exceeded",
            ErrorCode::UpstreamError => "upstream_error",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::InvalidCredentials => "invalid_credentials",
            ErrorCode::InvalidSession => "invalid_session",
            ErrorCode::CsrfFailed => "csrf_failed",
            ErrorCode::AccountDisabled => "account_disabled",
            ErrorCode::PaymentsNotConfigured => "payments_not_configured",
            ErrorCode::NotImplemented => "not_implemented",
            ErrorCode::Overloaded => "overloaded",
        }
    }

    fn openai_type(self) -> &'static str {
        match self {
            ErrorCode::InvalidApiKey
            | ErrorCode::InvalidRequest
            | ErrorCode::ModelNotFound
            | ErrorCode::NotFound
            | ErrorCode::PaymentsNotConfigured
            | ErrorCode::NotImplemented => "invalid_request_error",
            ErrorCode::InvalidCredentials | ErrorCode::InvalidSession => "authentication_error",
            ErrorCode::ModelNotAllowed | ErrorCode::CsrfFailed | ErrorCode::AccountDisabled => {
                "permission_error"
            }
            ErrorCode::InsufficientQuota => "insufficient_quota",
            ErrorCode::RateLimitExceeded => "rate_limit_error",
            ErrorCode::UpstreamError | ErrorCode::Unavailable => "upstream_error",
            ErrorCode::Overloaded => "server_error",
        }
    }

    fn anthropic_type(self, status: StatusCode) -> &'static str {
        match (self, status.as_u16()) {
            (ErrorCode::InvalidApiKey, _) => "authentication_error",
            (_, 413) => "request_too_large",
            (ErrorCode::InvalidRequest, _) => "invalid_request_error",
            (ErrorCode::ModelNotFound | ErrorCode::NotFound, _) => "not_found_error",
            (ErrorCode::ModelNotAllowed, _) => "permission_error",
            (ErrorCode::InsufficientQuota | ErrorCode::RateLimitExceeded, _) => "rate_limit_error",
            (_, 503) => "overloaded_error",
            _ => "api_error",
        }
    }
}

/// Longest client-given text an error message repeats, in characters.
pub const MAX_ECHO_CHARS: usize = 200;

/// `text` as an error message may repeat it: at most [`MAX_ECHO_CHARS`] characters, marked
/// with `…` when cut (a 1 MB model name is not sent back whole).
pub fn echo(text: &str) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(MAX_ECHO_CHARS) {
        None => std::borrow::Cow::Borrowed(text),
        Some((end, _)) => std::borrow::Cow::Owned(format!("{}…", &text[..end])),
    }
}

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// INTERFACE.md code.
    pub code: ErrorCode,
    /// Human-readable message (never a secret).
    pub message: String,
    /// Seconds after which a retry may succeed (`retry-after`), for rate limits and overload.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error answer.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), retry_after: None }
    }

    /// The same error, telling the client to retry after `seconds`.
    #[must_use]
    pub fn retry_after(mut self, seconds: u64) -> ApiError {
        self.retry_after = Some(seconds);
        self
    }

    /// Whether no retry of the same request can succeed: the key, the body, the model or the
    /// access is wrong, or the money is gone. SDKs retry 429s and Claude Code retries nearly
    /// everything for minutes unless told otherwise.
    pub fn is_final(&self) -> bool {
        match self.status.as_u16() {
            400 | 401 | 403 | 404 | 413 => true,
            429 => self.code == ErrorCode::InsufficientQuota,
            _ => false,
        }
    }

    /// The JSON body in OpenAI's shape, or Anthropic's when `anthropic` is set.
    pub fn body(&self, anthropic: bool) -> Bytes {
        let value = if anthropic {
            serde_json::json!({
                "type": "error",
                "error": {"type": self.code.anthropic_type(self.status), "message": self.message, "code": self.code.as_str()},
            })
        } else {
            serde_json::json!({
                "error": {"message": self.message, "type": self.code.openai_type(), "param": null, "code": self.code.as_str()},
            })
        };
        Bytes::from(value.to_string())
    }

    /// The whole HTTP response.
    pub fn response(&self, anthropic: bool) -> http::Response<ResponseBody> {
        let mut response = http::Response::new(full(self.body(anthropic)));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if self.is_final() {
            headers.insert(SHOULD_RETRY, HeaderValue::from_static("false"));
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// The header the Stainless-generated SDKs (openai, anthropic) and Claude Code read before
/// their own retry rules: `false` shows the error at once.
pub const SHOULD_RETRY: header::HeaderName = header::HeaderName::from_static("x-should-retry");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_follow_the_client_protocol() {
        let error = ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::InvalidApiKey, "bad key");
        let openai: serde_json::Value = serde_json::from_slice(&error.body(false)).expect("json");
        assert_eq!(openai["error"]["code"], "invalid_api_key");
        assert_eq!(openai["error"]["message"], "bad key");
        let anthropic: serde_json::Value = serde_json::from_slice(&error.body(true)).expect("json");
        assert_eq!(anthropic["type"], "error");
        assert_eq!(anthropic["error"]["type"], "authentication_error");
        assert_eq!(anthropic["error"]["code"], "invalid_api_key");
    }

    #[test]
    fn refusals_a_retry_cannot_fix_say_so() {
        let should_retry = |error: ApiError| {
            let response = error.response(false);
            let headers = response.headers();
            (
                headers.get(SHOULD_RETRY).map(|v| v.to_str().unwrap_or_default().to_owned()),
                headers.get(header::RETRY_AFTER).map(|v| v.to_str().unwrap_or_default().to_owned()),
            )
        };
        let no = (Some("false".to_owned()), None);
        for (status, code) in [
            (StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest),
            (StatusCode::UNAUTHORIZED, ErrorCode::InvalidApiKey),
            (StatusCode::FORBIDDEN, ErrorCode::ModelNotAllowed),
            (StatusCode::NOT_FOUND, ErrorCode::ModelNotFound),
            (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::InvalidRequest),
            (StatusCode::TOO_MANY_REQUESTS, ErrorCode::InsufficientQuota),
        ] {
            assert_eq!(should_retry(ApiError::new(status, code, "x")), no, "{status}");
        }
        for (status, code) in [
            (StatusCode::BAD_GATEWAY, ErrorCode::UpstreamError),
            (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::UpstreamError),
            (StatusCode::REQUEST_TIMEOUT, ErrorCode::InvalidRequest),
        ] {
            assert_eq!(should_retry(ApiError::new(status, code, "x")), (None, None), "{status}");
        }
        let limited =
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimitExceeded, "x").retry_after(7);
        assert_eq!(should_retry(limited), (None, Some("7".to_owned())), "a rate limit says when");
    }
}
