//! Conversion errors, and upstream error answers re-shaped for the client.
use std::{borrow::Cow, fmt};

use serde::Deserialize;
use serde_json::value::RawValue;

/// A field the target protocol cannot express (→ 400 `invalid_request` naming it), or a body
/// that is not a valid request of the client's protocol (→ 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertError {
    /// The JSON path of the offending field (`tools[2].type`, `messages[0].content[1]`), or
    /// empty when the body as a whole is at fault.
    pub field: String,
    /// What is wrong, for the client.
    pub message: String,
}

impl ConvertError {
    /// A field the target protocol cannot express.
    pub fn unsupported(field: impl Into<String>, why: impl fmt::Display) -> ConvertError {
        let field = field.into();
        let message = if field.is_empty() { why.to_string() } else { format!("`{field}` {why}") };
        ConvertError { field, message }
    }

    /// A body that is not valid in its own protocol.
    pub fn invalid(field: impl Into<String>, why: impl fmt::Display) -> ConvertError {
        let field = field.into();
        let message = if field.is_empty() { why.to_string() } else { format!("`{field}`: {why}") };
        ConvertError { field, message }
    }

    /// A body serde could not read; an unknown top-level field is named as such.
    pub fn from_json(error: &serde_json::Error, target: &str) -> ConvertError {
        let text = error.to_string();
        // serde names unknown fields "unknown field `x`, expected …".
        if let Some(rest) = text.strip_prefix("unknown field `")
            && let Some(end) = rest.find('`')
        {
            let field = &rest[..end];
            return ConvertError::unsupported(field, format_args!("cannot be converted to {target}"));
        }
        ConvertError::invalid("", format_args!("the request body is not valid: {text}"))
    }
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConvertError {}

/// An upstream's error answer, whatever its shape: the message word for word, the upstream's
/// own type or code when it gave one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamError {
    /// The HTTP status.
    pub status: u16,
    /// The upstream's message, unchanged.
    pub message: String,
    /// The upstream's error type (`invalid_request_error`, `overloaded_error` …), if any.
    pub kind: Option<String>,
    /// The upstream's error code, if any.
    pub code: Option<String>,
    /// The upstream's `param`, if any.
    pub param: Option<String>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    error: Option<&'a RawValue>,
    #[serde(borrow)]
    message: Option<Cow<'a, str>>,
    #[serde(borrow)]
    detail: Option<&'a RawValue>,
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    code: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Inner<'a> {
    #[serde(borrow)]
    message: Option<Cow<'a, str>>,
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    code: Option<&'a RawValue>,
    #[serde(borrow)]
    param: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Detail<'a> {
    #[serde(borrow)]
    msg: Option<Cow<'a, str>>,
}

/// A code given as a string or a number, as text.
fn code_text(code: Option<&RawValue>) -> Option<String> {
    let code = code?;
    match serde_json::from_str::<Cow<'_, str>>(code.get()) {
        Ok(text) => Some(text.into_owned()),
        Err(_) => {
            let raw = code.get();
            (raw != "null").then(|| raw.to_owned())
        }
    }
}

impl UpstreamError {
    /// A failure of the upstream's stream, described by the gateway.
    pub fn new(message: String) -> UpstreamError {
        UpstreamError {
            status: 502,
            message,
            kind: None,
            code: Some("upstream_error".to_owned()),
            param: None,
        }
    }

    /// Reads an error body: OpenAI's `{"error":{…}}`, Anthropic's `{"type":"error","error":{…}}`,
    /// `{"error":"…"}`, vLLM's `{"object":"error","message":…}`, FastAPI's `{"detail":…}`, or
    /// anything else (its text becomes the message).
    pub fn read(status: u16, body: &[u8]) -> UpstreamError {
        let mut error = UpstreamError { status, message: String::new(), kind: None, code: None, param: None };
        if let Ok(envelope) = serde_json::from_slice::<Envelope<'_>>(body) {
            if let Some(inner) = envelope.error {
                if let Ok(text) = serde_json::from_str::<Cow<'_, str>>(inner.get()) {
                    error.message = text.into_owned();
                } else if let Ok(inner) = serde_json::from_str::<Inner<'_>>(inner.get()) {
                    error.message = inner.message.map(Cow::into_owned).unwrap_or_default();
                    error.kind = inner.kind.map(Cow::into_owned);
                    error.code = code_text(inner.code);
                    error.param = inner.param.map(Cow::into_owned);
                }
            }
            if error.message.is_empty()
                && let Some(message) = envelope.message
            {
                error.message = message.into_owned();
            }
            if error.message.is_empty()
                && let Some(detail) = envelope.detail
            {
                error.message = match serde_json::from_str::<Cow<'_, str>>(detail.get()) {
                    Ok(text) => text.into_owned(),
                    Err(_) => match serde_json::from_str::<Vec<Detail<'_>>>(detail.get()) {
                        Ok(details) => {
                            details.into_iter().filter_map(|d| d.msg).collect::<Vec<_>>().join("; ")
                        }
                        Err(_) => detail.get().to_owned(),
                    },
                };
            }
            if error.kind.is_none() {
                error.kind = envelope.kind.filter(|k| k != "error").map(Cow::into_owned);
            }
            if error.code.is_none() {
                error.code = code_text(envelope.code);
            }
        }
        if error.message.is_empty() {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            error.message = if text.is_empty() {
                format!("the upstream answered HTTP {status} with no message")
            } else {
                text.to_owned()
            };
        }
        error
    }

    /// The Anthropic error type for this status (the upstream's own when it is one of them).
    fn anthropic_type(&self) -> &str {
        const TYPES: [&str; 9] = [
            "invalid_request_error",
            "authentication_error",
            "billing_error",
            "permission_error",
            "not_found_error",
            "request_too_large",
            "rate_limit_error",
            "api_error",
            "overloaded_error",
        ];
        if let Some(kind) = self.kind.as_deref()
            && TYPES.contains(&kind)
        {
            return kind;
        }
        match self.status {
            400 | 422 => "invalid_request_error",
            401 => "authentication_error",
            402 => "billing_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            503 | 529 => "overloaded_error",
            _ => "api_error",
        }
    }

    /// The OpenAI error type for this status (the upstream's own when it gave one it shares).
    fn openai_type(&self) -> &str {
        match self.status {
            400 | 404 | 413 | 422 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            429 if self.kind.as_deref() == Some("insufficient_quota")
                || self.code.as_deref() == Some("insufficient_quota") =>
            {
                "insufficient_quota"
            }
            429 => "rate_limit_error",
            _ => "server_error",
        }
    }

    /// The body in Anthropic's shape.
    pub fn anthropic_body(&self) -> Vec<u8> {
        let value = serde_json::json!({
            "type": "error",
            "error": {"type": self.anthropic_type(), "message": self.message},
        });
        value.to_string().into_bytes()
    }

    /// The body in OpenAI's shape; the upstream's type (Anthropic's `overloaded_error` …) or
    /// code becomes the `code`.
    pub fn openai_body(&self) -> Vec<u8> {
        let value = serde_json::json!({
            "error": {
                "message": self.message,
                "type": self.openai_type(),
                "param": self.param,
                "code": self.code.as_deref().or(self.kind.as_deref()),
            },
        });
        value.to_string().into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(bytes: &[u8]) -> serde_json::Value {
        serde_json::from_slice(bytes).expect("json")
    }

    #[test]
    fn reads_every_error_shape_keeping_the_message() {
        let openai = br#"{"error":{"message":"This model's maximum context length is 8192 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#;
        let e = UpstreamError::read(400, openai);
        assert_eq!(e.message, "This model's maximum context length is 8192 tokens.");
        assert_eq!(e.code.as_deref(), Some("context_length_exceeded"));
        assert_eq!(e.param.as_deref(), Some("messages"));
        let anthropic = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        let e = UpstreamError::read(529, anthropic);
        assert_eq!((e.message.as_str(), e.kind.as_deref()), ("Overloaded", Some("overloaded_error")));
        assert_eq!(UpstreamError::read(500, br#"{"error":"boom"}"#).message, "boom");
        let vllm = br#"{"object":"error","message":"max_tokens must be at least 1","type":"BadRequestError","param":null,"code":400}"#;
        let e = UpstreamError::read(400, vllm);
        assert_eq!((e.message.as_str(), e.code.as_deref()), ("max_tokens must be at least 1", Some("400")));
        assert_eq!(
            UpstreamError::read(422, br#"{"detail":[{"msg":"field required"}]}"#).message,
            "field required"
        );
        assert_eq!(UpstreamError::read(404, br#"{"detail":"Not Found"}"#).message, "Not Found");
        assert_eq!(
            UpstreamError::read(502, b"<html>Bad Gateway</html>\n").message,
            "<html>Bad Gateway</html>"
        );
        assert_eq!(UpstreamError::read(503, b"").message, "the upstream answered HTTP 503 with no message");
    }

    #[test]
    fn reshapes_for_each_client_protocol() {
        let e = UpstreamError::read(429, br#"{"error":{"message":"Rate limit reached for requests","type":"requests","code":"rate_limit_exceeded"}}"#);
        let body = json(&e.anthropic_body());
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "rate_limit_error");
        assert_eq!(body["error"]["message"], "Rate limit reached for requests");
        let e = UpstreamError::read(
            529,
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        );
        let body = json(&e.openai_body());
        assert_eq!(body["error"]["message"], "Overloaded");
        assert_eq!(body["error"]["type"], "server_error");
        assert_eq!(body["error"]["code"], "overloaded_error");
        let e = UpstreamError::read(
            401,
            br#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#,
        );
        assert_eq!(json(&e.openai_body())["error"]["type"], "authentication_error");
        assert_eq!(json(&e.anthropic_body())["error"]["type"], "authentication_error");
        let e = UpstreamError::read(400, br#"{"error":{"message":"bad","type":"invalid_request_error"}}"#);
        assert_eq!(json(&e.anthropic_body())["error"]["type"], "invalid_request_error");
    }

    #[test]
    fn names_unknown_fields() {
        #[derive(Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Strict {
            a: Option<u8>,
        }
        let error = serde_json::from_str::<Strict>(r#"{"a":1,"zz":2}"#).expect_err("unknown");
        let converted = ConvertError::from_json(&error, "Chat Completions");
        assert_eq!(converted.field, "zz");
        assert_eq!(converted.message, "`zz` cannot be converted to Chat Completions");
        let error = serde_json::from_str::<Strict>(r#"{"a":"x"}"#).expect_err("type");
        assert_eq!(ConvertError::from_json(&error, "Chat").field, "");
    }
}
