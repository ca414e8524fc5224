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
    RawValue::from_string(arguments.to_owned())
        .map_err(|e| ConvertError::invalid(field(), format_args!("the upstream's tool call arguments are not JSON: {e}")))
}

/// Converts a whole Chat answer.
pub fn answer(body: &[u8]) -> Result<Vec<u8>, ConvertError> {
    let response: chat::Response<'_> =
        serde_json::from_slice(body).map_err(|e| ConvertError::invalid("", format_args!("the upstream answer is not valid: {e}")))?;
    let choice = response
        .choices
        .first()
        .ok_or_else(|| ConvertError::invalid("choices", "the upstream answer has no choice"))?;
    let message = &choice.message;
    let mut content = Vec::new();
    let reasoning = message.reasoning_content.as_deref().or(message.reasoning.as_deref());
    if let Some(thinking) = reasoning.filter(|r| !r.is_empty()) {
        content.push(Block::Thinking { thinking });
    }
    match &message.content {
        Some(TextOr::Text(text)) if !text.is_empty() => content.push(Block::Text { text: Cow::Borrowed(text) }),
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
        let id = if call.id.is_empty() { Cow::Owned(format!("toolu_{i}")) } else { Cow::Borrowed(call.id.as_ref()) };
        let input = tool_input(&call.function.arguments, || format!("choices[0].message.tool_calls[{i}].function.arguments"))?;
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
