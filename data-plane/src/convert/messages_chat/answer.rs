//! A whole Chat Completions answer → a Messages answer.
use std::borrow::Cow;

use serde::Serialize;
use serde_json::value::RawValue;

use super::stop_reason;
use crate::convert::{
    ConvertError, usage,
    wire::{TextOr, chat, messages},
};

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block<'a> {
    Thinking { thinking: &'a str },
    Text { text: Cow<'a, str> },
    ToolUse { id: Cow<'a, str>, name: &'a str, input: Box<RawValue> },
}

#[derive(Serialize)]
struct Answer<'a> {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: Vec<Block<'a>>,
    stop_reason: &'static str,
    stop_sequence: Option<&'static str>,
    usage: messages::Usage,
}

/// The id of a Messages answer made from an upstream id.
pub fn message_id(upstream: &str) -> String {
    format!("msg_{}", upstream.strip_prefix("chatcmpl-").unwrap_or(upstream))
}

/// A tool call's arguments as the JSON value `input` must be (`""` is no arguments).
pub fn tool_input(arguments: &str, field: impl FnOnce() -> String) -> Result<Box<RawValue>, ConvertError> {
    let arguments = arguments.trim();
    let arguments = if arguments.is_empty() { "{}" } else { arguments };
    RawValue::from_string(arguments.to_owned()).map_err(|e| {
        ConvertError::invalid(field(), format_args!("the upstream's tool call arguments are not JSON: {e}"))
    })
}

/// Converts a whole Chat answer.
pub fn answer(body: &[u8]) -> Result<Vec<u8>, ConvertError> {
    let response = chat::Response::parse(body)?;
    let choice = &response.choices[0];
    let message = &choice.message;
    let mut content = Vec::new();
    if let Some(thinking) = message.reasoning_text() {
        content.push(Block::Thinking { thinking });
    }
    match &message.content {
        Some(TextOr::Text(text)) if !text.is_empty() => {
            content.push(Block::Text { text: Cow::Borrowed(text) })
        }
        Some(TextOr::Items(parts)) => {
            for part in parts {
                if let Some(text) = part.text.as_deref().or(part.refusal.as_deref()) {
                    content.push(Block::Text { text: Cow::Borrowed(text) });
                }
            }
        }
        _ => {}
    }
    if let Some(refusal) = message.refusal.as_deref().filter(|r| !r.is_empty()) {
        content.push(Block::Text { text: Cow::Borrowed(refusal) });
    }
    let calls = message.tool_calls.as_deref().unwrap_or_default();
    for (i, call) in calls.iter().enumerate() {
        let id = if call.id.is_empty() {
            Cow::Owned(format!("toolu_{i}"))
        } else {
            Cow::Borrowed(call.id.as_ref())
        };
        let input = tool_input(&call.function.arguments, || {
            format!("choices[0].message.tool_calls[{i}].function.arguments")
        })?;
        content.push(Block::ToolUse { id, name: &call.function.name, input });
    }
    let answer = Answer {
        id: message_id(&response.id),
        kind: "message",
        role: "assistant",
        model: &response.model,
        content,
        stop_reason: stop_reason(choice.finish_reason.as_deref(), !calls.is_empty()),
        stop_sequence: None,
        usage: usage::chat_to_messages(&response.usage.unwrap_or_default()),
    };
    serde_json::to_vec(&answer).map_err(|e| ConvertError::invalid("", e))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::convert::{
        Conversion,
        testing::{fixture, json},
    };

    #[test]
    fn converts_a_whole_answer_with_reasoning_tools_and_cached_usage() {
        let converted = answer(&fixture("chat.answer.json")).expect("converts");
        assert_eq!(json(&converted), json(&fixture("messages.answer.json")));
    }

    #[test]
    fn converts_plain_refused_and_truncated_answers() {
        let body = json!({"id": "x", "model": "m", "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "length"}]});
        let converted = json(&answer(body.to_string().as_bytes()).expect("converts"));
        assert_eq!(converted["content"], json!([{"type": "text", "text": "Hi"}]));
        assert_eq!(converted["stop_reason"], "max_tokens");
        assert_eq!(converted["usage"]["input_tokens"], 0);
        let body = json!({"id": "x", "model": "m", "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "refusal": "I can't help with that."}, "finish_reason": "content_filter"}]});
        let converted = json(&answer(body.to_string().as_bytes()).expect("converts"));
        assert_eq!(converted["content"], json!([{"type": "text", "text": "I can't help with that."}]));
        assert_eq!(converted["stop_reason"], "refusal");
        // vLLM parsers that answer tool calls with finish_reason "stop".
        let body = json!({"id": "x", "model": "m", "choices": [{"index": 0, "message": {"role": "assistant", "tool_calls": [{"id": "", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}, "finish_reason": "stop"}]});
        let converted = json(&answer(body.to_string().as_bytes()).expect("converts"));
        assert_eq!(converted["stop_reason"], "tool_use");
        assert_eq!(converted["content"][0]["id"], "toolu_0");
    }

    #[test]
    fn refuses_answers_it_cannot_read() {
        assert_eq!(answer(br#"{"choices":[]}"#).expect_err("no choice").field, "choices");
        let body = json!({"choices": [{"message": {"role": "assistant", "tool_calls": [{"id": "a", "function": {"name": "f", "arguments": "{\"a\":"}}]}}]});
        let error = answer(body.to_string().as_bytes()).expect_err("bad arguments");
        assert_eq!(error.field, "choices[0].message.tool_calls[0].function.arguments");
        assert!(answer(b"<html>").is_err());
    }

    #[test]
    fn upstream_errors_take_the_anthropic_shape() {
        let body = br#"{"error":{"message":"This model's maximum context length is 65536 tokens. However, you requested 70000 tokens.","type":"invalid_request_error","param":null,"code":"invalid_request_error"}}"#;
        let converted = json(&Conversion::MessagesToChat.error(400, body));
        assert_eq!(
            converted,
            json!({"type": "error", "error": {"type": "invalid_request_error", "message": "This model's maximum context length is 65536 tokens. However, you requested 70000 tokens."}})
        );
        let converted = json(
            &Conversion::MessagesToChat
                .error(402, br#"{"error":{"message":"Insufficient Balance","type":"unknown_error"}}"#),
        );
        assert_eq!(converted["error"], json!({"type": "billing_error", "message": "Insufficient Balance"}));
        let converted = json(&Conversion::MessagesToChat.error(503, b"upstream connect error"));
        assert_eq!(
            converted["error"],
            json!({"type": "overloaded_error", "message": "upstream connect error"})
        );
    }
}
