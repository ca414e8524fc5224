//! Refusals and failures as clients expect them: OpenAI's error shape, or Anthropic's on
//! `/v1/messages`, with the codes of INTERFACE.md.
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
    /// Every channel failed (502/504) or none is enabled (503).
    UpstreamError,
    /// No route here (404).
    NotFound,
    /// The data plane cannot answer yet, or the control plane is away (503).
    Unavailable,
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
            ErrorCode::UpstreamError => "upstream_error",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Unavailable => "unavailable",
        }
    }

    fn openai_type(self) -> &'static str {
        match self {
            ErrorCode::InvalidApiKey
            | ErrorCode::InvalidRequest
            | ErrorCode::ModelNotFound
            | ErrorCode::NotFound => "invalid_request_error",
            ErrorCode::ModelNotAllowed => "permission_error",
            ErrorCode::InsufficientQuota => "insufficient_quota",
            ErrorCode::UpstreamError | ErrorCode::Unavailable => "upstream_error",
        }
    }

    fn anthropic_type(self, status: StatusCode) -> &'static str {
        match (self, status.as_u16()) {
            (ErrorCode::InvalidApiKey, _) => "authentication_error",
            (_, 413) => "request_too_large",
            (ErrorCode::InvalidRequest, _) => "invalid_request_error",
            (ErrorCode::ModelNotFound | ErrorCode::NotFound, _) => "not_found_error",
            (ErrorCode::ModelNotAllowed, _) => "permission_error",
            (ErrorCode::InsufficientQuota, _) => "rate_limit_error",
            (_, 503) => "overloaded_error",
            _ => "api_error",
        }
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
}

impl ApiError {
    /// An error answer.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into() }
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
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }
}

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
}
