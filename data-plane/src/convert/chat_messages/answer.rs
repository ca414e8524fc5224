//! A whole Messages answer → a Chat Completions answer.
use std::borrow::Cow;

use serde::Serialize;
use serde_json::value::RawValue;

use super::finish_reason;
use crate::convert::{
    ConvertError,
    messages_chat::compact_json,
    usage,
    wire::{chat, messages},
};

#[derive(Serialize)]
struct Answer<'a> {
    id: String,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [Choice<'a>; 1],
    usage: chat::Usage,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    message: Message<'a>,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCall<'a>>,
    refusal: Option<()>,
}

#[derive(Serialize)]
struct ToolCall<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: Function<'a>,
}

#[derive(Serialize)]
struct Function<'a> {
    name: &'a str,
    arguments: Cow<'a, str>,
}

/// The id of a Chat answer made from an upstream id.
pub fn completion_id(upstream: &str) -> String {
    format!("chatcmpl-{}", upstream.strip_prefix("msg_").unwrap_or(upstream))
}

/// Now, in Unix seconds.
pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Converts a whole Messages answer.
pub fn answer(body: &[u8]) -> Result<Vec<u8>, ConvertError> {
    let response: messages::Response<'_> = serde_json::from_slice(body)
        .map_err(|e| ConvertError::invalid("", format_args!("the upstream answer is not valid: {e}")))?;
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut tool_calls = Vec::new();
    for block in &response.content {
        match block.kind.as_ref() {
            "text" => text.push_str(block.text.as_deref().unwrap_or("")),
            "thinking" => reasoning.push_str(block.thinking.as_deref().unwrap_or("")),
            "tool_use" => tool_calls.push(ToolCall {
                id: block.id.as_deref().unwrap_or(""),
                kind: "function",
                function: Function {
                    name: block.name.as_deref().unwrap_or(""),
                    arguments: compact_json(block.input.map_or("{}", RawValue::get)),
                },
            }),
            // `redacted_thinking` and server-tool blocks (never asked for) have no Chat form.
            _ => {}
        }
    }
    let answer = Answer {
        id: completion_id(&response.id),
        object: "chat.completion",
        created: now(),
        model: &response.model,
        choices: [Choice {
            index: 0,
            message: Message {
                role: "assistant",
                content: (!text.is_empty() || tool_calls.is_empty()).then_some(text),
                reasoning_content: (!reasoning.is_empty()).then_some(reasoning),
                tool_calls,
                refusal: None,
            },
            logprobs: None,
            finish_reason: finish_reason(response.stop_reason.as_deref()),
        }],
        usage: usage::messages_to_chat(&response.usage.unwrap_or_default()),
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
    fn converts_a_whole_answer_with_thinking_tools_and_cache_usage() {
        let mut converted = json(&answer(&fixture("messages.answer.anthropic.json")).expect("converts"));
        assert!(converted["created"].as_u64().is_some_and(|c| c > 1_700_000_000));
        converted["created"] = json!(0);
        assert_eq!(
            converted,
            json!({
                "id": "chatcmpl-01Aq9w938a90dw8q",
                "object": "chat.completion",
                "created": 0,
                "model": "claude-sonnet-4-5-20250929",
                "choices": [{
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "I'll check.",
                        "reasoning_content": "Let me think.",
                        "tool_calls": [{"id": "toolu_01A", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"San Francisco, CA\",\"unit\":\"celsius\"}"}}],
                        "refusal": null
                    },
                    "logprobs": null,
                    "finish_reason": "tool_calls"
                }],
                "usage": {"prompt_tokens": 2572, "completion_tokens": 503, "total_tokens": 3075, "prompt_tokens_details": {"cached_tokens": 2000}}
            })
        );
    }

    #[test]
    fn upstream_errors_take_the_openai_shape() {
        let body = br#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: 100000 > 64000, which is the maximum allowed number of output tokens for claude-sonnet-4-5-20250929"},"request_id":"req_011"}"#;
        assert_eq!(
            json(&Conversion::ChatToMessages.error(400, body)),
            json!({"error": {"message": "max_tokens: 100000 > 64000, which is the maximum allowed number of output tokens for claude-sonnet-4-5-20250929", "type": "invalid_request_error", "param": null, "code": "invalid_request_error"}})
        );
        let overloaded =
            json(&Conversion::ChatToMessages.error(
                529,
                br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            ));
        assert_eq!(overloaded["error"]["code"], "overloaded_error");
        assert_eq!(overloaded["error"]["type"], "server_error");
    }
}
